"""FilterPruner: one-shot L1 filter pruning of a built ICNet / PSPNet (Li et al. 2017).

Usage::

    pruner = FilterPruner(compression_factor=0.5, skip_scopes=["PSPModule/Conv"])
    result = pruner.prune(model)                    # tensors read from the model's variables
    pruned = build_model(layer_widths=result.layer_widths)
    assign_named_tensors(pruned.named_variables(), result.tensors, "pruned")

``compression_factor`` is the fraction of filters KEPT, as in the original: every prunable
channel group of ``n`` channels keeps ``int(n * factor)`` (at least 1).

Node specs (a prune config's ``node`` entries, resolved to conv scopes by
``builders/compressor_builder.py``) override the automatic plan where they add to it; they
cannot untie what the model's structure ties (a residual add or a fusion sum needs one mask, or
the pruned model would compute something else):

* ``source``: the target takes the source's keep-mask. Their channel groups are merged and ranked
  together by summed L1 norms; if the automatic plan already ties them nothing changes. The two
  convs must have as many filters, and both must write channels of their own (not a prediction
  head, not a depthwise conv, which follows its input).
* ``following``: checked, not obeyed blindly. Each listed conv must read the target's channels
  (directly, through a concat, resize or pooling, or as a depthwise conv) and each listed batch
  norm must normalise them. Consumers the spec omits are still sliced: the pruned model would
  not build otherwise.
* Convs named in no spec are pruned automatically, as in the original (which pruned every conv it
  did not skip). So a prune config only adds ties, skips and checks.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from absl import logging

from core.pruning import ranking, surgery
from core.pruning.dependency import ChannelGraph, ChannelGroup, build_channel_graph


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


@dataclasses.dataclass(frozen=True)
class NodeSpec:
    """One ``node`` entry of a prune config, with names resolved to conv scopes.

    Attributes:
      target: the conv the spec is about.
      source: the conv whose keep-mask ``target`` takes, or None.
      following_convs: convs the config says read the target's channels.
      following_batch_norms: convs whose batch norm the config says normalises them.
      label: where the spec comes from, for messages (``"x.prune_config, node 3"``).
    """

    target: str
    source: str | None = None
    following_convs: tuple[str, ...] = ()
    following_batch_norms: tuple[str, ...] = ()
    label: str = "prune config"


def _did_you_mean(scope: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(scope, sorted(known), n=1, cutoff=0.75)
    return f" Did you mean {close[0]!r}?" if close else ""


def _producer_group(graph: ChannelGraph, scope: str, role: str, spec: NodeSpec) -> ChannelGroup:
    """The group ``scope`` writes, or a ValueError saying why it writes none."""
    if scope not in graph.input_channels:
        raise ValueError(
            f"{spec.label}: {role} {scope!r} names no conv of {graph.model_name}."
            f"{_did_you_mean(scope, graph.input_channels)} Conv scopes are listed by "
            "model.named_layers()."
        )
    group = graph.group_of.get(scope)
    if group is None or scope not in group.producers:
        kind = "a depthwise conv (its channels are its input's)" if group else "a prediction conv"
        raise ValueError(
            f"{spec.label}: {role} {scope} is {kind}; it has no filters of its own to prune "
            "or to share, so it cannot be a target or a source. Name the conv that writes "
            "these channels instead."
        )
    return group


def apply_node_specs(graph: ChannelGraph, specs: Sequence[NodeSpec]) -> None:
    """Merges the groups that ``source`` entries tie, then checks every ``following`` list.

    See the module docstring for the semantics.

    Raises:
      ValueError: naming the spec and layer: an unknown conv, a target or source without filters
        of its own, a source of another width ("mismatched source"), or a ``following`` entry
        that does not read or normalise the target's channels.
    """
    for spec in specs:
        target = _producer_group(graph, spec.target, "target", spec)
        if spec.source is None:
            continue
        source = _producer_group(graph, spec.source, "source", spec)
        if target is source:
            continue  # the automatic plan ties them already
        if target.size != source.size:
            raise ValueError(
                f"{spec.label}: mismatched source: target {spec.target} writes {target.size} "
                f"channels but its source {spec.source} writes {source.size}; a target can only "
                "take the keep-mask of a conv with as many filters. Remove the source or name a "
                "conv of the same width."
            )
        merged = graph.merge(target, source)
        logging.info(
            "%s: %s takes the keep-mask of %s; group %s now ranks producers %s.",
            spec.label,
            spec.target,
            spec.source,
            merged.name,
            ", ".join(merged.producers),
        )
    listed: dict[int, set[str]] = {}
    for spec in specs:
        group = graph.group_of[spec.target]
        readers = {consumer.scope for consumer in group.consumers} | set(group.passthrough)
        for scope in spec.following_convs:
            if scope not in readers:
                if scope not in graph.input_channels:
                    hint = _did_you_mean(scope, graph.input_channels)
                    raise ValueError(
                        f"{spec.label}: following {scope!r} names no conv of "
                        f"{graph.model_name}.{hint}"
                    )
                raise ValueError(
                    f"{spec.label}: {scope} is listed as following {spec.target}, but it does "
                    f"not read {spec.target}'s channels; they are read by "
                    f"{', '.join(sorted(readers)) or 'no conv'}. Fix or remove the entry."
                )
        writers = set(group.producers) | set(group.passthrough)
        for scope in spec.following_batch_norms:
            if scope not in writers:
                raise ValueError(
                    f"{spec.label}: {scope}/BatchNorm is listed as following {spec.target}, but "
                    f"it normalises {scope}'s channels, not {spec.target}'s; the batch norms of "
                    f"those are the ones of {', '.join(sorted(writers))}. Fix or remove the entry."
                )
        listed.setdefault(id(group), set()).update(spec.following_convs)
    for group in graph.groups:
        if id(group) not in listed:
            continue
        omitted = sorted({c.scope for c in group.consumers} - listed[id(group)])
        if omitted:
            logging.info(
                "Prune config: group %s is also read by %s, which no `following` entry lists; "
                "their input channels are sliced too (the pruned model needs it).",
                group.name,
                ", ".join(omitted),
            )


class FilterPruner:
    """Prunes every channel group that no skipped conv belongs to.

    Args:
      compression_factor: fraction of filters kept, in (0, 1].
      skip_scopes: conv scopes never pruned; a group is skipped whole if any of its producers
        is (its channels are shared, so one member fixes them all). Naming a depthwise conv
        skips its input's group.
      soft_apply: zero the pruned channels (shapes unchanged) instead of removing them.
      node_specs: a prune config's ``node`` entries (ties and checks, see the module docstring).
    """

    def __init__(
        self,
        compression_factor: float = 0.5,
        skip_scopes: Iterable[str] = (),
        soft_apply: bool = False,
        node_specs: Sequence[NodeSpec] = (),
    ):
        ranking.kept_count(1, compression_factor)  # validates the factor
        self.compression_factor = float(compression_factor)
        self.skip_scopes = tuple(skip_scopes)
        self.soft_apply = bool(soft_apply)
        self.node_specs = tuple(node_specs)

    def channel_graph(self, model) -> ChannelGraph:
        """The model's channel groups with the node specs' ties applied (and checked)."""
        graph = build_channel_graph(model)
        apply_node_specs(graph, self.node_specs)
        return graph

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
        graph = self.channel_graph(model)
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


BATCH_NORM_SUFFIXES = ("/BatchNorm/FusedBatchNorm", "/BatchNorm/FusedBatchNormV3", "/BatchNorm")


def original_node_to_scope(name: str, node_scope: str = "") -> str:
    """Maps an original prune-config node name to a conv scope.

    ``...PSPModule/Conv/Conv2D`` -> ``PSPModule/Conv`` (a leading ``...`` means absolute);
    ``block1/unit_1/bottleneck_v1/conv1/Conv2D`` with node scope
    ``SharedFeatureExtractor/resnet_v1_50`` -> ``SharedFeatureExtractor/resnet_v1_50/block1/...``.
    Op suffixes (``/Conv2D``, ``/depthwise``, ``/BatchNorm/FusedBatchNorm``, ``/BatchNorm``) are
    dropped, so a batch norm maps to its conv; a plain conv scope passes through unchanged.
    """
    name = name.strip()
    if name.startswith("..."):
        name = name[3:]
    elif node_scope:
        name = f"{node_scope.rstrip('/')}/{name}"
    for suffix in BATCH_NORM_SUFFIXES + ("/Conv2D", "/depthwise"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
