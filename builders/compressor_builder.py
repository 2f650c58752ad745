"""Builds a :class:`core.pruning.FilterPruner` from a ``.prune_config`` and the compress flags.

Every field of the original's ``FilterPruner`` message that decides what is pruned is used:

* ``skip_node``: convs never pruned (with their whole channel group);
* ``node``: target / source / following specs. A ``source`` ties the target's keep-mask to the
  source's; ``following`` entries are checked against the consumers the model really has (see
  ``core/pruning/pruner.py`` for the exact semantics). Convs named in no spec are still pruned
  automatically, as the original pruned every conv it did not skip, so a config only adds ties;
* ``node_scope`` (and a spec's own ``node_scope``, ``"null"`` = inherit): the prefix of names.

Names are our conv scopes (``SharedFeatureExtractor/resnet_v1_50/block1/unit_1/bottleneck_v1/
conv1``, a batch norm as ``<conv scope>/BatchNorm``), relative to ``node_scope`` or full, or the
original's TF1 node names (``.../conv1/Conv2D``, ``.../BatchNorm/FusedBatchNorm``, ``...`` for
an absolute name). ``input``, ``output`` and ``compression_factor`` are ignored, as in the
original (the channel graph comes from the model; the ``--compression_factor`` flag decides).
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable

from core.pruning.pruner import BATCH_NORM_SUFFIXES, FilterPruner, NodeSpec, original_node_to_scope
from protos import compressor_pb2


def resolve_node(
    name: str,
    node_scope: str,
    known_scopes: Collection[str],
    what: str = "prune config / --skippable_nodes",
) -> str:
    """Maps an original node name (or one of our conv scopes) to a conv scope.

    A name that is already a known scope (after dropping an op suffix such as ``/Conv2D``) is
    used as is; otherwise the ``node_scope`` rules of the original apply.

    Args:
      name: the name as written.
      node_scope: the prefix for relative names.
      known_scopes: conv scopes of the model.
      what: where the name comes from, for the error message.

    Raises:
      ValueError: the name maps to no known conv scope.
    """
    plain = original_node_to_scope(name, "")
    if plain in known_scopes:
        return plain
    scoped = original_node_to_scope(name, node_scope)
    if scoped in known_scopes:
        return scoped
    close = difflib.get_close_matches(scoped, sorted(known_scopes), n=1, cutoff=0.75)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(
        f"{what}: node {name!r} (read as {scoped!r}) names no conv of the model.{hint} Use conv "
        "scopes from model.named_layers() or the original's node names such as "
        "'...PSPModule/Conv/Conv2D'."
    )


def _is_batch_norm(name: str) -> bool:
    return name.strip().endswith(BATCH_NORM_SUFFIXES)


def _node_scope(spec: compressor_pb2.SingleNodePruningSpec, default: str) -> str:
    return default if spec.node_scope == "null" else spec.node_scope


def node_specs(
    pruner_config: compressor_pb2.FilterPruner,
    known_scopes: Collection[str],
    source: str = "prune config",
) -> list[NodeSpec]:
    """Resolves the ``node`` entries of a ``filter_pruner`` message to conv scopes.

    Args:
      pruner_config: the ``filter_pruner`` message.
      known_scopes: conv scopes of the model.
      source: the config's path or description, for messages.

    Raises:
      ValueError: naming the spec and the entry: an unknown name, a missing target, or a batch
        norm given as target or source.
    """
    specs = []
    for index, spec in enumerate(pruner_config.node, start=1):
        label = f"{source}, node {index}"
        if not spec.target.name:
            raise ValueError(f"{label}: the spec has no target {{ name: ... }}.")
        scope = _node_scope(spec, pruner_config.node_scope)
        names = {"target": spec.target.name}
        if spec.source.name:
            names["source"] = spec.source.name
        resolved = {}
        for role, name in names.items():
            if _is_batch_norm(name):
                raise ValueError(
                    f"{label}: {role} {name!r} is a batch norm; a {role} must be a conv "
                    "(its batch norm follows it automatically)."
                )
            resolved[role] = resolve_node(name, scope, known_scopes, f"{label} ({role})")
        convs, batch_norms = [], []
        for name in (entry.name for entry in spec.following):
            conv = resolve_node(name, scope, known_scopes, f"{label} (following)")
            (batch_norms if _is_batch_norm(name) else convs).append(conv)
        specs.append(
            NodeSpec(
                target=resolved["target"],
                source=resolved.get("source"),
                following_convs=tuple(convs),
                following_batch_norms=tuple(batch_norms),
                label=label,
            )
        )
    return specs


def build(
    prune_config: compressor_pb2.CompressionConfig | None,
    *,
    compression_factor: float,
    known_scopes: Collection[str],
    skip_nodes: Iterable[str] = (),
    soft_apply: bool = False,
    source: str = "prune config",
) -> FilterPruner:
    """Returns the pruner for a prune config (optional) and the command-line flags.

    Args:
      prune_config: parsed ``.prune_config`` or None.
      compression_factor: fraction of filters kept (the ``--compression_factor`` flag).
      known_scopes: conv scopes of the model (``model.named_layers()``), to map node names.
      skip_nodes: extra node names or scopes never pruned (``--skippable_nodes``).
      soft_apply: zero pruned channels instead of removing them.
      source: the prune config's path, for messages.

    Raises:
      ValueError: an unknown node name, a malformed spec, or a config without a filter_pruner.
        Specs that do not fit the model's channels (a mismatched source, a wrong
        ``following``) are reported when the pruner runs on the model.
    """
    skip = []
    node_scope = ""
    specs: list[NodeSpec] = []
    if prune_config is not None:
        if prune_config.compression_strategy.WhichOneof("compression_strategy_oneof") is None:
            raise ValueError(
                f"{source}: there is no compression_strategy {{ filter_pruner {{ ... }} }}."
            )
        pruner_config = prune_config.compression_strategy.filter_pruner
        node_scope = pruner_config.node_scope
        skip.extend(
            resolve_node(n.name, node_scope, known_scopes, f"{source} (skip_node)")
            for n in pruner_config.skip_node
        )
        specs = node_specs(pruner_config, known_scopes, source)
    skip.extend(
        resolve_node(name, node_scope, known_scopes, "--skippable_nodes")
        for name in skip_nodes
        if name
    )
    return FilterPruner(
        compression_factor, skip_scopes=skip, soft_apply=soft_apply, node_specs=specs
    )
