"""The Caffe "Interp" resize used everywhere in ICNet and PSPNet.

Bilinear resize with ``align_corners=True`` (corner pixels of input and output coincide), to a
size that keeps the corners on the pixel grid: a factor ``f`` maps ``n`` pixels to
``floor((n - 1) * f) + 1``. Shrinking by 2 maps 1025 -> 513, zooming by 4 maps 257 -> 1025
(``m + (m - 1) * (z - 1)``). With odd sizes such as 1025x2049 every level of the cascade lines
up exactly, which is why the original evaluates on 1025x2049 padded images.

TF2 has no ``align_corners`` in ``tf.image.resize``, so the ``ResizeBilinear`` op that TF1 used is
called directly (``align_corners=True, half_pixel_centers=False``); it has a registered gradient
and is a TFLite builtin. ``tf.compat.v1.image.resize_bilinear`` emits the same op but logs a
deprecation notice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import tensorflow as tf

Size = Sequence[int] | tf.Tensor


def interp_size(size: int, factor: float) -> int:
    """Size of one spatial dimension after an Interp by ``factor``.

    Args:
      size: input size in pixels, >= 1.
      factor: > 0; < 1 shrinks, > 1 zooms.

    Returns:
      ``floor((size - 1) * factor) + 1``; e.g. (1025, 0.5) -> 513, (257, 4) -> 1025.
    """
    if size < 1:
        raise ValueError(f"Interp needs a size >= 1, got {size}.")
    if factor <= 0:
        raise ValueError(f"Interp needs a factor > 0, got {factor}.")
    # The epsilon keeps exact products such as 0.5 * 1024 from flooring below an integer.
    return int(math.floor((size - 1) * factor + 1e-9)) + 1


def resize_bilinear(images: tf.Tensor, size: Size) -> tf.Tensor:
    """Bilinear resize with aligned corners.

    Args:
      images: float tensor [batch, height, width, channels].
      size: (new_height, new_width) as ints or an int32 tensor of shape [2].

    Returns:
      float32 tensor [batch, new_height, new_width, channels].
    """
    if not isinstance(size, tf.Tensor):
        size = [int(size[0]), int(size[1])]
        static = images.shape[1:3]
        if static[0] == size[0] and static[1] == size[1]:
            return images
    resized = tf.raw_ops.ResizeBilinear(
        images=images, size=size, align_corners=True, half_pixel_centers=False
    )
    if not isinstance(size, tf.Tensor):
        resized.set_shape([images.shape[0], size[0], size[1], images.shape[3]])
    # ResizeBilinear always computes in float32; keep the input's dtype so float16/bfloat16
    # (mixed precision) features can be added to the other branches.
    return tf.cast(resized, images.dtype)


def interp(images: tf.Tensor, factor: float) -> tf.Tensor:
    """Interp by ``factor`` following the Caffe size convention.

    Static sizes are used when the input's height and width are known, so traced graphs keep
    static shapes; otherwise the size is computed in-graph.

    Args:
      images: float tensor [batch, height, width, channels].
      factor: > 0; 0.5 halves (1025 -> 513), 2 doubles (65 -> 129), 4 quadruples (257 -> 1025).

    Returns:
      float32 tensor [batch, interp_size(height), interp_size(width), channels].
    """
    height, width = images.shape[1], images.shape[2]
    if height is not None and width is not None:
        return resize_bilinear(images, (interp_size(height, factor), interp_size(width, factor)))
    dynamic = tf.shape(images)[1:3]
    scaled = tf.floor(tf.cast(dynamic - 1, tf.float64) * factor + 1e-9)
    return resize_bilinear(images, tf.cast(scaled, tf.int32) + 1)


def resize_like(images: tf.Tensor, reference: tf.Tensor) -> tf.Tensor:
    """Resizes ``images`` to the height and width of ``reference`` (bilinear, aligned corners).

    Args:
      images: float tensor [batch, height, width, channels].
      reference: tensor [batch, new_height, new_width, any].

    Returns:
      float32 tensor [batch, new_height, new_width, channels]; ``images`` itself when the static
      sizes already match.
    """
    ref_h, ref_w = reference.shape[1], reference.shape[2]
    if ref_h is not None and ref_w is not None:
        return resize_bilinear(images, (ref_h, ref_w))
    return resize_bilinear(images, tf.shape(reference)[1:3])
