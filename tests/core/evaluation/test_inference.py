"""The one evaluation loop: inference_on_dataset with evaluators, against numpy oracles."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from core.data.standard_fields import InputDataFields as Fields
from core.datasets import DatasetMetadata
from core.evaluation.cityscapes_export import PredictionWriter
from core.evaluation.evaluators import SegmentationEvaluator
from core.evaluation.inference import (
    DatasetEvaluator,
    EvalForward,
    EvaluationError,
    inference_on_dataset,
)

IGNORE = 255


class _ClassMapModel:
    """Eval-mode logits: one-hot of the class id in the red channel; counts its calls."""

    def __init__(self, num_classes):
        self.num_classes = num_classes
        self.traces = 0

    def preprocess(self, images):
        return images

    def predict(self, images, training=False):
        assert not training
        self.traces += 1  # Python side effect: runs once per trace
        return {"logits": 10.0 * tf.one_hot(tf.cast(images[..., 0], tf.int32), self.num_classes)}


def _batches(examples, height, width):
    """Batch-1 dicts like the eval pipeline: image and label padded to ``height x width``."""
    batches = []
    for index, (classes, labels) in enumerate(examples):
        image = np.zeros((1, height, width, 3), np.float32)
        image[0, : classes.shape[0], : classes.shape[1], 0] = classes
        label = np.full((1, height, width, 1), 1, np.int32)  # padding of a valid class
        label[0, : labels.shape[0], : labels.shape[1], 0] = labels
        batches.append(
            {
                Fields.input_image: image,
                Fields.groundtruth: label,
                Fields.original_height: np.array([classes.shape[0]], np.int32),
                Fields.original_width: np.array([classes.shape[1]], np.int32),
                Fields.image_path: np.array([f"dir/city_{index:06d}_000001_x.png".encode()]),
            }
        )
    return batches


def _examples(seed, sizes, num_classes):
    rng = np.random.default_rng(seed)
    examples = []
    for h, w in sizes:
        classes = rng.integers(0, num_classes, size=(h, w))
        labels = rng.integers(0, num_classes, size=(h, w))
        labels[rng.random((h, w)) < 0.2] = IGNORE
        examples.append((classes, labels))
    return examples


class _Recorder(DatasetEvaluator):
    def __init__(self, name, log, result):
        self.name, self.log, self.result = name, log, result

    def reset(self):
        self.log.append((self.name, "reset"))

    def process(self, batch, outputs):
        self.log.append((self.name, int(np.asarray(outputs["classes"]).sum())))

    def evaluate(self):
        self.log.append((self.name, "evaluate"))
        return self.result


def test_evaluators_are_called_in_order_and_their_results_merged():
    examples = _examples(0, [(3, 4), (2, 2)], 3)
    log = []
    first = _Recorder("a", log, {"x": 1})
    second = _Recorder("b", log, {"y": 2})
    silent = _Recorder("c", log, None)
    results = inference_on_dataset(
        _ClassMapModel(3), _batches(examples, 4, 5), [first, second, silent]
    )
    assert results == {"x": 1, "y": 2}
    sums = [int(c.sum()) for c, _ in examples]  # predictions are the red channel, cropped
    assert log == [
        ("a", "reset"), ("b", "reset"), ("c", "reset"),
        ("a", sums[0]), ("b", sums[0]), ("c", sums[0]),
        ("a", sums[1]), ("b", sums[1]), ("c", sums[1]),
        ("a", "evaluate"), ("b", "evaluate"), ("c", "evaluate"),
    ]  # fmt: skip
    clash = _Recorder("d", [], {"x": 3})
    with pytest.raises(ValueError, match="both return 'x'"):
        inference_on_dataset(_ClassMapModel(3), _batches(examples, 4, 5), [first, clash])
    with pytest.raises(EvaluationError, match="dataset is empty"):
        inference_on_dataset(_ClassMapModel(3), [], [first])


def test_miou_matches_a_numpy_confusion_matrix_and_forward_is_traced_once():
    num_classes = 4
    examples = _examples(1, [(5, 7), (6, 3), (4, 4)], num_classes)
    model = _ClassMapModel(num_classes)
    forward = EvalForward(model)
    evaluator = SegmentationEvaluator(num_classes, IGNORE)
    for _ in range(2):  # reused across passes, as the pruning sensitivity scores
        results = inference_on_dataset(forward, _batches(examples, 6, 8), [evaluator])
    assert model.traces == 1  # one padded size: traced once over both passes

    matrix = np.zeros((num_classes, num_classes), np.int64)
    for classes, labels in examples:
        keep = labels != IGNORE
        np.add.at(matrix, (labels[keep], classes[keep]), 1)
    tp = np.diag(matrix).astype(float)
    union = matrix.sum(0) + matrix.sum(1) - tp
    iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    np.testing.assert_array_equal(results["confusion_matrix"], matrix)
    assert results["miou"] == pytest.approx(np.nanmean(iou))
    assert results["num_images"] == 3


def test_prediction_writer_is_an_evaluator_writing_official_ids(tmp_path):
    metadata = DatasetMetadata(
        "three", ("a", "b", "c"), ((1, 1, 1), (2, 2, 2), (3, 3, 3)), label_ids=(40, 50, 60)
    )
    examples = _examples(2, [(3, 5), (4, 2)], 3)
    writer = PredictionWriter(str(tmp_path / "out"), metadata.label_ids)
    results = inference_on_dataset(_ClassMapModel(3), _batches(examples, 5, 6), [writer])
    assert results == {"predictions_dir": str(tmp_path / "out")}
    for index, (classes, _) in enumerate(examples):
        written = np.array(Image.open(tmp_path / "out" / f"city_{index:06d}_000001_x.png"))
        np.testing.assert_array_equal(written, np.array([40, 50, 60])[classes])  # cropped, mapped
    assert writer.num_written == 2
