"""``compress.py --target_latency_ms`` / ``--target_speedup``: prune to a latency on this machine.

Config in, plain values out to the library: builds (or reads from its cache) the latency model
of the full model at ``--latency_input_size`` (:mod:`runners.latency_predictor`: by default the
per-layer tables calibrated end to end, ``--latency_model layers`` the tables alone), turns a
speedup into a latency target, scores candidates on a few batches of the config's eval records
after recalibrating batch norm on a few training batches (:class:`WidthScorer`, the sensitivity
analysis's machinery), runs the greedy search (:mod:`core.pruning.latency_search`) and returns
the hard-pruned tensors for ``runners/compress.py`` to save exactly as a factor prune. After
the pruned model is built, :func:`report` measures it end to end and writes the widths, the
trace and the plot.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from absl import logging

from builders import config_util, dataset_builder
from core.analysis import latency_calibration
from core.analysis import latency_model as latency_models
from core.analysis.relative_latency import RelativeMeasurer
from core.pruning import latency_search, latency_search_report, sensitivity, surgery
from core.pruning.pruner import PruneResult
from core.pruning.sensitivity_units import make_units
from runners import latency_predictor, recalibrate

DEFAULT_TABLE_DIR = os.path.join("~", ".cache", "fast_semantic_segmentation", "latency")


@dataclasses.dataclass(frozen=True)
class SearchOptions:
    """The search's knobs (compress.py flags of the same names, ``search_`` prefixed)."""

    target_latency_ms: float | None = None
    target_speedup: float | None = None
    steps: int = 5
    eval_batches: int = 10
    recalibrate_batches: int = 5
    granularity: str = "group"
    width_multiple: int = 1
    table_dir: str | None = DEFAULT_TABLE_DIR
    statistic: str = "median"
    timing_runs: int = 5
    ratios: tuple[float, ...] = latency_models.DEFAULT_RATIOS
    latency_model: str = "calibrated"  # or "layers" (runners/latency_predictor.py)
    calibration_ratios: tuple[float, ...] = latency_calibration.DEFAULT_CALIBRATION_RATIOS
    calibration_granularity: str = "block"


@dataclasses.dataclass
class SearchOutput:
    """What :func:`search_prune` found; :func:`report` completes it."""

    prune: PruneResult
    search: latency_search.SearchResult
    latency_model: latency_models.LatencyModel | latency_calibration.CalibratedLatencyModel
    timer: latency_models.TFCPUTimer
    table_path: str | None
    table_cached: bool
    predictor: latency_predictor.Predictor | None = None
    measurer: RelativeMeasurer | None = None


def check_targets(
    target_latency_ms: float | None,
    target_speedup: float | None,
    compression_factor: float | None,
    soft_apply: bool,
    latency_input_size: Sequence[int] | None,
) -> bool:
    """True when a latency target is asked for; ValueError for a flag combination that is not.

    Raises:
      ValueError: both targets, a target with ``--compression_factor`` or ``--soft_apply``, a
        target without ``--latency_input_size``, or a non-positive target / speedup <= 1.
    """
    given = [n for n, v in (("--target_latency_ms", target_latency_ms),
                            ("--target_speedup", target_speedup)) if v is not None]  # fmt: skip
    if not given:
        return False
    if len(given) == 2:
        raise ValueError("--target_latency_ms and --target_speedup are alternatives; give one.")
    if compression_factor is not None:
        raise ValueError(
            f"{given[0]} and --compression_factor are alternatives: the search picks each "
            "unit's width; drop --compression_factor."
        )
    if soft_apply:
        raise ValueError(f"{given[0]} needs hard pruning (it measures the pruned model); drop "
                         "--soft_apply.")  # fmt: skip
    if not latency_input_size:
        raise ValueError(
            f"{given[0]} needs --latency_input_size H,W: the deploy input size the latency is "
            "measured at (e.g. 1024,2048)."
        )
    if target_latency_ms is not None and not target_latency_ms > 0:
        raise ValueError(f"--target_latency_ms must be positive, got {target_latency_ms}.")
    if target_speedup is not None and not target_speedup > 1:
        raise ValueError(f"--target_speedup must be above 1, got {target_speedup}.")
    return True


def _scorer(model, graph, pipeline, options: SearchOptions) -> latency_search.WidthScorer:
    if not pipeline.HasField("eval_input_reader"):
        raise config_util.ConfigError(
            "the config has no eval_input_reader: the latency search scores candidates on eval "
            "records; add eval_input_reader { tf_record_input_reader { input_path: '...' } }."
        )
    if options.eval_batches < 1:
        raise ValueError(f"--search_eval_batches must be >= 1, got {options.eval_batches}.")
    num_batches, why_not = recalibrate.resolve_num_batches(
        pipeline, options.recalibrate_batches, "--search_recalibrate_batches"
    )
    if not num_batches:
        logging.info("Search candidates are scored without BN recalibration: %s.", why_not)
    eval_config = pipeline.eval_config
    dataset = dataset_builder.build_eval_dataset(pipeline.eval_input_reader, eval_config)
    scorer = sensitivity.MiouScorer(
        model, dataset.take(options.eval_batches), model.num_classes, eval_config.ignore_label
    )
    recalibrator = (
        recalibrate.make_recalibrator(model, pipeline, num_batches) if num_batches else None
    )
    return latency_search.WidthScorer(model, graph, scorer, recalibrator)


def search_prune(
    model, pipeline, pruner, latency_size: tuple[int, int], options: SearchOptions
) -> SearchOutput:
    """Latency model, target, search, and the hard prune at the chosen widths.

    Args:
      model: the full model, restored from the checkpoint.
      pipeline: its ``PipelineConfig``.
      pruner: the :class:`core.pruning.FilterPruner` of the prune config and flags (its ties
        and skips; its factor is not used).
      latency_size: deploy (height, width).
      options: :class:`SearchOptions`.

    Raises:
      ValueError: a target that cannot be reached (with the closest reachable latency), or a
        bad option; ConfigError: no eval reader.
    """
    latency_search.allowed_widths(1, options.width_multiple)  # validates it early
    latency_predictor.check_latency_model(options.latency_model)
    graph = pruner.channel_graph(model)
    tensors = {name: v.numpy() for name, v in model.named_variables().items()}
    prunable, _ = pruner.compute_masks(graph, tensors)  # validates the skips; masks unused
    sizes = {group.name: group.size for group in graph.groups if group.name in prunable}
    if not sizes:
        raise ValueError("every channel group is skipped (--skippable_nodes); nothing to prune.")
    timer = latency_models.TFCPUTimer(runs=options.timing_runs, statistic=options.statistic)
    table_dir = os.path.expanduser(options.table_dir) if options.table_dir else None
    loaded = latency_predictor.load_predictor(
        model,
        pipeline,
        graph,
        list(sizes),
        latency_size,
        timer,
        kind=options.latency_model,
        table_dir=table_dir,
        ratios=options.ratios,
        calibration_ratios=options.calibration_ratios,
        granularity=options.calibration_granularity,
    )
    predictor = loaded.model
    target = options.target_latency_ms or predictor.full_ms / options.target_speedup
    units = make_units(model, graph, options.granularity, list(sizes))
    scorer = _scorer(model, graph, pipeline, options)
    # The calibration's full model (already traced if it was timed now), scaled by the
    # predictor's full-model latency.
    measurer = loaded.measurer.with_reference(predictor.full_ms)
    result = latency_search.search(
        predictor,
        units,
        sizes,
        target,
        scorer,
        steps=options.steps,
        width_multiple=options.width_multiple,
        measure=measurer,
    )
    masks = latency_search.keep_masks(graph, result.widths, tensors)
    prune = PruneResult(
        graph=graph,
        masks=masks,
        scores={},
        tensors=surgery.hard_prune(graph, masks, tensors),
        layer_widths=surgery.pruned_widths(graph, masks),
        soft=False,
    )
    return SearchOutput(
        prune, result, predictor, timer, loaded.table_path, loaded.table_cached, loaded, measurer
    )


def report(output: SearchOutput, pruned, latency_size: tuple[int, int], output_dir: str) -> dict:
    """Measures the pruned model end to end; writes widths, trace and plot; summary entries."""
    if output.measurer is not None:
        measured = output.measurer.model_ms(pruned)
    else:
        measured = output.timer.time_model(pruned, latency_size)
    result = output.search
    latency = {
        "target_ms": result.target_ms,
        "predicted_ms": result.predicted_ms,
        "measured_ms": measured,
        # How measured_ms was taken: its ratio to the full model, timed round-robin, times
        # unpruned_ms (RelativeMeasurer), or one timing alone.
        "measured_as": "ratio_to_full" if output.measurer is not None else "single",
        "unpruned_ms": output.latency_model.full_ms,
        "measured_speedup": output.latency_model.full_ms / measured,
        "latency_input_size": list(latency_size),
        "latency_statistic": output.timer.statistic,
        "machine": output.latency_model.key["machine"],
        "latency_table": output.table_path,
        "latency_table_cached": output.table_cached,
        **(output.predictor.summary() if output.predictor else {}),
        "search_steps": result.steps,
        "search_candidates": len(result.candidates),
        "search_seconds": result.seconds,
        "search_measured_ms": result.measured_ms,
        "baseline_miou": result.baseline_miou,
        "final_search_miou": next(
            (c.miou for c in reversed(result.candidates) if c.chosen), result.baseline_miou
        ),
    }
    paths = latency_search_report.write_report(
        result, output.prune.layer_widths, latency, output_dir
    )
    logging.info(
        "Latency target %.2f ms: predicted %.2f ms, measured %.2f ms (unpruned %.2f ms).",
        result.target_ms,
        result.predicted_ms,
        measured,
        output.latency_model.full_ms,
    )
    return {"latency_search": {**latency, "files": paths}}
