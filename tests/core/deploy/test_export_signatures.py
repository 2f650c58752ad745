"""One input name and one output name in every format, scores, labels.txt/metadata.json, versions.

The shared export (tests/runners/export_fixtures.py) is a tiny random-init ICNet, 96x128 padded
to 97x129, with the tiny config (no dataset field, 19 classes: Cityscapes). References are the
model run eagerly and the Cityscapes class list and colours as published, not the exporter's
own graph or tables.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from core.datasets.metadata import generic_metadata
from core.deploy import deploy_graph, export_staging, exporter, tflite_export
from core.deploy.exporter import ExportError
from runners.inference import load_segmenter
from tests.runners.export_fixtures import (
    HEIGHT,
    PAD,
    WIDTH,
    reference_ids,
    reference_logits,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def test_tflite_signatures_use_the_deploy_names(exported):
    for name in ("model_float32.tflite", "model_int8.tflite"):
        interpreter = tflite_export.make_interpreter(os.path.join(exported.output_dir, name))
        assert interpreter.get_signature_list() == {
            "serving_default": {"inputs": ["inputs"], "outputs": ["predictions"]}
        }, name
    runner = interpreter.get_signature_runner("serving_default")  # the int8 one
    ids = runner(inputs=exported.images[0][None])["predictions"]
    assert ids.shape == (1, HEIGHT, WIDTH, 1) and ids.dtype == np.int32


def test_labels_and_metadata_are_written_beside_the_export(exported):
    with open(os.path.join(exported.output_dir, "labels.txt"), encoding="utf-8") as stream:
        labels = stream.read().split("\n")
    assert labels[-1] == "" and len(labels) == 20  # 19 lines, each ending in a newline
    # Cityscapes' train ids, as published: 0 road, 13 car, 18 bicycle.
    assert (labels[0], labels[1], labels[13], labels[18]) == ("road", "sidewalk", "car", "bicycle")
    with open(os.path.join(exported.output_dir, "metadata.json"), encoding="utf-8") as stream:
        metadata = json.load(stream)
    assert metadata["dataset"]["class_names"] == labels[:-1]
    assert metadata["dataset"]["palette"][0] == [128, 64, 128]  # road's Cityscapes colour
    assert metadata["dataset"]["label_ids"][0] == 7 and metadata["dataset"]["ignore_label"] == 255
    assert metadata["input"]["name"] == "inputs" and metadata["input"]["dtype"] == "uint8"
    assert metadata["input"]["network_input_size"] == [HEIGHT, WIDTH]
    assert metadata["input"]["pad_to_shape"] == list(PAD)
    assert metadata["input"]["any_size_formats"] == ["saved_model"]
    assert sorted(metadata["formats"]) == sorted(exporter.DEFAULT_FORMATS)  # onnx: when asked
    assert metadata["formats"]["tflite_float32"]["input_shape"] == [1, HEIGHT, WIDTH, 3]
    assert metadata["formats"]["saved_model"]["input_shape"] == [-1, -1, -1, 3]
    assert list(metadata["outputs"]) == ["predictions"]
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as stream:
        version = tomllib.load(stream)["project"]["version"]
    assert metadata["project"]["version"] == version
    # The normalisation described is what the graph does to a pixel.
    pixels = np.random.RandomState(0).uniform(0, 255, (1, 4, 5, 3)).astype(np.float32)
    norm = metadata["normalisation"]
    described = pixels * np.array(norm["scale"]) + np.array(norm["offset"])
    np.testing.assert_allclose(exported.model.preprocess(tf.constant(pixels)), described, atol=1e-3)


def test_scores_and_an_any_size_frozen_graph(exported, tmp_path):
    result = exporter.export_model(
        exported.model,
        str(tmp_path),
        deploy_graph.parse_input_shape("96,128,3"),
        PAD,
        formats=["frozen_graph", "saved_model"],
        dynamic_input_size=True,
        output_scores=True,
        dataset=generic_metadata(19),
    )
    assert result.summary["any_size_formats"] == ["frozen_graph", "saved_model"]
    graph_def = tf.compat.v1.GraphDef()
    with open(tmp_path / "frozen_inference_graph.pb", "rb") as stream:
        graph_def.ParseFromString(stream.read())
    names = {node.name for node in graph_def.node}
    assert {"inputs", "predictions", "scores"} <= names

    def import_graph():
        tf.compat.v1.import_graph_def(graph_def, name="")

    wrapped = tf.compat.v1.wrap_function(import_graph, [])
    frozen = wrapped.prune(
        wrapped.graph.get_tensor_by_name("inputs:0"),
        [wrapped.graph.get_tensor_by_name(n) for n in ("predictions:0", "scores:0")],
    )
    signature = tf.saved_model.load(str(tmp_path / "saved_model")).signatures["serving_default"]
    image = exported.images[1]
    ids, scores = (t.numpy()[0] for t in frozen(tf.constant(image[None])))
    logits = reference_logits(exported.model, image).astype(np.float64)
    softmax = np.exp(logits - logits.max(-1, keepdims=True))
    softmax /= softmax.sum(-1, keepdims=True)
    np.testing.assert_allclose(scores, softmax, atol=1e-5)
    assert (ids[..., 0] == reference_ids(exported.model, image)).mean() >= 0.999
    served = signature(inputs=tf.constant(image[None]))
    np.testing.assert_allclose(served["scores"].numpy()[0], softmax, atol=1e-5)
    # Another size: both graphs resize in the graph and agree exactly.
    small = image[:50, :70]
    ids, scores = (t.numpy() for t in frozen(tf.constant(small[None])))
    assert ids.shape == (1, 50, 70, 1) and scores.shape == (1, 50, 70, 19)
    np.testing.assert_array_equal(ids, signature(inputs=tf.constant(small[None]))["predictions"])
    np.testing.assert_array_equal(ids[..., 0], scores.argmax(-1))
    # inference.py's segmenter passes any size through; the network size is metadata.json's.
    segmenter = load_segmenter(model_path=str(tmp_path / "frozen_inference_graph.pb"))
    assert segmenter.any_size and segmenter.input_size == (HEIGHT, WIDTH)
    np.testing.assert_array_equal(segmenter(small), ids[0, ..., 0])


def test_parse_export_shapes():
    parse = deploy_graph.parse_export_shapes
    assert parse("-1,-1,3", "257,513") == ((None, 257, 513, 3), None, True)
    assert parse("1,-1,-1,3", "257,513,3") == ((1, 257, 513, 3), None, True)
    assert parse("96,128,3", "97,129", True) == ((None, 96, 128, 3), (97, 129), True)
    assert parse("96,128,3", None) == ((None, 96, 128, 3), None, False)
    with pytest.raises(ExportError, match="must be known.*-1,-1,3 with --pad_to_shape"):
        parse("-1,-1,3", None)


def _commit(output, name: str, text: str) -> None:
    staging = export_staging.Staging(str(output))
    os.makedirs(staging.path(name))
    with open(os.path.join(staging.directory, name, "saved_model.pb"), "w") as stream:
        stream.write(text)
    staging.commit()
    staging.cleanup()


def test_serving_versions_are_kept_side_by_side(tmp_path):
    output = tmp_path / "export"
    entry = export_staging.saved_model_entry
    assert entry(str(output), 1) == "saved_model/1"
    _commit(output, "saved_model/1", "v1")
    _commit(output, entry(str(output), 2), "v2")
    _commit(output, entry(str(output), 2), "v2 again")
    assert sorted(os.listdir(output / "saved_model")) == ["1", "2"]
    assert (output / "saved_model" / "1" / "saved_model.pb").read_text() == "v1"
    assert (output / "saved_model" / "2" / "saved_model.pb").read_text() == "v2 again"
    with pytest.raises(ExportError, match="holds TF Serving versions; pass --serving_version"):
        entry(str(output), None)
    with pytest.raises(ExportError, match="--serving_version must be >= 1, got 0"):
        entry(str(output), 0)
    plain = tmp_path / "plain"
    _commit(plain, "saved_model", "plain")
    with pytest.raises(ExportError, match="holds an unversioned SavedModel"):
        entry(str(plain), 3)


def test_a_version_set_aside_is_restored_or_dropped(tmp_path):
    versions = tmp_path / "saved_model"
    (versions / "1").mkdir(parents=True)
    os.replace(versions / "1", versions / ".1.old-abc")  # killed before the new one moved
    (versions / ".notes.old-x").mkdir()  # not a version: left alone
    export_staging.recover_interrupted_export(str(tmp_path))
    assert sorted(os.listdir(versions)) == [".notes.old-x", "1"]
    (versions / ".1.old-def").mkdir()  # the new one is in place: the old one goes
    export_staging.recover_interrupted_export(str(tmp_path))
    assert sorted(os.listdir(versions)) == [".notes.old-x", "1"]
