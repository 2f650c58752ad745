import itertools

import numpy as np
import pytest

from core.analysis import latency
from tests.snippets import REPO_ROOT


def test_summarize_matches_numpy_percentiles():
    seconds = [0.010, 0.030, 0.020, 0.050, 0.040]
    stats = latency.summarize(seconds, warmup=1)
    assert stats.median_ms == pytest.approx(30.0)
    assert stats.p25_ms == pytest.approx(20.0)
    assert stats.p75_ms == pytest.approx(40.0)
    assert (stats.min_ms, stats.max_ms) == pytest.approx((10.0, 50.0))
    assert stats.runs == 5 and stats.warmup == 1 and stats.threads >= 1
    assert "30.0 ms median" in stats.describe()


def test_measure_times_only_the_timed_runs():
    calls = []
    # A fake clock: each timed run lasts (run index + 1) * 10 ms.
    ticks = itertools.chain.from_iterable((t, t + 0.01 * (i + 1)) for i, t in enumerate(range(4)))
    stats = latency.measure(lambda: calls.append(1), warmup=3, runs=4, clock=lambda: next(ticks))
    assert len(calls) == 7
    np.testing.assert_allclose(stats.median_ms, 25.0)
    assert stats.runs == 4 and stats.warmup == 3


def test_measure_rejects_no_runs():
    with pytest.raises(ValueError, match="runs >= 1"):
        latency.measure(lambda: None, runs=0)


def test_peak_rss_of_a_child_is_its_own_not_its_parents():
    """getrusage's ru_maxrss would report at least the parent's peak in a forked child."""
    import subprocess
    import sys

    from core.training import train_progress

    block = np.ones(1024 * 1024 * 1024 // 8)  # this process now holds over 1 GiB
    # RSS first: the high-water mark read after it cannot be below it (the other order races
    # with a page touched between the two reads).
    current = train_progress.proc_status_bytes("VmRSS")
    parent = train_progress.peak_rss_bytes()
    code = "from core.training.train_progress import peak_rss_bytes; print(peak_rss_bytes())"
    root = REPO_ROOT
    child = int(subprocess.check_output([sys.executable, "-c", code], cwd=root, text=True))
    del block
    assert current is None or parent >= current
    assert parent - child > 512 * 1024 * 1024, (parent, child)


def test_measure_interleaved_rotates_the_order_and_charges_each_callable():
    order = []
    now = [0.0]
    # Each call of "a" lasts 10 ms and of "b" 30 ms, by a clock that only the calls advance.
    cost = {"a": 0.010, "b": 0.030}

    def call(name):
        def fn():
            order.append(name)
            now[0] += cost[name]

        return fn

    stats = latency.measure_interleaved(
        {"a": call("a"), "b": call("b")}, warmup=1, runs=3, clock=lambda: now[0]
    )
    # One warm-up call each, then rounds a-b, b-a, a-b.
    assert order == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert stats["a"].median_ms == pytest.approx(10.0) and stats["a"].runs == 3
    assert stats["b"].median_ms == pytest.approx(30.0) and stats["b"].warmup == 1
    with pytest.raises(ValueError, match="runs >= 1"):
        latency.measure_interleaved({"a": call("a")}, runs=0)
