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


def resolve_scopes(names: Iterable[str], segments: Sequence[str], model_name: str) -> tuple:
    """Maps segment names or the original's checkpoint-node names to segments.

    A name selects the segment it equals or lies under (``.../block1/unit_3/bottleneck_v1/Relu``
    selects ``.../block1``; ``CascadeFeatureFusion/Relu`` selects ``CascadeFeatureFusion``); the
    longest matching segment wins.

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
        matches = [s for s in segments if name == s or name.startswith(s + "/")]
        if not matches:
            unknown.append(name)
            continue
        selected.add(max(matches, key=len))
    if unknown:
        raise ValueError(
            f"--checkpoint_nodes: {', '.join(repr(n) for n in unknown)} is not a recomputable "
            f"segment of {model_name} (nor a node inside one). Valid segments: "
            f"{', '.join(segments) or 'none'}."
        )
    return tuple(s for s in segments if s in selected)
