"""Streaming confusion matrix and the Cityscapes-style IoU metrics derived from it.

The metric follows the official Cityscapes script
(``cityscapesscripts/evaluation/evalPixelLevelSemanticLabeling.py``):

* one confusion matrix (rows = ground truth, columns = prediction) is summed
  over the whole split, not averaged per image;
* pixels whose ground truth is the ignore label (trainId 255) are skipped, so
  a prediction there is neither a true nor a false positive;
* per-class ``IoU = TP / (TP + FP + FN)``;
* a class with ``TP + FP + FN == 0`` (absent from both the ground truth and the
  predictions) gets NaN and is left out of the mean, as the script's
  ``getScoreAverage`` skips NaN. A class absent from the ground truth but
  predicted somewhere has ``TP = FN = 0 < FP``, so IoU 0, and it *does* count
  in the mean, as in the script;
* ``mIoU`` is the mean over the classes that are not NaN.

The original's ``tf.contrib.metrics.streaming_mean_iou`` (labels equal to the
ignore label given weight 0) gives the same mIoU: it also averages over the
classes with a non-zero denominator only.

Ground-truth values other than the ignore label outside ``[0, num_classes)``
raise an error rather than being dropped silently: they mean a wrong
``num_classes`` or a wrong label mapping. An ignore label inside
``[0, num_classes)`` (e.g. 0 for "background") is allowed: that class is then
never evaluated and its scores are NaN, like the script's ``ignoreInEval``
classes, while predicting it on a counted pixel is still a false negative of
the pixel's true class.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from absl import logging

from core import file_utils
from core.data.label_checks import assert_labels_in_range


def confusion_matrix(
    labels: tf.Tensor | np.ndarray,
    predictions: tf.Tensor | np.ndarray,
    num_classes: int,
    ignore_label: int = 255,
) -> tf.Tensor:
    """The confusion matrix of one batch; runs eagerly and inside ``tf.function``.

    Args:
      labels: integer ground truth of any shape, e.g. ``[batch, height, width, 1]``;
        values in ``[0, num_classes)`` or ``ignore_label``.
      predictions: integer class ids in ``[0, num_classes)`` with as many elements
        as ``labels``, e.g. ``[batch, height, width]``.
      num_classes: number of classes.
      ignore_label: ground-truth value of the pixels that are not evaluated.

    Returns:
      int64 ``[num_classes, num_classes]``; entry ``[i, j]`` counts the
      non-ignored pixels of ground truth ``i`` predicted as ``j``.

    Raises:
      ValueError: if the static element counts differ.
      tf.errors.InvalidArgumentError: if the counts differ at run time, or a
        ground-truth value (other than ``ignore_label``) or a prediction is
        outside ``[0, num_classes)``.
    """
    labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
    predictions = tf.reshape(tf.cast(predictions, tf.int32), [-1])
    if (
        labels.shape.is_fully_defined()
        and predictions.shape.is_fully_defined()
        and labels.shape[0] != predictions.shape[0]
    ):
        raise ValueError(
            f"labels have {labels.shape[0]} elements but predictions {predictions.shape[0]}; "
            "resize the predictions to the label size before updating the metric."
        )
    size_check = tf.debugging.assert_equal(
        tf.size(labels),
        tf.size(predictions),
        message="labels and predictions have different numbers of pixels",
    )
    counted, label_check = assert_labels_in_range(
        labels, num_classes, ignore_label, "eval_config.ignore_label"
    )
    bad_predictions = tf.logical_or(predictions < 0, predictions >= num_classes)
    prediction_check = tf.debugging.Assert(
        tf.logical_not(tf.reduce_any(bad_predictions)),
        [
            f"Predictions hold class ids outside [0, {num_classes}):",
            tf.unique(tf.boolean_mask(predictions, bad_predictions))[0],
        ],
        summarize=20,
    )
    with tf.control_dependencies([size_check, label_check, prediction_check]):
        # One bincount over ``gt * C + pred`` fills the flattened matrix.
        cells = tf.boolean_mask(labels * num_classes + predictions, counted)
    counts = tf.math.bincount(
        cells,
        minlength=num_classes * num_classes,
        maxlength=num_classes * num_classes,
        dtype=tf.int64,
    )
    return tf.reshape(counts, [num_classes, num_classes])


def scores_from_confusion_matrix(
    matrix: np.ndarray, ignored_classes: Sequence[int] = ()
) -> dict[str, Any]:
    """Per-class and mean scores of a confusion matrix.

    Args:
      matrix: integer ``[num_classes, num_classes]``, rows = ground truth,
        columns = prediction.
      ignored_classes: class ids that are never evaluated (an ignore label
        inside ``[0, num_classes)``); their IoU and accuracy are NaN.

    Returns:
      A dict with
        ``confusion_matrix``: int64 ``[C, C]`` (a copy);
        ``iou``: float64 ``[C]``, ``TP / (TP + FP + FN)``, NaN where that is 0/0;
        ``miou``: float, the mean of the non-NaN IoUs (NaN if all are NaN);
        ``class_accuracy``: float64 ``[C]``, ``TP / (TP + FN)``, NaN for classes
          absent from the ground truth;
        ``mean_class_accuracy``: float, the mean of its non-NaN values;
        ``pixel_accuracy``: float, ``sum(TP) / counted pixels`` (NaN if none);
        ``gt_pixels``, ``predicted_pixels``: int64 ``[C]`` row and column sums;
        ``num_pixels``: int, the number of counted pixels.
    """
    matrix = np.asarray(matrix, dtype=np.int64).copy()
    true_positives = np.diag(matrix).astype(np.float64)
    gt_pixels = matrix.sum(axis=1)
    predicted_pixels = matrix.sum(axis=0)
    union = gt_pixels + predicted_pixels - np.diag(matrix)
    num_pixels = int(matrix.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, true_positives / union, np.nan)
        class_accuracy = np.where(gt_pixels > 0, true_positives / gt_pixels, np.nan)
    ignored = list(ignored_classes)
    iou[ignored] = np.nan
    class_accuracy[ignored] = np.nan
    return {
        "confusion_matrix": matrix,
        "iou": iou,
        "miou": _nanmean(iou),
        "class_accuracy": class_accuracy,
        "mean_class_accuracy": _nanmean(class_accuracy),
        "pixel_accuracy": float(true_positives.sum() / num_pixels) if num_pixels else math.nan,
        "gt_pixels": gt_pixels,
        "predicted_pixels": predicted_pixels,
        "num_pixels": num_pixels,
    }


def _nanmean(values: np.ndarray) -> float:
    # np.nanmean warns on an all-NaN input; an empty evaluation is not an error here.
    valid = values[~np.isnan(values)]
    return float(valid.mean()) if valid.size else math.nan


class ConfusionMatrix:
    """A confusion matrix accumulated over a whole evaluation split.

    ``reset()`` starts over, ``update(labels, predictions)`` adds a batch (eagerly
    or from inside a ``tf.function``), ``result()`` returns the scores of
    :func:`scores_from_confusion_matrix`. The counts live in an int64
    ``tf.Variable``, so a split of any size cannot overflow them.

    Args:
      num_classes: number of classes, > 0.
      ignore_label: ground-truth value of the pixels that are not evaluated.
    """

    def __init__(self, num_classes: int, ignore_label: int = 255):
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        # ON_READ + SUM: under a tf.distribute strategy each replica counts its
        # own pixels and reading the variable sums them, like Keras metrics.
        self._matrix = tf.Variable(
            tf.zeros([num_classes, num_classes], tf.int64),
            trainable=False,
            name="confusion_matrix",
            synchronization=tf.VariableSynchronization.ON_READ,
            aggregation=tf.VariableAggregation.SUM,
        )

    def reset(self) -> None:
        """Zeroes the counts."""
        self._matrix.assign(tf.zeros_like(self._matrix))

    def update(self, labels: tf.Tensor | np.ndarray, predictions: tf.Tensor | np.ndarray) -> None:
        """Adds one batch to the counts (per replica under a distribution strategy).

        Args:
          labels: integer ground truth, e.g. ``[batch, height, width, 1]``.
          predictions: integer class ids with as many elements, e.g.
            ``[batch, height, width]``.
        """
        batch = confusion_matrix(labels, predictions, self.num_classes, self.ignore_label)
        self._matrix.assign_add(batch)

    @property
    def matrix(self) -> np.ndarray:
        """The accumulated int64 ``[num_classes, num_classes]`` counts."""
        return self._matrix.numpy()

    def result(self) -> dict[str, Any]:
        """Scores of the counts so far; see :func:`scores_from_confusion_matrix`."""
        ignored = [self.ignore_label] if 0 <= self.ignore_label < self.num_classes else []
        result = scores_from_confusion_matrix(self.matrix, ignored)
        if result["num_pixels"] == 0:
            logging.warning("ConfusionMatrix.result() called with no counted pixels; mIoU is NaN.")
        return result


def _check_names(result: dict[str, Any], class_names: Sequence[str]) -> None:
    num_classes = len(result["iou"])
    if len(class_names) != num_classes:
        raise ValueError(
            f"class_names has {len(class_names)} names for {num_classes} classes; pass one "
            "name per class, in class-id order."
        )
    if len(set(class_names)) != len(class_names):
        raise ValueError(f"class_names has duplicates: {list(class_names)}")


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100.0 * value:.2f}"


def format_table(result: dict[str, Any], class_names: Sequence[str]) -> str:
    """A per-class table for the console.

    Args:
      result: the output of :meth:`ConfusionMatrix.result`.
      class_names: one name per class, in class-id order.

    Returns:
      Aligned columns (class, IoU %, accuracy %, ground-truth and predicted
      pixel counts), one row per class ("n/a" where the score is NaN), then the
      mIoU and the pixel accuracy. No trailing newline.
    """
    _check_names(result, class_names)
    name_width = max([len("class"), len("pixel acc"), *(len(name) for name in class_names)])
    header = (
        f"{'class':<{name_width}}  {'IoU %':>7}  {'acc %':>7}  {'gt pixels':>13}  "
        f"{'pred pixels':>13}"
    )
    rule = "-" * len(header)
    lines = [header, rule]
    for index, name in enumerate(class_names):
        lines.append(
            f"{name:<{name_width}}  {_percent(result['iou'][index]):>7}  "
            f"{_percent(result['class_accuracy'][index]):>7}  "
            f"{int(result['gt_pixels'][index]):>13,}  "
            f"{int(result['predicted_pixels'][index]):>13,}"
        )
    lines.append(rule)
    lines.append(f"{'mIoU':<{name_width}}  {_percent(result['miou']):>7}")
    lines.append(f"{'pixel acc':<{name_width}}  {_percent(result['pixel_accuracy']):>7}")
    return "\n".join(lines)


def _json_float(value: float) -> float | None:
    # NaN is not valid JSON; null marks "not defined" (class absent everywhere).
    value = float(value)
    return None if math.isnan(value) else value


def write_json(
    result: dict[str, Any],
    path: str,
    class_names: Sequence[str],
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Writes the scores as JSON atomically (a reader never sees a partial file).

    The file holds ``miou``, ``pixel_accuracy``, ``mean_class_accuracy``,
    ``num_pixels``, ``classes`` (``{name: {iou, accuracy, gt_pixels,
    predicted_pixels}}`` in class-id order), ``class_names`` and
    ``confusion_matrix`` (rows = ground truth). Undefined scores are ``null``.

    Args:
      result: the output of :meth:`ConfusionMatrix.result`.
      path: the JSON file to write; its directory is created if needed.
      class_names: one name per class, in class-id order.
      extra: JSON-serialisable fields written first (e.g. the checkpoint and step).

    Returns:
      ``path``.
    """
    _check_names(result, class_names)
    payload = dict(extra or {})
    payload.update(
        {
            "miou": _json_float(result["miou"]),
            "pixel_accuracy": _json_float(result["pixel_accuracy"]),
            "mean_class_accuracy": _json_float(result["mean_class_accuracy"]),
            "num_pixels": int(result["num_pixels"]),
            "classes": {
                name: {
                    "iou": _json_float(result["iou"][index]),
                    "accuracy": _json_float(result["class_accuracy"][index]),
                    "gt_pixels": int(result["gt_pixels"][index]),
                    "predicted_pixels": int(result["predicted_pixels"][index]),
                }
                for index, name in enumerate(class_names)
            },
            "class_names": list(class_names),
            "confusion_matrix": np.asarray(result["confusion_matrix"]).tolist(),
        }
    )
    return file_utils.atomic_write_text(path, json.dumps(payload, indent=2, allow_nan=False) + "\n")
