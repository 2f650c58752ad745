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
