"""Speed, size and memory measurements that write ``benchmarks/RESULTS.md`` (``make bench``).

``python -m benchmarks.run`` runs the sections (parameters and FLOPs, latency of the checkpoint
model and of every exported format, training steps, training memory, input pipeline, roofline)
and writes a Markdown table and a JSON file. See docs/benchmarks.md.
"""
