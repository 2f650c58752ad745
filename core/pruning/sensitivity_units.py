"""Sensitivity analysis's vocabulary: units, measurements, the result, and the flag checks.

A *unit* is one part of the model pruned alone: a channel group (``granularity="group"``) or
one of the model's named parts (``granularity="block"``), which the model declares through the
contract's ``pruning_units()`` (``models/segmentation_model.py``): ``stem``, ``block1`` ..
``block4``, ``expanded_conv_a-b`` (a MobileNetV2 stage), ``FastPSPModule`` / ``PSPModule``,
``full_branch``, ``CascadeFeatureFusion``, ... A group belongs to the unit that holds its first
producer conv; a group in no declared unit is named after the first part of its scope.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from core.pruning.dependency import ChannelGraph

GRANULARITIES = ("block", "group")
DEFAULT_RATIOS = (0.75, 0.5, 0.25)


@dataclasses.dataclass(frozen=True)
class Unit:
    """One part of the model pruned alone: ``name`` and its channel groups' names."""

    name: str
    groups: tuple[str, ...]
    width: int  # channels of its groups together


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One unit pruned at one keep ratio."""

    unit: str
    ratio: float
    kept: int  # channels kept, over the unit's groups
    miou: float
    drop: float  # baseline mIoU - miou
    params_removed: int


@dataclasses.dataclass
class SensitivityResult:
    """Everything the analysis measured; :meth:`to_dict` is what ``sensitivity.json`` holds."""

    model: str
    granularity: str
    ratios: tuple[float, ...]
    baseline_miou: float
    num_images: int
    total_params: int
    units: list[Unit]
    measurements: list[Measurement]
    skipped_groups: list[str]
    seconds: float
    checkpoint: str | None = None  # set by runners/sensitivity.py
    # Training images each scored model's batch norm was recalibrated on (0: not recalibrated).
    recalibration_images: int = 0

    def for_unit(self, name: str) -> dict[float, Measurement]:
        """``{ratio: measurement}`` of one unit."""
        return {m.ratio: m for m in self.measurements if m.unit == name}

    def to_dict(self) -> dict:
        units = []
        for unit in self.units:
            rows = [dataclasses.asdict(m) for m in self.for_unit(unit.name).values()]
            for row in rows:
                del row["unit"]
                row["params_removed_share"] = row["params_removed"] / max(self.total_params, 1)
            units.append({**dataclasses.asdict(unit), "results": rows})
        fields = dataclasses.asdict(self)
        fields.update(units=units, ratios=list(self.ratios))
        del fields["measurements"]
        return fields


def parse_ratios(values: Sequence[float | str]) -> tuple[float, ...]:
    """Keep ratios from numbers or flag strings, unique, largest first.

    Raises:
      ValueError: no ratio, a non-number, or a ratio outside (0, 1].
    """
    ratios = set()
    for value in values:
        try:
            ratio = float(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"--ratios: {value!r} is not a number; pass e.g. 0.75,0.5,0.25."
            ) from None
        if not 0.0 < ratio <= 1.0:
            raise ValueError(
                f"--ratios: keep ratio {value!r} is not in (0, 1]; a ratio is the fraction of "
                "filters KEPT (0.75 prunes a quarter), as compress.py's --compression_factor."
            )
        ratios.add(ratio)
    if not ratios:
        raise ValueError("--ratios is empty; pass keep ratios such as 0.75,0.5,0.25.")
    return tuple(sorted(ratios, reverse=True))


def check_granularity(granularity: str) -> None:
    """Raises ValueError unless ``granularity`` is one of :data:`GRANULARITIES`."""
    if granularity not in GRANULARITIES:
        raise ValueError(
            f"--granularity must be one of {', '.join(GRANULARITIES)}, got {granularity!r}."
        )


def block_names(model, graph: ChannelGraph) -> dict[str, str]:
    """Group name -> the name of the model's ``pruning_units()`` entry holding its first producer.

    Args:
      model: a model implementing the contract's ``pruning_units``.
      graph: its channel graph.
    """
    unit_of = {}
    for name, scopes in model.pruning_units().items():
        for scope in scopes:
            unit_of.setdefault(scope, name)
    return {
        group.name: unit_of.get(group.name, group.name.split("/", 1)[0]) for group in graph.groups
    }


def make_units(model, graph: ChannelGraph, granularity: str, prunable: Sequence[str]) -> list[Unit]:
    """The units of ``granularity`` over the ``prunable`` groups, in model order.

    Raises:
      ValueError: an unknown granularity.
    """
    check_granularity(granularity)
    wanted = set(prunable)
    groups = [group for group in graph.groups if group.name in wanted]
    if granularity == "group":
        return [Unit(g.name, (g.name,), g.size) for g in groups]
    blocks = block_names(model, graph)
    members: dict[str, list] = {}
    for group in groups:
        members.setdefault(blocks[group.name], []).append(group)
    return [
        Unit(name, tuple(g.name for g in found), sum(g.size for g in found))
        for name, found in members.items()
    ]
