"""Training: the loop and its hooks, the compiled step, losses, optimizers, distribution."""
