"""Deployment: the serving graph, export formats (frozen graph, SavedModel, TFLite), runtimes."""
