"""The settings and the result of a training run (``runners.trainer.train``).

:class:`TrainOptions` holds what is not in the pipeline config (the scripts' flags, see
``runners.train_flags``); :class:`TrainResult` is what a finished run reports;
:class:`TrainingParts` is what ``runners.trainer.build_train_step`` builds.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from core.training.train_step import TrainStep


class TrainError(ValueError):
    """A training run cannot start as configured; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """Settings of a run that are not in the pipeline config (the scripts' flags).

    Attributes:
      num_clones: replicas on this machine (MirroredStrategy when > 1).
      clone_on_cpu: run the replicas on (logical) CPU devices.
      num_steps: overrides ``train_config.num_steps`` (0 trains until stopped); None keeps it.
      save_interval_secs: seconds between checkpoints (one is always written at the end).
      max_checkpoints_to_keep: newest checkpoints kept in the logdir.
      log_every_n_steps: steps between progress lines.
      save_summaries_steps: steps between TensorBoard summaries; 0 disables them.
      image_summaries: add input, ground-truth and prediction images to the summaries.
      mixed_precision: compute in float16 (GPU, with loss scaling) or bfloat16 (CPU).
      seed: makes initialisation, input order and augmentation reproducible.
      use_tf1_momentum: TF1 ``MomentumOptimizer`` semantics under a decaying rate.
      gradient_checkpointing: recompute segments in backprop (``train_mem_saving.py``).
      checkpoint_nodes: segments (or the original's node names) to recompute; empty means the
        model's defaults (each backbone block and the fusion units).
      log_memory: report peak memory with the progress lines.
      jit_compile: compile the train step with XLA (optional: on a CPU it is slower, see
        docs/benchmarks.md).
      eval_every_n_steps: evaluate on the eval reader every N steps and at the last step,
        keeping the best checkpoint in ``<logdir>/best`` (``core.training.eval_hook``); 0: off.
      eval_num_examples: images per such evaluation; 0 uses ``eval_config.num_examples``.
      eval_dir: where those evaluations write; empty: ``<logdir>/eval``.
      recalibrate_bn_batches: at the end of a run that reaches ``num_steps``, recompute the
        batch-norm moving statistics over this many training batches (seeded with ``seed``,
        else 0) and write them into the final checkpoint; 0 turns it off
        (``core.training.recalibration.BatchNormRecalibrationHook``).
      divergence_factor: stop when the total loss exceeds this many times its running median
        (``core.training.loss_guard``); 0: only NaN/Inf stop the run.
    """

    num_clones: int = 1
    clone_on_cpu: bool = False
    num_steps: int | None = None
    save_interval_secs: float = 600.0
    max_checkpoints_to_keep: int = 15
    log_every_n_steps: int = 10
    save_summaries_steps: int = 100
    image_summaries: bool = False
    mixed_precision: bool = False
    seed: int | None = None
    use_tf1_momentum: bool = True
    gradient_checkpointing: bool = False
    checkpoint_nodes: tuple[str, ...] = ()
    log_memory: bool = False
    jit_compile: bool = False
    eval_every_n_steps: int = 0
    eval_num_examples: int = 0
    eval_dir: str = ""
    recalibrate_bn_batches: int = 0
    divergence_factor: float = 1000.0

    def __post_init__(self) -> None:
        checks = (
            ("num_clones", self.num_clones >= 1, ">= 1"),
            ("num_steps", self.num_steps is None or self.num_steps >= 0, ">= 0 (0: forever)"),
            ("save_interval_secs", self.save_interval_secs >= 0, ">= 0"),
            ("max_checkpoints_to_keep", self.max_checkpoints_to_keep >= 1, ">= 1"),
            ("log_every_n_steps", self.log_every_n_steps >= 1, ">= 1"),
            ("save_summaries_steps", self.save_summaries_steps >= 0, ">= 0 (0: off)"),
            ("recalibrate_bn_batches", self.recalibrate_bn_batches >= 0, ">= 0 (0: off)"),
            ("eval_every_n_steps", self.eval_every_n_steps >= 0, ">= 0 (0: off)"),
            ("eval_num_examples", self.eval_num_examples >= 0, ">= 0 (0: eval_config's)"),
            ("divergence_factor", self.divergence_factor >= 0, ">= 0 (0: off)"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise TrainError(f"--{name} must be {expected}, got {getattr(self, name)!r}.")


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a finished run reports.

    Attributes:
      step: the global step reached.
      loss: the total loss of the last step (nan if no step ran).
      losses: every loss of the last step, by key (``total`` included).
      checkpoint_path: the newest checkpoint prefix, e.g. ``logdir/model.ckpt-4``.
      steps_per_sec: mean speed over the run, the first (tracing) step excluded.
      peak_memory_bytes: peak GPU memory, or the process's peak RSS on CPU.
    """

    step: int
    loss: float
    losses: dict[str, float]
    checkpoint_path: str | None
    steps_per_sec: float
    peak_memory_bytes: int


__all__ = ["TrainError", "TrainOptions", "TrainResult"]


@dataclasses.dataclass(frozen=True)
class TrainingParts:
    """What :func:`build_train_step` builds under the strategy's scope.

    Attributes:
      model: the built ``SegmentationModel``.
      loss_fn: the config's weighted loss (``core.training.losses.WeightedLoss``).
      optimizer: the built optimizer (``LossScaleOptimizer`` under float16).
      schedule: the learning-rate schedule, ``iteration -> rate``.
      variables: the trained variables (a frozen backbone and unused aux heads left out).
      global_step: the int64 step variable the checkpoints record.
      step_fn: the compiled distributed step.
    """

    model: keras.Model
    loss_fn: object
    optimizer: keras.optimizers.Optimizer
    schedule: object
    variables: list
    global_step: tf.Variable
    step_fn: TrainStep
