"""Gradient checkpointing of named sub-blocks with ``tf.recompute_grad``.

The original's ``train_mem_saving.py`` kept a few named activations ("checkpoint nodes", e.g. the
last ReLU of each ResNet block) and recomputed everything between them during backprop (OpenAI's
memory-saving gradients). Here each *segment* (a ResNet block, the pyramid pooling module, a CFF
unit) can be run under ``tf.recompute_grad``: its inputs and outputs are kept, the activations
inside it are dropped after the forward pass and recomputed when its gradient is needed. Naming
the original's node at a segment's end selects that segment, so the same memory/compute trade-off
is made. Gradients are unchanged.

Batch norm needs one precaution: the recomputation reruns the segment in training mode, which would
update the BN moving statistics a second time. The rerun is therefore done inside a Keras
``StatelessScope``, which discards variable assignments, so the statistics move exactly once per
step, as without checkpointing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import keras
import tensorflow as tf

# A recomputed run of consecutive steps of one chain, named by the steps' scopes.
Group = tuple[str, ...]
# (scope, fn): one step of a chain; ``fn`` maps a tensor to a tensor.
Step = tuple[str, Callable[[tf.Tensor], tf.Tensor]]

# While a profile is recorded (see models.recompute_plan), (scope, internal bytes, output bytes)
# of every step traced; None otherwise.
_profile: list[tuple[str, int, int]] | None = None


def run_segment(fn: Callable[..., object], *inputs: tf.Tensor, recompute: bool = True):
    """Runs ``fn(*inputs)``, optionally recomputing its activations during backprop.

    Args:
      fn: the segment; takes tensors, returns a tensor or a tuple of tensors, and reads (but does
        not create) variables. Python values such as ``training`` go in through a closure.
      *inputs: float tensors, e.g. [batch, height, width, channels].
      recompute: False just calls ``fn``.

    Returns:
      What ``fn`` returns.
    """
    if not recompute:
        return fn(*inputs)
    # The first call of `segment` is the forward pass; any later one is the recomputation made
    # while the gradient is taken, after this function has returned.
    state = {"forward": True}

    def segment(*args):
        if state["forward"]:
            return fn(*args)
        with keras.StatelessScope():
            return fn(*args)

    result = tf.recompute_grad(segment)(*inputs)
    state["forward"] = False
    return result


def _tensor_bytes(tensor: tf.Tensor) -> int:
    if not tensor.dtype.is_floating or not tensor.shape.is_fully_defined():
        return 0
    return tensor.shape.num_elements() * tensor.dtype.size


def call_step(scope: str, fn: Callable[..., object], *inputs: tf.Tensor, recompute: bool = False):
    """``run_segment(fn, *inputs)``, recording the step's activation bytes while profiling.

    While :mod:`models.recompute_plan` traces a profile, nothing is recomputed and the float
    tensors created by the step's ops are summed: ``internal`` is every such tensor (what
    backprop may keep), ``output`` the step's result (what a recomputed step still keeps).
    """
    if _profile is None or tf.executing_eagerly():
        return run_segment(fn, *inputs, recompute=recompute)
    graph = tf.compat.v1.get_default_graph()
    first = len(graph.get_operations())
    result = fn(*inputs)
    skipped = ("Const", "ReadVariableOp", "VarHandleOp", "Placeholder", "Identity")
    internal = sum(
        _tensor_bytes(t)
        for op in graph.get_operations()[first:]
        if op.type not in skipped
        for t in op.outputs
    )
    outputs = result if isinstance(result, tuple) else (result,)
    _profile.append((scope, internal, sum(_tensor_bytes(t) for t in outputs)))
    return result


def run_chain(steps: Sequence[Step], x: tf.Tensor, groups: Iterable[Group]) -> tf.Tensor:
    """Runs ``steps`` in order; each run of steps that forms a group is recomputed as one segment.

    Args:
      steps: the chain, e.g. the units of a ResNet block.
      x: the chain's input, e.g. [batch, height, width, channels].
      groups: recomputed runs; a group that is not a run of this chain is ignored.

    Returns:
      The last step's output.
    """
    by_start = {group[0]: group for group in groups}
    scopes = [scope for scope, _ in steps]
    index = 0
    while index < len(steps):
        group = by_start.get(scopes[index])
        if group and len(group) > 1 and tuple(scopes[index : index + len(group)]) == group:
            fns = [fn for _, fn in steps[index : index + len(group)]]

            def composed(y, fns=fns):
                for fn in fns:
                    y = fn(y)
                return y

            x = run_segment(composed, x)
            index += len(group)
            continue
        scope, fn = steps[index]
        x = call_step(scope, fn, x, recompute=group == (scope,))
        index += 1
    return x


def resolve_scopes(names: Iterable[str], segments: Sequence[str], model_name: str) -> tuple:
    """Maps segment names or the original's checkpoint-node names to segments.

    A name selects the segment it equals, else the outermost segment it lies under: the
    original's checkpoint nodes end a segment, so ``.../block1/unit_3/bottleneck_v1/Relu``
    selects ``.../block1`` (not its unit ``.../block1/unit_3``) and ``CascadeFeatureFusion/Relu``
    selects ``CascadeFeatureFusion``.

    Args:
      names: the requested names (empty strings are ignored).
      segments: the model's segment scopes.
      model_name: used in the error message.

    Returns:
      The selected segments, in the model's order, without duplicates.

    Raises:
      ValueError: a name matches no segment; the message lists the valid ones.
    """
    selected = set()
    unknown = []
    for name in names:
        name = name.strip().strip("/")
        if not name:
            continue
        if name in segments:
            selected.add(name)
            continue
        matches = [s for s in segments if name.startswith(s + "/")]
        if not matches:
            unknown.append(name)
            continue
        selected.add(min(matches, key=len))
    if unknown:
        raise ValueError(
            f"--checkpoint_nodes: {', '.join(repr(n) for n in unknown)} is not a recomputable "
            f"segment of {model_name} (nor a node inside one). Valid segments: "
            f"{', '.join(segments) or 'none'}."
        )
    return tuple(s for s in segments if s in selected)
