"""One evaluation loop: run a model's eval-mode forward over a dataset and feed evaluators.

The idea is detectron2's ``inference_on_dataset``: the loop knows how to run the model and
nothing about what is measured; everything measured is a :class:`DatasetEvaluator`
(``reset`` / ``process`` / ``evaluate``). ``eval.py`` (mIoU, validation loss, label-id PNGs,
TensorBoard images, timing), the pruning sensitivity analysis (mIoU only) and the demo all
score a model through :func:`inference_on_dataset`.

A sketch::

    forward = EvalForward(model)            # traced once per padded input size; reuse it
    evaluator = SegmentationEvaluator(num_classes, ignore_label)
    results = inference_on_dataset(forward, eval_dataset, [evaluator])
    results["miou"], results["num_images"]

Each evaluator's ``process(batch, outputs)`` gets the batch as read (keyed by
:class:`core.data.standard_fields.InputDataFields`) and ``outputs``:

* ``outputs["logits"]``: float32 ``tf.Tensor`` ``[batch, height, width, num_classes]``, eval-mode
  logits resized to the padded input when smaller and cropped to the batch's largest original
  size (``height``, ``width``);
* ``outputs["classes"]``: int32 numpy ``[batch, height, width]``, their argmax;
* ``outputs["seconds"]``: wall time of the forward pass of this batch, device included.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from core.data.standard_fields import InputDataFields
from core.training.losses import resize_logits
from models import outputs as model_outputs

LOGITS = "logits"
CLASSES = "classes"
SECONDS = "seconds"

# A forward function: one batch in, ``{"logits": ..., "classes": ...}`` out (see module doc).
ForwardFn = Callable[[Mapping[str, Any]], Mapping[str, Any]]


class EvaluationError(ValueError):
    """The evaluation data cannot be scored (bad class ids, corrupt record); names the image."""


class DatasetEvaluator:
    """Base of everything measured over a dataset; subclasses override what they need.

    :func:`inference_on_dataset` calls ``reset()`` once, ``process(batch, outputs)`` for every
    batch in order, then ``evaluate()`` once; evaluators are called in list order, so one can
    read another's state (a progress logger reading the running mIoU).
    """

    def reset(self) -> None:
        """Forgets everything processed so far (a new pass over the data)."""

    def process(self, batch: Mapping[str, Any], outputs: Mapping[str, Any]) -> None:
        """Takes one batch and the model's outputs on it (see the module docstring)."""
        raise NotImplementedError

    def evaluate(self) -> dict[str, Any] | None:
        """The results of the pass; their keys must differ from the other evaluators'."""
        return None


def tf_error_text(error: tf.errors.OpError) -> str:
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


def decode_path(path: Any) -> str:
    """A batch's ``input_image_path`` entry as text."""
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
                f"[{height}, {width}] of {decode_path(paths[index])!r}; resize them to the input "
                "size first."
            )
        yield (
            decode_path(paths[index]),
            labels[index, :height, :width],
            predictions[index, :height, :width],
        )


class EvalForward:
    """The eval-mode forward pass of a model, as a reusable :data:`ForwardFn`.

    Build it once and pass it to every :func:`inference_on_dataset` call: its ``tf.function``
    traces once per padded input size (the models need static sizes), so scoring the same
    model many times (pruning sensitivity) does not retrace.

    Args:
      model: a ``SegmentationModel`` (``preprocess`` / ``predict`` contract); eval-mode
        ``predict`` returns ``logits`` ``[batch, h, w, num_classes]``.
    """

    def __init__(self, model):
        self.model = model
        self._forward = tf.function(self._forward_fn)

    def _forward_fn(
        self, images: tf.Tensor, height: tf.Tensor, width: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Logits ``[batch, height, width, classes]`` and class ids ``[batch, height, width]``."""
        logits = self.model.predict(self.model.preprocess(images), training=False)
        logits = logits[model_outputs.LOGITS]
        if logits.shape[1:3] != images.shape[1:3]:
            # Input sizes that are not of the 4k+1 / 8k+1 kind give slightly smaller logits; the
            # original resized them bilinearly (aligned corners) to the input as well.
            logits = resize_logits(logits, tf.shape(images)[1:3])
        logits = logits[:, :height, :width, :]
        return logits, tf.argmax(logits, axis=-1, output_type=tf.int32)

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Runs one batch: ``input_image`` float32 ``[batch, H, W, 3]`` in [0, 255] (padded).

        Returns:
          ``{"logits": tf.Tensor, "classes": tf.Tensor}`` cropped to the batch's largest
          original size (``input_image_height`` / ``_width``; the input size without them).
        """
        images = tf.convert_to_tensor(batch[InputDataFields.input_image], tf.float32)
        shape = tf.shape(images)
        height = tf.reduce_max(batch.get(InputDataFields.original_height, shape[1:2]))
        width = tf.reduce_max(batch.get(InputDataFields.original_width, shape[2:3]))
        logits, classes = self._forward(images, tf.cast(height, tf.int32), tf.cast(width, tf.int32))
        return {LOGITS: logits, CLASSES: classes}


def _batches(batches: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """The batches, with a record that fails to decode turned into an :class:`EvaluationError`."""
    iterator = iter(batches)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except tf.errors.InvalidArgumentError as error:
            raise EvaluationError(
                f"reading the evaluation records failed: {tf_error_text(error)}"
            ) from None
        yield batch


def inference_on_dataset(
    model_or_forward: Any,
    batches: Iterable[Mapping[str, Any]],
    evaluators: Iterable[DatasetEvaluator],
) -> dict[str, Any]:
    """Runs the eval-mode forward over every batch, feeds the evaluators, merges their results.

    Args:
      model_or_forward: a ``SegmentationModel`` (wrapped in a new :class:`EvalForward`, so
        traced on this call), or a :data:`ForwardFn` such as an :class:`EvalForward` built
        once and reused.
      batches: one pass of batches keyed by ``InputDataFields`` (a ``tf.data.Dataset`` or
        any iterable of dicts).
      evaluators: called in this order for every batch.

    Returns:
      The union of the evaluators' ``evaluate()`` dicts (None counts as empty).

    Raises:
      EvaluationError: a record cannot be read, or ``batches`` is empty.
      ValueError: two evaluators return the same key.
    """
    forward = model_or_forward
    if hasattr(model_or_forward, "predict") and hasattr(model_or_forward, "preprocess"):
        forward = EvalForward(model_or_forward)
    evaluators = list(evaluators)
    for evaluator in evaluators:
        evaluator.reset()
    count = 0
    for batch in _batches(batches):
        tick = time.perf_counter()
        outputs = dict(forward(batch))
        # numpy() waits for the device, so the time below is the whole forward pass.
        outputs[CLASSES] = np.asarray(outputs[CLASSES])
        outputs[SECONDS] = time.perf_counter() - tick
        for evaluator in evaluators:
            evaluator.process(batch, outputs)
        count += 1
    if not count:
        raise EvaluationError(
            "the evaluation dataset is empty; check eval_input_reader.input_path."
        )
    results: dict[str, Any] = {}
    owners: dict[str, str] = {}
    for evaluator in evaluators:
        for key, value in (evaluator.evaluate() or {}).items():
            if key in results:
                raise ValueError(
                    f"evaluators {owners[key]} and {type(evaluator).__name__} both return "
                    f"{key!r}; give one of them another key."
                )
            results[key] = value
            owners[key] = type(evaluator).__name__
    return results
