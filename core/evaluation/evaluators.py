"""The evaluators of ``eval.py``: mIoU, validation loss, timing, progress, TensorBoard images.

Each is a :class:`core.evaluation.inference.DatasetEvaluator` fed by
:func:`core.evaluation.inference.inference_on_dataset`; the label-id PNG writer is
:class:`core.evaluation.cityscapes_export.PredictionWriter`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from absl import logging

from core.data.standard_fields import IGNORE_LABEL, InputDataFields
from core.datasets import DatasetMetadata, default_metadata
from core.evaluation.inference import (
    CLASSES,
    LOGITS,
    SECONDS,
    DatasetEvaluator,
    EvaluationError,
    crop_examples,
    decode_path,
    tf_error_text,
)
from core.evaluation.metrics import ConfusionMatrix
from core.training.losses import SoftmaxLossConfig, softmax_cross_entropy


def class_names_for(num_classes: int) -> tuple[str, ...]:
    """Class names of a config without a ``dataset`` field (see
    :func:`core.datasets.default_metadata`): Cityscapes' for 19 classes, else ``class_<i>``."""
    return default_metadata(num_classes).class_names


def _classes(outputs: Any) -> np.ndarray:
    """The class ids of ``outputs``: its ``classes`` entry, or ``outputs`` itself (an array)."""
    if isinstance(outputs, Mapping):
        return np.asarray(outputs[CLASSES])
    return np.asarray(outputs)


class SegmentationEvaluator(DatasetEvaluator):
    """Confusion matrix, per-class IoU and mIoU over a whole split.

    Args:
      num_classes: number of classes of the model.
      ignore_label: ground-truth value that is not evaluated.
      class_names: one name per class; default :func:`class_names_for`.
    """

    def __init__(
        self,
        num_classes: int,
        ignore_label: int = IGNORE_LABEL,
        class_names: Sequence[str] | None = None,
    ):
        self.class_names = tuple(class_names or class_names_for(num_classes))
        if len(self.class_names) != num_classes:
            raise ValueError(
                f"{len(self.class_names)} class names for {num_classes} classes; give one per "
                "class."
            )
        self._matrix = ConfusionMatrix(num_classes, ignore_label)
        self._num_images = 0

    def reset(self) -> None:
        self._matrix.reset()
        self._num_images = 0

    def process(self, batch: Mapping[str, Any], outputs: Any) -> None:
        """Adds a batch; padding beyond each image's original size is cropped off first.

        Args:
          batch: the input dict (see :func:`core.evaluation.inference.crop_examples`).
          outputs: the forward outputs (their ``classes``), or integer class ids
            ``[batch, h, w]`` (padded or cropped).

        Raises:
          EvaluationError: the ground truth holds a class id outside
            ``[0, num_classes)`` other than the ignore label; names the image
            and the values.
          ValueError: the predictions are smaller than the ground truth.
        """
        for path, labels, classes in crop_examples(batch, _classes(outputs)):
            try:
                self._matrix.update(labels, classes)
            except tf.errors.InvalidArgumentError as error:
                raise EvaluationError(f"{path or '<image>'}: {tf_error_text(error)}") from None
            self._num_images += 1

    @property
    def num_images(self) -> int:
        """Images processed since the last reset."""
        return self._num_images

    def evaluate(self) -> dict[str, Any]:
        """The scores of :meth:`core.evaluation.metrics.ConfusionMatrix.result`, plus
        ``class_names`` and ``num_images``."""
        result = self._matrix.result()
        result["class_names"] = self.class_names
        result["num_images"] = self._num_images
        return result


class ValidationLossEvaluator(DatasetEvaluator):
    """Mean softmax cross-entropy of the main logits over the batches: ``validation_loss``.

    Args:
      loss_config: the loss settings (class count, ignore label, class weights).
    """

    def __init__(self, loss_config: SoftmaxLossConfig):
        self._config = loss_config
        self._loss = tf.function(self._loss_fn, reduce_retracing=True)
        self._losses: list[float] = []

    def _loss_fn(self, logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        labels = labels[:, : tf.shape(logits)[1], : tf.shape(logits)[2], :]
        return softmax_cross_entropy(logits, labels, self._config)

    def reset(self) -> None:
        self._losses = []

    def process(self, batch: Mapping[str, Any], outputs: Mapping[str, Any]) -> None:
        """Adds the loss of the batch's ``logits`` ``[batch, h, w, classes]``."""
        try:
            loss = self._loss(outputs[LOGITS], batch[InputDataFields.groundtruth])
        except tf.errors.InvalidArgumentError as error:
            paths = batch.get(InputDataFields.image_path, [b"<image>"])
            path = decode_path(np.asarray(paths)[0])
            raise EvaluationError(f"{path}: {tf_error_text(error)}") from None
        self._losses.append(float(loss))

    def evaluate(self) -> dict[str, Any]:
        return {"validation_loss": float(np.mean(self._losses)) if self._losses else float("nan")}


class TimingEvaluator(DatasetEvaluator):
    """Forward-pass seconds per image: ``seconds_per_image``.

    The first batch includes tracing the forward pass, so it is left out when there are more.
    """

    def __init__(self):
        self.seconds: list[float] = []

    def reset(self) -> None:
        self.seconds = []

    def process(self, batch: Mapping[str, Any], outputs: Mapping[str, Any]) -> None:
        count = len(np.asarray(batch[InputDataFields.groundtruth]))
        self.seconds.append(outputs[SECONDS] / max(count, 1))

    @property
    def seconds_per_image(self) -> float:
        timed = self.seconds[1:] or self.seconds
        return float(np.mean(timed)) if timed else float("nan")

    def evaluate(self) -> dict[str, Any]:
        return {"seconds_per_image": self.seconds_per_image}


class ProgressLogger(DatasetEvaluator):
    """Logs progress: every ``every`` images, or with ``verbose`` the running mIoU.

    Args:
      scores: the evaluator whose image count and running mIoU are logged (it must come
        before this one in the list).
      timing: gives the time per image so far.
      total: the number of images expected, for the message (None: unknown).
      verbose: log the running mIoU every ``verbose_every`` images.
      verbose_every: see ``verbose``.
      every: without ``verbose``, log the count every this many images.
    """

    def __init__(
        self,
        scores: SegmentationEvaluator,
        timing: TimingEvaluator,
        total: int | None = None,
        verbose: bool = False,
        verbose_every: int = 10,
        every: int = 100,
    ):
        self._scores, self._timing = scores, timing
        self._total, self._verbose = total, verbose
        self._verbose_every, self._every = verbose_every, every

    def process(self, batch: Mapping[str, Any], outputs: Mapping[str, Any]) -> None:
        count = self._scores.num_images
        if self._verbose and count % self._verbose_every == 0:
            logging.info(
                "%d images: running mIoU %.4f, %.3f s per image",
                count,
                self._scores.evaluate()["miou"],
                self._timing.seconds_per_image,
            )
        elif count % self._every == 0:
            total = f"/{self._total}" if self._total else ""
            logging.info("Evaluated %d%s images", count, total)


def colour_labels(labels: np.ndarray, metadata: DatasetMetadata) -> np.ndarray:
    """Colours a class-id map with the dataset's palette; the ignore label is black.

    Args:
      labels: integer ``[height, width]`` class ids; ids ``>= num_classes`` are drawn black.
      metadata: gives the palette.

    Returns:
      uint8 ``[height, width, 3]``.
    """
    labels = np.asarray(labels)
    valid = (labels >= 0) & (labels < metadata.num_classes)
    return metadata.palette_lut()[np.where(valid, labels, 255).astype(np.uint8)]


class ImageSummaryCollector(DatasetEvaluator):
    """Keeps (input, coloured ground truth, coloured prediction) of the first images.

    Args:
      metadata: the palette used for both maps.
      max_images: how many examples to keep.
    """

    def __init__(self, metadata: DatasetMetadata, max_images: int = 3):
        self._metadata = metadata
        self._max_images = max_images
        self.images: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def reset(self) -> None:
        self.images = []

    def process(self, batch: Mapping[str, Any], outputs: Mapping[str, Any]) -> None:
        if len(self.images) >= self._max_images:
            return
        inputs = np.asarray(batch[InputDataFields.input_image])
        for index, (_, labels, classes) in enumerate(crop_examples(batch, _classes(outputs))):
            if len(self.images) >= self._max_images:
                return
            height, width = labels.shape
            self.images.append(
                (
                    np.clip(inputs[index, :height, :width], 0, 255).astype(np.uint8),
                    colour_labels(labels, self._metadata),
                    colour_labels(classes, self._metadata),
                )
            )
