"""Conv + batch norm + activation, the building block of every network here, with a slim scope.

Each block knows the TF-slim scope its variables had in the original (``scope``), e.g.
``SharedFeatureExtractor/resnet_v1_50/block1/unit_1/bottleneck_v1/conv1``. Keras layer names cannot
contain '/', so the Keras name is the scope with '/' replaced by '.', and :meth:`slim_variables`
gives the slim variable names (``<scope>/weights``, ``<scope>/BatchNorm/gamma`` ...) that the
checkpoint loader and the pruner use.
"""

from __future__ import annotations

from typing import Literal

import keras
import tensorflow as tf

from models.hyperparams import ConvHyperparams
from models.layers.fake_quant import LayerQuantizer, fake_quant_weights

Activation = Literal["relu", "relu6"] | None
# "same": TF 'SAME' padding (slim.conv2d). "explicit": slim resnet_utils.conv2d_same, which for
# stride > 1 pads symmetrically by (k_eff - 1) // 2 before and the rest after, then runs 'VALID';
# TF 'SAME' would put the extra pixel after only, shifting the sampling grid of ImageNet weights.
Padding = Literal["same", "explicit"]
# Inputs FusedBatchNormV3 takes (its statistics are float32 for all three).
_FUSED_BN_DTYPES = (tf.float32, tf.float16, tf.bfloat16)


def keras_name(scope: str) -> str:
    """Keras-legal name for a slim scope ('/' is not allowed in Keras 3 names)."""
    return scope.replace("/", ".")


class ConvBN(keras.layers.Layer):
    """A conv (or depthwise conv) without bias, then BN, then an optional activation.

    Args:
      scope: slim scope of the conv, e.g. ``CascadeFeatureFusion/DilatedConv``.
      filters: output channels (ignored for depthwise convs, which keep the input channels).
      kernel_size: square kernel size.
      hyperparams: initializer, regularizer and BN settings.
      stride: spatial stride; strided convs must have rate 1.
      rate: dilation rate.
      activation: "relu", "relu6" or None.
      padding: "same" or "explicit" (see ``Padding``).
      depthwise: a depthwise 3x3 (slim ``separable_conv2d`` with ``num_outputs=None``).
      sync_batch_norm: synchronise BN statistics across replicas of a distribution strategy.

    Attributes:
      statistics_observer: None, or a callable given the BN input (the conv output, [batch,
        out_height, out_width, filters]) on every call that normalises with batch statistics;
        batch-norm recalibration (``core.training.recalibration``) sets it for one pass.
        None (the default) changes nothing.
      quantizer: None, or a :class:`models.layers.fake_quant.LayerQuantizer` attached by
        ``models.quantization.attach`` for quantization-aware training. While it is active
        the block runs as TFLite's int8 conv does: BN folded into the kernel on the moving
        statistics (in training too; BN statistics are then frozen), the folded kernel
        fake-quantized per output channel, the output (after the activation) fake-quantized.
        None (the default), or inactive, changes nothing.

    Call args:
      inputs: float32 [batch, height, width, in_channels].
      training: Python bool; BN uses batch statistics only if training and
        ``hyperparams.batch_norm.train``.

    Returns:
      float32 [batch, out_height, out_width, filters].
    """

    def __init__(
        self,
        scope: str,
        filters: int,
        kernel_size: int,
        hyperparams: ConvHyperparams,
        *,
        stride: int = 1,
        rate: int = 1,
        activation: Activation = None,
        padding: Padding = "same",
        depthwise: bool = False,
        sync_batch_norm: bool = False,
    ):
        super().__init__(name=keras_name(scope))
        if stride > 1 and rate > 1:
            raise ValueError(f"{scope}: a conv cannot have both stride {stride} and rate {rate}.")
        self.scope = scope
        self.filters = filters
        self.kernel_size = kernel_size
        self.stride = stride
        self.rate = rate
        self.activation = activation
        self.depthwise = depthwise
        explicit = padding == "explicit" and stride > 1
        self._pads = None
        if explicit:
            total = kernel_size + (kernel_size - 1) * (rate - 1) - 1
            self._pads = (total // 2, total - total // 2)
        conv_padding = "valid" if explicit else "same"
        common = dict(
            strides=stride,
            dilation_rate=rate,
            padding=conv_padding,
            use_bias=False,
        )
        if depthwise:
            self.conv = keras.layers.DepthwiseConv2D(
                kernel_size,
                depthwise_initializer=hyperparams.kernel_initializer(),
                depthwise_regularizer=hyperparams.kernel_regularizer(),
                name="depthwise",
                **common,
            )
        else:
            self.conv = keras.layers.Conv2D(
                filters,
                kernel_size,
                kernel_initializer=hyperparams.kernel_initializer(),
                kernel_regularizer=hyperparams.kernel_regularizer(),
                name="conv",
                **common,
            )
        bn = hyperparams.batch_norm
        self.bn_train = bn.train
        self.statistics_observer = None
        self.quantizer: LayerQuantizer | None = None
        self.bn = keras.layers.BatchNormalization(
            momentum=bn.decay,
            epsilon=bn.epsilon,
            center=bn.center,
            scale=bn.scale,
            synchronized=sync_batch_norm,
            name="BatchNorm",
        )

    def build(self, input_shape) -> None:
        # Built explicitly: the folded path below reads the sublayers' variables without
        # calling them, so Keras would not build them on the first call.
        shape = tuple(input_shape)
        if self._pads is not None:
            padded = sum(self._pads)
            shape = (
                shape[0],
                None if shape[1] is None else shape[1] + padded,
                None if shape[2] is None else shape[2] + padded,
                shape[3],
            )
        self.conv.build(shape)
        self.bn.build(self.conv.compute_output_shape(shape))
        super().build(input_shape)

    def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        if self.quantizer is not None and self.quantizer.active:
            return self._quantized_call(inputs, bool(training))
        x = inputs
        if self._pads is not None:
            before, after = self._pads
            x = tf.pad(x, [[0, 0], [before, after], [before, after], [0, 0]])
        if bool(training) and self.bn_train:
            x = self.conv(x)
            if self.statistics_observer is not None:
                self.statistics_observer(x)
            x = self._batch_norm_training(x)
        else:
            x = self._folded_conv(x)
        if self.activation == "relu":
            x = tf.nn.relu(x)
        elif self.activation == "relu6":
            x = tf.nn.relu6(x)
        return x

    def _batch_norm_training(self, x: tf.Tensor) -> tf.Tensor:
        """BN on the batch's statistics, updating the moving ones: one fused op where possible.

        The Keras layer computes the moments and the normalization as separate element-wise ops,
        each writing a tensor the size of ``x`` that backprop may keep (about eight per block);
        ``FusedBatchNormV3`` (what TF-slim's ``batch_norm`` ran in the original) writes one
        and keeps only ``x`` and per-channel statistics for its gradient. That is most of the
        difference between what a recomputed segment rebuilds at once with and without it
        (``train_mem_saving.py``; docs/benchmarks.md). Results equal the Keras layer's up to
        float rounding, and the moving statistics move as in Keras, on the biased batch variance
        (the fused op returns the unbiased one, n / (n - 1) times it), through the Keras
        variables' ``assign`` (so a ``StatelessScope`` discards them during recomputation).
        A synchronized (cross-replica) or frozen BN layer, and float64 (which the fused op does
        not take), keep the Keras path.
        """
        bn = self.bn
        if bn.synchronized or not bn.trainable or x.dtype not in _FUSED_BN_DTYPES:
            return bn(x, training=True)
        channels = x.shape[-1]
        gamma = tf.convert_to_tensor(bn.gamma) if bn.scale else tf.ones([channels])
        beta = tf.convert_to_tensor(bn.beta) if bn.center else tf.zeros([channels])
        y, mean, unbiased_variance = tf.compat.v1.nn.fused_batch_norm(
            x, gamma, beta, epsilon=bn.epsilon, data_format="NHWC", is_training=True
        )
        count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
        variance = unbiased_variance * (tf.maximum(count - 1.0, 1.0) / count)
        momentum = bn.momentum
        bn.moving_mean.assign(bn.moving_mean * momentum + mean * (1.0 - momentum))
        bn.moving_variance.assign(bn.moving_variance * momentum + variance * (1.0 - momentum))
        return y

    def _quantized_call(self, inputs: tf.Tensor, training: bool) -> tf.Tensor:
        # Weights: the gradient reaches kernel, gamma and beta through the folded kernel
        # (straight through the rounding); the moving statistics are constants here.
        quantizer = self.quantizer
        x = quantizer.quantize_input(inputs, training)
        if self._pads is not None:
            before, after = self._pads
            x = tf.pad(x, [[0, 0], [before, after], [before, after], [0, 0]])
        x = self._folded_conv(x, quantize=True)
        if self.activation == "relu":
            x = tf.nn.relu(x)
        elif self.activation == "relu6":
            x = tf.nn.relu6(x)
        return quantizer.output(x, training)

    def quantize_sum(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Fake-quantizes a residual sum this block's output was added into (identity if off).

        The sum's owner (a ResNet bottleneck, a CFF unit) calls it on ``relu(a + b)``, where
        TFLite's int8 ``ADD`` (with the ReLU fused) writes a tensor with its own range.
        """
        if self.quantizer is None or not self.quantizer.active:
            return x
        return self.quantizer.quantize_sum(x, bool(training))

    def folded_scale_and_bias(self) -> tuple[tf.Tensor, tf.Tensor]:
        """Per-channel ``(scale, bias)`` with ``BN(y) == y * scale + bias`` on moving statistics."""
        bn = self.bn
        scale = tf.math.rsqrt(tf.convert_to_tensor(bn.moving_variance) + bn.epsilon)
        if bn.scale:
            scale = scale * bn.gamma
        bias = -tf.convert_to_tensor(bn.moving_mean) * scale
        if bn.center:
            bias = bias + bn.beta
        return scale, bias

    def _folded_conv(self, x: tf.Tensor, quantize: bool = False) -> tf.Tensor:
        """Conv then BN on moving statistics, as one conv with a scaled kernel and a bias.

        The same function as ``bn(conv(x), training=False)`` up to float rounding, but the
        activations are read and written once instead of three times (conv, multiply, add):
        about 6% of ICNet's CPU time at 1024x2048. In a frozen graph or a SavedModel the
        scaled kernel is a constant. The convolution goes through the same Keras op as the
        conv layer (dilated convs as space-to-batch, which is faster on oneDNN than a native
        dilated conv). With ``quantize`` the scaled kernel is fake-quantized per channel and
        the conv is TF's native (dilated) conv op: the TFLite converter leaves a
        space-to-batch dilated conv in float when its padding does not fold into the conv.
        """
        conv = self.conv
        scale, bias = self.folded_scale_and_bias()
        dtype = conv.compute_dtype
        x = tf.cast(x, dtype)
        common = dict(
            strides=conv.strides,
            padding=conv.padding,
            dilation_rate=conv.dilation_rate,
        )
        if self.depthwise:
            kernel = conv.kernel * tf.reshape(scale, [1, 1, -1, 1])
            if quantize:
                kernel = fake_quant_weights(kernel, depthwise=True)
                y = tf.nn.depthwise_conv2d(
                    x,
                    tf.cast(kernel, dtype),
                    [1, *conv.strides, 1],
                    conv.padding.upper(),
                    dilations=conv.dilation_rate,
                )
            else:
                y = keras.ops.depthwise_conv(x, tf.cast(kernel, dtype), **common)
        else:
            kernel = conv.kernel * scale
            if quantize:
                kernel = fake_quant_weights(kernel)
                y = tf.nn.conv2d(
                    x,
                    tf.cast(kernel, dtype),
                    conv.strides,
                    conv.padding.upper(),
                    dilations=conv.dilation_rate,
                )
            else:
                y = keras.ops.conv(x, tf.cast(kernel, dtype), **common)
        return tf.nn.bias_add(y, tf.cast(bias, dtype))

    def slim_variables(self) -> dict[str, tf.Variable]:
        """Slim names of this block's variables (the block must be built)."""
        weights = "depthwise_weights" if self.depthwise else "weights"
        names = {f"{self.scope}/{weights}": self.conv.kernel}
        bn = self.bn
        if bn.scale:
            names[f"{self.scope}/BatchNorm/gamma"] = bn.gamma
        if bn.center:
            names[f"{self.scope}/BatchNorm/beta"] = bn.beta
        names[f"{self.scope}/BatchNorm/moving_mean"] = bn.moving_mean
        names[f"{self.scope}/BatchNorm/moving_variance"] = bn.moving_variance
        names = {name: _tf_variable(v) for name, v in names.items()}
        if self.quantizer is not None:
            names.update(self.quantizer.variables())
        return names


class PredictionConv(keras.layers.Layer):
    """A 1x1 classifier conv with bias, no BN and no activation; never scaled or pruned.

    Args:
      scope: slim scope, e.g. ``Predictions/Conv`` or ``AuxOutput``.
      num_classes: output channels.
      hyperparams: initializer and regularizer of the kernel (the bias is not regularized).

    Attributes:
      quantizer: as in :class:`ConvBN` (kernel fake-quantized per channel, logits
        fake-quantized); None by default.

    Call args:
      inputs: float32 [batch, height, width, in_channels].

    Returns:
      float32 logits [batch, height, width, num_classes].
    """

    def __init__(self, scope: str, num_classes: int, hyperparams: ConvHyperparams):
        super().__init__(name=keras_name(scope))
        self.scope = scope
        self.filters = num_classes
        self.kernel_size = 1
        self.stride = 1
        self.rate = 1
        self.depthwise = False
        self.conv = keras.layers.Conv2D(
            num_classes,
            1,
            use_bias=True,
            kernel_initializer=hyperparams.kernel_initializer(),
            kernel_regularizer=hyperparams.kernel_regularizer(),
            name="conv",
        )
        self.quantizer: LayerQuantizer | None = None

    def call(self, inputs: tf.Tensor, training: bool = False) -> tf.Tensor:
        if self.quantizer is not None and self.quantizer.active:
            return self._quantized_call(inputs, bool(training))
        return self.conv(inputs)  # no BN, so training changes nothing

    def _quantized_call(self, inputs: tf.Tensor, training: bool) -> tf.Tensor:
        conv = self.conv
        x = self.quantizer.quantize_input(inputs, training)
        kernel = fake_quant_weights(tf.convert_to_tensor(conv.kernel))
        y = keras.ops.conv(tf.cast(x, conv.compute_dtype), tf.cast(kernel, conv.compute_dtype))
        y = tf.nn.bias_add(y, tf.cast(conv.bias, conv.compute_dtype))
        return self.quantizer.output(y, training)

    def slim_variables(self) -> dict[str, tf.Variable]:
        """Slim names of this block's variables (the block must be built)."""
        names = {
            f"{self.scope}/weights": _tf_variable(self.conv.kernel),
            f"{self.scope}/biases": _tf_variable(self.conv.bias),
        }
        if self.quantizer is not None:
            names.update(self.quantizer.variables())
        return names


def _tf_variable(variable: keras.Variable) -> tf.Variable:
    # Keras 3 wraps a tf.Variable; checkpoint readers and optimizers of the TF1 kind need it.
    return variable.value if hasattr(variable, "value") else variable
