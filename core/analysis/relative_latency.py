"""End-to-end latency relative to the full model: each model timed round-robin against it.

A single timing on a shared machine can be off by 2x (an ICNet 0.5 at 512x1024 measured 70 ms
during a search and 99 ms a minute later). Timed round-robin with the full model, a model's
latency *ratio* to it hardly moves, because a load that slows both alike cancels; scaled by
one reference latency of the full model, it is a latency in milliseconds again. The latency
search's end-to-end checks, the calibration's mixes (:mod:`core.analysis.latency_calibration`)
and ``runners.latency_table``'s rows are all taken this way, against the latency model's
full-model latency.

The full model is built, traced and warmed up once per :class:`RelativeMeasurer` and kept for
its lifetime (a timer's ``prepare``); only the model compared with it is traced each time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

__all__ = ["Comparison", "RelativeMeasurer"]


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One model timed against the full model.

    Attributes:
      ratio: the model's latency over the full model's, timed together.
      ms: ``ratio`` times the measurer's ``reference_ms``.
      full_ms: the full model's own timing in that comparison (None when the timer reports
        the ratio only); their spread shows how much the machine's load moved.
    """

    ratio: float
    ms: float
    full_ms: float | None


class RelativeMeasurer:
    """End-to-end latency of models at given widths, relative to the full model's.

    Each model is timed round-robin against the full model (random weights: latency does not
    depend on them) and its latency is ``reference_ms`` (the latency model's full-model
    latency) times the ratio of the two timings. What the timer offers decides how:

    * ``time_pair`` (:class:`core.analysis.latency_timer.TFCPUTimer`): the two timed
      round-robin, the full model ``prepare``\\ d (traced and warmed up) once and reused;
    * ``time_relative`` only: its ratio (the full model passed as built);
    * neither (a test's oracle): the model, then the full model, each with ``time_model``.

    Args:
      build: widths of the prunable groups -> a model built at those widths.
      full_widths: every group at its full width.
      reference_ms: the full model's latency the ratios scale.
      timer: a :class:`core.analysis.latency_model.LayerTimer`.
      latency_size: (height, width) the models are timed at.
    """

    def __init__(
        self,
        build: Callable[[Mapping[str, int]], object],
        full_widths: Mapping[str, int],
        reference_ms: float,
        timer,
        latency_size,
    ):
        if not reference_ms > 0:
            raise ValueError(
                f"the full model's reference latency must be positive, got {reference_ms}; "
                "rebuild the latency tables (delete the cached file)."
            )
        self._build = build
        self._full_widths = dict(full_widths)
        # The full model and what the timer compares with, made on first use; shared with the
        # measurers of :meth:`with_reference`.
        self._full_state: dict[str, object] = {}
        self.reference_ms = float(reference_ms)
        self._timer = timer
        self._size = latency_size
        self.full_timings_ms: list[float] = []

    def with_reference(self, reference_ms: float) -> RelativeMeasurer:
        """A measurer scaling its ratios by ``reference_ms`` that shares this one's full model.

        The calibration scales by the per-layer tables' full-model latency, the latency search
        and ``runners.latency_table`` by their latency model's: one full model is built, traced
        and warmed up for all of them. ``full_timings_ms`` stays each measurer's own.
        """
        other = RelativeMeasurer(
            self._build, self._full_widths, reference_ms, self._timer, self._size
        )
        other._full_state = self._full_state
        return other

    def _full_model(self):
        """The full model, built once; and what the timer compares with (prepared once)."""
        state = self._full_state
        if not state:
            full = self._build(self._full_widths)
            prepare = getattr(self._timer, "prepare", None)
            state["reference"] = prepare(full, self._size) if prepare else full
            state["full"] = full
        return state["full"], state["reference"]

    def compare(self, model) -> Comparison:
        """Times a built model against the full model."""
        full, reference = self._full_model()
        if hasattr(self._timer, "time_pair"):
            model_ms, full_ms = self._timer.time_pair(model, reference, self._size)
            ratio = model_ms / full_ms
        elif hasattr(self._timer, "time_relative"):
            ratio, full_ms = self._timer.time_relative(model, reference, self._size), None
        else:
            model_ms = self._timer.time_model(model, self._size)
            full_ms = self._timer.time_model(full, self._size)
            ratio = model_ms / full_ms
        if full_ms is not None:
            self.full_timings_ms.append(float(full_ms))
        return Comparison(float(ratio), self.reference_ms * float(ratio), full_ms)

    def compare_widths(self, widths: Mapping[str, int]) -> Comparison:
        """Builds the model at ``widths`` (others full) and times it against the full model."""
        return self.compare(self._build(widths))

    def model_ms(self, model) -> float:
        """The latency of a built model, in the reference's milliseconds."""
        return self.compare(model).ms

    def __call__(self, widths: Mapping[str, int]) -> float:
        return self.model_ms(self._build(widths))
