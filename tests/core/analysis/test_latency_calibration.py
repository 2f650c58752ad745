"""The end-to-end calibrated latency model against networks that are not the sum of their layers.

Small synthetic networks (``BranchOracleTimer``: concurrent branches, a dispatch cost paid only
by a conv timed alone) whose latencies are computed by hand in the comments; the per-layer
model is fitted to them exactly as to a real model (tables timed layer by layer, the full model
end to end).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.analysis import latency_calibration, latency_model
from tests.core.analysis.latency_oracle import BranchOracleTimer


def _conv(scope, source, group, size):
    segment = (None, source) if isinstance(source, int) else (source, size[source])
    return latency_model.LayerShape(
        scope=scope, kind="conv", kernel_size=1, stride=1, rate=1, activation=None,
        input_hw=(1, 1), in_segments=(segment,), out_group=group, out_channels=size[group],
    )  # fmt: skip


def _layers_model(timer, shapes, key=None):
    tables = latency_model.build_tables(shapes, (1.0, 0.5, 0.25), timer)
    key = key or {"model_config_sha256": "synthetic", "machine": {"cpu": "oracle"}, "ratios": [1]}
    return latency_model.LatencyModel(shapes, tables, timer.time_model({}), key)


def _two_branches(b_per_channel):
    """Branch A: conv a (1 -> 100 channels, 0.1 ms each: 10 ms); branch B: conv b (1 -> 40,
    ``b_per_channel`` ms each; another shape, so another table); 2 ms fixed; end to end
    2 + max(A, B)."""
    sizes = {"a": 100, "b": 40}
    timer = BranchOracleTimer(
        layers={"a": (1, "a"), "b": (1, "b")}, sizes=sizes,
        per_unit={"a": 0.1, "b": b_per_channel}, branches=[["a"], ["b"]], fixed=2.0,
    )  # fmt: skip
    shapes = [_conv("a", 1, "a", sizes), _conv("b", 1, "b", sizes)]
    return timer, sizes, _layers_model(timer, shapes)


def test_concurrent_branches_fool_the_per_layer_model_but_not_the_calibrated_one():
    timer, sizes, layers = _two_branches(0.05)  # B: 2 ms, never on the critical path
    # Full: 2 + max(10, 2) = 12 ms. Per-layer fixed part: 12 - (10 + 0.5) - (2 + 0.5) = -1.
    assert layers.fixed_ms == pytest.approx(-1.0)
    calibrated, _, _ = latency_calibration.load_or_calibrate(
        layers, {"a": ["a"], "b": ["b"]}, sizes, timer.time_model, cache_dir=None
    )
    # In every mix a keeps >= 25 channels, so A (>= 2.5 ms) stays slower than B (<= 2 ms):
    # the measured saving is a's per-layer saving 0.1 * (100 - a) exactly, b's never counts.
    assert calibrated.factors() == pytest.approx({"a": 1.0, "b": 0.0})
    # widths: (measured = 2 + max(0.1 a, 0.05 b), per-layer = -1 + 0.1 a + 0.5 + 0.05 b + 0.5)
    expected = {
        (75, 30): (9.5, 9.0),
        (50, 20): (7.0, 6.0),  # per-layer -14%
        (25, 10): (4.5, 3.0),  # per-layer -33%
        (75, 10): (9.5, 8.0),  # per-layer -16%
        (25, 30): (4.5, 4.0),  # per-layer -11%
    }
    for (a, b), (measured, per_layer) in expected.items():
        widths = {"a": a, "b": b}
        assert timer.time_model(widths) == pytest.approx(measured)
        assert layers.predict(widths) == pytest.approx(per_layer)
        # Calibrated: 12 - 1 * 0.1 * (100 - a) - 0 * (...) = 2 + 0.1 a: the measured latency.
        assert calibrated.predict(widths) == pytest.approx(measured)
    # What the issue reported: the per-layer model is more than 10% off end to end.
    assert max(abs(per_layer / measured - 1) for measured, per_layer in expected.values()) > 0.1
    # End-to-end timings: one for the tables, the calibration's 2 + 2 parts x 3 ratios, ours.
    assert len(timer.model_calls) == 1 + 2 + 6 + len(expected)


def test_corrections_are_the_least_squares_fit_of_the_mixes():
    timer, sizes, layers = _two_branches(0.25)  # B: 10 ms as A: either can be critical
    calibrated, _, _ = latency_calibration.load_or_calibrate(
        layers, {"a": ["a"], "b": ["b"]}, sizes, timer.time_model, cache_dir=None
    )
    mixes = calibrated.calibration["mixes"]
    assert len(mixes) == 6 and all(mix["widths"] for mix in mixes)
    assert {r for mix in mixes for r in mix["ratios"].values()} <= {0.75, 0.5, 0.25}
    # The oracle: savings by hand (conv a: 0.1 ms per channel, b: 0.25), numpy's least squares.
    savings = np.array(
        [
            [0.1 * (100 - m["widths"].get("a", 100)), 0.25 * (40 - m["widths"].get("b", 40))]
            for m in mixes
        ]
    )
    measured = np.array([12.0 - timer.time_model(m["widths"]) for m in mixes])
    expected, *_ = np.linalg.lstsq(savings, measured, rcond=None)
    assert np.all((expected > 0) & (expected < 2))  # inside the bounds: the same solution
    fitted = calibrated.factors()
    assert [fitted["a"], fitted["b"]] == pytest.approx(expected, abs=1e-6)
    # Held-out widths: 12 - k_a 0.1 (100 - a) - k_b 0.25 (40 - b).
    for a, b in [(60, 30), (40, 20), (80, 10)]:
        widths = {"a": a, "b": b}
        by_hand = 12 - expected[0] * 0.1 * (100 - a) - expected[1] * 0.25 * (40 - b)
        assert calibrated.predict(widths) == pytest.approx(by_hand, rel=1e-6)


def test_fit_corrections_is_bounded_least_squares():
    rng = np.random.default_rng(3)
    savings = rng.uniform(0.5, 3.0, size=(12, 3))
    truth = np.array([0.3, 1.2, 0.8])
    measured = savings @ truth + rng.normal(0, 0.01, size=12)
    expected, *_ = np.linalg.lstsq(savings, measured, rcond=None)
    fit = latency_calibration.fit_corrections(savings, measured)
    assert fit == pytest.approx(expected, abs=1e-8)
    # A part whose narrowing measures slower (negative savings) is held at 0, and the other
    # part is the one-dimensional fit of what remains: k = (s . m) / (s . s).
    savings = np.array([[1.0, 1.0], [2.0, 0.0], [0.0, 1.0]])
    measured = np.array([0.0, 2.0, -1.0])
    # Unbounded: k = (1, -1); with k_b >= 0: k_b = 0, k_a = (1*0 + 2*2) / (1 + 4) = 0.8.
    assert latency_calibration.fit_corrections(savings, measured) == pytest.approx([0.8, 0.0])
    # Far more saving than predicted is held at the upper bound.
    assert latency_calibration.fit_corrections([[1.0], [1.0]], [5.0, 7.0]) == pytest.approx([2.0])


def test_a_part_with_negligible_savings_keeps_its_per_layer_saving():
    timer, sizes, layers = _two_branches(0.05)
    # b's per-layer saving at 38 channels is 0.05 * 2 = 0.1 ms, under 1% of 12: not fitted
    # (a noisy 6 ms timing would otherwise make its factor anything), k = 1; a is fitted.
    document = {
        "full_ms": 12.0,
        "parts": {"a": {"groups": ["a"]}, "b": {"groups": ["b"]}},
        "mixes": [
            {"ratios": {"b": 0.95}, "widths": {"b": 38}, "measured_ms": 6.0},
            {"ratios": {"a": 0.5}, "widths": {"a": 50}, "measured_ms": 7.0},
        ],
    }
    calibrated = latency_calibration.CalibratedLatencyModel(layers, document, key={})
    assert calibrated.factor("b") == 1.0 and "b" not in calibrated.factors()
    # a: 5 ms predicted, 12 - 7 = 5 measured (and the b-only mix adds 0 * k_a): k_a = 1.
    assert calibrated.factors() == pytest.approx({"a": 1.0})
    assert calibrated.predict({"b": 38}) == pytest.approx(11.9)


def test_a_conv_whose_input_and_output_narrow_is_not_counted_twice():
    # p: 3 fixed channels -> group a (8); q: a -> group b (8); 0.01 ms per cin*cout; one branch,
    # so end to end = 1 + 0.24 + 0.64 = 1.88 ms, and the per-layer model is exact (k = 1).
    sizes = {"a": 8, "b": 8}
    timer = BranchOracleTimer(
        layers={"p": (3, "a"), "q": ("a", "b")}, sizes=sizes,
        per_unit={"p": 0.01, "q": 0.01}, branches=[["p", "q"]], fixed=1.0,
    )  # fmt: skip
    shapes = [_conv("p", 3, "a", sizes), _conv("q", "a", "b", sizes)]
    layers = _layers_model(timer, shapes)
    calibrated, _, _ = latency_calibration.load_or_calibrate(
        layers, {"a": ["a"], "b": ["b"]}, sizes, timer.time_model, cache_dir=None, ratios=(0.5,)
    )
    both = {"a": 4, "b": 4}
    # Measured: 1 + 0.12 + 0.16 = 1.28. Adding the savings measured one group at a time
    # (a: 0.12 + 0.32, b: 0.32) would predict 1.12: q's saving counted twice.
    assert timer.time_model(both) == pytest.approx(1.28)
    assert calibrated.predict(both) == pytest.approx(1.28)
    # q's saving 0.48 split by Shapley: each 0.01 * 4 * 12 / 2 = 0.24; a also saves p's 0.12.
    assert calibrated.savings(both) == pytest.approx({"a": 0.36, "b": 0.24})
    # delta agrees with predict for the changes a search makes.
    for start, change in [({}, {"a": 4}), ({"a": 4}, {"b": 2}), ({"a": 2, "b": 6}, {"a": 8})]:
        after = calibrated.predict({**start, **change})
        assert calibrated.delta(start, change) == pytest.approx(after - calibrated.predict(start))


def test_the_calibration_is_cached_and_invalidated_by_a_new_key(tmp_path):
    timer, sizes, layers = _two_branches(0.05)
    parts = {"a": ["a"], "b": ["b"]}

    def load(layers_model=layers, **kwargs):
        options = dict(cache_dir=str(tmp_path), ratios=(0.5, 0.25))
        options.update(kwargs)
        before = len(timer.model_calls)
        found = latency_calibration.load_or_calibrate(
            layers_model, parts, sizes, timer.time_model, **options
        )
        return (*found, len(timer.model_calls) - before)

    first, path, cached, timings = load()
    assert not cached and timings == 2 * 2 + 2
    document = json.loads(open(path, encoding="utf-8").read())
    assert document["key"]["calibration"]["ratios"] == [0.5, 0.25]
    assert document["calibration"]["full_ms"] == pytest.approx(12.0)
    again, path_again, cached, timings = load()
    assert cached and path_again == path and timings == 0
    assert again.predict({"a": 30, "b": 24}) == pytest.approx(first.predict({"a": 30, "b": 24}))
    # Another table grid needs no new calibration (it only stores measurements) ...
    regridded = latency_model.LatencyModel(
        layers.layers, layers.tables, layers.full_ms, {**layers.key, "ratios": [1, 0.5]}
    )
    assert load(regridded)[2]
    # ... another grid of ratios, granularity or machine does.
    assert not load(ratios=(0.5,))[2]
    assert not load(granularity="group")[2]
    moved = latency_model.LatencyModel(
        layers.layers, layers.tables, layers.full_ms, {**layers.key, "machine": {"cpu": "other"}}
    )
    _, other_path, cached, timings = load(moved)
    assert not cached and other_path != path and timings == 6
    # A damaged cache file is timed again, not a crash.
    with open(path, "w", encoding="utf-8") as stream:
        stream.write("{not json")
    _, _, cached, timings = load()
    assert not cached and timings == 6
    assert load()[2]


def test_bad_calibration_ratios_are_one_clear_error():
    timer, sizes, layers = _two_branches(0.05)
    for ratios in [(), (1.0,), (0.5, 1.5)]:
        with pytest.raises(
            ValueError, match=r"calibration ratios must be keep fractions in \(0, 1\)"
        ):
            latency_calibration.load_or_calibrate(
                layers, {"a": ["a"]}, sizes, timer.time_model, cache_dir=None, ratios=ratios
            )
