"""Builds the training preprocessing function from ``PreprocessingStep`` protos.

The config lists steps in order, e.g.::

    preprocessor_step { random_image_scale { min_scale_ratio: 0.5 max_scale_ratio: 2.0 } }
    preprocessor_step { random_image_crop { crop_height: 713 crop_width: 713 } }
    preprocessor_step { random_horizontal_flip {} }

:func:`build` returns a callable that applies the steps of
:mod:`core.data.preprocessor` in that order. The rules a step must satisfy are
written once, in :mod:`builders.config_validation`; ``load_pipeline_config``
reports a broken step there with its file and line, before anything is built.
:func:`build` runs the same rules on its steps, so steps that did not come
through a loaded config fail before any data is read.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import tensorflow as tf
from absl import logging

from builders import config_validation
from builders.config_errors import ConfigError
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


class PreprocessorConfigError(ConfigError):
    """A ``preprocessor_step`` entry is invalid (a ``ConfigError``, so a ``ValueError``)."""


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


def _build_step(index: int, step: preprocessor_pb2.PreprocessingStep, ignore_label: int) -> StepFn:
    """Checks one step against the config rules and returns its ``(image, label, seed)`` function."""
    # The rules live in config_validation (which also reports them with file:line
    # when a config is loaded); steps built without a loaded config get the same check.
    problems = config_validation.preprocessing_step_problems(step)
    if problems:
        raise PreprocessorConfigError(
            "\n".join(
                f"preprocessor_step[{index}]{'.' + field if field else ''} {reason}"
                for field, reason in problems
            )
        )
    name = step.WhichOneof("preprocessing_step")
    config = getattr(step, name)

    if name == "random_image_scale":
        return functools.partial(
            _call_random,
            preprocessor.random_image_scale,
            min_scale_ratio=config.min_scale_ratio,
            max_scale_ratio=config.max_scale_ratio,
        )

    if name == "random_image_crop":
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
        return functools.partial(
            _call_deterministic,
            preprocessor.set_fixed_image_size,
            fixed_height=config.fixed_height,
            fixed_width=config.fixed_width,
        )

    if name == "aspect_ratio_image_resize":
        return functools.partial(
            _call_deterministic,
            preprocessor.aspect_ratio_image_resize,
            min_dimension=config.min_dimension,
            max_dimension=config.max_dimension,
            resize_method=_RESIZE_METHOD_NAMES[config.resize_method],
            pad_to_max_dimension=config.pad_to_max_dimension,
            ignore_label=ignore_label,
        )

    # A oneof member added to the proto without a step here: a value we cannot build.
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
