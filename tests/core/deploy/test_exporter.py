"""Tests of core.deploy.exporter and the segmenters on a restored model.

The shared export (tests/runners/export_fixtures.py) is a tiny random-init ICNet; references
are the checkpoint restored into a fresh model and run eagerly, not the exporter's own graph.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

from core.deploy import deploy_graph, exporter, segmenters
from core.deploy.exporter import ExportError
from tests.runners.export_fixtures import HEIGHT, PAD, WIDTH

# --------------------------------------------------------------------------- shapes


def test_parse_input_shape_adds_batch_and_rejects_bad_values():
    assert deploy_graph.parse_input_shape("1024,2048,3") == (None, 1024, 2048, 3)
    assert deploy_graph.parse_input_shape(["2", "97", "129", "3"]) == (2, 97, 129, 3)
    assert deploy_graph.parse_input_shape("-1,97,129,3") == (None, 97, 129, 3)
    with pytest.raises(ExportError, match="height and width must be known.*pyramid pooling"):
        deploy_graph.parse_input_shape("-1,2048,3")
    with pytest.raises(ExportError, match="--input_shape='a,b,3' is not a comma-separated"):
        deploy_graph.parse_input_shape("a,b,3")
    with pytest.raises(ExportError, match="must have 3 .* or 4 .* got 2"):
        deploy_graph.parse_input_shape("1024,2048")
    with pytest.raises(ExportError, match="must be 3 \\(RGB\\), got 1"):
        deploy_graph.parse_input_shape("1024,2048,1")
    with pytest.raises(ExportError, match="positive"):
        deploy_graph.parse_input_shape("0,10,10,3")


def test_parse_pad_to_shape():
    shape = (None, 1024, 2048, 3)
    assert deploy_graph.parse_pad_to_shape(None, shape) is None
    assert deploy_graph.parse_pad_to_shape([], shape) is None
    assert deploy_graph.parse_pad_to_shape("1025,2049", shape) == (1025, 2049)
    assert deploy_graph.parse_pad_to_shape("1025,2049,3", shape) == (1025, 2049)
    with pytest.raises(ExportError, match="--pad_to_shape='1000,2049' is smaller than the input"):
        deploy_graph.parse_pad_to_shape("1000,2049", shape)


# --------------------------------------------------------------------------- formats


def test_frozen_graph_has_the_original_node_names(exported):
    graph_def = tf.compat.v1.GraphDef()
    with open(os.path.join(exported.output_dir, "frozen_inference_graph.pb"), "rb") as stream:
        graph_def.ParseFromString(stream.read())
    nodes = {node.name: node for node in graph_def.node}
    assert nodes["inputs"].op == "Placeholder"
    assert tf.dtypes.as_dtype(nodes["inputs"].attr["dtype"].type) == tf.uint8
    assert [d.size for d in nodes["inputs"].attr["shape"].shape.dim] == [-1, 96, 128, 3]
    assert nodes["predictions"].op == "Identity"
    assert not any(node.op in ("VarHandleOp", "ReadVariableOp") for node in graph_def.node)


def test_saved_model_serving_signature(exported):
    loaded = tf.saved_model.load(os.path.join(exported.output_dir, "saved_model"))
    # The export's fixed size is the serving_fixed_size signature's; serving_default takes any
    # size (tests/core/deploy/test_serving_input_size.py).
    signature = loaded.signatures["serving_fixed_size"]
    spec = signature.structured_input_signature[1]["inputs"]
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, 96, 128, 3]
    output = signature(inputs=tf.constant(exported.images[0][None]))["predictions"]
    assert output.dtype == tf.int32 and output.shape == (1, 96, 128, 1)
    any_size = loaded.signatures["serving_default"]
    spec = any_size.structured_input_signature[1]["inputs"]
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, None, None, 3]
    same = any_size(inputs=tf.constant(exported.images[0][None]))["predictions"]
    np.testing.assert_array_equal(same.numpy(), output.numpy())


# --------------------------------------------------------------------------- options


def test_failed_export_leaves_the_previous_one(exported, tmp_path, monkeypatch):
    (tmp_path / "frozen_inference_graph.pb").write_bytes(b"old graph")
    (tmp_path / "saved_model").mkdir()
    (tmp_path / "saved_model" / "old").write_text("old")

    def broken_saved_model(model, serve, path):
        os.makedirs(path)
        with open(os.path.join(path, "saved_model.pb"), "wb") as stream:
            stream.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(exporter, "_write_saved_model", broken_saved_model)
    with pytest.raises(OSError, match="disk full"):
        exporter.export_model(
            exported.model,
            str(tmp_path),
            deploy_graph.parse_input_shape("96,128,3"),
            PAD,
            formats=["frozen_graph", "saved_model"],
        )
    # The new frozen graph was complete when the failure came, but nothing is committed.
    assert sorted(os.listdir(tmp_path)) == ["frozen_inference_graph.pb", "saved_model"]
    assert (tmp_path / "frozen_inference_graph.pb").read_bytes() == b"old graph"
    assert os.listdir(tmp_path / "saved_model") == ["old"]


def test_commit_replaces_files_and_directories_only_when_complete(tmp_path):
    (tmp_path / "a.pb").write_text("old")
    (tmp_path / "saved_model").mkdir()
    (tmp_path / "saved_model" / "old").write_text("old")
    staging = exporter._Staging(str(tmp_path))
    with open(staging.path("a.pb"), "w") as stream:
        stream.write("new")
    os.makedirs(staging.path("saved_model"))
    (tmp_path / os.path.basename(staging.directory) / "saved_model" / "new").write_text("new")
    assert (tmp_path / "a.pb").read_text() == "old"  # nothing visible before the commit
    staging.commit()
    staging.cleanup()
    assert (tmp_path / "a.pb").read_text() == "new"
    assert os.listdir(tmp_path / "saved_model") == ["new"]
    assert sorted(os.listdir(tmp_path)) == ["a.pb", "saved_model"]


def test_checkpoint_segmenter_traces_once_for_every_call(exported):
    """No retracing between calls: one trace serves images of the input size and of others."""
    model_segmenter = segmenters.ModelSegmenter(exported.model, (1, HEIGHT, WIDTH, 3), PAD)
    for image in [*exported.images, exported.images[0][:50, :70]]:
        model_segmenter(image)
    assert model_segmenter._serve.experimental_get_tracing_count() == 1


def test_xla_compiled_deploy_graph_agrees_with_the_plain_one(exported):
    plain = segmenters.ModelSegmenter(exported.model, (1, HEIGHT, WIDTH, 3), PAD)
    compiled = segmenters.ModelSegmenter(
        exported.model, (1, HEIGHT, WIDTH, 3), PAD, jit_compile=True
    )
    agree = total = 0
    for image in exported.images:
        expected = plain(image)
        agree += int((compiled(image) == expected).sum())
        total += expected.size
    assert agree / total >= 0.999
