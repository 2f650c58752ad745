"""An end-to-end calibrated latency model: the per-layer model, corrected by whole-model timings.

Isolated conv timings do not add up to a network's latency: ICNet's branches run concurrently
(a conv off the critical path saves nothing end to end), and a small conv timed alone pays
dispatch costs that the graph hides. NetAdapt's remedy is empirical measurement, so this
module times the *whole* model with its parts narrowed in random mixes, fits one correction per
part, and uses the per-layer model (:class:`core.analysis.latency_model.LatencyModel`) to shape
and split the savings.

* **Parts.** The calibration narrows *parts*: sets of prunable channel groups (ties merged;
  skipped groups are in no part and never narrowed). By default a part is one of the model's
  ``pruning_units()`` (``stem``, ``block1`` .. ``block4``, ``FastPSPModule``, ``full_branch``,
  each CFF unit: 9 parts for ICNet), or each group alone (``granularity="group"``); the caller
  builds them (``core.pruning.sensitivity_units.make_units``).
* **Measurements.** Random *mixes*: every part at a keep ratio drawn from ``ratios``
  (default 0.75, 0.5, 0.25; each of its groups keeps ``max(1, int(size * r))``) or at full
  width, seeded so that a calibration is repeatable: ``parts x ratios`` mixes (at least
  ``parts + 1``; 27 for ICNet). Each mix is timed round-robin against the full model
  (:class:`core.analysis.relative_latency.RelativeMeasurer`, the full model traced once) and
  its latency is that ratio times the full model's reference latency (the per-layer model's,
  timed with its tables): on a shared machine a load change between two timings alone biased
  the fit, where a ratio of two interleaved timings cancels it. The spread of the full
  model's timings is logged as a warning above 5%. With a plain ``widths -> ms`` callable (a
  test's oracle) the mixes are timed alone, the full model first and last (the reference is
  their mean). A first version narrowed one part at a time; each part alone saved 0-5 ms of
  ICNet's 49 at 512x1024, the size of the noise between two model builds, so the corrections
  it derived were noise (savings measured negative, ratios of 7). A mix narrows several parts
  at once, so its saving stands well above the noise, and every part is in several mixes.
* **Correction factors.** One per part, ``k_p`` in ``[0, MAX_FACTOR]``, fitted by least
  squares so that the corrected per-layer savings of the mixes match their measured savings
  ``T_full - T_mix`` (:func:`fit_corrections`): ``k_p = 1`` keeps the per-layer savings,
  ``k_p = 0`` says narrowing the part saves nothing end to end (a branch off the critical
  path). A part whose layers never save 1% of the latency (``MIN_SAVING_SHARE``) in any mix
  keeps ``k = 1``.
* **Prediction.** The per-layer saving at ``widths`` is split among the groups: each layer's
  saving ``c(full) - c(widths)`` goes to the groups it reads and writes by their Shapley
  shares (for a conv of cost ``a * cin * cout`` with both narrowed, the input group gets
  ``a (Cin - cin)(Cout + cout) / 2``). Then::

      latency(widths) = T_full - sum over groups g of k_part(g) * S_g(widths)

  The same split is used for the fit, so a conv whose input *and* output narrow is counted
  once, and the per-layer tables shape how a part's saving grows with its width.

What one factor per part cannot express: a saving that is not proportional to the per-layer one
(narrowing a branch saves until it is no longer the critical path, then nothing), and
interactions across parts (narrowing two concurrent branches together moves the critical
path); the fit spreads them over the factors. ``runners.latency_table`` reports how
far that leaves the prediction on a given machine.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from absl import logging

from core import file_utils
from core.analysis.calibration_design import fit_corrections, part_widths
from core.analysis.calibration_timing import (
    CALIBRATION_SEED,
    DEFAULT_CALIBRATION_RATIOS,
    calibrate,
    check_ratios,
    default_mix_count,
)
from core.analysis.latency_model import LatencyModel, LayerShape
from core.analysis.relative_latency import RelativeMeasurer

__all__ = [
    "CALIBRATION_VERSION",
    "MAX_FACTOR",
    "DEFAULT_CALIBRATION_RATIOS",
    "CalibratedLatencyModel",
    "calibrate",
    "fit_corrections",
    "part_widths",
    "load_or_calibrate",
]

# 3: mixes timed round-robin against the full model, as ratio x its reference latency;
# 2: corrections fitted to random mixes timed alone; 1: one part at a time.
CALIBRATION_VERSION = 3
# A correction is measured saving / per-layer saving, so timing noise on a small per-layer
# saving would be amplified without bound: points whose per-layer saving is below this share
# of the full latency are not used, and a correction is kept within [0, MAX_FACTOR].
MIN_SAVING_SHARE = 0.01
MAX_FACTOR = 2.0


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
        self._part_of: dict[str, str] = {}
        for name, part in calibration["parts"].items():
            for group in part["groups"]:
                self._part_of[group] = name
        self._factors: dict[str, float] = self._fit(calibration)

    def _fit(self, calibration: Mapping) -> dict[str, float]:
        """One correction per part, fitted to the mixes' measured savings (module docstring)."""
        names = list(calibration["parts"])
        mixes = calibration.get("mixes", [])
        if not names or not mixes:
            return {}
        savings = np.zeros((len(mixes), len(names)))
        measured = np.zeros(len(mixes))
        column = {name: index for index, name in enumerate(names)}
        for row, mix in enumerate(mixes):
            measured[row] = self.full_ms - mix["measured_ms"]
            for group, saving in self._raw_savings(mix["widths"]).items():
                if group in self._part_of:
                    savings[row, column[self._part_of[group]]] += saving
        # A part whose layers never save 1% of the latency in any mix is left as it is (k = 1):
        # its correction would be timing noise over a negligible saving.
        fitted = savings.max(axis=0) >= MIN_SAVING_SHARE * self.full_ms
        if not fitted.any():
            return {}
        kept = measured - savings[:, ~fitted].sum(axis=1)
        factors = fit_corrections(savings[:, fitted], kept, MAX_FACTOR)
        found = dict(
            zip([n for n, f in zip(names, fitted, strict=True) if f], factors, strict=True)
        )
        for name, factor in found.items():
            if factor in (0.0, MAX_FACTOR):
                logging.warning(
                    "Latency calibration: %s's correction is at its bound (%g): end to end its "
                    "narrowing saves %s than its layers predict (or the timings are noisy).",
                    name, factor, "nothing more" if factor == 0.0 else "far more",
                )  # fmt: skip
        return {name: float(factor) for name, factor in found.items()}

    def factor(self, group: str) -> float:
        """The correction of ``group``'s per-layer saving (1 when uncalibrated); one per part,
        whatever the group's width."""
        return self._factors.get(self._part_of.get(group), 1.0)

    def factors(self) -> dict[str, float]:
        """Part -> its fitted correction factor (for reports)."""
        return dict(self._factors)

    def _raw_savings(self, widths: Mapping[str, int]) -> dict[str, float]:
        """Per-layer (uncorrected) milliseconds each narrowed group saves at ``widths``."""
        found: dict[str, float] = {}
        for layer in self.layers_model.layers:
            players = self._narrowed(layer, widths)
            if players:
                for group, share in _shapley_savings(
                    self.layers_model, layer, widths, players
                ).items():
                    found[group] = found.get(group, 0.0) + share
        return found

    def _narrowed(self, layer: LayerShape, widths: Mapping[str, int]) -> list[str]:
        groups = sorted({layer.out_group, *(g for g, _ in layer.in_segments)} - {None})
        return [g for g in groups if g in widths and widths[g] != self._sizes.get(g, widths[g])]

    def _layer_saving(self, layer: LayerShape, widths: Mapping[str, int]) -> float:
        players = self._narrowed(layer, widths)
        if not players:
            return 0.0
        shares = _shapley_savings(self.layers_model, layer, widths, players)
        return sum(self.factor(g) * share for g, share in shares.items())

    def savings(self, widths: Mapping[str, int]) -> dict[str, float]:
        """Calibrated milliseconds each narrowed group saves at ``widths``; ``predict`` is
        ``full_ms`` minus their sum."""
        return {
            group: self.factor(group) * saving
            for group, saving in self._raw_savings(widths).items()
        }

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
        "ratios": list(check_ratios(ratios)),
        "parts_sha256": hashlib.sha256(parts_text.encode()).hexdigest(),
        "seed": CALIBRATION_SEED,
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
    measure: Callable[[dict[str, int]], float] | RelativeMeasurer,
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
    count = default_mix_count(parts, ratios)
    relative = isinstance(measure, RelativeMeasurer)
    logging.info(
        "Latency calibration: timing the full model with its %d parts (%s) narrowed in %d "
        "random mixes of %s and full width: %s.",
        len(parts), granularity, count, ", ".join(f"{r:g}" for r in check_ratios(ratios)),
        f"{count} timings round-robin against the full model" if relative
        else f"{count + 2} end-to-end timings",
    )  # fmt: skip
    document = calibrate(parts, sizes, measure, ratios)
    if path:
        text = json.dumps({"key": key, "calibration": document}, indent=1) + "\n"
        file_utils.atomic_write_text(path, text)
        logging.info("Latency calibration written to %s.", path)
    return CalibratedLatencyModel(layers_model, document, key), path, False
