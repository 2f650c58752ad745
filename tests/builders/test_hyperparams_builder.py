"""Tests of the hyperparams builder, from inline text protos."""

import keras
import numpy as np
import pytest
from google.protobuf import text_format

from builders import hyperparams_builder
from protos import hyperparams_pb2


def _build(text):
    return hyperparams_builder.build(text_format.Parse(text, hyperparams_pb2.Hyperparams()))


def test_cityscapes_recipe_values():
    params = _build(
        """
        batch_norm { train: true scale: true center: true decay: 0.9997 epsilon: 0.00001 }
        regularizer { l2_regularizer { weight: 0.0001 } }
        initializer { variance_scaling_initializer { } }
        """
    )
    assert params.batch_norm.decay == pytest.approx(0.9997)
    assert params.batch_norm.epsilon == pytest.approx(1e-5)
    assert params.regularizer == "l2"
    assert params.regularizer_weight == pytest.approx(1e-4)
    assert params.initializer == "variance_scaling"
    assert params.variance_scaling_factor == 2.0 and params.variance_scaling_mode == "fan_in"
    # slim's l2_regularizer(w) is w * sum(x^2) / 2.
    kernel = np.full((2, 2), 3.0, dtype=np.float32)
    penalty = float(params.kernel_regularizer()(keras.ops.convert_to_tensor(kernel)))
    assert penalty == pytest.approx(1e-4 * 4 * 9 / 2, rel=1e-5)


def test_empty_hyperparams_mean_proto_defaults_and_no_decay():
    params = _build("")
    assert params.regularizer == "none" and params.kernel_regularizer() is None
    assert params.batch_norm.decay == pytest.approx(0.9997) and params.batch_norm.train
    assert params.initializer == "variance_scaling"


def test_l1_truncated_normal_and_frozen_batch_norm():
    params = _build(
        """
        batch_norm { train: false center: false }
        regularizer { l1_regularizer { weight: 0.5 } }
        initializer { truncated_normal_initializer { mean: 0.1 stddev: 0.02 } }
        """
    )
    assert not params.batch_norm.train and not params.batch_norm.center
    assert params.regularizer == "l1" and params.regularizer_weight == 0.5
    assert params.initializer == "truncated_normal"
    assert params.truncated_normal_mean == pytest.approx(0.1)
    assert params.truncated_normal_stddev == pytest.approx(0.02)
    kernel = keras.ops.convert_to_tensor(np.array([[-1.0, 2.0]], dtype=np.float32))
    assert float(params.kernel_regularizer()(kernel)) == pytest.approx(1.5)


def test_variance_scaling_mode_and_uniform():
    params = _build(
        "initializer { variance_scaling_initializer { factor: 1.0 mode: FAN_AVG uniform: true } }"
    )
    assert params.variance_scaling_mode == "fan_avg" and params.variance_scaling_uniform
    weights = params.kernel_initializer()((200, 300))
    # Uniform variance scaling: limit sqrt(3 * factor / fan_avg).
    limit = np.sqrt(3.0 / 250.0)
    assert float(np.max(np.abs(weights))) <= limit + 1e-6
    assert float(np.std(weights)) == pytest.approx(limit / np.sqrt(3.0), rel=0.05)
