"""Channel surgery: slice (hard) or zero (soft) the pruned channels of named tensors.

Tensors are keyed by slim names as in ``model.named_variables()``:
``<scope>/weights`` [kh, kw, cin, cout], ``<scope>/depthwise_weights`` [kh, kw, c, 1],
``<scope>/BatchNorm/{gamma,beta,moving_mean,moving_variance}`` [cout], ``<scope>/biases``.

Hard surgery removes, for every pruned group, the output filters of its producers and their BN
entries, the channels of its depthwise pass-throughs (kernel axis 2 and BN), and the matching
input channels of every consumer (at the group's offset in a concatenated input).

Soft surgery keeps every shape and makes each pruned channel exactly 0 after its BN: the
producers' (and pass-throughs') filter, ``gamma``, ``beta`` and ``moving_mean`` of the channel are
zeroed, so BN computes ``gamma * (0 - 0) / sqrt(var + eps) + 0 = 0`` and ReLU/ReLU6 keep it 0;
a residual or fusion sum of zeros is 0. Consumers then read zeros from those channels, which is
why the hard-pruned network computes the same logits.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from core.pruning.dependency import ChannelGraph

BN_PARAMS = ("gamma", "beta", "moving_mean", "moving_variance")


def _channel_masks(
    graph: ChannelGraph, masks: Mapping[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Output and input keep-masks per conv scope (only convs that change)."""
    by_name = {group.name: group for group in graph.groups}
    out_keep: dict[str, np.ndarray] = {}
    in_keep: dict[str, np.ndarray] = {}
    for name, mask in masks.items():
        if name not in by_name:
            raise KeyError(f"keep-mask for unknown channel group {name!r}.")
        group = by_name[name]
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (group.size,):
            raise ValueError(
                f"keep-mask of group {name} has shape {mask.shape}, expected ({group.size},)."
            )
        for scope in (*group.producers, *group.passthrough):
            out_keep[scope] = mask
        for consumer in group.consumers:
            if consumer.scope not in in_keep:
                cin = graph.input_channels[consumer.scope]
                in_keep[consumer.scope] = np.ones(cin, dtype=bool)
            in_keep[consumer.scope][consumer.offset : consumer.offset + group.size] = mask
    return out_keep, in_keep


def hard_prune(
    graph: ChannelGraph, masks: Mapping[str, np.ndarray], tensors: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Removes the pruned channels.

    Args:
      graph: the model's channel graph.
      masks: group name -> bool [group.size] keep-mask; groups not named are kept whole.
      tensors: slim name -> array, every model variable.

    Returns:
      A new ``{slim name: array}`` with sliced shapes; other tensors are passed through.
    """
    out_keep, in_keep = _channel_masks(graph, masks)
    pruned: dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        scope, _, leaf = name.rpartition("/")
        if leaf == "weights":
            if scope in in_keep:
                value = value[:, :, in_keep[scope], :]
            if scope in out_keep:
                value = value[..., out_keep[scope]]
        elif leaf == "depthwise_weights":
            if scope in out_keep:
                value = value[:, :, out_keep[scope], :]
        elif leaf in BN_PARAMS and scope.endswith("/BatchNorm"):
            conv = scope[: -len("/BatchNorm")]
            if conv in out_keep:
                value = value[out_keep[conv]]
        pruned[name] = np.ascontiguousarray(value)
    return pruned


def soft_prune(
    graph: ChannelGraph, masks: Mapping[str, np.ndarray], tensors: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Zeroes the pruned channels (shapes unchanged); see the module docstring.

    Args, Returns: as :func:`hard_prune`, but every array keeps its shape.
    """
    out_keep, _ = _channel_masks(graph, masks)
    result: dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        scope, _, leaf = name.rpartition("/")
        value = np.array(value, copy=True)
        if leaf == "weights" and scope in out_keep:
            value[..., ~out_keep[scope]] = 0
        elif leaf == "depthwise_weights" and scope in out_keep:
            value[:, :, ~out_keep[scope], :] = 0
        elif leaf in ("gamma", "beta", "moving_mean") and scope.endswith("/BatchNorm"):
            conv = scope[: -len("/BatchNorm")]
            if conv in out_keep:
                value[~out_keep[conv]] = 0
        result[name] = value
    return result


def pruned_widths(graph: ChannelGraph, masks: Mapping[str, np.ndarray]) -> dict[str, int]:
    """Output filters of every producer conv after hard pruning: ``{scope: filters}``."""
    widths = {}
    for group in graph.groups:
        kept = int(np.sum(masks[group.name])) if group.name in masks else group.size
        for scope in group.producers:
            widths[scope] = kept
    return widths
