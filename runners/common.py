"""What every runner does first: the model of a config, built and restored from a checkpoint.

"Load the config, build the model, create its variables, restore a checkpoint" is the start of
evaluation, export, inference, compression, sensitivity analysis and the benchmarks; it is
written once here so that they all build and restore a model the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

from builders import model_builder
from core.checkpoints import checkpoint_utils
from models import SegmentationModel


def build_model(
    config,
    *,
    layer_widths: Mapping[str, int] | None = None,
    sync_batch_norm: bool = False,
    build_variables: bool = True,
) -> SegmentationModel:
    """The config's model, with its variables created unless ``build_variables`` is False.

    Args:
      config: a ``PipelineConfig`` (or its ``model`` message).
      layer_widths: conv scope -> filters, over the config's own (a pruned model's shape).
      sync_batch_norm: synchronised batch norm across replicas (multi-device training).
      build_variables: run one inference pass to create the variables.

    Raises:
      ValueError: no model, or a value the model rejects (named).
    """
    model_message = getattr(config, "model", config)
    model = model_builder.build(
        model_message, layer_widths=layer_widths, sync_batch_norm=sync_batch_norm
    )
    if build_variables:
        model.build_variables()
    return model


def load_model(
    config, checkpoint: str, *, layer_widths: Mapping[str, int] | None = None
) -> tuple[SegmentationModel, str]:
    """The config's model with every variable restored from ``checkpoint``.

    Args:
      config: a ``PipelineConfig`` (or its ``model`` message).
      checkpoint: a checkpoint prefix, or a directory whose latest checkpoint is read.
      layer_widths: as in :func:`build_model`.

    Returns:
      ``(model, prefix)``: the restored model and the checkpoint prefix that was read.

    Raises:
      CheckpointError: the checkpoint is missing or does not fit the model (named).
    """
    model = build_model(config, layer_widths=layer_widths)
    prefix = checkpoint_utils.restore_model(model, checkpoint)
    return model, prefix
