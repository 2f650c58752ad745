"""The latency model: per-layer tables + a fixed part, against an oracle timer and a real one.

The oracle timer charges each layer ``a * k^2 * cin * cout + b``: bilinear in the channel
counts, so the tables' bilinear interpolation is exact and the prediction of any model inside
the grid must equal the oracle's end-to-end figure, which it computes from the built model's
kernels alone (not from the latency model's wiring).
"""

from __future__ import annotations

import numpy as np
import pytest

from builders import config_util, model_builder
from core.analysis import latency_model
from core.pruning.dependency import build_channel_graph
from tests.conftest import TINY_CONFIG
from tests.core.analysis.latency_oracle import FIXED, OracleTimer

SIZE = (97, 97)


@pytest.fixture(scope="module")
def tiny():
    pipeline = config_util.parse_pipeline_text(TINY_CONFIG.format(train="x", val="y"))
    model = model_builder.build(pipeline.model)
    model.build_variables()
    return pipeline, model, build_channel_graph(model)


def _build(tmp_path, tiny, timer, **kwargs):
    pipeline, model, graph = tiny
    options = dict(model_config_text=str(pipeline.model), input_size=SIZE, ratios=(1.0, 0.5, 0.25))
    options.update(kwargs)
    return latency_model.load_or_build(
        model, graph, cache_dir=str(tmp_path), timer=timer, **options
    )


def test_prediction_matches_the_measured_model_at_mixed_widths(tmp_path, tiny):
    pipeline, _, graph = tiny
    timer = OracleTimer()
    predictor, _, cached = _build(tmp_path, tiny, timer)
    assert not cached and predictor.fixed_ms == pytest.approx(FIXED)
    rng = np.random.default_rng(0)
    for ratios in ([0.25], [1.0, 0.6, 0.3, 0.75]):
        widths = {g.name: max(1, int(g.size * rng.choice(ratios))) for g in graph.groups}
        if min(g.size for g in graph.groups) * min(ratios) < 1:
            continue
        layer_widths = {scope: widths[g.name] for g in graph.groups for scope in g.producers}
        pruned = model_builder.build(pipeline.model, layer_widths=layer_widths)
        pruned.build_variables()
        measured = timer.time_model(pruned, SIZE)
        assert predictor.predict(widths) == pytest.approx(measured, rel=1e-9)
        assert sum(predictor.breakdown(widths).values()) == pytest.approx(measured, rel=1e-9)


def test_the_table_is_cached_and_invalidated_by_a_new_key(tmp_path, tiny, monkeypatch):
    first = OracleTimer()
    predictor, path, cached = _build(tmp_path, tiny, first)
    assert not cached and first.layer_calls > 0 and first.model_calls == 1
    again = OracleTimer()
    reread, path_again, cached = _build(tmp_path, tiny, again)
    assert cached and path_again == path and again.layer_calls == again.model_calls == 0
    widths = {g.name: max(1, g.size // 2) for g in tiny[2].groups}
    assert reread.predict(widths) == pytest.approx(predictor.predict(widths))
    other_size = OracleTimer()
    _, other_path, cached = _build(tmp_path, tiny, other_size, input_size=(129, 129))
    assert not cached and other_path != path and other_size.layer_calls > 0
    real_key = latency_model.machine_key()
    monkeypatch.setattr(
        latency_model, "machine_key", lambda: {**real_key, "cpu_model": "another CPU"}
    )
    other_machine = OracleTimer()
    _, _, cached = _build(tmp_path, tiny, other_machine)
    assert not cached and other_machine.layer_calls > 0


def test_a_real_conv_costs_more_with_more_channels():
    shape = latency_model.LayerShape(
        scope="x", kind="conv", kernel_size=3, stride=1, rate=1, activation="relu",
        input_hw=(64, 64), in_segments=(("g", 128),), out_group="h", out_channels=128,
    )  # fmt: skip
    timer = latency_model.TFCPUTimer(runs=3, warmup=1, statistic="min")
    small = timer.time_layer(shape, 8, 8)
    large = timer.time_layer(shape, 128, 128)  # 256 times the multiply-adds
    assert 0 < small and large > 2 * small


@pytest.mark.slow
@pytest.mark.timing
def test_real_prediction_is_close_to_the_measured_model(tmp_path, tiny):
    """Loose on purpose: the test machine is shared, so timings move by tens of percent."""
    pipeline, _, graph = tiny
    timer = latency_model.TFCPUTimer(runs=3, warmup=1, statistic="min", min_call_ms=1.0)
    predictor, _, _ = _build(tmp_path, tiny, timer, ratios=(1.0, 0.5))
    widths = {g.name: max(1, g.size // 2) for g in graph.groups}
    pruned = model_builder.build(pipeline.model, layer_widths={
        scope: widths[g.name] for g in graph.groups for scope in g.producers
    })  # fmt: skip
    pruned.build_variables()
    measured = timer.time_model(pruned, SIZE)
    assert 0.4 * measured < predictor.predict(widths) < 2.5 * measured
