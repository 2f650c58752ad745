"""Extending the framework from one module, end to end through the public scripts.

``tests/extending_example.py`` is a user's module: a new backbone and architecture that register
themselves on import, and a config that names them and imports the module
(``custom_imports``). This test drives the public scripts with that config, each in its own
process as a user runs them, with no change to the framework: ``train.py`` trains it,
``eval.py`` scores it, ``export.py`` exports it, ``inference.py`` runs the export and
``compress.py`` prunes it. Each result is checked against an independent computation: mIoU from
a numpy confusion matrix of the restored model's predictions, the export's class ids against
the restored model's argmax, the kept filters against a numpy L1 ranking of the trained kernels.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from core.datasets.cityscapes import CITYSCAPES_TRAIN_ID_TO_LABEL_ID
from models import outputs
from models.registry import ARCHITECTURES, BACKBONES
from tests.snippets import REPO_ROOT

EXAMPLE = "tests.extending_example"


@pytest.fixture()
def example():
    """The example module, imported (registering its names) for this test only."""
    module = importlib.import_module(EXAMPLE)
    yield module
    ARCHITECTURES.unregister("tiny_fcn")
    BACKBONES.unregister("tiny_convnet")
    sys.modules.pop(EXAMPLE, None)


def _script(name: str, *flags: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO_ROOT)
    run = subprocess.run(
        [sys.executable, name, *flags],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, f"{name} failed:\n{run.stderr[-3000:]}"
    return run


def _confusion_miou(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> float:
    """Mean IoU over classes present in the ground truth or the predictions (numpy oracle)."""
    keep = labels != 255
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (labels[keep], predictions[keep]), 1)
    union = matrix.sum(0) + matrix.sum(1) - np.diag(matrix)
    present = union > 0
    return float(np.mean(np.diag(matrix)[present] / union[present]))


def _val_examples(path: str) -> list[tuple[np.ndarray, np.ndarray]]:
    examples = []
    for record in tf.data.TFRecordDataset(path):
        features = tf.io.parse_single_example(
            record,
            {
                "image/encoded": tf.io.FixedLenFeature([], tf.string),
                "image/segmentation/class/encoded": tf.io.FixedLenFeature([], tf.string),
            },
        )
        image = tf.io.decode_image(features["image/encoded"], channels=3).numpy()
        label = tf.io.decode_png(features["image/segmentation/class/encoded"]).numpy()[..., 0]
        examples.append((image, label))
    return examples


@pytest.mark.slow
def test_a_registered_architecture_trains_evaluates_exports_and_prunes(
    example, synthetic_records, tmp_path
):
    from builders import config_util, model_builder
    from core.checkpoints import checkpoint_utils

    config_path = tmp_path / "tiny_fcn.config"
    config_path.write_text(example.TINY_FCN_CONFIG.format(**synthetic_records))
    logdir, eval_dir = tmp_path / "train", tmp_path / "eval"

    # train.py: the registered model trains and its checkpoint holds its own slim names.
    _script("train.py", f"--config_path={config_path}", f"--logdir={logdir}", "--seed=1")
    prefix = str(logdir / "model.ckpt-3")
    trained = checkpoint_utils.read_named_tensors(prefix)
    assert trained["SharedFeatureExtractor/TinyConvNet/Conv_2/weights"].shape == (3, 3, 16, 16)
    assert trained["Head/Conv/weights"].shape == (3, 3, 16, 24)
    assert trained["Predictions/Conv/weights"].shape == (1, 1, 24, 19)

    # The restored model, in this process (this module registered the names on import).
    config = config_util.load_pipeline_config(str(config_path))
    model = model_builder.build(config.model)
    assert isinstance(model, example.TinyFCN) and model.head.filters == 24  # the options entry
    checkpoint_utils.restore_model(model, prefix)
    examples = _val_examples(synthetic_records["val"])
    images = np.stack([image for image, _ in examples]).astype(np.float32)
    labels = np.stack([label for _, label in examples])
    logits = model(model.preprocess(images), training=False)[outputs.LOGITS]
    predicted = np.argmax(logits.numpy(), axis=-1)

    # eval.py: the mIoU it writes is the numpy confusion matrix's of those predictions.
    _script(
        "eval.py",
        f"--config_path={config_path}",
        f"--train_dir={logdir}",
        f"--eval_dir={eval_dir}",
        "--evaluate_all_from_checkpoint=model.ckpt-3",
    )
    metrics = json.loads((eval_dir / "metrics_3.json").read_text())
    assert metrics["miou"] == pytest.approx(_confusion_miou(labels, predicted, 19), abs=1e-6)

    # export.py + inference.py: the frozen graph's class ids are the restored model's argmax.
    height, width = images.shape[1:3]
    export_dir = tmp_path / "export"
    _script(
        "export.py",
        f"--config_path={config_path}",
        f"--trained_checkpoint={prefix}",
        f"--output_dir={export_dir}",
        f"--input_shape=1,{height},{width},3",
        "--formats=frozen_graph,saved_model",
    )
    Image.fromarray(examples[0][0]).save(tmp_path / "scene.png")
    _script(
        "inference.py",
        f"--input_path={tmp_path / 'scene.png'}",
        f"--output_dir={tmp_path / 'segmented'}",
        f"--model_path={export_dir / 'frozen_inference_graph.pb'}",
        "--label_ids",
    )
    written = [f for f in os.listdir(tmp_path / "segmented") if f.endswith(".png")]
    assert len(written) == 1
    ids = np.asarray(Image.open(tmp_path / "segmented" / written[0]))
    assert ids.shape == (height, width)
    # --label_ids writes the dataset's official ids: Cityscapes' labelIds of the train ids.
    expected = np.asarray(CITYSCAPES_TRAIN_ID_TO_LABEL_ID)[predicted[0]]
    assert np.mean(ids == expected) >= 0.999

    # compress.py: half of every conv's filters, the ones with the largest L1 norms, are kept.
    pruned_dir = tmp_path / "pruned"
    _script(
        "compress.py",
        f"--config_path={config_path}",
        f"--input_checkpoint={prefix}",
        f"--output_dir={pruned_dir}",
        "--compression_factor=0.5",
        "--flops_input_size=",
    )
    pruned_config = config_util.load_pipeline_config(str(pruned_dir / "pipeline.config"))
    pruned = model_builder.build(pruned_config.model)
    checkpoint_utils.restore_model(pruned, str(pruned_dir / "pruned_model.ckpt"))
    assert [layer.filters for layer in pruned.scoped_layers()] == [4, 8, 8, 8, 12, 19]
    kernel = trained["Head/Conv/weights"]  # [3, 3, 16, 24]
    keep = np.sort(np.argsort(-np.abs(kernel).sum(axis=(0, 1, 2)), kind="stable")[:12])
    # The head reads the pruned dilated conv's channels: those are its kept input channels.
    dilated = trained["SharedFeatureExtractor/TinyConvNet/Dilated/weights"]
    keep_in = np.sort(np.argsort(-np.abs(dilated).sum(axis=(0, 1, 2)), kind="stable")[:8])
    pruned_kernel = pruned.named_variables()["Head/Conv/weights"].numpy()
    np.testing.assert_array_equal(pruned_kernel, kernel[:, :, keep_in][..., keep])
