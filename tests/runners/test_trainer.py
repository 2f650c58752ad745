"""The training loop on the tiny ICNet config: resume, NaN, summaries, checkpoints, freezing.

The step runs eagerly here (``tf.config.run_functions_eagerly``): the loop logic is the same and
it saves the ~10 s trace per run on two cores. The compiled step is exercised by
``tests/test_train_scripts.py`` (one device) and ``tests/core/training/test_distribution.py``.
"""

from __future__ import annotations

import dataclasses
import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from builders import config_util, model_builder
from core.checkpoints import checkpoint_utils
from core.data.standard_fields import CITYSCAPES_PALETTE
from core.training import summaries
from models import ICNet, PSPNet, recompute
from runners import trainer
from tests.runners import recompute_check

# run_functions_eagerly does not apply to tf.data functions; TF says so on every run.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Even though the `tf.config"),
    pytest.mark.usefixtures("eager_steps"),
]

SEED = 7
BASE = trainer.TrainOptions(seed=SEED, save_summaries_steps=0, log_every_n_steps=2)


@pytest.fixture(scope="module")
def reference(config_path, tmp_path_factory):
    """4 uninterrupted steps, a checkpoint after each (2 kept), summaries every 2 steps."""
    logdir = str(tmp_path_factory.mktemp("reference"))
    options = dataclasses.replace(
        BASE,
        num_steps=4,
        save_interval_secs=0,
        max_checkpoints_to_keep=2,
        save_summaries_steps=2,
        image_summaries=True,
    )
    config = config_util.load_pipeline_config(config_path)
    return trainer.train(config, logdir, options), logdir, config


def _checkpoint_tensors(prefix: str) -> dict[str, np.ndarray]:
    """Model variables, optimizer slots and iterations, and the step; not the save counter."""
    reader = tf.train.load_checkpoint(prefix)
    return {
        key: reader.get_tensor(key)
        for key in reader.get_variable_to_shape_map()
        if key.endswith("VARIABLE_VALUE") and not key.startswith("save_counter")
    }


def _events(logdir: str) -> dict[str, dict[int, tf.Tensor]]:
    tags: dict[str, dict[int, tf.Tensor]] = {}
    for path in glob.glob(os.path.join(logdir, "events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                tags.setdefault(value.tag, {})[event.step] = tf.make_ndarray(value.tensor)
    return tags


def test_result_checkpoints_and_config(reference):
    result, logdir, config = reference
    assert result.step == 4
    assert np.isfinite(result.loss) and result.loss == result.losses["total"]
    assert set(result.losses) == {
        "logits",
        "aux_logits_1_16",
        "aux_logits_1_8",
        "regularization",
        "total",
    }
    assert result.checkpoint_path == os.path.join(logdir, "model.ckpt-4")
    # A checkpoint after every step, max_checkpoints_to_keep=2.
    kept = sorted(name for name in os.listdir(logdir) if name.endswith(".index"))
    assert kept == ["model.ckpt-3.index", "model.ckpt-4.index"]
    assert checkpoint_utils.checkpoint_step(result.checkpoint_path) == 4
    written = config_util.load_pipeline_config(os.path.join(logdir, "pipeline.config"))
    assert written == config
    # The format eval/export read: every model variable by slim name.
    model = model_builder.build(config.model)
    assert checkpoint_utils.restore_model(model, logdir) == result.checkpoint_path


def test_summaries(reference):
    result, logdir, _ = reference
    tags = _events(logdir)
    for tag in (
        "Losses/TotalLoss",
        "Losses/logits",
        "Losses/aux_logits_1_16",
        "Losses/aux_logits_1_8",
        "Losses/regularization_loss",
        "LearningRate/learning_rate",
        *summaries.IMAGE_TAGS,
    ):
        assert sorted(tags[tag]) == [2, 4], tag
    assert float(tags["Losses/TotalLoss"][4]) == pytest.approx(result.loss, rel=1e-6)
    # Step 2 trained with the poly rate at update 1: 0.01 * (1 - 1/4) ** 0.9.
    assert float(tags["LearningRate/learning_rate"][2]) == pytest.approx(0.01 * 0.75**0.9, rel=1e-5)
    blobs = tags["VerifyTrainImages/Groundtruths"][4]
    assert [int(blobs[0]), int(blobs[1])] == [97, 97]  # width, height
    assert len(blobs) == 2 + 2  # both images of the batch
    colours = tf.io.decode_png(blobs[2]).numpy().reshape(-1, 3)
    allowed = {tuple(c) for c in CITYSCAPES_PALETTE} | {(0, 0, 0)}
    assert {tuple(c) for c in np.unique(colours, axis=0)} <= allowed
    prediction = tf.io.decode_png(tags["VerifyTrainImages/Predictions"][4][2]).numpy()
    assert prediction.shape == (97, 97, 3)


def test_resume_equals_uninterrupted(reference, config_path, tmp_path):
    reference_result, _, config = reference
    logdir = str(tmp_path / "resumed")
    first = trainer.train(config, logdir, dataclasses.replace(BASE, num_steps=2))
    assert first.checkpoint_path.endswith("model.ckpt-2")
    # Restarting with the run's end further away continues from step 2.
    resumed = trainer.train(config, logdir, dataclasses.replace(BASE, num_steps=4))
    assert resumed.step == 4
    assert resumed.loss == pytest.approx(reference_result.loss, abs=1e-5)
    expected = _checkpoint_tensors(reference_result.checkpoint_path)
    actual = _checkpoint_tensors(resumed.checkpoint_path)
    assert set(actual) == set(expected)
    assert any("optimizer" in key for key in actual)  # slots and iterations are compared too
    for key, value in expected.items():
        np.testing.assert_allclose(actual[key], value, atol=1e-5, err_msg=key)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_config_path, tmp_path):
    huge_rate = (
        "train_config { optimizer { momentum_optimizer { learning_rate { "
        "constant_learning_rate { learning_rate: 1e30 } } } } }"
    )
    config = config_util.load_pipeline_config(tiny_config_path, huge_rate)
    logdir = str(tmp_path / "nan")
    options = dataclasses.replace(BASE, num_steps=4, save_interval_secs=0)
    # Step 1 is finite and saved; its 1e30-sized update makes step 2's loss NaN/Inf.
    with pytest.raises(trainer.NonFiniteLossError, match=r"at step 2.*model\.ckpt-1"):
        trainer.train(config, logdir, options)
    assert tf.train.latest_checkpoint(logdir).endswith("model.ckpt-1")
    for key, value in _checkpoint_tensors(tf.train.latest_checkpoint(logdir)).items():
        assert np.all(np.isfinite(value)), key


def test_fine_tune_with_frozen_backbone(reference, tmp_path):
    reference_result, _, config = reference
    override = (
        f'train_config {{ fine_tune_checkpoint: "{reference_result.checkpoint_path}" '
        'fine_tune_checkpoint_type: "segmentation" freeze_fine_tune_backbone: true }'
    )
    tuned = config_util.apply_overrides(config, override)
    result = trainer.train(tuned, str(tmp_path / "tuned"), dataclasses.replace(BASE, num_steps=1))
    # Fine-tuning restores weights, not the step.
    assert result.checkpoint_path.endswith("model.ckpt-1")
    before = checkpoint_utils.read_named_tensors(reference_result.checkpoint_path)
    after = checkpoint_utils.read_named_tensors(result.checkpoint_path)
    backbone = [
        name
        for name in before
        if name.startswith("SharedFeatureExtractor/") and "moving_" not in name
    ]
    assert len(backbone) > 100
    for name in backbone:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    head = [name for name in before if name.startswith("CascadeFeatureFusion/")]
    assert any(not np.array_equal(after[n], before[n]) for n in head if "moving_" not in n)


def test_user_errors(reference, tiny_config_path, tmp_path):
    _, reference_logdir, config = reference
    with pytest.raises(trainer.TrainError, match="--num_clones must be >= 1"):
        trainer.TrainOptions(num_clones=0)
    with pytest.raises(trainer.TrainError, match="--max_checkpoints_to_keep"):
        trainer.TrainOptions(max_checkpoints_to_keep=0)
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(trainer.TrainError, match="is a file"):
        trainer.train(config, str(a_file), BASE)
    missing = config_util.apply_overrides(
        config, 'train_input_reader { tf_record_input_reader { input_path: "/no/such.record" } }'
    )
    with pytest.raises(FileNotFoundError, match="/no/such.record"):
        trainer.train(missing, str(tmp_path / "missing"), BASE)
    # A logdir written by another model cannot be resumed by this one.
    wider = config_util.apply_overrides(config, "model { icnet { filter_scale: 0.25 } }")
    with pytest.raises(trainer.TrainError, match="cannot resume from .*model.ckpt-4"):
        trainer.train(wider, reference_logdir, dataclasses.replace(BASE, num_steps=5))
    nodes = dataclasses.replace(BASE, gradient_checkpointing=True, checkpoint_nodes=("block9",))
    with pytest.raises(trainer.TrainError, match="'block9'.*Valid segments"):
        trainer.train(config, str(tmp_path / "nodes"), nodes)


# --------------------------------------------------------------------------- recompute


def test_recompute_gradients_equal_plain(config_path, monkeypatch):
    model, run = recompute_check.gradient_run(config_path)
    plain = run()
    reruns = recompute_check.count_recomputations(monkeypatch)
    selected = model.set_recompute_scopes(model.default_recompute_scopes())
    assert selected == (
        "SharedFeatureExtractor/resnet_v1_50/block1",
        "SharedFeatureExtractor/resnet_v1_50/block2",
        "SharedFeatureExtractor/resnet_v1_50/block3",
        "SharedFeatureExtractor/resnet_v1_50/block4",
        "FastPSPModule",
        "CascadeFeatureFusion",
        "CascadeFeatureFusion_1",
    )
    checkpointed = run()
    assert len(reruns) == len(selected)  # every segment was recomputed in backprop
    # The recomputation does not move the BN statistics a second time.
    recompute_check.assert_same_step(checkpointed, plain)


def test_recompute_scope_names():
    segments = ("Net/resnet/block1", "Net/resnet/block2", "FastPSPModule", "CascadeFeatureFusion")
    names = [
        "Net/resnet/block1/unit_3/bottleneck_v1/Relu",
        "CascadeFeatureFusion/Relu",
        "FastPSPModule/Conv/Relu6",
        "FastPSPModule",
        "",
    ]
    assert recompute.resolve_scopes(names, segments, "m") == (
        "Net/resnet/block1",
        "FastPSPModule",
        "CascadeFeatureFusion",
    )
    with pytest.raises(ValueError, match="'CascadeFeatureFusion_1/Relu'.*Valid segments"):
        recompute.resolve_scopes(["CascadeFeatureFusion_1/Relu"], segments, "m")


def test_recompute_segments_of_each_model():
    blocks = tuple(f"SharedFeatureExtractor/resnet_v1_50/block{i}" for i in range(1, 5))
    assert PSPNet(5, 0.125).default_recompute_scopes() == (*blocks, "PSPModule")
    # MobileNetV2 has no backbone segments; its ICNet head still has the fusion units.
    mobile = ICNet(5, 0.125, backbone="dilated_mobilenet")
    assert mobile.recompute_segments() == (
        "FastPSPModule",
        "CascadeFeatureFusion",
        "CascadeFeatureFusion_1",
    )
    pretrain = ICNet(5, 0.125, pretrain_single_branch_mode=True)
    assert pretrain.recompute_segments() == (*blocks, "FastPSPModule")


def test_mixed_precision_trains_with_float32_weights(config_path, tmp_path):
    # On CPU the policy is mixed_bfloat16: bfloat16 compute, float32 variables.
    options = dataclasses.replace(BASE, num_steps=2, mixed_precision=True)
    result = trainer.train(config_util.load_pipeline_config(config_path), str(tmp_path), options)
    assert result.step == 2 and np.isfinite(result.loss)
    tensors = checkpoint_utils.read_named_tensors(result.checkpoint_path)
    weights = tensors["SharedFeatureExtractor/resnet_v1_50/conv1/weights"]
    assert weights.dtype == np.float32 and np.isfinite(weights).all()
