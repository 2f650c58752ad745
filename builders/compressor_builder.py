"""Builds a :class:`core.pruning.FilterPruner` from a ``.prune_config`` and the compress flags.

Of the original's ``FilterPruner`` message, this uses ``node_scope`` and ``skip_node``. The
``node`` specs (target / source / following) are not needed: channel dependencies are found
from the built model (``core/pruning/dependency.py``). They are still checked: a spec whose
``source`` lies in another channel group than its ``target`` is reported, since the automatic
grouping would then prune differently from what the config asked. ``input``, ``output`` and
``compression_factor`` are ignored, as in the original (the ``--compression_factor`` flag decides).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from absl import logging

from core.pruning import FilterPruner, original_node_to_scope
from core.pruning.dependency import ChannelGraph
from protos import compressor_pb2


def resolve_node(name: str, node_scope: str, known_scopes: Collection[str]) -> str:
    """Maps an original node name (or one of our conv scopes) to a conv scope.

    A name that is already a known scope (after dropping an op suffix such as ``/Conv2D``) is
    used as is; otherwise the ``node_scope`` rules of the original apply.

    Raises:
      ValueError: the name maps to no known conv scope.
    """
    plain = original_node_to_scope(name, "")
    if plain in known_scopes:
        return plain
    scoped = original_node_to_scope(name, node_scope)
    if scoped in known_scopes:
        return scoped
    raise ValueError(
        f"prune config / --skippable_nodes: node {name!r} (read as {scoped!r}) names no conv of "
        "the model. Use conv scopes from model.named_layers() or the original's node names "
        "such as '...PSPModule/Conv/Conv2D'."
    )


def _node_scope(spec: compressor_pb2.SingleNodePruningSpec, default: str) -> str:
    return default if spec.node_scope == "null" else spec.node_scope


def build(
    prune_config: compressor_pb2.CompressionConfig | None,
    *,
    compression_factor: float,
    known_scopes: Collection[str],
    skip_nodes: Iterable[str] = (),
    soft_apply: bool = False,
) -> FilterPruner:
    """Returns the pruner for a prune config (optional) and the command-line flags.

    Args:
      prune_config: parsed ``.prune_config`` or None.
      compression_factor: fraction of filters kept (the ``--compression_factor`` flag).
      known_scopes: conv scopes of the model (``model.named_layers()``), to map node names.
      skip_nodes: extra node names or scopes never pruned (``--skippable_nodes``).
      soft_apply: zero pruned channels instead of removing them.

    Raises:
      ValueError: an unknown node name, or a config without a filter_pruner.
    """
    skip = []
    node_scope = ""
    if prune_config is not None:
        if prune_config.compression_strategy.WhichOneof("compression_strategy_oneof") is None:
            raise ValueError(
                "the prune config has no compression_strategy { filter_pruner { ... } }."
            )
        spec = prune_config.compression_strategy.filter_pruner
        node_scope = spec.node_scope
        skip.extend(resolve_node(n.name, node_scope, known_scopes) for n in spec.skip_node)
    skip.extend(resolve_node(name, node_scope, known_scopes) for name in skip_nodes if name)
    return FilterPruner(compression_factor, skip_scopes=skip, soft_apply=soft_apply)


def check_node_specs(
    prune_config: compressor_pb2.CompressionConfig | None, graph: ChannelGraph
) -> list[str]:
    """Compares the config's ``node`` specs with the discovered channel groups.

    Returns:
      One message per disagreement (also logged as warnings): a target or source that is not a
      conv of the model, or a ``source`` in another group than its ``target``.
    """
    if prune_config is None:
        return []
    pruner = prune_config.compression_strategy.filter_pruner
    known = set(graph.input_channels)
    problems = []
    for spec in pruner.node:
        scope = _node_scope(spec, pruner.node_scope)
        try:
            target = resolve_node(spec.target.name, scope, known)
            source = resolve_node(spec.source.name, scope, known) if spec.source.name else None
        except ValueError as error:
            problems.append(str(error))
            continue
        if source is not None and graph.group_of.get(target) is not graph.group_of.get(source):
            problems.append(
                f"prune config: {target} takes its mask from {source}, but they do not share "
                "channels in this model; the automatic grouping is used."
            )
    for problem in problems:
        logging.warning("%s", problem)
    return problems
