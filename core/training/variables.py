"""Which of a model's variables a training run updates."""

from __future__ import annotations

import tensorflow as tf
from absl import logging

from core.checkpoints import checkpoint_init


def auxiliary_keys(model) -> list[str]:
    """The output keys of the model's auxiliary heads in training mode (``aux_logits_1_16``...)."""
    return [spec.key for spec in model.output_specs(training=True) if spec.auxiliary]


def trainable_variables(
    model, *, freeze_backbone: bool, train_auxiliary: bool
) -> list[tf.Variable]:
    """The model's trainable variables, minus a frozen backbone and unused auxiliary heads.

    Args:
      model: a built ``SegmentationModel``.
      freeze_backbone: leave the backbone's weights out (``freeze_fine_tune_backbone``). Its
        batch norm still updates its statistics in training mode, as the original's did (slim
        kept ``is_training`` on).
      train_auxiliary: keep the auxiliary classifiers; without an auxiliary loss they get no
        gradient, so they are left out.

    Returns:
      The variables to train, in the model's order.
    """
    excluded = set()
    if freeze_backbone:
        excluded.update(id(v) for v in checkpoint_init.backbone_variables(model))
        logging.info("freeze_fine_tune_backbone: the backbone's weights are not trained.")
    if not train_auxiliary:
        aux_layers = [layer for layer in model.scoped_layers() if layer.scope in model.aux_scopes()]
        for layer in aux_layers:
            excluded.update(id(v) for v in layer.slim_variables().values())
    # Keras variables wrap the tf.Variables that the name maps hold.
    return [v for v in model.trainable_variables if id(getattr(v, "value", v)) not in excluded]
