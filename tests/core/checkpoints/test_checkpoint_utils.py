"""Tests of our checkpoint format and name-based reading."""

import numpy as np
import pytest
import tensorflow as tf

from core.checkpoints import checkpoint_utils
from core.checkpoints.checkpoint_utils import CheckpointError
from models import ICNet, PSPNet


def _model(cls=ICNet, scale=0.125, classes=3, **kwargs):
    model = cls(classes, scale, **kwargs)
    model.build_variables(model.min_input_size())
    return model


def test_checkpoint_stores_slim_names_and_restores_exactly(tmp_path):
    model = _model()
    step = tf.Variable(42, dtype=tf.int64)
    prefix = checkpoint_utils.make_checkpoint(model, step=step).save(str(tmp_path / "model.ckpt"))
    tensors = checkpoint_utils.read_named_tensors(prefix)
    assert set(tensors) == set(model.named_variables())
    name = "SharedFeatureExtractor/resnet_v1_50/block1/unit_1/bottleneck_v1/conv1/weights"
    np.testing.assert_array_equal(tensors[name], model.named_variables()[name].numpy())
    assert checkpoint_utils.checkpoint_step(prefix) == 42

    other = _model()  # fresh random weights
    assert checkpoint_utils.restore_model(other, str(tmp_path)) == prefix  # directory -> latest
    for key, variable in model.named_variables().items():
        np.testing.assert_array_equal(other.named_variables()[key].numpy(), variable.numpy())


def test_tf1_name_based_checkpoints_read_by_name(tmp_path):
    # A TF1-style checkpoint: keys are the variable names themselves.
    name = "resnet_v1_50/conv1/weights"
    variable = tf.Variable(np.arange(6, dtype=np.float32).reshape(1, 2, 3), name="v")
    prefix = tf.compat.v1.train.Saver(var_list={name: variable}).save(
        None, str(tmp_path / "slim.ckpt")
    )
    tensors = checkpoint_utils.read_named_tensors(prefix)
    assert list(tensors) == [name]
    np.testing.assert_array_equal(tensors[name], variable.numpy())
    assert checkpoint_utils.checkpoint_shapes(prefix) == {name: [1, 2, 3]}


def test_restore_errors_name_the_problem(tmp_path):
    with pytest.raises(CheckpointError, match="not found: expected .*missing.index"):
        checkpoint_utils.restore_model(_model(), str(tmp_path / "missing"))
    with pytest.raises(CheckpointError, match="no checkpoint in directory"):
        checkpoint_utils.restore_model(_model(), str(tmp_path))
    small = _model(scale=0.125)
    prefix = checkpoint_utils.make_checkpoint(small).save(str(tmp_path / "small"))
    with pytest.raises(CheckpointError, match="do not fit the model's shapes.*filter_scale"):
        checkpoint_utils.restore_model(_model(scale=0.25), prefix)
    with pytest.raises(CheckpointError, match="are not in"):
        checkpoint_utils.restore_model(_model(cls=PSPNet), prefix)


def test_restore_leaves_excluded_variables_alone(tmp_path):
    # A checkpoint without some of the model's variables (a float run restored into a model
    # with quantization ranges): those are excluded, the rest restored exactly.
    saved = _model()
    prefix = checkpoint_utils.make_checkpoint(saved).save(str(tmp_path / "model.ckpt"))
    model = _model()
    variables = model.named_variables()
    extra = "Extra/act_quant/min"
    variables[extra] = tf.Variable(3.0)
    model.named_variables = lambda: variables
    with pytest.raises(CheckpointError, match=f"not in .*{extra}"):
        checkpoint_utils.restore_model(model, prefix)
    checkpoint_utils.restore_model(model, prefix, exclude={extra})
    assert variables[extra].numpy() == 3.0
    for name, variable in saved.named_variables().items():
        np.testing.assert_array_equal(variables[name].numpy(), variable.numpy())
