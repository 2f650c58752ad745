"""ICNet: branch shapes, the 1025x2049 cascade, slim names, layer_widths, and a tiny overfit."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from models import ICNet, outputs

RESNET = "SharedFeatureExtractor/resnet_v1_50"


@pytest.fixture(scope="module")
def icnet():
    model = ICNet(19, 0.25)
    model.build_variables()
    return model


@pytest.mark.parametrize("height, width", [(97, 193), (128, 256)])
def test_output_shapes_train_and_eval(icnet, height, width):
    images = tf.random.uniform([1, height, width, 3], 0, 255)
    preprocessed = icnet.preprocess(images)
    train = icnet.predict(preprocessed, training=True)
    assert set(train) == {s.key for s in icnet.output_specs(training=True)}
    expected = icnet.output_sizes(height, width, training=True)
    for key, tensor in train.items():
        assert tuple(tensor.shape) == (1, *expected[key], 19), key
    evaluation = icnet.predict(preprocessed, training=False)
    assert set(evaluation) == {outputs.LOGITS}
    eval_size = icnet.output_sizes(height, width, training=False)[outputs.LOGITS]
    assert tuple(evaluation[outputs.LOGITS].shape) == (1, *eval_size, 19)
    # Odd sizes on the Interp grid come back at full size; even ones a little smaller
    # (128 -> 16 at 1/8 -> 31 -> 121), which postprocess resizes to the label size.
    assert eval_size == ((97, 193) if height == 97 else (121, 249))


def test_odd_size_hand_computed(icnet):
    sizes = icnet.output_sizes(97, 193, training=True)
    # full branch 97 -> 49 -> 25 -> 13, zoom x2 -> 25; half branch 49 -> 7 (1/16), 4 at 1/32.
    assert sizes == {
        outputs.LOGITS: (25, 49),
        outputs.AUX_LOGITS_1_16: (7, 13),
        outputs.AUX_LOGITS_1_8: (13, 25),
    }
    assert icnet.output_sizes(97, 193, training=False) == {outputs.LOGITS: (97, 193)}


def test_cityscapes_eval_size_cascade_by_shape_inference(icnet):
    """1025x2049 traced without running: every level lines up under the Interp convention."""
    spec = tf.TensorSpec([1, 1025, 2049, 3], tf.float32)
    train_fn = tf.function(lambda x: icnet(x, training=True)).get_concrete_function(spec)
    shapes = {k: tuple(v.shape) for k, v in train_fn.structured_outputs.items()}
    assert shapes == {
        outputs.LOGITS: (1, 257, 513, 19),
        outputs.AUX_LOGITS_1_16: (1, 65, 129, 19),
        outputs.AUX_LOGITS_1_8: (1, 129, 257, 19),
    }
    assert icnet.output_sizes(1025, 2049) == {k: v[1:3] for k, v in shapes.items()}
    assert icnet.output_sizes(1025, 2049, training=False) == {outputs.LOGITS: (1025, 2049)}


def test_postprocess_returns_class_ids(icnet):
    logits = tf.random.normal([2, 5, 9, 19])
    ids = icnet.postprocess(logits, (17, 33))
    assert ids.dtype == tf.int32 and tuple(ids.shape) == (2, 17, 33)
    np.testing.assert_array_equal(ids.numpy()[:, ::4, ::4], tf.argmax(logits, -1).numpy())


def test_slim_names_and_shapes(icnet):
    shapes = {k: tuple(v.shape) for k, v in icnet.named_variables().items()}
    unit = f"{RESNET}/block1/unit_1/bottleneck_v1"
    expected = {
        f"{unit}/conv1/weights": (1, 1, 16, 16),
        f"{unit}/conv1/BatchNorm/gamma": (16,),
        f"{unit}/conv1/BatchNorm/moving_mean": (16,),
        f"{unit}/shortcut/weights": (1, 1, 16, 64),
        f"{RESNET}/conv1/weights": (7, 7, 3, 16),
        f"{RESNET}/block4/unit_3/bottleneck_v1/conv3/weights": (1, 1, 128, 512),
        "FastPSPModule/Conv/weights": (1, 1, 512, 128),
        "Conv/weights": (3, 3, 3, 16),
        "Conv_1/weights": (3, 3, 16, 16),
        "Conv_2/weights": (3, 3, 16, 32),
        "Conv_3/weights": (3, 3, 32, 64),
        "Conv_3/BatchNorm/beta": (64,),
        "CascadeFeatureFusion/DilatedConv/weights": (3, 3, 128, 64),
        "CascadeFeatureFusion/Conv/weights": (1, 1, 64, 64),
        "CascadeFeatureFusion_1/DilatedConv/weights": (3, 3, 64, 64),
        "CascadeFeatureFusion_1/Conv/weights": (1, 1, 64, 64),
        "AuxOutput/weights": (1, 1, 128, 19),
        "AuxOutput_1/weights": (1, 1, 64, 19),
        "Predictions/Conv/weights": (1, 1, 64, 19),
        "Predictions/Conv/biases": (19,),
    }
    assert {k: shapes[k] for k in expected} == expected
    # Every conv has weights plus 4 BN variables; the 3 classifiers have weights and biases.
    assert len(shapes) == (len(icnet.named_layers()) - 3) * 5 + 3 * 2
    layers = icnet.named_layers()
    assert layers["CascadeFeatureFusion/DilatedConv"].conv.dilation_rate == (2, 2)
    assert [layers[f"Conv{s}"].stride for s in ("", "_1", "_2", "_3")] == [2, 2, 2, 1]


def test_named_variables_before_build_raises():
    with pytest.raises(RuntimeError, match="build_variables"):
        ICNet(3, 0.125, pooling_factors=(1,)).named_variables()


def test_parameter_counts_match_model_zoo():
    """Model zoo: 26.82M (1.0) and 6.71M (0.5): inference convs only, BN and aux excluded."""
    full = ICNet(19, 1.0)
    full.build_variables()
    backbone = sum(
        int(np.prod(v.shape))
        for k, v in full.named_variables().items()
        if k.startswith("SharedFeatureExtractor/")
    )
    # = keras.applications.ResNet50(include_top=False) (23,587,712) less its 26,560 conv biases.
    assert backbone == 23_561_152
    assert full.count_parameters() == 26_816_147
    assert round(full.count_parameters() / 1e6, 2) == 26.82
    assert full.count_parameters(include_aux=True, include_bn=True) == full.count_params()
    half = ICNet(19, 0.5)
    half.build_variables()
    assert half.count_parameters() == 6_708_051
    assert round(half.count_parameters() / 1e6, 2) == 6.71


def test_layer_widths_changes_exactly_that_layer_and_its_consumers(icnet):
    target = f"{RESNET}/block2/unit_1/bottleneck_v1/conv1"
    pruned = ICNet(19, 0.25, layer_widths={target: 7, "CascadeFeatureFusion/Conv": 64})
    pruned.build_variables()
    before = {k: tuple(v.shape) for k, v in icnet.named_variables().items()}
    after = {k: tuple(v.shape) for k, v in pruned.named_variables().items()}
    assert before.keys() == after.keys()
    changed = {k for k in before if before[k] != after[k]}
    conv2 = target.replace("conv1", "conv2")
    assert changed == {
        f"{target}/weights",
        f"{target}/BatchNorm/gamma",
        f"{target}/BatchNorm/beta",
        f"{target}/BatchNorm/moving_mean",
        f"{target}/BatchNorm/moving_variance",
        f"{conv2}/weights",
    }
    assert after[f"{target}/weights"] == (1, 1, 64, 7)
    assert after[f"{conv2}/weights"] == (3, 3, 7, 32)


def test_layer_widths_errors():
    with pytest.raises(ValueError, match="name no conv of this model"):
        ICNet(19, 0.25, layer_widths={f"{RESNET}/block9/conv1": 3})
    with pytest.raises(ValueError, match="prediction convs"):
        ICNet(19, 0.25, layer_widths={"Predictions/Conv": 3})
    with pytest.raises(ValueError, match="residual sum needs equal widths"):
        ICNet(19, 0.25, layer_widths={f"{RESNET}/block1/unit_2/bottleneck_v1/conv3": 10})
    with pytest.raises(ValueError, match="must have the same width"):
        ICNet(19, 0.25, layer_widths={"CascadeFeatureFusion_1/DilatedConv": 10})


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="filter_scale"):
        ICNet(19, 2.0)
    with pytest.raises(ValueError, match="num_classes"):
        ICNet(0)
    with pytest.raises(ValueError, match="pooling_factors"):
        ICNet(19, pooling_factors=())


def test_pretrain_single_branch_mode():
    model = ICNet(5, 0.125, pretrain_single_branch_mode=True, pooling_factors=(1, 2))
    model.build_variables()
    # build_variables runs in inference mode: the BN moving statistics keep their initial values.
    means = [v for k, v in model.named_variables().items() if k.endswith("moving_mean")]
    assert all(float(tf.reduce_max(tf.abs(v))) == 0.0 for v in means)
    layers = model.named_layers()
    assert "AuxPredictions/AuxOutput" in layers and "Conv" not in layers
    assert "CascadeFeatureFusion/Conv" not in layers
    out = model.predict(tf.zeros([1, 65, 97, 3]), training=True)
    assert tuple(out[outputs.LOGITS].shape) == (1, 9, 13, 5)
    assert tuple(out[outputs.AUX_LOGITS].shape) == (1, 9, 13, 5)
    evaluation = model.predict(tf.zeros([1, 65, 97, 3]), training=False)
    assert tuple(evaluation[outputs.LOGITS].shape) == (1, 65, 97, 5)
    assert model.output_sizes(65, 97)[outputs.AUX_LOGITS] == (9, 13)


def test_mobilenet_icnet_and_upsample_logits():
    model = ICNet(
        4, 0.25, backbone="dilated_mobilenet", upsample_logits=True, pooling_factors=(1, 2)
    )
    model.build_variables()
    out = model.predict(model.preprocess(tf.zeros([1, 64, 128, 3])), training=True)
    assert tuple(out[outputs.LOGITS].shape) == (1, 57, 121, 4)  # 64 -> 8 at 1/8 -> 15 -> 57
    assert model.output_sizes(64, 128)[outputs.LOGITS] == (57, 121)
    assert "SharedFeatureExtractor/MobilenetV2/expanded_conv_16/project/weights" in (
        model.named_variables()
    )
    specs = {s.key: s for s in model.output_specs(training=True)}
    assert specs[outputs.LOGITS].scale == 1.0
    assert specs[outputs.AUX_LOGITS_1_16].loss_weight_name == "first_branch_loss_weight"
    assert specs[outputs.AUX_LOGITS_1_8].default_loss_weight == 0.4


def _masked_cross_entropy(logits, labels, ignore_label=255):
    mask = tf.not_equal(labels, ignore_label)
    safe = tf.where(mask, labels, 0)
    per_pixel = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe, logits=logits)
    weights = tf.cast(mask, tf.float32)
    return tf.reduce_sum(per_pixel * weights) / tf.reduce_sum(weights)


def _stripes(shape, num_classes):
    _, height, width, _ = shape
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    labels = (rows * num_classes // height + cols * 2 // width) % num_classes
    labels = np.stack([labels, (labels + 1) % num_classes])
    labels[:, 0, :] = 255  # an ignored row
    return tf.constant(labels, tf.int32)


def test_tiny_icnet_overfits_one_batch():
    keras.utils.set_random_seed(0)
    model = ICNet(3, 0.125, pooling_factors=(1, 2))
    images = tf.random.uniform([2, 64, 64, 3], 0, 255, seed=1)
    preprocessed = model.preprocess(images)
    first = model.predict(preprocessed, training=True)
    labels = {key: _stripes(tensor.shape, 3) for key, tensor in first.items()}
    weights = {spec.key: spec.default_loss_weight for spec in model.output_specs(training=True)}
    variables = model.trainable_variables
    # Hand-rolled momentum SGD: Keras' optimizers cost ~1 s per eager step on ~300 variables.
    velocities = [tf.zeros_like(v) for v in variables]
    losses = []
    for _ in range(12):
        with tf.GradientTape() as tape:
            logits = model.predict(preprocessed, training=True)
            loss = tf.add_n(
                [weights[k] * _masked_cross_entropy(logits[k], labels[k]) for k in logits]
            )
        grads = tape.gradient(loss, variables)
        for index, (variable, grad) in enumerate(zip(variables, grads, strict=True)):
            velocities[index] = 0.9 * velocities[index] + grad
            variable.assign_sub(0.1 * velocities[index])
        losses.append(float(loss))
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.4 * losses[0], losses
