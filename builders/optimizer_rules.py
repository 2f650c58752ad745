"""The rules of ``train_config.optimizer`` and its learning rate: the only place they are written.

:mod:`builders.config_validation` reports every broken rule of a loaded config
with its file and line; :mod:`builders.optimizer_builder` runs the same
functions on the message it is given (which may not come from a loaded config:
tests, benchmarks) and raises what they find before building anything.

Where the TF1 original accepted a value that cannot train, the rule is stricter:

- ``momentum_optimizer_value`` must be in [0, 1). TF1's ``MomentumOptimizer``
  checks nothing and Keras' ``SGD`` accepts 1, but at 1 the velocity never
  decays, so every past gradient keeps its full weight forever and training does
  not settle. Loaded configs have always been held to [0, 1).
- ``decay_factor`` must be in (0, 1]. ``tf.train.exponential_decay`` takes any
  rate, but a factor above 1 makes the "decay" grow the learning rate
  without bound; 1 keeps it constant.
- ``power`` must be > 0. ``tf.train.polynomial_decay`` takes any power, but at 0
  the rate never decays (``0 ** 0 == 1``) and below 0 it grows to infinity at
  ``decay_steps``.

Every "positive" check is written ``not value > 0`` so a NaN fails it too.
"""

from __future__ import annotations

from protos import optimizer_pb2

OPTIMIZER_NAMES = tuple(
    field.name for field in optimizer_pb2.Optimizer.DESCRIPTOR.oneofs_by_name["optimizer"].fields
)
LEARNING_RATE_NAMES = tuple(
    field.name
    for field in optimizer_pb2.LearningRate.DESCRIPTOR.oneofs_by_name["learning_rate"].fields
)


def _shown(value: float) -> str:
    """A float32 field's value as written in a config (``0.1``, not ``0.10000000149011612``)."""
    return f"{value:.7g}" if isinstance(value, float) else str(value)


def learning_rate_problems(rate: optimizer_pb2.LearningRate) -> list[tuple[str, str]]:
    """The rules for one ``LearningRate`` message.

    Args:
      rate: a ``LearningRate`` message.

    Returns:
      ``(field path relative to ``rate``, reason)`` pairs, empty for a valid
      schedule; the path is ``""`` for ``rate`` itself and each reason reads after
      its path (``"constant_learning_rate.learning_rate", "must be positive, got 0."``).
    """
    kind = rate.WhichOneof("learning_rate")
    if kind is None:
        return [("", f"has no schedule; set one of: {', '.join(LEARNING_RATE_NAMES)}.")]
    options = getattr(rate, kind)
    found: list[tuple[str, str]] = []

    def positive(name: str) -> None:
        value = getattr(options, name)
        if not value > 0:
            found.append((f"{kind}.{name}", f"must be positive, got {_shown(value)}."))

    if kind == "constant_learning_rate":
        positive("learning_rate")
        return found
    positive("initial_learning_rate")
    positive("decay_steps")
    if kind == "exponential_decay_learning_rate":
        if not 0 < options.decay_factor <= 1:
            found.append(
                (
                    f"{kind}.decay_factor",
                    f"must be in (0, 1] (the rate's multiplier per decay_steps), "
                    f"got {_shown(options.decay_factor)}.",
                )
            )
    elif kind == "polynomial_decay_learning_rate":
        positive("power")
    return found


def optimizer_problems(optimizer: optimizer_pb2.Optimizer) -> list[tuple[str, str]]:
    """The rules for ``train_config.optimizer``, its learning rate included.

    Args:
      optimizer: an ``Optimizer`` message.

    Returns:
      ``(field path relative to ``optimizer``, reason)`` pairs, empty for a valid
      optimizer; the path is ``""`` for ``optimizer`` itself
      (``"momentum_optimizer.momentum_optimizer_value", "must be in [0, 1), ..."``).
    """
    kind = optimizer.WhichOneof("optimizer")
    if kind is None:
        names = " or ".join(f"{name} {{ ... }}" for name in OPTIMIZER_NAMES)
        return [("", f"is required: {names}.")]
    options = getattr(optimizer, kind)
    path = f"{kind}.learning_rate"
    found = [
        (f"{path}.{field}" if field else path, reason)
        for field, reason in learning_rate_problems(options.learning_rate)
    ]
    if kind == "momentum_optimizer" and not 0 <= options.momentum_optimizer_value < 1:
        found.append(
            (
                f"{kind}.momentum_optimizer_value",
                f"must be in [0, 1), got {_shown(options.momentum_optimizer_value)} "
                "(0.9 is usual; at 1 old gradients never fade).",
            )
        )
    return found
