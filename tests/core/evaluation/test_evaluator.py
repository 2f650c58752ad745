"""Tests of the evaluator: metrics against a numpy oracle, padding, checkpoints, outputs."""

import glob
import json
import os
import time
import types

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow.core.util import event_pb2

from builders import config_util, dataset_builder, model_builder
from builders.config_util import ConfigError
from core.checkpoints import checkpoint_utils
from core.checkpoints.checkpoint_utils import CheckpointError
from core.data.standard_fields import CITYSCAPES_CLASS_NAMES, CITYSCAPES_TRAIN_ID_TO_LABEL_ID
from core.data.standard_fields import InputDataFields as Fields
from core.evaluation.evaluator import (
    EvalOptions,
    EvalRunner,
    EvaluationError,
    SegmentationEvaluator,
)
from runners import eval_loop
from tests.conftest import TINY_CONFIG

IGNORE = 255


# --------------------------------------------------------------------------- numpy oracle


def _oracle(pairs, num_classes, ignore=IGNORE):
    """Confusion matrix, IoU and mIoU of (labels, predictions) pairs, pixel by pixel."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    for labels, predictions in pairs:
        for gt, pred in zip(labels.ravel(), predictions.ravel(), strict=True):
            if gt != ignore:
                matrix[gt, pred] += 1
    tp = np.diag(matrix).astype(float)
    union = matrix.sum(0) + matrix.sum(1) - tp
    with np.errstate(invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    return matrix, iou, float(np.nanmean(iou))


def _batch(labels, heights, widths, paths):
    labels = np.asarray(labels)
    return {
        Fields.groundtruth: labels[..., None],
        Fields.original_height: np.asarray(heights, np.int32),
        Fields.original_width: np.asarray(widths, np.int32),
        Fields.image_path: np.asarray([p.encode() for p in paths]),
    }


def _padded(array, height, width, value):
    out = np.full((height, width), value, dtype=np.int32)
    out[: array.shape[0], : array.shape[1]] = array
    return out


def test_process_matches_numpy_oracle_and_never_counts_padding():
    rng = np.random.default_rng(0)
    num_classes, height, width = 4, 6, 7
    sizes = [(5, 7), (6, 4), (3, 3)]
    pairs = []
    for h, w in sizes:
        # Class 3 is only ever predicted, never true: IoU 0, and it counts in the mean.
        labels = rng.integers(0, 3, size=(h, w))
        labels[rng.random((h, w)) < 0.25] = IGNORE
        predictions = rng.integers(0, 4, size=(h, w))
        pairs.append((labels, predictions))
    evaluator_ = SegmentationEvaluator(num_classes, IGNORE)
    # Padding holds valid classes on purpose: only cropping keeps it out of the counts.
    for index in (0, 1):
        labels, predictions = pairs[index]
        evaluator_.process(
            _batch(
                [_padded(labels, height, width, 1)], [labels.shape[0]], [labels.shape[1]], ["a"]
            ),
            _padded(predictions, height, width, 0)[None],
        )
    # Already cropped predictions are accepted too.
    labels, predictions = pairs[2]
    evaluator_.process(
        _batch([_padded(labels, height, width, 1)], [3], [3], ["b"]), predictions[None]
    )
    result = evaluator_.evaluate()

    matrix, iou, miou = _oracle(pairs, num_classes)
    np.testing.assert_array_equal(result["confusion_matrix"], matrix)
    np.testing.assert_allclose(result["iou"], iou)
    assert result["miou"] == pytest.approx(miou)
    assert result["num_images"] == 3
    assert result["num_pixels"] == sum(int((lab != IGNORE).sum()) for lab, _ in pairs)
    assert result["class_names"] == ("class_0", "class_1", "class_2", "class_3")
    assert result["iou"][3] == 0.0  # predicted, never true: counts as 0 in the mean

    evaluator_.reset()
    assert evaluator_.num_images == 0
    assert evaluator_.evaluate()["num_pixels"] == 0


def test_process_batch_of_two_crops_each_example_to_its_own_size():
    evaluator_ = SegmentationEvaluator(3, IGNORE)
    labels = np.array([_padded(np.full((2, 2), 1), 3, 3, 2), _padded(np.full((3, 1), 1), 3, 3, 2)])
    evaluator_.process(_batch(labels, [2, 3], [2, 1], ["x", "y"]), np.ones((2, 3, 3), np.int32))
    result = evaluator_.evaluate()
    assert result["num_pixels"] == 4 + 3
    assert result["iou"][1] == 1.0 and np.isnan(result["iou"][2])


def test_process_errors_name_the_image_and_the_values():
    evaluator_ = SegmentationEvaluator(19, IGNORE)
    labels = np.array([[[0, 30], [IGNORE, 19]]])
    with pytest.raises(EvaluationError, match=r"city/bad\.png: Ground truth .*\[0, 19\)") as info:
        evaluator_.process(_batch(labels, [2], [2], ["city/bad.png"]), np.zeros((1, 2, 2)))
    assert "19" in str(info.value).split("Offending values:")[-1]
    assert "30" in str(info.value).split("Offending values:")[-1]
    with pytest.raises(ValueError, match="smaller than the ground truth"):
        evaluator_.process(_batch(np.zeros((1, 4, 4)), [4], [4], ["s"]), np.zeros((1, 3, 4)))
    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        SegmentationEvaluator(3, class_names=["a", "b"])
    assert SegmentationEvaluator(19).class_names == CITYSCAPES_CLASS_NAMES


# --------------------------------------------------------------------------- runner, fake model


class _ClassMapModel:
    """Eval-mode logits one-hot of the class id in the image's red channel (no variables).

    With ``shrink``, logits of a constant class ``shrink`` come out smaller
    than the input, like a model at a non-4k+1 size, to exercise the resize.
    """

    def __init__(self, num_classes, shrink=None):
        self.num_classes = num_classes
        self.shrink = shrink

    def preprocess(self, images):
        return images

    def predict(self, images, training=False):
        assert not training
        if self.shrink is not None:
            small = tf.fill([tf.shape(images)[0], images.shape[1] - 3, images.shape[2] - 5], 0)
            return {"logits": 10.0 * tf.one_hot(small + self.shrink, self.num_classes)}
        classes = tf.cast(images[..., 0], tf.int32)
        return {"logits": 10.0 * tf.one_hot(classes, self.num_classes)}

    def named_variables(self):
        return {}

    def build_variables(self):
        pass


def _memory_dataset(examples, height, width, label_padding):
    """Batches of 1 like the eval pipeline: images padded with 0, labels with ``label_padding``."""
    images, labels = [], []
    for classes, label in examples:
        image = np.zeros((height, width, 3), np.float32)
        image[: classes.shape[0], : classes.shape[1], 0] = classes
        images.append(image)
        labels.append(_padded(label, height, width, label_padding)[..., None])
    data = {
        Fields.input_image: np.stack(images),
        Fields.groundtruth: np.stack(labels),
        Fields.image_path: [f"city/img_{i}.png".encode() for i in range(len(examples))],
        Fields.original_height: np.array([c.shape[0] for c, _ in examples], np.int32),
        Fields.original_width: np.array([c.shape[1] for c, _ in examples], np.int32),
    }
    return tf.data.Dataset.from_tensor_slices(data).batch(1)


def _fake_checkpoint(directory, step):
    return tf.train.Checkpoint(step=tf.Variable(step, dtype=tf.int64)).save(
        os.path.join(directory, "model.ckpt")
    )


def _ce_oracle(classes, labels, num_classes, ignore=IGNORE):
    logits = 10.0 * np.eye(num_classes)[classes]
    logsumexp = np.log(np.exp(logits).sum(-1))
    mask = labels != ignore
    picked = np.take_along_axis(logits, np.where(mask, labels, 0)[..., None], -1)[..., 0]
    return float(((logsumexp - picked) * mask).sum() / mask.sum())


def test_runner_scores_controlled_predictions_like_the_oracle(tmp_path):
    rng = np.random.default_rng(1)
    num_classes, sizes = 5, [(6, 8), (4, 9), (6, 9)]
    examples = []
    for h, w in sizes:
        classes = rng.integers(0, 4, size=(h, w))  # class 4 is never predicted nor true
        labels = np.where(rng.random((h, w)) < 0.7, classes, rng.integers(0, 4, size=(h, w)))
        labels[rng.random((h, w)) < 0.2] = IGNORE
        examples.append((classes, labels))
    # Labels padded with class 1 and images with 0 (-> predicted class 0): any counted padding
    # would show in the matrix.
    dataset = _memory_dataset(examples, 7, 10, label_padding=1)
    runner = EvalRunner(_ClassMapModel(num_classes), dataset, num_classes, IGNORE)
    prefix = _fake_checkpoint(str(tmp_path / "train"), step=7)
    result = runner.evaluate(prefix, str(tmp_path / "eval"))

    matrix, iou, miou = _oracle([(lab, cls) for cls, lab in examples], num_classes)
    saved = json.loads((tmp_path / "eval" / "metrics_7.json").read_text())
    assert saved["confusion_matrix"] == matrix.tolist()
    assert saved["miou"] == pytest.approx(miou)
    assert saved["classes"]["class_4"]["iou"] is None  # absent everywhere: NaN -> null
    assert saved["classes"]["class_2"]["iou"] == pytest.approx(iou[2])
    assert saved["num_pixels"] == sum(int((lab != IGNORE).sum()) for _, lab in examples)
    assert (saved["step"], saved["num_images"], saved["checkpoint"]) == (7, 3, prefix)
    expected_loss = np.mean([_ce_oracle(cls, lab, num_classes) for cls, lab in examples])
    assert saved["validation_loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert result["json_path"] == str(tmp_path / "eval" / "metrics_7.json")
    assert json.loads((tmp_path / "eval" / "metrics_latest.json").read_text()) == saved


def test_runner_resizes_smaller_logits_and_limits_examples(tmp_path):
    labels = np.full((6, 8), 3)
    examples = [(np.zeros((6, 8), np.int64), labels)] * 3
    dataset = _memory_dataset(examples, 9, 9, label_padding=IGNORE)
    runner = EvalRunner(_ClassMapModel(4, shrink=3), dataset, 4, IGNORE, num_examples=2)
    result = runner.evaluate(_fake_checkpoint(str(tmp_path), 1), str(tmp_path / "eval"))
    assert result["num_images"] == 2
    assert result["num_pixels"] == 2 * 6 * 8
    assert result["classes"]["class_3"]["iou"] == 1.0


def test_runner_reports_bad_labels_with_the_image_path(tmp_path):
    examples = [
        (np.zeros((3, 3), np.int64), np.full((3, 3), 1)),
        (np.zeros((3, 3)), np.full((3, 3), 7)),
    ]
    dataset = _memory_dataset(examples, 3, 3, label_padding=IGNORE)
    runner = EvalRunner(_ClassMapModel(4), dataset, 4, IGNORE)
    with pytest.raises(EvaluationError, match=r"city/img_1\.png: Ground truth .* \[0, 4\)"):
        runner.evaluate(_fake_checkpoint(str(tmp_path), 1), str(tmp_path / "eval"))


# --------------------------------------------------------------------------- tiny ICNet end to end


@pytest.fixture(scope="module")
def tiny(synthetic_records, tmp_path_factory):
    """The tiny ICNet config and a train_dir with random-init checkpoints at steps 1, 2 and 4."""
    directory = tmp_path_factory.mktemp("evaluator")
    config_path = directory / "tiny_icnet.config"
    config_path.write_text(TINY_CONFIG.format(**synthetic_records))
    config = config_util.load_pipeline_config(str(config_path))
    model = model_builder.build(config.model)
    model.build_variables()
    step = tf.Variable(0, dtype=tf.int64)
    train_dir = str(directory / "train")
    manager = tf.train.CheckpointManager(
        checkpoint_utils.make_checkpoint(model, step=step),
        train_dir,
        max_to_keep=5,
        checkpoint_name="model.ckpt",
    )
    for number in (1, 2, 4):  # 4 == train_config.num_steps: the final checkpoint
        step.assign(number)
        manager.save(checkpoint_number=number)
    return types.SimpleNamespace(config=config, train_dir=train_dir, directory=directory)


def _events(eval_dir):
    """{tag: [(step, value array)]} from every event file in ``eval_dir``."""
    found = {}
    for path in glob.glob(os.path.join(eval_dir, "events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(path):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, tf.make_ndarray(value.tensor)))
    return found


def _counted_pixels(config):
    """Non-ignored ground-truth pixels of the val split inside each image's original size."""
    total = 0
    for batch in dataset_builder.build_eval_dataset(config.eval_input_reader, config.eval_config):
        labels = batch[Fields.groundtruth].numpy()
        assert labels.shape[1:3] == (97, 129)  # the config pads 96x128 to 97x129
        assert (labels[:, 96:] == IGNORE).all() and (labels[:, :, 128:] == IGNORE).all()
        total += int((labels[:, :96, :128] != IGNORE).sum())
    return total


def test_evaluate_checkpoint_end_to_end(tiny, tmp_path):
    eval_dir, predictions_dir = str(tmp_path / "eval"), str(tmp_path / "predictions")
    options = EvalOptions(image_summaries=True, write_predictions_dir=predictions_dir)
    prefix = os.path.join(tiny.train_dir, "model.ckpt-2")
    result = eval_loop.evaluate_checkpoint(tiny.config, prefix, eval_dir, options)

    saved = json.loads(open(os.path.join(eval_dir, "metrics_2.json")).read())
    assert saved["class_names"] == list(CITYSCAPES_CLASS_NAMES)
    assert len(saved["classes"]) == 19 and len(saved["confusion_matrix"]) == 19
    assert 0.0 <= saved["miou"] <= 1.0
    assert (saved["step"], saved["checkpoint"], saved["num_images"]) == (2, prefix, 3)
    assert saved["num_pixels"] == _counted_pixels(tiny.config) <= 3 * 96 * 128
    assert np.isfinite(saved["validation_loss"]) and saved["seconds_per_image"] > 0
    assert result["miou"] == saved["miou"]

    events = _events(eval_dir)
    assert events["EvalMetrics/mIoU"][0][0] == 2
    assert float(events["EvalMetrics/mIoU"][0][1]) == pytest.approx(saved["miou"])
    assert "Losses/EvalValidationLoss" in events and "EvalMetrics/IoU/road" in events
    width, height = events["EvalImages/0/PredictionImage"][0][1][:2]
    assert (int(width), int(height)) == (128, 96)

    names = sorted(os.listdir(predictions_dir))
    assert names == ["000000.png", "000001.png", "000002.png"]  # synthetic/val/00000N.png
    written = np.array(Image.open(os.path.join(predictions_dir, names[0])))
    assert written.shape == (96, 128)
    assert set(np.unique(written)) <= set(CITYSCAPES_TRAIN_ID_TO_LABEL_ID)


def test_evaluate_all_from_checkpoint_evaluates_it_and_the_later_ones(tiny, tmp_path):
    options = EvalOptions(num_examples=1)
    results = eval_loop.evaluate_all_from(
        tiny.config, tiny.train_dir, "model.ckpt-2", str(tmp_path), options
    )
    assert [r["step"] for r in results] == [2, 4]
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["metrics_2.json", "metrics_4.json", "metrics_latest.json"]
        + [os.path.basename(p) for p in glob.glob(str(tmp_path / "events.out.tfevents.*"))]
    )
    assert json.loads((tmp_path / "metrics_latest.json").read_text())["step"] == 4
    with pytest.raises(CheckpointError, match="model.ckpt-3.*listed: model.ckpt-1, model.ckpt-2"):
        eval_loop.evaluate_all_from(tiny.config, tiny.train_dir, "model.ckpt-3", str(tmp_path))


def test_continuous_mode_stops_at_the_final_step_or_the_timeout(tiny, tmp_path, monkeypatch):
    options = EvalOptions(num_examples=1)
    start = time.monotonic()
    results = eval_loop.evaluate_continuously(
        tiny.config, tiny.train_dir, str(tmp_path / "a"), options, timeout_secs=120
    )
    assert [r["step"] for r in results] == [4]  # the newest; it is num_steps, so no waiting
    assert time.monotonic() - start < 60
    assert os.path.exists(tmp_path / "a" / "metrics_4.json")

    # The waiting logic without building the model again: a runner that only records.
    evaluated = []

    class _Recorder:
        def evaluate(self, prefix, eval_dir):
            evaluated.append(os.path.basename(prefix))
            return {"step": checkpoint_utils.checkpoint_step(prefix)}

    monkeypatch.setattr(eval_loop, "build_eval_runner", lambda config, options: _Recorder())
    longer = type(tiny.config)()
    longer.CopyFrom(tiny.config)
    longer.train_config.num_steps = 100  # training not over: wait, then time out
    results = eval_loop.evaluate_continuously(
        longer, tiny.train_dir, str(tmp_path / "b"), options, timeout_secs=1
    )
    assert evaluated == ["model.ckpt-4"] and [r["step"] for r in results] == [4]

    empty = tmp_path / "empty_train_dir"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint appeared .* within 0.5 s"):
        eval_loop.evaluate_continuously(longer, str(empty), str(tmp_path / "c"), timeout_secs=0.5)


def test_user_errors_are_clear(tiny, tmp_path):
    missing = str(tmp_path / "no_such_dir")
    with pytest.raises(CheckpointError, match="does not exist"):
        eval_loop.evaluate_continuously(tiny.config, missing, str(tmp_path), timeout_secs=1)
    with pytest.raises(CheckpointError, match="no checkpoint state"):
        eval_loop.evaluate_all_from(tiny.config, str(tmp_path), "1", str(tmp_path))
    with pytest.raises(CheckpointError, match="not found"):
        eval_loop.evaluate_checkpoint(tiny.config, missing + "/model.ckpt-1", str(tmp_path))
    no_eval = type(tiny.config)()
    no_eval.CopyFrom(tiny.config)
    no_eval.ClearField("eval_input_reader")
    with pytest.raises(ConfigError, match="no eval_input_reader"):
        eval_loop.build_eval_runner(no_eval)
    cropped = type(tiny.config)()
    cropped.CopyFrom(tiny.config)
    cropped.eval_config.eval_input_type.cropped_eval_input.height = 64
    cropped.eval_config.eval_input_type.cropped_eval_input.width = 64
    with pytest.raises(ConfigError, match="cropped_eval_input.*padded_eval_input"):
        eval_loop.build_eval_runner(cropped, EvalOptions(write_predictions_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="num_examples must be >= 1"):
        EvalOptions(num_examples=0)
