"""TFLite conversion of the frozen deploy graph: float32 and post-training int8.

Both models are converted from the *frozen* concrete function (variables folded into
constants). Converting a function that still reads Keras 3 variables, e.g. through a
``tf.Module`` or a SavedModel of one, silently produces a model whose weights are unresolved
``VAR_HANDLE`` ops and whose outputs are NaN.

For a checkpoint trained with quantization-aware training (``quantize_with_delay``) the int8
model is instead converted from the graph's fake-quant ops (:func:`convert_int8_from_ranges`),
with the trained ranges and no calibration images.

The post-training int8 model is full-integer quantized (``TFLITE_BUILTINS_INT8``, calibrated on a
representative dataset) but keeps the float model's interface: uint8 images in, int32 class ids
(or uint8 colours) out. The graph's own uint8 -> float cast becomes the input quantization and
the argmax reads int8 logits, so one client code path serves every format. An op with no int8
kernel is still kept in float between a dequantize and a quantize by the converter, e.g.
ICNet's ``ADD_N`` pyramid sum (``mobile_ops_only: true`` makes it int8 ``ADD``s); such ops are
listed in the export summary (``float_ops``) and logged.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable

import numpy as np
import tensorflow as tf
from absl import logging

from core.deploy.deploy_graph import INPUT_NAME, OUTPUT_NAME, SCORES_NAME, SIGNATURE_KEY

# Images used to measure the int8 model's agreement with the float graph after conversion.
REPORT_IMAGES = 4


class TFLiteConversionError(RuntimeError):
    """The TFLite converter rejected the graph; the message carries the converter's reason."""


def named_outputs(frozen):
    """The frozen function behind one whose outputs are a dict keyed by the deploy names.

    A frozen function returns a flat list, which the converter names ``output_0``, ...; this
    wrapper's dict keys (``predictions``, ``scores``) become the TFLite signature's output names
    and its input spec's name (``inputs``) the input name, as in the SavedModel.
    """
    (inputs,) = frozen.inputs
    # The deploy graph's outputs are a dict; freezing flattens it in sorted-key order.
    names = [OUTPUT_NAME, SCORES_NAME][: len(frozen.outputs)]

    @tf.function(input_signature=[tf.TensorSpec(inputs.shape, inputs.dtype, INPUT_NAME)])
    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return dict(zip(names, tf.nest.flatten(frozen(images)), strict=True))

    return serve.get_concrete_function()


def _converter(frozen) -> tf.lite.TFLiteConverter:
    # An empty trackable: the frozen function has no variables, and passing one keeps the
    # converter on its current code path (None is deprecated).
    return tf.lite.TFLiteConverter.from_concrete_functions([named_outputs(frozen)], tf.Module())


def convert_float(frozen) -> bytes:
    """Float32 TFLite flatbuffer of the frozen deploy function.

    Raises:
      TFLiteConversionError: the conversion failed.
    """
    try:
        return _converter(frozen).convert()
    except Exception as error:  # the converter raises several unrelated types
        raise TFLiteConversionError(f"float32 TFLite conversion failed: {error}") from error


def convert_int8(frozen, calibration_images: Callable[[], Iterable[np.ndarray]]) -> bytes:
    """Full-integer post-training quantized TFLite flatbuffer.

    Args:
      frozen: the frozen deploy function (uint8 [N, H, W, 3] in).
      calibration_images: returns an iterable of uint8 [1, H, W, 3] arrays at the export size.

    Raises:
      TFLiteConversionError: no calibration images, or an op has no int8 kernel (the
        converter's message names it).
    """
    converter = _converter(frozen)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    count = 0

    def representative_dataset():
        nonlocal count
        for image in calibration_images():
            count += 1
            yield [np.asarray(image, dtype=np.uint8)]

    converter.representative_dataset = representative_dataset
    # Int8 builtins only; ops without an int8 kernel are reported by float_ops().
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    try:
        model = converter.convert()
    except Exception as error:
        raise TFLiteConversionError(
            "int8 TFLite conversion failed; some op of the graph has no int8 kernel or could not "
            f"be calibrated. Leave tflite_int8 out of --formats to export the rest. Converter: "
            f"{error}"
        ) from error
    if count == 0:
        raise TFLiteConversionError(
            "int8 TFLite conversion got no calibration images: the eval records are empty."
        )
    logging.info("int8 TFLite model calibrated on %d image(s).", count)
    return model


def convert_int8_from_ranges(frozen) -> bytes:
    """Int8 TFLite flatbuffer of a deploy graph trained with quantization-aware training.

    The graph's ``FakeQuantWithMinMaxVars*`` ops carry the trained ranges, so no calibration
    images are needed: weights are quantized per channel from the fake-quantized kernels and
    every activation with its trained range. Ops outside the fake-quant placement (the
    image preprocessing before the first quantized tensor, ICNet's ``ADD_N``) stay in float
    between a dequantize and a quantize; :func:`float_ops` lists them.

    Args:
      frozen: the frozen deploy function traced with the quantizers active.

    Raises:
      TFLiteConversionError: the converter rejected the graph.
    """
    converter = _converter(frozen)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    try:
        model = converter.convert()
    except Exception as error:  # the converter raises several unrelated types
        raise TFLiteConversionError(
            f"int8 TFLite conversion from the trained ranges failed: {error}"
        ) from error
    logging.info("int8 TFLite model converted from quantization-aware-training ranges.")
    return model


def make_interpreter(model: bytes | str, num_threads: int | None = None, delegates: bool = True):
    """A TFLite interpreter for a flatbuffer (bytes) or a ``.tflite`` path, tensors allocated.

    Uses ``ai_edge_litert`` when installed, else ``tf.lite.Interpreter`` (whose deprecation
    warning is silenced: it still works in TF 2.21 and is what this project's tests run); the
    undelegated one is always ``tf.lite.Interpreter``.

    Args:
      model: flatbuffer bytes or a file path.
      num_threads: interpreter threads (None: its default).
      delegates: apply the default delegate (XNNPACK); without it the op list is the model's.
    """
    kwargs = {"model_content": model} if isinstance(model, bytes) else {"model_path": model}
    Interpreter = None
    if delegates:
        try:
            from ai_edge_litert.interpreter import Interpreter  # optional package
        except ImportError:
            pass
    if Interpreter is not None:
        interpreter = Interpreter(num_threads=num_threads, **kwargs)
    else:
        if not delegates:
            kwargs["experimental_op_resolver_type"] = (
                tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            interpreter = tf.lite.Interpreter(num_threads=num_threads, **kwargs)
    interpreter.allocate_tensors()
    return interpreter


def tensor_detail(interpreter, name: str = OUTPUT_NAME) -> dict:
    """The detail dict of a signature input or output by name (``inputs``, ``predictions``,
    ``scores``); a model exported before the names were set has one input and one output
    (``output_0``), which are returned for ``inputs`` and ``predictions``."""
    signatures = interpreter.get_signature_list()
    if SIGNATURE_KEY in signatures:
        runner = interpreter.get_signature_runner(SIGNATURE_KEY)
        for details in (runner.get_input_details(), runner.get_output_details()):
            if name in details:
                return details[name]
    if name == INPUT_NAME:
        return interpreter.get_input_details()[0]
    return interpreter.get_output_details()[0]


def run_interpreter(interpreter, images: np.ndarray) -> np.ndarray:
    """Runs a deploy-graph interpreter on uint8 [1, H, W, 3] images; returns ``predictions``."""
    interpreter.set_tensor(
        tensor_detail(interpreter, INPUT_NAME)["index"], np.asarray(images, dtype=np.uint8)
    )
    interpreter.invoke()
    return interpreter.get_tensor(tensor_detail(interpreter)["index"])


def frozen_output(frozen, images: np.ndarray) -> np.ndarray:
    """Runs the frozen deploy function on uint8 [N, H, W, 3]; returns ``predictions`` as numpy."""
    outputs = frozen(tf.constant(images, tf.uint8))
    if isinstance(outputs, dict):
        outputs = outputs["predictions"]
    elif isinstance(outputs, list | tuple):
        outputs = outputs[0]
    return outputs.numpy()


def int8_report(
    int8_model: bytes, frozen, calibration_images: Callable[[], Iterable[np.ndarray]]
) -> dict:
    """How closely the int8 model follows the float graph, for the export summary.

    Args:
      int8_model: the quantized flatbuffer.
      frozen: the float frozen deploy function.
      calibration_images: as for :func:`convert_int8`; the first :data:`REPORT_IMAGES` are used.

    Returns:
      ``{"images": n, "pixel_agreement_with_float": fraction, "float_ops": ops left in float}``.
      A pixel agrees when its id (or all 3 colour channels) match.
    """
    interpreter = make_interpreter(int8_model)
    images = agree = total = 0
    for image in calibration_images():
        if images == REPORT_IMAGES:
            break
        same = (run_interpreter(interpreter, image) == frozen_output(frozen, image)).all(axis=-1)
        images += 1
        agree += int(same.sum())
        total += same.size
    report = {
        "images": images,
        "pixel_agreement_with_float": round(agree / total, 5) if total else None,
        "float_ops": float_ops(int8_model),
    }
    logging.info("int8 TFLite vs float graph: %s", report)
    if report["float_ops"]:
        logging.warning(
            "The int8 model still computes %s in float (no int8 kernel); for ICNet, "
            "mobile_ops_only: true replaces ADD_N by int8 ADDs.",
            ", ".join(report["float_ops"]),
        )
    return report


# Ops that are float by design in a uint8-in model: the input cast and the dequantize that
# feeds a float op (that op itself is what gets reported).
_BOUNDARY_OPS = ("CAST", "DEQUANTIZE")


def float_ops(model: bytes | str) -> list[str]:
    """Sorted names of the ops of a TFLite model that compute in float32.

    Runs on the undelegated model (XNNPACK would fold ops into DELEGATE nodes).
    """
    interpreter = make_interpreter(model, delegates=False)
    dtypes = {detail["index"]: detail["dtype"] for detail in interpreter.get_tensor_details()}
    names = set()
    for op in interpreter._get_ops_details():  # the only listing of ops the interpreter has
        if op["op_name"] in _BOUNDARY_OPS:
            continue
        if any(dtypes.get(index) == np.float32 for index in op["outputs"]):
            names.add(op["op_name"])
    return sorted(names)
