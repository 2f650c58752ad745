"""Evaluating quantization-aware-training checkpoints as what they deploy.

The oracles are the trained model itself, called eagerly with its quantizers on (the simulated
int8 network) or off (float), its logits resized in numpy (bilinear, aligned corners) and scored
in numpy: the confusion matrix and the mean cross-entropy the evaluator must write.
"""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from core.checkpoints import checkpoint_utils
from core.data.standard_fields import InputDataFields as Fields
from core.evaluation.evaluator import EvalRunner
from models import quantization
from tests.models.toy_net import ToyNet

DELAY = 3
NUM_CLASSES = 3
IGNORE = 255
HEIGHT, WIDTH = 12, 16


def _resize_aligned(logits: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize with aligned corners of [h, w, c] (numpy)."""
    h, w, _ = logits.shape
    ys = np.arange(height) * (h - 1) / (height - 1)
    xs = np.arange(width) * (w - 1) / (width - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = logits[y0][:, x0] * (1 - wx) + logits[y0][:, x1] * wx
    bottom = logits[y1][:, x0] * (1 - wx) + logits[y1][:, x1] * wx
    return top * (1 - wy) + bottom * wy


def _oracle(model, images, labels) -> tuple[np.ndarray, float]:
    """Confusion matrix (rows: ground truth) and mean per-image cross-entropy of eager calls."""
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    losses = []
    for image, label in zip(images, labels, strict=True):
        logits = model(model.preprocess(tf.constant(image[None])), training=False)["logits"]
        logits = _resize_aligned(logits.numpy()[0].astype(np.float64), HEIGHT, WIDTH)
        mask = label != IGNORE
        predicted = logits.argmax(-1)
        np.add.at(confusion, (label[mask], predicted[mask]), 1)
        shifted = logits - logits.max(-1, keepdims=True)
        log_softmax = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        picked = np.take_along_axis(log_softmax, np.where(mask, label, 0)[..., None], -1)[..., 0]
        losses.append(float(-(picked * mask).sum() / mask.sum()))
    return confusion, float(np.mean(losses))


def _dataset(images, labels) -> tf.data.Dataset:
    data = {
        Fields.input_image: images,
        Fields.groundtruth: labels[..., None],
        Fields.image_path: [f"city/img_{i}.png".encode() for i in range(len(images))],
        Fields.original_height: np.full(len(images), HEIGHT, np.int32),
        Fields.original_width: np.full(len(images), WIDTH, np.int32),
    }
    return tf.data.Dataset.from_tensor_slices(data).batch(1)


@pytest.fixture(scope="module")
def qat_run(tmp_path_factory):
    """A ToyNet "trained" with QAT: ranges tracked on the images, checkpointed at several steps."""
    root = tmp_path_factory.mktemp("qat_eval")
    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    images = rng.uniform(0, 255, size=(3, HEIGHT, WIDTH, 3)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, size=(3, HEIGHT, WIDTH)).astype(np.int32)
    labels[:, :2, :3] = IGNORE
    model = ToyNet(NUM_CLASSES)
    model.build_variables((HEIGHT, WIDTH))
    float_only = checkpoint_utils.write_model_checkpoint(
        model, str(root / "float"), "model.ckpt-9", 9
    )
    state = quantization.attach(model, active=False)
    # Written before any quantized step: ranges all 0 (the checkpoint of step == DELAY).
    unset = checkpoint_utils.write_model_checkpoint(model, str(root / "unset"), "model.ckpt-3", 3)
    state.active = True
    for image in images:  # the quantized training forward sets every range
        model(model.preprocess(tf.constant(image[None])), training=True)
    # A coarse logits range (16 times the logits' span; a step of ~1/16 of it) so that fake
    # quantization visibly changes the predicted classes, not only the logits.
    logits = quantization.range_variables(model)
    low, high = logits["Toy/Predictions/act_quant/min"], logits["Toy/Predictions/act_quant/max"]
    span = float(high.numpy() - low.numpy())
    low.assign(float(low.numpy()) - 8 * span)
    high.assign(float(high.numpy()) + 7 * span)
    directory = str(root / "train")
    before = checkpoint_utils.write_model_checkpoint(model, directory, "model.ckpt-2", 2)
    past = checkpoint_utils.write_model_checkpoint(model, directory, "model.ckpt-5", 5)
    int8 = _oracle(model, images, labels)
    state.active = False
    floating = _oracle(model, images, labels)
    return {
        "images": images,
        "labels": labels,
        "past": past,
        "before": before,
        "unset": unset,
        "float_only": float_only,
        "int8": int8,
        "float": floating,
    }


def _runner(qat_run, delay=DELAY) -> EvalRunner:
    keras.utils.set_random_seed(11)  # other initial weights: everything must come from the file
    model = ToyNet(NUM_CLASSES)
    model.build_variables((HEIGHT, WIDTH))
    dataset = _dataset(qat_run["images"], qat_run["labels"])
    return EvalRunner(model, dataset, NUM_CLASSES, IGNORE, quantize_with_delay=delay)


def _check(result, oracle) -> None:
    confusion, loss = oracle
    np.testing.assert_array_equal(np.array(result["confusion_matrix"]), confusion)
    assert result["validation_loss"] == pytest.approx(loss, rel=1e-4)


def test_fake_quantization_changes_the_predicted_classes(qat_run):
    int8, floating = qat_run["int8"][0], qat_run["float"][0]
    assert int8.sum() == floating.sum()
    assert np.abs(int8 - floating).sum() >= 10  # pixels whose class changed (x2)


def test_checkpoints_past_and_before_the_delay(qat_run, tmp_path):
    runner = _runner(qat_run)
    past = runner.evaluate(qat_run["past"], str(tmp_path / "eval"))
    assert past["forward"] == "simulated_int8" and past["quantize_with_delay"] == DELAY
    _check(past, qat_run["int8"])
    assert past["confusion_matrix"] != qat_run["float"][0].tolist()
    # Same weights and ranges, but before the delay training was float: so is the evaluation.
    before = runner.evaluate(qat_run["before"], str(tmp_path / "eval"))
    assert before["forward"] == "float"
    _check(before, qat_run["float"])
    # Back past the delay with the same runner (its two traced forwards are kept apart).
    again = runner.evaluate(qat_run["past"], str(tmp_path / "eval"))
    assert again["confusion_matrix"] == past["confusion_matrix"]
    with open(os.path.join(tmp_path, "eval", "metrics_5.json")) as stream:
        assert json.load(stream)["forward"] == "simulated_int8"
    events = "".join(
        open(os.path.join(tmp_path, "eval", name), "rb").read().decode("latin-1")
        for name in os.listdir(tmp_path / "eval")
        if "tfevents" in name
    )
    assert "Quantization/SimulatedInt8" in events


def test_nothing_quantized_to_evaluate_falls_back_to_float(qat_run, tmp_path):
    runner = _runner(qat_run)
    # The ranges of a checkpoint written at the delay step are unset: no quantized step ran.
    unset = runner.evaluate(qat_run["unset"], str(tmp_path))
    assert unset["step"] == DELAY and unset["forward"] == "float"
    _check(unset, qat_run["float"])  # quantized training forwards change no weight
    # A float checkpoint (no ranges at all) restores into the QAT eval model and runs float.
    float_only = runner.evaluate(qat_run["float_only"], str(tmp_path))
    assert float_only["forward"] == "float"
    _check(float_only, qat_run["float"])


def test_without_quantize_with_delay_the_qat_checkpoint_is_scored_float(qat_run, tmp_path):
    runner = _runner(qat_run, delay=0)
    result = runner.evaluate(qat_run["past"], str(tmp_path))
    assert result["forward"] == "float" and "quantize_with_delay" not in result
    _check(result, qat_run["float"])
