"""runners.inference.resolve_model_path: export.py's output folder is accepted as --model_path."""

from __future__ import annotations

import pytest

from core.deploy.deploy_graph import ExportError
from runners.inference import resolve_model_path


def test_export_folder_resolves_to_its_model(tmp_path):
    export = tmp_path / "exported"
    (export / "saved_model").mkdir(parents=True)
    (export / "saved_model" / "saved_model.pb").write_bytes(b"")
    (export / "frozen_inference_graph.pb").write_bytes(b"")
    assert resolve_model_path(str(export)) == str(export / "saved_model")
    # A SavedModel folder and a file are taken as they are.
    assert resolve_model_path(str(export / "saved_model")) == str(export / "saved_model")
    frozen = str(export / "frozen_inference_graph.pb")
    assert resolve_model_path(frozen) == frozen


def test_export_folder_without_saved_model_uses_the_frozen_graph(tmp_path):
    (tmp_path / "frozen_inference_graph.pb").write_bytes(b"")
    assert resolve_model_path(str(tmp_path)) == str(tmp_path / "frozen_inference_graph.pb")


def test_folder_without_a_model_says_what_to_pass(tmp_path):
    (tmp_path / "pipeline.config").write_text("")
    with pytest.raises(ExportError, match="folder without a model: pass the saved_model/"):
        resolve_model_path(str(tmp_path))
