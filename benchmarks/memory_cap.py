"""A memory cap for a benchmark child process, enforced on its resident set size.

``resource.setrlimit(RLIMIT_AS)`` does not work as a cap for TensorFlow: it limits the virtual
address space, which TF and its thread pools reserve far beyond what they touch, so a cap that
fits the real need fails at import time. A cgroup is not writable in an unprivileged container.
The cap is therefore enforced on what is really used, the resident set: a watchdog thread reads
``VmRSS`` every few milliseconds and, above the cap, writes an "out of memory" result and ends the
process with :data:`OOM_EXIT_CODE`; after each step the high-water mark ``VmHWM`` catches a peak
that fell between two reads. The parent (``benchmarks.train_bench``) reads either as the table
cell "OOM at batch N".
"""

from __future__ import annotations

import json
import os
import threading
import time

from core import file_utils
from core.training.train_progress import proc_status_bytes

# Exit status of a child stopped by the cap (distinct from a crash or a signal).
OOM_EXIT_CODE = 75
POLL_SECONDS = 0.005


def _stop(cap_bytes: int, used_bytes: int, output: str | None, batch_size: int) -> None:
    """Writes the out-of-memory result and ends the process at once (no cleanup: it is over)."""
    if output:
        result = {
            "oom": True,
            "batch_size": batch_size,
            "memory_cap_bytes": cap_bytes,
            "rss_bytes": used_bytes,
        }
        file_utils.atomic_write_text(output, json.dumps(result))
    os._exit(OOM_EXIT_CODE)


def check(cap_bytes: int, output: str | None, batch_size: int) -> None:
    """Stops the process if its peak resident set (``VmHWM``) went over ``cap_bytes``."""
    peak = proc_status_bytes("VmHWM")
    if peak is not None and peak > cap_bytes:
        _stop(cap_bytes, peak, output, batch_size)


def start_watchdog(cap_bytes: int, output: str | None, batch_size: int) -> threading.Thread:
    """Starts a daemon thread that stops the process once ``VmRSS`` exceeds ``cap_bytes``.

    Args:
      cap_bytes: the cap on the whole process's resident set (Python, TF, weights, steps).
      output: where the out-of-memory result goes (JSON), or None.
      batch_size: recorded in that result.
    """

    def watch() -> None:
        while True:
            used = proc_status_bytes("VmRSS")
            if used is not None and used > cap_bytes:
                _stop(cap_bytes, used, output, batch_size)
            time.sleep(POLL_SECONDS)

    thread = threading.Thread(target=watch, name="memory-cap", daemon=True)
    thread.start()
    return thread
