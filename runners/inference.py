"""``inference.py``'s model: a segmenter for a checkpoint and its config, or an exported model.

The segmenters themselves (:mod:`core.deploy.segmenters`) take plain values: a built model or
a model file. This runner reads the config, builds and restores the checkpoint's model
(:func:`runners.common.load_model`), and finds the config an exported model was written with
(for its class count).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from absl import logging

from builders import config_util
from builders.model_builder import model_config
from core.checkpoints import checkpoint_utils
from core.deploy.deploy_graph import ExportError, parse_input_shape, parse_pad_to_shape
from core.deploy.segmenters import ModelSegmenter, Segmenter, open_exported
from runners.common import load_model

# The original's inference defaults: Cityscapes frames padded to the odd eval size.
DEFAULT_INPUT_SHAPE = "1024,2048,3"
DEFAULT_PAD_TO_SHAPE = "1025,2049"


def _config_num_classes(config) -> int:
    """``num_classes`` of the config's model."""
    return model_config(config)[1].num_classes


def load_segmenter(
    model_path: str | None = None,
    config_path: str | None = None,
    trained_checkpoint: str | None = None,
    input_shape: str | Sequence | None = None,
    pad_to_shape: str | Sequence | None = None,
    num_threads: int | None = None,
    jit_compile: bool = False,
    runtime: str | None = None,
) -> Segmenter:
    """A segmenter for an exported model (``model_path``) or a checkpoint and its config.

    Args:
      model_path: ``frozen_inference_graph.pb``, a SavedModel directory or a ``.tflite`` file.
        The config (for ``num_classes``) is ``config_path`` or the ``pipeline.config`` next to
        the model.
      config_path: the pipeline config (required with a checkpoint).
      trained_checkpoint: a checkpoint prefix or training directory.
      input_shape: network input ``H,W,3`` for a checkpoint; when not given, 1024,2048,3 padded
        to ``pad_to_shape`` or 1025,2049 (the original's defaults). With an exported model it
        must match the exported shape, if given.
      pad_to_shape: ``H,W`` padding for a checkpoint; exported models have theirs built in.
      num_threads: TFLite interpreter threads (None: its default).
      jit_compile: compile a checkpoint's deploy graph with XLA (ignored for exported models).
      runtime: for a ``.onnx`` model, ``onnxruntime`` (default) or ``openvino``.

    Returns:
      A :class:`core.deploy.segmenters.Segmenter`.

    Raises:
      ExportError, config_util.ConfigError, checkpoint_utils.CheckpointError: named causes.
    """
    if (model_path is None) == (trained_checkpoint is None):
        raise ExportError(
            "pass exactly one of --model_path (an exported model) or --trained_checkpoint "
            "(with --config_path)."
        )
    if model_path is not None:
        if runtime and os.path.isfile(os.path.join(model_path, "model.onnx")):
            model_path = os.path.join(model_path, "model.onnx")  # --runtime runs the ONNX model
        model_path = resolve_model_path(model_path)
        return _load_exported(
            model_path, config_path, input_shape, pad_to_shape, num_threads, runtime
        )
    if runtime:
        raise ExportError(
            f"--runtime {runtime} runs an exported .onnx --model_path, not a checkpoint."
        )
    if config_path is None:
        raise ExportError("--trained_checkpoint needs --config_path to build the model.")
    config = config_util.load_pipeline_config(config_path)
    if not input_shape:
        input_shape, pad_to_shape = DEFAULT_INPUT_SHAPE, pad_to_shape or DEFAULT_PAD_TO_SHAPE
    shape = parse_input_shape(input_shape)
    padding = parse_pad_to_shape(pad_to_shape, shape)
    # Resolved before the model is built, so a wrong path fails in a second.
    prefix = checkpoint_utils.resolve_checkpoint(trained_checkpoint)
    model, prefix = load_model(config, prefix)
    return ModelSegmenter(model, shape, padding, description=prefix, jit_compile=jit_compile)


# What export.py writes into its --output_dir, in the order a folder given as --model_path is
# searched (core/deploy/exporter.py names them).
_EXPORTED_MODELS = (
    "saved_model",
    "frozen_inference_graph.pb",
    "model_float32.tflite",
    "model.onnx",
)


def resolve_model_path(model_path: str) -> str:
    """``model_path``, or the model inside it when it is export.py's output folder.

    Raises:
      ExportError: a folder that is neither a SavedModel nor an export folder holding one.
    """
    if not os.path.isdir(model_path) or _is_saved_model(model_path):
        return model_path
    for name in _EXPORTED_MODELS:
        candidate = os.path.join(model_path, name)
        if os.path.exists(candidate):
            logging.info("--model_path is an export folder; using %s", candidate)
            return resolve_model_path(candidate) if name == "saved_model" else candidate
    # TF Serving's layout (export.py --serving_version): <model>/<version>/saved_model.pb.
    versions = [n for n in os.listdir(model_path) if n.isdigit()]
    versions = [n for n in versions if _is_saved_model(os.path.join(model_path, n))]
    if versions:
        latest = os.path.join(model_path, max(versions, key=int))
        logging.info("--model_path holds TF Serving versions; using the latest, %s", latest)
        return latest
    raise ExportError(
        f"--model_path {model_path!r} is a folder without a model: pass the saved_model/ folder, "
        f"frozen_inference_graph.pb or a .tflite file that export.py wrote, or export.py's "
        f"--output_dir holding them ({', '.join(_EXPORTED_MODELS)} not found there)."
    )


def _is_saved_model(path: str) -> bool:
    return any(
        os.path.isfile(os.path.join(path, name)) for name in ("saved_model.pb", "saved_model.pbtxt")
    )


def _load_exported(
    model_path: str,
    config_path: str | None,
    input_shape: str | Sequence | None,
    pad_to_shape: str | Sequence | None,
    num_threads: int | None,
    runtime: str | None = None,
) -> Segmenter:
    if pad_to_shape:
        raise ExportError(
            "--pad_to_shape applies to checkpoints only; an exported model has its padding "
            "built in (set it when running export.py)."
        )
    config_path = config_path or config_util.exported_config_path(model_path)
    num_classes = None
    if config_path:
        num_classes = _config_num_classes(config_util.load_pipeline_config(config_path))
    return open_exported(model_path, num_classes, input_shape, num_threads, runtime)
