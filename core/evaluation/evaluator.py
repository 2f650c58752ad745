"""Evaluation of segmentation checkpoints: mIoU over a split, like the official Cityscapes script.

Pieces, from small to large:

* :class:`SegmentationEvaluator` (detectron2 style ``reset`` / ``process`` /
  ``evaluate``): crops each example's ground truth and prediction back to the
  image's original size (so evaluation padding is never counted) and sums one
  confusion matrix over the whole split (:class:`core.evaluation.metrics.ConfusionMatrix`:
  ignore label excluded, per-class IoU and mIoU as the official script).
* :class:`EvalRunner`: plain values only (a model, a dataset, settings). Restores
  a checkpoint into the model, runs the eval-mode forward pass in a
  ``tf.function``, feeds the evaluator, computes the validation loss (main
  output only), and writes the results: a per-class table on the console,
  ``<eval_dir>/metrics_<step>.json`` and ``metrics_latest.json``, TensorBoard
  summaries in ``eval_dir`` and, optionally, label-id PNGs for the official
  script (:mod:`core.evaluation.cityscapes_export`).
* :mod:`runners.eval_loop` builds a runner from a ``PipelineConfig`` and drives
  it over checkpoints (once, continuously, or from one checkpoint on); that is
  what ``eval.py`` calls.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from absl import logging

from core.checkpoints import checkpoint_utils
from core.data.standard_fields import (
    CITYSCAPES_CLASS_NAMES,
    CITYSCAPES_TRAIN_ID_TO_LABEL_ID,
    IGNORE_LABEL,
    InputDataFields,
)
from core.evaluation import eval_outputs
from core.evaluation.cityscapes_export import PredictionWriter
from core.evaluation.metrics import ConfusionMatrix
from core.training.losses import SoftmaxLossConfig, resize_logits, softmax_cross_entropy
from models import outputs

# Progress is logged every this many images; with ``verbose`` every ``verbose_every``.
_PROGRESS_EVERY = 100


class EvaluationError(ValueError):
    """The evaluation data cannot be scored (bad class ids, corrupt record); names the image."""


# Errors a user can cause (config, checkpoint, data, paths); their messages say what to fix.
# ConfigError, CheckpointError and EvaluationError are ValueErrors.
USER_ERRORS = (ValueError, FileNotFoundError)


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    """Settings of an evaluation run that are not in the pipeline config.

    Attributes:
      image_summaries: write input, ground truth and prediction images of the
        first ``num_image_summaries`` examples to TensorBoard.
      num_image_summaries: how many examples get image summaries.
      verbose: log the running mIoU every ``verbose_every`` images.
      verbose_every: see ``verbose``.
      write_predictions_dir: if set, write one PNG per image there (Cityscapes
        label ids for 19-class models, class ids otherwise), named like the
        input image; rewritten by each evaluated checkpoint.
      num_examples: evaluate at most this many images; None uses
        ``eval_config.num_examples`` (0 there means all).
    """

    image_summaries: bool = False
    num_image_summaries: int = 3
    verbose: bool = False
    verbose_every: int = 10
    write_predictions_dir: str | None = None
    num_examples: int | None = None

    def __post_init__(self) -> None:
        if self.num_examples is not None and self.num_examples < 1:
            raise ValueError(f"num_examples must be >= 1 (or None), got {self.num_examples}.")
        if self.verbose_every < 1:
            raise ValueError(f"verbose_every must be >= 1, got {self.verbose_every}.")


def class_names_for(num_classes: int) -> tuple[str, ...]:
    """Cityscapes' 19 names for a 19-class model, else ``class_0 .. class_<n-1>``."""
    if num_classes == len(CITYSCAPES_CLASS_NAMES):
        return CITYSCAPES_CLASS_NAMES
    return tuple(f"class_{index}" for index in range(num_classes))


def _tf_error_text(error: tf.errors.OpError) -> str:
    """The useful part of a TF runtime error: the assertion's own message, without node dumps."""
    text = error.message
    match = re.search(r"assertion failed: (.*?)(?:\n\s*\[\[|$)", text, re.S)
    if match:
        return match.group(1).strip()
    match = re.search(r"Summarized data: (.*)", text, re.S)
    if match:
        # Eager asserts print b'...' around string parts.
        return re.sub(r"b'([^']*)'", r"\1", match.group(1)).replace("\n", " ").strip()
    return text.strip()


def _decode(path: Any) -> str:
    return path.decode("utf-8", "replace") if isinstance(path, bytes) else str(path)


def crop_examples(
    batch: Mapping[str, Any], predictions: np.ndarray | tf.Tensor
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yields each example's ground truth and prediction at its original size.

    Evaluation padding is added at the bottom/right, so ``[:height, :width]``
    with the batch's original size removes it from both maps.

    Args:
      batch: a dict keyed by ``InputDataFields`` with ``label_mask`` int
        ``[batch, H, W, 1]`` and, optionally, ``input_image_height`` /
        ``input_image_width`` ``[batch]`` (missing: the label size is used) and
        ``input_image_path`` ``[batch]``.
      predictions: integer class ids ``[batch, h, w]``, at least the original size.

    Yields:
      ``(image path, labels [height, width], predictions [height, width])``.

    Raises:
      ValueError: the predictions are smaller than the ground truth.
    """
    labels = np.asarray(batch[InputDataFields.groundtruth])
    predictions = np.asarray(predictions)
    if labels.ndim == 4:
        labels = labels[..., 0]
    if labels.ndim != 3 or predictions.ndim != 3 or len(labels) != len(predictions):
        raise ValueError(
            f"expected labels [batch, H, W(, 1)] and predictions [batch, h, w], got shapes "
            f"{labels.shape} and {predictions.shape}"
        )
    count = len(labels)
    heights = np.asarray(batch.get(InputDataFields.original_height, [labels.shape[1]] * count))
    widths = np.asarray(batch.get(InputDataFields.original_width, [labels.shape[2]] * count))
    paths = np.asarray(batch.get(InputDataFields.image_path, [""] * count))
    for index in range(count):
        # A centre crop (cropped_eval_input) is smaller than the original size.
        height = min(int(heights[index]), labels.shape[1])
        width = min(int(widths[index]), labels.shape[2])
        if predictions.shape[1] < height or predictions.shape[2] < width:
            raise ValueError(
                f"predictions of size {predictions.shape[1:]} are smaller than the ground truth "
                f"[{height}, {width}] of {_decode(paths[index])!r}; resize them to the input "
                "size first."
            )
        yield (
            _decode(paths[index]),
            labels[index, :height, :width],
            predictions[index, :height, :width],
        )


class SegmentationEvaluator:
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
        """Starts a new pass over the split."""
        self._matrix.reset()
        self._num_images = 0

    def process(self, batch: Mapping[str, Any], predictions: np.ndarray | tf.Tensor) -> None:
        """Adds a batch; padding beyond each image's original size is cropped off first.

        Args:
          batch: the input dict (see :func:`crop_examples`).
          predictions: integer class ids ``[batch, h, w]`` (padded or cropped).

        Raises:
          EvaluationError: the ground truth holds a class id outside
            ``[0, num_classes)`` other than the ignore label; names the image
            and the values.
          ValueError: the predictions are smaller than the ground truth.
        """
        for path, labels, classes in crop_examples(batch, predictions):
            try:
                self._matrix.update(labels, classes)
            except tf.errors.InvalidArgumentError as error:
                raise EvaluationError(f"{path or '<image>'}: {_tf_error_text(error)}") from None
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


class EvalRunner:
    """Evaluates checkpoints of one model on one dataset; reusable across checkpoints.

    Args:
      model: a ``SegmentationModel`` (``preprocess`` / ``predict`` contract);
        eval-mode ``predict`` must return ``logits`` ``[batch, h, w, classes]``.
      dataset: batches keyed by ``InputDataFields`` (``input_image`` float32
        ``[batch, H, W, 3]`` possibly padded, ``label_mask``, original sizes,
        paths); iterated once per evaluation.
      num_classes: number of classes.
      ignore_label: ground-truth value that is not evaluated.
      num_examples: evaluate at most this many images (None: all).
      loss_config: settings of the validation loss (main output only).
      options: see :class:`EvalOptions`.
      class_names: one name per class; default :func:`class_names_for`.
    """

    def __init__(
        self,
        model,
        dataset: tf.data.Dataset,
        num_classes: int,
        ignore_label: int = IGNORE_LABEL,
        num_examples: int | None = None,
        loss_config: SoftmaxLossConfig | None = None,
        options: EvalOptions | None = None,
        class_names: Sequence[str] | None = None,
    ):
        self.model = model
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.options = options or EvalOptions()
        self._dataset = dataset if num_examples is None else dataset.take(num_examples)
        self._num_examples = num_examples
        self._evaluator = SegmentationEvaluator(num_classes, ignore_label, class_names)
        self._loss_config = loss_config or SoftmaxLossConfig(num_classes, ignore_label)
        self._writers: dict[str, tf.summary.SummaryWriter] = {}
        self._predictions = None
        if self.options.write_predictions_dir:
            cityscapes = num_classes == len(CITYSCAPES_TRAIN_ID_TO_LABEL_ID)
            if not cityscapes:
                logging.warning(
                    "The model has %d classes, not Cityscapes' 19: the PNGs in %s hold class ids, "
                    "not Cityscapes label ids.",
                    num_classes,
                    self.options.write_predictions_dir,
                )
            self._predictions = PredictionWriter(
                self.options.write_predictions_dir,
                CITYSCAPES_TRAIN_ID_TO_LABEL_ID if cityscapes else None,
            )
        # The models need static input sizes, so this traces once per padded input size.
        self._forward = tf.function(self._forward_fn)
        self._loss = tf.function(self._loss_fn, reduce_retracing=True)

    @property
    def class_names(self) -> tuple[str, ...]:
        """One name per class, in class-id order."""
        return self._evaluator.class_names

    def _forward_fn(
        self, images: tf.Tensor, height: tf.Tensor, width: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Eval-mode logits and class ids, cropped to ``[:height, :width]``.

        Args:
          images: float32 ``[batch, H, W, 3]`` in [0, 255] (padded).
          height, width: int32 scalars, the original size to keep.

        Returns:
          ``(logits [batch, height, width, classes], class ids [batch, height, width])``.
        """
        logits = self.model.predict(self.model.preprocess(images), training=False)[outputs.LOGITS]
        if logits.shape[1:3] != images.shape[1:3]:
            # Input sizes that are not of the 4k+1 / 8k+1 kind give slightly smaller logits; the
            # original resized them bilinearly (aligned corners) to the input as well.
            logits = resize_logits(logits, tf.shape(images)[1:3])
        logits = logits[:, :height, :width, :]
        return logits, tf.argmax(logits, axis=-1, output_type=tf.int32)

    def _loss_fn(self, logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        labels = labels[:, : tf.shape(logits)[1], : tf.shape(logits)[2], :]
        return softmax_cross_entropy(logits, labels, self._loss_config)

    def _batches(self) -> Iterator[dict[str, tf.Tensor]]:
        iterator = iter(self._dataset)
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except tf.errors.InvalidArgumentError as error:
                raise EvaluationError(
                    f"reading the evaluation records failed: {_tf_error_text(error)}"
                ) from None
            yield batch

    def evaluate(self, checkpoint_path: str, eval_dir: str) -> dict[str, Any]:
        """Restores a checkpoint, evaluates it and writes the results.

        Args:
          checkpoint_path: a checkpoint prefix, or a directory (its latest checkpoint).
          eval_dir: where the JSON files and TensorBoard events go.

        Returns:
          The results written to the JSON file (see :mod:`core.evaluation.eval_outputs`),
          plus ``json_path``.

        Raises:
          CheckpointError: the checkpoint is missing or does not fit the model.
          EvaluationError: a record cannot be read or holds invalid class ids.
        """
        prefix = checkpoint_utils.restore_model(self.model, checkpoint_path)
        step = checkpoint_utils.checkpoint_step(prefix)
        logging.info("Evaluating %s (step %s)", prefix, step)
        self._evaluator.reset()
        if self._predictions is not None:
            self._predictions.reset()
        losses, seconds, images = [], [], []
        started = time.perf_counter()
        for batch in self._batches():
            paths = [_decode(p) for p in batch[InputDataFields.image_path].numpy()]
            height = tf.reduce_max(batch[InputDataFields.original_height])
            width = tf.reduce_max(batch[InputDataFields.original_width])
            tick = time.perf_counter()
            logits, predictions = self._forward(batch[InputDataFields.input_image], height, width)
            predictions = predictions.numpy()  # also waits for the device
            seconds.append((time.perf_counter() - tick) / len(paths))
            self._evaluator.process(batch, predictions)  # checks the class ids first
            try:
                losses.append(float(self._loss(logits, batch[InputDataFields.groundtruth])))
            except tf.errors.InvalidArgumentError as error:
                raise EvaluationError(f"{paths[0]}: {_tf_error_text(error)}") from None
            want_images = (
                self.options.image_summaries and len(images) < self.options.num_image_summaries
            )
            if self._predictions is not None or want_images:
                examples = crop_examples(batch, predictions)
                for index, (path, labels, classes) in enumerate(examples):
                    if self._predictions is not None:
                        self._predictions.write(path, classes)
                    if want_images and len(images) < self.options.num_image_summaries:
                        images.append(self._summary_images(batch, index, labels, classes))
            self._log_progress(seconds)
        if not self._evaluator.num_images:
            raise EvaluationError(
                "the evaluation dataset is empty; check eval_input_reader.input_path."
            )
        result = self._evaluator.evaluate()
        # The first image includes tracing the forward pass; leave it out of the speed.
        timed = seconds[1:] or seconds
        extras = {
            "checkpoint": prefix,
            "step": step,
            "num_images": result["num_images"],
            "validation_loss": float(np.mean(losses)),
            "seconds_per_image": float(np.mean(timed)),
            "eval_seconds": time.perf_counter() - started,
            "num_classes": self.num_classes,
            "ignore_label": self.ignore_label,
        }
        if self._predictions is not None:
            extras["predictions_dir"] = self._predictions.output_dir
        payload = eval_outputs.write_results(result, extras, eval_dir)
        eval_outputs.log_results(result, extras)
        writer = self._writer(eval_dir)
        eval_outputs.write_summaries(writer, result, extras, images)
        return payload

    def _summary_images(
        self, batch: Mapping[str, tf.Tensor], index: int, labels: np.ndarray, classes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(input image, coloured ground truth, coloured prediction), uint8 ``[h, w, 3]`` each."""
        height, width = labels.shape
        image = batch[InputDataFields.input_image][index, :height, :width].numpy()
        return (
            np.clip(image, 0, 255).astype(np.uint8),
            eval_outputs.colour_labels(labels, self.num_classes),
            eval_outputs.colour_labels(classes, self.num_classes),
        )

    def _log_progress(self, seconds: list[float]) -> None:
        count = self._evaluator.num_images
        if self.options.verbose and count % self.options.verbose_every == 0:
            logging.info(
                "%d images: running mIoU %.4f, %.3f s per image",
                count,
                self._evaluator.evaluate()["miou"],
                float(np.mean(seconds[1:] or seconds)),
            )
        elif count % _PROGRESS_EVERY == 0:
            total = f"/{self._num_examples}" if self._num_examples else ""
            logging.info("Evaluated %d%s images", count, total)

    def _writer(self, eval_dir: str) -> tf.summary.SummaryWriter:
        if eval_dir not in self._writers:
            self._writers[eval_dir] = tf.summary.create_file_writer(eval_dir)
        return self._writers[eval_dir]


# --------------------------------------------------------------------------- from a config
