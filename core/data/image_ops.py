"""Seeds and pixel-aligned image/label helpers shared by the preprocessing steps.

``image`` is float32 ``[height, width, channels]`` in [0, 255] and ``label`` int32
``[height, width, 1]``, as in :mod:`core.data.preprocessor`. Labels are only ever resized with
nearest neighbour and padded with the ignore label, so they hold no new values.
"""

from __future__ import annotations

import tensorflow as tf

Seed = int | tf.Tensor | None

RESIZE_METHODS = {
    "bilinear": tf.image.ResizeMethod.BILINEAR,
    "nearest": tf.image.ResizeMethod.NEAREST_NEIGHBOR,
    "bicubic": tf.image.ResizeMethod.BICUBIC,
}


def stateless_seed(seed: Seed) -> tf.Tensor | None:
    """Normalizes ``seed`` for the stateless random ops.

    Args:
      seed: None, an int (or int scalar tensor), or an int ``[2]`` tensor.

    Returns:
      None for None, else an int64 ``[2]`` tensor (``[seed, 0]`` for a scalar).
    """
    if seed is None:
        return None
    seed = tf.cast(seed, tf.int64)
    if seed.shape.rank == 0:
        seed = tf.stack([seed, tf.constant(0, tf.int64)])
    return seed


def split_seed(seed: tf.Tensor | None, index: int) -> tf.Tensor | None:
    """Derives an independent stateless seed for the ``index``-th draw of a step."""
    if seed is None:
        return None
    return tf.random.experimental.stateless_fold_in(seed, index)


def uniform_float(minval: float, maxval: float, seed: tf.Tensor | None) -> tf.Tensor:
    """One float32 scalar drawn uniformly from ``[minval, maxval)``."""
    if seed is None:
        return tf.random.uniform([], minval=minval, maxval=maxval, dtype=tf.float32)
    return tf.random.stateless_uniform([], seed=seed, minval=minval, maxval=maxval)


def uniform_int(maxval: tf.Tensor, seed: tf.Tensor | None) -> tf.Tensor:
    """One int32 scalar drawn uniformly from ``[0, maxval)``; ``maxval`` >= 1."""
    if seed is None:
        return tf.random.uniform([], minval=0, maxval=maxval, dtype=tf.int32)
    return tf.random.stateless_uniform([], seed=seed, minval=0, maxval=maxval, dtype=tf.int32)


def height_width(image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The dynamic height and width of an ``[height, width, channels]`` tensor."""
    shape = tf.shape(image)
    return shape[0], shape[1]


def static_hw(tensor: tf.Tensor) -> tuple[int | None, int | None]:
    """The static height and width of ``tensor``, None where unknown."""
    return tensor.shape[0], tensor.shape[1]


def set_hw(image: tf.Tensor, label: tf.Tensor, height: int, width: int):
    """Sets the static spatial size of both outputs, keeping the channel dims."""
    image = tf.ensure_shape(image, [height, width, image.shape[-1]])
    label = tf.ensure_shape(label, [height, width, label.shape[-1]])
    return image, label


def resize_pair(
    image: tf.Tensor, label: tf.Tensor, size: tf.Tensor, image_method: str = "bilinear"
) -> tuple[tf.Tensor, tf.Tensor]:
    """Resizes the image with ``image_method`` and the label with nearest neighbour.

    Bicubic can overshoot, so its output is clipped back to [0, 255].
    """
    resized_image = tf.image.resize(image, size, method=RESIZE_METHODS[image_method])
    if image_method == "bicubic":
        resized_image = tf.clip_by_value(resized_image, 0.0, 255.0)
    resized_image = tf.cast(resized_image, image.dtype)
    # Nearest neighbour keeps the label dtype and copies existing values only.
    resized_label = tf.image.resize(label, size, method=tf.image.ResizeMethod.NEAREST_NEIGHBOR)
    return resized_image, resized_label


def pad_bottom_right(
    image: tf.Tensor,
    label: tf.Tensor,
    target_height: tf.Tensor | int,
    target_width: tf.Tensor | int,
    ignore_label: int,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Pads bottom/right to the target size: image with 0, label with ``ignore_label``.

    The caller guarantees the target is at least the current size.
    """
    height, width = height_width(image)
    paddings = [[0, target_height - height], [0, target_width - width], [0, 0]]
    image = tf.pad(image, paddings, constant_values=0)
    label = tf.pad(label, paddings, constant_values=tf.cast(ignore_label, label.dtype))
    return image, label
