"""Tests of the model builder, from inline text protos."""

import numpy as np
import pytest
from google.protobuf import text_format

from builders import model_builder
from models import ICNet, PSPNet
from protos import model_pb2


def _build(text, **kwargs):
    return model_builder.build(text_format.Parse(text, model_pb2.FastSegmentationModel()), **kwargs)


def test_icnet_fields_reach_the_model():
    model = _build(
        """
        icnet {
          num_classes: 5 filter_scale: 0.25
          pooling_factors: 1 pooling_factors: 2
          feature_extractor { type: "dilated_resnet50" }
          hyperparams { batch_norm { decay: 0.9 } regularizer { l2_regularizer { weight: 0.001 } } }
          loss { upsample_logits: true }
          mobile_ops_only: true
        }
        """
    )
    assert isinstance(model, ICNet)
    assert model.num_classes == 5
    assert tuple(model.pooling_factors) == (1, 2)
    assert model.upsample_logits and model.psp.chained_adds
    # With upsample_logits the training logits come out at the input size.
    specs = {spec.key: spec for spec in model.output_specs(training=True)}
    assert specs["logits"].scale == 1.0


def test_pspnet_and_default_pooling_factors():
    model = _build(
        'pspnet { num_classes: 3 filter_scale: 0.125 feature_extractor { type: "dilated_resnet50" } }'
    )
    assert isinstance(model, PSPNet)
    assert tuple(model.pooling_factors) == (1, 2, 3, 6)
    model.build_variables((64, 64))
    names = model.named_variables()
    assert names["SharedFeatureExtractor/resnet_v1_50/conv1/weights"].shape == (7, 7, 3, 8)


def test_layer_widths_are_passed_through():
    text = 'icnet { num_classes: 2 filter_scale: 0.125 feature_extractor { type: "dilated_resnet50" } }'
    scope = "FastPSPModule/Conv"
    model = _build(text, layer_widths={scope: 7})
    height, width = model.min_input_size()
    model.build_variables((height, width))
    assert model.named_variables()[f"{scope}/weights"].shape[-1] == 7
    images = np.zeros((1, height, width, 3), np.float32)
    out = model.predict(model.preprocess(images), training=False)
    assert out["logits"].shape == (1, height, width, 2)


def test_missing_model_or_scale_is_a_clear_error():
    with pytest.raises(ValueError, match="the config has no model"):
        _build("")
    with pytest.raises(ValueError, match="model.icnet.filter_scale is required"):
        _build('icnet { num_classes: 2 feature_extractor { type: "dilated_resnet50" } }')


# -- registries and the architecture { name: ... } path --------------------------------------

ICNET_FIELDS = 'num_classes: 3 filter_scale: 0.125 feature_extractor { type: "dilated_resnet50" }'


def test_kinds_are_looked_up_in_the_registry():
    from models import ARCHITECTURES

    calls = []

    def fake_icnet(num_classes, **kwargs):
        calls.append((num_classes, kwargs))
        return "built by the registry"

    # The registry decides what `icnet` builds: swap its entry and the builder follows.
    ARCHITECTURES.unregister("icnet")
    ARCHITECTURES.register("icnet", fake_icnet)
    try:
        built = _build(f"icnet {{ {ICNET_FIELDS} mobile_ops_only: true }}")
    finally:
        ARCHITECTURES.unregister("icnet")
        ARCHITECTURES.register("icnet", ICNet)
    assert built == "built by the registry"
    ((num_classes, kwargs),) = calls
    assert num_classes == 3
    assert kwargs["backbone"] == "dilated_resnet50"
    assert kwargs["filter_scale"] == pytest.approx(0.125)
    assert kwargs["mobile_ops_only"] is True
    assert kwargs["pretrain_single_branch_mode"] is False


@pytest.mark.parametrize("kind", ["icnet", "pspnet"])
def test_unknown_backbone_is_one_line_listing_the_known_ones(kind):
    with pytest.raises(ValueError) as error:
        _build(
            f'{kind} {{ num_classes: 2 filter_scale: 1.0 feature_extractor {{ type: "resnet101" }} }}'
        )
    message = str(error.value)
    assert "\n" not in message
    assert f"model.{kind}.feature_extractor.type" in message
    assert "'resnet101'" in message
    assert "dilated_mobilenet, dilated_resnet50" in message


def test_unknown_architecture_is_one_line_listing_the_known_ones():
    with pytest.raises(ValueError) as error:
        _build('architecture { name: "icnte" num_classes: 2 filter_scale: 1.0 }')
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("model.architecture.name: unknown architecture 'icnte'")
    assert "icnet, pspnet" in message
    assert "Did you mean 'icnet'?" in message


def test_architecture_message_builds_a_registered_model():
    from tests.models.toy_net import ToyNet, registered

    text = """
        architecture {
          name: "toy_net" num_classes: 4 filter_scale: 0.5
          layer_widths { scope: "Toy/conv2" filters: 3 }
          options { key: "width" value: "10" }
        }
    """
    with registered("toy_net"):
        model = _build(text)
    assert isinstance(model, ToyNet)
    assert model.num_classes == 4
    assert model.width == 10  # the option, parsed as an int
    assert (model.conv1.filters, model.conv2.filters) == (5, 3)  # int(10 * 0.5); layer_widths
    model.build_variables((6, 6))
    logits = model.predict(model.preprocess(np.zeros((1, 6, 6, 3), np.float32)))["logits"]
    assert logits.shape == (1, 3, 3, 4)


def test_architecture_options_are_checked():
    from tests.models.toy_net import registered

    with registered("toy_net"):
        with pytest.raises(ValueError, match=r"takes no argument 'depth'.*width"):
            _build(
                'architecture { name: "toy_net" num_classes: 2 filter_scale: 1.0 '
                'options { key: "depth" value: "3" } }'
            )
        with pytest.raises(ValueError, match=r"options\[0\]: 'num_classes' is set by"):
            _build(
                'architecture { name: "toy_net" num_classes: 2 filter_scale: 1.0 '
                'options { key: "num_classes" value: "3" } }'
            )


def test_option_values_are_typed():
    assert model_builder.option_value("true") is True
    assert model_builder.option_value("False") is False
    assert model_builder.option_value("7") == 7
    assert model_builder.option_value("0.25") == 0.25
    assert model_builder.option_value("block3") == "block3"


def test_architecture_icnet_equals_the_typed_icnet():
    typed = _build(f"icnet {{ {ICNET_FIELDS} mobile_ops_only: true }}")
    generic = _build(
        f'architecture {{ name: "icnet" {ICNET_FIELDS} '
        'options { key: "mobile_ops_only" value: "true" } }'
    )
    assert isinstance(generic, ICNet)
    assert generic.psp.chained_adds and typed.psp.chained_adds
    for model in (typed, generic):
        model.build_variables()
    shapes = {name: tuple(v.shape) for name, v in typed.named_variables().items()}
    assert {name: tuple(v.shape) for name, v in generic.named_variables().items()} == shapes


def test_losses_read_the_architecture_message_like_the_typed_one():
    from builders import losses_builder

    loss = "loss { use_auxiliary_loss: true ignore_label: 7 class_weights: [1, 2, 3] }"
    typed = text_format.Parse(
        f"icnet {{ {ICNET_FIELDS} {loss} second_branch_loss_weight: 0.3 }}",
        model_pb2.FastSegmentationModel(),
    )
    generic = text_format.Parse(
        f'architecture {{ name: "icnet" {ICNET_FIELDS} {loss} second_branch_loss_weight: 0.3 }}',
        model_pb2.FastSegmentationModel(),
    )
    specs = ICNet(3, 0.125).output_specs(training=True)
    built = [
        losses_builder.build(model_builder.model_config(message)[1], specs)
        for message in (typed, generic)
    ]
    assert built[0] == built[1]
    expected = {"logits": 1.0, "aux_logits_1_16": 0.4, "aux_logits_1_8": 0.3}
    assert built[1].weights == pytest.approx(expected)  # float32 proto fields
    assert built[1].config.ignore_label == 7


def test_config_validation_lists_the_registered_architectures():
    from builders import config_util

    text = 'model { architecture { name: "toy" num_classes: 2 filter_scale: 1.0 } }'
    config = config_util.parse_pipeline_text(text, "toy.config")
    with pytest.raises(config_util.ConfigError) as error:
        config_util.validate_pipeline_config(config, "toy.config", text)
    message = str(error.value)
    assert "model.architecture.name" in message
    assert "unknown architecture 'toy'; known architectures: icnet, pspnet." in message
    # Once registered, the same config validates (no backbone needed for a toy model).
    from tests.models.toy_net import registered

    text = text.replace('"toy"', '"toy_net"')
    with registered("toy_net"):
        config_util.validate_pipeline_config(config_util.parse_pipeline_text(text), "t", text)
