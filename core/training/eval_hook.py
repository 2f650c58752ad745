"""Evaluation during training: score a checkpoint every N steps, keep the best one by mIoU.

:class:`EvalHook` asks the checkpoint hook for a checkpoint at every ``every_n_steps``-th step
and at the last step, hands that checkpoint to an evaluator (``eval.py``'s own
:class:`core.evaluation.evaluator.EvalRunner`, built by ``runners.eval_loop.build_eval_hook``:
the same ``inference_on_dataset`` loop, the same evaluators, the same ``metrics_<step>.json`` /
``metrics_latest.json`` and TensorBoard summaries) and keeps the checkpoint with the highest
score in its own folder::

    <logdir>/model.ckpt-<step>       the newest checkpoints (rotated, max_to_keep)
    <logdir>/eval/                   metrics_<step>.json, metrics_latest.json, events
    <logdir>/best/model.ckpt-<step>  the best evaluated weights (model variables and step)
    <logdir>/best/best.json          {"step", "miou", "checkpoint", "metrics_json"}

The best folder has its own ``checkpoint`` state file, so ``tf.train.CheckpointManager`` of the
logdir never lists, and so never deletes, it; ``eval.py --train_dir=<logdir>/best``,
``export.py`` and ``compress.py`` read it like any of our checkpoints.

What is evaluated is the checkpoint just written, restored into the evaluator's own model: the
step's weights with their moving batch-norm statistics, in inference mode (``training=False``)
and float32 whatever the training's mixed-precision policy, outside any ``tf.distribute``
replica context, on the chief only. That is exactly what ``eval.py`` computes when it later
reads the same checkpoint. The cost is one more copy of the weights and the evaluation time,
logged for each evaluation.
"""

from __future__ import annotations

import glob
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import tensorflow as tf
from absl import logging

from core import file_utils
from core.checkpoints import checkpoint_utils
from core.training.hooks import CheckpointHook
from core.training.loop import HookBase

BEST_JSON = "best.json"


class CheckpointEvaluator(Protocol):
    """What :class:`EvalHook` evaluates with (``core.evaluation.evaluator.EvalRunner`` is one).

    Attributes:
      model: the model ``evaluate`` restores the checkpoint into; after a call it holds the
        evaluated weights, which are written as the best checkpoint.
    """

    model: Any

    def evaluate(self, checkpoint_path: str, eval_dir: str) -> Mapping[str, Any]:
        """Restores and scores a checkpoint, writes its results into ``eval_dir``; returns
        them (``miou`` in [0, 1], or None when undefined)."""


def read_best(best_dir: str) -> dict[str, Any] | None:
    """The contents of ``<best_dir>/best.json``, or None when there is none yet."""
    path = os.path.join(best_dir, BEST_JSON)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as stream:
        return json.load(stream)


class EvalHook(HookBase):
    """Evaluates every ``every_n_steps`` steps and at the last one; keeps the best checkpoint.

    Must run after the loop's :class:`core.training.hooks.CheckpointHook` (``runners.trainer``
    places it among the extra hooks, which follow it): the hook requests a checkpoint before an
    evaluated step, and evaluates the checkpoint that hook wrote after it. The last step is
    evaluated in ``after_train``, once the checkpoint hook (and any hook that rewrites the final
    checkpoint, e.g. the batch-norm recalibration) wrote it; a run stopped by an error or
    Ctrl-C is not evaluated at its end.

    Args:
      evaluator: scores a checkpoint (see :class:`CheckpointEvaluator`); None on a worker that
        only takes part in the collective saves (a non-chief worker of a cluster).
      every_n_steps: steps between evaluations (>= 1); the last step is always evaluated.
      eval_dir: where the evaluator writes metrics and summaries.
      best_dir: where the best checkpoint and ``best.json`` go; None keeps no best.
      checkpoint_name: prefix of the best checkpoint, ``<name>-<step>``.
      clock: seconds, for the logged evaluation time (tests pass a fake one).

    Attributes:
      history: ``(step, miou)`` of each evaluation of this run, in order.
      best: ``best.json``'s contents (this run's best, or a resumed run's), or None.
    """

    def __init__(
        self,
        evaluator: CheckpointEvaluator | None,
        every_n_steps: int,
        eval_dir: str,
        *,
        best_dir: str | None = None,
        checkpoint_name: str = "model.ckpt",
        clock: Callable[[], float] = time.perf_counter,
    ):
        if every_n_steps < 1:
            raise ValueError(f"EvalHook needs every_n_steps >= 1, got {every_n_steps}.")
        self.evaluator = evaluator
        self.every_n_steps = every_n_steps
        self.eval_dir = eval_dir
        self.best_dir = best_dir
        self.checkpoint_name = checkpoint_name
        self._clock = clock
        self._checkpoints: CheckpointHook | None = None
        self.history: list[tuple[int, float | None]] = []
        self.best: dict[str, Any] | None = None

    def is_eval_step(self, step: int) -> bool:
        """Whether ``step`` is evaluated: every ``every_n_steps``-th step and the last one."""
        return step % self.every_n_steps == 0 or step == self.loop.num_steps

    def before_train(self) -> None:
        loop = self.loop
        position = loop.hooks.index(self)
        found = [hook for hook in loop.hooks[:position] if isinstance(hook, CheckpointHook)]
        if not found:
            raise ValueError(
                "EvalHook evaluates the checkpoints of a CheckpointHook: register it after one."
            )
        self._checkpoints = found[-1]
        if self.evaluator is not None and self.best_dir:
            # A resumed run only replaces the best with a better one.
            self.best = read_best(self.best_dir)

    def before_step(self) -> None:
        upcoming = self.loop.step + 1
        # The last step is saved (and evaluated) in after_train.
        if self.is_eval_step(upcoming) and upcoming != self.loop.num_steps:
            self.loop.request_save()

    def after_step(self) -> None:
        step = self.loop.step
        if not self.is_eval_step(step) or self.loop.done:
            return
        checkpoints = self._checkpoints
        if checkpoints.saved_step != step:
            # Every worker takes this branch alike (it depends on the step only): saving is
            # collective in a cluster.
            checkpoints.save(step)
        if self.evaluator is not None:
            self.evaluate(checkpoints.latest_checkpoint, step)

    def after_train(self) -> None:
        # The last step is evaluated here, after every earlier hook's after_train: the final
        # checkpoint is then the one the run leaves (e.g. with batch norm recalibrated at the end
        # and saved again), the one eval.py will read.
        loop = self.loop
        if self.evaluator is None or loop.error is not None or not loop.done:
            return
        checkpoints = self._checkpoints
        if loop.step <= loop.start_step or checkpoints.saved_step != loop.step:
            return  # nothing trained, or no checkpoint of this step to evaluate
        self.evaluate(checkpoints.latest_checkpoint, loop.step)

    def evaluate(self, prefix: str, step: int) -> Mapping[str, Any]:
        """Scores the checkpoint ``prefix`` of ``step``; keeps it when it is the best so far.

        Returns:
          The evaluator's results.
        """
        started = self._clock()
        results = self.evaluator.evaluate(prefix, self.eval_dir)
        seconds = self._clock() - started
        miou = results.get("miou")
        miou = float(miou) if miou is not None and math.isfinite(miou) else None
        self.history.append((step, miou))
        if miou is not None:
            self.loop.metrics["eval_miou"] = miou
        improved = miou is not None and (self.best is None or miou > self.best["miou"])
        if improved and self.best_dir:
            self._keep_best(step, miou, results)
        logging.info(
            "Evaluation at step %d took %.1f s: mIoU %s; best %s",
            step,
            seconds,
            "undefined" if miou is None else f"{miou:.4f}",
            "none yet"
            if self.best is None
            else f"{self.best['miou']:.4f} at step {self.best['step']}",
        )
        return results

    def _keep_best(self, step: int, miou: float, results: Mapping[str, Any]) -> None:
        """Writes the evaluated weights as the best checkpoint, then ``best.json``, then
        removes the previous best (in this order, so an interruption leaves one whole best)."""
        previous = self.best.get("checkpoint") if self.best else None
        # The evaluator's model holds exactly the evaluated (restored) weights.
        prefix = checkpoint_utils.write_model_checkpoint(
            self.evaluator.model, self.best_dir, f"{self.checkpoint_name}-{step}", step
        )
        self.best = {
            "step": step,
            "miou": miou,
            "checkpoint": prefix,
            "metrics_json": results.get("json_path"),
        }
        file_utils.atomic_write_text(
            os.path.join(self.best_dir, BEST_JSON), json.dumps(self.best, indent=2) + "\n"
        )
        if previous and os.path.abspath(previous) != os.path.abspath(prefix):
            for path in glob.glob(glob.escape(previous) + ".*"):
                os.remove(path)
        logging.info("New best checkpoint %s (mIoU %.4f)", prefix, miou)


__all__ = ["BEST_JSON", "CheckpointEvaluator", "EvalHook", "read_best"]
