"""Tests of the streaming confusion matrix and IoU metrics against a numpy oracle."""

import json
import math
import os
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from core import file_utils
from core.evaluation import metrics
from core.evaluation.metrics import ConfusionMatrix
from tests.snippets import run_json_snippet

IGNORE = 255


def _oracle_iou(labels, predictions, num_classes, ignore=IGNORE):
    """Per-class IoU from boolean masks, one class at a time (no confusion matrix)."""
    labels = np.concatenate([np.ravel(x) for x in labels])
    predictions = np.concatenate([np.ravel(x) for x in predictions])
    counted = labels != ignore
    ious = []
    for c in range(num_classes):
        tp = np.sum((labels == c) & (predictions == c) & counted)
        fp = np.sum((labels != c) & (predictions == c) & counted)
        fn = np.sum((labels == c) & (predictions != c) & counted)
        ious.append(tp / (tp + fp + fn) if tp + fp + fn else math.nan)
    return np.array(ious)


def _random_split(seed, num_images=4, num_classes=6):
    """Random label/prediction pairs with ignored pixels, class 4 absent from
    both and class 5 absent from the ground truth but predicted."""
    rng = np.random.default_rng(seed)
    labels, predictions = [], []
    for _ in range(num_images):
        label = rng.integers(0, 4, size=(1, 13, 17, 1)).astype(np.int32)
        label[rng.random(label.shape) < 0.2] = IGNORE
        # Mostly right, otherwise a random class among 0-3 and 5.
        prediction = np.where(
            rng.random(label.shape[:3]) < 0.6,
            label[..., 0],
            rng.choice([0, 1, 2, 3, 5], size=label.shape[:3]),
        )
        prediction[label[..., 0] == IGNORE] = rng.integers(0, num_classes)
        labels.append(label)
        predictions.append(prediction.astype(np.int64))
    return labels, predictions


def test_per_class_iou_and_miou_match_the_oracle():
    labels, predictions = _random_split(0)
    metric = ConfusionMatrix(num_classes=6)
    for label, prediction in zip(labels, predictions, strict=True):
        metric.update(label, prediction)
    result = metric.result()
    expected = _oracle_iou(labels, predictions, 6)
    np.testing.assert_allclose(result["iou"], expected, rtol=1e-12)
    assert np.isnan(result["iou"][4])  # absent from ground truth and predictions
    assert result["iou"][5] == 0.0  # predicted but never in the ground truth: counts as 0
    # mIoU: mean over the 5 defined classes, class 5's zero included.
    assert result["miou"] == pytest.approx(np.mean(expected[[0, 1, 2, 3, 5]]), rel=1e-12)
    assert result["miou"] == pytest.approx(np.nanmean(expected), rel=1e-12)

    flat_labels = np.concatenate([x.ravel() for x in labels])
    flat_predictions = np.concatenate([x.ravel() for x in predictions])
    counted = flat_labels != IGNORE
    assert result["num_pixels"] == counted.sum()
    assert result["pixel_accuracy"] == pytest.approx(
        np.mean(flat_labels[counted] == flat_predictions[counted])
    )
    for c in range(6):
        assert result["gt_pixels"][c] == np.sum(flat_labels == c)
        assert result["predicted_pixels"][c] == np.sum((flat_predictions == c) & counted)
    assert result["confusion_matrix"].dtype == np.int64


def test_streaming_equals_one_big_update():
    labels, predictions = _random_split(1, num_images=5)
    streamed = ConfusionMatrix(num_classes=6)
    for label, prediction in zip(labels, predictions, strict=True):
        streamed.update(tf.constant(label), tf.constant(prediction))
    at_once = ConfusionMatrix(num_classes=6)
    at_once.update(np.concatenate(labels), np.concatenate(predictions))
    np.testing.assert_array_equal(streamed.matrix, at_once.matrix)
    assert streamed.result()["miou"] == at_once.result()["miou"]


def test_hand_computed_example():
    metric = ConfusionMatrix(num_classes=5)
    # Image 1 (the 255 pixel is predicted 0 but not counted):
    #   gt   0 0 1      pred 0 1 1
    #        1 2 255         2 2 0
    # Image 2: gt 2 255, pred 4 4 -> one (gt 2, pred 4) pixel.
    metric.update(np.array([[0, 0, 1], [1, 2, 255]]), np.array([[0, 1, 1], [2, 2, 0]]))
    metric.update(np.array([[2, 255]]), np.array([[4, 4]]))
    expected_matrix = [
        [1, 1, 0, 0, 0],
        [0, 1, 1, 0, 0],
        [0, 0, 1, 0, 1],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ]
    np.testing.assert_array_equal(metric.matrix, expected_matrix)
    result = metric.result()
    # class 0: TP 1, FP 0, FN 1 -> 1/2;  class 1: TP 1, FP 1, FN 1 -> 1/3;
    # class 2: TP 1, FP 1, FN 1 -> 1/3;  class 3: 0/0 -> NaN;  class 4: TP 0, FP 1 -> 0.
    np.testing.assert_allclose(result["iou"], [1 / 2, 1 / 3, 1 / 3, np.nan, 0.0])
    assert result["miou"] == pytest.approx(7 / 24)  # (1/2 + 1/3 + 1/3 + 0) / 4
    assert result["pixel_accuracy"] == pytest.approx(3 / 6)
    np.testing.assert_allclose(result["class_accuracy"], [1 / 2, 1 / 2, 1 / 2, np.nan, np.nan])
    np.testing.assert_array_equal(result["gt_pixels"], [2, 2, 2, 0, 0])
    np.testing.assert_array_equal(result["predicted_pixels"], [1, 2, 2, 0, 1])
    assert result["num_pixels"] == 6


def test_update_inside_tf_function_and_reset():
    metric = ConfusionMatrix(num_classes=3)

    @tf.function
    def update(labels, predictions):
        metric.update(labels, predictions)

    update(tf.constant([[0, 1, 255]]), tf.constant([[0, 1, 2]]))
    update(tf.constant([[2, 2, 2]]), tf.constant([[2, 2, 1]]))
    np.testing.assert_array_equal(metric.matrix, [[1, 0, 0], [0, 1, 0], [0, 1, 2]])
    metric.reset()
    assert metric.matrix.sum() == 0
    empty = metric.result()
    assert np.isnan(empty["miou"]) and np.isnan(empty["pixel_accuracy"])
    assert np.all(np.isnan(empty["iou"]))


def test_out_of_range_ground_truth_is_an_error():
    metric = ConfusionMatrix(num_classes=3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="outside \\[0, 3\\).*ignore label"):
        metric.update(np.array([0, 3, 255]), np.array([0, 1, 2]))
    assert metric.matrix.sum() == 0  # nothing half-counted


def test_out_of_range_prediction_and_size_mismatch_are_errors():
    metric = ConfusionMatrix(num_classes=3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Predictions"):
        metric.update(np.array([0, 1]), np.array([0, 7]))
    with pytest.raises(ValueError, match="4 elements but predictions 3"):
        metric.update(np.zeros((2, 2)), np.zeros(3))


def test_ignore_label_inside_the_class_range():
    # ignore_label 0: its pixels are skipped, its IoU is NaN (never evaluated),
    # and predicting it on a counted pixel is a miss for the true class.
    metric = ConfusionMatrix(num_classes=3, ignore_label=0)
    metric.update(np.array([0, 1, 1, 2]), np.array([1, 1, 0, 2]))
    result = metric.result()
    np.testing.assert_allclose(result["iou"], [np.nan, 1 / 2, 1.0])
    assert result["miou"] == pytest.approx(3 / 4)


def test_format_table():
    metric = ConfusionMatrix(num_classes=5)
    metric.update(np.array([[0, 0, 1], [1, 2, 255]]), np.array([[0, 1, 1], [2, 2, 0]]))
    metric.update(np.array([[2, 255]]), np.array([[4, 4]]))
    names = ["road", "sidewalk", "traffic light", "wall", "bicycle"]
    table = metrics.format_table(metric.result(), names)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["class", "IoU", "%"]
    assert lines[2].split() == ["road", "50.00", "50.00", "2", "1"]
    assert lines[4].startswith("traffic light") and "33.33" in lines[4]
    assert lines[5].split() == ["wall", "n/a", "n/a", "0", "0"]
    assert lines[-2].split() == ["mIoU", "29.17"]
    assert lines[-1].split() == ["pixel", "acc", "50.00"]
    # Aligned: every row's IoU column ends at the same character.
    iou_end = lines[0].index("IoU %") + len("IoU %")
    for line in lines[2:7] + lines[-2:]:
        assert line[iou_end - 1] != " " and line[iou_end : iou_end + 1] in ("", " ")
    with pytest.raises(ValueError, match="3 names for 5 classes"):
        metrics.format_table(metric.result(), names[:3])


def test_write_json_is_atomic_and_valid(tmp_path, monkeypatch):
    metric = ConfusionMatrix(num_classes=3)
    metric.update(np.array([0, 1, 255]), np.array([0, 0, 1]))
    names = ["a", "b", "c"]
    path = str(tmp_path / "eval" / "metrics.json")
    assert metrics.write_json(metric.result(), path, names) == path
    with open(path) as stream:
        data = json.load(stream)  # strict JSON: NaN was written as null
    assert data["miou"] == pytest.approx(0.25)  # class a: 1/2, class b: 0, class c: NaN
    assert data["classes"]["a"] == {
        "iou": 0.5,
        "accuracy": 1.0,
        "gt_pixels": 1,
        "predicted_pixels": 2,
    }
    assert data["classes"]["c"]["iou"] is None
    assert data["confusion_matrix"] == [[1, 0, 0], [1, 0, 0], [0, 0, 0]]
    assert data["class_names"] == names

    # A failure while writing leaves the previous file intact and no temp file.
    def broken_replace(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(file_utils.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        metrics.write_json(metric.result(), path, names)
    assert os.listdir(tmp_path / "eval") == ["metrics.json"]
    with open(path) as stream:
        assert json.load(stream)["miou"] == pytest.approx(0.25)


_MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    import tensorflow as tf
    from core.evaluation.metrics import ConfusionMatrix

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        metric = ConfusionMatrix(num_classes=3)
    labels = np.array([[0, 1, 2, 255], [2, 2, 1, 0]], np.int32)
    predictions = np.array([[0, 2, 2, 1], [2, 1, 1, 0]], np.int32)
    dataset = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices((labels, predictions)).batch(2)
    )

    @tf.function
    def step(batch):
        strategy.run(metric.update, args=batch)

    for batch in dataset:
        step(batch)
    print(json.dumps(metric.matrix.tolist()))
    """
)


def test_mirrored_strategy_sums_replicas():
    # One MirroredStrategy per process (see the TF notes), so run it in a child.
    matrix = run_json_snippet(_MIRRORED_SCRIPT)
    # Pixels: (0,0) (1,2) (2,2) [ignored] (2,2) (2,1) (1,1) (0,0).
    assert matrix == [[2, 0, 0], [0, 1, 1], [0, 1, 2]]
