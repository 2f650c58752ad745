"""FLOPs and parameters of a model at a given input size, counted as the original's model zoo.

The original printed tfprof's ``float_ops`` of its exported inference graph (image -> preprocess
-> predict -> argmax), trimming nodes whose names match ``BatchNorm``, ``Initializer``,
``Regularizer`` and ``BiasAdd``. tfprof counts, per op (``tensorflow/python/profiler``):

  Conv2D                 2 * kh * kw * c_in per output element (a multiply-add is 2 FLOPs)
  DepthwiseConv2dNative  2 * kh * kw per output element
  MatMul                 2 * k per output element
  Add/AddV2/Sub/Mul/...  1 per output element;  AddN: (n - 1) per element;  Rsqrt: 2
  AvgPool/MaxPool        kh * kw per output element
  ArgMax/Sum             input elements - output elements;  Mean: input elements
  everything else        0 (ReLU, ReLU6, ResizeBilinear, Pad, SpaceToBatchND, ...)

:func:`count_graph_flops` applies the same rules to a traced graph, so no tf.compat.v1
profiler session is needed; :func:`compute_flops` traces the model's inference function at
``[batch, height, width, 3]`` (shape inference only, nothing runs) and counts it.

TF runs a dilated conv as SpaceToBatchND -> Conv2D -> BatchToSpaceND, and the Conv2D works on
blocks padded to a multiple of the rate, so tfprof counts the padding too. The original did the
same, and this is part of the zoo numbers (``dilation_padding_flops`` reports the share).
See docs/models.md, "FLOPs", for how the zoo numbers are reproduced.

CLI (a config's model): ``python -m runners.flops --config_path configs/x.config --input_size
1025,2049``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from core.checkpoints import checkpoint_utils
from models import outputs

# tfprof trim regexes of the original's exporter (matched on op names and types here).
TRIM_NAME_REGEXES = ("BatchNorm", "Initializer", "Regularizer", "BiasAdd")
ZOO_INPUT_SIZE = (1025, 2049)

_ELEMENTWISE = frozenset(
    {
        "Add",
        "AddV2",
        "Sub",
        "Mul",
        "RealDiv",
        "Maximum",
        "Minimum",
        "Pow",
        "SquaredDifference",
        "Greater",
        "GreaterEqual",
        "Less",
        "LessEqual",
        "Equal",
        "NotEqual",
    }
)
_UNARY = frozenset({"Reciprocal", "Square", "Rsqrt", "Log", "Neg"})


@dataclasses.dataclass(frozen=True)
class FlopsReport:
    """FLOPs of one inference pass, tfprof's convention (see the module docstring).

    Attributes:
      input_size: (height, width) of the traced input.
      batch_size: batch of the traced input.
      total_flops: FLOPs counted, after trimming.
      flops_by_op_type: ``{op type: FLOPs}``, largest first; sums to ``total_flops``.
      trimmed_flops: FLOPs of the trimmed nodes (BatchNorm arithmetic, bias adds), not in the
        total: BN folds into the convs at export and the zoo left both out.
      dilation_padding_flops: the part of ``total_flops`` that dilated convs spend on the padding
        of their space-to-batch blocks (0 for an implementation with native dilation).
      params: ``model.count_parameters()`` (the zoo convention: no BN, no aux heads).
    """

    input_size: tuple[int, int]
    batch_size: int
    total_flops: int
    flops_by_op_type: dict[str, int]
    trimmed_flops: int
    dilation_padding_flops: int
    params: int

    @property
    def gflops(self) -> float:
        """``total_flops`` in billions, as the zoo's "B"."""
        return self.total_flops / 1e9

    def summary(self) -> str:
        """A few lines: totals, then FLOPs per op type."""
        height, width = self.input_size
        lines = [
            f"input {self.batch_size}x{height}x{width}x3: {self.gflops:.2f}B FLOPs "
            f"(multiply-add = 2), {self.params / 1e6:.2f}M parameters",
            f"  trimmed (BatchNorm, BiasAdd): {self.trimmed_flops / 1e9:.3f}B; dilated-conv "
            f"padding included in the total: {self.dilation_padding_flops / 1e9:.3f}B",
        ]
        for op_type, flops in self.flops_by_op_type.items():
            lines.append(f"  {op_type:<24}{flops / 1e9:12.3f}B")
        return "\n".join(lines)


def _elements(tensor: tf.Tensor, op: tf.Operation) -> int:
    shape = tensor.shape
    if not shape.is_fully_defined():
        raise ValueError(
            f"op {op.name} ({op.type}) has a tensor of unknown shape {shape}; FLOPs need a fully "
            "static graph: trace with a fixed batch size and input size."
        )
    return int(np.prod(shape.as_list(), dtype=np.int64))


def op_flops(op: tf.Operation) -> int:
    """FLOPs of one graph op under tfprof's rules; 0 for ops it does not count.

    Raises:
      ValueError: a counted op has a tensor of unknown shape.
    """
    kind = op.type
    if kind == "Conv2D":
        kh, kw, c_in, _ = op.inputs[1].shape.as_list()
        return 2 * kh * kw * c_in * _elements(op.outputs[0], op)
    if kind == "DepthwiseConv2dNative":
        kh, kw = op.inputs[1].shape.as_list()[:2]
        return 2 * kh * kw * _elements(op.outputs[0], op)
    if kind == "MatMul":
        a_shape = op.inputs[0].shape.as_list()
        k = a_shape[0] if op.get_attr("transpose_a") else a_shape[1]
        return 2 * k * _elements(op.outputs[0], op)
    if kind in ("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"):
        a_shape = op.inputs[0].shape.as_list()
        k = a_shape[-2] if op.get_attr("adj_x") else a_shape[-1]
        return 2 * k * _elements(op.outputs[0], op)
    if kind == "BiasAdd" or kind in _UNARY:
        per_element = 2 if kind == "Rsqrt" else 1  # tfprof: 1 / sqrt(x) is two operations
        return per_element * _elements(op.inputs[0], op)
    if kind == "Softmax":
        return 5 * _elements(op.inputs[0], op)
    if kind in _ELEMENTWISE:
        return _elements(op.outputs[0], op)
    if kind == "AddN":
        return _elements(op.inputs[0], op) * (len(op.inputs) - 1) if op.inputs else 0
    if kind in ("AvgPool", "MaxPool"):
        return int(np.prod(op.get_attr("ksize"))) * _elements(op.outputs[0], op)
    if kind == "Mean":
        return _elements(op.inputs[0], op)
    if kind in ("Sum", "ArgMax", "ArgMin"):
        return _elements(op.inputs[0], op) - _elements(op.outputs[0], op)
    return 0


def _dilation_padding(op: tf.Operation, counted: int) -> int:
    """FLOPs a space-to-batch Conv2D spends outside the logical output (0 for other ops)."""
    if op.type != "Conv2D" or op.inputs[0].op.type != "SpaceToBatchND":
        return 0
    for consumer in op.outputs[0].consumers():
        if consumer.type == "BatchToSpaceND":
            kh, kw, c_in, _ = op.inputs[1].shape.as_list()
            return counted - 2 * kh * kw * c_in * _elements(consumer.outputs[0], consumer)
    return 0


def _ops_fed_by(tensors: Sequence[tf.Tensor]) -> set[tf.Operation]:
    """Every op whose result depends on one of ``tensors`` (their consumers, transitively)."""
    seen: set[tf.Operation] = set()
    pending = [consumer for tensor in tensors for consumer in tensor.consumers()]
    while pending:
        op = pending.pop()
        if op in seen:
            continue
        seen.add(op)
        pending.extend(consumer for output in op.outputs for consumer in output.consumers())
    return seen


def count_graph_flops(
    graph: tf.Graph,
    trim_name_regexes: Sequence[str] = TRIM_NAME_REGEXES,
    inputs: Sequence[tf.Tensor] | None = None,
) -> tuple[dict[str, int], int, int]:
    """Counts the FLOPs of every op of a graph, tfprof-style.

    Args:
      graph: a graph with static shapes (e.g. a concrete function's ``.graph``).
      trim_name_regexes: ops whose name or type matches one of these (``re.search``) are left
        out of the count, as the original's tfprof ``trim_name_regexes`` intended. Matching the
        type too catches bias adds whatever their name.
      inputs: when given, only ops that depend on these tensors (the images) are counted. Ops
        on weights alone, such as the batch-norm folding of ``ConvBN`` (kernel x scale), run
        once per model, not per image: in an exported graph they are constant-folded.

    Returns:
      ``({op type: FLOPs}`` of the counted ops, largest first, ``trimmed FLOPs``,
      ``dilation padding FLOPs`` (included in the counted ones)).
    """
    trim = re.compile("|".join(f"(?:{pattern})" for pattern in trim_name_regexes) or "(?!)")
    by_type: dict[str, int] = {}
    trimmed = 0
    padding = 0
    per_image = None if inputs is None else _ops_fed_by(inputs)
    for op in graph.get_operations():
        if per_image is not None and op not in per_image:
            continue
        flops = op_flops(op)
        if not flops:
            continue
        if trim.search(op.name) or trim.search(op.type):
            trimmed += flops
            continue
        by_type[op.type] = by_type.get(op.type, 0) + flops
        padding += _dilation_padding(op, flops)
    ordered = dict(sorted(by_type.items(), key=lambda item: (-item[1], item[0])))
    return ordered, trimmed, padding


def inference_graph(
    model, input_size: Sequence[int], batch_size: int = 1, include_postprocess: bool = True
) -> tf.Graph:
    """Traces preprocess -> predict (eval) [-> argmax] at a fixed size; nothing is executed.

    Args:
      model: a ``SegmentationModel``; its variables are created (small pass) if needed.
      input_size: (height, width) of the input images.
      batch_size: batch of the traced input.
      include_postprocess: end with ``postprocess`` (resize to the input size and argmax), as
        the original's exported graph did.

    Returns:
      The traced graph, with static shapes.
    """
    height, width = (int(n) for n in input_size)
    if height < 1 or width < 1 or batch_size < 1:
        raise ValueError(
            f"input_size and batch_size must be positive, got {input_size}, {batch_size}."
        )
    checkpoint_utils.ensure_named_variables(model)  # variables must exist before tracing

    @tf.function(autograph=False)
    def inference(images: tf.Tensor) -> tf.Tensor:
        logits = model.predict(model.preprocess(images), training=False)[outputs.LOGITS]
        if include_postprocess:
            return model.postprocess(logits, (height, width))
        return logits

    spec = tf.TensorSpec([batch_size, height, width, 3], tf.float32)
    return inference.get_concrete_function(spec).graph


def compute_flops(
    model,
    input_size: Sequence[int] = ZOO_INPUT_SIZE,
    batch_size: int = 1,
    include_postprocess: bool = True,
) -> FlopsReport:
    """FLOPs (tfprof convention) and parameters (zoo convention) of one inference pass.

    With the original's dilation (``atrous_rates=(4, 16)``) at 1025x2049 this gives the model
    zoo's numbers: ICNet 1.0 246.94B, ICNet 0.5 63.19B, PSPNet50 2942.58B (docs/models.md).

    Args:
      model: a ``SegmentationModel``.
      input_size: (height, width); the zoo used 1025x2049 (1024x2048 padded by one pixel).
      batch_size: batch of the traced input; FLOPs scale linearly with it.
      include_postprocess: count the final resize and argmax as the exported graph did.

    Returns:
      A :class:`FlopsReport`.
    """
    graph = inference_graph(model, input_size, batch_size, include_postprocess)
    images = [tensor for tensor in graph.inputs if tensor.dtype == tf.float32][:1]
    by_type, trimmed, padding = count_graph_flops(graph, inputs=images)
    return FlopsReport(
        input_size=(int(input_size[0]), int(input_size[1])),
        batch_size=batch_size,
        total_flops=sum(by_type.values()),
        flops_by_op_type=by_type,
        trimmed_flops=trimmed,
        dilation_padding_flops=padding,
        params=model.count_parameters(),
    )
