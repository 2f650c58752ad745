"""Filter pruning (Li et al. 2017): channel groups, L1 ranking, channel surgery, the pruner."""

from core.pruning.dependency import ChannelGraph, ChannelGroup, Consumer, build_channel_graph
from core.pruning.pruner import FilterPruner, PruneResult, original_node_to_scope
from core.pruning.surgery import hard_prune, pruned_widths, soft_prune

__all__ = [
    "ChannelGraph",
    "ChannelGroup",
    "Consumer",
    "FilterPruner",
    "PruneResult",
    "build_channel_graph",
    "hard_prune",
    "original_node_to_scope",
    "pruned_widths",
    "soft_prune",
]
