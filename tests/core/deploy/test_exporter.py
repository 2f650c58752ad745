"""Tests of the exporter: every format agrees with the checkpoint's own predictions.

One export of a tiny random-init ICNet (96x128 inputs padded to 97x129, as the tiny config's
eval) is shared by the tests here and by tests/test_export_inference_scripts.py. The reference
is the checkpoint restored into a fresh model and run eagerly (pad, predict, argmax, crop), not
the exporter's own graph.
"""

from __future__ import annotations

import dataclasses
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from builders import config_util, dataset_builder, model_builder
from core.checkpoints import checkpoint_utils
from core.deploy import exporter, segmenters, tflite_export
from core.deploy.exporter import ExportError
from core.visualization import palette_lut
from tests.conftest import TINY_CONFIG

HEIGHT, WIDTH = 96, 128
PAD = (97, 129)
FLOAT_FORMATS = {
    "frozen_graph": exporter.FROZEN_GRAPH_NAME,
    "saved_model": exporter.SAVED_MODEL_DIR,
    "tflite_float32": exporter.TFLITE_FLOAT_NAME,
}


@dataclasses.dataclass
class Exported:
    config_path: str
    checkpoint: str
    output_dir: str
    model: object  # the checkpoint restored into a fresh model
    images: list  # uint8 [H, W, 3]: the 3 eval scenes and one noise image
    result: exporter.ExportResult


_CACHE: dict[str, Exported] = {}


def build_model(config_path: str, checkpoint: str | None = None):
    model = model_builder.build(config_util.load_pipeline_config(config_path).model)
    model.build_variables()
    if checkpoint:
        checkpoint_utils.restore_model(model, checkpoint)
    return model


def reference_ids(model, image: np.ndarray, pad=PAD) -> np.ndarray:
    """int32 [H, W] class ids of the model run eagerly on a padded image."""
    batch = tf.image.pad_to_bounding_box(tf.constant(image[None], tf.float32), 0, 0, *pad)
    logits = model.predict(model.preprocess(batch), training=False)["logits"]
    return tf.argmax(logits, -1, output_type=tf.int32).numpy()[
        0, : image.shape[0], : image.shape[1]
    ]


def reference_logits(model, image: np.ndarray, pad=PAD) -> np.ndarray:
    batch = tf.image.pad_to_bounding_box(tf.constant(image[None], tf.float32), 0, 0, *pad)
    logits = model.predict(model.preprocess(batch), training=False)["logits"].numpy()
    return logits[0, : image.shape[0], : image.shape[1]]


def exported_model(tmp_path_factory, synthetic_records) -> Exported:
    """Checkpoint a random-init tiny ICNet and export every format once per test session."""
    if "all" not in _CACHE:
        try:
            _CACHE["all"] = _export_all(tmp_path_factory, synthetic_records)
        except Exception as error:  # fail every dependent test at once, not one export each
            _CACHE["all"] = error
    if isinstance(_CACHE["all"], Exception):
        raise _CACHE["all"]
    return _CACHE["all"]


def _export_all(tmp_path_factory, synthetic_records) -> Exported:
    root = tmp_path_factory.mktemp("export")
    config_path = str(root / "tiny_icnet.config")
    with open(config_path, "w") as stream:
        stream.write(TINY_CONFIG.format(**synthetic_records))
    keras.utils.set_random_seed(0)  # a reproducible random-init model: stable int8 numbers
    source = build_model(config_path)
    prefix = checkpoint_utils.make_checkpoint(source).save(str(root / "train" / "model.ckpt"))
    result = exporter.export_inference_graph(
        config_path, prefix, str(root / "exported"), "96,128,3", "97,129"
    )
    config = config_util.load_pipeline_config(config_path)
    dataset = dataset_builder.build_eval_dataset(config.eval_input_reader, config.eval_config)
    images = [b["input_image"][0, :HEIGHT, :WIDTH].numpy().astype(np.uint8) for b in dataset]
    noise = np.random.RandomState(0).randint(0, 256, (HEIGHT, WIDTH, 3)).astype(np.uint8)
    model = build_model(config_path, prefix)
    return Exported(config_path, prefix, str(root / "exported"), model, [*images, noise], result)


@pytest.fixture()
def exported(tmp_path_factory, synthetic_records) -> Exported:
    return exported_model(tmp_path_factory, synthetic_records)


# --------------------------------------------------------------------------- shapes


def test_parse_input_shape_adds_batch_and_rejects_bad_values():
    assert exporter.parse_input_shape("1024,2048,3") == (None, 1024, 2048, 3)
    assert exporter.parse_input_shape(["2", "97", "129", "3"]) == (2, 97, 129, 3)
    assert exporter.parse_input_shape("-1,97,129,3") == (None, 97, 129, 3)
    with pytest.raises(ExportError, match="height and width must be known.*pyramid pooling"):
        exporter.parse_input_shape("-1,2048,3")
    with pytest.raises(ExportError, match="--input_shape='a,b,3' is not a comma-separated"):
        exporter.parse_input_shape("a,b,3")
    with pytest.raises(ExportError, match="must have 3 .* or 4 .* got 2"):
        exporter.parse_input_shape("1024,2048")
    with pytest.raises(ExportError, match="must be 3 \\(RGB\\), got 1"):
        exporter.parse_input_shape("1024,2048,1")
    with pytest.raises(ExportError, match="positive"):
        exporter.parse_input_shape("0,10,10,3")


def test_parse_pad_to_shape():
    shape = (None, 1024, 2048, 3)
    assert exporter.parse_pad_to_shape(None, shape) is None
    assert exporter.parse_pad_to_shape([], shape) is None
    assert exporter.parse_pad_to_shape("1025,2049", shape) == (1025, 2049)
    assert exporter.parse_pad_to_shape("1025,2049,3", shape) == (1025, 2049)
    with pytest.raises(ExportError, match="--pad_to_shape='1000,2049' is smaller than the input"):
        exporter.parse_pad_to_shape("1000,2049", shape)


# --------------------------------------------------------------------------- all formats


def test_export_writes_every_file_and_a_summary(exported):
    names = sorted(os.listdir(exported.output_dir))
    assert names == sorted(
        [
            "export_summary.json",
            "frozen_inference_graph.pb",
            "model.ckpt.data-00000-of-00001",
            "model.ckpt.index",
            "model_float32.tflite",
            "model_int8.tflite",
            "pipeline.config",
            "saved_model",
        ]
    )  # and no staging directory left behind
    with open(os.path.join(exported.output_dir, "export_summary.json")) as stream:
        summary = json.load(stream)
    assert summary["input_shape"] == [-1, 96, 128, 3] and summary["pad_to_shape"] == [97, 129]
    assert summary["parameters"] == exported.model.count_parameters()
    assert summary["checkpoint"] == exported.checkpoint
    assert summary["files"]["model_int8.tflite"] < summary["files"]["model_float32.tflite"] / 2
    config = config_util.load_pipeline_config(os.path.join(exported.output_dir, "pipeline.config"))
    assert config.model.icnet.num_classes == 19

    # model.ckpt holds exactly the checkpoint's model variables (compress.py's input).
    restored = build_model(exported.config_path, os.path.join(exported.output_dir, "model.ckpt"))
    for name, variable in exported.model.named_variables().items():
        np.testing.assert_array_equal(restored.named_variables()[name].numpy(), variable.numpy())


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
    signature = loaded.signatures["serving_default"]
    spec = signature.structured_input_signature[1]["inputs"]
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, 96, 128, 3]
    output = signature(inputs=tf.constant(exported.images[0][None]))["predictions"]
    assert output.dtype == tf.int32 and output.shape == (1, 96, 128, 1)


@pytest.mark.parametrize("fmt", sorted(FLOAT_FORMATS))
def test_float_formats_agree_with_the_checkpoint(exported, fmt):
    segmenter = segmenters.load_segmenter(
        model_path=os.path.join(exported.output_dir, FLOAT_FORMATS[fmt])
    )
    assert segmenter.input_size == (HEIGHT, WIDTH) and segmenter.num_classes == 19
    agree = total = 0
    for image in exported.images:
        ids = segmenter(image)
        # Padded to 97x129 by the graph, cropped back to the image's 96x128.
        assert ids.shape == (HEIGHT, WIDTH) and ids.dtype == np.int32
        agree += int((ids == reference_ids(exported.model, image)).sum())
        total += ids.size
    print(f"{fmt}: class-id agreement with the checkpoint {agree / total:.5f}")
    assert agree / total >= 0.999


def test_int8_model_is_quantized_and_keeps_confident_pixels(exported):
    """A random-init net has many near-ties, so overall agreement is only loosely bounded.

    What must hold: the convolutions are int8, outputs are valid ids, and pixels whose top-2
    logit margin exceeds 2% of the logit range (about 5 steps of the output quantization scale)
    keep their class. Those pixels must be a sizeable share, so the check is not vacuous.
    """
    path = os.path.join(exported.output_dir, "model_int8.tflite")
    # Only the pyramid's ADD_N has no int8 kernel (mobile_ops_only removes it, tested below).
    assert exported.result.summary["int8"]["float_ops"] == ["ADD_N"]
    segmenter = segmenters.load_segmenter(model_path=path)
    overall = confident = confident_total = total = 0
    for image in exported.images[:3]:  # the calibration distribution
        ids = segmenter(image)
        assert ids.min() >= 0 and ids.max() < 19
        logits = reference_logits(exported.model, image)
        top2 = np.sort(logits, axis=-1)[..., -2:]
        mask = (top2[..., 1] - top2[..., 0]) > 0.02 * (logits.max() - logits.min())
        same = ids == logits.argmax(-1)
        overall += int(same.sum())
        total += same.size
        confident += int(same[mask].sum())
        confident_total += int(mask.sum())
    print(
        f"int8: agreement {overall / total:.4f} overall, {confident / confident_total:.4f} on "
        f"the {confident_total / total:.0%} confident pixels"
    )
    assert confident_total / total > 0.3
    assert confident / confident_total >= 0.995
    assert overall / total > 0.8
    report = exported.result.summary["int8"]
    assert report["images"] == 3 and report["pixel_agreement_with_float"] > 0.8


def test_int8_with_mobile_ops_is_all_int8(exported, tmp_path):
    result = exporter.export_inference_graph(
        exported.config_path,
        exported.checkpoint,
        str(tmp_path),
        "96,128,3",
        "97,129",
        formats=["tflite_int8"],
        num_calibration_images=1,
        config_override="model { icnet { mobile_ops_only: true } }",
    )
    assert result.summary["int8"]["float_ops"] == []
    interpreter = tflite_export.make_interpreter(str(tmp_path / "model_int8.tflite"))
    assert interpreter.get_input_details()[0]["dtype"] == np.uint8
    assert interpreter.get_output_details()[0]["dtype"] == np.int32


# --------------------------------------------------------------------------- options


def test_output_colours_give_palette_colours(exported, tmp_path):
    result = exporter.export_model(
        exported.model,
        str(tmp_path),
        exporter.parse_input_shape("1,96,128,3"),
        PAD,
        output_colours=True,
        formats=["frozen_graph"],
    )
    assert result.summary["output"].startswith("colours")
    assert sorted(os.listdir(tmp_path)) == [
        "export_summary.json",
        "frozen_inference_graph.pb",
        "model.ckpt.data-00000-of-00001",
        "model.ckpt.index",
    ]
    segmenter = segmenters.load_segmenter(model_path=str(tmp_path / "frozen_inference_graph.pb"))
    assert segmenter.output_colours and segmenter.num_classes is None  # no pipeline.config
    image = exported.images[0]
    colours = segmenter(image)
    assert colours.shape == (HEIGHT, WIDTH, 3) and colours.dtype == np.uint8
    np.testing.assert_array_equal(colours, palette_lut()[reference_ids(exported.model, image)])


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
            exporter.parse_input_shape("96,128,3"),
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


def test_bad_inputs_give_clear_errors(exported, tmp_path):
    config, checkpoint = exported.config_path, exported.checkpoint
    with pytest.raises(checkpoint_utils.CheckpointError, match="missing.ckpt.*not found"):
        exporter.export_inference_graph(
            config, str(tmp_path / "missing.ckpt"), str(tmp_path), "96,128,3"
        )
    with pytest.raises(ExportError, match="height and width must be known"):
        exporter.export_inference_graph(config, checkpoint, str(tmp_path), "-1,-1,-1,3")
    with pytest.raises(ExportError, match="not a comma-separated list"):
        exporter.export_inference_graph(config, checkpoint, str(tmp_path), "96x128x3")
    with pytest.raises(ExportError, match="unknown \\['onnx'\\]"):
        exporter.export_inference_graph(
            config, checkpoint, str(tmp_path), "96,128,3", formats=["onnx"]
        )
    with pytest.raises(ExportError, match="64x64 is too small.*at least 97x97"):
        exporter.build_serving_function(exported.model, (None, 64, 64, 3))
    with pytest.raises(ExportError, match="tflite_int8 needs calibration images"):
        exporter.export_model(exported.model, str(tmp_path), (None, 97, 129, 3))
    with pytest.raises(config_util.ConfigError, match="config file not found"):
        exporter.export_inference_graph(
            str(tmp_path / "no.config"), checkpoint, str(tmp_path), "96,128,3"
        )
    no_eval = tmp_path / "no_eval.config"
    text = open(config).read()
    no_eval.write_text(text[: text.index("eval_config")])
    with pytest.raises(ExportError, match="no eval_input_reader.*tflite_int8 out of --formats"):
        exporter.export_inference_graph(str(no_eval), checkpoint, str(tmp_path), "96,128,3")
    assert os.listdir(tmp_path) == ["no_eval.config"]  # nothing written by failed exports


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
