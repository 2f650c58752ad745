"""Builds (or reads) a config's latency models and reports their predictions against measurement.

``python -m runners.latency_table --config_path configs/x.config --input_size 1024,2048``
prints, for uniform widths 1.0, 0.75, 0.5, 0.25 and a few random per-group mixes, the measured
end-to-end latency of the model built at those widths (random weights: latency does not depend
on them), the per-layer model's prediction (:mod:`core.analysis.latency_model`) and, with
``--latency_model calibrated`` (the default), the end-to-end calibrated prediction
(:mod:`core.analysis.latency_calibration`), each with its relative error. Every group is
prunable here (no prune config). Each row's model is timed round-robin against the full model
(built and traced once) and reported as that ratio times the latency model's full-model latency
(``measured_as: ratio_to_full``, printed above the table), so a load change between rows does
not move them. Whole-model timings: the calibration's (blocks x ``--latency_calibration_grid``,
each against the full model, unless cached), one per width set, and one for the tables.
"""

from __future__ import annotations

import os
import sys

from absl import flags

from runners import cli, quiet_logs

if __name__ == "__main__":
    # Run as a script: the imports below load TensorFlow, so its start-up chatter is quieted
    # now, as runners.cli.run_main does for the root scripts (the library import stays silent).
    quiet_logs.install(quiet_logs.verbose_requested(sys.argv))

from builders import config_util  # noqa: E402 - after the quiet-logs hook
from core.analysis import latency_model  # noqa: E402
from core.pruning.dependency import build_channel_graph  # noqa: E402
from runners import latency_predictor  # noqa: E402
from runners.common import build_model  # noqa: E402
from runners.compress_latency import DEFAULT_TABLE_DIR  # noqa: E402

flags.DEFINE_string("config_path", None, "Pipeline config of the model.")
flags.DEFINE_list("input_size", ["1024", "2048"], "Deploy H,W.")
flags.DEFINE_string("latency_table_dir", DEFAULT_TABLE_DIR, "Cache folder of latency tables.")
flags.DEFINE_list("latency_grid", ["1", "0.75", "0.5", "0.25", "0.125"], "Width fractions.")
flags.DEFINE_enum("latency_statistic", "median", ["median", "min"], "Statistic of the runs.")
flags.DEFINE_integer("latency_runs", 5, "Timed runs per measurement.")
flags.DEFINE_enum(
    "latency_model", "calibrated", list(latency_predictor.LATENCY_MODELS),
    "calibrated: report the per-layer and the calibrated predictions; layers: per-layer only.",
)  # fmt: skip
flags.DEFINE_list(
    "latency_calibration_grid", ["0.75", "0.5", "0.25"], "Keep ratios each part is timed at."
)
flags.DEFINE_enum(
    "latency_calibration_granularity", "block", ["block", "group"], "Calibration parts."
)
flags.DEFINE_integer("mixes", 3, "Random per-group width mixes to report.")
FLAGS = flags.FLAGS


def report(
    config_path: str,
    input_size,
    table_dir,
    ratios,
    statistic: str,
    runs: int,
    *,
    kind: str = "calibrated",
    calibration_ratios=(0.75, 0.5, 0.25),
    granularity: str = "block",
    mixes: int = 3,
) -> list[dict]:
    """Measured and predicted latency of a config's model at uniform and random widths.

    Returns:
      One row per width set: ``name``, ``measured_ms`` (``ratio_to_full``, the model's latency
      over the full model's timed round-robin, times ``full_ms``, the latency model's
      full-model latency; ``measured_as: ratio_to_full``), ``layers_ms`` and ``layers_error``
      (relative to measured) and, for ``kind="calibrated"``, ``calibrated_ms`` and
      ``calibrated_error``.
    """
    pipeline = config_util.load_pipeline_config(config_path)
    model = build_model(pipeline)
    graph = build_channel_graph(model)
    timer = latency_model.TFCPUTimer(runs=runs, statistic=statistic)
    size = tuple(int(n) for n in input_size)
    predictor = latency_predictor.load_predictor(
        model,
        pipeline,
        graph,
        [group.name for group in graph.groups],
        size,
        timer,
        kind=kind,
        table_dir=os.path.expanduser(table_dir) if table_dir else None,
        ratios=ratios,
        calibration_ratios=calibration_ratios,
        granularity=granularity,
    )
    predictions = {"layers": predictor.layers}
    if kind == "calibrated":
        predictions["calibrated"] = predictor.model
    # Every row round-robin against the full model (the calibration's, traced once), as
    # ratio x its latency in the latency model: a load change between rows moves no row.
    measurer = predictor.measurer.with_reference(predictor.model.full_ms)
    rows = []
    for name, widths in latency_model.uniform_and_random_widths(graph, mixes=mixes).items():
        comparison = measurer.compare_widths(widths)
        measured = comparison.ms
        row = {
            "name": name,
            "measured_ms": measured,
            "measured_as": "ratio_to_full",
            "ratio_to_full": comparison.ratio,
            "full_ms": measurer.reference_ms,
        }
        for label, predicting in predictions.items():
            predicted = predicting.predict(widths)
            row[f"{label}_ms"] = predicted
            row[f"{label}_error"] = (predicted - measured) / measured
        rows.append(row)
    return rows


def measurement_note(rows: list[dict]) -> str:
    """The line above the table that says how ``measured (ms)`` was taken."""
    if not rows or rows[0].get("measured_as") != "ratio_to_full":
        return "measured: each row timed alone."
    return (
        "measured_as: ratio_to_full: measured (ms) = the row's latency over the full model's, "
        f"timed round-robin, x the full model's {rows[0]['full_ms']:.2f} ms in the latency model."
    )


def markdown(rows: list[dict]) -> str:
    """The rows as a markdown table (errors in percent of the measured latency)."""
    labels = [label for label in ("layers", "calibrated") if f"{label}_ms" in rows[0]]
    head = ["widths", "measured (ms)"]
    for label in labels:
        head += [f"{label} (ms)", f"{label} error"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["name"], f"{row['measured_ms']:.2f}"]
        for label in labels:
            cells += [f"{row[f'{label}_ms']:.2f}", f"{100 * row[f'{label}_error']:+.1f}%"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv) -> None:
    del argv
    rows = report(
        FLAGS.config_path,
        FLAGS.input_size,
        FLAGS.latency_table_dir,
        tuple(float(r) for r in FLAGS.latency_grid),
        FLAGS.latency_statistic,
        FLAGS.latency_runs,
        kind=FLAGS.latency_model,
        calibration_ratios=tuple(float(r) for r in FLAGS.latency_calibration_grid),
        granularity=FLAGS.latency_calibration_granularity,
        mixes=FLAGS.mixes,
    )
    print(measurement_note(rows))
    print(markdown(rows))


if __name__ == "__main__":
    flags.mark_flags_as_required(["config_path"])
    cli.run_main(main)
