"""What a model costs: FLOPs of its inference graph and measured latency."""
