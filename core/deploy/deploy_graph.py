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
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from core.visualization import palette_lut
from models.layers.interp import resize_bilinear

INPUT_NAME = "inputs"
OUTPUT_NAME = "predictions"
SCORES_NAME = "scores"
# Signature keys: the SavedModel's and TFLite's default (any size in the SavedModel) and the
# SavedModel's fixed-size one (no resizing; other sizes fail with a clear message).
SIGNATURE_KEY = "serving_default"
FIXED_SIGNATURE_KEY = "serving_fixed_size"

InputShape = tuple[int | None, int, int, int]


class ExportError(ValueError):
    """An export cannot be done as asked; the message names the flag or file and the fix."""


# --------------------------------------------------------------------------- shapes


def _text(value: str | Sequence) -> str:
    """A shape value as the user typed it (absl list flags arrive as lists of strings)."""
    return value if isinstance(value, str) else ",".join(str(item) for item in value)


def _parse_ints(value: str | Sequence, flag: str) -> list[int]:
    """``"1024,2048,3"`` or ``["1024", "2048", "3"]`` or ``[1024, 2048, 3]`` -> ints."""
    items = value.split(",") if isinstance(value, str) else list(value)
    try:
        return [int(str(item).strip()) for item in items]
    except ValueError:
        raise ExportError(
            f"{flag}={_text(value)!r} is not a comma-separated list of integers, e.g. 1024,2048,3."
        ) from None


def parse_input_shape(value: str | Sequence, flag: str = "--input_shape") -> InputShape:
    """Parses the export input shape.

    Args:
      value: ``H,W,3`` (a batch dimension of -1 is added) or ``N,H,W,3``; -1 is allowed
        for N only.
      flag: name used in error messages.

    Returns:
      ``(batch or None, height, width, 3)``.

    Raises:
      ExportError: malformed value, unknown height/width, or not 3 channels.
    """
    dims = _parse_ints(value, flag)
    if len(dims) == 3:
        dims = [-1, *dims]
    if len(dims) != 4:
        raise ExportError(
            f"{flag}={_text(value)!r} must have 3 (height,width,3) or 4 (batch,height,width,3) "
            f"values, got {len(dims)}."
        )
    batch, height, width, channels = dims
    if height == -1 or width == -1:
        raise ExportError(
            f"{flag}={_text(value)!r}: height and width must be known (got -1). The pyramid pooling "
            "picks its kernel sizes from the feature-map size when the graph is built, so "
            "export at the fixed size you will run at, e.g. 1024,2048,3; for a graph that takes "
            "any size, give -1,-1,3 with --pad_to_shape=H,W as the network's size, or add "
            "--dynamic_input_size."
        )
    if channels != 3:
        raise ExportError(
            f"{flag}={_text(value)!r}: the last dimension must be 3 (RGB), got {channels}."
        )
    if batch == 0 or batch < -1 or height < 1 or width < 1:
        raise ExportError(
            f"{flag}={_text(value)!r}: dimensions must be positive (or -1 for the batch)."
        )
    return (None if batch == -1 else batch, height, width, channels)


def parse_pad_to_shape(
    value: str | Sequence | None, input_shape: InputShape, flag: str = "--pad_to_shape"
) -> tuple[int, int] | None:
    """Parses ``H,W`` (a trailing ``,3`` is accepted); None or empty means no padding.

    Raises:
      ExportError: malformed, or smaller than the input height/width.
    """
    if value is None or (not isinstance(value, str) and len(value) == 0) or value == "":
        return None
    dims = _parse_ints(value, flag)
    if len(dims) == 3 and dims[2] == 3:
        dims = dims[:2]
    if len(dims) != 2:
        raise ExportError(f"{flag}={_text(value)!r} must be height,width, e.g. 1025,2049.")
    height, width = dims
    if height < input_shape[1] or width < input_shape[2]:
        raise ExportError(
            f"{flag}={_text(value)!r} is smaller than the input {input_shape[1]}x{input_shape[2]}; "
            "padding only grows the image (bottom/right)."
        )
    return height, width


def parse_export_shapes(
    input_shape: str | Sequence, pad_to_shape: str | Sequence | None, dynamic: bool = False
) -> tuple[InputShape, tuple[int, int] | None, bool]:
    """The export's fixed network input, its padding, and whether graphs take any size.

    ``-1,-1,3`` (or ``N,-1,-1,3``) asks for any-size graphs; the network then runs at
    ``pad_to_shape`` (required), without padding.

    Args:
      input_shape: ``--input_shape``.
      pad_to_shape: ``--pad_to_shape`` or None.
      dynamic: ``--dynamic_input_size``.

    Returns:
      ``(fixed input shape, padding or None, any size)``; the fixed shape is what TFLite and
      the fixed-size graphs take.

    Raises:
      ExportError: as :func:`parse_input_shape` and :func:`parse_pad_to_shape`.
    """
    dims = _parse_ints(input_shape, "--input_shape")
    if len(dims) == 3:
        dims = [-1, *dims]
    padding_given = parse_pad_to_shape(pad_to_shape, (None, 1, 1, 3)) is not None
    if len(dims) == 4 and dims[1] == dims[2] == -1 and padding_given:
        height, width = parse_pad_to_shape(pad_to_shape, (None, 1, 1, 3))
        return parse_input_shape([dims[0], height, width, dims[3]]), None, True
    shape = parse_input_shape(input_shape)
    return shape, parse_pad_to_shape(pad_to_shape, shape), dynamic


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
