"""The deploy graph shared by the exporter and the checkpoint segmenter.

The graph is the original project's (``libs/exporter.py``):

  ``inputs`` uint8 [N, H, W, 3] -> optional zero padding bottom/right to ``pad_to_shape``
  -> ``model.preprocess`` -> ``model.predict`` (eval mode, full-size logits) -> argmax
  -> crop back to [H, W] -> [N, H, W, 1] int32 class ids, or with ``output_colours`` the
  palette colours [N, H, W, 3] uint8 (a gather, where the original used a one-hot matmul)
  -> ``predictions`` (an identity op of that name).

H and W of the network must be static: the pyramid pooling chooses its kernel sizes from the
feature-map size when the graph is traced, so a network with unknown H or W cannot be built (the
original accepted -1 there only because its pooling read the size at run time). The batch size
may be -1.

Any-size serving (:func:`build_any_size_function`, the SavedModel's ``serving_default`` and the
frozen graph with ``--dynamic_input_size``) wraps that fixed-size network: an image of any
h x w is resized (bilinear, half-pixel centres) to the network's H x W, the network runs as
above, its logits are resized back (bilinear, half-pixel centres) to h x w and the argmax taken
there. At h x w == H x W both resizes are the identity, so the ids equal the fixed-size graph's.

Every graph can also output ``scores``: the softmax of the logits, float32 [N, H, W, C], at the
size of ``predictions``.

The flag shapes (``parse_input_shape`` and friends) and :class:`ExportError` live in the
TensorFlow-free :mod:`core.deploy.export_options` and are re-exported here.
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from core.deploy.export_options import (  # noqa: F401 - re-exported: the shapes live there
    ExportError,
    InputShape,
    parse_export_shapes,
    parse_input_shape,
    parse_pad_to_shape,
)
from core.visualization import palette_lut
from models.layers.interp import resize_bilinear

INPUT_NAME = "inputs"
OUTPUT_NAME = "predictions"
SCORES_NAME = "scores"
# Signature keys: the SavedModel's and TFLite's default (any size in the SavedModel) and the
# SavedModel's fixed-size one (no resizing; other sizes fail with a clear message).
SIGNATURE_KEY = "serving_default"
FIXED_SIGNATURE_KEY = "serving_fixed_size"


def check_model_input_size(model, size: tuple[int, int], what: str) -> None:
    """Raises ExportError when ``size`` is below the model's smallest input."""
    min_h, min_w = model.min_input_size()
    if size[0] < min_h or size[1] < min_w:
        raise ExportError(
            f"{what} {size[0]}x{size[1]} is too small for this model: its pyramid pooling needs "
            f"at least {min_h}x{min_w}. Use a larger --input_shape or --pad_to_shape."
        )


# --------------------------------------------------------------------------- graph


def build_serving_function(
    model,
    input_shape: InputShape,
    pad_to_shape: tuple[int, int] | None = None,
    output_colours: bool = False,
    jit_compile: bool = False,
    output_scores: bool = False,
) -> tf.types.experimental.PolymorphicFunction:
    """The deploy graph as a ``tf.function`` with a fixed input signature.

    Args:
      model: a built ``SegmentationModel`` (weights restored).
      input_shape: ``(batch or None, height, width, 3)`` from :func:`parse_input_shape`.
      pad_to_shape: ``(height, width)`` the input is zero-padded to (bottom/right) before the
        network; the predictions are cropped back to the input size.
      output_colours: output palette colours instead of class ids.
      jit_compile: compile with XLA (for running it here; an exported graph is never compiled).
      output_scores: also output ``scores``, the softmax float32 [N, H, W, num_classes].

    Returns:
      A function ``inputs`` uint8 [N, H, W, 3] -> ``{"predictions": ...}``: int32 class ids
      [N, H, W, 1], or uint8 RGB [N, H, W, 3] with ``output_colours``; plus ``scores``.
    """
    batch, height, width, _ = input_shape
    net_size = pad_to_shape or (height, width)
    check_model_input_size(model, net_size, "the network input (--pad_to_shape or --input_shape)")
    lut = tf.constant(palette_lut(), dtype=tf.uint8)  # ids outside the palette are black

    @tf.function(
        input_signature=[tf.TensorSpec([batch, height, width, 3], tf.uint8, INPUT_NAME)],
        jit_compile=jit_compile or None,
    )
    def serve(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = _full_size_logits(model, tf.cast(inputs, tf.float32), (height, width), net_size)
        return _outputs(logits, lut, output_colours, output_scores)

    return serve


def build_any_size_function(
    model,
    input_shape: InputShape,
    pad_to_shape: tuple[int, int] | None = None,
    output_colours: bool = False,
    jit_compile: bool = False,
    output_scores: bool = False,
) -> tf.types.experimental.PolymorphicFunction:
    """The deploy graph for images of any height and width (see the module docstring).

    Args:
      model: a built ``SegmentationModel`` (weights restored).
      input_shape: ``(batch or None, H, W, 3)``: the network's fixed input; images are
        resized to H x W.
      pad_to_shape: optional ``(height, width)`` padding after the resize, as in
        :func:`build_serving_function`.
      output_colours: output palette colours instead of class ids.
      jit_compile: compile with XLA (for running it here).
      output_scores: also output ``scores``, the softmax float32 [N, h, w, num_classes].

    Returns:
      A function ``inputs`` uint8 [N, h, w, 3] (h, w >= 1, any) -> ``{"predictions": ...}``:
      int32 class ids [N, h, w, 1], or uint8 RGB [N, h, w, 3]; plus ``scores``.
    """
    batch, height, width, _ = input_shape
    net_size = pad_to_shape or (height, width)
    check_model_input_size(model, net_size, "the network input (--pad_to_shape or --input_shape)")
    lut = tf.constant(palette_lut(), dtype=tf.uint8)

    @tf.function(
        input_signature=[tf.TensorSpec([batch, None, None, 3], tf.uint8, INPUT_NAME)],
        jit_compile=jit_compile or None,
    )
    def serve(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        size = tf.shape(inputs)[1:3]
        images = tf.image.resize(tf.cast(inputs, tf.float32), (height, width), "bilinear")
        logits = _full_size_logits(model, images, (height, width), net_size)
        # Back to the image with the half-pixel geometry of the input resize.
        logits = tf.image.resize(logits, size, "bilinear")
        return _outputs(logits, lut, output_colours, output_scores)

    return serve


def _full_size_logits(model, images: tf.Tensor, size: tuple[int, int], net_size) -> tf.Tensor:
    """float32 images [N, H, W, 3] (``size``) -> logits [N, H, W, C]: zero-padded bottom/right to
    ``net_size``, the network, its logits resized (bilinear, aligned corners, as
    ``model.postprocess``) to ``net_size`` and cropped back to ``size``."""
    if tuple(net_size) != tuple(size):
        images = tf.image.pad_to_bounding_box(images, 0, 0, net_size[0], net_size[1])
    logits = model.predict(model.preprocess(images), training=False)["logits"]
    return resize_bilinear(logits, net_size)[:, : size[0], : size[1]]


def _outputs(logits, lut, output_colours: bool, output_scores: bool) -> dict[str, tf.Tensor]:
    """Logits [N, H, W, C] -> ``predictions``: int32 ids [N, H, W, 1] or palette uint8
    [N, H, W, 3]; with ``output_scores`` also ``scores``, their softmax."""
    ids = tf.argmax(logits, axis=-1, output_type=tf.int32)
    result = tf.gather(lut, ids) if output_colours else ids[..., tf.newaxis]
    outputs = {OUTPUT_NAME: tf.identity(result, name=OUTPUT_NAME)}
    if output_scores:
        outputs[SCORES_NAME] = tf.identity(tf.nn.softmax(logits), name=SCORES_NAME)
    return outputs


def freeze(serve: tf.types.experimental.PolymorphicFunction):
    """The serving function's concrete function with every variable folded into a constant.

    This frozen function is also what the TFLite converter is given: converting a function that
    still reads Keras 3 variables yields a model with VAR_HANDLE ops that outputs NaN.
    """
    return convert_variables_to_constants_v2(serve.get_concrete_function())


def with_input_size_check(
    serve: tf.types.experimental.PolymorphicFunction,
) -> tf.types.experimental.PolymorphicFunction:
    """``serve`` behind a check that its input has the signature's height and width.

    A loaded SavedModel signature (and TF Serving) does not enforce the static shape of its
    input spec: an image of another size would run into the graph and fail deep inside it
    (``Incompatible shapes`` at a cascade fusion's add). The check fails first, with a message
    that names the size the export takes.

    Args:
      serve: from :func:`build_serving_function` (a fixed ``[N, H, W, 3]`` signature).

    Returns:
      A function with the same signature and outputs.
    """
    (spec,) = serve.input_signature
    height, width = spec.shape[1], spec.shape[2]
    message = (
        f"{INPUT_NAME!r} must be {height}x{width} images, the --input_shape of this export; "
        "resize them first, or export again with --input_shape=H,W,3. Got (H, W) below"
    )

    @tf.function(input_signature=[spec])
    def checked(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        size_ok = tf.debugging.assert_equal(
            tf.shape(inputs)[1:3], tf.constant([height, width]), message=message, summarize=4
        )
        with tf.control_dependencies([size_ok]):
            return serve(inputs)

    return checked
