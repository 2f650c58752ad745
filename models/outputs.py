"""Keys of the dict returned by ``predict`` and the description of each output.

The loss code pairs every output with labels resized to the output's size and with a loss
weight. :class:`OutputSpec` says which config field holds that weight (``loss_weight_name``, a
field of the model's proto message) and its default, and the nominal scale of the output relative
to the network input. The real size follows the Interp convention (``models.layers.interp``): the
loss should resize labels to the logits' actual shape, not to ``scale * input``.
"""

from __future__ import annotations

import dataclasses

# Main logits. ICNet: 1/4 of the input in training (1/1 with upsample_logits), 1/1 in eval.
# PSPNet: 1/8 in training (1/1 with upsample_logits), 1/1 in eval.
LOGITS = "logits"
# ICNet cascade label guidance: the aux classifier on CFF unit 1's upsampled input (1/16).
AUX_LOGITS_1_16 = "aux_logits_1_16"
# ICNet cascade label guidance: the aux classifier on CFF unit 2's upsampled input (1/8).
AUX_LOGITS_1_8 = "aux_logits_1_8"
# PSPNet (and ICNet pretrain_single_branch_mode): the aux classifier on a backbone endpoint.
AUX_LOGITS = "aux_logits"

ALL_KEYS = (LOGITS, AUX_LOGITS_1_16, AUX_LOGITS_1_8, AUX_LOGITS)


@dataclasses.dataclass(frozen=True)
class OutputSpec:
    """One logits output of a model.

    Attributes:
      key: key in the ``predict`` dict.
      scale: nominal size relative to the network input (0.25 = a quarter of height and width).
      loss_weight_name: the proto field holding this output's loss weight (e.g.
        ``first_branch_loss_weight``), or None where the original hardcoded the weight.
      default_loss_weight: the weight when the field is unset (or the hardcoded weight).
      auxiliary: True for training-only outputs (present only when ``predict`` runs in training
        mode); their loss is added only when ``use_auxiliary_loss`` is on.
    """

    key: str
    scale: float
    loss_weight_name: str | None
    default_loss_weight: float
    auxiliary: bool
