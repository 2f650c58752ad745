"""Quantization-aware training (QAT): fake-quant placement on a built segmentation model.

:func:`attach` gives every conv block of a model (``model.scoped_layers()``: each ``ConvBN`` and
``PredictionConv``) a :class:`models.layers.fake_quant.LayerQuantizer`, placed where TFLite's
int8 kernels quantize:

* each conv's BN-folded kernel, per output channel (weights);
* each conv block's output, after its fused activation (conv, ReLU/ReLU6 fused in TFLite);
* each residual sum (ResNet bottleneck, CFF unit, MobileNetV2 block): TFLite's int8 ``ADD``
  (ReLU fused) writes its own range; the model asks for it through ``ConvBN.quantize_sum``;
* a conv's *input* only where it is not already quantized: the preprocessed image, the fast
  PSP module's ``AddN``, PSPNet's concat. Resize, pooling, padding and slicing keep their
  input's scale in int8 TFLite and need no range of their own.

Which convs need an input range and which own a sum is found by tracing the model once with the
quantizers on (:func:`models.layers.fake_quant.is_quantized` walks back through same-scale ops),
not from a per-architecture table, so pruned widths and both backbones work unchanged.

The ranges are variables ``<scope>/act_quant/{min,max}``, ``<scope>/input_quant/...`` and
``<scope>/add_quant/...`` in ``model.named_variables()``: checkpoints, restore and export carry
them like any weight. A model with no quantizers attached is exactly the float model.
"""

from __future__ import annotations

import tensorflow as tf
from absl import logging

from models.layers.fake_quant import LayerQuantizer, QuantizationState

# Range variables end with one of these (checkpoint detection).
RANGE_SUFFIXES = ("/act_quant/min", "/input_quant/min", "/add_quant/min")


def attach(model, active: bool = False) -> QuantizationState:
    """Attaches fake quantization to every conv block of a built model.

    Create it where the model's variables are created (under the distribution strategy's
    scope), and before a checkpoint object of the model is made, so the ranges are saved.

    Args:
      model: a built ``SegmentationModel`` (``build_variables()`` done).
      active: switch the quantizers on now (export, evaluation); training turns them on at
        ``quantize_with_delay`` instead (``core.training.quantization``).

    Returns:
      The shared :class:`QuantizationState`; set ``state.active`` to switch, then retrace any
      ``tf.function`` that runs the model.

    Raises:
      ValueError: quantizers are already attached.
    """
    layers = model.scoped_layers()
    if any(getattr(layer, "quantizer", None) is not None for layer in layers):
        raise ValueError(f"{model.name} already has quantizers attached.")
    state = QuantizationState(active=True)
    for layer in layers:
        layer.quantizer = LayerQuantizer(layer.scope, state)
    # Traces in inference mode: the first finds the residual sums, the second (with the sums
    # quantized) the conv inputs that are still unquantized.
    height, width = model.min_input_size()
    spec = tf.TensorSpec([1, height, width, 3], tf.float32)
    for create_inputs in (False, True):
        for layer in layers:
            layer.quantizer.needs_input = False
        trace = tf.function(lambda images: model(images, training=False, include_aux=True))
        trace.get_concrete_function(spec)
        for layer in layers:
            layer.quantizer.add_input_and_sum_ranges(inputs=create_inputs)
    state.active = active
    inputs = [layer.scope for layer in layers if layer.quantizer.input is not None]
    sums = [layer.scope for layer in layers if layer.quantizer.sum is not None]
    logging.info(
        "Quantization-aware training: %d conv blocks, %d residual sums, inputs quantized at %s.",
        len(layers),
        len(sums),
        ", ".join(inputs),
    )
    return state


def range_variables(model) -> dict[str, tf.Variable]:
    """The range variables of a model with quantizers attached (empty without)."""
    names: dict[str, tf.Variable] = {}
    for layer in model.scoped_layers():
        quantizer = getattr(layer, "quantizer", None)
        if quantizer is not None:
            names.update(quantizer.variables())
    return names


def has_ranges(variable_names) -> bool:
    """Whether a checkpoint's variable names include QAT ranges (it was trained with QAT)."""
    return any(name.endswith(RANGE_SUFFIXES) for name in variable_names)
