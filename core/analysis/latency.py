"""Wall-clock latency of a callable: warm-up runs, then timed runs summarised robustly.

Used by the benchmarks (``benchmarks/``) and the compression report (``compress.py``), so
every latency the project prints is measured the same way::

    stats = measure(lambda: segmenter.run(batch), warmup=2, runs=5)
    print(stats.describe())      # "412.3 ms median (IQR 405.1-420.8, n=5, 2 threads)"

The median and the interquartile range are reported rather than the mean and the standard
deviation: on a shared machine a single slow run (another process, a page fault) would
otherwise move the figure.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable

import numpy as np


def cpu_threads() -> int:
    """Threads TensorFlow's CPU kernels use: the inter/intra-op settings, or the CPU count."""
    import tensorflow as tf

    intra = tf.config.threading.get_intra_op_parallelism_threads()
    if intra:
        return intra
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclasses.dataclass(frozen=True)
class LatencyStats:
    """Timings of one callable, in milliseconds.

    Attributes:
      median_ms, p25_ms, p75_ms, min_ms, max_ms: over the timed runs.
      runs: number of timed runs; warmup: untimed runs before them.
      threads: CPU threads available to TensorFlow (for the record).
    """

    median_ms: float
    p25_ms: float
    p75_ms: float
    min_ms: float
    max_ms: float
    runs: int
    warmup: int
    threads: int

    def describe(self) -> str:
        return (
            f"{self.median_ms:.1f} ms median (IQR {self.p25_ms:.1f}-{self.p75_ms:.1f}, "
            f"n={self.runs}, {self.threads} threads)"
        )

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def summarize(seconds: list[float] | np.ndarray, warmup: int = 0) -> LatencyStats:
    """Summarises run durations given in seconds."""
    values = np.asarray(seconds, dtype=np.float64) * 1000.0
    if values.size == 0:
        raise ValueError("no timed runs to summarise")
    p25, median, p75 = np.percentile(values, [25, 50, 75])
    return LatencyStats(
        median_ms=float(median),
        p25_ms=float(p25),
        p75_ms=float(p75),
        min_ms=float(values.min()),
        max_ms=float(values.max()),
        runs=int(values.size),
        warmup=warmup,
        threads=cpu_threads(),
    )


def measure(
    fn: Callable[[], object],
    *,
    warmup: int = 2,
    runs: int = 5,
    clock: Callable[[], float] = time.perf_counter,
) -> LatencyStats:
    """Calls ``fn`` ``warmup`` times untimed, then ``runs`` times timed.

    ``fn`` must block until its result is ready (call ``.numpy()`` on a tensor result, for
    example); asynchronous work left running would be charged to the next run.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(runs):
        started = clock()
        fn()
        seconds.append(clock() - started)
    return summarize(seconds, warmup)


def measure_interleaved(
    fns: dict[str, Callable[[], object]],
    *,
    warmup: int = 2,
    runs: int = 5,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, LatencyStats]:
    """Times several callables round-robin, so that a burst of load hits all of them alike.

    Timing one callable after the other lets a busy minute land on one of them only: on a
    shared 2-core machine a pruned model has been measured slower than its unpruned parent
    that way. Here round ``r`` calls every callable once, in an order rotated by ``r``, and
    each callable's runs are summarised as :func:`measure` does.

    Args:
      fns: name -> callable that blocks until its result is ready.
      warmup: untimed calls of each callable before the first round.
      runs: timed rounds.
      clock: seconds, monotonic (injectable for tests).

    Returns:
      name -> :class:`LatencyStats`, in the order of ``fns``.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(runs):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            started = clock()
            fns[name]()
            seconds[name].append(clock() - started)
    return {name: summarize(seconds[name], warmup) for name in names}
