"""The NaN/Inf and divergence guard of training runs (registered as ``"nan_guard"``)."""

from __future__ import annotations

import collections
import math
import statistics
from collections.abc import Callable, Sequence

from core.training.loop import HookBase


class NonFiniteLossError(RuntimeError):
    """The loss (or the weights) became NaN or Inf; the last good checkpoint is kept."""


class LossDivergedError(NonFiniteLossError):
    """The loss exploded (still finite) past the guard's divergence factor."""


class NonFiniteLossGuard(HookBase):
    """Stops the run at the first step whose total loss is NaN/Inf or has diverged.

    Diverged: above ``divergence_factor`` times the median total loss of the last ``window``
    steps of the run (one clear line, :class:`LossDivergedError`). With the default 1000 this
    only fires on a blow-up (1e6 learning rate: 3 -> 7.7e10), never on normal noise. The step
    is not saved (the guard runs before the checkpoint hook).

    Step ``k``'s loss is computed with the weights of checkpoint ``k - 1`` (the weights after
    step ``k - 1``), so when step ``s`` fails the last good checkpoint is the newest one up to
    step ``s - 2``; the message names it, and the newer one of step ``s - 1`` if there is one.

    Args:
      latest_checkpoint: ``() -> prefix or None``, the newest checkpoint written (e.g.
        ``CheckpointHook.latest_checkpoint``); used when ``checkpoints`` is None.
      checkpoints: ``() -> prefixes``, every checkpoint kept, oldest first (e.g.
        ``lambda: CheckpointHook.manager.checkpoints``).
      divergence_factor: stop when the loss exceeds this many times the recent median
        (0: only NaN/Inf stop the run).
      window: steps in the running median.
    """

    def __init__(
        self,
        latest_checkpoint: Callable[[], str | None] = lambda: None,
        *,
        checkpoints: Callable[[], Sequence[str]] | None = None,
        divergence_factor: float = 1000.0,
        window: int = 100,
    ):
        if divergence_factor < 0 or window < 1:
            raise ValueError(
                f"NonFiniteLossGuard needs divergence_factor >= 0 and window >= 1, got "
                f"{divergence_factor} and {window}."
            )
        self._latest_checkpoint = latest_checkpoint
        self._checkpoints = checkpoints
        self.divergence_factor = divergence_factor
        self._recent: collections.deque[float] = collections.deque(maxlen=window)

    def _checkpoint_note(self, step: int) -> str:
        """Names the last good checkpoint, and the newer one whose weights gave this loss."""
        if self._checkpoints is not None:
            kept = list(self._checkpoints())
        else:
            latest = self._latest_checkpoint()
            kept = [latest] if latest else []
        if not kept:
            return "The last good checkpoint is none (none was written)."
        good = [p for p in kept if (k := _prefix_step(p)) is not None and k <= step - 2]
        note = f"The last good checkpoint is {good[-1] if good else 'none'}"
        if kept[-1] not in good:
            note += f"; the newest, holding the weights that gave this loss, is {kept[-1]}."
        return note + ("" if note.endswith(".") else ".")

    def after_step(self) -> None:
        losses, step = self.loop.losses, self.loop.step
        total = losses["total"]
        if not math.isfinite(total):
            raise NonFiniteLossError(
                f"the total loss is {total} at step {step} (losses: {losses}); training stopped "
                f"and this step's weights were not saved. {self._checkpoint_note(step)} Lower "
                "the learning rate, check the labels (num_classes, ignore_label) or try "
                "without --mixed_precision."
            )
        if self.divergence_factor and self._recent:
            median = statistics.median(self._recent)
            if median > 0 and total > self.divergence_factor * median:
                raise LossDivergedError(
                    f"the total loss diverged at step {step}: {total:.4g} is over "
                    f"{self.divergence_factor:g} times the median {median:.4g} of the last "
                    f"{len(self._recent)} steps; training stopped and this step's weights were "
                    f"not saved. {self._checkpoint_note(step)} Lower the learning rate (or "
                    "raise --divergence_factor if such jumps are expected)."
                )
        self._recent.append(total)


def _prefix_step(prefix: str) -> int | None:
    """The ``N`` of ``.../name-N``, or None."""
    tail = prefix.rsplit("-", 1)
    return int(tail[1]) if len(tail) == 2 and tail[1].isdigit() else None


__all__ = ["LossDivergedError", "NonFiniteLossError", "NonFiniteLossGuard"]
