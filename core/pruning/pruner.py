"""FilterPruner: one-shot L1 filter pruning of a built ICNet / PSPNet (Li et al. 2017).

Usage::

    pruner = FilterPruner(compression_factor=0.5, skip_scopes=["PSPModule/Conv"])
    result = pruner.prune(model)                    # tensors read from the model's variables
    pruned = build_model(layer_widths=result.layer_widths)
    assign_named_tensors(pruned.named_variables(), result.tensors, "pruned")

``compression_factor`` is the fraction of filters KEPT, as in the original: every prunable
channel group of ``n`` channels keeps ``int(n * factor)`` (at least 1).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

import numpy as np
from absl import logging

from core.pruning import ranking, surgery
from core.pruning.dependency import ChannelGraph, build_channel_graph


@dataclasses.dataclass
class PruneResult:
    """What :meth:`FilterPruner.prune` computed.

    Attributes:
      graph: the model's channel graph.
      masks: group name -> bool [group.size] keep-mask, for every pruned group.
      scores: group name -> float64 [group.size] summed L1 norms (pruned groups).
      tensors: slim name -> array: sliced (hard) or zeroed (soft) model variables.
      layer_widths: conv scope -> output filters of every non-depthwise, non-prediction conv
        after pruning (the original widths when ``soft``).
      soft: whether the channels were zeroed instead of removed.
    """

    graph: ChannelGraph
    masks: dict[str, np.ndarray]
    scores: dict[str, np.ndarray]
    tensors: dict[str, np.ndarray]
    layer_widths: dict[str, int]
    soft: bool


class FilterPruner:
    """Prunes every channel group that no skipped conv belongs to.

    Args:
      compression_factor: fraction of filters kept, in (0, 1].
      skip_scopes: conv scopes never pruned; a group is skipped whole if any of its producers
        is (its channels are shared, so one member fixes them all). Naming a depthwise conv
        skips its input's group.
      soft_apply: zero the pruned channels (shapes unchanged) instead of removing them.
    """

    def __init__(
        self,
        compression_factor: float = 0.5,
        skip_scopes: Iterable[str] = (),
        soft_apply: bool = False,
    ):
        ranking.kept_count(1, compression_factor)  # validates the factor
        self.compression_factor = float(compression_factor)
        self.skip_scopes = tuple(skip_scopes)
        self.soft_apply = bool(soft_apply)

    def compute_masks(
        self, graph: ChannelGraph, tensors: Mapping[str, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Ranks every prunable group; returns (masks, scores) keyed by group name.

        Raises:
          ValueError: a skip scope names no conv of the model.
        """
        known = set(graph.input_channels)
        unknown = sorted(set(self.skip_scopes) - known)
        if unknown:
            raise ValueError(
                f"skipped node(s) {unknown} name no conv of {graph.model_name}; use conv scopes "
                f"such as {sorted(known)[:2]} (see model.named_layers())."
            )
        skipped = {id(graph.group_of[s]) for s in self.skip_scopes if s in graph.group_of}
        masks, scores = {}, {}
        for group in graph.groups:
            if id(group) in skipped:
                logging.info("Skipping group %s (%d channels).", group.name, group.size)
                continue
            scores[group.name] = ranking.group_scores(group.producers, tensors)
            keep = ranking.kept_count(group.size, self.compression_factor)
            masks[group.name] = ranking.keep_mask(scores[group.name], keep)
            logging.debug(
                "Group %s: keep %d of %d (producers %s).",
                group.name,
                keep,
                group.size,
                ", ".join(group.producers),
            )
        return masks, scores

    def prune(self, model, tensors: Mapping[str, np.ndarray] | None = None) -> PruneResult:
        """Ranks, masks and slices (or zeroes) the model's channels.

        Args:
          model: a built ICNet or PSPNet (its structure gives the channel groups).
          tensors: slim name -> array of every model variable (e.g. read from a checkpoint);
            defaults to the model's current variable values.

        Returns:
          A :class:`PruneResult`.
        """
        graph = build_channel_graph(model)
        if tensors is None:
            tensors = {name: v.numpy() for name, v in model.named_variables().items()}
        masks, scores = self.compute_masks(graph, tensors)
        if self.soft_apply:
            result_tensors = surgery.soft_prune(graph, masks, tensors)
            widths = surgery.pruned_widths(graph, {})
        else:
            result_tensors = surgery.hard_prune(graph, masks, tensors)
            widths = surgery.pruned_widths(graph, masks)
        kept = sum(int(m.sum()) for m in masks.values())
        total = sum(m.size for m in masks.values())
        logging.info(
            "Pruned %d of %d channel groups of %s: kept %d of %d channels (%s).",
            len(masks),
            len(graph.groups),
            graph.model_name,
            kept,
            total,
            "soft: zeroed" if self.soft_apply else "hard: removed",
        )
        return PruneResult(graph, masks, scores, result_tensors, widths, self.soft_apply)


def original_node_to_scope(name: str, node_scope: str = "") -> str:
    """Maps an original prune-config node name to a conv scope.

    ``...PSPModule/Conv/Conv2D`` -> ``PSPModule/Conv`` (a leading ``...`` means absolute);
    ``block1/unit_1/bottleneck_v1/conv1/Conv2D`` with node scope
    ``SharedFeatureExtractor/resnet_v1_50`` -> ``SharedFeatureExtractor/resnet_v1_50/block1/...``.
    Op suffixes (``/Conv2D``, ``/depthwise``, ``/BatchNorm/FusedBatchNorm``) are dropped; a plain
    conv scope passes through unchanged.
    """
    name = name.strip()
    if name.startswith("..."):
        name = name[3:]
    elif node_scope:
        name = f"{node_scope.rstrip('/')}/{name}"
    for suffix in ("/BatchNorm/FusedBatchNorm", "/Conv2D", "/depthwise"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
