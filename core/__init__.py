"""The library: plain Python and TensorFlow values in, results out; no protos, no flags.

Sub-packages, each named after what it does: ``data`` (input pipeline, preprocessing),
``datasets`` (class names, palettes, official ids), ``training`` (the loop, its hooks, the step,
losses, optimizers), ``evaluation`` (``inference_on_dataset`` and evaluators), ``deploy``
(serving graphs, export formats, runtimes), ``pruning`` (channel graph, ranking, surgery,
sensitivity), ``analysis`` (FLOPs, latency) and ``checkpoints``; ``registry`` is the name ->
object mechanism the extension points share. ``runners/`` drives this library from configs.
"""
