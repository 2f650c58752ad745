"""What an export is asked for: its formats and input shapes (the flags), and :class:`ExportError`.

Plain Python, no TensorFlow: ``export.py`` checks its flags with these before the TensorFlow
import (``runners/export_checks.py``), so a typo is one line in a fraction of a second. The
deploy graph (:mod:`core.deploy.deploy_graph`) re-exports the shapes and the error, the exporter
(:mod:`core.deploy.exporter`) the formats.
"""

from __future__ import annotations

from collections.abc import Sequence

InputShape = tuple[int | None, int, int, int]

# Selectable outputs (``--formats``); the checkpoint, config and summary are always written.
FORMATS = ("frozen_graph", "saved_model", "tflite_float32", "tflite_int8", "onnx")
# Written when --formats is not given: onnx needs the optional tf2onnx package.
DEFAULT_FORMATS = ("frozen_graph", "saved_model", "tflite_float32", "tflite_int8")


class ExportError(ValueError):
    """An export cannot be done as asked; the message names the flag or file and the fix."""


def check_formats(formats: Sequence[str]) -> None:
    """Raises ExportError naming the entries of ``formats`` that are not in :data:`FORMATS`."""
    unknown = [name for name in formats if name not in FORMATS]
    if unknown:
        raise ExportError(f"--formats: unknown {unknown}; choose from {', '.join(FORMATS)}.")


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
