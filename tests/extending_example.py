"""A user's extension module: a new backbone and architecture, registered on import.

The worked example of docs/extending.md, driven end to end by ``tests/test_extending.py``:

* ``TinyBackbone``, registered as the backbone ``tiny_convnet``: three stride-2 3x3 convs (output
  stride 8) and one dilated 3x3 conv;
* ``TinyFCN``, registered as the architecture ``tiny_fcn``: a 3x3 head conv and a 1x1 classifier
  on the backbone, logits at 1/8 in training and resized to the input in evaluation;
* ``TINY_FCN_CONFIG``, a pipeline config that imports this module (``custom_imports``) and
  names both (``model { architecture { name: "tiny_fcn" } }``).

Nothing in the framework knows these names: importing this module (which every script does for
a config listing it in ``custom_imports``) is what registers them. It is not a test module, so
pytest does not import it at collection time and the registries of other tests stay as built.
"""

from __future__ import annotations

import tensorflow as tf

from models import outputs
from models.backbones.base import Backbone
from models.hyperparams import ConvHyperparams
from models.layers.conv_bn import ConvBN, PredictionConv
from models.layers.interp import resize_bilinear
from models.registry import ARCHITECTURES, BACKBONES
from models.segmentation_model import SegmentationModel


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
custom_imports: "tests.extending_example"
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
