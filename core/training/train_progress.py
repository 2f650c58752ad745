"""Progress lines of a training run: step, loss, learning rate, speed, ETA, memory."""

from __future__ import annotations

import datetime
import resource
import sys
import time

import tensorflow as tf
from absl import logging


def proc_status_bytes(field: str) -> int | None:
    """A memory field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in bytes; None off Linux."""
    try:
        with open("/proc/self/status", encoding="utf-8") as stream:
            for line in stream:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_rss_bytes() -> int:
    """This process's peak resident set size in bytes.

    ``VmHWM`` is the high-water mark of this program's own address space. ``getrusage``'s
    ``ru_maxrss`` is only the fallback (off Linux): on Linux it carries the parent's RSS at
    ``fork`` over the ``exec``, so ``train.py`` started from a large process would report the
    parent's size.
    """
    peak = proc_status_bytes("VmHWM")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def peak_memory() -> tuple[int, str]:
    """``(bytes, what)``: the peak GPU memory, or the process's peak RSS when there is no GPU.

    ``tf.config.experimental.get_memory_info`` only tracks GPU allocations; on CPU the
    allocator keeps no peak, so the operating system's peak resident set size of the whole
    process (TensorFlow, Python and the input pipeline included) is reported instead.
    """
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        peaks = [tf.config.experimental.get_memory_info(gpu.name)["peak"] for gpu in gpus]
        return max(peaks), f"peak GPU memory (max over {len(gpus)} GPU(s))"
    return peak_rss_bytes(), "process peak RSS (CPU)"


def format_bytes(count: int) -> str:
    """``1536 -> '1.5 KiB'``."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{value:.1f} GiB"


class ProgressLog:
    """Logs a progress line every ``every`` steps and keeps the speed statistics.

    Args:
      num_steps: the last step (0: no end, so no ETA).
      batch_size: examples per step (global batch), for images/s.
      start_step: the step the run starts from.
      log_memory: add the peak memory to each line.
      every: steps between lines.
    """

    def __init__(
        self,
        num_steps: int,
        batch_size: int,
        start_step: int,
        log_memory: bool = False,
        every: int = 10,
    ):
        self.num_steps = num_steps
        self.batch_size = batch_size
        self.log_memory = log_memory
        self.every = every
        # Speed is measured from the end of the first step: it includes tracing.
        self._first_done: tuple[int, float] | None = None
        self._last: tuple[int, float] | None = None
        self._latest_step = start_step
        # Steps per second between the last two progress lines.
        self.speed = 0.0

    def step_done(self, step: int, loss: float, learning_rate: float) -> None:
        """Records that ``step`` finished with ``loss``; logs when it is a logging step."""
        now = time.time()
        self._latest_step = step
        if self._first_done is None:
            self._first_done = (step, now)
            self._last = (step, now)
            logging.info(
                "step %d: loss %.4f (lr %.4g); first step (includes tracing) done",
                step,
                loss,
                learning_rate,
            )
            return
        if step % self.every and step != self.num_steps:
            return
        steps = step - self._last[0]
        speed = steps / (now - self._last[1]) if now > self._last[1] else 0.0
        self.speed = speed
        parts = [f"step {step}" + (f"/{self.num_steps}" if self.num_steps else "")]
        parts.append(f"loss {loss:.4f} (lr {learning_rate:.4g})")
        parts.append(f"{speed:.2f} steps/s, {speed * self.batch_size:.1f} images/s")
        if self.num_steps and speed > 0:
            remaining = (self.num_steps - step) / speed
            parts.append(f"ETA {datetime.timedelta(seconds=round(remaining))}")
        if self.log_memory:
            count, what = peak_memory()
            parts.append(f"{what} {format_bytes(count)}")
        logging.info(" | ".join(parts))
        self._last = (step, now)

    def mean_speed(self) -> float:
        """Steps per second over the run, the first step excluded (0 before two steps)."""
        if self._first_done is None:
            return 0.0
        steps = self._latest_step - self._first_done[0]
        elapsed = time.time() - self._first_done[1]
        return steps / elapsed if steps and elapsed > 0 else 0.0
