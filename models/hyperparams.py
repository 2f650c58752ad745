"""Plain-value hyperparameters for the convolutions of the segmentation models.

Models never see protos (DESIGN.md rule 1). ``builders/hyperparams_builder`` fills a
:class:`ConvHyperparams` from a ``Hyperparams`` proto; tests and scripts can build one directly.

The defaults of :class:`ConvHyperparams` are the proto defaults of the original
(``hyperparams.proto``), except the regularizer weight, which is 0 here because a message with no
regularizer means "no weight decay". Two presets reproduce the TF-slim arg scopes the original
used for its backbones, which ignore the config's hyperparams.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import keras

Initializer = Literal["variance_scaling", "truncated_normal"]
Regularizer = Literal["l1", "l2", "none"]
VarianceScalingMode = Literal["fan_in", "fan_out", "fan_avg"]


@dataclasses.dataclass(frozen=True)
class BatchNormParams:
    """Batch-norm settings, named as in the original's ``BatchNorm`` proto message.

    Attributes:
      decay: moving-average decay of the statistics (Keras ``momentum``), in [0, 1).
      epsilon: added to the variance, > 0.
      center: whether the BN has a learned offset (``beta``).
      scale: whether the BN has a learned scale (``gamma``).
      train: whether BN normalises with batch statistics (and updates the moving ones) when the
        model runs in training mode. False freezes the statistics, as slim's ``is_training``.
    """

    decay: float = 0.9997
    epsilon: float = 1e-5
    center: bool = True
    scale: bool = True
    train: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"batch_norm.decay must be in [0, 1), got {self.decay}.")
        if self.epsilon <= 0.0:
            raise ValueError(f"batch_norm.epsilon must be > 0, got {self.epsilon}.")


@dataclasses.dataclass(frozen=True)
class ConvHyperparams:
    """Initializer, regularizer and batch norm of a family of convolutions.

    Attributes:
      batch_norm: settings of the BN that follows every non-prediction conv.
      regularizer: weight penalty on conv kernels: "l1", "l2" or "none".
      regularizer_weight: penalty weight, >= 0. L2 follows TF-slim's ``l2_regularizer``:
        ``weight * sum(w**2) / 2`` (Keras' own L2 has no 1/2, so the weight is halved for it).
      initializer: "variance_scaling" or "truncated_normal".
      variance_scaling_factor: scale of the variance-scaling initializer (slim ``factor``).
      variance_scaling_mode: "fan_in", "fan_out" or "fan_avg".
      variance_scaling_uniform: uniform instead of truncated-normal samples.
      truncated_normal_mean: mean of the truncated-normal initializer.
      truncated_normal_stddev: standard deviation of the truncated-normal initializer, > 0.
    """

    batch_norm: BatchNormParams = dataclasses.field(default_factory=BatchNormParams)
    regularizer: Regularizer = "l2"
    regularizer_weight: float = 0.0
    initializer: Initializer = "variance_scaling"
    variance_scaling_factor: float = 2.0
    variance_scaling_mode: VarianceScalingMode = "fan_in"
    variance_scaling_uniform: bool = False
    truncated_normal_mean: float = 0.0
    truncated_normal_stddev: float = 1.0

    def __post_init__(self) -> None:
        if self.regularizer not in ("l1", "l2", "none"):
            raise ValueError(f"regularizer must be 'l1', 'l2' or 'none', got {self.regularizer!r}.")
        if self.regularizer_weight < 0.0:
            raise ValueError(f"regularizer_weight must be >= 0, got {self.regularizer_weight}.")
        if self.initializer not in ("variance_scaling", "truncated_normal"):
            raise ValueError(
                "initializer must be 'variance_scaling' or 'truncated_normal', "
                f"got {self.initializer!r}."
            )
        if self.variance_scaling_mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(
                "variance_scaling_mode must be 'fan_in', 'fan_out' or 'fan_avg', "
                f"got {self.variance_scaling_mode!r}."
            )
        if self.truncated_normal_stddev <= 0.0:
            raise ValueError(
                f"truncated_normal_stddev must be > 0, got {self.truncated_normal_stddev}."
            )

    def kernel_initializer(self) -> keras.initializers.Initializer:
        """Returns a fresh Keras initializer for conv kernels."""
        if self.initializer == "truncated_normal":
            return keras.initializers.TruncatedNormal(
                mean=self.truncated_normal_mean, stddev=self.truncated_normal_stddev
            )
        # Keras rescales truncated samples by 1/0.8796 (slim by sqrt(1.3)): the same intent,
        # a truncated normal whose variance is factor / fan.
        return keras.initializers.VarianceScaling(
            scale=self.variance_scaling_factor,
            mode=self.variance_scaling_mode,
            distribution="uniform" if self.variance_scaling_uniform else "truncated_normal",
        )

    def kernel_regularizer(self) -> keras.regularizers.Regularizer | None:
        """Returns the Keras kernel regularizer, or None when there is no weight decay."""
        if self.regularizer == "none" or self.regularizer_weight == 0.0:
            return None
        if self.regularizer == "l1":
            return keras.regularizers.L1(self.regularizer_weight)
        return keras.regularizers.L2(self.regularizer_weight / 2.0)


def slim_resnet_hyperparams(weight_decay: float = 0.0) -> ConvHyperparams:
    """The original's ResNet backbone scope: slim ``resnet_arg_scope``.

    BN decay 0.997, epsilon 1e-5, scale on, He (fan-in, factor 2) truncated-normal init and, as
    in the original, no weight decay unless one is asked for.
    """
    return ConvHyperparams(
        batch_norm=BatchNormParams(decay=0.997, epsilon=1e-5, center=True, scale=True),
        regularizer="l2",
        regularizer_weight=weight_decay,
        initializer="variance_scaling",
    )


def slim_mobilenet_hyperparams(weight_decay: float = 0.0) -> ConvHyperparams:
    """The original's MobileNetV2 backbone scope: slim mobilenet ``training_scope``.

    BN decay 0.997 with slim's default epsilon 1e-3, truncated-normal init with stddev 0.09, and
    no weight decay unless one is asked for.
    """
    return ConvHyperparams(
        batch_norm=BatchNormParams(decay=0.997, epsilon=1e-3, center=True, scale=True),
        regularizer="l2",
        regularizer_weight=weight_decay,
        initializer="truncated_normal",
        truncated_normal_stddev=0.09,
    )
