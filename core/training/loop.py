"""The training loop: runs the compiled step from the start step to the last, calling hooks.

Everything a run does besides the step itself (checkpoints, summaries, progress lines, the NaN
guard, memory reports, and later evaluation, EMA or quantization) is a :class:`HookBase`
subclass, so a behaviour is added by writing a hook instead of editing the loop. The built-in
hooks are in ``core.training.hooks``; ``runners.train_hooks.build_hooks`` assembles them.

For each run, with hooks ``[h1, h2]``::

    h1.before_train(); h2.before_train()
    for every step:
        h1.before_step(); h2.before_step()
        outputs = step_fn(iterator, save_request)
        h1.after_step(); h2.after_step()
    h1.after_train(); h2.after_train()      # also when a step or a hook raised

``after_train`` runs in every case, Ctrl-C (``KeyboardInterrupt``) and errors included, so that
hooks can close files and save what should be saved; :attr:`TrainLoop.error` tells them why the
loop ended. Every ``after_train`` runs even when an earlier one raises; the first such error is
raised afterwards, in place of the loop's own error (a failed save on Ctrl-C is what the user
must see).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

StepFn = Callable[[Any, bool], Mapping[str, Any]]


class HookBase:
    """A behaviour of a training run, called by :class:`TrainLoop` around its steps.

    Subclasses override any of the four methods; the defaults do nothing. ``self.loop`` is the
    loop that runs the hook (set by :meth:`TrainLoop.register_hooks`): read its ``step``,
    ``losses``, ``outputs``, ``start_step``, ``num_steps``, ``learning_rate()``, ``metrics``
    and ``model``.

    Step numbering: in :meth:`before_step`, ``loop.step`` is the last completed step (the step
    about to run is ``loop.step + 1``); in :meth:`after_step` it is the step just completed.
    """

    loop: TrainLoop | None = None

    def before_train(self) -> None:
        """Called once before the first step."""

    def before_step(self) -> None:
        """Called before each step; may call ``self.loop.request_save()``."""

    def after_step(self) -> None:
        """Called after each step with ``loop.outputs`` and ``loop.losses`` of the step."""

    def after_train(self) -> None:
        """Called once at the end, also after an error (``self.loop.error``) or Ctrl-C."""


class TrainLoop:
    """Runs ``step_fn`` until ``num_steps`` and calls the hooks in their order.

    Args:
      step_fn: ``(iterator, save_request: bool) -> outputs``, e.g.
        ``core.training.train_step.TrainStep``. ``outputs["losses"]`` maps loss names to scalars
        (``"total"`` included); ``outputs["save"]`` (optional) is > 0 when the workers agreed to
        checkpoint after this step, otherwise the loop's own save request is used.
      iterator: what ``step_fn`` draws its batches from.
      start_step: the step the run starts from (0, or the step of the resumed checkpoint).
      num_steps: the last step (0: train until stopped).
      hooks: called in this order.
      learning_rate_fn: ``() -> float``, the rate of the step just run (for logs and summaries);
        None when there is none.
      model: the model being trained, for hooks that read or change its weights (EMA,
        evaluation); the loop itself never uses it.

    Attributes:
      step: completed steps (the global step).
      outputs: the raw outputs of the last step (empty before the first).
      losses: ``outputs["losses"]`` as Python floats.
      metrics: latest values that hooks publish for other hooks (``steps_per_sec``).
      log_parts: texts that hooks running before the progress hook add to this step's progress
        line (emptied before each step).
      error: the exception that ended the loop, or None (read it in ``after_train``).
    """

    def __init__(
        self,
        step_fn: StepFn,
        iterator: Any,
        start_step: int = 0,
        num_steps: int = 0,
        hooks: Iterable[HookBase] = (),
        learning_rate_fn: Callable[[], float] | None = None,
        model: Any = None,
    ):
        if num_steps < 0:
            raise ValueError(f"num_steps must be >= 0 (0: no end), got {num_steps}.")
        self.step_fn = step_fn
        self.model = model
        self.iterator = iterator
        self.start_step = start_step
        self.num_steps = num_steps
        self.step = start_step
        self.outputs: Mapping[str, Any] = {}
        self.losses: dict[str, float] = {}
        self.metrics: dict[str, float] = {}
        self.log_parts: list[str] = []
        self.error: BaseException | None = None
        self._learning_rate_fn = learning_rate_fn
        self._learning_rate: tuple[int, float] | None = None
        self._save_request = False
        self.hooks: list[HookBase] = []
        self.register_hooks(hooks)

    def register_hooks(self, hooks: Iterable[HookBase]) -> None:
        """Appends hooks (they run after the ones already registered)."""
        for hook in hooks:
            if not isinstance(hook, HookBase):
                raise TypeError(f"a training hook must subclass HookBase, got {hook!r}.")
            hook.loop = self
            self.hooks.append(hook)

    # ------------------------------------------------------------------ for hooks

    def request_save(self) -> None:
        """Asks for a checkpoint after the coming step (call it in ``before_step``)."""
        self._save_request = True

    @property
    def save_requested(self) -> bool:
        """Whether a hook asked for a checkpoint after the current step."""
        return self._save_request

    @property
    def should_save(self) -> bool:
        """After a step: whether to checkpoint now (agreed by every worker when distributed)."""
        if "save" in self.outputs:
            return float(self.outputs["save"]) > 0
        return self._save_request

    @property
    def done(self) -> bool:
        """Whether the last step has been run."""
        return bool(self.num_steps) and self.step >= self.num_steps

    def learning_rate(self) -> float:
        """The learning rate of the last step (nan without ``learning_rate_fn``)."""
        if self._learning_rate_fn is None:
            return math.nan
        # Computed once per step however many hooks ask.
        if self._learning_rate is None or self._learning_rate[0] != self.step:
            self._learning_rate = (self.step, float(self._learning_rate_fn()))
        return self._learning_rate[1]

    # ------------------------------------------------------------------ running

    def run(self) -> int:
        """Runs the steps and the hooks; returns the step reached.

        Raises:
          Whatever a step or a hook raises (``KeyboardInterrupt`` included), after every
          hook's ``after_train`` ran.
        """
        try:
            for hook in self.hooks:
                hook.before_train()
            while not self.done:
                self.run_step()
        except BaseException as error:
            self.error = error
            raise
        finally:
            self._after_train()
        return self.step

    def run_step(self) -> None:
        """One step with its ``before_step`` and ``after_step`` calls."""
        self._save_request = False
        self.log_parts = []
        for hook in self.hooks:
            hook.before_step()
        outputs = self.step_fn(self.iterator, self._save_request)
        self.step += 1
        self.outputs = outputs
        self.losses = {key: float(value) for key, value in outputs.get("losses", {}).items()}
        for hook in self.hooks:
            hook.after_step()

    def _after_train(self) -> None:
        first: BaseException | None = None
        for hook in self.hooks:
            try:
                hook.after_train()
            except BaseException as error:  # the remaining hooks still clean up
                first = first or error
        if first is not None:
            raise first
