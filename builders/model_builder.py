"""Builds an ICNet or PSPNet from the ``model`` block of a pipeline config."""

from __future__ import annotations

from collections.abc import Mapping

from builders import hyperparams_builder
from models import ICNet, PSPNet, SegmentationModel
from protos import model_pb2, pipeline_pb2


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
      ValueError: no model is set, or a value the model rejects (named).
    """
    kind = model_config.WhichOneof("model")
    if kind is None:
        raise ValueError(
            "the config has no model: add model { icnet { ... } } or { pspnet { ... } }."
        )
    config = getattr(model_config, kind)
    if not config.HasField("filter_scale"):
        raise ValueError(f"model.{kind}.filter_scale is required (1.0 for the full model).")
    widths = config_layer_widths(model_config)
    widths.update(layer_widths or {})
    kwargs = dict(
        num_classes=config.num_classes,
        filter_scale=config.filter_scale,
        backbone=config.feature_extractor.type,
        hyperparams=hyperparams_builder.build(config.hyperparams),
        upsample_logits=config.loss.upsample_logits,
        layer_widths=widths or None,
        sync_batch_norm=sync_batch_norm,
    )
    if config.pooling_factors:
        kwargs["pooling_factors"] = tuple(config.pooling_factors)
    if kind == "icnet":
        return ICNet(
            pretrain_single_branch_mode=config.pretrain_single_branch_mode,
            mobile_ops_only=config.mobile_ops_only,
            **kwargs,
        )
    return PSPNet(**kwargs)


def config_layer_widths(model_config: model_pb2.FastSegmentationModel) -> dict[str, int]:
    """The ``layer_widths`` entries of the config's model as ``{scope: filters}``.

    Raises:
      ValueError: an entry lacks its scope or filters, or a scope is repeated.
    """
    kind = model_config.WhichOneof("model")
    if kind is None:
        return {}
    widths: dict[str, int] = {}
    for index, entry in enumerate(getattr(model_config, kind).layer_widths):
        where = f"model.{kind}.layer_widths[{index}]"
        if not entry.scope or not entry.HasField("filters"):
            raise ValueError(f"{where} needs both scope and filters, got {entry}.")
        if entry.scope in widths:
            raise ValueError(f"{where}: scope {entry.scope!r} is given twice.")
        widths[entry.scope] = entry.filters
    return widths
