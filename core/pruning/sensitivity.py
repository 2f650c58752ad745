"""Pruning sensitivity: the mIoU a model loses when one part of it alone is pruned.

For every *unit* (below) and every keep ratio ``r``, the unit's channel groups are soft-pruned
alone, exactly as ``compress.py --soft_apply`` would prune them (summed filter L1 norms, the top
``int(n * r)`` channels kept, the others zeroed in kernel, gamma, beta and moving mean: see
:mod:`core.pruning.surgery`). The zeroing is done in place on the model's variables, the model is
scored on the first ``num_examples`` images of the eval dataset (the project's
:class:`core.evaluation.evaluator.SegmentationEvaluator`, the same confusion matrix and mIoU as
``eval.py``), and the original values are assigned back (also when the evaluation raises), so no
model is rebuilt and the forward pass is traced once.

Units (``granularity``, see :mod:`core.pruning.sensitivity_units`):

* ``group``: each channel group of the :class:`~core.pruning.dependency.ChannelGraph`, named by
  its first producer conv (a residual stage's group is its projection ``shortcut`` and every
  ``conv3``; a fusion group is a CFF unit's ``DilatedConv`` and ``Conv``).
* ``block``: the groups aggregated by where their first producer sits:

  - ``stem``: backbone convs before the first block (ResNet ``conv1``, MobileNetV2 ``Conv``);
  - ``block1`` .. ``block4``: a ResNet-50 block (its residual group and its units' inner convs);
  - ``expanded_conv_a-b``: a MobileNetV2 stage, the inverted-residual units ``a..b`` whose
    outputs share one residual channel group (with their ``expand`` convs);
  - ``FastPSPModule`` (ICNet) / ``PSPModule`` (PSPNet): the pyramid pooling module;
  - ``full_branch``: ICNet's full-resolution branch ``Conv`` .. ``Conv_3``;
  - ``CascadeFeatureFusion``, ``CascadeFeatureFusion_1``: ICNet's two fusion units.

With ``recalibrate`` (``sensitivity.py --recalibrate_bn_batches N``), every candidate's batch
norm is recalibrated after its pruning and before it is scored (the EagleEye paper's "adaptive
BN" evaluation, ECCV 2020): moving statistics sliced from the unpruned model understate what a
unit can lose before fine-tuning, and mostly measure how stale the statistics are. The
baseline is recalibrated the same way, so a drop compares like with like; every moving
statistic is restored after each candidate and at the end.

Prediction and auxiliary classifiers are never pruned, so they are no unit; groups with a
skipped conv (``skip_nodes``) are left out. Besides mIoU and its drop from the unpruned baseline
(``drop = baseline - mIoU``, positive when pruning hurts), each measurement records the
parameters the same hard prune would remove (kernels of the unit's convs and of their
consumers, zoo convention: no batch norm, no auxiliary heads). FLOPs are not counted: that needs
one graph trace per unit and ratio.

Outputs (:func:`core.pruning.sensitivity_report.write_report`): ``sensitivity.json``,
``sensitivity.csv`` (one row per unit and ratio), ``sensitivity.md`` (one row per unit) and
``sensitivity.png``. ``runners/sensitivity.py`` (what ``sensitivity.py`` runs) loads the config,
restores the checkpoint and builds the eval dataset; this module takes plain values.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from core.checkpoints import checkpoint_utils
from core.evaluation.evaluators import SegmentationEvaluator
from core.evaluation.inference import EvalForward, inference_on_dataset
from core.pruning import surgery
from core.pruning.dependency import ChannelGraph, build_channel_graph
from core.pruning.pruner import FilterPruner
from core.pruning.sensitivity_report import csv_text, markdown_table, plot, write_report
from core.pruning.sensitivity_units import (
    DEFAULT_RATIOS,
    GRANULARITIES,
    Measurement,
    SensitivityResult,
    Unit,
    check_granularity,
    make_units,
    parse_ratios,
)

__all__ = [
    "DEFAULT_RATIOS",
    "GRANULARITIES",
    "Measurement",
    "MiouScorer",
    "SensitivityResult",
    "Unit",
    "analyze",
    "build_channel_graph",
    "check_granularity",
    "csv_text",
    "make_units",
    "markdown_table",
    "parse_ratios",
    "plot",
    "write_report",
]


class MiouScorer:
    """mIoU of a model's *current* variables over an eval dataset, forward pass traced once.

    Runs the project's one evaluation loop,
    :func:`core.evaluation.inference.inference_on_dataset`, with an
    :class:`~core.evaluation.inference.EvalForward` built once (so the many scorings of an
    analysis do not retrace) and a :class:`~core.evaluation.evaluators.SegmentationEvaluator`:
    the forward pass and the confusion matrix of ``eval.py``.

    Args:
      model: a built ``SegmentationModel``.
      dataset: batches keyed by ``InputDataFields`` (an eval dataset of the data builders).
      num_classes: number of classes.
      ignore_label: ground-truth value that is not evaluated.
    """

    def __init__(self, model, dataset: tf.data.Dataset, num_classes: int, ignore_label: int):
        self._dataset = dataset
        self._evaluator = SegmentationEvaluator(num_classes, ignore_label)
        self._forward = EvalForward(model)

    def score(self) -> tuple[float, int]:
        """``(mIoU, images evaluated)``.

        Raises:
          EvaluationError: the records cannot be read, hold bad class ids, or are empty.
        """
        results = inference_on_dataset(self._forward, self._dataset, [self._evaluator])
        return float(results["miou"]), int(results["num_images"])


MOVING_STATISTICS = ("/moving_mean", "/moving_variance")


def _scopes_of(graph: ChannelGraph, groups: Sequence[str]) -> tuple[set[str], set[str]]:
    """(producer and pass-through scopes, consumer scopes) of some groups."""
    by_name = {group.name: group for group in graph.groups}
    owners, consumers = set(), set()
    for name in groups:
        owners.update(by_name[name].producers, by_name[name].passthrough)
        consumers.update(c.scope for c in by_name[name].consumers)
    return owners, consumers


def _params_removed(
    graph: ChannelGraph, masks: Mapping[str, np.ndarray], tensors: Mapping[str, np.ndarray], aux
) -> int:
    """Kernel parameters a hard prune with ``masks`` removes (no BN, no auxiliary heads)."""
    owners, consumers = _scopes_of(graph, list(masks))
    kernels = {
        f"{scope}/{leaf}": tensors[f"{scope}/{leaf}"]
        for scope in (owners | consumers) - set(aux)
        for leaf in ("weights", "depthwise_weights")
        if f"{scope}/{leaf}" in tensors
    }
    pruned = surgery.hard_prune(graph, masks, kernels)
    return sum(v.size for v in kernels.values()) - sum(v.size for v in pruned.values())


def _eta(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{seconds:02d}s"


def analyze(
    model,
    dataset: tf.data.Dataset,
    *,
    ignore_label: int,
    ratios: Sequence[float | str] = DEFAULT_RATIOS,
    granularity: str = "block",
    num_examples: int | None = None,
    skip_scopes: Sequence[str] = (),
    recalibrate: Callable[[], int] | None = None,
) -> SensitivityResult:
    """Prunes each unit alone at each ratio and scores it; the model is left as it was.

    Args:
      model: a built model holding the trained weights, implementing the contract's pruning
        structure (``declare_channels``, ``pruning_units``).
      dataset: eval batches keyed by ``InputDataFields`` (padded eval images, labels, sizes).
      ignore_label: ground-truth value that is not scored.
      ratios: keep ratios in (0, 1] (fraction of filters kept).
      granularity: ``block`` or ``group`` (module docstring).
      num_examples: batches of ``dataset`` to score (one image each); None scores them all.
      skip_scopes: conv scopes never pruned (their groups are left out).
      recalibrate: None, or ``() -> images used`` that recalibrates ``model``'s batch norm in
        place (e.g. ``recalibrate_batch_norm`` over the same training batches on every call);
        called before the baseline and each candidate are scored.

    Returns:
      A :class:`SensitivityResult`.

    Raises:
      ValueError: bad ratios, granularity, num_examples or skip scope; EvaluationError.
    """
    started = time.perf_counter()
    ratios = parse_ratios(ratios)
    if num_examples is not None and num_examples < 1:
        raise ValueError(f"--num_examples must be >= 1 (or unset), got {num_examples}.")
    check_granularity(granularity)
    variables = checkpoint_utils.ensure_named_variables(model)
    original = {name: variable.numpy() for name, variable in variables.items()}
    graph = build_channel_graph(model)
    masks = {}  # ratio -> {group: keep-mask}, ranked on the original weights
    for ratio in ratios:
        pruner = FilterPruner(ratio, skip_scopes=skip_scopes)
        masks[ratio], _ = pruner.compute_masks(graph, original)
    prunable = list(masks[ratios[0]])
    skipped = [group.name for group in graph.groups if group.name not in masks[ratios[0]]]
    units = make_units(model, graph, granularity, prunable)
    if not units:
        raise ValueError(
            f"every channel group of {model.name} is skipped (--skippable_nodes); nothing to "
            "analyse."
        )
    # Recalibration rewrites every moving statistic, so each candidate restores them all.
    moving = [n for n in original if n.endswith(MOVING_STATISTICS)] if recalibrate else []
    scorer = MiouScorer(
        model,
        dataset.take(num_examples) if num_examples else dataset,
        model.num_classes,
        ignore_label,
    )
    recalibration_images = 0
    try:
        if recalibrate:
            recalibration_images = int(recalibrate())
        baseline, num_images = scorer.score()
    finally:
        for name in moving:
            variables[name].assign(original[name])
    logging.info(
        "Baseline mIoU %.4f on %d images; %d %s units x %d ratios to score.",
        baseline,
        num_images,
        len(units),
        granularity,
        len(ratios),
    )
    total_params = model.count_parameters()
    aux = model.aux_scopes()
    measurements = []
    loop_start, total, done = time.perf_counter(), len(units) * len(ratios), 0
    for unit in units:
        owners, _ = _scopes_of(graph, unit.groups)
        # Kernels and batch norms of the unit's convs: all that soft pruning changes.
        names = [n for n in original if n.rpartition("/")[0].removesuffix("/BatchNorm") in owners]
        restored = list(dict.fromkeys([*names, *moving]))
        for ratio in ratios:
            unit_masks = {group: masks[ratio][group] for group in unit.groups}
            pruned = surgery.soft_prune(graph, unit_masks, {n: original[n] for n in names})
            try:
                for name in names:
                    variables[name].assign(pruned[name])
                if recalibrate:
                    recalibrate()
                miou, _ = scorer.score()
            finally:
                for name in restored:
                    variables[name].assign(original[name])
            done += 1
            measurements.append(
                Measurement(
                    unit=unit.name,
                    ratio=ratio,
                    kept=sum(int(m.sum()) for m in unit_masks.values()),
                    miou=miou,
                    drop=baseline - miou,
                    params_removed=_params_removed(graph, unit_masks, original, aux),
                )
            )
            remaining = (time.perf_counter() - loop_start) / done * (total - done)
            logging.info(
                "[%d/%d] %s keep %.2f: mIoU %.4f (drop %+.4f); ETA %s",
                done,
                total,
                unit.name,
                ratio,
                miou,
                baseline - miou,
                _eta(remaining),
            )
    return SensitivityResult(
        model=model.name,
        granularity=granularity,
        ratios=ratios,
        baseline_miou=baseline,
        num_images=num_images,
        total_params=total_params,
        units=units,
        measurements=measurements,
        skipped_groups=skipped,
        seconds=time.perf_counter() - started,
        recalibration_images=recalibration_images,
    )
