"""A tiny architecture for the registry and contract tests: two 3x3 convs and a classifier.

``ToyNet`` implements the running and naming parts of the model contract but declares no
channel structure; ``PrunableToyNet`` adds ``declare_channels``. ``registered`` registers one of
them under a name for the length of a ``with`` block.
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf

from models import outputs
from models.hyperparams import ConvHyperparams
from models.layers.conv_bn import ConvBN, PredictionConv
from models.registry import ARCHITECTURES


class ToyNet(keras.Model):
    """image [b, H, W, 3] -> Toy/conv1 (width, stride 2) -> Toy/conv2 (width) -> logits.

    Takes the keyword arguments ``model_builder`` derives from an ``architecture`` message.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        filter_scale: float = 1.0,
        hyperparams: ConvHyperparams | None = None,
        upsample_logits: bool = False,
        layer_widths=None,
        sync_batch_norm: bool = False,
        width: int = 8,
    ):
        super().__init__(name="ToyNet")
        hyperparams = hyperparams or ConvHyperparams()
        widths = dict(layer_widths or {})
        self.num_classes = num_classes
        self.filter_scale = filter_scale
        self.upsample_logits = upsample_logits
        self.width = width
        scaled = max(1, int(width * filter_scale))
        self.conv1 = ConvBN(
            "Toy/conv1",
            widths.get("Toy/conv1", scaled),
            3,
            hyperparams,
            stride=2,
            activation="relu",
        )
        self.conv2 = ConvBN("Toy/conv2", widths.get("Toy/conv2", scaled), 3, hyperparams)
        self.predictions = PredictionConv("Toy/Predictions", num_classes, hyperparams)

    def call(self, images, training=False, include_aux=None):
        del include_aux  # no auxiliary head
        x = self.conv2(self.conv1(images, training=training), training=training)
        return {outputs.LOGITS: self.predictions(x)}

    def preprocess(self, images):
        return tf.cast(images, tf.float32) / 255.0

    def predict(self, preprocessed, training=False):
        return self(preprocessed, training=training)

    def output_specs(self, training=True):
        return (outputs.OutputSpec(outputs.LOGITS, 0.5, None, 1.0, False),)

    def min_input_size(self):
        return 4, 4

    def build_variables(self, input_size=None):
        height, width = input_size or self.min_input_size()
        self(tf.zeros([1, height, width, 3]), training=False)

    def scoped_layers(self):
        return [self.conv1, self.conv2, self.predictions]

    def named_layers(self):
        return {layer.scope: layer for layer in self.scoped_layers()}

    def named_variables(self):
        names = {}
        for layer in self.scoped_layers():
            names.update(layer.slim_variables())
        return names

    def aux_scopes(self):
        return ()

    def prediction_scopes(self):
        return (self.predictions.scope,)


class PrunableToyNet(ToyNet):
    """ToyNet with its channel structure: conv1 -> conv2 -> classifier, no sums."""

    def declare_channels(self, graph) -> None:
        graph.read(self.conv1, None, channels=3)
        first = graph.produce(self.conv1)
        graph.read(self.conv2, first)
        second = graph.produce(self.conv2)
        graph.read(self.predictions, second)

    def pruning_units(self):
        return {"toy": ("Toy/conv1", "Toy/conv2")}


@contextlib.contextmanager
def registered(name: str, factory=ToyNet):
    """Registers ``factory`` as architecture ``name`` inside the block."""
    ARCHITECTURES.register(name, factory)
    try:
        yield factory
    finally:
        ARCHITECTURES.unregister(name)
