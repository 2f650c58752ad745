"""PSPNet50: shapes, aux source, slim names, parameter count."""

import pytest
import tensorflow as tf

from models import PSPNet, outputs

RESNET = "SharedFeatureExtractor/resnet_v1_50"


@pytest.fixture(scope="module")
def pspnet():
    model = PSPNet(19, 0.25)
    model.build_variables()
    return model


@pytest.mark.parametrize("height, width", [(65, 129), (64, 128)])
def test_output_shapes(pspnet, height, width):
    preprocessed = pspnet.preprocess(tf.random.uniform([2, height, width, 3], 0, 255))
    train = pspnet.predict(preprocessed, training=True)
    expected = pspnet.output_sizes(height, width, training=True)
    assert set(train) == {outputs.LOGITS, outputs.AUX_LOGITS} == set(expected)
    for key, tensor in train.items():
        assert tuple(tensor.shape) == (2, *expected[key], 19), key
    evaluation = pspnet.predict(preprocessed, training=False)
    eval_size = pspnet.output_sizes(height, width, training=False)[outputs.LOGITS]
    assert tuple(evaluation[outputs.LOGITS].shape) == (2, *eval_size, 19)
    # 65 -> 9 at 1/8 -> Interp x8 -> 65; 64 -> 8 -> 57.
    assert eval_size == ((65, 129) if height == 65 else (57, 121))


def test_cityscapes_crop_sizes(pspnet):
    assert pspnet.output_sizes(713, 713) == {
        outputs.LOGITS: (90, 90),
        outputs.AUX_LOGITS: (90, 90),
    }
    assert pspnet.output_sizes(1025, 2049, training=False) == {outputs.LOGITS: (1025, 2049)}


def test_slim_names_and_shapes(pspnet):
    shapes = {k: tuple(v.shape) for k, v in pspnet.named_variables().items()}
    expected = {
        f"{RESNET}/block3/unit_6/bottleneck_v1/conv2/weights": (3, 3, 64, 64),
        "PSPModule/Conv/weights": (1, 1, 512, 512),
        "PSPModule/Conv_3/BatchNorm/gamma": (512,),
        "PSPModule/Conv_4/weights": (3, 3, 512 + 4 * 512, 128),
        "Predictions/Conv/weights": (1, 1, 128, 19),
        "AuxPredictions/AuxOutput/weights": (1, 1, 128, 19),  # on block2 (128 channels at 0.25)
        "AuxPredictions/AuxOutput/biases": (19,),
    }
    assert {k: shapes[k] for k in expected} == expected


def test_aux_endpoint_is_configurable():
    model = PSPNet(3, 0.125, aux_endpoint="block3", pooling_factors=(1, 2))
    model.build_variables()
    assert tuple(model.named_variables()["AuxPredictions/AuxOutput/weights"].shape) == (
        1,
        1,
        128,
        3,
    )
    with pytest.raises(ValueError, match="aux_endpoint 'block5'"):
        PSPNet(3, 0.125, aux_endpoint="block5")


def test_output_specs_hardcoded_weights(pspnet):
    specs = {s.key: s for s in pspnet.output_specs(training=True)}
    assert specs[outputs.LOGITS].scale == 1 / 8 and specs[outputs.LOGITS].default_loss_weight == 1
    assert specs[outputs.AUX_LOGITS].default_loss_weight == 0.4
    assert specs[outputs.AUX_LOGITS].loss_weight_name is None
    assert [s.key for s in pspnet.output_specs(training=False)] == [outputs.LOGITS]


def test_parameter_count_matches_model_zoo():
    """Model zoo: PSPNet50 46.53M (19 classes), inference convs only, BN and aux excluded."""
    model = PSPNet(19, 1.0)
    model.build_variables()
    assert model.count_parameters() == 46_533_331
    assert round(model.count_parameters() / 1e6, 2) == 46.53


def test_mobilenet_pspnet_builds():
    model = PSPNet(5, 0.5, backbone="dilated_mobilenet", pooling_factors=(1, 2))
    model.build_variables()
    out = model.predict(model.preprocess(tf.zeros([1, 33, 41, 3])), training=True)
    assert tuple(out[outputs.LOGITS].shape) == (1, 5, 6, 5)
    # aux on layer_8 (64 x 0.5 channels).
    assert tuple(model.named_variables()["AuxPredictions/AuxOutput/weights"].shape)[2] == 32
