"""Builds (or reads) a config's latency table and reports predicted against measured latency.

``python -m runners.latency_table --config_path configs/x.config --input_size 1024,2048``
prints, for uniform widths 1.0, 0.75, 0.5, 0.25 and a few random per-group mixes, the latency
predicted by :mod:`core.analysis.latency_model` and the measured end-to-end latency of the
model built at those widths (random weights: latency does not depend on them).
"""

from __future__ import annotations

from absl import app, flags

from builders import config_util
from core.analysis import latency_model
from core.pruning.dependency import build_channel_graph
from runners.common import build_model
from runners.compress_latency import DEFAULT_TABLE_DIR

flags.DEFINE_string("config_path", None, "Pipeline config of the model.")
flags.DEFINE_list("input_size", ["1024", "2048"], "Deploy H,W.")
flags.DEFINE_string("latency_table_dir", DEFAULT_TABLE_DIR, "Cache folder of latency tables.")
flags.DEFINE_list("latency_grid", ["1", "0.75", "0.5", "0.25", "0.125"], "Width fractions.")
flags.DEFINE_enum("latency_statistic", "median", ["median", "min"], "Statistic of the runs.")
flags.DEFINE_integer("latency_runs", 5, "Timed runs per measurement.")
FLAGS = flags.FLAGS


def report(config_path: str, input_size, table_dir, ratios, statistic: str, runs: int) -> list:
    """The rows of :func:`core.analysis.latency_model.compare` for a config's model."""
    import os

    pipeline = config_util.load_pipeline_config(config_path)
    model = build_model(pipeline)
    graph = build_channel_graph(model)
    timer = latency_model.TFCPUTimer(runs=runs, statistic=statistic)
    size = tuple(int(n) for n in input_size)
    predictor, _, _ = latency_model.load_or_build(
        model,
        graph,
        model_config_text=str(pipeline.model),
        input_size=size,
        cache_dir=os.path.expanduser(table_dir) if table_dir else None,
        timer=timer,
        ratios=ratios,
    )

    def build(widths):
        layer_widths = {s: widths[g.name] for g in graph.groups for s in g.producers}
        return build_model(pipeline, layer_widths=layer_widths)

    sets = latency_model.uniform_and_random_widths(graph)
    return latency_model.compare(predictor, build, sets, timer, size)


def main(argv) -> None:
    del argv
    rows = report(
        FLAGS.config_path,
        FLAGS.input_size,
        FLAGS.latency_table_dir,
        tuple(float(r) for r in FLAGS.latency_grid),
        FLAGS.latency_statistic,
        FLAGS.latency_runs,
    )
    print("| widths | predicted (ms) | measured (ms) | error |\n|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['name']} | {row['predicted_ms']:.1f} | {row['measured_ms']:.1f} | "
            f"{100 * row['error']:+.1f}% |"
        )


if __name__ == "__main__":
    flags.mark_flags_as_required(["config_path"])
    app.run(main)
