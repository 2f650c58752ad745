"""Writing segmentation ``tf.train.Example`` records.

One example holds a PNG/JPEG-encoded RGB image and a PNG-encoded single-channel
label image, under the original project's feature keys
(:class:`core.standard_fields.TfExampleFields`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator

import numpy as np
import tensorflow as tf
from PIL import Image

from core.standard_fields import TfExampleFields


def _bytes_feature(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int64_feature(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


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
    return tf.train.Example(features=tf.train.Features(feature=feature))


def make_example_from_arrays(image: np.ndarray, label: np.ndarray, filename: str) -> tf.train.Example:
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
    writers = [tf.io.TFRecordWriter(p) for p in temp_paths]
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
    for record in tf.data.TFRecordDataset(path):
        yield tf.train.Example.FromString(record.numpy())
