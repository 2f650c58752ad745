"""Pruning to a latency target: a NetAdapt-style greedy search over per-unit widths.

NetAdapt (Yang et al., ECCV 2018) shrinks a network in steps. Each step must cut the
(predicted) latency by a set amount; for every unit it takes the *largest* width that makes
that cut alone, scores the candidates, and keeps the best one. Here:

* a **unit** is a channel group of :mod:`core.pruning.dependency` (convs tied by a residual add,
  a fusion sum or a prune config's ``source`` share one width), or with ``granularity="block"``
  the groups of one of the model's ``pruning_units()`` shrunk by one ratio; groups holding a
  skipped conv are never changed;
* latency comes from a :class:`core.analysis.latency_model.LatencyModel` (measured tables) or,
  by default in compress.py, its end-to-end calibration
  (:class:`core.analysis.latency_calibration.CalibratedLatencyModel`); no timing of
  candidates during the search;
* widths are at least ``width_multiple`` (at least one filter) and a multiple of it, or the
  group's full width;
* each step cuts ``(start - target) / steps``, the last one what is left, so a search makes
  about ``steps`` steps; when no unit can make a step's cut alone, every unit's smallest width
  is a candidate (the most any one unit can cut);
* a candidate is scored by ``score(widths)``: in compress.py the L1 filter ranking at those
  widths, batch norm recalibrated, and mIoU on a few batches of the eval records
  (:class:`WidthScorer`, the machinery of the sensitivity analysis).

A target below the latency of every prunable group at its smallest width is refused before
any candidate is scored, with that closest reachable latency in the message.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from absl import logging

from core.checkpoints import checkpoint_utils
from core.pruning import ranking, surgery
from core.pruning.dependency import ChannelGraph
from core.pruning.sensitivity import MOVING_STATISTICS, MiouScorer
from core.pruning.sensitivity_units import Unit


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One scored candidate of one search step."""

    step: int
    unit: str
    widths: dict[str, int]  # the unit's groups -> kept channels
    predicted_ms: float
    miou: float
    chosen: bool = False
    measured_ms: float | None = None  # end to end, of a chosen candidate when the search measures


@dataclasses.dataclass
class SearchResult:
    """What :func:`search` found; :meth:`to_dict` is the trace written to JSON."""

    target_ms: float
    start_ms: float
    predicted_ms: float
    baseline_miou: float
    widths: dict[str, int]  # every prunable group -> kept channels
    sizes: dict[str, int]  # every prunable group -> full channels
    candidates: list[Candidate]
    steps: int
    seconds: float
    measured_ms: float | None = None  # end to end at ``widths`` when the search measures

    def to_dict(self) -> dict:
        fields = dataclasses.asdict(self)
        fields["candidates"] = [dataclasses.asdict(c) for c in self.candidates]
        return fields


def allowed_widths(size: int, multiple: int) -> list[int]:
    """Widths a group of ``size`` channels may keep, largest first: its full width, then the
    multiples of ``multiple`` below it (at least one filter)."""
    if multiple < 1:
        raise ValueError(f"the width multiple must be at least 1, got {multiple}.")
    return [size, *range((size - 1) // multiple * multiple, 0, -multiple)]


def _unit_options(unit: Unit, sizes: Mapping[str, int], current, multiple: int):
    """Candidate widths of a unit, largest first, each below the current widths somewhere."""
    if len(unit.groups) == 1:
        group = unit.groups[0]
        return [{group: w} for w in allowed_widths(sizes[group], multiple) if w < current[group]]
    # A block: one ratio for all its groups, stepped on its widest group.
    widest = max(unit.groups, key=lambda g: sizes[g])
    options = []
    for kept in allowed_widths(sizes[widest], multiple):
        ratio = kept / sizes[widest]
        widths = {}
        for group in unit.groups:
            legal = [w for w in allowed_widths(sizes[group], multiple) if w <= sizes[group] * ratio]
            widths[group] = min(current[group], legal[0] if legal else min(multiple, sizes[group]))
        if any(widths[g] < current[g] for g in unit.groups):
            options.append(widths)
    return options


def smallest_widths(sizes: Mapping[str, int], multiple: int) -> dict[str, int]:
    """Every group at its smallest legal width."""
    return {group: allowed_widths(size, multiple)[-1] for group, size in sizes.items()}


def search(
    latency_model,
    units: Sequence[Unit],
    sizes: Mapping[str, int],
    target_ms: float,
    score: Callable[[dict[str, int]], float],
    *,
    steps: int = 5,
    width_multiple: int = 1,
    measure: Callable[[dict[str, int]], float] | None = None,
) -> SearchResult:
    """Greedy NetAdapt search down to ``target_ms`` (module docstring).

    With ``measure``, each step's chosen model is timed end to end and the search goes on until
    the *measured* latency is at or below the target: the latency model only ranks and sizes
    the proposals. A per-layer model can be far off end to end (ICNet's branches run
    concurrently; a small conv timed alone pays dispatch costs the graph hides), and then a
    search steered by predictions alone stops short of the target.

    Args:
      latency_model: has ``predict(widths) -> ms`` and ``delta(widths, changed) -> ms``
        (:class:`core.analysis.latency_model.LatencyModel`).
      units: the units to shrink (their groups are the prunable groups).
      sizes: every prunable group -> its full channels.
      target_ms: the predicted latency to reach.
      score: ``widths of every prunable group -> mIoU``.
      steps: how many steps the latency cut is spread over, >= 1.
      width_multiple: widths are multiples of this (or the full width).
      measure: ``widths of every prunable group -> measured ms`` of the model at those widths;
        None: trust the predictions.

    Returns:
      A :class:`SearchResult`.

    Raises:
      ValueError: bad ``steps``/``target_ms``, a target at or above the start latency, or one
        below the closest reachable latency (named).
    """
    started = time.perf_counter()
    if steps < 1:
        raise ValueError(f"the search needs at least 1 step, got {steps}.")
    widths = dict(sizes)
    start_ms = latency_model.predict(widths)
    floor_ms = latency_model.predict(smallest_widths(sizes, width_multiple))
    if not target_ms > 0:
        raise ValueError(f"the latency target must be positive, got {target_ms} ms.")
    if target_ms >= start_ms:
        raise ValueError(
            f"the latency target {target_ms:.2f} ms is not below the unpruned model's "
            f"{start_ms:.2f} ms (predicted, measured on this machine): nothing to prune. Give a "
            "lower --target_latency_ms or a --target_speedup above 1."
        )
    if target_ms < floor_ms:
        raise ValueError(
            f"the latency target {target_ms:.2f} ms cannot be reached: the closest reachable "
            f"latency is {floor_ms:.2f} ms (predicted, every prunable channel group at its "
            f"smallest width of {width_multiple} filter(s); the unpruned model takes "
            f"{start_ms:.2f} ms). Raise the target, or skip fewer convs."
        )
    baseline = score(widths)
    logging.info(
        "Latency search: %.2f -> %.2f ms predicted, %d units, baseline mIoU %.4f",
        start_ms,
        target_ms,
        len(units),
        baseline,
    )
    cut = (start_ms - target_ms) / steps
    candidates: list[Candidate] = []
    current_ms, step, measured = start_ms, 0, None
    while current_ms > target_ms:
        step += 1
        if step > 4 * steps + len(sizes):
            raise ValueError(
                f"the latency target {target_ms:.2f} ms was not reached in {step - 1} search "
                f"steps (now {current_ms:.2f} ms{' measured' if measure else ''}): each step "
                "saved less than planned. Raise the target, or give more --search_steps."
            )
        goal = min(cut, current_ms - target_ms)
        proposals = _proposals(latency_model, units, sizes, widths, goal, width_multiple)
        if not proposals:
            raise ValueError(
                f"the latency target {target_ms:.2f} ms cannot be reached: the closest "
                f"reachable latency is {current_ms:.2f} ms (no unit can shrink further)."
            )
        scored = []
        for unit, change, predicted in proposals:
            miou = score({**widths, **change})
            scored.append(Candidate(step, unit.name, change, predicted, miou))
            logging.info(
                "step %d: %s -> %s: %.2f ms, mIoU %.4f", step, unit.name, change, predicted, miou
            )
        best = max(scored, key=lambda c: (c.miou, -c.predicted_ms))
        widths.update(best.widths)
        current_ms = best.predicted_ms
        if measure is not None:
            measured = current_ms = float(measure(dict(widths)))
        candidates.extend(
            dataclasses.replace(c, chosen=c is best, measured_ms=measured if c is best else None)
            for c in scored
        )
        logging.info(
            "step %d keeps %s: %.2f ms predicted%s, mIoU %.4f",
            step,
            best.unit,
            best.predicted_ms,
            f", {measured:.2f} ms measured" if measure is not None else "",
            best.miou,
        )
    return SearchResult(
        target_ms=float(target_ms),
        start_ms=float(start_ms),
        predicted_ms=float(latency_model.predict(widths)),
        baseline_miou=float(baseline),
        widths=widths,
        sizes=dict(sizes),
        candidates=candidates,
        steps=step,
        seconds=time.perf_counter() - started,
        measured_ms=measured,
    )


def _proposals(latency_model, units, sizes, widths, goal: float, multiple: int):
    """``[(unit, changed widths, predicted ms)]``: per unit the largest widths cutting ``goal``;
    if no unit can, per unit its smallest widths that cut anything."""
    current = latency_model.predict(widths)
    meeting, fallback = [], []
    for unit in units:
        options = _unit_options(unit, sizes, widths, multiple)
        for change in options:
            if -latency_model.delta(widths, change) >= goal - 1e-9:
                meeting.append((unit, change, current + latency_model.delta(widths, change)))
                break
        else:
            if options and latency_model.delta(widths, options[-1]) < 0:
                last = options[-1]
                fallback.append((unit, last, current + latency_model.delta(widths, last)))
    return meeting or fallback


def keep_masks(
    graph: ChannelGraph, widths: Mapping[str, int], tensors: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """L1 keep-masks (summed over each group's producers) for groups narrower than full."""
    by_name = {group.name: group for group in graph.groups}
    masks = {}
    for name, kept in widths.items():
        group = by_name[name]
        if kept < group.size:
            scores = ranking.group_scores(group.producers, tensors)
            masks[name] = ranking.keep_mask(scores, kept)
    return masks


class WidthScorer:
    """mIoU of the model pruned to some widths: soft pruning, recalibrated BN, a short eval.

    The channels the L1 ranking drops are zeroed in place (as ``compress.py --soft_apply``,
    which computes what the hard-pruned model computes), batch norm is recalibrated when
    ``recalibrate`` is given, the model is scored, and every changed variable is restored.

    Args:
      model: the full model holding the trained weights.
      graph: its channel graph (ties applied).
      scorer: a :class:`core.pruning.sensitivity.MiouScorer` on a few eval batches.
      recalibrate: None or ``() -> images`` recalibrating ``model``'s batch norm in place.
    """

    def __init__(self, model, graph: ChannelGraph, scorer: MiouScorer, recalibrate=None):
        self._variables = checkpoint_utils.ensure_named_variables(model)
        self._original = {name: v.numpy() for name, v in self._variables.items()}
        self._graph = graph
        self._scorer = scorer
        self._recalibrate = recalibrate
        self._moving = [n for n in self._original if n.endswith(MOVING_STATISTICS)]

    def __call__(self, widths: Mapping[str, int]) -> float:
        masks = keep_masks(self._graph, widths, self._original)
        pruned = surgery.soft_prune(self._graph, masks, self._original) if masks else {}
        changed = [n for n, v in pruned.items() if not np.array_equal(v, self._original[n])]
        restored = list(dict.fromkeys([*changed, *(self._moving if self._recalibrate else [])]))
        try:
            for name in changed:
                self._variables[name].assign(pruned[name])
            if self._recalibrate:
                self._recalibrate()
            miou, _ = self._scorer.score()
        finally:
            for name in restored:
                self._variables[name].assign(self._original[name])
        return miou
