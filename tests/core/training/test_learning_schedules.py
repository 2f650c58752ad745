"""Tests of the TF1-formula learning-rate schedules against hand-computed values."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from core.training.learning_schedules import ConstantLearningRate, ExponentialDecay, PolynomialDecay


def _at(schedule, steps):
    return np.array([float(schedule(tf.constant(step, tf.int64))) for step in steps])


def test_constant():
    np.testing.assert_allclose(_at(ConstantLearningRate(0.002), [0, 1, 10**6]), [0.002] * 3)


def test_exponential_staircase_drops_once_per_decay_steps():
    schedule = ExponentialDecay(0.1, decay_steps=10, decay_factor=0.5, staircase=True)
    # floor(step / 10): 0, 0, 1, 1, 2, 3 -> 0.1 * 0.5 ** that.
    expected = [0.1, 0.1, 0.05, 0.05, 0.025, 0.0125]
    np.testing.assert_allclose(_at(schedule, [0, 9, 10, 19, 20, 35]), expected, rtol=1e-6)


def test_exponential_continuous():
    schedule = ExponentialDecay(0.1, decay_steps=10, decay_factor=0.5, staircase=False)
    # 0.1 * 0.5 ** (step / 10): step 5 -> 0.1 / sqrt(2), step 15 -> 0.05 / sqrt(2).
    expected = [0.1, 0.07071068, 0.05, 0.03535534, 0.0125]
    np.testing.assert_allclose(_at(schedule, [0, 5, 10, 15, 30]), expected, rtol=1e-6)


def test_polynomial_decay_hand_values_and_clipping():
    schedule = PolynomialDecay(0.01, decay_steps=100, power=0.9)
    # 0.01 * (1 - step/100) ** 0.9, worked out by hand with exp/log:
    # 0.75 ** 0.9 = exp(0.9 * -0.287682) = 0.771889; 0.5 ** 0.9 = 0.535887;
    # 0.01 ** 0.9 = 10 ** -1.8 = 0.0158489. From decay_steps on it stays at 0.
    expected = [0.01, 0.00771889, 0.00535887, 0.000158489, 0.0, 0.0]
    np.testing.assert_allclose(_at(schedule, [0, 25, 50, 99, 100, 250]), expected, rtol=1e-5)


def test_polynomial_decay_power_one_and_end_rate():
    schedule = PolynomialDecay(1.0, decay_steps=4, power=1.0, end_learning_rate=0.2)
    # (1.0 - 0.2) * (1 - step/4) + 0.2.
    expected = [1.0, 0.8, 0.6, 0.4, 0.2, 0.2]
    np.testing.assert_allclose(_at(schedule, [0, 1, 2, 3, 4, 9]), expected, rtol=1e-6)


def test_schedules_in_tf_function_with_python_and_tensor_steps():
    schedule = PolynomialDecay(0.01, decay_steps=100, power=0.9)

    @tf.function
    def rate(step):
        return schedule(step)

    assert float(rate(tf.constant(50, tf.int64))) == pytest.approx(0.01 * 0.5**0.9, rel=1e-6)
    assert float(schedule(50)) == pytest.approx(0.01 * 0.5**0.9, rel=1e-6)


@pytest.mark.parametrize(
    "schedule",
    [
        ConstantLearningRate(0.5),
        ExponentialDecay(0.1, 7, 0.9, staircase=False),
        PolynomialDecay(0.01, 100, power=0.8, end_learning_rate=0.001),
    ],
)
def test_serialization_round_trip(schedule):
    restored = type(schedule).from_config(schedule.get_config())
    assert restored.get_config() == schedule.get_config()
    revived = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert isinstance(revived, type(schedule))
    np.testing.assert_allclose(_at(revived, [0, 3, 30]), _at(schedule, [0, 3, 30]))


def test_works_as_keras_optimizer_learning_rate():
    optimizer = keras.optimizers.SGD(learning_rate=PolynomialDecay(0.01, 10, power=1.0))
    variable = keras.Variable(1.0)
    optimizer.apply_gradients([(tf.constant(1.0), variable)])
    optimizer.apply_gradients([(tf.constant(1.0), variable)])
    # Steps 0 and 1: 1 - 0.01 - 0.009.
    assert float(variable.numpy()) == pytest.approx(0.981, rel=1e-6)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ConstantLearningRate(0.0), "learning_rate"),
        (lambda: ExponentialDecay(0.1, 0, 0.5), "decay_steps"),
        (lambda: ExponentialDecay(0.1, 10, -0.5), "decay_factor"),
        (lambda: PolynomialDecay(float("nan"), 10), "initial_learning_rate"),
        (lambda: PolynomialDecay(0.1, 10, power=0.0), "power"),
        (lambda: PolynomialDecay(0.1, 10, end_learning_rate=-1.0), "end_learning_rate"),
    ],
)
def test_invalid_values_name_the_argument(make, message):
    with pytest.raises(ValueError, match=message):
        make()
