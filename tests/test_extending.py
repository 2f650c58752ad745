"""Extending the framework from one module: a new backbone and architecture, end to end.

This module is the worked example of docs/extending.md. It defines

* ``TinyBackbone``, registered as the backbone ``tiny_convnet``: three stride-2 3x3 convs (output
  stride 8) and one dilated 3x3 conv;
* ``TinyFCN``, registered as the architecture ``tiny_fcn``: a 3x3 head conv and a 1x1 classifier
  on the backbone, logits at 1/8 in training and resized to the input in evaluation;

and a config that names them (``model { architecture { name: "tiny_fcn" } }``) and imports this
module (``custom_imports: "tests.test_extending"``). The test then drives the public scripts,
each in its own process as a user runs them, with no change to the framework: ``train.py``
trains it, ``eval.py`` scores it, ``export.py`` exports it, ``inference.py`` runs the export and
``compress.py`` prunes it. Each result is checked against an independent computation: mIoU from
a numpy confusion matrix of the restored model's predictions, the export's class ids against
the restored model's argmax, the kept filters against a numpy L1 ranking of the trained kernels.
"""

from __future__ import annotations

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
from models.backbones.base import Backbone
from models.hyperparams import ConvHyperparams
from models.layers.conv_bn import ConvBN, PredictionConv
from models.layers.interp import resize_bilinear
from models.registry import ARCHITECTURES, BACKBONES
from models.segmentation_model import SegmentationModel
from tests.snippets import REPO_ROOT

# ----------------------------------------------------------------------------- the extension


class TinyBackbone(Backbone):
    """Preprocessed images [b, H, W, 3] -> ``early`` at stride 8 -> ``final`` (dilated conv).

    Scopes (slim names) live under ``SharedFeatureExtractor/TinyConvNet/``.
    """

    early_endpoint = "early"
    final_endpoint = "final"
    default_aux_endpoint = "early"
    late_endpoints = ("final",)

    def __init__(self, widths, weight_decay=0.0, atrous_rates=(2, 4), sync_batch_norm=False):
        super().__init__(name="TinyConvNet")
        hyperparams = ConvHyperparams(regularizer_weight=weight_decay)
        prefix = "SharedFeatureExtractor/TinyConvNet"
        self.stem = []
        for index, depth in enumerate((8, 16, 16)):
            scope = f"{prefix}/Conv" + (f"_{index}" if index else "")
            self.stem.append(
                ConvBN(
                    scope,
                    widths.width(scope, depth),
                    3,
                    hyperparams,
                    stride=2,
                    activation="relu",
                    sync_batch_norm=sync_batch_norm,
                )
            )
        scope = f"{prefix}/Dilated"
        self.dilated = ConvBN(
            scope,
            widths.width(scope, 16),
            3,
            hyperparams,
            rate=atrous_rates[0],
            activation="relu",
            sync_batch_norm=sync_batch_norm,
        )

    def preprocess(self, images):
        return tf.cast(images, tf.float32) / 127.5 - 1.0

    def call_early(self, images, training=False):
        for conv in self.stem:
            images = conv(images, training=training)
        return images

    def call_late(self, features, training=False):
        return {"final": self.dilated(features, training=training)}

    def early_size(self, size):
        for _ in self.stem:  # 'SAME' stride 2
            size = -(-size // 2)
        return size

    def scoped_layers(self):
        return [*self.stem, self.dilated]

    def declare_channels(self, graph):
        current = None
        for conv in self.stem:
            graph.read(conv, current, channels=3)
            current = graph.produce(conv)
        early = current
        graph.read(self.dilated, early)
        return {"early": early, "final": graph.produce(self.dilated)}

    def pruning_units(self):
        return {
            "stem": tuple(conv.scope for conv in self.stem),
            "dilated": (self.dilated.scope,),
        }


@BACKBONES.register("tiny_convnet")
def build_tiny_convnet(widths, weight_decay=0.0, atrous_rates=(2, 4), sync_batch_norm=False):
    return TinyBackbone(widths, weight_decay, atrous_rates, sync_batch_norm)


@ARCHITECTURES.register("tiny_fcn")
class TinyFCN(SegmentationModel):
    """A fully convolutional head on a registered backbone.

    Args:
      num_classes, filter_scale, backbone, layer_widths, sync_batch_norm, upsample_logits: the
        shared fields of the ``architecture`` message (see ``SegmentationModel``).
      hyperparams: conv hyperparameters of the head (the config's ``hyperparams``).
      head_width: filters of the head conv before ``filter_scale`` (an ``options`` entry).
      **unused: pooling_factors, which this head does not use.
    """

    def __init__(
        self,
        num_classes,
        *,
        filter_scale=1.0,
        backbone="tiny_convnet",
        hyperparams=None,
        layer_widths=None,
        sync_batch_norm=False,
        upsample_logits=False,
        head_width=32,
        pooling_factors=(),
    ):
        super().__init__(
            num_classes,
            backbone=backbone,
            name="TinyFCN",
            filter_scale=filter_scale,
            layer_widths=layer_widths,
            sync_batch_norm=sync_batch_norm,
            upsample_logits=upsample_logits,
        )
        hyperparams = hyperparams or ConvHyperparams()
        self.head = ConvBN(
            "Head/Conv",
            self.widths.width("Head/Conv", head_width),
            3,
            hyperparams,
            activation="relu",
            sync_batch_norm=sync_batch_norm,
        )
        self.predictions = PredictionConv("Predictions/Conv", num_classes, hyperparams)

    def call(self, images, training=False, include_aux=None):
        del include_aux  # no auxiliary classifier
        features = self.backbone(images, training=training)["final"]
        logits = self.predictions(self.head(features, training=training))
        if not training or self.upsample_logits:
            logits = resize_bilinear(logits, images.shape[1:3])
        return {outputs.LOGITS: logits}

    def output_specs(self, training=True):
        full_size = not training or self.upsample_logits
        return (outputs.OutputSpec(outputs.LOGITS, 1.0 if full_size else 1 / 8, None, 1.0, False),)

    def min_input_size(self):
        return 8, 8

    def scoped_layers(self):
        return [*self.backbone.scoped_layers(), self.head, self.predictions]

    def aux_scopes(self):
        return ()

    def prediction_scopes(self):
        return (self.predictions.scope,)

    def declare_channels(self, graph):
        endpoints = self.backbone.declare_channels(graph)
        graph.read(self.head, endpoints["final"])
        graph.read(self.predictions, graph.produce(self.head))

    def pruning_units(self):
        return {**self.backbone.pruning_units(), "head": (self.head.scope,)}


TINY_FCN_CONFIG = """
custom_imports: "tests.test_extending"
model {{
  architecture {{
    name: "tiny_fcn"
    num_classes: 19
    filter_scale: 1.0
    feature_extractor {{ type: "tiny_convnet" }}
    hyperparams {{
      batch_norm {{ decay: 0.9 epsilon: 0.00001 }}
      initializer {{ variance_scaling_initializer {{ }} }}
    }}
    loss {{ classification_loss {{ softmax {{ }} }} }}
    options {{ key: "head_width" value: "24" }}
  }}
}}
dataset {{ name: "cityscapes" }}
train_config {{
  batch_size: 2
  num_steps: 3
  optimizer {{ adam_optimizer {{ learning_rate {{ constant_learning_rate {{
    learning_rate: 0.001 }} }} }} }}
  preprocessor_step {{ random_image_crop {{ crop_height: 65 crop_width: 65 }} }}
}}
train_input_reader {{ tf_record_input_reader {{ input_path: "{train}" }} }}
eval_config {{ num_examples: 3 }}
eval_input_reader {{ shuffle: false tf_record_input_reader {{ input_path: "{val}" }} }}
"""

# ----------------------------------------------------------------------------- the test


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
def test_a_registered_architecture_trains_evaluates_exports_and_prunes(synthetic_records, tmp_path):
    from builders import config_util, model_builder
    from core.checkpoints import checkpoint_utils

    config_path = tmp_path / "tiny_fcn.config"
    config_path.write_text(TINY_FCN_CONFIG.format(**synthetic_records))
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
    assert isinstance(model, TinyFCN) and model.head.filters == 24  # the options entry
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
