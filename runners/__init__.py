"""The application layer: one module per job, called by the entry scripts.

A runner takes a pipeline config and flags' values, builds objects with ``builders/``, drives the
library in ``core/`` and ``models/`` and writes results: ``trainer`` (train.py,
train_mem_saving.py), ``eval_loop`` (eval.py), ``export`` (export.py), ``inference``
(inference.py), ``compress`` (compress.py), ``sensitivity`` (sensitivity.py), ``demo``
(demo.py), ``flops`` (``python -m runners.flops``); ``common`` builds and restores a model.
"""
