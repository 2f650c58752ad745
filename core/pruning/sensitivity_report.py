"""Sensitivity analysis's report: ``sensitivity.{json,md,csv,png}`` from a result."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re

import numpy as np

from core import file_utils
from core.pruning.sensitivity_units import SensitivityResult

# Above this many units the plot is a heatmap: more lines than this cannot be told apart.
MAX_LINE_PLOT_UNITS = 12


def _points(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100.0 * value:.2f}"


def markdown_table(result: SensitivityResult) -> str:
    """One row per unit: width, mIoU and drop at each ratio, the worst drop, parameters saved."""
    smallest = min(result.ratios)
    header = ["unit", "groups", "width", *(f"mIoU % @{r:g} (drop)" for r in result.ratios)]
    header += ["max drop", f"params removed @{smallest:g}"]
    lines = [
        f"Pruning sensitivity of {result.model} ({result.granularity} units, "
        f"{result.num_images} image{'s' * (result.num_images != 1)}): baseline mIoU "
        f"{_points(result.baseline_miou)}%."
        + (
            f" Batch norm recalibrated on {result.recalibration_images} training images "
            "before every score, the baseline's included."
            if result.recalibration_images
            else ""
        ),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for unit in result.units:
        found = result.for_unit(unit.name)
        cells = [f"{_points(found[r].miou)} ({_points(found[r].drop)})" for r in result.ratios]
        worst = max(m.drop for m in found.values())
        saved = _points(found[smallest].params_removed / max(result.total_params, 1)) + "%"
        row = [unit.name, str(len(unit.groups)), str(unit.width), *cells, _points(worst), saved]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "drop = baseline mIoU - mIoU, in points (negative: the pruned model scored higher). "
        "width: channels of the unit's groups. params removed: kernel parameters the hard prune "
        f"of this unit alone removes, of the model's {result.total_params}.",
    ]
    return "\n".join(lines) + "\n"


def csv_text(result: SensitivityResult) -> str:
    """One row per unit and ratio."""
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(
        [
            "unit",
            "groups",
            "width",
            "ratio",
            "kept",
            "miou",
            "drop",
            "params_removed",
            "params_removed_share",
        ]
    )
    widths = {unit.name: unit for unit in result.units}
    for m in result.measurements:
        unit = widths[m.unit]
        share = m.params_removed / max(result.total_params, 1)
        writer.writerow(
            [
                m.unit,
                len(unit.groups),
                unit.width,
                m.ratio,
                m.kept,
                m.miou,  # full precision: the numbers of sensitivity.json
                m.drop,
                m.params_removed,
                share,
            ]
        )
    return stream.getvalue()


def plot(result: SensitivityResult, path: str) -> str:
    """mIoU vs kept ratio, one line per unit; a heatmap of the drops when there are many units."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [unit.name for unit in result.units]
    title = f"{result.model}: mIoU when one {result.granularity} alone is pruned"
    if len(names) <= MAX_LINE_PLOT_UNITS:
        figure, axes = plt.subplots(figsize=(9, 5))
        xs = [1.0, *(r for r in result.ratios if r != 1.0)]
        for name in names:
            found = result.for_unit(name)
            ys = [found[r].miou if r in found else result.baseline_miou for r in xs]
            axes.plot(xs, [100 * y for y in ys], marker="o", label=name)
        axes.axhline(100 * result.baseline_miou, color="black", linestyle="--", label="unpruned")
        axes.set_xlabel("fraction of filters kept")
        axes.set_ylabel("mIoU (%)")
        axes.invert_xaxis()  # more pruning to the right
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    else:
        drops = np.array([[100 * result.for_unit(n)[r].drop for r in result.ratios] for n in names])
        figure, axes = plt.subplots(figsize=(5 + 0.8 * len(result.ratios), 1.5 + 0.2 * len(names)))
        image = axes.imshow(drops, aspect="auto", cmap="Reds", vmin=min(0.0, drops.min()))
        for (row, column), drop in np.ndenumerate(drops):
            colour = "white" if drop > 0.6 * drops.max() > 0 else "black"
            axes.text(column, row, f"{drop:.1f}", ha="center", va="center", fontsize=6, c=colour)
        axes.set_xticks(range(len(result.ratios)), [f"{r:g}" for r in result.ratios])
        # The backbone prefix is the same on every row; the rest tells the groups apart.
        labels = [re.sub(r"^SharedFeatureExtractor/[^/]+/|/bottleneck_v1", "", n) for n in names]
        axes.set_yticks(range(len(names)), labels, fontsize=7)
        title = f"{result.model}: mIoU drop (points) when one {result.granularity} alone is pruned"
        axes.set_xlabel("fraction of filters kept")
        figure.colorbar(image, ax=axes, label="mIoU drop (points)")
    axes.set_title(title, fontsize=10)
    figure.tight_layout()
    with file_utils.atomic_path(path, suffix=".png") as temp:
        figure.savefig(temp, dpi=100)
    plt.close(figure)
    return path


def write_report(result: SensitivityResult, output_dir: str) -> dict[str, str]:
    """Writes ``sensitivity.{json,md,csv,png}`` into ``output_dir``; returns ``{ext: path}``."""
    os.makedirs(output_dir, exist_ok=True)
    paths = {ext: os.path.join(output_dir, f"sensitivity.{ext}") for ext in ("json", "md", "csv")}
    file_utils.atomic_write_text(paths["json"], json.dumps(result.to_dict(), indent=2) + "\n")
    file_utils.atomic_write_text(paths["md"], markdown_table(result))
    file_utils.atomic_write_text(paths["csv"], csv_text(result))
    paths["png"] = plot(result, os.path.join(output_dir, "sensitivity.png"))
    return paths
