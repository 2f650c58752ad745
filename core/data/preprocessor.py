"""Joint image/label preprocessing for semantic segmentation.

Every function takes an image and its label map and returns both, transformed
by the *same* random draw, so the two stay pixel-aligned:

* ``image``: float32 ``[height, width, channels]`` (RGB, values in [0, 255]).
* ``label``: int32 ``[height, width, 1]`` class ids, ignore label included.

Labels are never interpolated: they are resized with nearest neighbour and
padded with the ignore label, so an output label only ever holds values that
were in the input label plus ``ignore_label``.

All functions are plain TensorFlow ops on plain Python arguments: they work
eagerly and inside ``tf.function`` / ``tf.data.Dataset.map`` with dynamic
shapes. Static shapes are set wherever the output size is known from the
arguments (crops, fixed sizes, padding), so fixed-size batches can be formed.

Randomness: each random step takes ``seed``. ``None`` uses the stateful
``tf.random`` ops (a new draw on every call, the usual choice in an input
pipeline); an int (or int scalar tensor) or an int32/int64 ``[2]`` tensor
selects the stateless ops,
which always give the same draw for the same seed (tests, reproducible runs).

Resizing convention: the original project resized with ``align_corners=True``.
We use ``tf.image.resize`` (half-pixel centres) for both images (bilinear or
bicubic) and labels (nearest neighbour) instead. With half-pixel centres the
nearest-neighbour kernel picks the source pixel whose area contains the very
point the bilinear kernel samples, so label and image sample the same source
positions and stay aligned; ``align_corners=True`` has no such guarantee for
TF's nearest-neighbour kernel, and it is only available through
``tf.compat.v1``. For the 0.5x-2x scales used in training the two conventions
differ by at most half a source pixel.
"""

from __future__ import annotations

import tensorflow as tf

# Seed, RESIZE_METHODS and stateless_seed are part of this module's interface (re-exported).
from core.data.image_ops import (
    RESIZE_METHODS,
    Seed,
    height_width,
    pad_bottom_right,
    resize_pair,
    set_hw,
    split_seed,
    stateless_seed,
    static_hw,
    uniform_float,
    uniform_int,
)
from core.data.standard_fields import IGNORE_LABEL

__all__ = [
    "RESIZE_METHODS",
    "Seed",
    "aspect_ratio_image_resize",
    "aspect_ratio_resize_size",
    "center_crop",
    "pad_to_size",
    "random_horizontal_flip",
    "random_image_crop",
    "random_image_scale",
    "set_fixed_image_size",
    "stateless_seed",
]

# --------------------------------------------------------------------------- random steps


def random_image_scale(
    image: tf.Tensor,
    label: tf.Tensor,
    min_scale_ratio: float = 0.5,
    max_scale_ratio: float = 2.0,
    seed: Seed = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Scales image and label by one factor drawn uniformly from the range.

    The new size is ``round(scale * size)`` (at least 1 pixel) for both sides.

    Args:
      image: float32 ``[H, W, C]``.
      label: int32 ``[H, W, 1]``.
      min_scale_ratio: smallest scale factor, > 0.
      max_scale_ratio: largest scale factor, >= ``min_scale_ratio``.
      seed: see the module docstring.

    Returns:
      ``(image, label)`` of size ``[round(s*H), round(s*W)]``; the image is
      resized bilinearly, the label with nearest neighbour.
    """
    scale = uniform_float(min_scale_ratio, max_scale_ratio, stateless_seed(seed))
    height, width = height_width(image)
    size = tf.stack([height, width])
    new_size = tf.cast(tf.round(scale * tf.cast(size, tf.float32)), tf.int32)
    new_size = tf.maximum(new_size, 1)
    return resize_pair(image, label, new_size)


def random_image_crop(
    image: tf.Tensor,
    label: tf.Tensor,
    crop_height: int,
    crop_width: int,
    ignore_label: int = IGNORE_LABEL,
    seed: Seed = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Crops image and label at one random offset, padding first if too small.

    An image smaller than the crop is padded at the bottom/right (the original
    padded to the bounding box at offset 0, so the content stays top-left) with
    0 for the image and ``ignore_label`` for the label, so the padding never
    counts in the loss. (The original padded labels with 0, i.e. class 0.)

    Args:
      image: float32 ``[H, W, C]``.
      label: int32 ``[H, W, 1]``.
      crop_height: output height, > 0.
      crop_width: output width, > 0.
      ignore_label: label value for padded pixels.
      seed: see the module docstring.

    Returns:
      ``(image [crop_height, crop_width, C], label [crop_height, crop_width, 1])``
      with static shapes.
    """
    seed = stateless_seed(seed)
    height, width = height_width(image)
    padded_height = tf.maximum(height, crop_height)
    padded_width = tf.maximum(width, crop_width)
    image, label = pad_bottom_right(image, label, padded_height, padded_width, ignore_label)
    # Offsets are uniform over every position where the crop fits.
    offset_y = uniform_int(padded_height - crop_height + 1, split_seed(seed, 0))
    offset_x = uniform_int(padded_width - crop_width + 1, split_seed(seed, 1))
    image = image[offset_y : offset_y + crop_height, offset_x : offset_x + crop_width]
    label = label[offset_y : offset_y + crop_height, offset_x : offset_x + crop_width]
    return set_hw(image, label, crop_height, crop_width)


def random_horizontal_flip(
    image: tf.Tensor, label: tf.Tensor, seed: Seed = None
) -> tuple[tf.Tensor, tf.Tensor]:
    """Flips image and label left-right together with probability 0.5.

    Args:
      image: float32 ``[H, W, C]``.
      label: int32 ``[H, W, 1]``.
      seed: see the module docstring.

    Returns:
      ``(image, label)`` with unchanged shapes.
    """
    do_flip = uniform_float(0.0, 1.0, stateless_seed(seed)) < 0.5
    image_shape, label_shape = image.shape, label.shape
    image, label = tf.cond(
        do_flip,
        lambda: (tf.reverse(image, axis=[1]), tf.reverse(label, axis=[1])),
        lambda: (image, label),
    )
    image.set_shape(image_shape)
    label.set_shape(label_shape)
    return image, label


# --------------------------------------------------------------------------- deterministic steps


def set_fixed_image_size(
    image: tf.Tensor, label: tf.Tensor, fixed_height: int, fixed_width: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """Resizes to a fixed size (bilinear image, nearest-neighbour label).

    Args:
      image: float32 ``[H, W, C]``.
      label: int32 ``[H, W, 1]``.
      fixed_height: output height, > 0.
      fixed_width: output width, > 0.

    Returns:
      ``(image [fixed_height, fixed_width, C], label [fixed_height, fixed_width, 1])``.
    """
    image, label = resize_pair(image, label, [fixed_height, fixed_width])
    return set_hw(image, label, fixed_height, fixed_width)


def aspect_ratio_resize_size(
    height: tf.Tensor, width: tf.Tensor, min_dimension: int, max_dimension: int
) -> tf.Tensor:
    """The ``[new_height, new_width]`` int32 size that keeps the aspect ratio.

    The shorter side becomes ``min_dimension``, unless that would make the
    longer side exceed ``max_dimension``; then the longer side becomes
    ``max_dimension``.
    """
    size = tf.cast(tf.stack([height, width]), tf.float32)
    scale = min_dimension / tf.reduce_min(size)
    large_size = tf.round(size * scale)
    small_size = tf.round(size * (max_dimension / tf.reduce_max(size)))
    new_size = tf.where(tf.reduce_max(large_size) > max_dimension, small_size, large_size)
    return tf.maximum(tf.cast(new_size, tf.int32), 1)


def aspect_ratio_image_resize(
    image: tf.Tensor,
    label: tf.Tensor,
    min_dimension: int = 600,
    max_dimension: int = 1024,
    resize_method: str = "bilinear",
    pad_to_max_dimension: bool = False,
    ignore_label: int = IGNORE_LABEL,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Resizes keeping the aspect ratio (see :func:`aspect_ratio_resize_size`).

    Args:
      image: float32 ``[H, W, C]``.
      label: int32 ``[H, W, 1]``.
      min_dimension: target of the shorter side, > 0.
      max_dimension: bound of the longer side, >= ``min_dimension``.
      resize_method: image method, "bilinear", "nearest" or "bicubic" (bicubic
        output is clipped to [0, 255]). Labels always use nearest neighbour.
      pad_to_max_dimension: pad bottom/right to ``[max_dimension, max_dimension]``
        (image 0, label ``ignore_label``), giving a static output shape.
      ignore_label: label value for padded pixels.

    Returns:
      ``(image, label)``, resized and optionally padded.
    """
    if resize_method not in RESIZE_METHODS:
        raise ValueError(
            f"resize_method must be one of {sorted(RESIZE_METHODS)}, got {resize_method!r}"
        )
    height, width = height_width(image)
    new_size = aspect_ratio_resize_size(height, width, min_dimension, max_dimension)
    image, label = resize_pair(image, label, new_size, image_method=resize_method)
    if pad_to_max_dimension:
        image, label = pad_bottom_right(image, label, max_dimension, max_dimension, ignore_label)
        image, label = set_hw(image, label, max_dimension, max_dimension)
    return image, label


# --------------------------------------------------------------------------- evaluation


def pad_to_size(
    image: tf.Tensor,
    label: tf.Tensor,
    height: int,
    width: int,
    ignore_label: int = IGNORE_LABEL,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Pads bottom/right to ``[height, width]``: image with 0, label with ``ignore_label``.

    This is the evaluation padding (``padded_eval_input``): e.g. 1024x2048
    Cityscapes images go to 1025x2049; the content keeps its top-left
    position, so predictions are cropped back with ``[:H, :W]``.

    Args:
      image: float32 ``[H, W, C]`` with ``H <= height`` and ``W <= width``.
      label: int32 ``[H, W, 1]``.
      height: target height.
      width: target width.
      ignore_label: label value for padded pixels.

    Returns:
      ``(image [height, width, C], label [height, width, 1])``.

    Raises:
      ValueError: the image is statically known to be larger than the target.
      tf.errors.InvalidArgumentError: (at run time) the image is larger than
        the target.
    """
    static_height, static_width = static_hw(image)
    hint = (
        "Raise the padding size (eval_config.padded_eval_input height/width) to at least "
        "the largest image size, or use cropped_eval_input."
    )
    if (static_height is not None and static_height > height) or (
        static_width is not None and static_width > width
    ):
        raise ValueError(
            f"Cannot pad an image of size [{static_height}, {static_width}] to the smaller "
            f"size [{height}, {width}]. {hint}"
        )
    image_height, image_width = height_width(image)
    fits = tf.logical_and(image_height <= height, image_width <= width)
    check = tf.debugging.Assert(
        fits,
        [
            f"Cannot pad the image to the smaller size [{height}, {width}]; image height, width:",
            image_height,
            image_width,
            hint,
        ],
    )
    with tf.control_dependencies([check]):
        image = tf.identity(image)
    image, label = pad_bottom_right(image, label, height, width, ignore_label)
    return set_hw(image, label, height, width)


def center_crop(
    image: tf.Tensor,
    label: tf.Tensor,
    height: int,
    width: int,
    ignore_label: int = IGNORE_LABEL,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Takes the central ``[height, width]`` window of image and label.

    This is the evaluation crop (``cropped_eval_input``). The original took one
    *random* crop, so its metric changed from run to run; the centre crop is
    deterministic. An image smaller than the window is first padded
    bottom/right (image 0, label ``ignore_label``).

    Args:
      image: float32 ``[H, W, C]``.
      label: int32 ``[H, W, 1]``.
      height: crop height, > 0.
      width: crop width, > 0.
      ignore_label: label value for padded pixels.

    Returns:
      ``(image [height, width, C], label [height, width, 1])``.
    """
    image_height, image_width = height_width(image)
    padded_height = tf.maximum(image_height, height)
    padded_width = tf.maximum(image_width, width)
    image, label = pad_bottom_right(image, label, padded_height, padded_width, ignore_label)
    offset_y = (padded_height - height) // 2
    offset_x = (padded_width - width) // 2
    image = image[offset_y : offset_y + height, offset_x : offset_x + width]
    label = label[offset_y : offset_y + height, offset_x : offset_x + width]
    return set_hw(image, label, height, width)
