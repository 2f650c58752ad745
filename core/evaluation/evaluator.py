"""Evaluation of segmentation checkpoints: mIoU over a split, like the official Cityscapes script.

Pieces, from small to large:

* :func:`core.evaluation.inference.inference_on_dataset`: the one evaluation loop (eval-mode
  forward over every batch, cropped to each image's original size) feeding
  :class:`~core.evaluation.inference.DatasetEvaluator` s.
* The evaluators (:mod:`core.evaluation.evaluators`): :class:`SegmentationEvaluator` (one
  confusion matrix over the whole split: ignore label excluded, per-class IoU and mIoU as the
  official script), the validation loss (main output only), timing, progress, TensorBoard
  images; and the label-id PNG writer (:class:`core.evaluation.cityscapes_export.PredictionWriter`).
* :class:`EvalRunner`: plain values only (a model, a dataset, the dataset's metadata,
  settings). Restores a checkpoint into the model, runs the loop with those evaluators and
  writes the results: a per-class table on the console, ``<eval_dir>/metrics_<step>.json`` and
  ``metrics_latest.json``, TensorBoard summaries in ``eval_dir`` and, optionally, label-id PNGs
  for the official script.
* :mod:`runners.eval_loop` builds a runner from a ``PipelineConfig`` and drives it over
  checkpoints (once, continuously, or from one checkpoint on); that is what ``eval.py`` calls.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import tensorflow as tf
from absl import logging

from core.checkpoints import checkpoint_utils
from core.data.standard_fields import IGNORE_LABEL
from core.datasets import DatasetMetadata, default_metadata
from core.evaluation import eval_outputs
from core.evaluation.cityscapes_export import PredictionWriter
from core.evaluation.evaluators import (
    ImageSummaryCollector,
    ProgressLogger,
    SegmentationEvaluator,
    TimingEvaluator,
    ValidationLossEvaluator,
    class_names_for,
)
from core.evaluation.inference import (
    DatasetEvaluator,
    EvalForward,
    EvaluationError,
    crop_examples,
    inference_on_dataset,
)
from core.evaluation.quantized_eval import FLOAT, SIMULATED_INT8, QuantizedEvaluation
from core.training.losses import SoftmaxLossConfig

__all__ = [
    "USER_ERRORS",
    "DatasetEvaluator",
    "EvalOptions",
    "EvalRunner",
    "EvaluationError",
    "SegmentationEvaluator",
    "class_names_for",
    "crop_examples",
    "inference_on_dataset",
]

# Progress is logged every this many images; with ``verbose`` every ``verbose_every``.
_PROGRESS_EVERY = 100

# Errors a user can cause (config, checkpoint, data, paths); their messages say what to fix.
# ConfigError, CheckpointError and EvaluationError are ValueErrors.
USER_ERRORS = (ValueError, FileNotFoundError)
# Results of the other evaluators, which go to the JSON's run facts rather than its scores.
_RUN_FACTS = ("validation_loss", "seconds_per_image", "predictions_dir")


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    """Settings of an evaluation run that are not in the pipeline config.

    Attributes:
      image_summaries: write input, ground truth and prediction images of the
        first ``num_image_summaries`` examples to TensorBoard.
      num_image_summaries: how many examples get image summaries.
      verbose: log the running mIoU every ``verbose_every`` images.
      verbose_every: see ``verbose``.
      write_predictions_dir: if set, write one PNG per image there (the dataset's
        official label ids when it has them, e.g. Cityscapes; class ids otherwise), named
        like the input image; rewritten by each evaluated checkpoint.
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
      class_names: one name per class; default the metadata's.
      metadata: the dataset's names, palette and label ids; default
        :func:`core.datasets.default_metadata`.
      quantize_with_delay: the training's ``train_config.quantize_with_delay``; > 0 attaches
        its fake quantization to ``model`` and evaluates each checkpoint at or past that step
        as the simulated int8 model (:mod:`core.evaluation.quantized_eval`); 0: float.
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
        metadata: DatasetMetadata | None = None,
        quantize_with_delay: int = 0,
    ):
        self.model = model
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.options = options or EvalOptions()
        self.metadata = metadata or default_metadata(num_classes)
        if self.metadata.num_classes != num_classes:
            raise ValueError(
                f"dataset {self.metadata.name!r} has {self.metadata.num_classes} classes but the "
                f"model has {num_classes}; make them agree."
            )
        self._dataset = dataset if num_examples is None else dataset.take(num_examples)
        self._scores = SegmentationEvaluator(
            num_classes, ignore_label, class_names or self.metadata.class_names
        )
        self._timing = TimingEvaluator()
        self._images = None
        loss = ValidationLossEvaluator(loss_config or SoftmaxLossConfig(num_classes, ignore_label))
        self._evaluators: list[DatasetEvaluator] = [self._scores, loss, self._timing]
        if self.options.write_predictions_dir:
            if self.metadata.label_ids is None:
                logging.warning(
                    "Dataset %r has no official label ids: the PNGs in %s hold class ids.",
                    self.metadata.name,
                    self.options.write_predictions_dir,
                )
            self._evaluators.append(
                PredictionWriter(self.options.write_predictions_dir, self.metadata.label_ids)
            )
        if self.options.image_summaries:
            self._images = ImageSummaryCollector(self.metadata, self.options.num_image_summaries)
            self._evaluators.append(self._images)
        self._evaluators.append(
            ProgressLogger(
                self._scores,
                self._timing,
                total=num_examples,
                verbose=self.options.verbose,
                verbose_every=self.options.verbose_every,
                every=_PROGRESS_EVERY,
            )
        )
        # Traced once per padded input size, and kept across checkpoints. The quantizers'
        # switch is read while tracing, so the simulated int8 forward has its own function.
        self._quantized = None
        self._int8_forward = None
        if quantize_with_delay > 0:
            self._quantized = QuantizedEvaluation(model, quantize_with_delay)
            self._int8_forward = EvalForward(model)
        self._forward = EvalForward(model)
        self._writers: dict[str, tf.summary.SummaryWriter] = {}

    @property
    def class_names(self) -> tuple[str, ...]:
        """One name per class, in class-id order."""
        return self._scores.class_names

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
          EvaluationError: a record cannot be read, holds invalid class ids, or there is none.
        """
        if self._quantized is None:
            prefix = checkpoint_utils.restore_model(self.model, checkpoint_path)
            step = checkpoint_utils.checkpoint_step(prefix)
            forward = FLOAT
        else:
            prefix, step, forward = self._quantized.restore(checkpoint_path)
        logging.info("Evaluating %s (step %s, %s forward)", prefix, step, forward)
        started = time.perf_counter()
        run = self._int8_forward if forward == SIMULATED_INT8 else self._forward
        merged = inference_on_dataset(run, self._dataset, self._evaluators)
        facts = {key: merged.pop(key) for key in _RUN_FACTS if key in merged}
        extras = {
            "checkpoint": prefix,
            "step": step,
            "forward": forward,
            "num_images": merged["num_images"],
            "validation_loss": facts["validation_loss"],
            "seconds_per_image": facts["seconds_per_image"],
            "eval_seconds": time.perf_counter() - started,
            "num_classes": self.num_classes,
            "ignore_label": self.ignore_label,
            "dataset": self.metadata.name,
        }
        if self._quantized is not None:
            extras["quantize_with_delay"] = self._quantized.delay
        if "predictions_dir" in facts:
            extras["predictions_dir"] = facts["predictions_dir"]
        payload = eval_outputs.write_results(merged, extras, eval_dir)
        eval_outputs.log_results(merged, extras)
        images = self._images.images if self._images is not None else ()
        eval_outputs.write_summaries(self._writer(eval_dir), merged, extras, images)
        return payload

    def _writer(self, eval_dir: str) -> tf.summary.SummaryWriter:
        if eval_dir not in self._writers:
            self._writers[eval_dir] = tf.summary.create_file_writer(eval_dir)
        return self._writers[eval_dir]
