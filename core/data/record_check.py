"""A cheap check of TFRecord files before a run: truncation, foreign files, labels out of range.

Without it such files fail inside the input pipeline after the train step has been traced (tens
of seconds) with a long TensorFlow error. :func:`check_record_files` walks every record header of
every file (12 bytes read per record, the length checksum verified, so a text file or a truncated
copy is caught at once) and decodes the labels of the first records of the first files. The
in-graph checks of ``core/data/input_pipeline.py`` still guard every record that is read.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Sequence

import numpy as np
from PIL import Image

from core.data import example_wire
from core.data.standard_fields import TfExampleFields

_FIX = "Write the records again with the dataset_tools/ script that made them."


class RecordError(ValueError):
    """A record file cannot be read; the message names the file, the record and the fix."""


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def masked_crc32c(data: bytes) -> int:
    """The TFRecord checksum: CRC-32C (Castagnoli) of ``data``, rotated and offset ("masked")."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def record_offsets(path: str) -> list[tuple[int, int]]:
    """``(data offset, data length)`` of every record of a TFRecord file, read from its headers.

    Raises:
      RecordError: a header whose checksum is wrong (not a TFRecord file, or corrupt) or a record
        that runs past the end of the file (truncated).
    """
    size = os.path.getsize(path)
    offsets = []
    with open(path, "rb") as handle:
        position = 0
        while position < size:
            header = handle.read(12)
            index = len(offsets)
            if len(header) < 12:
                raise RecordError(
                    f"{path}: truncated after record {index} (byte {position} of {size}). {_FIX}"
                )
            length_bytes, (crc,) = header[:8], struct.unpack("<I", header[8:])
            if masked_crc32c(length_bytes) != crc:
                what = "is not a TFRecord file" if index == 0 else f"is corrupt at record {index}"
                raise RecordError(f"{path} {what} (bad record header at byte {position}). {_FIX}")
            (length,) = struct.unpack("<Q", length_bytes)
            end = position + 12 + length + 4
            if end > size:
                raise RecordError(
                    f"{path}: truncated in record {index} (it needs {end} bytes, the file has "
                    f"{size}). {_FIX}"
                )
            offsets.append((position + 12, length))
            position = end
            handle.seek(position)
    return offsets


def _label_values(serialized: bytes) -> tuple[str, np.ndarray]:
    # Parsed without TensorFlow, so that the scripts check records before importing it.
    feature = example_wire.bytes_features(serialized)
    filename = b"".join(feature.get(TfExampleFields.image_filename, [])).decode("utf-8", "replace")
    encoded = feature.get(TfExampleFields.label_encoded, [])
    if not encoded:
        return filename, np.zeros([0], np.int64)
    with Image.open(io.BytesIO(encoded[0])) as label:
        return filename, np.unique(np.asarray(label))


def check_record_files(
    paths: Sequence[str],
    *,
    num_classes: int | None = None,
    ignore_label: int = 255,
    examples_per_file: int = 2,
    max_files: int = 4,
) -> None:
    """Raises :class:`RecordError` for a truncated or foreign file or a label outside the classes.

    Args:
      paths: the record files (already expanded from the config's patterns).
      num_classes: labels must be below it or equal ``ignore_label``; None skips the labels.
      ignore_label: the label value the loss ignores.
      examples_per_file: records whose label is decoded, from the start of each file.
      max_files: files whose first records are decoded (all files' headers are walked).
    """
    for number, path in enumerate(paths):
        offsets = record_offsets(path)
        if num_classes is None or number >= max_files:
            continue
        with open(path, "rb") as handle:
            for index, (offset, length) in enumerate(offsets[:examples_per_file]):
                handle.seek(offset)
                try:
                    filename, values = _label_values(handle.read(length))
                except Exception as error:  # noqa: BLE001 - any decoding failure is the record's
                    raise RecordError(
                        f"{path}: record {index} is not a readable segmentation example "
                        f"({error}). {_FIX}"
                    ) from None
                bad = [int(v) for v in values if v >= num_classes and v != ignore_label]
                if bad:
                    raise RecordError(
                        f"{path}: record {index} ({filename or 'no image/filename'}) has label "
                        f"value {', '.join(map(str, bad[:5]))} outside the {num_classes} classes "
                        f"(0..{num_classes - 1}, ignore label {ignore_label}). Fix num_classes or "
                        "loss.ignore_label in the config, or the labels of the records."
                    )
