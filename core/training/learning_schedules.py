"""Learning-rate schedules with the original's (TF1) formulas.

The original built its learning rate from ``tf.train.exponential_decay`` or
``tf.train.polynomial_decay`` on the global step. These classes compute the
same values as Keras 3 ``LearningRateSchedule`` objects, so they plug into any
Keras optimizer (which calls them with its ``iterations`` counter, i.e. the
number of updates applied so far, exactly like TF1's ``global_step``), serialize
through ``get_config`` and run inside ``tf.function``.

Values are computed in float32, as TF1 did for a float32 learning rate.
"""

from __future__ import annotations

import keras
import tensorflow as tf

_PACKAGE = "fast_semantic_segmentation"


def _check_positive(name: str, value: float) -> None:
    # ``not value > 0`` also rejects NaN.
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ConstantLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """The same learning rate at every step.

    Args:
      learning_rate: the rate, > 0.
    """

    def __init__(self, learning_rate: float):
        _check_positive("learning_rate", learning_rate)
        self.learning_rate = float(learning_rate)

    def __call__(self, step: tf.Tensor | int) -> tf.Tensor:
        """Returns the float32 scalar rate; ``step`` is ignored."""
        del step
        return tf.constant(self.learning_rate, tf.float32)

    def get_config(self) -> dict:
        return {"learning_rate": self.learning_rate}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ExponentialDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``tf.train.exponential_decay``: ``lr0 * factor ** (step / decay_steps)``.

    With ``staircase`` the exponent is ``floor(step / decay_steps)``, so the
    rate drops by ``decay_factor`` once every ``decay_steps`` steps.

    Args:
      initial_learning_rate: the rate at step 0, > 0.
      decay_steps: steps per factor of decay, > 0.
      decay_factor: the multiplier per ``decay_steps``, > 0.
      staircase: decay in discrete jumps instead of continuously.
    """

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        decay_factor: float,
        staircase: bool = True,
    ):
        _check_positive("initial_learning_rate", initial_learning_rate)
        _check_positive("decay_steps", decay_steps)
        _check_positive("decay_factor", decay_factor)
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = int(decay_steps)
        self.decay_factor = float(decay_factor)
        self.staircase = bool(staircase)

    def __call__(self, step: tf.Tensor | int) -> tf.Tensor:
        """Returns the float32 scalar rate at ``step`` (an int or int tensor)."""
        with tf.name_scope("ExponentialDecay"):
            exponent = tf.cast(step, tf.float32) / tf.cast(self.decay_steps, tf.float32)
            if self.staircase:
                exponent = tf.floor(exponent)
            return self.initial_learning_rate * tf.pow(
                tf.constant(self.decay_factor, tf.float32), exponent
            )

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_factor": self.decay_factor,
            "staircase": self.staircase,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PolynomialDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``tf.train.polynomial_decay`` with ``cycle=False`` (the "poly" policy).

    ``lr = (lr0 - end) * (1 - min(step, decay_steps) / decay_steps) ** power + end``;
    after ``decay_steps`` the rate stays at ``end_learning_rate``. The original
    always used ``end_learning_rate = 0`` (its proto has no field for it).

    Args:
      initial_learning_rate: the rate at step 0, > 0.
      decay_steps: steps until the rate reaches ``end_learning_rate``, > 0.
      power: the polynomial's exponent, > 0 (0.9 in the PSPNet/ICNet recipe).
      end_learning_rate: the final rate, >= 0.
    """

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        power: float = 0.9,
        end_learning_rate: float = 0.0,
    ):
        _check_positive("initial_learning_rate", initial_learning_rate)
        _check_positive("decay_steps", decay_steps)
        _check_positive("power", power)
        if not end_learning_rate >= 0:
            raise ValueError(f"end_learning_rate must be >= 0, got {end_learning_rate}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = int(decay_steps)
        self.power = float(power)
        self.end_learning_rate = float(end_learning_rate)

    def __call__(self, step: tf.Tensor | int) -> tf.Tensor:
        """Returns the float32 scalar rate at ``step`` (an int or int tensor)."""
        with tf.name_scope("PolynomialDecay"):
            decay_steps = tf.cast(self.decay_steps, tf.float32)
            # cycle=False: hold the end rate once the schedule is over.
            step = tf.minimum(tf.cast(step, tf.float32), decay_steps)
            remaining = 1.0 - step / decay_steps
            span = self.initial_learning_rate - self.end_learning_rate
            return span * tf.pow(remaining, self.power) + self.end_learning_rate

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "power": self.power,
            "end_learning_rate": self.end_learning_rate,
        }
