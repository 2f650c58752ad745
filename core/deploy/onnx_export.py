"""ONNX conversion of the frozen deploy graph (tf2onnx, opset 17).

The ONNX model has the deploy graph's interface: input ``inputs`` uint8 [N, H, W, 3], output
``predictions`` int32 [N, H, W, 1] class ids (or uint8 colours), and ``scores`` float32
[N, H, W, C] when the graph has it. ONNX Runtime, OpenVINO and TensorRT's ONNX parser read it.

Why the resizes are converted here: tf2onnx turns a ``ResizeBilinear`` of constant size into an
ONNX ``Resize`` with float32 *scales* ``new / old``, and ONNX computes the output size as
``floor(old * scale)``. ICNet's Interp sizes follow ``(n - 1) * f + 1`` (e.g. 16 -> 31), whose
ratio 31/16 is not exact in float32 for every size: at 1024x2048 ``floor(old * scale)`` lands one
pixel short, so the zoomed coarse branch of a cascade feature fusion no longer matches the fine
one and ONNX Runtime refuses the model (``CascadeFeatureFusion_1/add ... Incompatible
dimensions``). :func:`_resize_with_sizes` gives every such ``Resize`` the exact output *sizes*
instead, so the converted graph's shapes are static and equal TensorFlow's, and the trained
model's numerics are untouched (same align-corners sampling, same sizes).

Every converted model is checked before it is written: no op left unconverted (tf2onnx
otherwise keeps going and writes a model no runtime loads) and strict ONNX shape inference.
"""

from __future__ import annotations

import contextlib
import logging as python_logging
from collections.abc import Iterator

import numpy as np
from absl import logging

from core.deploy.deploy_graph import INPUT_NAME, OUTPUT_NAME, SCORES_NAME

OPSET = 17
ONNX_NAME = "model.onnx"
# Ops tf2onnx leaves in its TensorFlow domain when it cannot convert them.
_TF_DOMAIN = "ai.onnx.converters.tensorflow"
_NHWC_TO_NCHW = [0, 3, 1, 2]
_NCHW_TO_NHWC = [0, 2, 3, 1]


class OnnxConversionError(RuntimeError):
    """tf2onnx could not convert the graph into a valid ONNX model; the message says why."""


def require_tf2onnx():
    """The ``tf2onnx`` module, or an :class:`OnnxConversionError` saying how to install it."""
    try:
        import tf2onnx  # optional dependency: only the onnx format needs it
    except ImportError as error:
        raise OnnxConversionError(
            f"the onnx export format needs tf2onnx ({error}); install it with "
            "`pip install -r requirements-dev.txt` or `pip install .[onnx]`, or leave onnx out "
            "of --formats."
        ) from None
    return tf2onnx


@contextlib.contextmanager
def _quiet_converter() -> Iterator[None]:
    """Hides tf2onnx's per-op INFO lines and TF's deprecation notices; errors still show."""
    from tensorflow.python.util import deprecation  # the TF1 APIs tf2onnx calls log notices

    logger = python_logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(python_logging.ERROR)
    try:
        with deprecation.silence():
            yield
    finally:
        logger.setLevel(level)


def _resize_with_sizes(ctx, node, name, args) -> None:
    """tf2onnx handler of ``ResizeBilinear``/``ResizeNearestNeighbor`` with exact output sizes.

    The NHWC TensorFlow op becomes ``Transpose -> Resize(sizes) -> Transpose``: ``sizes`` is
    the constant ``[N, C, new_h, new_w]`` when N and C are known, else ``Shape(x)[:2]``
    followed by the constant ``[new_h, new_w]``. A size computed at run time (any-size graphs)
    keeps tf2onnx's own conversion, which already uses sizes.
    """
    del name, args
    from tf2onnx import utils
    from tf2onnx.onnx_opset.nn import Resize

    if not node.inputs[1].is_const():
        Resize.version_11(ctx, node)
        return
    new_h, new_w = (int(v) for v in node.inputs[1].get_tensor_value())
    shape = ctx.get_shape(node.input[0]) or [-1, -1, -1, -1]
    nchw = ctx.make_node("Transpose", [node.input[0]], {"perm": _NHWC_TO_NCHW})
    spatial = np.array([new_h, new_w], dtype=np.int64)
    if shape[0] > 0 and shape[3] > 0:
        sizes = ctx.make_const(
            utils.make_name("sizes"), np.array([shape[0], shape[3], new_h, new_w], np.int64)
        ).output[0]
    else:
        dims = ctx.make_node("Shape", [nchw.output[0]])
        start = ctx.make_const(utils.make_name("start"), np.array([0], np.int64))
        stop = ctx.make_const(utils.make_name("stop"), np.array([2], np.int64))
        leading = ctx.make_node("Slice", [dims.output[0], start.output[0], stop.output[0]])
        tail = ctx.make_const(utils.make_name("spatial"), spatial)
        sizes = ctx.make_node("Concat", [leading.output[0], tail.output[0]], {"axis": 0}).output[0]
    empty = ctx.make_const(utils.make_name("empty"), np.array([], np.float32)).output[0]
    align = "align_corners" in node.attr and node.attr["align_corners"].i
    half_pixel = "half_pixel_centers" in node.attr and node.attr["half_pixel_centers"].i
    bilinear = node.type == "ResizeBilinear"
    if align:
        mode, nearest = "align_corners", "round_prefer_ceil"
    elif half_pixel:
        mode, nearest = ("half_pixel" if bilinear else "tf_half_pixel_for_nn"), "round_prefer_ceil"
    else:
        mode, nearest = "asymmetric", "floor"
    resize = ctx.make_node(
        "Resize",
        [nchw.output[0], empty, empty, sizes],
        attr={
            "mode": "linear" if bilinear else "nearest",
            "coordinate_transformation_mode": mode,
            "nearest_mode": nearest,
        },
    )
    shapes, dtypes = node.output_shapes, node.output_dtypes
    ctx.remove_node(node.name)
    ctx.make_node(
        "Transpose",
        resize.output,
        {"perm": _NCHW_TO_NHWC},
        name=node.name,
        outputs=node.output,
        shapes=shapes,
        dtypes=dtypes,
    )


def _output_names(graph_def) -> list[str]:
    """The deploy graph's output nodes present in ``graph_def``: predictions, then scores."""
    names = {node.name for node in graph_def.node}
    if INPUT_NAME not in names or OUTPUT_NAME not in names:
        raise OnnxConversionError(
            f"the graph has no {INPUT_NAME!r} or {OUTPUT_NAME!r} node; convert the frozen "
            "deploy graph that export.py builds."
        )
    return [name for name in (OUTPUT_NAME, SCORES_NAME) if name in names]


def convert(frozen, opset: int = OPSET) -> bytes:
    """Serialized ONNX model of the frozen deploy function (fixed or any input size).

    Args:
      frozen: the frozen deploy function (``core.deploy.deploy_graph.freeze``): ``inputs``
        uint8 [N, H, W, 3] -> ``predictions`` (and optionally ``scores``).
      opset: the ONNX opset (17: what ONNX Runtime, OpenVINO and TensorRT 8.6+ all read).

    Returns:
      The ``ModelProto`` bytes, with graph input ``inputs`` and outputs ``predictions``
      (and ``scores``).

    Raises:
      OnnxConversionError: tf2onnx missing, an op it cannot convert (named), or a model that
        fails ONNX's checker or strict shape inference.
    """
    tf2onnx = require_tf2onnx()
    graph_def = frozen.graph.as_graph_def()
    outputs = _output_names(graph_def)
    renames = {f"{name}:0": name for name in [INPUT_NAME, *outputs]}
    handler = (_resize_with_sizes, [])
    try:
        with _quiet_converter():
            model, _ = tf2onnx.convert.from_graph_def(
                graph_def,
                name="deploy_graph",
                input_names=[f"{INPUT_NAME}:0"],
                output_names=[f"{name}:0" for name in outputs],
                opset=opset,
                custom_op_handlers={
                    "ResizeBilinear": handler,
                    "ResizeNearestNeighbor": handler,
                },
                tensors_to_rename=renames,
            )
    except Exception as error:  # tf2onnx raises many unrelated types
        raise OnnxConversionError(f"tf2onnx failed to convert the deploy graph: {error}") from error
    check(model)
    logging.info(
        "ONNX model (opset %d): %d nodes, outputs %s.", opset, len(model.graph.node), outputs
    )
    return model.SerializeToString()


def check(model) -> None:
    """Raises :class:`OnnxConversionError` unless ``model`` is complete and shape-consistent.

    Args:
      model: an ``onnx.ModelProto``.
    """
    import onnx

    left = sorted({node.op_type for node in model.graph.node if node.domain == _TF_DOMAIN})
    if left:
        raise OnnxConversionError(
            f"tf2onnx could not convert the TensorFlow op(s) {', '.join(left)} to ONNX opset "
            f"{OPSET}; leave onnx out of --formats."
        )
    try:
        onnx.checker.check_model(model)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as error:  # onnx raises checker and inference errors
        raise OnnxConversionError(
            f"the converted ONNX model is invalid (its shapes would be refused by ONNX "
            f"Runtime): {error}"
        ) from error
