"""Writing segmentation ``tf.train.Example`` records.

One example holds a PNG/JPEG-encoded RGB image and a PNG-encoded single-channel
label image, under the original project's feature keys
(:class:`core.data.standard_fields.TfExampleFields`).
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np
from absl import logging
from PIL import Image

from core.data.standard_fields import TfExampleFields

if TYPE_CHECKING:
    import tensorflow as tf

# TensorFlow is imported by the functions that need it, not here: the dataset tools report a
# flag or folder mistake before paying for its import (seconds).


def _tf():
    import tensorflow as tf  # noqa: PLC0415 - see the note above

    return tf


def _bytes_feature(value: bytes) -> tf.train.Feature:
    train = _tf().train
    return train.Feature(bytes_list=train.BytesList(value=[value]))


def _int64_feature(value: int) -> tf.train.Feature:
    train = _tf().train
    return train.Feature(int64_list=train.Int64List(value=[int(value)]))


def encode_png(array: np.ndarray) -> bytes:
    """PNG-encodes a ``[H, W]`` or ``[H, W, 3]`` uint8 array."""
    if array.dtype != np.uint8:
        raise ValueError(f"encode_png expects uint8, got {array.dtype}")
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def image_format(encoded: bytes) -> str:
    """Returns "png" or "jpeg" from the magic bytes of an encoded image."""
    if encoded.startswith(b"\x89PNG"):
        return "png"
    if encoded.startswith(b"\xff\xd8"):
        return "jpeg"
    raise ValueError("encoded image is neither PNG nor JPEG")


def make_example(
    image_encoded: bytes,
    label_encoded: bytes,
    filename: str,
    height: int,
    width: int,
    channels: int = 3,
) -> tf.train.Example:
    """Builds one example from already encoded image and label bytes.

    Args:
      image_encoded: PNG or JPEG bytes of the RGB image.
      label_encoded: PNG bytes of the single-channel label image (class ids).
      filename: the image's path, stored as ``image/filename``.
      height: image height in pixels.
      width: image width in pixels.
      channels: number of image channels (3).
    """
    feature = {
        TfExampleFields.image_encoded: _bytes_feature(image_encoded),
        TfExampleFields.image_filename: _bytes_feature(filename.encode("utf-8")),
        TfExampleFields.image_format: _bytes_feature(image_format(image_encoded).encode()),
        TfExampleFields.height: _int64_feature(height),
        TfExampleFields.width: _int64_feature(width),
        TfExampleFields.channels: _int64_feature(channels),
        TfExampleFields.label_encoded: _bytes_feature(label_encoded),
        TfExampleFields.label_format: _bytes_feature(b"png"),
    }
    train = _tf().train
    return train.Example(features=train.Features(feature=feature))


def make_example_from_arrays(
    image: np.ndarray, label: np.ndarray, filename: str
) -> tf.train.Example:
    """Builds one example from a ``[H, W, 3]`` uint8 image and a ``[H, W]`` uint8 label."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{filename}: image must be [H, W, 3], got shape {image.shape}")
    if label.shape != image.shape[:2]:
        raise ValueError(
            f"{filename}: label shape {label.shape} does not match image size {image.shape[:2]}"
        )
    height, width = label.shape
    return make_example(encode_png(image), encode_png(label), filename, height, width)


def shard_paths(output_path: str, num_shards: int) -> list[str]:
    """Names of the shards of ``output_path``: itself for one shard, else ``-00000-of-0000N``."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    if num_shards == 1:
        return [output_path]
    return [f"{output_path}-{i:05d}-of-{num_shards:05d}" for i in range(num_shards)]


def write_sharded(
    examples: Iterable[tf.train.Example], output_path: str, num_shards: int = 1
) -> list[str]:
    """Writes examples round-robin into shards, atomically.

    Each shard is written to a temporary name and renamed only once every shard
    is complete, so an interrupted run never leaves a truncated record file
    under the final name.

    Returns:
      The paths of the written shards.
    """
    paths = shard_paths(output_path, num_shards)
    directory = os.path.dirname(os.path.abspath(output_path))
    os.makedirs(directory, exist_ok=True)
    temp_paths = [p + ".tmp" for p in paths]
    writers = [_tf().io.TFRecordWriter(p) for p in temp_paths]
    try:
        for index, example in enumerate(examples):
            writers[index % num_shards].write(example.SerializeToString())
    except BaseException:
        for writer, temp in zip(writers, temp_paths, strict=True):
            writer.close()
            if os.path.exists(temp):
                os.remove(temp)
        raise
    for writer in writers:
        writer.close()
    for temp, final in zip(temp_paths, paths, strict=True):
        os.replace(temp, final)
    return paths


def read_examples(path: str) -> Iterator[tf.train.Example]:
    """Yields the parsed examples of one record file (for tools and tests)."""
    tf = _tf()
    for record in tf.data.TFRecordDataset(path):
        yield tf.train.Example.FromString(record.numpy())


class DataError(ValueError):
    """A user-supplied image, label or folder cannot be converted (the message says why)."""


def load_rgb_image(path: str) -> tuple[bytes, int, int]:
    """Returns the encoded bytes, height and width of an RGB image file.

    An 8-bit RGB PNG or an RGB JPEG is returned byte for byte, so nothing is
    re-encoded (and a JPEG loses nothing more). Any other image (RGBA, grey,
    palette, CMYK, 16-bit, BMP, TIFF, ...) is decoded, converted to 8-bit RGB
    and stored as a PNG. Either way ``tf.io.decode_image(..., channels=3)``
    decodes the returned bytes (to PIL's pixels exactly for PNG; JPEG decoders
    may differ by a few levels).

    Args:
      path: image file.

    Returns:
      ``(encoded, height, width)``; ``encoded`` is PNG or JPEG bytes.

    Raises:
      DataError: if the file is not an image PIL can read.
    """
    try:
        with Image.open(path) as image:
            width, height = image.size
            keep = _is_plain_rgb(image)
            if not keep:
                rgb = np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError) as error:  # PIL raises these for unreadable files
        raise DataError(f"{path}: cannot read the image ({error})") from error
    if keep:
        with open(path, "rb") as handle:
            return handle.read(), height, width
    return encode_png(rgb), height, width


def _is_plain_rgb(image: Image.Image) -> bool:
    """True for an 8-bit RGB PNG or an RGB JPEG, whose bytes can be stored unchanged."""
    if image.mode != "RGB":
        return False
    if image.format == "JPEG":
        return True
    if image.format != "PNG" or not image.tile:
        return False
    # A 16-bit PNG also opens as mode RGB; its raw mode (the tile's 4th field) says "RGB;16B".
    return image.tile[0][3] == "RGB"


def read_label_indices(path: str) -> np.ndarray:
    """Reads a single-channel label image as class indices.

    Greyscale (``L``) PNGs give their values; palette (``P``) PNGs give their
    palette *indices*, not colours (how VOC-style labels are stored); 1-bit
    images give 0/1; 16-bit greyscale images are accepted when every value is
    below 256.

    Args:
      path: label image file.

    Returns:
      ``[height, width]`` uint8 array of label values.

    Raises:
      DataError: for colour (RGB/RGBA) labels, 16-bit values above 255, or an
        unreadable file.
    """
    try:
        with Image.open(path) as image:
            mode = image.mode
            if mode in ("L", "P"):
                return np.array(image, dtype=np.uint8)
            if mode == "1":
                return np.array(image, dtype=np.uint8)
            if mode.startswith("I"):
                values = np.array(image, dtype=np.int64)
            else:
                raise DataError(
                    f"{path}: label image has mode {mode!r} ({len(image.getbands())} channels); "
                    "labels must be single-channel images whose pixel values are class ids "
                    "(8-bit greyscale 'L' or palette 'P' PNG). Colour-coded labels must first be "
                    "converted to class ids, e.g. with a colour -> id lookup, and saved as a "
                    "greyscale PNG, or saved as a palette PNG whose indices are the class ids."
                )
    except (OSError, SyntaxError) as error:
        raise DataError(f"{path}: cannot read the label image ({error})") from error
    if values.size and (values.min() < 0 or values.max() > 255):
        raise DataError(
            f"{path}: 16-bit label image holds values in [{values.min()}, {values.max()}]; "
            "only values 0..255 fit a record label, remap them first"
        )
    return values.astype(np.uint8)


class ProgressLogger:
    """Logs ``n/total``, the rate and the ETA of a long conversion with absl logging.

    It logs the first item, then at most once every ``interval_s`` seconds, and the last item.
    """

    def __init__(self, total: int, what: str = "images", interval_s: float = 10.0) -> None:
        self._total = total
        self._what = what
        self._interval_s = interval_s
        self._start = time.monotonic()
        self._last_log = -float("inf")
        self._count = 0

    def step(self, count: int = 1) -> None:
        """Records that ``count`` more items are done, logging when it is time to."""
        self._count += count
        now = time.monotonic()
        due = now - self._last_log >= self._interval_s
        if self._count == 1 or self._count >= self._total or due:
            self._last_log = now
            elapsed = max(now - self._start, 1e-9)
            rate = self._count / elapsed
            remaining = max(self._total - self._count, 0) / rate if rate > 0 else 0.0
            logging.info(
                "%d/%d %s (%.1f %s/s, elapsed %s, ETA %s)",
                self._count,
                self._total,
                self._what,
                rate,
                self._what,
                _format_seconds(elapsed),
                _format_seconds(remaining),
            )


def _format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
