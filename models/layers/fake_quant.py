"""Simulated int8 quantization ("fake quant") for quantization-aware training.

TF's own ``FakeQuantWithMinMaxVars`` ops are used: the TFLite converter reads their ranges as
the quantization parameters of the tensors they sit on, so a graph trained with them converts
to an int8 model without calibration images. Two kinds:

* weights: per output channel, symmetric, narrow range ([-127, 127] * max|w| / 127), as TFLite's
  int8 convolutions quantize their filters; the range is the kernel's own, so nothing is stored;
* activations: per tensor, asymmetric 8 bit, over a range tracked by an exponential moving
  average of the batch min and max (as ``tf.contrib.quantize`` did), stored as two scalar
  variables ``<name>/min`` and ``<name>/max`` next to the model's weights in the checkpoint.

:class:`LayerQuantizer` holds what one conv block needs; :mod:`models.quantization` attaches one
to every conv block of a model. Nothing here runs unless a quantizer is attached and active.
"""

from __future__ import annotations

import tensorflow as tf

NUM_BITS = 8
# The original's contrib.quantize used 0.999 over 100k-step runs; QAT here is a fine-tune of a
# few hundred steps, where 0.999 would keep the first batches' ranges to the end.
EMA_DECAY = 0.99
# Ops whose int8 TFLite kernels keep the input's scale and zero point (same-scale ops): a tensor
# reached from a fake-quantized one through them is already quantized.
SAME_SCALE_OPS = frozenset(
    {
        "AvgPool",
        "Identity",
        "MaxPool",
        "Pad",
        "Reshape",
        "ResizeBilinear",
        "ResizeNearestNeighbor",
        "StridedSlice",
    }
)
_FAKE_QUANT_OPS = frozenset({"FakeQuantWithMinMaxVars", "FakeQuantWithMinMaxVarsPerChannel"})


def fake_quant_weights(kernel: tf.Tensor, depthwise: bool = False) -> tf.Tensor:
    """Per-output-channel symmetric int8 fake quantization of a conv kernel.

    Args:
      kernel: float32 [kh, kw, in, out] (conv) or [kh, kw, in, 1] (depthwise, whose channels
        are the input channels).
      depthwise: quantize per input channel of a depthwise kernel.

    Returns:
      The kernel rounded to ``round(w / s) * s`` with ``s = max|w| / 127`` per channel (same
      shape); the gradient passes straight through (the op's own gradient).
    """
    if depthwise:
        kernel = tf.transpose(kernel, [0, 1, 3, 2])
    bound = tf.reduce_max(tf.abs(kernel), axis=[0, 1, 2])
    # An all-zero channel (e.g. pruned) would give an empty range; any positive bound is exact.
    bound = tf.stop_gradient(tf.maximum(bound, 1e-8))
    quantized = tf.quantization.fake_quant_with_min_max_vars_per_channel(
        kernel, -bound, bound, num_bits=NUM_BITS, narrow_range=True
    )
    if depthwise:
        quantized = tf.transpose(quantized, [0, 1, 3, 2])
    return quantized


def is_quantized(tensor: tf.Tensor) -> bool:
    """Whether a graph tensor is a fake-quant output, possibly through same-scale ops.

    Only meaningful while tracing (eager tensors have no producing op: False).
    """
    try:
        op = tensor.op
    except AttributeError:
        return False
    while op.type in SAME_SCALE_OPS and op.inputs:
        op = op.inputs[0].op
    return op.type in _FAKE_QUANT_OPS


class ActivationRange:
    """One activation's quantization range, tracked by EMA, and its fake quantization.

    A plain object (not a Keras layer or ``tf.Module``) so that attaching it to an already built
    Keras layer adds no tracked state; its variables are saved through the layer's
    ``slim_variables``.

    Args:
      name: slim-style prefix of the variables, e.g. ``FastPSPModule/Conv/act_quant``.
      ema_decay: weight of the old range in each training update.

    Attributes:
      min, max: float32 scalar variables (both 0 until the first training batch sets them).
    """

    def __init__(self, name: str, ema_decay: float = EMA_DECAY):
        self.name = name
        self.ema_decay = ema_decay
        # MEAN: replicas of a distribution strategy each assign their batch's update.
        common = dict(
            trainable=False,
            dtype=tf.float32,
            aggregation=tf.VariableAggregation.MEAN,
            synchronization=tf.VariableSynchronization.ON_WRITE,
        )
        self.min = tf.Variable(0.0, name=f"{name}/min".replace("/", "."), **common)
        self.max = tf.Variable(0.0, name=f"{name}/max".replace("/", "."), **common)

    def variables(self) -> dict[str, tf.Variable]:
        """``{"<name>/min": .., "<name>/max": ..}``."""
        return {f"{self.name}/min": self.min, f"{self.name}/max": self.max}

    def __call__(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Fake-quantizes ``x`` (any shape, float32) to 8 bits over the tracked range.

        In training the range is first moved towards this batch's min and max (set to them
        on the first batch); in inference it is read as stored.
        """
        if training:
            batch_min = tf.stop_gradient(tf.reduce_min(tf.cast(x, tf.float32)))
            batch_max = tf.stop_gradient(tf.reduce_max(tf.cast(x, tf.float32)))
            fresh = tf.logical_and(tf.equal(self.min, 0.0), tf.equal(self.max, 0.0))
            decay = tf.where(fresh, 0.0, self.ema_decay)
            low = self.min.assign(decay * self.min + (1.0 - decay) * batch_min)
            high = self.max.assign(decay * self.max + (1.0 - decay) * batch_max)
        else:
            low, high = tf.convert_to_tensor(self.min), tf.convert_to_tensor(self.max)
        # TFLite needs 0 inside the range (it is exactly representable after nudging).
        low = tf.minimum(low, 0.0)
        high = tf.maximum(high, low + 1e-6)
        return tf.quantization.fake_quant_with_min_max_vars(
            x, tf.stop_gradient(low), tf.stop_gradient(high), num_bits=NUM_BITS
        )


class QuantizationState:
    """The switch shared by all quantizers of a model: off before ``quantize_with_delay``."""

    def __init__(self, active: bool = False):
        self.active = active


class LayerQuantizer:
    """The fake quantization of one conv block (``ConvBN`` or ``PredictionConv``).

    Args:
      scope: the block's slim scope; range variables are named under it.
      state: the model's shared on/off switch.

    Attributes:
      output: range of the block's output (after its activation).
      input: range of its input, only where the input is not already quantized (the image,
        an ``AddN`` or a concat); None otherwise.
      sum: range of the residual sum the block's owner adds its output into (a ResNet
        bottleneck's ``conv3``, a CFF unit's projection conv); None otherwise.
      needs_input, wants_sum: what a trace of the model found (see ``models.quantization``).
    """

    def __init__(self, scope: str, state: QuantizationState):
        self.scope = scope
        self.state = state
        self.output = ActivationRange(f"{scope}/act_quant")
        self.input: ActivationRange | None = None
        self.sum: ActivationRange | None = None
        self.needs_input = False
        self.wants_sum = False

    @property
    def active(self) -> bool:
        return self.state.active

    def quantize_input(self, x: tf.Tensor, training: bool) -> tf.Tensor:
        if self.input is None:
            self.needs_input = self.needs_input or not is_quantized(x)
            return x
        return self.input(x, training)

    def quantize_sum(self, x: tf.Tensor, training: bool) -> tf.Tensor:
        if self.sum is None:
            self.wants_sum = True
            return x
        return self.sum(x, training)

    def add_input_and_sum_ranges(self, inputs: bool = True) -> None:
        """Creates the sum range, and with ``inputs`` the input range, the trace asked for."""
        if inputs and self.needs_input and self.input is None:
            self.input = ActivationRange(f"{self.scope}/input_quant")
        if self.wants_sum and self.sum is None:
            self.sum = ActivationRange(f"{self.scope}/add_quant")

    def variables(self) -> dict[str, tf.Variable]:
        """Every range variable of this block, by slim-style name."""
        names: dict[str, tf.Variable] = {}
        for quantity in (self.input, self.output, self.sum):
            if quantity is not None:
                names.update(quantity.variables())
        return names
