"""Memory readings of a training run: peak GPU memory or the process's peak RSS.

The progress lines themselves are written by ``core.training.hooks.ProgressHook`` (with
``MemoryHook`` adding these readings under ``--log_memory``).
"""

from __future__ import annotations

import resource
import sys

import tensorflow as tf


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
