"""The hooks of a training run, built from its options: what ``runners.trainer.train`` runs.

:func:`build_hooks` puts them in the order their ``after_step``/``after_train`` must run: the
NaN/divergence guard first (it stops the run before anything records a bad step), memory and
progress lines, summaries, BN recalibration (before the checkpoint hook, whose final save then
holds the recalibrated statistics), the checkpoint hook, then the extras (evaluation during
training reads the checkpoint the hook just wrote). :func:`resolve_hooks` turns hook names of
``core.training.hooks.HOOKS`` into hooks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import tensorflow as tf

from core.registry import UnknownNameError
from core.training.hooks import (
    HOOKS,
    CheckpointHook,
    MemoryHook,
    NonFiniteLossGuard,
    ProgressHook,
    SummaryHook,
)
from core.training.loop import HookBase
from core.training.recalibration import BatchNormRecalibrationHook
from core.training.summaries import SummaryWriter
from runners.train_options import TrainError, TrainingParts, TrainOptions

CHECKPOINT_NAME = "model.ckpt"


def build_hooks(
    options: TrainOptions,
    parts: TrainingParts,
    checkpoint: tf.train.Checkpoint,
    *,
    logdir: str,
    save_dir: str,
    batch_size: int,
    chief: bool = True,
    save_on_interrupt: bool = True,
    keep_every_n_hours: float | None = None,
    extra_hooks: Sequence[HookBase | str] = (),
    recalibration_batches: Callable[[], Iterable] | None = None,
) -> list[HookBase]:
    """The hooks of a run, in order: NaN guard, memory, progress, summaries, BN recalibration,
    checkpoint, extras.

    Args:
      options: the run's settings (intervals, ``log_memory``, summaries).
      parts: from :func:`build_train_step` (the weights checked before each save).
      checkpoint: what the checkpoint hook saves.
      logdir: where the summaries go.
      save_dir: where this worker saves (the logdir, or a non-chief worker's scratch copy,
        removed at the end).
      batch_size: the global batch, for images/s.
      chief: this worker writes summaries.
      save_on_interrupt: save on Ctrl-C (a lone process only).
      keep_every_n_hours: keep one older checkpoint per this many hours (None: only the newest).
      extra_hooks: hooks, or names registered in ``core.training.hooks.HOOKS`` (built without
        arguments), run after the built-in ones.
      recalibration_batches: ``() -> training batches``, for ``--recalibrate_bn_batches``.

    Raises:
      TrainError: an extra hook's name is not registered.
    """
    extras = resolve_hooks(extra_hooks)
    checkpoints = CheckpointHook(
        checkpoint,
        save_dir,
        interval_secs=options.save_interval_secs,
        max_to_keep=options.max_checkpoints_to_keep,
        keep_every_n_hours=keep_every_n_hours,
        checkpoint_name=CHECKPOINT_NAME,
        step_counter=parts.global_step,
        weights=parts.model.named_variables().values(),
        save_on_interrupt=save_on_interrupt,
        remove_directory=save_dir != logdir,
    )
    guard = NonFiniteLossGuard(
        checkpoints=lambda: checkpoints.manager.checkpoints,
        divergence_factor=options.divergence_factor,
    )
    hooks: list[HookBase] = [guard]
    if options.log_memory:
        hooks.append(MemoryHook(options.log_every_n_steps))
    hooks.append(ProgressHook(batch_size, options.log_every_n_steps))
    if options.save_summaries_steps:
        writer = SummaryWriter(logdir, enabled=chief)
        hooks.append(SummaryHook(writer, options.save_summaries_steps))
    if options.recalibrate_bn_batches:  # before the checkpoint hook: its final save holds it
        count = options.recalibrate_bn_batches
        hooks.append(BatchNormRecalibrationHook(recalibration_batches, count, checkpoints.save))
    return [*hooks, checkpoints, *extras]


def resolve_hooks(hooks: Sequence[HookBase | str]) -> list[HookBase]:
    """Hooks, with each name replaced by its ``HOOKS`` class built without arguments.

    Raises:
      TrainError: a name is not registered (the message lists the registered ones).
    """
    try:
        return [HOOKS.get(hook)() if isinstance(hook, str) else hook for hook in hooks]
    except UnknownNameError as error:
        raise TrainError(f"--extra_hooks: {error}") from None


# --------------------------------------------------------------------------- training
