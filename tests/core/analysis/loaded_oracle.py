"""A busy machine for the latency tests: an oracle timer whose load doubles after every timing.

:class:`LoadedTimer` wraps a deterministic oracle (``latency_oracle.OracleTimer`` or
``BranchOracleTimer``): a whole model's timing is the oracle's latency times the machine's
load at that moment, and the load doubles after each timing (another process starting), so
any two timings taken one after the other disagree by 2x. ``time_pair`` stands for a
round-robin timing: both models run under the same load, which then doubles. Layer timings are
the oracle's, unloaded (the tables are not what these tests are about).
"""

from __future__ import annotations

import dataclasses

from tests.core.analysis.latency_oracle import OracleTimer


@dataclasses.dataclass(frozen=True)
class Prepared:
    """What ``prepare`` returns: the model it was asked to keep ready."""

    model: object
    input_size: object


class LoadedTimer:
    """The timer interface (``time_layer``, ``time_model``, ``prepare``, ``time_pair``).

    Args:
      base: the oracle (default: an ``OracleTimer``).
      growth: the load's factor after each whole-model timing.
    """

    def __init__(self, base=None, growth: float = 2.0, **_unused):
        self.base = base if base is not None else OracleTimer()
        self.name = self.base.name
        self.statistic = self.base.statistic
        self.growth = growth
        self.load = 1.0
        self.prepared: list[object] = []
        self.pairs: list[tuple[object, object]] = []

    def time_layer(self, layer, in_channels: int, out_channels: int) -> float:
        return self.base.time_layer(layer, in_channels, out_channels)

    def _loaded(self, *models, input_size=None) -> list[float]:
        found = [self.base.time_model(model, input_size) * self.load for model in models]
        self.load *= self.growth
        return found

    def time_model(self, model, input_size=None) -> float:
        return self._loaded(model, input_size=input_size)[0]

    def prepare(self, model, input_size) -> Prepared:
        self.prepared.append(model)
        return Prepared(model, input_size)

    def time_pair(self, model, reference, input_size) -> tuple[float, float]:
        if not isinstance(reference, Prepared):
            raise AssertionError("the reference must be prepared once and reused")
        self.pairs.append((model, reference.model))
        model_ms, reference_ms = self._loaded(model, reference.model, input_size=input_size)
        return model_ms, reference_ms
