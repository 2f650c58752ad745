"""Files of a latency-targeted compression: chosen widths, search trace, latency-mIoU plot.

Written into compress.py's ``output_dir`` next to the pruned checkpoint:
  ``latency_widths.json``: the chosen output width of every pruned conv (``{scope: filters}``),
    the predicted and measured latency and the target;
  ``latency_search.json``: the search trace: every scored candidate of every step (unit, its
    widths, predicted latency, mIoU, whether it was kept), the start and the result;
  ``latency_search.png``: predicted latency against mIoU of the candidates, the kept path
    joined, the target as a vertical line.
"""

from __future__ import annotations

import json
import os

from core import file_utils
from core.pruning.latency_search import SearchResult

WIDTHS_NAME = "latency_widths.json"
TRACE_NAME = "latency_search.json"
PLOT_NAME = "latency_search.png"


def write_report(
    result: SearchResult, layer_widths: dict[str, int], latency: dict, output_dir: str
) -> dict[str, str]:
    """Writes the three files (atomically); returns ``{"widths"|"trace"|"plot": path}``.

    Args:
      result: the search's result.
      layer_widths: conv scope -> output filters of the pruned model.
      latency: ``predicted_ms``, ``measured_ms``, ``target_ms`` and the timing context.
      output_dir: the folder.
    """
    paths = {
        "widths": os.path.join(output_dir, WIDTHS_NAME),
        "trace": os.path.join(output_dir, TRACE_NAME),
        "plot": os.path.join(output_dir, PLOT_NAME),
    }
    widths = {"layer_widths": dict(sorted(layer_widths.items())), **latency}
    file_utils.atomic_write_text(paths["widths"], json.dumps(widths, indent=2) + "\n")
    trace = {**result.to_dict(), **latency}
    file_utils.atomic_write_text(paths["trace"], json.dumps(trace, indent=2) + "\n")
    plot(result, latency.get("measured_ms"), paths["plot"])
    return paths


def plot(result: SearchResult, measured_ms: float | None, path: str) -> str:
    """Predicted latency (x) against mIoU (y) of every candidate; the kept ones joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    others = [c for c in result.candidates if not c.chosen]
    kept = [c for c in result.candidates if c.chosen]
    axes.scatter(
        [c.predicted_ms for c in others], [100 * c.miou for c in others], s=10, c="0.6",
        label="candidates",
    )  # fmt: skip
    axes.plot(
        [result.start_ms, *(c.predicted_ms for c in kept)],
        [100 * result.baseline_miou, *(100 * c.miou for c in kept)],
        "o-", color="tab:blue", label="kept at each step",
    )  # fmt: skip
    axes.axvline(result.target_ms, color="tab:red", linestyle="--", label="target")
    if measured_ms is not None:
        axes.axvline(measured_ms, color="tab:green", linestyle=":", label="measured result")
    axes.set_xlabel("predicted latency (ms)")
    axes.set_ylabel("mIoU before fine-tuning (%)")
    axes.set_title("Latency-targeted pruning: search candidates", fontsize=9)
    axes.legend(fontsize=7)
    figure.tight_layout()
    with file_utils.atomic_path(path, suffix=".png") as temp:
        figure.savefig(temp, dpi=90)
    plt.close(figure)
    return path
