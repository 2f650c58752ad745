"""L1-norm filter ranking (Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017).

The importance of output channel ``j`` of a conv with kernel ``[kh, kw, cin, cout]`` is
``sum(|w[:, :, :, j]|)`` over kernel height, width and input channels. The top
``int(cout * factor)`` channels are kept, in their original order.

Shared masks: when several convs write one channel space (a residual add or a CFF sum), the
group's score of channel ``j`` is the **sum** of the producers' L1 norms of filter ``j``. Li et
al. rank a residual block by its projection shortcut alone; the original project copied the
shortcut's mask onto every ``conv3``. Summing uses every filter that writes the channel (identity
shortcuts have no filter, and ICNet's CFF sums have no "shortcut" to prefer), and it reduces to
the single-filter rule for ungrouped convs. Depthwise convs are never ranked: they follow their
input's mask.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def filter_l1_norms(kernel: np.ndarray) -> np.ndarray:
    """L1 norm of every output filter.

    Args:
      kernel: float [kh, kw, cin, cout].

    Returns:
      float64 [cout].
    """
    if kernel.ndim != 4:
        raise ValueError(f"expected a conv kernel [kh, kw, cin, cout], got shape {kernel.shape}.")
    return np.abs(kernel.astype(np.float64)).sum(axis=(0, 1, 2))


def group_scores(producers: list[str], tensors: Mapping[str, np.ndarray]) -> np.ndarray:
    """Summed filter L1 norms of the producers of one group: float64 [channels]."""
    total = None
    for scope in producers:
        name = f"{scope}/weights"
        if name not in tensors:
            raise KeyError(f"no kernel {name!r} among the tensors to prune.")
        norms = filter_l1_norms(tensors[name])
        if total is not None and norms.shape != total.shape:
            raise ValueError(
                f"{scope} has {norms.shape[0]} filters but the other convs of its group have "
                f"{total.shape[0]}."
            )
        total = norms if total is None else total + norms
    if total is None:
        raise ValueError("a channel group needs at least one producer conv.")
    return total


def kept_count(channels: int, factor: float) -> int:
    """``int(channels * factor)``, at least 1 (a conv cannot have 0 filters)."""
    if not 0.0 < factor <= 1.0:
        raise ValueError(
            f"compression_factor must be in (0, 1] (the fraction of filters kept), got {factor}."
        )
    return max(1, int(channels * factor))


def keep_mask(scores: np.ndarray, keep: int) -> np.ndarray:
    """Boolean [channels] mask of the ``keep`` highest scores; ties keep the lower index.

    Args:
      scores: float [channels].
      keep: number of channels to keep, 1 .. channels.
    """
    if not 1 <= keep <= scores.shape[0]:
        raise ValueError(f"cannot keep {keep} of {scores.shape[0]} channels.")
    order = np.argsort(-scores, kind="stable")
    mask = np.zeros(scores.shape[0], dtype=bool)
    mask[order[:keep]] = True
    return mask
