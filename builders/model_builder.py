"""Builds the config's model by looking its architecture up in the registry.

``model { icnet {...} }`` and ``model { pspnet {...} }`` (the original's messages) and ``model {
architecture { name: "..." ... } }`` (any architecture registered in code, see
``models/registry.py``) all go through :data:`models.registry.ARCHITECTURES`: the oneof member
names the architecture, or ``architecture.name`` does. The fields every model shares become the
same keyword arguments; the original's model-specific fields (ICNet's
``pretrain_single_branch_mode``, ``mobile_ops_only``) and an ``architecture``'s ``options`` are
passed on by name.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

from builders import hyperparams_builder
from models import ARCHITECTURES, BACKBONES, SegmentationModel
from protos import model_pb2, pipeline_pb2

# The oneof member for registered architectures (its message names the architecture).
ARCHITECTURE_KIND = "architecture"
# Fields of the original's typed messages that are keyword arguments of their model only.
_TYPED_OPTIONS = {
    "icnet": ("pretrain_single_branch_mode", "mobile_ops_only"),
    "pspnet": (),
}
# Keyword arguments the builder derives from the shared fields; an option cannot set them.
_COMMON_ARGUMENTS = (
    "num_classes",
    "filter_scale",
    "backbone",
    "hyperparams",
    "upsample_logits",
    "layer_widths",
    "sync_batch_norm",
    "pooling_factors",
)


def model_config(config: pipeline_pb2.PipelineConfig | model_pb2.FastSegmentationModel):
    """The config's model message (``model.icnet``, ``model.pspnet``, ...): the one accessor.

    Args:
      config: a ``PipelineConfig`` or its ``model`` (a ``FastSegmentationModel``).

    Returns:
      ``(kind, message)``: the oneof's field name and the chosen model message.

    Raises:
      ValueError: the config sets no model.
    """
    model = config.model if isinstance(config, pipeline_pb2.PipelineConfig) else config
    kind = model.WhichOneof("model")
    if kind is None:
        raise ValueError(
            "the config has no model: add model { icnet { ... } } or model { pspnet { ... } }."
        )
    return kind, getattr(model, kind)


def architecture_name(config: pipeline_pb2.PipelineConfig | model_pb2.FastSegmentationModel) -> str:
    """The registered architecture a config builds: the oneof member, or ``architecture.name``.

    Raises:
      ValueError: the config sets no model.
    """
    return _name(*model_config(config))


def _name(kind: str, message) -> str:
    """The registered name of a model message: ``architecture.name``, or the oneof member."""
    return message.name if kind == ARCHITECTURE_KIND else kind


def _architecture(kind: str, message):
    """The registered factory of the config's model, or a ValueError listing the known ones."""
    name = _name(kind, message)
    field = "model.architecture.name" if kind == ARCHITECTURE_KIND else f"model.{kind}"
    if name not in ARCHITECTURES:
        raise ValueError(f"{field}: {ARCHITECTURES.unknown_message(name)}")
    return ARCHITECTURES.get(name)


def option_value(text: str) -> bool | int | float | str:
    """An ``options`` value as the Python value it spells: bool, int, float, else the text."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text


def _options(kind: str, message) -> dict[str, object]:
    """Model-specific keyword arguments: typed fields, or an ``architecture``'s ``options``."""
    if kind != ARCHITECTURE_KIND:
        return {name: getattr(message, name) for name in _TYPED_OPTIONS.get(kind, ())}
    options: dict[str, object] = {}
    for index, option in enumerate(message.options):
        where = f"model.architecture.options[{index}]"
        if not option.key:
            raise ValueError(f"{where} has no key; write options {{ key: ... value: ... }}.")
        if option.key in options:
            raise ValueError(f"{where}: key {option.key!r} is given twice.")
        if option.key in _COMMON_ARGUMENTS:
            raise ValueError(
                f"{where}: {option.key!r} is set by the architecture's own field; set "
                f"model.architecture.{option.key} instead of an option."
            )
        options[option.key] = option_value(option.value)
    return options


def _check_keywords(factory, name: str, kwargs: Mapping[str, object]) -> None:
    """ValueError naming the options the architecture does not take (before calling it)."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: let the call decide
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return
    accepted = {p.name for p in parameters}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(
            f"architecture {name!r} takes no argument {', '.join(map(repr, unknown))}; "
            f"it takes {', '.join(sorted(accepted - {'self'}))}. Fix model.architecture.options."
        )


def build(
    model_config: model_pb2.FastSegmentationModel,
    *,
    layer_widths: Mapping[str, int] | None = None,
    sync_batch_norm: bool = False,
) -> SegmentationModel:
    """Turns the config's model into a Keras model (variables are created on first call).

    Args:
      model_config: the pipeline config's ``model`` message.
      layer_widths: optional conv scope -> number of filters, overriding the
        widths ``filter_scale`` gives (a pruned model's exact shape). Merged over the
        config's own ``layer_widths`` entries; this argument wins on a shared scope.
      sync_batch_norm: synchronise batch-norm statistics across replicas
        (multi-device training).

    Raises:
      ValueError: no model is set, an unknown architecture, backbone or option (the message
        lists the known names), or a value the model rejects (named).
    """
    kind, config = _model_config(model_config)
    factory = _architecture(kind, config)
    if not config.HasField("filter_scale"):
        raise ValueError(f"model.{kind}.filter_scale is required (1.0 for the full model).")
    widths = config_layer_widths(model_config)
    widths.update(layer_widths or {})
    kwargs: dict[str, object] = dict(
        filter_scale=config.filter_scale,
        hyperparams=hyperparams_builder.build(config.hyperparams),
        upsample_logits=config.loss.upsample_logits,
        layer_widths=widths or None,
        sync_batch_norm=sync_batch_norm,
    )
    backbone = config.feature_extractor.type
    if backbone or kind != ARCHITECTURE_KIND:
        if backbone not in BACKBONES:
            raise ValueError(
                f"model.{kind}.feature_extractor.type: {BACKBONES.unknown_message(backbone)}"
            )
        kwargs["backbone"] = backbone
    if config.pooling_factors:
        kwargs["pooling_factors"] = tuple(config.pooling_factors)
    kwargs.update(_options(kind, config))
    name = _name(kind, config)
    _check_keywords(factory, name, kwargs)
    return factory(config.num_classes, **kwargs)


_model_config = model_config  # ``build``'s argument shadows the accessor's name


def config_layer_widths(config: model_pb2.FastSegmentationModel) -> dict[str, int]:
    """The ``layer_widths`` entries of the config's model as ``{scope: filters}`` (none: ``{}``).

    Raises:
      ValueError: an entry lacks its scope or filters, or a scope is repeated.
    """
    if config.WhichOneof("model") is None:
        return {}
    kind, message = _model_config(config)
    widths: dict[str, int] = {}
    for index, entry in enumerate(message.layer_widths):
        where = f"model.{kind}.layer_widths[{index}]"
        if not entry.scope or not entry.HasField("filters"):
            raise ValueError(f"{where} needs both scope and filters, got {entry}.")
        if entry.scope in widths:
            raise ValueError(f"{where}: scope {entry.scope!r} is given twice.")
        widths[entry.scope] = entry.filters
    return widths
