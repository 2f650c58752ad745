"""What a killed export leaves is discarded (before its commit) or completed (during it)."""

from __future__ import annotations

import os

from core.deploy import exporter


def _previous_export(output) -> None:
    output.mkdir()
    (output / "a.pb").write_text("old")
    (output / "saved_model").mkdir()
    (output / "saved_model" / "saved_model.pb").write_text("old")


def test_an_export_killed_before_its_commit_is_discarded(tmp_path):
    output = tmp_path / "export"
    _previous_export(output)
    staging = output / ".export-staging-abc"  # killed while writing: no .commit
    staging.mkdir()
    (staging / "a.pb").write_text("half")
    exporter.recover_interrupted_export(str(output))
    assert sorted(os.listdir(output)) == ["a.pb", "saved_model"]
    assert (output / "a.pb").read_text() == "old"
    assert (output / "saved_model" / "saved_model.pb").read_text() == "old"


def test_an_export_killed_while_moving_is_completed(tmp_path):
    output = tmp_path / "export"
    _previous_export(output)
    staging = output / ".export-staging-abc"
    (staging / "saved_model").mkdir(parents=True)
    (staging / "saved_model" / "saved_model.pb").write_text("new")
    (staging / "summary.json").write_text("new")
    (staging / ".commit").write_text("a.pb\nsaved_model\nsummary.json")
    # Killed after a.pb was moved and the old SavedModel set aside, before the new one moved.
    (output / "a.pb").write_text("new")
    os.replace(output / "saved_model", output / ".saved_model.old-xyz")
    exporter.recover_interrupted_export(str(output))
    assert sorted(os.listdir(output)) == ["a.pb", "saved_model", "summary.json"]
    for path in ("a.pb", "saved_model/saved_model.pb", "summary.json"):
        assert (output / path).read_text() == "new", path


def test_a_saved_model_set_aside_is_restored_or_dropped(tmp_path):
    output = tmp_path / "export"
    _previous_export(output)
    os.replace(output / "saved_model", output / ".saved_model.old-1")  # nothing took its place
    exporter.recover_interrupted_export(str(output))
    assert (output / "saved_model" / "saved_model.pb").read_text() == "old"
    (output / ".saved_model.old-2").mkdir()  # the new one is in place: the old one goes
    exporter.recover_interrupted_export(str(output))
    assert sorted(os.listdir(output)) == ["a.pb", "saved_model"]
