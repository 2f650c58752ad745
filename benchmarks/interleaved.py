"""Round-robin timing of several runtimes, so that machine noise hits all of them alike.

Timing one runtime after another lets a burst of load from another process land on one of them
only; on a shared machine that can change their order. Here every round times one call of each
runtime, the order rotating by one each round (no runtime always runs right after the same
other), and each runtime is then reported as a ratio of its median to the fastest median: the
ratios stay meaningful on a busy machine where the absolute milliseconds do not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping


def round_robin_order(names: list[str], rounds: int) -> list[list[str]]:
    """The call order of each round: ``names`` rotated left by the round's index.

    Args:
      names: the runtimes, in their listed order.
      rounds: number of timed rounds.

    Returns:
      ``rounds`` lists, each a rotation of ``names``.
    """
    count = len(names)
    return [names[r % count :] + names[: r % count] for r in range(rounds)] if count else []


def time_interleaved(
    calls: Mapping[str, Callable[[], object]],
    warmup: int,
    runs: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Times each callable ``runs`` times, round-robin, after ``warmup`` untimed rounds.

    Args:
      calls: runtime name -> a callable that blocks until its result is ready.
      warmup: untimed rounds (each calls every runtime once).
      runs: timed rounds, >= 1.
      clock: seconds, for tests.

    Returns:
      runtime name -> its ``runs`` durations in seconds, in the order they were taken.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    names = list(calls)
    for order in round_robin_order(names, warmup):
        for name in order:
            calls[name]()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for order in round_robin_order(names, runs):
        for name in order:
            started = clock()
            calls[name]()
            seconds[name].append(clock() - started)
    return seconds


def ratios_to_fastest(medians: Mapping[str, float]) -> dict[str, float]:
    """Each median divided by the smallest one (the fastest runtime gets 1.0)."""
    if not medians:
        return {}
    fastest = min(medians.values())
    if fastest <= 0:
        raise ValueError(f"medians must be positive, got {dict(medians)}")
    return {name: value / fastest for name, value in medians.items()}
