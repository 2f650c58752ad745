"""Builds the training preprocessing function from ``PreprocessingStep`` protos.

The config lists steps in order, e.g.::

    preprocessor_step { random_image_scale { min_scale_ratio: 0.5 max_scale_ratio: 2.0 } }
    preprocessor_step { random_image_crop { crop_height: 713 crop_width: 713 } }
    preprocessor_step { random_horizontal_flip {} }

:func:`build` validates every step up front (so a bad config fails before any
data is read) and returns a callable that applies the steps of
:mod:`core.data.preprocessor` in that order.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import tensorflow as tf
from absl import logging

from core.data import preprocessor
from core.data.standard_fields import IGNORE_LABEL
from protos import preprocessor_pb2

# (image, label, seed) -> (image, label); see core.data.preprocessor for shapes.
StepFn = Callable[..., tuple[tf.Tensor, tf.Tensor]]

_RESIZE_METHOD_NAMES = {
    preprocessor_pb2.BILINEAR: "bilinear",
    preprocessor_pb2.NEAREST_NEIGHBOR: "nearest",
    preprocessor_pb2.BICUBIC: "bicubic",
}

_STEP_NAMES = tuple(
    field.name
    for field in preprocessor_pb2.PreprocessingStep.DESCRIPTOR.oneofs_by_name[
        "preprocessing_step"
    ].fields
)


class PreprocessorConfigError(ValueError):
    """A ``preprocessor_step`` entry of the config is invalid."""


class Preprocessor:
    """Applies a validated list of preprocessing steps in config order.

    Call it as ``preprocess(image, label, seed=None)`` with a float32
    ``[H, W, 3]`` image in [0, 255] and an int32 ``[H, W, 1]`` label; it
    returns the transformed ``(image, label)``. With ``seed`` (an int or an
    int ``[2]`` tensor) every random step gets its own stateless seed derived
    from it, so the result is reproducible; ``None`` draws fresh randomness.
    """

    def __init__(self, steps: Sequence[tuple[str, StepFn]]):
        self._steps = tuple(steps)

    @property
    def step_names(self) -> tuple[str, ...]:
        """The names of the steps, in application order."""
        return tuple(name for name, _ in self._steps)

    def __call__(
        self, image: tf.Tensor, label: tf.Tensor, seed: int | tf.Tensor | None = None
    ) -> tuple[tf.Tensor, tf.Tensor]:
        seed = preprocessor.stateless_seed(seed)
        for index, (_, step_fn) in enumerate(self._steps):
            step_seed = None
            if seed is not None:
                step_seed = tf.random.experimental.stateless_fold_in(seed, index)
            image, label = step_fn(image, label, step_seed)
        return image, label

    def __repr__(self) -> str:
        return f"Preprocessor({', '.join(self.step_names)})"


def _require_positive(index: int, step_name: str, field: str, value: float) -> None:
    if not value > 0:
        raise PreprocessorConfigError(
            f"preprocessor_step[{index}].{step_name}.{field} must be > 0, got {value}. "
            f"Set it to a positive value in the config."
        )


def _require_set(index: int, step_name: str, message, field: str) -> None:
    if not message.HasField(field):
        raise PreprocessorConfigError(
            f"preprocessor_step[{index}].{step_name}.{field} is not set; it is required."
        )


def _check_channel_dims(index: int, step_name: str, message) -> None:
    # The decoder always yields 3-channel images and 1-channel labels; the
    # fields exist for compatibility with the original's configs.
    if message.images_channel_dim != 3 or message.labels_channel_dim != 1:
        raise PreprocessorConfigError(
            f"preprocessor_step[{index}].{step_name}: images_channel_dim/labels_channel_dim "
            f"must be 3/1 (RGB images, single-channel labels), got "
            f"{message.images_channel_dim}/{message.labels_channel_dim}."
        )


def _build_step(index: int, step: preprocessor_pb2.PreprocessingStep, ignore_label: int) -> StepFn:
    """Validates one step and returns its ``(image, label, seed)`` function."""
    name = step.WhichOneof("preprocessing_step")
    if name is None:
        raise PreprocessorConfigError(
            f"preprocessor_step[{index}] sets no step; set exactly one of: "
            f"{', '.join(_STEP_NAMES)}."
        )
    config = getattr(step, name)

    if name == "random_image_scale":
        _require_positive(index, name, "min_scale_ratio", config.min_scale_ratio)
        _require_positive(index, name, "max_scale_ratio", config.max_scale_ratio)
        if config.min_scale_ratio > config.max_scale_ratio:
            raise PreprocessorConfigError(
                f"preprocessor_step[{index}].{name}: min_scale_ratio ({config.min_scale_ratio}) "
                f"must be <= max_scale_ratio ({config.max_scale_ratio})."
            )
        return functools.partial(
            _call_random,
            preprocessor.random_image_scale,
            min_scale_ratio=config.min_scale_ratio,
            max_scale_ratio=config.max_scale_ratio,
        )

    if name == "random_image_crop":
        for field in ("crop_height", "crop_width"):
            _require_set(index, name, config, field)
            _require_positive(index, name, field, getattr(config, field))
        _check_channel_dims(index, name, config)
        if config.HasField("int_seed"):
            logging.info(
                "preprocessor_step[%d].random_image_crop.int_seed is ignored; the crop offset "
                "is drawn from the pipeline's random state.",
                index,
            )
        return functools.partial(
            _call_random,
            preprocessor.random_image_crop,
            crop_height=config.crop_height,
            crop_width=config.crop_width,
            ignore_label=ignore_label,
        )

    if name == "random_horizontal_flip":
        return functools.partial(_call_random, preprocessor.random_horizontal_flip)

    if name == "set_fixed_image_size":
        for field in ("fixed_height", "fixed_width"):
            _require_set(index, name, config, field)
            _require_positive(index, name, field, getattr(config, field))
        _check_channel_dims(index, name, config)
        return functools.partial(
            _call_deterministic,
            preprocessor.set_fixed_image_size,
            fixed_height=config.fixed_height,
            fixed_width=config.fixed_width,
        )

    if name == "aspect_ratio_image_resize":
        _require_positive(index, name, "min_dimension", config.min_dimension)
        _require_positive(index, name, "max_dimension", config.max_dimension)
        if config.min_dimension > config.max_dimension:
            raise PreprocessorConfigError(
                f"preprocessor_step[{index}].{name}: min_dimension ({config.min_dimension}) "
                f"must be <= max_dimension ({config.max_dimension})."
            )
        return functools.partial(
            _call_deterministic,
            preprocessor.aspect_ratio_image_resize,
            min_dimension=config.min_dimension,
            max_dimension=config.max_dimension,
            resize_method=_RESIZE_METHOD_NAMES[config.resize_method],
            pad_to_max_dimension=config.pad_to_max_dimension,
            ignore_label=ignore_label,
        )

    # A oneof member added to the proto without a step here.
    raise PreprocessorConfigError(f"preprocessor_step[{index}]: unsupported step {name!r}.")


def _call_random(fn, image, label, seed, **kwargs):
    return fn(image, label, seed=seed, **kwargs)


def _call_deterministic(fn, image, label, seed, **kwargs):
    del seed  # Deterministic steps draw nothing.
    return fn(image, label, **kwargs)


def build(
    preprocessing_steps: Sequence[preprocessor_pb2.PreprocessingStep],
    ignore_label: int = IGNORE_LABEL,
) -> Preprocessor:
    """Builds the preprocessing function of a ``train_config``.

    Args:
      preprocessing_steps: ``train_config.preprocessor_step`` (any sequence of
        ``PreprocessingStep`` messages), applied in this order.
      ignore_label: label value written into padded pixels (crop and
        ``pad_to_max_dimension`` padding); normally the loss's ``ignore_label``.

    Returns:
      A :class:`Preprocessor`: ``(image, label, seed=None) -> (image, label)``.
      With no steps it returns its inputs unchanged.

    Raises:
      PreprocessorConfigError (a ValueError): a step sets no oneof member or
        has an invalid value; the message names the step index and field.
    """
    steps = []
    for index, step in enumerate(preprocessing_steps):
        steps.append(
            (step.WhichOneof("preprocessing_step"), _build_step(index, step, ignore_label))
        )
    result = Preprocessor(steps)
    logging.info("Built %r", result)
    return result
