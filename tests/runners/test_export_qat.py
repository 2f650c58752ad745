"""export.py on a checkpoint trained with quantization-aware training: the int8 TFLite comes from
the trained ranges, without calibration images, and computes what the QAT model simulates.

The model is the tiny ICNet with 2 classes: TFLite's int8 kernels round where the simulation does
not (resizes, the integer requantization), so ids may differ where the two best logits are within
about one quantization step. An untrained 19-class model has ~5% such pixels, a trained one (the
demo checkpoint, 99.8% agreement) very few; 2 classes keep a random-init model decisive.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from builders import config_util, dataset_builder
from core.checkpoints import checkpoint_utils
from core.data.standard_fields import InputDataFields
from core.deploy import exporter, tflite_export
from models import quantization
from runners.export import export_inference_graph
from tests.runners.export_fixtures import PAD, build_model

HEIGHT, WIDTH = 96, 128


def _eval_images(config) -> list[np.ndarray]:
    dataset = dataset_builder.build_eval_dataset(config.eval_input_reader, config.eval_config)
    images = []
    for batch in dataset:
        image = batch[InputDataFields.input_image][0, :HEIGHT, :WIDTH].numpy()
        images.append(np.clip(np.rint(image), 0, 255).astype(np.uint8))
    return images


@pytest.fixture(scope="module")
def qat_export(synthetic_records, tmp_path_factory):
    """A tiny ICNet whose ranges were tracked in training mode, checkpointed and exported."""
    from tests.conftest import TINY_CONFIG

    root = tmp_path_factory.mktemp("qat_export")
    config_path = str(root / "pipeline.config")
    with open(config_path, "w") as stream:
        text = TINY_CONFIG.format(**synthetic_records)
        stream.write(text.replace("num_classes: 19", "num_classes: 2"))
    keras.utils.set_random_seed(7)
    config = config_util.load_pipeline_config(config_path)
    images = _eval_images(config)
    model = build_model(config_path)
    padded = [
        tf.image.pad_to_bounding_box(tf.constant(image[None], tf.float32), 0, 0, *PAD)
        for image in images
    ]
    # A random-init net tends to predict one class everywhere; shifting one class's bias by
    # the median logit difference splits the pixels between the two classes.
    logits = np.concatenate(
        [model(model.preprocess(batch))["logits"].numpy().reshape(-1, 2) for batch in padded]
    )
    bias = model.predictions.conv.bias
    bias.assign(bias.numpy() - [0.0, np.median(logits[:, 1] - logits[:, 0])])
    state = quantization.attach(model, active=True)
    # The training forward tracks the activation ranges (BN folded on its moving statistics).
    for batch in padded:
        model(model.preprocess(batch), training=True)
    state.active = False
    checkpoint = checkpoint_utils.write_model_checkpoint(model, str(root / "train"), "model.ckpt")
    # No eval reader: post-training quantization would have no calibration images.
    config.ClearField("eval_input_reader")
    config_util.write_pipeline_config(config, str(root))
    output_dir = str(root / "export")
    result = export_inference_graph(
        config_path,
        checkpoint,
        output_dir,
        f"{HEIGHT},{WIDTH},3",
        pad_to_shape=f"{PAD[0]},{PAD[1]}",
        formats=("frozen_graph", "tflite_int8"),
    )
    # The model itself, quantizers on, is the simulated-int8 reference (run eagerly, not the
    # exporter's graph).
    state.active = True
    return config_path, checkpoint, output_dir, images, result, model


def _reference_ids(model, image) -> np.ndarray:
    """int32 [H, W] ids of the model run eagerly on the padded image, cropped."""
    batch = tf.image.pad_to_bounding_box(tf.constant(image[None], tf.float32), 0, 0, *PAD)
    logits = model.predict(model.preprocess(batch), training=False)["logits"]
    return tf.argmax(logits, -1, output_type=tf.int32).numpy()[0, :HEIGHT, :WIDTH]


def test_int8_tflite_agrees_with_simulated_int8(qat_export):
    _, _, output_dir, images, result, model = qat_export
    path = os.path.join(output_dir, exporter.TFLITE_INT8_NAME)
    interpreter = tflite_export.make_interpreter(path)
    agree = total = 0
    counts = np.zeros(2, np.int64)
    for image in images:
        ids = tflite_export.run_interpreter(interpreter, image[None])[0, ..., 0]
        reference = _reference_ids(model, image)
        assert ids.shape == reference.shape == (HEIGHT, WIDTH)
        counts += np.bincount(reference.ravel(), minlength=2)
        agree += int((ids == reference).sum())
        total += ids.size
    # Not a uniform map: each class covers a fair share of the pixels compared.
    assert counts.min() >= 0.1 * total, counts
    assert agree / total >= 0.99
    assert result.summary["int8"]["source"] == "quantization-aware training ranges"


def test_int8_tflite_is_integer_and_float_formats_stay_float(qat_export):
    _, _, output_dir, _, _, _ = qat_export
    interpreter = tflite_export.make_interpreter(
        os.path.join(output_dir, exporter.TFLITE_INT8_NAME), delegates=False
    )
    dtypes = {d["index"]: d["dtype"] for d in interpreter.get_tensor_details()}
    convs = [op for op in interpreter._get_ops_details() if op["op_name"] == "CONV_2D"]
    assert convs and all(dtypes[op["inputs"][1]] == np.int8 for op in convs)
    graph_def = tf.compat.v1.GraphDef()
    with open(os.path.join(output_dir, exporter.FROZEN_GRAPH_NAME), "rb") as stream:
        graph_def.ParseFromString(stream.read())
    assert not [node for node in graph_def.node if node.op.startswith("FakeQuant")]


def test_summary_counts_the_deployed_weights_not_the_ranges(qat_export):
    config_path, _, _, _, result, _ = qat_export
    plain = build_model(config_path)  # the same config without quantization-aware training
    assert result.summary["parameters"] == plain.count_parameters()
    assert result.summary["parameters_with_batch_norm"] == plain.count_parameters(include_bn=True)


def test_float_checkpoint_still_needs_calibration(qat_export, tmp_path):
    config_path = qat_export[0]
    model = build_model(config_path)
    checkpoint = checkpoint_utils.write_model_checkpoint(model, str(tmp_path), "model.ckpt")
    with pytest.raises(exporter.ExportError, match="eval_input_reader"):
        export_inference_graph(
            config_path, checkpoint, str(tmp_path / "out"), "96,128,3", formats=("tflite_int8",)
        )
