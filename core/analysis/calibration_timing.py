"""The timings of the latency calibration (:mod:`core.analysis.latency_calibration`).

:func:`calibrate` times the full model with its parts narrowed in the random mixes of
:func:`core.analysis.calibration_design.mix_plans`. Given a
:class:`core.analysis.relative_latency.RelativeMeasurer`, each mix is timed round-robin against
the full model and its latency is the ratio of the two times the full model's reference
latency, so a load that changes while calibrating (another process starting on a shared
machine) slows the mix and the full model alike and does not bias the fit; the spread of the
full model's own timings is logged as a warning above 5%. Given a plain ``widths -> ms``
callable (a test's oracle), each mix is timed alone, the full model first and last.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from absl import logging

from core.analysis.calibration_design import mix_plans
from core.analysis.relative_latency import RelativeMeasurer

CALIBRATION_SEED = 20260
DEFAULT_CALIBRATION_RATIOS = (0.75, 0.5, 0.25)
_SPREAD_WARNING = 0.05  # the full model's timings spread over this share of the lowest: warn


def check_ratios(ratios: Sequence[float]) -> tuple[float, ...]:
    """The distinct keep ratios, largest first; ValueError unless each is in (0, 1)."""
    ratios = tuple(sorted({float(r) for r in ratios}, reverse=True))
    if not ratios or not all(0.0 < r < 1.0 for r in ratios):
        raise ValueError(
            f"calibration ratios must be keep fractions in (0, 1) such as 0.75,0.5,0.25 (full "
            f"width is always the reference), got {list(ratios)}."
        )
    return ratios


def default_mix_count(parts: Mapping[str, Sequence[str]], ratios: Sequence[float]) -> int:
    """``parts x ratios`` mixes, at least ``parts + 1`` (one more than the factors fitted)."""
    return max(len(parts) * len(check_ratios(ratios)), len(parts) + 1)


def calibrate(
    parts: Mapping[str, Sequence[str]],
    sizes: Mapping[str, int],
    measure: Callable[[dict[str, int]], float] | RelativeMeasurer,
    ratios: Sequence[float] = DEFAULT_CALIBRATION_RATIOS,
    mixes: int | None = None,
    seed: int = CALIBRATION_SEED,
) -> dict:
    """Times random mixes of narrowed parts end to end (:mod:`core.analysis.latency_calibration`).

    Args:
      parts: part name -> its channel groups (prunable groups only).
      sizes: group -> full channels, for every group of ``parts``.
      measure: a :class:`core.analysis.relative_latency.RelativeMeasurer` (each mix timed
        round-robin against the full model, its latency the ratio times the measurer's
        ``reference_ms``), or ``{group: kept channels}`` (others full) -> measured end-to-end
        ms (each mix timed alone, the full model first and last).
      ratios: keep ratios a part is drawn at (or full width), in (0, 1).
      mixes: how many mixes (default ``len(parts) * len(ratios)``, at least ``len(parts) + 1``).
      seed: of the draws.

    Returns:
      The calibration document: ``full_ms`` (reference), ``measured_as`` (``ratio_to_full``
      or ``single``), ``full_runs_ms`` (the full model's timings: one per mix, or first and
      last), ``parts``: name -> ``{"groups": [..]}``, and ``mixes``: ``[{"ratios": {part: r},
      "widths": {group: kept}, "measured_ms"}]`` (plus ``ratio_to_full`` when relative).
    """
    ratios = check_ratios(ratios)
    missing = sorted({g for groups in parts.values() for g in groups} - set(sizes))
    if missing:
        raise ValueError(f"calibration parts name groups with no size: {missing[:5]}.")
    count = mixes if mixes is not None else default_mix_count(parts, ratios)
    if count < 1:
        raise ValueError(f"the calibration needs at least one mix, got {count}.")
    plans = mix_plans(parts, sizes, ratios, count, seed)
    relative = isinstance(measure, RelativeMeasurer)
    total, started = len(plans) + (0 if relative else 2), time.perf_counter()

    def timed(widths: dict[str, int], what: str, done: int) -> dict:
        """``measured_ms`` (and ``ratio_to_full``, ``full_ms`` when relative), logged."""
        if relative:
            comparison = measure.compare_widths(dict(widths))
            found = {"ratio_to_full": comparison.ratio, "measured_ms": comparison.ms}
            found["full_ms"] = comparison.full_ms
            ratio_text = f", {comparison.ratio:.3f} x the full model"
        else:
            found, ratio_text = {"measured_ms": float(measure(dict(widths)))}, ""
        elapsed = time.perf_counter() - started
        logging.info(
            "Latency calibration: %d of %d end-to-end timings (%s: %.2f ms%s), ETA %.1f min.",
            done, total, what, found["measured_ms"], ratio_text,
            elapsed / done * (total - done) / 60.0,
        )  # fmt: skip
        return found

    first = None if relative else timed({}, "full width", 1)["measured_ms"]
    found, full_runs = [], []
    for index, (chosen, widths) in enumerate(plans, start=1 if relative else 2):
        what = "mix " + ", ".join(f"{name} {ratio:g}" for name, ratio in chosen.items())
        timing = timed(widths, what, index)
        full = timing.pop("full_ms", None)
        if full is not None:
            full_runs.append(full)
        found.append({"ratios": chosen, "widths": widths, **timing})
    if relative:
        reference = measure.reference_ms
    else:
        last = timed({}, "full width again", total)["measured_ms"]
        reference, full_runs = (first + last) / 2.0, [first, last]
    _warn_spread(full_runs)
    return {
        "full_ms": reference,
        "measured_as": "ratio_to_full" if relative else "single",
        "full_runs_ms": full_runs,
        "ratios": list(ratios),
        "seed": seed,
        "parts": {name: {"groups": list(groups)} for name, groups in parts.items()},
        "mixes": found,
    }


def _warn_spread(full_runs: Sequence[float]) -> None:
    """Warns when the full model's timings during the calibration spread over 5%."""
    if len(full_runs) < 2:
        return
    low, high = min(full_runs), max(full_runs)
    if high - low > _SPREAD_WARNING * low:
        logging.warning(
            "Latency calibration: the full model's timings ranged from %.2f to %.2f ms: the "
            "machine's load changed while calibrating. Mixes timed against the full model "
            "(round-robin) cancel a steady load, but a busy machine makes them noisy; rerun "
            "on an idle machine for a sound calibration.",
            low,
            high,
        )
