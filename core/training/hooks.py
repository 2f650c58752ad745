"""The built-in training hooks and the ``HOOKS`` registry.

``runners.train_hooks.build_hooks`` runs them in this order (``after_step`` and ``after_train`` alike):

1. :class:`NonFiniteLossGuard` (``"nan_guard"``): stops at the first NaN/Inf or diverged loss.
2. :class:`MemoryHook` (``"memory"``, ``--log_memory``): adds the peak memory to progress lines.
3. :class:`ProgressHook` (``"progress"``): step, loss, learning rate, steps/s, images/s, ETA.
4. :class:`SummaryHook` (``"summaries"``): TensorBoard scalars and images every N steps.
5. :class:`CheckpointHook` (``"checkpoint"``): every ``interval_secs`` and at the end.
6. the run's extra hooks (``train(..., extra_hooks=...)``), in the order given.

The guard comes first so that no later hook logs, summarises or saves a non-finite step.

Adding a hook: subclass ``core.training.loop.HookBase``, override the methods it needs, and
register it so it can be named::

    from core.training.hooks import HOOKS
    from core.training.loop import HookBase

    @HOOKS.register("loss_history")
    class LossHistory(HookBase):
        def __init__(self):
            self.totals = []

        def after_step(self):
            self.totals.append(self.loop.losses["total"])

    trainer.train(config, logdir, options, extra_hooks=[LossHistory()])  # or ["loss_history"]

A name is looked up in ``HOOKS`` and the class is built without arguments.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterable

import tensorflow as tf
from absl import logging

from core.checkpoints.crash_safety import pause_point, remove_incomplete_checkpoints
from core.registry import Registry
from core.training.loop import HookBase
from core.training.loss_guard import LossDivergedError, NonFiniteLossError, NonFiniteLossGuard
from core.training.summaries import SummaryWriter
from core.training.train_progress import format_bytes, peak_memory

Clock = Callable[[], float]

HOOKS: Registry[type[HookBase]] = Registry("training hook")


HOOKS.register("nan_guard")(NonFiniteLossGuard)


def is_progress_step(step: int, every: int, num_steps: int) -> bool:
    """Whether ``step`` gets a progress line (the first step of a run always gets its own)."""
    return step % every == 0 or step == num_steps


@HOOKS.register("memory")
class MemoryHook(HookBase):
    """Adds the peak memory to the progress lines (``--log_memory``).

    The peak GPU memory (the maximum over the GPUs), or the process's peak RSS on a CPU; see
    ``core.training.train_progress.peak_memory``. Place it before the :class:`ProgressHook`.

    Args:
      every: the progress hook's ``every`` (the memory is only read for its lines).
    """

    def __init__(self, every: int = 10):
        self.every = every

    def after_step(self) -> None:
        loop = self.loop
        if loop.step > loop.start_step + 1 and is_progress_step(
            loop.step, self.every, loop.num_steps
        ):
            count, what = peak_memory()
            loop.log_parts.append(f"{what} {format_bytes(count)}")


@HOOKS.register("progress")
class ProgressHook(HookBase):
    """Logs a progress line every ``every`` steps and at the last step; keeps the speed.

    A line reads ``step 20/100 | loss 1.2345 (lr 0.009) | 2.00 steps/s, 16.0 images/s |
    ETA 0:00:40`` followed by what earlier hooks put in ``loop.log_parts``. Speed is measured from
    the end of the run's first step, which includes tracing and gets a line of its own.
    Publishes ``loop.metrics["steps_per_sec"]`` (speed between the last two lines).

    Args:
      batch_size: examples per step (the global batch), for images/s.
      every: steps between lines.
      clock: seconds (``time.time``; tests pass a fake one).
    """

    def __init__(self, batch_size: int, every: int = 10, clock: Clock = time.time):
        self.batch_size = batch_size
        self.every = every
        self._clock = clock
        self._first_done: tuple[int, float] | None = None
        self._last: tuple[int, float] | None = None
        self._latest_step: int | None = None
        self.speed = 0.0

    def before_train(self) -> None:
        self._latest_step = self.loop.start_step

    def after_step(self) -> None:
        loop = self.loop
        step, now = loop.step, self._clock()
        loss, learning_rate = loop.losses["total"], loop.learning_rate()
        self._latest_step = step
        if self._first_done is None:
            self._first_done = self._last = (step, now)
            logging.info(
                "step %d: loss %.4f (lr %.4g); first step (includes tracing) done",
                step,
                loss,
                learning_rate,
            )
            return
        if not is_progress_step(step, self.every, loop.num_steps):
            return
        steps = step - self._last[0]
        speed = steps / (now - self._last[1]) if now > self._last[1] else 0.0
        self.speed = speed
        loop.metrics["steps_per_sec"] = speed
        parts = [f"step {step}" + (f"/{loop.num_steps}" if loop.num_steps else "")]
        parts.append(f"loss {loss:.4f} (lr {learning_rate:.4g})")
        parts.append(f"{speed:.2f} steps/s, {speed * self.batch_size:.1f} images/s")
        if loop.num_steps and speed > 0:
            remaining = (loop.num_steps - step) / speed
            parts.append(f"ETA {datetime.timedelta(seconds=round(remaining))}")
        parts.extend(loop.log_parts)
        logging.info(" | ".join(parts))
        self._last = (step, now)

    def mean_speed(self) -> float:
        """Steps per second over the run, the first step excluded (0 before two steps)."""
        if self._first_done is None:
            return 0.0
        steps = self._latest_step - self._first_done[0]
        elapsed = self._clock() - self._first_done[1]
        return steps / elapsed if steps and elapsed > 0 else 0.0


@HOOKS.register("summaries")
class SummaryHook(HookBase):
    """Writes TensorBoard summaries every ``every`` steps (tags: ``core.training.summaries``).

    Scalars: every loss, the learning rate and (once a progress line measured it) the speed.
    Images: when the step returns ``images``, ``labels`` and ``predictions``.

    Args:
      writer: where to write (a no-op writer on non-chief workers).
      every: steps between summaries (> 0).
    """

    def __init__(self, writer: SummaryWriter, every: int = 100):
        if every < 1:
            raise ValueError(f"SummaryHook needs every >= 1, got {every}.")
        self.writer = writer
        self.every = every

    def after_step(self) -> None:
        loop = self.loop
        if loop.step % self.every:
            return
        speed = loop.metrics.get("steps_per_sec") or None
        self.writer.scalars(loop.step, loop.losses, loop.learning_rate(), speed)
        outputs = loop.outputs
        if all(key in outputs for key in ("images", "labels", "predictions")):
            self.writer.images(
                loop.step, outputs["images"], outputs["labels"], outputs["predictions"]
            )

    def after_train(self) -> None:
        self.writer.close()


def _all_finite(variables: Iterable[tf.Variable]) -> bool:
    return all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in variables)


@HOOKS.register("checkpoint")
class CheckpointHook(HookBase):
    """Saves with a ``tf.train.CheckpointManager`` every ``interval_secs`` and at the end.

    Before a step, it asks for a save when ``interval_secs`` passed since the last one; after
    the step it saves when the step says so (under ``tf.distribute`` every worker then saves,
    as saving is collective). At the end it saves the last step unless that was saved; after
    Ctrl-C too when ``save_on_interrupt``; after an error never. A save whose weights are not
    all finite raises :class:`NonFiniteLossError` instead. Before anything else it removes what
    a killed save left in ``directory`` (``core.checkpoints.crash_safety``): the state file only
    ever lists complete checkpoints, and after a restart no unreadable one remains.

    Args:
      checkpoint: the ``tf.train.Checkpoint`` to save.
      directory: where the checkpoints go.
      interval_secs: seconds between saves (0: after every step).
      max_to_keep: newest checkpoints kept.
      keep_every_n_hours: also keep, for good, one checkpoint per this many hours of those
        that fall out of the newest ``max_to_keep`` (TF1 ``Saver``'s
        ``keep_checkpoint_every_n_hours``); None keeps only the newest.
      checkpoint_name: prefix of the files, ``<name>-<step>``.
      step_counter: the global step variable (recorded by the manager).
      weights: variables checked for NaN/Inf before each save (moving statistics included:
        a NaN there ruins evaluation just as well).
      save_on_interrupt: save on Ctrl-C (a lone process; in a cluster a save needs every
        worker, which an interrupted one cannot count on).
      remove_directory: delete ``directory`` at the end (a non-chief worker's scratch copy).
      clock: seconds (``time.time``; tests pass a fake one).
    """

    def __init__(
        self,
        checkpoint: tf.train.Checkpoint,
        directory: str,
        *,
        interval_secs: float = 600.0,
        max_to_keep: int = 15,
        keep_every_n_hours: float | None = None,
        checkpoint_name: str = "model.ckpt",
        step_counter: tf.Variable | None = None,
        weights: Iterable[tf.Variable] = (),
        save_on_interrupt: bool = True,
        remove_directory: bool = False,
        clock: Clock = time.time,
    ):
        # A save killed half-way leaves files that no reader should meet (see crash_safety).
        remove_incomplete_checkpoints(directory, checkpoint_name)
        self.manager = tf.train.CheckpointManager(
            checkpoint,
            directory=directory,
            max_to_keep=max_to_keep,
            keep_checkpoint_every_n_hours=keep_every_n_hours,
            checkpoint_name=checkpoint_name,
            step_counter=step_counter,
        )
        self.directory = directory
        self.interval_secs = interval_secs
        self.weights = list(weights)
        self.save_on_interrupt = save_on_interrupt
        self.remove_directory = remove_directory
        self._clock = clock
        self._last_save = 0.0
        self.saved_step = 0

    @property
    def latest_checkpoint(self) -> str | None:
        """The newest checkpoint prefix in the directory, or None."""
        return self.manager.latest_checkpoint

    def save(self, step: int) -> str:
        """Saves the checkpoint of ``step``; returns its prefix.

        Raises:
          NonFiniteLossError: a weight is NaN/Inf (nothing is written).
        """
        if not _all_finite(self.weights):
            raise NonFiniteLossError(
                f"the weights became NaN/Inf by step {step}; not saving them. The last good "
                f"checkpoint is {self.latest_checkpoint or 'none'}. Lower the learning rate."
            )
        # Runs once the files are written, before the state file lists them (a crash test
        # kills the process there); inert in normal runs.
        options = tf.train.CheckpointOptions(
            experimental_write_callbacks=[lambda: pause_point(f"checkpoint_write:{step}")]
        )
        path = self.manager.save(checkpoint_number=step, options=options)
        logging.info("Saved %s", path)
        self._last_save, self.saved_step = self._clock(), step
        return path

    def before_train(self) -> None:
        self._last_save, self.saved_step = self._clock(), self.loop.start_step

    def before_step(self) -> None:
        if self._clock() - self._last_save >= self.interval_secs:
            self.loop.request_save()

    def after_step(self) -> None:
        if self.loop.should_save:
            self.save(self.loop.step)
            pause_point(f"after_save:{self.loop.step}")  # a crash test's kill point

    def after_train(self) -> None:
        loop = self.loop
        try:
            if loop.step <= self.saved_step:
                return
            if loop.error is None:
                # Every worker takes this branch alike: saving is collective under TF_CONFIG.
                self.save(loop.step)
            elif isinstance(loop.error, KeyboardInterrupt) and self.save_on_interrupt:
                logging.warning("Interrupted at step %d; saving a checkpoint first.", loop.step)
                self.save(loop.step)
        finally:
            if self.remove_directory and tf.io.gfile.exists(self.directory):
                tf.io.gfile.rmtree(self.directory)


__all__ = [
    "HOOKS",
    "CheckpointHook",
    "LossDivergedError",
    "MemoryHook",
    "NonFiniteLossError",
    "NonFiniteLossGuard",
    "ProgressHook",
    "SummaryHook",
    "is_progress_step",
]
