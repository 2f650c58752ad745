"""Builds the model's :class:`core.training.losses.WeightedLoss` from its config."""

from __future__ import annotations

from collections.abc import Iterable

from core.training.losses import SoftmaxLossConfig, WeightedLoss
from models.outputs import OutputSpec
from protos import icnet_pb2, pspnet_pb2


def build(
    model_config: icnet_pb2.ICNet | pspnet_pb2.PSPNet, output_specs: Iterable[OutputSpec]
) -> WeightedLoss:
    """Pairs each model output with its loss weight.

    Args:
      model_config: the ``icnet`` or ``pspnet`` message of the pipeline config.
      output_specs: the model's outputs (``model.output_specs``).

    Returns:
      The loss over the main output and, when ``loss.use_auxiliary_loss`` is
      set, the auxiliary outputs, each weighted once by its config field (or the
      original's hardcoded weight where it had no field).
    """
    loss = model_config.loss
    if loss.classification_loss.WhichOneof("loss_type") not in (None, "softmax"):
        raise ValueError(f"unsupported classification_loss {loss.classification_loss}")
    config = SoftmaxLossConfig(
        num_classes=model_config.num_classes,
        ignore_label=loss.ignore_label,
        class_weights=tuple(loss.class_weights) or None,
        upsample_logits=loss.upsample_logits,
    )
    weights = {}
    for spec in output_specs:
        if spec.auxiliary and not loss.use_auxiliary_loss:
            continue
        if spec.loss_weight_name is None:
            weights[spec.key] = spec.default_loss_weight
        else:
            # proto2 scalars return their declared default when unset.
            weights[spec.key] = float(getattr(model_config, spec.loss_weight_name))
    return WeightedLoss(config=config, weights=weights)
