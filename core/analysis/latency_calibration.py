"""An end-to-end calibrated latency model: the per-layer model, corrected by whole-model timings.

Isolated conv timings do not add up to a network's latency: ICNet's branches run concurrently
(a conv off the critical path saves nothing end to end), and a small conv timed alone pays
dispatch costs that the graph hides. NetAdapt's remedy is empirical measurement, so this
module times the *whole* model with one part narrowed at a time and uses the per-layer model
(:class:`core.analysis.latency_model.LatencyModel`) only to shape what lies between.

* **Parts.** The calibration narrows *parts*: sets of prunable channel groups (ties merged;
  skipped groups are in no part and never narrowed). By default a part is one of the model's
  ``pruning_units()`` (``stem``, ``block1`` .. ``block4``, ``FastPSPModule``, ``full_branch``,
  each CFF unit: 9 parts for ICNet), or each group alone (``granularity="group"``); the caller
  builds them (``core.pruning.sensitivity_units.make_units``).
* **Measurements.** The full model is timed first and last (the reference is their mean); in
  between, each part at each keep ratio ``r`` (default 0.75, 0.5, 0.25; each of its groups
  keeps ``max(1, int(size * r))``), everything else full: ``parts x ratios + 2`` end-to-end
  timings (29 for ICNet), with the same timer's ``time_model``.
* **Correction factors.** Part ``p`` at ratio ``r`` saved ``M = T_full - T_p(r)`` measured,
  where the per-layer model predicts ``P = -delta(full, part p at r)``; ``k_p(r) = M / P``
  clipped to ``[0, MAX_FACTOR]`` (a narrowed model measured slower is noise, taken as no
  saving; so is a saving far above the per-layer one). A point whose per-layer saving is below
  ``MIN_SAVING_SHARE`` of the full latency is not used (its ratio would be noise over noise);
  a part with no usable point keeps the per-layer savings (``k = 1``). ``k_p`` is
  interpolated linearly in a group's kept fraction, constant beyond the measured ratios.
* **Prediction.** The per-layer saving at ``widths`` is split among the groups: each layer's
  saving ``c(full) - c(widths)`` goes to the groups it reads and writes by their Shapley
  shares (for a conv of cost ``a * cin * cout`` with both narrowed, the input group gets
  ``a (Cin - cin)(Cout + cout) / 2``). Then::

      latency(widths) = T_full - sum over groups g of k_part(g)(w_g / size_g) * S_g(widths)

  Adding up savings measured one unit at a time would count the saving of a conv whose input
  *and* output narrow twice (a quarter of a conv's cost left at half widths, none predicted);
  splitting the per-layer saving keeps that interaction. The split is the per-layer tables'
  proportion, so a part's measured saving is shared among its groups as their layers' costs
  say, and at every calibration point the prediction *is* the measured latency.

What a correction cannot express: savings that interact across parts end to end (narrowing two
concurrent branches together moves the critical path). ``runners.latency_table`` reports how
far that leaves the prediction on a given machine.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from absl import logging

from core import file_utils
from core.analysis.latency_model import LatencyModel, LayerShape

__all__ = [
    "CALIBRATION_VERSION",
    "DEFAULT_CALIBRATION_RATIOS",
    "CalibratedLatencyModel",
    "calibrate",
    "load_or_calibrate",
]

CALIBRATION_VERSION = 1
DEFAULT_CALIBRATION_RATIOS = (0.75, 0.5, 0.25)
_DRIFT_WARNING = 0.05  # full-model timings before and after further apart than this: warn
# A correction is measured saving / per-layer saving, so timing noise on a small per-layer
# saving would be amplified without bound: points whose per-layer saving is below this share
# of the full latency are not used, and a correction is kept within [0, MAX_FACTOR].
MIN_SAVING_SHARE = 0.01
MAX_FACTOR = 2.0


def part_widths(groups: Sequence[str], sizes: Mapping[str, int], ratio: float) -> dict[str, int]:
    """The widths of a part's groups at keep ratio ``ratio`` (``max(1, int(size * r))``)."""
    return {group: max(1, int(sizes[group] * ratio)) for group in groups}


def _check_ratios(ratios: Sequence[float]) -> tuple[float, ...]:
    ratios = tuple(sorted({float(r) for r in ratios}, reverse=True))
    if not ratios or not all(0.0 < r < 1.0 for r in ratios):
        raise ValueError(
            f"calibration ratios must be keep fractions in (0, 1) such as 0.75,0.5,0.25 (full "
            f"width is always the reference), got {list(ratios)}."
        )
    return ratios


def calibrate(
    parts: Mapping[str, Sequence[str]],
    sizes: Mapping[str, int],
    measure: Callable[[dict[str, int]], float],
    ratios: Sequence[float] = DEFAULT_CALIBRATION_RATIOS,
) -> dict:
    """Times the full model and each part narrowed alone, end to end (module docstring).

    Args:
      parts: part name -> its channel groups (prunable groups only).
      sizes: group -> full channels, for every group of ``parts``.
      measure: ``{group: kept channels}`` (others full) -> measured end-to-end ms.
      ratios: keep ratios each part is timed at, in (0, 1).

    Returns:
      The calibration document: ``full_ms`` (reference), ``full_runs_ms`` (first, last) and
      ``parts``: name -> ``{"groups": [..], "points": [{"ratio", "widths", "measured_ms"}]}``.
      A part whose groups keep every channel at a ratio (a 1-channel group) is not timed there.
    """
    ratios = _check_ratios(ratios)
    missing = sorted({g for groups in parts.values() for g in groups} - set(sizes))
    if missing:
        raise ValueError(f"calibration parts name groups with no size: {missing[:5]}.")
    plans = []
    for name, groups in parts.items():
        for ratio in ratios:
            widths = part_widths(groups, sizes, ratio)
            if any(widths[g] < sizes[g] for g in groups):
                plans.append((name, ratio, widths))
    total, started = len(plans) + 2, time.perf_counter()

    def timed(widths: dict[str, int], what: str, done: int) -> float:
        ms = float(measure(dict(widths)))
        elapsed = time.perf_counter() - started
        logging.info(
            "Latency calibration: %d of %d full-model timings (%s: %.2f ms), ETA %.1f min.",
            done, total, what, ms, elapsed / done * (total - done) / 60.0,
        )  # fmt: skip
        return ms

    first = timed({}, "full width", 1)
    points: dict[str, list[dict]] = {name: [] for name in parts}
    for index, (name, ratio, widths) in enumerate(plans, start=2):
        ms = timed(widths, f"{name} at {ratio:g}", index)
        points[name].append({"ratio": ratio, "widths": widths, "measured_ms": ms})
    last = timed({}, "full width again", total)
    if abs(last - first) > _DRIFT_WARNING * min(first, last):
        logging.warning(
            "Latency calibration: the full model took %.2f ms first and %.2f ms last: the "
            "machine's load changed while calibrating; rerun on an idle machine for a sound "
            "calibration.",
            first,
            last,
        )
    return {
        "full_ms": (first + last) / 2.0,
        "full_runs_ms": [first, last],
        "ratios": list(ratios),
        "parts": {
            name: {"groups": list(groups), "points": points[name]} for name, groups in parts.items()
        },
    }


def _shapley_savings(
    layers_model: LatencyModel, layer: LayerShape, widths: Mapping[str, int], players: list[str]
) -> dict[str, float]:
    """Each narrowed group's Shapley share of ``layer``'s saving ``c(full) - c(widths)``."""
    n = len(players)
    cost = {}
    for mask in range(1 << n):
        narrowed = {players[i]: widths[players[i]] for i in range(n) if mask >> i & 1}
        cost[mask] = layers_model.layer_ms(layer, narrowed)
    shares = {}
    for i, group in enumerate(players):
        share = 0.0
        for mask in range(1 << n):
            if mask >> i & 1:
                continue
            size = bin(mask).count("1")
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            share += weight * (cost[mask] - cost[mask | 1 << i])
        shares[group] = share
    return shares


class CalibratedLatencyModel:
    """Latency at any group widths, per-layer model corrected end to end (module docstring).

    Has the interface the latency search uses (``predict``, ``delta``, ``full_ms``, ``key``).

    Args:
      layers_model: the per-layer model (its tables shape the savings).
      calibration: the document of :func:`calibrate`.
      key: what the calibration was measured for (cache key, reported).
    """

    def __init__(self, layers_model: LatencyModel, calibration: Mapping, key: Mapping):
        self.layers_model = layers_model
        self.calibration = dict(calibration)
        self.full_ms = float(calibration["full_ms"])
        self.key = dict(key)
        self._sizes: dict[str, int] = {}
        self._by_group: dict[str, list[LayerShape]] = {}
        for layer in layers_model.layers:
            for group, channels in layer.in_segments:
                if group:
                    self._sizes[group] = channels
            if layer.out_group and layer.kind != "depthwise":
                self._sizes[layer.out_group] = layer.out_channels
            for group in {layer.out_group, *(g for g, _ in layer.in_segments)} - {None}:
                self._by_group.setdefault(group, []).append(layer)
        self._factors: dict[str, tuple[list[float], list[float]]] = {}
        self._part_of: dict[str, str] = {}
        for name, part in calibration["parts"].items():
            for group in part["groups"]:
                self._part_of[group] = name
            found = []
            for point in part["points"]:
                predicted = -layers_model.delta({}, point["widths"])
                measured = self.full_ms - point["measured_ms"]
                if predicted < MIN_SAVING_SHARE * self.full_ms:
                    continue  # within timing noise: the ratio says nothing
                factor = measured / predicted
                if not 0.0 <= factor <= MAX_FACTOR:
                    logging.warning(
                        "Latency calibration: %s at %g saved %.2f ms end to end where its layers "
                        "predict %.2f ms; correction %.2f clipped to [0, %g] (timing noise?).",
                        name, point["ratio"], measured, predicted, factor, MAX_FACTOR,
                    )  # fmt: skip
                found.append((point["ratio"], min(max(factor, 0.0), MAX_FACTOR)))
            if found:
                found.sort()
                self._factors[name] = ([r for r, _ in found], [k for _, k in found])

    def factor(self, group: str, width: int) -> float:
        """The correction of ``group``'s per-layer saving at ``width`` (1 when uncalibrated)."""
        part = self._part_of.get(group)
        if part not in self._factors:
            return 1.0
        ratios, factors = self._factors[part]
        return float(np.interp(width / self._sizes[group], ratios, factors))

    def factors(self) -> dict[str, dict[float, float]]:
        """Part -> {ratio: correction factor} (for reports)."""
        return {name: dict(zip(*found, strict=True)) for name, found in self._factors.items()}

    def _narrowed(self, layer: LayerShape, widths: Mapping[str, int]) -> list[str]:
        groups = sorted({layer.out_group, *(g for g, _ in layer.in_segments)} - {None})
        return [g for g in groups if g in widths and widths[g] != self._sizes.get(g, widths[g])]

    def _layer_saving(self, layer: LayerShape, widths: Mapping[str, int]) -> float:
        players = self._narrowed(layer, widths)
        if not players:
            return 0.0
        shares = _shapley_savings(self.layers_model, layer, widths, players)
        return sum(self.factor(g, widths[g]) * share for g, share in shares.items())

    def savings(self, widths: Mapping[str, int]) -> dict[str, float]:
        """Calibrated milliseconds each narrowed group saves at ``widths``; ``predict`` is
        ``full_ms`` minus their sum."""
        found: dict[str, float] = {}
        for layer in self.layers_model.layers:
            players = self._narrowed(layer, widths)
            if players:
                shares = _shapley_savings(self.layers_model, layer, widths, players)
                for group, share in shares.items():
                    found[group] = found.get(group, 0.0) + self.factor(group, widths[group]) * share
        return found

    def predict(self, widths: Mapping[str, int]) -> float:
        """Predicted end-to-end milliseconds at ``widths`` (group -> kept; missing: full)."""
        return self.full_ms - sum(
            self._layer_saving(layer, widths) for layer in self.layers_model.layers
        )

    def delta(self, widths: Mapping[str, int], changed: Mapping[str, int]) -> float:
        """Predicted change when the groups in ``changed`` take those widths; only the layers
        touching them are evaluated."""
        touched = {id(layer): layer for g in changed for layer in self._by_group.get(g, [])}
        after = {**widths, **changed}
        return sum(
            self._layer_saving(layer, widths) - self._layer_saving(layer, after)
            for layer in touched.values()
        )


def calibration_key(
    layers_key: Mapping, parts: Mapping[str, Sequence[str]], ratios, granularity: str
) -> dict:
    """The per-layer tables' key (model config, input size, machine, timer; not their grid)
    plus the calibration marker: version, granularity, ratios and the parts' groups."""
    parts_text = json.dumps({name: list(groups) for name, groups in parts.items()}, sort_keys=True)
    key = {name: value for name, value in layers_key.items() if name != "ratios"}
    key["calibration"] = {
        "version": CALIBRATION_VERSION,
        "granularity": granularity,
        "ratios": list(_check_ratios(ratios)),
        "parts_sha256": hashlib.sha256(parts_text.encode()).hexdigest(),
    }
    return key


def calibration_path(cache_dir: str, key: Mapping) -> str:
    """``<cache_dir>/latency_calibration_<hash of the key>.json``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return os.path.join(cache_dir, f"latency_calibration_{digest}.json")


def load_or_calibrate(
    layers_model: LatencyModel,
    parts: Mapping[str, Sequence[str]],
    sizes: Mapping[str, int],
    measure: Callable[[dict[str, int]], float],
    *,
    cache_dir: str | None,
    ratios: Sequence[float] = DEFAULT_CALIBRATION_RATIOS,
    granularity: str = "block",
) -> tuple[CalibratedLatencyModel, str | None, bool]:
    """The calibrated model, from the cache file when its key matches, else timed and cached.

    Args:
      layers_model: the per-layer model of the full model (its key names model and machine).
      parts, sizes, measure, ratios: as :func:`calibrate`.
      cache_dir: folder of the cache, None: do not cache.
      granularity: how the parts were made (``block`` or ``group``), part of the key.

    Returns:
      ``(calibrated model, cache file or None, whether it came from the cache)``.
    """
    key = calibration_key(layers_model.key, parts, ratios, granularity)
    path = calibration_path(cache_dir, key) if cache_dir else None
    if path and os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as stream:
                cached = json.load(stream)
        except (OSError, ValueError) as error:
            cached = {}
            logging.warning("Latency calibration %s is unreadable (%s); timing again.", path, error)
        if cached.get("key") == key and "calibration" in cached:
            logging.info("Latency calibration read from %s (no timing).", path)
            return CalibratedLatencyModel(layers_model, cached["calibration"], key), path, True
        if cached:
            logging.info(
                "Latency calibration %s is for another model or machine; timing again.", path
            )
    count = len(parts) * len(_check_ratios(ratios))
    logging.info(
        "Latency calibration: timing the full model with each of %d parts (%s) narrowed to %s: "
        "about %d end-to-end timings.",
        len(parts), granularity, ", ".join(f"{r:g}" for r in _check_ratios(ratios)), count + 2,
    )  # fmt: skip
    document = calibrate(parts, sizes, measure, ratios)
    if path:
        text = json.dumps({"key": key, "calibration": document}, indent=1) + "\n"
        file_utils.atomic_write_text(path, text)
        logging.info("Latency calibration written to %s.", path)
    return CalibratedLatencyModel(layers_model, document, key), path, False
