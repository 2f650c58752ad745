"""The design and the fit of the latency calibration (:mod:`core.analysis.latency_calibration`).

:func:`mix_plans` draws which parts a calibration timing narrows, and to what;
:func:`fit_corrections` fits one correction factor per part to the measured savings, by least
squares within bounds. Plain numpy, no timing and no TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def part_widths(groups: Sequence[str], sizes: Mapping[str, int], ratio: float) -> dict[str, int]:
    """The widths of a part's groups at keep ratio ``ratio`` (``max(1, int(size * r))``)."""
    return {group: max(1, int(sizes[group] * ratio)) for group in groups}


def mix_plans(
    parts: Mapping[str, Sequence[str]],
    sizes: Mapping[str, int],
    ratios: Sequence[float],
    count: int,
    seed: int,
) -> list[tuple[dict[str, float], dict[str, int]]]:
    """``count`` random mixes: every part at a ratio drawn from ``ratios`` or full width.

    Returns (part -> ratio of the narrowed parts, group -> kept channels) pairs. A mix that
    narrows nothing is drawn again; so is the whole set while some part is never narrowed.
    """
    rng = np.random.default_rng(seed)
    options = (*ratios, 1.0)
    narrowable = [
        name
        for name, groups in parts.items()
        if any(part_widths(groups, sizes, min(ratios))[g] < sizes[g] for g in groups)
    ]
    plans: list[tuple[dict[str, float], dict[str, int]]] = []
    for _attempt in range(100):
        plans = []
        while len(plans) < count:
            chosen = {name: float(rng.choice(options)) for name in parts}
            widths: dict[str, int] = {}
            for name, ratio in chosen.items():
                if ratio < 1.0:
                    widths.update(part_widths(parts[name], sizes, ratio))
            widths = {g: w for g, w in widths.items() if w < sizes[g]}
            if widths:
                plans.append(({n: r for n, r in chosen.items() if r < 1.0}, widths))
        if all(any(name in mix for mix, _ in plans) for name in narrowable):
            break
    return plans


def fit_corrections(
    savings: np.ndarray, measured: np.ndarray, upper: float = 2.0, sweeps: int = 2000
) -> np.ndarray:
    """Least squares ``savings @ k ~ measured`` with every ``k`` in ``[0, upper]``.

    Coordinate descent on a convex problem (each step minimises exactly over one ``k`` and
    clips it), started from ``k = 1``: the per-layer model as it is.

    Args:
      savings: ``[mixes, parts]`` per-layer predicted savings.
      measured: ``[mixes]`` measured savings.
    """
    savings = np.asarray(savings, dtype=np.float64)
    measured = np.asarray(measured, dtype=np.float64)
    factors = np.ones(savings.shape[1])
    norms = (savings**2).sum(axis=0)
    residual = measured - savings @ factors
    for _ in range(sweeps):
        largest = 0.0
        for j in np.flatnonzero(norms > 0):
            column = savings[:, j]
            value = min(max(factors[j] + column @ residual / norms[j], 0.0), upper)
            change = value - factors[j]
            if change:
                residual -= change * column
                factors[j] = value
                largest = max(largest, abs(change))
        if largest < 1e-12:
            break
    return factors
