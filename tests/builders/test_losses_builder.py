"""Tests of the losses builder, from inline text protos."""

import pytest
from google.protobuf import text_format

from builders import losses_builder
from models.outputs import OutputSpec
from protos import icnet_pb2, pspnet_pb2

ICNET_SPECS = (
    OutputSpec("logits", 0.25, "main_branch_loss_weight", 1.0, False),
    OutputSpec("aux_logits_1_8", 0.125, "second_branch_loss_weight", 0.4, True),
    OutputSpec("aux_logits_1_16", 0.0625, "first_branch_loss_weight", 0.4, True),
)


def test_icnet_weights_from_config_and_proto_defaults():
    config = text_format.Parse(
        "num_classes: 19 first_branch_loss_weight: 0.16 loss { use_auxiliary_loss: true }",
        icnet_pb2.ICNet(),
    )
    loss = losses_builder.build(config, ICNET_SPECS)
    assert loss.weights == pytest.approx(
        {"logits": 1.0, "aux_logits_1_8": 0.4, "aux_logits_1_16": 0.16}
    )
    assert loss.config.num_classes == 19 and loss.config.ignore_label == 255
    assert loss.config.class_weights is None and not loss.config.upsample_logits


def test_auxiliary_outputs_need_use_auxiliary_loss():
    config = text_format.Parse("num_classes: 3", icnet_pb2.ICNet())
    assert losses_builder.build(config, ICNET_SPECS).weights == {"logits": 1.0}


def test_hardcoded_weights_class_weights_and_ignore_label():
    config = text_format.Parse(
        "num_classes: 2 loss { use_auxiliary_loss: true ignore_label: 0 upsample_logits: true "
        "class_weights: 1.0 class_weights: 3.0 }",
        pspnet_pb2.PSPNet(),
    )
    specs = (
        OutputSpec("logits", 0.125, None, 1.0, False),
        OutputSpec("aux_logits", 0.125, None, 0.4, True),
    )
    loss = losses_builder.build(config, specs)
    assert loss.weights == pytest.approx({"logits": 1.0, "aux_logits": 0.4})
    assert loss.config.ignore_label == 0 and loss.config.upsample_logits
    assert loss.config.class_weights == pytest.approx((1.0, 3.0))
