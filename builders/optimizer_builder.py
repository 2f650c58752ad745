"""Builds the training optimizer and its learning-rate schedule from an ``Optimizer`` config.

The rules the values must satisfy are written once, in
:mod:`builders.optimizer_rules`; ``load_pipeline_config`` reports a broken value
there with its file and line, before anything is built. The builders run the
same rules on the message they are given (which may not come from a loaded
config), raise what they find, and then only raise for what they cannot build.
"""

from __future__ import annotations

import keras
from absl import logging

from builders import optimizer_rules
from builders.config_errors import ConfigError
from core.training import learning_schedules
from core.training.optimizers import TF1MomentumOptimizer
from protos import optimizer_pb2

# TF1 AdamOptimizer's defaults. Keras' epsilon default is 1e-7; the update
# formula itself (the "epsilon hat" form) is the same in both.
ADAM_BETA_1 = 0.9
ADAM_BETA_2 = 0.999
ADAM_EPSILON = 1e-8

# Where ``build``'s message sits in a pipeline config, for error messages.
OPTIMIZER_FIELD = "train_config.optimizer"


class OptimizerConfigError(ConfigError):
    """An optimizer or learning-rate value is invalid (a ``ConfigError``, so a ``ValueError``)."""


def _raise_problems(field: str, problems: list[tuple[str, str]]) -> None:
    """Raises one line ``field.path reason`` per problem, if there are any."""
    if problems:
        raise OptimizerConfigError(
            "\n".join(f"{field}{'.' + path if path else ''} {reason}" for path, reason in problems)
        )


def build_learning_rate(
    learning_rate_config: optimizer_pb2.LearningRate,
    field: str = "learning_rate",
) -> keras.optimizers.schedules.LearningRateSchedule:
    """Builds the schedule of a ``LearningRate`` message.

    Args:
      learning_rate_config: the ``LearningRate`` message.
      field: its path in the config, used in error messages.

    Returns:
      A ``core.training.learning_schedules`` schedule, called with the update count.

    Raises:
      OptimizerConfigError (a ValueError): no schedule is set or a value breaks a
        rule of ``optimizer_rules.learning_rate_problems`` (one line per problem).
    """
    _raise_problems(field, optimizer_rules.learning_rate_problems(learning_rate_config))
    kind = learning_rate_config.WhichOneof("learning_rate")
    config = getattr(learning_rate_config, kind)
    if kind == "constant_learning_rate":
        return learning_schedules.ConstantLearningRate(config.learning_rate)
    if kind == "exponential_decay_learning_rate":
        return learning_schedules.ExponentialDecay(
            initial_learning_rate=config.initial_learning_rate,
            decay_steps=config.decay_steps,
            decay_factor=config.decay_factor,
            staircase=config.staircase,
        )
    if kind == "polynomial_decay_learning_rate":
        # The original's end rate was always 0 (its proto has no field for it).
        return learning_schedules.PolynomialDecay(
            initial_learning_rate=config.initial_learning_rate,
            decay_steps=config.decay_steps,
            power=config.power,
            end_learning_rate=0.0,
        )
    # A oneof member added to the proto without a schedule here: a value we cannot build.
    raise OptimizerConfigError(f"{field}.{kind}: unsupported learning rate schedule.")


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
      OptimizerConfigError (a ValueError): one line ``train_config.optimizer.<field>
        <reason>`` per broken rule of ``optimizer_rules.optimizer_problems``.
    """
    _raise_problems(OPTIMIZER_FIELD, optimizer_rules.optimizer_problems(optimizer_config))
    kind = optimizer_config.WhichOneof("optimizer")
    config = getattr(optimizer_config, kind)
    schedule = build_learning_rate(
        config.learning_rate, field=f"{OPTIMIZER_FIELD}.{kind}.learning_rate"
    )
    if kind == "momentum_optimizer":
        momentum = config.momentum_optimizer_value
        if use_tf1_momentum:
            optimizer = TF1MomentumOptimizer(learning_rate=schedule, momentum=momentum)
        else:
            optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=momentum)
    elif kind == "adam_optimizer":
        optimizer = keras.optimizers.Adam(
            learning_rate=schedule, beta_1=ADAM_BETA_1, beta_2=ADAM_BETA_2, epsilon=ADAM_EPSILON
        )
    else:  # A oneof member added to the proto without an optimizer here.
        raise OptimizerConfigError(f"{OPTIMIZER_FIELD}.{kind}: unsupported optimizer.")
    logging.info(
        "Optimizer %s with %s %s",
        type(optimizer).__name__,
        type(schedule).__name__,
        schedule.get_config(),
    )
    return optimizer, schedule
