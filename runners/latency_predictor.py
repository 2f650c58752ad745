"""The latency predictor of compress.py's latency target and of ``runners.latency_table``.

``--latency_model calibrated`` (the default) is the per-layer model of
:mod:`core.analysis.latency_model` corrected by end-to-end timings of the full model with its
parts narrowed in random mixes, each timed round-robin against the full model and scaled by the
tables' full-model latency (:mod:`core.analysis.latency_calibration`; parts: the model's blocks,
``--latency_calibration_granularity``); ``layers`` is the per-layer model alone (cheap: no
whole-model timing but the full model's). Both are cached under ``--latency_table_dir``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

from core.analysis import latency_calibration, latency_model
from core.analysis.relative_latency import RelativeMeasurer
from core.pruning.sensitivity_units import check_granularity, make_units
from runners.common import build_model

LATENCY_MODELS = ("calibrated", "layers")


def check_latency_model(name: str) -> None:
    """Raises ValueError unless ``name`` is one of :data:`LATENCY_MODELS`."""
    if name not in LATENCY_MODELS:
        raise ValueError(
            f"--latency_model must be one of {', '.join(LATENCY_MODELS)}, got {name!r}."
        )


def layer_widths(graph, widths: Mapping[str, int]) -> dict[str, int]:
    """Conv scope -> filters for the groups in ``widths`` (others keep their full width)."""
    return {
        scope: widths[group.name]
        for group in graph.groups
        if group.name in widths
        for scope in group.producers
    }


def model_at_widths(pipeline, graph) -> Callable[[Mapping[str, int]], object]:
    """``group widths -> built model`` with those widths (random weights: latency does not
    depend on them)."""

    def build(widths: Mapping[str, int]):
        return build_model(pipeline, layer_widths=layer_widths(graph, widths))

    return build


@dataclasses.dataclass
class Predictor:
    """What :func:`load_predictor` built: ``model`` is the one to predict with."""

    model: latency_model.LatencyModel | latency_calibration.CalibratedLatencyModel
    layers: latency_model.LatencyModel
    kind: str
    table_path: str | None
    table_cached: bool
    calibration_path: str | None = None
    calibration_cached: bool = False
    # Times models against the full model, scaled by ``layers.full_ms``; the calibration's
    # mixes were timed with it, and ``measurer.with_reference`` shares its full model.
    measurer: RelativeMeasurer | None = None

    def summary(self) -> dict:
        """JSON-ready facts for a report."""
        return {
            "latency_model": self.kind,
            "latency_table": self.table_path,
            "latency_table_cached": self.table_cached,
            "latency_calibration": self.calibration_path,
            "latency_calibration_cached": self.calibration_cached,
        }


def load_predictor(
    model,
    pipeline,
    graph,
    prunable: Sequence[str],
    input_size: tuple[int, int],
    timer,
    *,
    kind: str = "calibrated",
    table_dir: str | None,
    ratios: Sequence[float] = latency_model.DEFAULT_RATIOS,
    calibration_ratios: Sequence[float] = latency_calibration.DEFAULT_CALIBRATION_RATIOS,
    granularity: str = "block",
) -> Predictor:
    """The per-layer model, and with ``kind="calibrated"`` its end-to-end calibration.

    Args:
      model: the full model, variables built.
      pipeline: its ``PipelineConfig``.
      graph: its channel graph (ties applied).
      prunable: the groups that may be narrowed (skipped groups are never timed narrowed).
      input_size: deploy (height, width).
      timer: times layers and whole models (:class:`core.analysis.latency_timer.TFCPUTimer`).
      kind: one of :data:`LATENCY_MODELS`.
      table_dir: cache folder (already expanded), None: no cache.
      ratios: the per-layer tables' width grid.
      calibration_ratios: keep ratios each part is timed at.
      granularity: calibration parts: ``block`` (the model's ``pruning_units()``) or ``group``.

    Raises:
      ValueError: an unknown ``kind`` or ``granularity``, or bad calibration ratios.
    """
    check_latency_model(kind)
    check_granularity(granularity)
    layers, table_path, table_cached = latency_model.load_or_build(
        model,
        graph,
        model_config_text=str(pipeline.model),
        input_size=input_size,
        cache_dir=table_dir,
        timer=timer,
        ratios=ratios,
    )
    sizes = {group.name: group.size for group in graph.groups}
    build = model_at_widths(pipeline, graph)
    # Builds the full model only when it first measures.
    measurer = RelativeMeasurer(build, sizes, layers.full_ms, timer, tuple(input_size))
    if kind == "layers":
        return Predictor(layers, layers, kind, table_path, table_cached, measurer=measurer)
    units = make_units(model, graph, granularity, list(prunable))
    parts = {unit.name: unit.groups for unit in units}
    if hasattr(timer, "time_pair") or hasattr(timer, "time_relative"):
        # Each mix round-robin against the full model (traced once), scaled by the tables'
        # full-model latency: the reference the search's measurements are scaled by too.
        measure = measurer
    else:  # a timer that times one model at a time (a test's oracle)

        def measure(widths: dict[str, int]) -> float:
            return timer.time_model(build(widths), tuple(input_size))

    calibrated, path, cached = latency_calibration.load_or_calibrate(
        layers,
        parts,
        sizes,
        measure,
        cache_dir=table_dir,
        ratios=calibration_ratios,
        granularity=granularity,
    )
    return Predictor(calibrated, layers, kind, table_path, table_cached, path, cached, measurer)
