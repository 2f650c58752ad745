"""Quiet consoles by default: TensorFlow's start-up chatter only with ``--verbose``.

Importing TensorFlow 2.21 prints, from C++ and before any Python setting can stop it, absl's
``WARNING: All log messages before absl::InitializeLog() is called are written to STDERR``, the
oneDNN notice (each twice: two shared libraries initialise logging) and the CPU feature guard.
``TF_CPP_MIN_LOG_LEVEL=2`` hides only the last. :func:`install` therefore

* sets ``TF_CPP_MIN_LOG_LEVEL=2`` unless the user set it (C++ INFO and WARNING lines of later
  work: converters, ``tf.data``), before TensorFlow is imported;
* makes the first ``import tensorflow`` (wherever it happens: the scripts import it lazily, after
  their flags are checked) run with file descriptor 2 captured
  (:func:`core.stderr_capture.captured_stderr`); the text is shown again if the import fails;
* leaves ``TF_ENABLE_ONEDNN_OPTS`` alone: it changes the numerics;
* after that import, drops the INFO lines that TensorFlow, Keras and tf2onnx log from their own
  modules ("Assets written to /tmp/...", "Sharding callback duration", signature renames):
  their internals, not the run's progress (:func:`quiet_library_info`).

:func:`single_tensorflow_handler` keeps Python log lines from being printed twice
(``INFO:tensorflow:...`` from TensorFlow's own handler and again through absl's).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence

from core.stderr_capture import captured_stderr

_TRUE = ("", "1", "true", "t", "yes", "y")


def verbose_requested(argv: Sequence[str]) -> bool:
    """Whether ``argv`` asks for ``--verbose`` (the last of ``--[no]verbose[=value]`` wins).

    Read before absl parses the flags: TensorFlow may be imported by a script's module before.
    """
    verbose = False
    for arg in argv[1:]:
        if arg == "--":
            break
        name, _, value = arg.lstrip("-").partition("=")
        if not arg.startswith("-"):
            continue
        if name == "verbose":
            verbose = value.lower() in _TRUE
        elif name == "noverbose":
            verbose = False
    return verbose


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` with the other finders and runs its import with fd 2 captured."""

    def find_spec(self, fullname, path, target=None):  # noqa: ARG002 - the finder protocol
        if fullname != "tensorflow":
            return None
        uninstall()  # once: the other finders do the finding
        spec = importlib.util.find_spec(fullname)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        execute = loader.exec_module

        def quiet_exec_module(module) -> None:
            with captured_stderr():
                execute(module)
            single_tensorflow_handler()
            quiet_library_info()

        # On the instance, so that the loader keeps its type (importlib.resources checks it).
        loader.exec_module = quiet_exec_module
        return spec


def install(verbose: bool) -> None:
    """Quiets TensorFlow's start-up unless ``verbose``; a no-op once TensorFlow is imported."""
    if verbose or "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not any(isinstance(finder, _QuietTensorFlowImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())


def uninstall() -> None:
    """Removes the import hook of :func:`install` (tests; the hook removes itself when used)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _QuietTensorFlowImport)]


def single_tensorflow_handler() -> None:
    """Drops TensorFlow's own console handler when the root logger already prints (absl's).

    TensorFlow adds a stderr handler to its ``tensorflow`` logger when it is imported before
    absl's handler is set up; its records also propagate to the root logger, so every line
    appeared twice (``INFO:tensorflow:...`` and absl's ``I0101 ...``).
    """
    root = logging.getLogger()
    if not root.handlers:
        return
    tf_logger = logging.getLogger("tensorflow")
    for handler in list(tf_logger.handlers):
        if type(handler) is logging.StreamHandler:
            tf_logger.removeHandler(handler)


_LIBRARY_DIRS = ("/tensorflow/", "/keras/", "/tf_keras/", "/tf2onnx/")


class _LibraryInfoFilter(logging.Filter):
    """Passes warnings and errors, and INFO lines unless a library module logged them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        path = (record.pathname or "").replace(os.sep, "/")
        return not any(part in path for part in _LIBRARY_DIRS)


def quiet_library_info() -> None:
    """Hides the libraries' own INFO lines, whichever logger they use (absl's or ``tensorflow``);
    the project's INFO lines (its own modules) still print."""
    from absl import logging as absl_logging  # noqa: PLC0415 - absl is set up by now

    logging.getLogger("tensorflow").setLevel(logging.WARNING)
    handler = absl_logging.get_absl_handler()
    if not any(isinstance(f, _LibraryInfoFilter) for f in handler.filters):
        handler.addFilter(_LibraryInfoFilter())
