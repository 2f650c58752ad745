"""Where evaluation results go: JSON files, the console and TensorBoard.

* ``<eval_dir>/metrics_<step>.json`` (and a copy, ``metrics_latest.json``):
  the checkpoint, its step, the ``forward`` evaluated (``float``, or
  ``simulated_int8`` for a quantization-aware-training checkpoint at or past
  ``quantize_with_delay``, which is then recorded too), the number of images,
  the validation loss, the time per image, then the scores of
  :func:`core.evaluation.metrics.write_json`
  (``miou``, ``pixel_accuracy``, ``classes: {name: {iou, accuracy, ...}}``,
  ``confusion_matrix``, ...). Undefined scores are ``null``. Files are
  replaced atomically, so a reader never sees a partial one.
* The console: the per-class table of :func:`core.evaluation.metrics.format_table`.
* TensorBoard event files in ``eval_dir``, at the checkpoint's step: scalars
  ``EvalMetrics/mIoU``, ``EvalMetrics/PixelAccuracy``,
  ``EvalMetrics/MeanClassAccuracy``, ``EvalMetrics/IoU/<class>`` (spaces in
  names become ``_``; classes absent from ground truth and predictions are
  skipped), ``Losses/EvalValidationLoss``, ``Timing/SecondsPerImage`` and
  ``Quantization/SimulatedInt8`` (1: the fake-quantized forward, 0: float);
  optionally images ``EvalImages/<n>/InputImage``, ``.../GroundtruthImage``
  and ``.../PredictionImage``.

The summaries are written with ``tf.summary.write`` and TensorBoard's plugin
metadata rather than ``tf.summary.scalar`` / ``image``: those live in the
``tensorboard`` package, which ``tensorflow-cpu`` 2.21 does not install.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from absl import logging

from core.evaluation import metrics
from core.training import summaries

LATEST_JSON = "metrics_latest.json"


def results_filename(step: int | None, checkpoint: str) -> str:
    """``metrics_<step>.json``, or ``metrics_<checkpoint name>.json`` without a step."""
    tag = str(step) if step is not None else os.path.basename(checkpoint)
    return f"metrics_{tag}.json"


def _finite_or_none(value: Any) -> Any:
    # JSON has no NaN; null marks "not defined", as in metrics.write_json.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_results(
    result: Mapping[str, Any], extras: Mapping[str, Any], eval_dir: str
) -> dict[str, Any]:
    """Writes ``metrics_<step>.json`` and ``metrics_latest.json``.

    Args:
      result: :meth:`core.evaluation.evaluator.SegmentationEvaluator.evaluate` output
        (scores plus ``class_names``).
      extras: run facts to put first (``checkpoint``, ``step``, ``num_images``, ...).
      eval_dir: the folder to write into (created if needed).

    Returns:
      The payload written, plus ``json_path``.
    """
    extra = {key: _finite_or_none(value) for key, value in extras.items()}
    path = os.path.join(eval_dir, results_filename(extras.get("step"), extras["checkpoint"]))
    for target in (path, os.path.join(eval_dir, LATEST_JSON)):
        metrics.write_json(dict(result), target, result["class_names"], extra=extra)
    with open(path) as stream:
        payload = json.load(stream)
    return {**payload, "json_path": path}


def log_results(result: Mapping[str, Any], extras: Mapping[str, Any]) -> None:
    """Logs the per-class table, the validation loss and the time per image."""
    logging.info(
        "Results of %s (step %s, %s forward) on %d images:\n%s\nvalidation loss %.4f, %.4f s "
        "per image (forward pass)",
        extras["checkpoint"],
        extras["step"],
        extras.get("forward", "float"),
        extras["num_images"],
        metrics.format_table(result, result["class_names"]),
        extras["validation_loss"],
        extras["seconds_per_image"],
    )


def _scalar(tag: str, value: float | None, step: int) -> None:
    if value is None or not math.isfinite(value):
        return  # undefined scores would only draw gaps and spikes
    summaries.write_scalar(tag, value, step)


def write_summaries(
    writer: tf.summary.SummaryWriter,
    result: Mapping[str, Any],
    extras: Mapping[str, Any],
    images: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]] = (),
) -> None:
    """Writes the TensorBoard summaries of one evaluation at the checkpoint's step.

    Args:
      writer: a summary writer on ``eval_dir``.
      result: scores plus ``class_names`` (see :func:`write_results`).
      extras: run facts with ``step``, ``validation_loss`` and ``seconds_per_image``.
      images: ``(input, ground truth, prediction)`` uint8 ``[h, w, 3]`` triples.
    """
    step = extras.get("step") or 0
    with writer.as_default(step=step):
        _scalar("EvalMetrics/mIoU", result["miou"], step)
        _scalar("EvalMetrics/PixelAccuracy", result["pixel_accuracy"], step)
        _scalar("EvalMetrics/MeanClassAccuracy", result["mean_class_accuracy"], step)
        for name, iou in zip(result["class_names"], result["iou"], strict=True):
            _scalar(f"EvalMetrics/IoU/{name.replace(' ', '_')}", float(iou), step)
        _scalar("Losses/EvalValidationLoss", extras["validation_loss"], step)
        _scalar("Timing/SecondsPerImage", extras["seconds_per_image"], step)
        if "forward" in extras:
            _scalar("Quantization/SimulatedInt8", float(extras["forward"] != "float"), step)
        for index, (image, groundtruth, prediction) in enumerate(images):
            for name, picture in (
                ("InputImage", image),
                ("GroundtruthImage", groundtruth),
                ("PredictionImage", prediction),
            ):
                summaries.write_images(f"EvalImages/{index}/{name}", picture[None], step)
    writer.flush()
