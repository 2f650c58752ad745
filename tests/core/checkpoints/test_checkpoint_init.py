"""Tests of fine-tune initialisation: ImageNet (slim) and segmentation checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from core.checkpoints import checkpoint_init, checkpoint_utils
from core.checkpoints.checkpoint_init import initialize_from_fine_tune_checkpoint
from core.checkpoints.checkpoint_utils import CheckpointError
from models import ICNet, PSPNet

BACKBONE = "SharedFeatureExtractor/"


def _built(model):
    model.build_variables()
    return model


def _values(model) -> dict[str, np.ndarray]:
    return {name: v.numpy().copy() for name, v in model.named_variables().items()}


def _write_slim_checkpoint(path: str, shapes: dict[str, list[int]], seed: int = 0) -> dict:
    """Writes a TF1 name-based checkpoint of random float32 tensors; returns them by name."""
    rng = np.random.default_rng(seed)
    tensors = {
        name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()
    }
    names = sorted(tensors)
    tf.raw_ops.SaveV2(
        prefix=path,
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tensors[name] for name in names],
    )
    return tensors


def _imagenet_shapes(model, extra: dict[str, list[int]]) -> dict[str, list[int]]:
    """The slim ImageNet checkpoint's names and shapes of a model's backbone, plus extras."""
    shapes = {
        name[len(BACKBONE) :]: v.shape.as_list()
        for name, v in model.named_variables().items()
        if name.startswith(BACKBONE)
    }
    shapes.update(extra)
    return shapes


@pytest.fixture(scope="module")
def resnet_imagenet(tmp_path_factory):
    """(ICNet 1.0 built, slim resnet_v1_50 checkpoint prefix, its tensors)."""
    model = _built(ICNet(19, 1.0))
    prefix = str(tmp_path_factory.mktemp("imagenet") / "resnet_v1_50.ckpt")
    extra = {
        "resnet_v1_50/logits/weights": [1, 1, 2048, 1000],
        "resnet_v1_50/logits/biases": [1000],
        "resnet_v1_50/conv1/weights/Momentum": [7, 7, 3, 64],
        "global_step": [],
    }
    tensors = _write_slim_checkpoint(prefix, _imagenet_shapes(model, extra))
    return model, prefix, tensors


def test_classification_restores_the_backbone_only(resnet_imagenet):
    model, prefix, tensors = resnet_imagenet
    before = _values(model)
    report = initialize_from_fine_tune_checkpoint(model, prefix, "classification")

    backbone = [name for name in before if name.startswith(BACKBONE)]
    heads = [name for name in before if not name.startswith(BACKBONE)]
    assert len(backbone) == 265 and len(report.restored) == 265
    assert set(report.restored) == set(backbone)
    assert set(report.excluded) == set(heads)
    assert report.missing == () and report.skipped_shape_mismatch == ()
    # The classifier is never used; Momentum slots are bookkeeping, not reported.
    assert report.unused == ("resnet_v1_50/logits/biases", "resnet_v1_50/logits/weights")
    variables = model.named_variables()
    for name in backbone:
        np.testing.assert_array_equal(variables[name].numpy(), tensors[name[len(BACKBONE) :]])
    for name in heads:
        np.testing.assert_array_equal(variables[name].numpy(), before[name])
    assert "265 restored" in report.summary() and str(report) == report.summary()

    frozen = checkpoint_init.backbone_variables(model)
    assert {id(v) for v in frozen} == {id(variables[name]) for name in backbone}


def test_classification_shape_mismatch_asks_for_filter_scale_1(resnet_imagenet):
    _, prefix, _ = resnet_imagenet
    small = _built(ICNet(19, 0.125))
    before = _values(small)
    with pytest.raises(CheckpointError, match=r"filter_scale 0.125\).*filter_scale 1.0") as error:
        initialize_from_fine_tune_checkpoint(small, prefix, "classification")
    assert "resnet_v1_50/conv1/weights [7, 7, 3, 64] vs model [7, 7, 3, 8]" in str(error.value)
    for name, variable in small.named_variables().items():  # nothing was assigned
        np.testing.assert_array_equal(variable.numpy(), before[name])


@pytest.fixture(scope="module")
def pspnet_checkpoint(tmp_path_factory):
    """(PSPNet 0.125 with 3 classes, a checkpoint of it in our format)."""
    model = _built(PSPNet(3, 0.125))
    directory = tmp_path_factory.mktemp("pspnet")
    prefix = checkpoint_utils.make_checkpoint(model).save(str(directory / "model.ckpt"))
    return model, prefix


def test_segmentation_from_pspnet_initialises_icnet_backbone(pspnet_checkpoint):
    pspnet, prefix = pspnet_checkpoint
    icnet = _built(ICNet(3, 0.125))
    before = _values(icnet)
    report = initialize_from_fine_tune_checkpoint(icnet, prefix, "segmentation")

    source = pspnet.named_variables()
    variables = icnet.named_variables()
    backbone = {name for name in variables if name.startswith(BACKBONE)}
    assert backbone <= set(report.restored)
    for name in backbone:
        np.testing.assert_array_equal(variables[name].numpy(), source[name].numpy())
    # PSPNet's classifier sees 64 channels, ICNet's 32: the whole layer is skipped, biases too.
    assert set(report.skipped_shape_mismatch) == {
        "Predictions/Conv/weights",
        "Predictions/Conv/biases",
    }
    heads = set(variables) - backbone - set(report.skipped_shape_mismatch)
    assert set(report.missing) == heads
    assert any(name.startswith("CascadeFeatureFusion/") for name in report.missing)
    for name in heads | set(report.skipped_shape_mismatch):
        np.testing.assert_array_equal(variables[name].numpy(), before[name])
    assert any(name.startswith("PSPModule/") for name in report.unused)
    assert "AuxPredictions/AuxOutput/weights" in report.unused


def test_segmentation_finetune_skips_the_classifiers(tmp_path):
    source = _built(ICNet(3, 0.125))
    prefix = checkpoint_utils.make_checkpoint(source).save(str(tmp_path / "icnet.ckpt"))
    target = _built(ICNet(5, 0.125))
    before = _values(target)

    report = initialize_from_fine_tune_checkpoint(target, prefix, "segmentation-finetune")
    classifiers = {
        f"{scope}/{kind}"
        for scope in ("Predictions/Conv", "AuxOutput", "AuxOutput_1")
        for kind in ("weights", "biases")
    }
    assert set(report.excluded) == classifiers
    assert report.missing == () and report.skipped_shape_mismatch == ()
    assert set(report.restored) == set(before) - classifiers
    assert set(report.unused) == classifiers
    variables = target.named_variables()
    for name in classifiers:
        np.testing.assert_array_equal(variables[name].numpy(), before[name])
    for name in report.restored:
        np.testing.assert_array_equal(variables[name].numpy(), source.named_variables()[name])

    # "segmentation" would try the classifiers and skip them on their num_classes shape.
    report = initialize_from_fine_tune_checkpoint(target, prefix, "segmentation")
    assert set(report.skipped_shape_mismatch) == classifiers and report.excluded == ()


def test_nothing_matched_names_the_checkpoint_and_suggests_a_type(tmp_path, pspnet_checkpoint):
    _, prefix = pspnet_checkpoint
    icnet = _built(ICNet(3, 0.125))
    with pytest.raises(CheckpointError, match="nothing in .*model.ckpt-1") as error:
        initialize_from_fine_tune_checkpoint(icnet, prefix, "classification")
    message = str(error.value)
    assert "checkpoint has: AuxPredictions/AuxOutput/biases" in message
    assert "model looks for: resnet_v1_50/" in message
    assert 'fine_tune_checkpoint_type: "segmentation"' in message

    mobile = _built(ICNet(3, 0.125, backbone="dilated_mobilenet"))
    resnet_only = str(tmp_path / "resnet_only")
    _write_slim_checkpoint(resnet_only, {"resnet_v1_50/conv1/weights": [7, 7, 3, 8]})
    with pytest.raises(CheckpointError, match="No checkpoint type fits: .*another backbone"):
        initialize_from_fine_tune_checkpoint(mobile, resnet_only, "segmentation")


def test_bad_types_and_keras_weights_are_refused(tmp_path, pspnet_checkpoint):
    _, prefix = pspnet_checkpoint
    model = _built(ICNet(3, 0.125))
    with pytest.raises(ValueError, match="expected one of .*'segmentation-finetune'"):
        initialize_from_fine_tune_checkpoint(model, prefix, "detection")
    with pytest.raises(ValueError, match="needs a fine_tune_checkpoint_type"):
        initialize_from_fine_tune_checkpoint(model, prefix, "")
    keras_file = tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    keras_file.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 16)
    with pytest.raises(CheckpointError, match="first 1x1 conv.*resnet_v1_50.ckpt"):
        initialize_from_fine_tune_checkpoint(model, str(keras_file), "classification")
    with pytest.raises(CheckpointError, match="not found"):
        initialize_from_fine_tune_checkpoint(model, str(tmp_path / "nope"), "segmentation")


def test_mobilenet_classification_mapping(tmp_path):
    model = _built(ICNet(3, 1.0, backbone="dilated_mobilenet"))
    before = _values(model)
    prefix = str(tmp_path / "mobilenet_v2_1.0_224.ckpt")
    extra = {
        "MobilenetV2/Conv_1/weights": [1, 1, 320, 1280],  # final 1280 conv: not built here
        "MobilenetV2/Logits/Conv2d_1c_1x1/weights": [1, 1, 1280, 1001],
        "MobilenetV2/Logits/Conv2d_1c_1x1/biases": [1001],
        "MobilenetV2/Conv/weights/ExponentialMovingAverage": [3, 3, 3, 32],
        "global_step": [],
    }
    tensors = _write_slim_checkpoint(prefix, _imagenet_shapes(model, extra))
    report = initialize_from_fine_tune_checkpoint(model, prefix, "classification")

    backbone = [name for name in before if name.startswith(BACKBONE + "MobilenetV2/")]
    assert set(report.restored) == set(backbone)
    assert report.unused == (
        "MobilenetV2/Conv_1/weights",
        "MobilenetV2/Logits/Conv2d_1c_1x1/biases",
        "MobilenetV2/Logits/Conv2d_1c_1x1/weights",
    )
    name = BACKBONE + "MobilenetV2/expanded_conv_1/depthwise/depthwise_weights"
    np.testing.assert_array_equal(
        model.named_variables()[name].numpy(), tensors[name[len(BACKBONE) :]]
    )
    np.testing.assert_array_equal(
        model.named_variables()["Predictions/Conv/weights"].numpy(),
        before["Predictions/Conv/weights"],
    )


def test_unbuilt_models_are_built_first(pspnet_checkpoint):
    _, prefix = pspnet_checkpoint
    model = PSPNet(3, 0.125)
    report = initialize_from_fine_tune_checkpoint(model, prefix, "segmentation")
    assert len(report.restored) == len(model.named_variables())
    assert checkpoint_init.is_prediction_variable("AuxPredictions/AuxOutput/weights")
    assert not checkpoint_init.is_prediction_variable("FastPSPModule/Conv/weights")
    assert checkpoint_init.layer_scope("a/conv1/BatchNorm/gamma") == "a/conv1"
