"""The interface the segmentation heads use to run a backbone in two stages.

ICNet runs the *early* stage (ResNet: root + block1; MobileNetV2: layers 1-5) on the half-size
input, Interps its output by 0.5 and runs the *late* stage (ResNet: blocks 2-4; MobileNetV2:
layers 6-18) on that. PSPNet runs both stages back to back. Both stages together have output
stride 8 (the early one ends at stride 8, the late one is dilated).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
import tensorflow as tf

from models.layers.conv_bn import ConvBN

if TYPE_CHECKING:  # only for hints: core.pruning imports the models at run time
    from core.pruning.dependency import ChannelGraph, ChannelGroup


class Backbone(keras.layers.Layer):
    """Base class of the dilated backbones.

    Subclasses set the class attributes and implement ``call_early``, ``call_late``,
    ``preprocess`` and ``scoped_layers``; to be prunable also ``declare_channels`` and
    ``pruning_units`` (see :mod:`models.segmentation_model` for the contract). A new backbone
    registers a factory in :data:`models.registry.BACKBONES`.

    Attributes:
      early_endpoint: name of the early stage's output (the ICNet 1/2-branch features).
      final_endpoint: name of the late stage's output (the pyramid pooling input).
      default_aux_endpoint: the endpoint the original put the auxiliary classifier on.
      late_endpoints: endpoints ``call_late`` returns, in order.
    """

    early_endpoint: str
    final_endpoint: str
    default_aux_endpoint: str
    late_endpoints: tuple[str, ...]
    # Segments run under tf.recompute_grad (gradient checkpointing); set by the model.
    recompute_scopes: frozenset[str] = frozenset()
    # Runs of steps recomputed as one segment (models.recompute.run_chain); set by the model.
    recompute_groups: frozenset[tuple[str, ...]] = frozenset()

    def call_early(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Early stage: preprocessed images [b, H, W, 3] -> [b, ~H/8, ~W/8, c_early]."""
        raise NotImplementedError

    def call_late(self, features: tf.Tensor, training: bool = False) -> dict[str, tf.Tensor]:
        """Late stage (dilated, no striding): [b, h, w, c_early] -> {endpoint: [b, h, w, c]}."""
        raise NotImplementedError

    def call(self, images: tf.Tensor, training: bool = False) -> dict[str, tf.Tensor]:
        """Both stages: preprocessed images -> endpoints, all at output stride 8."""
        early = self.call_early(images, training=training)
        endpoints = {self.early_endpoint: early}
        endpoints.update(self.call_late(early, training=training))
        return endpoints

    def preprocess(self, images: tf.Tensor) -> tf.Tensor:
        """Maps float32 RGB images in [0, 255] to the backbone's input range."""
        raise NotImplementedError

    def early_size(self, size: int) -> int:
        """Spatial size of the early stage's output for an input of ``size`` pixels."""
        raise NotImplementedError

    def scoped_layers(self) -> list[ConvBN]:
        """All conv blocks, in build order."""
        raise NotImplementedError

    def recompute_segments(self) -> tuple[str, ...]:
        """Scopes of the sub-blocks that can be recomputed in backprop (none by default)."""
        return ()

    def recompute_chains(self) -> tuple[tuple[str, ...], ...]:
        """Chains of steps whose consecutive runs can be recomputed (none by default)."""
        return ()

    # -- pruning structure (see models.segmentation_model) -----------------------------------

    def declare_channels(self, graph: ChannelGraph) -> dict[str, ChannelGroup]:
        """Describes the backbone's channel flow on ``graph``; returns its endpoints' groups.

        Must call ``graph.read`` for every conv (the image is ``None`` with ``channels=3``),
        ``graph.produce`` for a conv whose output starts a channel space, ``graph.join`` for a
        conv summed onto an existing one (residual adds) and ``graph.pass_through`` for a
        depthwise conv.

        Returns:
          Endpoint name -> the channel group of that endpoint's tensor; at least
          ``early_endpoint``, ``final_endpoint``, ``default_aux_endpoint`` and every name of
          ``late_endpoints``.
        """
        raise NotImplementedError(
            f"backbone {type(self).__name__} declares no channel structure; implement "
            "declare_channels to prune it."
        )

    def pruning_units(self) -> dict[str, tuple[str, ...]]:
        """Named parts of the backbone for sensitivity analysis: unit name -> conv scopes.

        A unit is what ``sensitivity.py --granularity block`` prunes alone (``stem``,
        ``block1``, ...); units are listed in model order. The default is one ``stem`` unit
        holding every conv.
        """
        return {"stem": tuple(layer.scope for layer in self.scoped_layers())}
