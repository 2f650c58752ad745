"""Builds :class:`models.hyperparams.ConvHyperparams` from a ``Hyperparams`` proto."""

from __future__ import annotations

from models.hyperparams import BatchNormParams, ConvHyperparams
from protos import hyperparams_pb2

_MODES = {
    hyperparams_pb2.VarianceScalingInitializer.FAN_IN: "fan_in",
    hyperparams_pb2.VarianceScalingInitializer.FAN_OUT: "fan_out",
    hyperparams_pb2.VarianceScalingInitializer.FAN_AVG: "fan_avg",
}


def build(config: hyperparams_pb2.Hyperparams) -> ConvHyperparams:
    """Turns the config's head-conv hyperparams into plain values.

    An unset regularizer means no weight decay; an unset initializer means the
    proto's default variance scaling (He, fan-in, factor 2).
    """
    batch_norm = config.batch_norm
    kwargs = {
        "batch_norm": BatchNormParams(
            decay=batch_norm.decay,
            epsilon=batch_norm.epsilon,
            center=batch_norm.center,
            scale=batch_norm.scale,
            train=batch_norm.train,
        )
    }
    regularizer = config.regularizer.WhichOneof("regularizer_oneof")
    if regularizer is None:
        kwargs.update(regularizer="none", regularizer_weight=0.0)
    else:
        kwargs.update(
            regularizer="l1" if regularizer == "l1_regularizer" else "l2",
            regularizer_weight=getattr(config.regularizer, regularizer).weight,
        )
    initializer = config.initializer.WhichOneof("initializer_oneof")
    if initializer == "truncated_normal_initializer":
        options = config.initializer.truncated_normal_initializer
        kwargs.update(
            initializer="truncated_normal",
            truncated_normal_mean=options.mean,
            truncated_normal_stddev=options.stddev,
        )
    else:
        options = config.initializer.variance_scaling_initializer
        kwargs.update(
            initializer="variance_scaling",
            variance_scaling_factor=options.factor,
            variance_scaling_mode=_MODES[options.mode],
            variance_scaling_uniform=options.uniform,
        )
    return ConvHyperparams(**kwargs)
