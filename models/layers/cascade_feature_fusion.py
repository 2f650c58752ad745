"""ICNet's cascade feature fusion (CFF) unit.

The coarse input is zoomed x2 (Interp), passed through a 3x3 conv with dilation 2 + BN
(``<scope>/DilatedConv``, no activation); the finer input goes through a 1x1 projection conv + BN
(``<scope>/Conv``, no activation); the two are summed and rectified. The zoomed coarse input is
also returned because ICNet's cascade label guidance puts an auxiliary classifier on it.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from models.hyperparams import ConvHyperparams
from models.layers.conv_bn import ConvBN
from models.layers.interp import interp, resize_like
from models.widths import WidthResolver


class CascadeFeatureFusion(keras.layers.Layer):
    """One CFF unit.

    Args:
      scope: ``CascadeFeatureFusion`` or ``CascadeFeatureFusion_1``.
      widths: width resolver; both convs have 256 nominal filters and are compressible.
      hyperparams: head hyperparams (initializer, regularizer, BN).
      sync_batch_norm: synchronise BN across replicas.

    Call args:
      coarse: float32 [batch, h, w, c_coarse].
      fine: float32 [batch, H, W, c_fine], with H = 2h - 1 under the Interp convention.
      training: Python bool.

    Returns:
      (fused, upsampled): fused float32 [batch, H, W, 256 * filter_scale], and the Interp x2 of
      ``coarse``, float32 [batch, 2h - 1, 2w - 1, c_coarse], the auxiliary classifier's input.
    """

    def __init__(
        self,
        scope: str,
        widths: WidthResolver,
        hyperparams: ConvHyperparams,
        sync_batch_norm: bool = False,
    ):
        super().__init__(name=scope)
        self.scope = scope
        dilated = f"{scope}/DilatedConv"
        projection = f"{scope}/Conv"
        self.dilated_conv = ConvBN(
            dilated,
            widths.width(dilated, 256),
            3,
            hyperparams,
            rate=2,
            sync_batch_norm=sync_batch_norm,
        )
        self.projection_conv = ConvBN(
            projection,
            widths.width(projection, 256),
            1,
            hyperparams,
            sync_batch_norm=sync_batch_norm,
        )
        if self.dilated_conv.filters != self.projection_conv.filters:
            raise ValueError(
                f"layer_widths gives {dilated} {self.dilated_conv.filters} filters but "
                f"{projection} {self.projection_conv.filters}; their outputs are summed, so "
                "they must have the same width."
            )

    def call(
        self, coarse: tf.Tensor, fine: tf.Tensor, training: bool = False
    ) -> tuple[tf.Tensor, tf.Tensor]:
        upsampled = interp(coarse, 2.0)
        low = self.dilated_conv(upsampled, training=training)
        high = self.projection_conv(fine, training=training)
        # Sizes agree under the Interp convention (e.g. 33 -> 65 vs 65); for other input sizes
        # the coarse path is resized onto the fine grid, as the original did.
        low = resize_like(low, high)
        # quantize_sum: identity unless quantization-aware training is on.
        return self.projection_conv.quantize_sum(tf.nn.relu(low + high), training), upsampled

    def scoped_layers(self) -> list[ConvBN]:
        return [self.dilated_conv, self.projection_conv]
