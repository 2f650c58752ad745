"""Latency relative to the full model: the full model is traced once per measurer, and the
calibration's mixes, timed round-robin against it, fit the same corrections under a load that
doubles after every timing as under no load at all."""

from __future__ import annotations

import collections
import logging

import numpy as np
import pytest

from builders import config_util, model_builder
from core.analysis import latency_calibration, latency_model, latency_timer
from core.analysis.relative_latency import RelativeMeasurer
from core.pruning import compression
from tests.conftest import TINY_CONFIG
from tests.core.analysis.latency_oracle import BranchOracleTimer
from tests.core.analysis.loaded_oracle import LoadedTimer


def test_the_full_model_is_traced_and_warmed_up_once_for_many_measurements(monkeypatch):
    pipeline = config_util.parse_pipeline_text(TINY_CONFIG.format(train="x", val="y"))
    models = []
    for _ in range(4):  # the full model and three candidates (random weights, same widths)
        models.append(model_builder.build(pipeline.model))
        models[-1].build_variables()
    full, candidates = models[0], models[1:]
    # Count traces: the model's Python predict runs once per trace, never when the traced
    # graph runs. Count graph runs: each call of a forward function made for a model.
    traces, runs, made = collections.Counter(), collections.Counter(), collections.Counter()
    predict = type(full).predict

    def counting_predict(self, *args, **kwargs):
        traces[id(self)] += 1
        return predict(self, *args, **kwargs)

    forward_call = compression.forward_call

    def counting_forward_call(model, input_size):
        made[id(model)] += 1
        call = forward_call(model, input_size)

        def counted():
            runs[id(model)] += 1
            return call()

        return counted

    monkeypatch.setattr(type(full), "predict", counting_predict)
    monkeypatch.setattr(compression, "forward_call", counting_forward_call)
    timer = latency_timer.TFCPUTimer(runs=2, warmup=1)
    built = []

    def build(widths):
        built.append(widths["which"])
        return models[widths["which"]]

    size = full.min_input_size()
    measurer = RelativeMeasurer(build, {"which": 0}, 40.0, timer, size)
    found = [measurer.compare_widths({"which": index}) for index in (1, 2, 3)]
    assert built == [1, 0, 2, 3]  # the full model built once, after the first candidate
    assert traces[id(full)] == 1 and made[id(full)] == 1
    # Its one warm-up, then 2 timed runs per measurement (not a warm-up per measurement).
    assert runs[id(full)] == 1 + 3 * 2
    for model in candidates:
        assert traces[id(model)] == made[id(model)] == 1 and runs[id(model)] == 1 + 2
    # Ratios of the same architecture: positive and finite (their values are the machine's).
    assert all(np.isfinite(c.ratio) and c.ratio > 0 for c in found)
    assert [c.ms for c in found] == pytest.approx([40.0 * c.ratio for c in found])
    assert len(measurer.full_timings_ms) == 3
    # A prepared reference is for its input size only; refused before anything is traced.
    prepared = timer.prepare(full, size)
    with pytest.raises(ValueError, match=r"prepared at \[\d+, \d+\], not at \[200, 200\]"):
        timer.time_pair(candidates[0], prepared, (200, 200))
    assert traces[id(candidates[0])] == 1


def test_a_measurer_needs_a_positive_reference():
    with pytest.raises(ValueError, match="reference latency must be positive, got 0.0"):
        RelativeMeasurer(dict, {"a": 4}, 0.0, LoadedTimer(), (8, 8))


def _conv(name, channels):
    return latency_model.LayerShape(
        scope=name, kind="conv", kernel_size=1, stride=1, rate=1, activation=None,
        input_hw=(1, 1), in_segments=((None, 1),), out_group=name, out_channels=channels,
    )  # fmt: skip


def _two_branches():
    """conv a (1 -> 100 channels, 0.1 ms each) and conv b (1 -> 40, 0.25 ms each) concurrent,
    2 ms fixed: end to end 2 + max(0.1 a, 0.25 b), 12 ms at full width (the oracle of
    tests/core/analysis/test_latency_calibration.py, where either branch can be critical)."""
    sizes = {"a": 100, "b": 40}
    oracle = BranchOracleTimer(
        layers={"a": (1, "a"), "b": (1, "b")}, sizes=sizes,
        per_unit={"a": 0.1, "b": 0.25}, branches=[["a"], ["b"]], fixed=2.0,
    )  # fmt: skip
    shapes = [_conv(name, sizes[name]) for name in ("a", "b")]
    tables = latency_model.build_tables(shapes, (1.0, 0.5, 0.25), oracle)
    key = {"model_config_sha256": "synthetic", "machine": {"cpu": "oracle"}, "ratios": [1]}
    layers = latency_model.LatencyModel(shapes, tables, oracle.time_model({}), key)
    return oracle, sizes, layers


def test_mixes_timed_against_the_full_model_fit_the_unloaded_corrections(caplog):
    oracle, sizes, layers = _two_branches()
    parts = {"a": ["a"], "b": ["b"]}
    assert layers.full_ms == pytest.approx(12.0)
    # The oracle: the corrections fitted to the unloaded latencies (each mix timed alone on an
    # idle machine), and numpy's least squares on hand-computed savings.
    idle, _, _ = latency_calibration.load_or_calibrate(
        layers, parts, sizes, oracle.time_model, cache_dir=None
    )
    mixes = idle.calibration["mixes"]
    savings = np.array(
        [[0.1 * (100 - m["widths"].get("a", 100)), 0.25 * (40 - m["widths"].get("b", 40))]
         for m in mixes]
    )  # fmt: skip
    truth = np.array([12.0 - oracle.time_model(m["widths"]) for m in mixes])
    expected, *_ = np.linalg.lstsq(savings, truth, rcond=None)
    assert [idle.factors()["a"], idle.factors()["b"]] == pytest.approx(expected, abs=1e-6)

    # A machine whose load doubles after every timing, each mix round-robin with the full model.
    busy = LoadedTimer(oracle)
    measurer = RelativeMeasurer(dict, sizes, layers.full_ms, busy, None)
    with caplog.at_level(logging.WARNING):
        relative, _, _ = latency_calibration.load_or_calibrate(
            layers, parts, sizes, measurer, cache_dir=None
        )
    document = relative.calibration
    assert document["measured_as"] == "ratio_to_full" and document["full_ms"] == 12.0
    assert [m["widths"] for m in document["mixes"]] == [m["widths"] for m in mixes]
    for mix in document["mixes"]:
        assert mix["measured_ms"] == pytest.approx(oracle.time_model(mix["widths"]), rel=1e-12)
        assert mix["ratio_to_full"] == pytest.approx(oracle.time_model(mix["widths"]) / 12.0)
    assert relative.factors() == pytest.approx(idle.factors(), abs=1e-9)
    # The full model was prepared once and every mix timed against it; its own timings show
    # the load (12, 24, 48 ... ms), which the calibration reports.
    assert busy.prepared == [sizes] and len(busy.pairs) == len(mixes)
    assert document["full_runs_ms"] == pytest.approx([12.0 * 2**i for i in range(len(mixes))])
    assert "the full model's timings ranged from 12.00 to" in caplog.text

    # Timed alone on the same busy machine, the mixes mislead the fit (why the above matters).
    alone, _, _ = latency_calibration.load_or_calibrate(
        layers, parts, sizes, LoadedTimer(oracle).time_model, cache_dir=None
    )
    assert alone.factors() != pytest.approx(idle.factors(), abs=0.05)


def test_a_measurer_with_another_reference_shares_the_full_model():
    # The calibration scales by the tables' full-model latency, the search and the latency
    # table by their latency model's: one full model is built and prepared for all of them.
    oracle, sizes, _ = _two_branches()
    busy = LoadedTimer(oracle)
    built = []

    def build(widths):
        built.append(dict(widths))
        return dict(widths)

    first = RelativeMeasurer(build, sizes, 12.0, busy, (1, 1))
    second = first.with_reference(24.0)
    narrowed = {"a": 50, "b": 20}
    one = first.compare_widths(narrowed)
    two = second.compare_widths(narrowed)
    assert busy.prepared == [sizes] and built.count(sizes) == 1
    # The oracle's unloaded ratio, 2 + max(5, 5) over 12, whatever the load at each timing.
    assert one.ratio == pytest.approx(7.0 / 12.0) and two.ratio == pytest.approx(one.ratio)
    assert (one.ms, two.ms) == pytest.approx((7.0, 14.0))
    assert len(first.full_timings_ms) == len(second.full_timings_ms) == 1
