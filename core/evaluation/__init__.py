"""Evaluation: one loop (``inference_on_dataset``) over evaluators; metrics and their outputs."""
