"""The latency predictor on the tiny ICNet: calibration parts honour skips and ties, and the
latency table reports measured, per-layer and calibrated latency (oracle timer: exact)."""

from __future__ import annotations

import pytest

from core.analysis import latency_model
from core.pruning.sensitivity_units import block_names
from runners import latency_predictor, latency_table
from tests.core.analysis.latency_oracle import OracleTimer
from tests.core.analysis.loaded_oracle import LoadedTimer
from tests.core.pruning.tied_model import BLOCK1, SKIPPED, tiny_tied_model


class RecordingTimer(OracleTimer):
    """The oracle for the tables; calibration models arrive as their group widths, recorded."""

    def __init__(self):
        super().__init__()
        self.calibrated = []

    def time_model(self, model, input_size) -> float:
        if isinstance(model, dict):
            self.calibrated.append(model)
            return 10.0 - 0.001 * len(model)
        return super().time_model(model, input_size)


def test_calibration_times_only_prunable_parts_and_narrows_tied_convs_together(monkeypatch):
    tied_model = tiny_tied_model()
    pipeline, model, graph = tied_model.pipeline, tied_model.model, tied_model.graph
    prunable = tied_model.prunable
    skipped = graph.group_of[SKIPPED].name
    tied = graph.group_of[f"{BLOCK1}/conv1"].name
    assert skipped not in prunable and graph.group_of[f"{BLOCK1}/conv2"].name == tied
    # The calibration's models come back as their widths (no model is built).
    monkeypatch.setattr(latency_predictor, "model_at_widths", lambda p, g: dict)
    timer = RecordingTimer()
    predictor = latency_predictor.load_predictor(
        model, pipeline, graph, [g for g in prunable], (97, 97), timer,
        table_dir=None, ratios=(1.0, 0.5), calibration_ratios=(0.5,),
    )  # fmt: skip
    calls = timer.calibrated
    assert calls[0] == calls[-1] == {}  # the full model, first and last
    narrowed = [widths for widths in calls if widths]
    assert all(set(widths) <= set(prunable) for widths in narrowed)
    assert not any(skipped in widths for widths in narrowed)
    # FastPSPModule holds only the skipped conv: no part. The 8 other blocks at one ratio:
    # max(8 x 1, 8 + 1) = 9 random mixes, which between them narrow every prunable group.
    blocks = {name for name, scopes in model.pruning_units().items()}
    assert len(blocks) == 9 and len(narrowed) == 9
    assert set().union(*narrowed) == set(prunable)
    with_tie = [widths for widths in narrowed if tied in widths]
    assert with_tie
    for mix in with_tie:
        widths = latency_predictor.layer_widths(graph, mix)
        assert widths[f"{BLOCK1}/conv1"] == widths[f"{BLOCK1}/conv2"] == mix[tied]
    assert predictor.kind == "calibrated" and predictor.summary()["latency_model"] == "calibrated"
    with pytest.raises(ValueError, match="--latency_model must be one of calibrated, layers"):
        latency_predictor.load_predictor(
            model, pipeline, graph, list(prunable), (97, 97), timer, kind="fast", table_dir=None
        )


def test_the_latency_table_reports_both_predictions_exact_for_an_additive_oracle(
    tiny_config_path, tmp_path, monkeypatch
):
    # The oracle's latency is additive and bilinear: the per-layer model is exact, every
    # calibration factor is 1, and both predictions must equal the oracle's figure, at widths
    # that narrow calibrated and uncalibrated groups alike.
    monkeypatch.setattr(latency_model, "TFCPUTimer", OracleTimer)
    parts, load_predictor = [], latency_predictor.load_predictor

    def two_blocks(model, pipeline, graph, prunable, *args, **kwargs):
        # Calibrating two of the nine blocks keeps the test to ten model builds.
        blocks = block_names(model, graph)
        kept = [g for g in prunable if blocks[g] in ("block1", "full_branch")]
        predictor = load_predictor(model, pipeline, graph, kept, *args, **kwargs)
        parts.extend(predictor.model.calibration["parts"])
        return predictor

    monkeypatch.setattr(latency_predictor, "load_predictor", two_blocks)
    rows = latency_table.report(
        tiny_config_path, (97, 97), str(tmp_path), (1.0, 0.5, 0.25), "median", 1,
        calibration_ratios=(0.5,), mixes=1,
    )  # fmt: skip
    assert parts == ["block1", "full_branch"]
    assert [row["name"] for row in rows] == [
        "uniform 1.0", "uniform 0.75", "uniform 0.5", "uniform 0.25", "random mix 1",
    ]  # fmt: skip
    for row in rows:
        assert row["layers_ms"] == pytest.approx(row["measured_ms"], rel=1e-9)
        assert row["calibrated_ms"] == pytest.approx(row["measured_ms"], rel=1e-9)
        assert row["calibrated_error"] == pytest.approx(0.0, abs=1e-9)
    table = latency_table.markdown(rows).splitlines()
    assert table[0] == (
        "| widths | measured (ms) | layers (ms) | layers error | calibrated (ms) | "
        "calibrated error |"
    )
    assert len(table) == 2 + len(rows) and table[4].startswith("| uniform 0.5 | ")


def test_the_latency_table_times_every_row_against_the_full_model_on_a_busy_machine(
    tiny_config_path, tmp_path, monkeypatch, capsys
):
    # Every whole-model timing on this machine is the oracle's latency times a load that
    # doubles after each timing: a row timed alone would be off by 2^k. Timed round-robin with
    # the full model, each row is its ratio to the full model times the latency model's
    # full-model latency (the tables' timing, the first one: load 1), so it is the oracle's
    # unloaded latency, and the additive oracle's predictions match it exactly again.
    timers = []

    def loaded_timer(**kwargs):
        timers.append(LoadedTimer(**kwargs))
        return timers[-1]

    monkeypatch.setattr(latency_model, "TFCPUTimer", loaded_timer)
    load_predictor = latency_predictor.load_predictor

    def two_blocks(model, pipeline, graph, prunable, *args, **kwargs):
        blocks = block_names(model, graph)
        kept = [g for g in prunable if blocks[g] in ("block1", "full_branch")]
        return load_predictor(model, pipeline, graph, kept, *args, **kwargs)

    monkeypatch.setattr(latency_predictor, "load_predictor", two_blocks)
    rows = latency_table.report(
        tiny_config_path, (97, 97), str(tmp_path), (1.0, 0.5, 0.25), "median", 1,
        calibration_ratios=(0.5,), mixes=1,
    )  # fmt: skip
    (timer,) = timers
    # One full model, prepared once, for the calibration's 3 mixes and the table's 5 rows.
    assert len(timer.prepared) == 1 and len(timer.pairs) == 3 + 5
    unloaded = OracleTimer()
    full_ms = unloaded.time_model(timer.prepared[0], (97, 97))
    for row, (model, reference) in zip(rows, timer.pairs[3:], strict=True):
        assert reference is timer.prepared[0]
        assert row["measured_as"] == "ratio_to_full" and row["full_ms"] == pytest.approx(full_ms)
        assert row["measured_ms"] == pytest.approx(unloaded.time_model(model, (97, 97)))
        assert row["layers_ms"] == pytest.approx(row["measured_ms"], rel=1e-9)
        assert row["calibrated_ms"] == pytest.approx(row["measured_ms"], rel=1e-9)
    assert rows[0]["name"] == "uniform 1.0" and rows[0]["ratio_to_full"] == pytest.approx(1.0)
    assert rows[3]["measured_ms"] < 0.5 * full_ms  # uniform 0.25: a real saving, not load
    note = latency_table.measurement_note(rows)
    assert note.startswith("measured_as: ratio_to_full") and f"{full_ms:.2f} ms" in note
