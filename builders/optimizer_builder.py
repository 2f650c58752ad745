"""Builds the training optimizer and its learning-rate schedule from an ``Optimizer`` config."""

from __future__ import annotations

import keras
from absl import logging

from core.training import learning_schedules
from core.training.optimizers import TF1MomentumOptimizer
from protos import optimizer_pb2

# TF1 AdamOptimizer's defaults. Keras' epsilon default is 1e-7; the update
# formula itself (the "epsilon hat" form) is the same in both.
ADAM_BETA_1 = 0.9
ADAM_BETA_2 = 0.999
ADAM_EPSILON = 1e-8


def _positive(field: str, value: float) -> float:
    # ``not value > 0`` also rejects NaN.
    if not value > 0:
        raise ValueError(f"{field} must be positive, got {value}; fix it in the config.")
    return value


def build_learning_rate(
    learning_rate_config: optimizer_pb2.LearningRate, field: str = "learning_rate"
) -> keras.optimizers.schedules.LearningRateSchedule:
    """Builds the schedule of a ``LearningRate`` message.

    Args:
      learning_rate_config: the ``LearningRate`` message.
      field: its path in the config, used in error messages.

    Returns:
      A ``core.training.learning_schedules`` schedule, called with the update count.

    Raises:
      ValueError: if no schedule is set or a value is out of range.
    """
    kind = learning_rate_config.WhichOneof("learning_rate")
    if kind is None:
        raise ValueError(
            f"{field} has no schedule: set one of constant_learning_rate, "
            "exponential_decay_learning_rate or polynomial_decay_learning_rate."
        )
    config = getattr(learning_rate_config, kind)
    where = f"{field}.{kind}"
    if kind == "constant_learning_rate":
        return learning_schedules.ConstantLearningRate(
            _positive(f"{where}.learning_rate", config.learning_rate)
        )
    if kind == "exponential_decay_learning_rate":
        return learning_schedules.ExponentialDecay(
            initial_learning_rate=_positive(
                f"{where}.initial_learning_rate", config.initial_learning_rate
            ),
            decay_steps=_positive(f"{where}.decay_steps", config.decay_steps),
            decay_factor=_positive(f"{where}.decay_factor", config.decay_factor),
            staircase=config.staircase,
        )
    # polynomial_decay_learning_rate; the original's end rate was always 0.
    return learning_schedules.PolynomialDecay(
        initial_learning_rate=_positive(
            f"{where}.initial_learning_rate", config.initial_learning_rate
        ),
        decay_steps=_positive(f"{where}.decay_steps", config.decay_steps),
        power=_positive(f"{where}.power", config.power),
        end_learning_rate=0.0,
    )


def build(
    optimizer_config: optimizer_pb2.Optimizer, use_tf1_momentum: bool = True
) -> tuple[keras.optimizers.Optimizer, keras.optimizers.schedules.LearningRateSchedule]:
    """Builds the optimizer of ``train_config.optimizer``.

    Args:
      optimizer_config: the ``Optimizer`` message.
      use_tf1_momentum: for ``momentum_optimizer``, use the TF1 update rule
        (``core.training.optimizers.TF1MomentumOptimizer``, what the original trained
        with) rather than Keras ``SGD(momentum=...)``, which differs under a
        decaying learning rate.

    Returns:
      ``(optimizer, schedule)``: the optimizer already holds the schedule; it is
      returned too so the trainer can log the rate at each step.

    Raises:
      ValueError: naming the field, if the optimizer or its learning rate is
        unset or a value is out of range.
    """
    kind = optimizer_config.WhichOneof("optimizer")
    if kind is None:
        raise ValueError(
            "optimizer has no type: set momentum_optimizer or adam_optimizer in "
            "train_config.optimizer."
        )
    config = getattr(optimizer_config, kind)
    schedule = build_learning_rate(config.learning_rate, field=f"optimizer.{kind}.learning_rate")
    if kind == "momentum_optimizer":
        momentum = config.momentum_optimizer_value
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(
                f"optimizer.momentum_optimizer.momentum_optimizer_value must be in [0, 1], "
                f"got {momentum}."
            )
        if use_tf1_momentum:
            optimizer = TF1MomentumOptimizer(learning_rate=schedule, momentum=momentum)
        else:
            optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=momentum)
    else:  # adam_optimizer
        optimizer = keras.optimizers.Adam(
            learning_rate=schedule, beta_1=ADAM_BETA_1, beta_2=ADAM_BETA_2, epsilon=ADAM_EPSILON
        )
    logging.info(
        "Optimizer %s with %s %s",
        type(optimizer).__name__,
        type(schedule).__name__,
        schedule.get_config(),
    )
    return optimizer, schedule
