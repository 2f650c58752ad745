"""Helpers shared by the dataset tool tests."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from core.data.standard_fields import TfExampleFields
from dataset_tools import tfrecord_utils


def decode(encoded: bytes) -> np.ndarray:
    """Decodes PNG/JPEG bytes with PIL, as stored (palette indices stay indices)."""
    with Image.open(io.BytesIO(encoded)) as image:
        return np.array(image)


def read_records(path: str) -> list[dict]:
    """Reads every example of a record file into a plain dict."""
    rows = []
    for example in tfrecord_utils.read_examples(path):
        feature = example.features.feature

        def first_bytes(key: str, feature=feature) -> bytes:
            return feature[key].bytes_list.value[0]

        def first_int(key: str, feature=feature) -> int:
            return feature[key].int64_list.value[0]

        rows.append(
            {
                "image": first_bytes(TfExampleFields.image_encoded),
                "label": first_bytes(TfExampleFields.label_encoded),
                "filename": first_bytes(TfExampleFields.image_filename).decode(),
                "format": first_bytes(TfExampleFields.image_format).decode(),
                "label_format": first_bytes(TfExampleFields.label_format).decode(),
                "height": first_int(TfExampleFields.height),
                "width": first_int(TfExampleFields.width),
                "channels": first_int(TfExampleFields.channels),
            }
        )
    return rows


def save_png(path, array: np.ndarray) -> str:
    """Saves a uint8 array as a PNG (creating folders) and returns the path as a string."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return str(path)
