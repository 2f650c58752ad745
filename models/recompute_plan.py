"""Choosing what to recompute by measurement: activation bytes per step, then a plan.

A model exposes *chains* of recomputable steps (``SegmentationModel.recompute_chains``: the ResNet
root, each bottleneck unit, the fast PSP module, each conv of ICNet's full-resolution branch,
each CFF unit). :func:`profile` traces one training-mode forward pass and measures, for every
step, the bytes of the float tensors its ops create (``internal``: what backprop may keep alive)
and of its result (``output``: what a recomputed step still keeps). The rest of the graph (the
resizes, the classifiers) is ``other``.

Two plans use the measurement:

- :func:`measured_groups`: recompute, one by one, the steps
  whose saving (``internal - output``) is largest, until ``share`` of the whole possible saving
  is reached. Single steps keep the largest activation that backprop rebuilds at once small (a
  recomputed segment's internals are all alive while its gradient is taken), and skipping the
  steps that hold little memory (the dilated blocks at 1/32 of the input in ICNet) saves
  recomputation time.
- :func:`sqrt_groups` (Chen et al. 2016, "Training deep nets with sublinear memory cost"):
  every step is recomputed, in runs whose internal bytes stay under ``total / sqrt(n)``; with n
  steps of similar cost that is about sqrt(n) runs of sqrt(n) steps, so what is kept (one output
  per run) and what is rebuilt at once (one run) are both O(sqrt(n)). This is
  ``train_mem_saving.py``'s default.

Where the memory goes (ICNet 1.0, 713x713, batch 2, float32; issue 15): the steps' forward
tensors total 1,238 MiB, ``other`` only 79 MiB (mostly the 62.6 MiB bilinear x2 resize in front
of ``Predictions/Conv``; the losses see 1/4-resolution logits, 4.9 MiB each, so the softmax and
aux losses are small). The largest single steps are the full-resolution branch's ``Conv``
(187 MiB: the conv, the fused batch norm and the ReLU6 outputs at 357x357x64, 62 MiB each),
``CascadeFeatureFusion_1`` (159 MiB) and ``block1/unit_1`` (119 MiB). A recomputed run is
rebuilt whole while its gradient is taken, so the step's peak is what is kept plus the largest
rebuild, and the backbone and the full branch are rebuilt concurrently when the executor
interleaves them (hence run-to-run spread of the peak). Batch norm as the Keras layer computes
it (separate moment and normalisation ops) made the forward 1.9 GB and ``Conv`` 311 MiB;
``models.layers.conv_bn`` now runs it as one fused op. The
weight gradients (103 MiB) used to be all alive at the end of backprop because Keras's replica
all-reduce joins them; ``core.training.optimizers.TF1MomentumOptimizer`` skips it with one
replica, so each is freed once applied. Measured figures are in docs/benchmarks.md.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import tensorflow as tf

from models import recompute


@dataclasses.dataclass(frozen=True)
class StepCost:
    """Activation bytes of one step of a training-mode forward pass.

    Attributes:
      scope: the step, e.g. ``SharedFeatureExtractor/resnet_v1_50/block1/unit_2`` or ``Conv``.
      internal_bytes: float tensors its ops create (its output included).
      output_bytes: its output, kept when it is recomputed.
    """

    scope: str
    internal_bytes: int
    output_bytes: int

    @property
    def saving_bytes(self) -> int:
        """What recomputing the step alone frees."""
        return max(self.internal_bytes - self.output_bytes, 0)


@dataclasses.dataclass(frozen=True)
class Profile:
    """Step costs, in model order, and the forward pass's total float bytes."""

    steps: tuple[StepCost, ...]
    total_bytes: int

    @property
    def other_bytes(self) -> int:
        """Bytes outside every step (resizes, classifiers, preprocessing)."""
        return self.total_bytes - sum(step.internal_bytes for step in self.steps)


def profile(model, batch_size: int, height: int, width: int) -> Profile:
    """Traces ``model``'s training forward pass on [batch_size, height, width, 3] and measures.

    Nothing runs: the pass is only traced into a graph, whose static shapes give the bytes.
    The model's current recompute selection is left unchanged.

    Args:
      model: a built ``SegmentationModel``.
      batch_size, height, width: the input batch.

    Returns:
      The :class:`Profile`.
    """
    recompute._profile = []
    try:
        traced = tf.function(lambda images: model(images, training=True, include_aux=True))
        graph = traced.get_concrete_function(
            tf.TensorSpec([batch_size, height, width, 3], tf.float32)
        ).graph
        costs = recompute._profile
    finally:
        recompute._profile = None
    skipped = ("Const", "ReadVariableOp", "VarHandleOp", "Placeholder", "Identity")
    total = sum(
        recompute._tensor_bytes(t)
        for op in graph.get_operations()
        if op.type not in skipped
        for t in op.outputs
    )
    return Profile(tuple(StepCost(*cost) for cost in costs), total)


def measured_groups(
    costs: Sequence[StepCost], chains: Sequence[Sequence[str]], share: float = 0.9
) -> tuple[tuple[str, ...], ...]:
    """Single steps with the largest savings, until ``share`` of the total saving is covered.

    Args:
      costs: the profile's steps.
      chains: the model's chains (only their steps are considered).
      share: in (0, 1]; 1 recomputes every step that saves anything.

    Returns:
      One-step groups, in model order.
    """
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}.")
    steps = {scope for chain in chains for scope in chain}
    candidates = sorted(
        (cost for cost in costs if cost.scope in steps and cost.saving_bytes > 0),
        key=lambda cost: -cost.saving_bytes,
    )
    goal = share * sum(cost.saving_bytes for cost in candidates)
    chosen, covered = set(), 0
    for cost in candidates:
        if covered >= goal:
            break
        chosen.add(cost.scope)
        covered += cost.saving_bytes
    order = [scope for chain in chains for scope in chain]
    return tuple((scope,) for scope in order if scope in chosen)


def sqrt_groups(
    costs: Sequence[StepCost], chains: Sequence[Sequence[str]]
) -> tuple[tuple[str, ...], ...]:
    """Chen et al.'s sqrt(n) segmentation: runs of at most ``total / sqrt(n)`` internal bytes.

    Args:
      costs: the profile's steps (a step missing from it counts 0 bytes).
      chains: the model's chains; a run never crosses a chain's end.

    Returns:
      Runs of consecutive steps covering every step of every chain.
    """
    internal = {cost.scope: cost.internal_bytes for cost in costs}
    steps = [scope for chain in chains for scope in chain]
    if not steps:
        return ()
    budget = sum(internal.get(scope, 0) for scope in steps) / math.sqrt(len(steps))
    groups = []
    for chain in chains:
        run, used = [], 0
        for scope in chain:
            size = internal.get(scope, 0)
            if run and used + size > budget:
                groups.append(tuple(run))
                run, used = [], 0
            run.append(scope)
            used += size
        if run:
            groups.append(tuple(run))
    return tuple(groups)


PLANS = ("measured", "sqrt", "original")


def plan_groups(
    model, plan: str, input_size: tuple[int, int] = (257, 257)
) -> tuple[tuple[str, ...], ...]:
    """The groups of ``plan`` for ``model``, profiled at batch 1 and ``input_size``.

    The bytes of every step scale with the input's area alike, so the choice made at a small
    size holds at the training crop.

    Args:
      model: a built ``SegmentationModel``.
      plan: ``measured``, ``sqrt`` or ``original`` (each backbone block and the head's segments).
      input_size: (height, width) traced.

    Raises:
      ValueError: an unknown plan.
    """
    chains = model.recompute_chains()
    if plan == "original":
        model.set_recompute_scopes(model.default_recompute_scopes())
        return tuple(sorted(model.recompute_groups, key=_order(chains)))
    if plan not in PLANS:
        raise ValueError(f"unknown recompute plan {plan!r}; use one of {', '.join(PLANS)}.")
    costs = profile(model, 1, *input_size).steps
    return measured_groups(costs, chains) if plan == "measured" else sqrt_groups(costs, chains)


def _order(chains: Sequence[Sequence[str]]):
    position = {scope: i for i, scope in enumerate(s for chain in chains for s in chain)}
    return lambda group: position.get(group[0], -1)
