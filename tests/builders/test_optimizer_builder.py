"""Tests of the optimizer builder, from inline text protos."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

from builders import optimizer_builder, optimizer_rules
from core.training.learning_schedules import ConstantLearningRate, ExponentialDecay, PolynomialDecay
from core.training.optimizers import TF1MomentumOptimizer
from protos import optimizer_pb2


def _parse(text):
    return text_format.Parse(text, optimizer_pb2.Optimizer())


def test_momentum_with_poly_schedule_is_tf1_momentum_by_default():
    config = _parse(
        """
        momentum_optimizer {
          learning_rate {
            polynomial_decay_learning_rate {
              initial_learning_rate: 0.01 decay_steps: 200000 power: 0.9
            }
          }
          momentum_optimizer_value: 0.9
        }
        """
    )
    optimizer, schedule = optimizer_builder.build(config)
    assert isinstance(optimizer, TF1MomentumOptimizer)
    assert optimizer.momentum == pytest.approx(0.9)
    assert isinstance(schedule, PolynomialDecay)
    assert schedule.get_config() == pytest.approx(
        {"initial_learning_rate": 0.01, "decay_steps": 200000, "power": 0.9, "end_learning_rate": 0}
    )
    # The optimizer holds the returned schedule: rate at step 0 = the initial rate.
    assert float(optimizer.learning_rate) == pytest.approx(0.01)
    assert float(schedule(200000)) == 0.0


def test_momentum_as_keras_sgd_and_proto_defaults():
    config = _parse("momentum_optimizer { learning_rate { constant_learning_rate {} } }")
    optimizer, schedule = optimizer_builder.build(config, use_tf1_momentum=False)
    assert type(optimizer) is keras.optimizers.SGD
    # momentum_optimizer_value defaults to 0.9, constant learning_rate to 0.002.
    assert optimizer.momentum == pytest.approx(0.9)
    assert isinstance(schedule, ConstantLearningRate)
    assert schedule.learning_rate == pytest.approx(0.002)


def test_adam_uses_tf1_defaults_and_exponential_schedule():
    config = _parse(
        """
        adam_optimizer {
          learning_rate {
            exponential_decay_learning_rate {
              initial_learning_rate: 0.001 decay_steps: 100 decay_factor: 0.5 staircase: false
            }
          }
        }
        """
    )
    optimizer, schedule = optimizer_builder.build(config)
    assert type(optimizer) is keras.optimizers.Adam
    assert (optimizer.beta_1, optimizer.beta_2, optimizer.epsilon) == (0.9, 0.999, 1e-8)
    assert isinstance(schedule, ExponentialDecay)
    assert not schedule.staircase and schedule.decay_steps == 100
    assert float(schedule(100)) == pytest.approx(0.0005)


def test_exponential_defaults():
    config = _parse("adam_optimizer { learning_rate { exponential_decay_learning_rate {} } }")
    _, schedule = optimizer_builder.build(config)
    assert schedule.get_config() == pytest.approx(
        {
            "initial_learning_rate": 0.002,
            "decay_steps": 4000000,
            "decay_factor": 0.95,
            "staircase": True,
        }
    )


@pytest.mark.parametrize(
    "text, field",
    [
        ("", "train_config.optimizer"),
        ("momentum_optimizer {}", "optimizer.momentum_optimizer.learning_rate has no schedule"),
        ("adam_optimizer { learning_rate {} }", "optimizer.adam_optimizer.learning_rate"),
        (
            "adam_optimizer { learning_rate { constant_learning_rate { learning_rate: 0 } } }",
            r"constant_learning_rate\.learning_rate must be positive",
        ),
        (
            "momentum_optimizer { learning_rate { polynomial_decay_learning_rate "
            "{ decay_steps: 0 } } }",
            r"polynomial_decay_learning_rate\.decay_steps must be positive",
        ),
        (
            "momentum_optimizer { learning_rate { polynomial_decay_learning_rate { power: -1 } } }",
            r"polynomial_decay_learning_rate\.power must be positive",
        ),
        (
            "momentum_optimizer { learning_rate { exponential_decay_learning_rate "
            "{ decay_factor: 0 } } }",
            re.escape(
                "exponential_decay_learning_rate.decay_factor must be in (0, 1] "
                "(the rate's multiplier per decay_steps), got 0."
            ),
        ),
        (
            "momentum_optimizer { learning_rate { exponential_decay_learning_rate "
            "{ initial_learning_rate: -0.1 } } }",
            r"exponential_decay_learning_rate\.initial_learning_rate must be positive",
        ),
        (
            "momentum_optimizer { momentum_optimizer_value: 1.5 "
            "learning_rate { constant_learning_rate {} } }",
            re.escape("momentum_optimizer.momentum_optimizer_value must be in [0, 1), got 1.5 "),
        ),
    ],
)
def test_invalid_configs_name_the_field(text, field):
    with pytest.raises(ValueError, match=field):
        optimizer_builder.build(_parse(text))


def test_built_adam_matches_tf1_adam_optimizer():
    # The builder's claim: with TF1's epsilon, Keras Adam takes TF1 Adam's steps
    # (with Keras' default 1e-7 the tiny third weight ends up 0.07 away).
    config = _parse(
        "adam_optimizer { learning_rate { constant_learning_rate { learning_rate: 0.1 } } }"
    )
    optimizer, _ = optimizer_builder.build(config)
    initial = np.array([1.0, -2.0, 1e-4], np.float32)
    ours, theirs = keras.Variable(initial), tf.Variable(initial)
    tf1 = tf.compat.v1.train.AdamOptimizer(learning_rate=0.1)
    for _ in range(5):
        for variable, apply in ((ours, optimizer.apply_gradients), (theirs, tf1.apply_gradients)):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(variable**3)
            apply([(tape.gradient(loss, variable), variable)])
    # float32 rounding differs between the two kernels (a few ulps per step).
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-7, rtol=1e-5)


def test_every_problem_is_one_line_and_the_builder_runs_the_shared_rules(monkeypatch):
    config = _parse(
        """
        momentum_optimizer {
          learning_rate { exponential_decay_learning_rate { decay_factor: 1.5 decay_steps: 0 } }
          momentum_optimizer_value: 1.0
        }
        """
    )
    with pytest.raises(optimizer_builder.OptimizerConfigError) as info:
        optimizer_builder.build(config)
    prefix = "train_config.optimizer.momentum_optimizer"
    schedule = f"{prefix}.learning_rate.exponential_decay_learning_rate"
    assert str(info.value).split("\n") == [
        f"{schedule}.decay_steps must be positive, got 0.",
        f"{schedule}.decay_factor must be in (0, 1] (the rate's multiplier per decay_steps), "
        "got 1.5.",
        f"{prefix}.momentum_optimizer_value must be in [0, 1), got 1 "
        "(0.9 is usual; at 1 old gradients never fade).",
    ]
    # Whatever the single rule list says is what the builder reports.
    valid = _parse("adam_optimizer { learning_rate { constant_learning_rate {} } }")
    monkeypatch.setattr(
        optimizer_rules,
        "learning_rate_problems",
        lambda rate: [("constant_learning_rate", "is forbidden today.")],
    )
    with pytest.raises(ValueError) as info:
        optimizer_builder.build(valid)
    assert str(info.value) == (
        "train_config.optimizer.adam_optimizer.learning_rate.constant_learning_rate "
        "is forbidden today."
    )


def test_build_learning_rate_names_the_given_field():
    rate = optimizer_pb2.LearningRate()
    rate.polynomial_decay_learning_rate.power = float("nan")
    with pytest.raises(ValueError) as info:
        optimizer_builder.build_learning_rate(rate, field="my.rate")
    assert (
        str(info.value) == "my.rate.polynomial_decay_learning_rate.power must be positive, got nan."
    )
