"""Checkpoints keyed by the original slim names, and initialisation from fine-tune checkpoints."""
