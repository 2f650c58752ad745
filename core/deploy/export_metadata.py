"""``labels.txt`` and ``metadata.json``: what a client needs to use an export, beside every one.

``labels.txt`` holds one class name per line, in class-id order (line 1 is id 0), the format
TFLite task libraries and most serving UIs read. ``metadata.json`` describes the export in full:

  ``dataset``        name, class names, palette colours (RGB), ignore label, official label ids
  ``input``          the tensor name (``inputs``), dtype uint8, RGB in [0, 255], the network's
                     fixed size and padding, and which formats take images of any size
  ``normalisation``  what the graph itself does to the pixels (``x * scale + offset`` per
                     channel): clients send raw RGB and must not normalise
  ``outputs``        ``predictions`` (and ``scores`` when exported) with dtype and shape
  ``formats``        each written format: its file or folder, input shape and names
  ``project``        this project's name and version

The normalisation is measured on the model (its ``preprocess`` at 0 and 255), not looked up,
so a new backbone needs no entry here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from core.datasets import DatasetMetadata
from core.deploy.deploy_graph import (
    FIXED_SIGNATURE_KEY,
    INPUT_NAME,
    OUTPUT_NAME,
    SCORES_NAME,
    SIGNATURE_KEY,
    InputShape,
)

LABELS_NAME = "labels.txt"
METADATA_NAME = "metadata.json"
PROJECT_NAME = "fast-semantic-segmentation"
# Bumped when a key of metadata.json changes meaning.
METADATA_FORMAT_VERSION = 1


def in_graph_normalisation(model) -> dict | None:
    """``{"scale": [3], "offset": [3]}`` with ``preprocess(x) == x * scale + offset``, or None.

    None when the model's preprocessing is not per-channel affine (then it is described as
    "in the graph" only).
    """
    probe = tf.constant([[[[0.0] * 3, [255.0] * 3, [100.0, 50.0, 200.0]]]], tf.float32)
    out = np.asarray(model.preprocess(probe), dtype=np.float64)[0, 0]  # [3 pixels, 3]
    offset = out[0]
    scale = (out[1] - out[0]) / 255.0
    expected = np.array([100.0, 50.0, 200.0]) * scale + offset
    if not np.allclose(out[2], expected, atol=1e-4):
        return None
    return {
        "scale": [round(float(v), 8) for v in scale],
        "offset": [round(float(v), 6) for v in offset],
    }


def labels_text(dataset: DatasetMetadata) -> str:
    """``labels.txt``: one class name a line, id order; a newline in a name becomes a space."""
    return "".join(
        name.replace("\n", " ").replace("\r", " ") + "\n" for name in dataset.class_names
    )


def _shape(dims) -> list[int]:
    return [-1 if d is None else int(d) for d in dims]


def build_metadata(
    dataset: DatasetMetadata,
    model_name: str,
    input_shape: InputShape,
    pad_to_shape: tuple[int, int] | None,
    formats: Mapping[str, dict],
    output_colours: bool = False,
    output_scores: bool = False,
    normalisation: dict | None = None,
    project_version: str | None = None,
) -> dict:
    """The contents of ``metadata.json``.

    Args:
      dataset: the config's dataset metadata.
      model_name: e.g. ``ICNet``.
      input_shape: the network's fixed input ``(batch or None, H, W, 3)``.
      pad_to_shape: the padding after the input, or None.
      formats: format name -> its entry (file or folder, input shape, names), as the exporter
        wrote it.
      output_colours: ``predictions`` are palette colours rather than class ids.
      output_scores: a ``scores`` output was exported.
      normalisation: from :func:`in_graph_normalisation`.
      project_version: this project's version.

    Returns:
      A JSON-serialisable dict (see the module docstring for the keys).
    """
    if output_colours:
        prediction = {"dtype": "uint8", "shape": [-1, -1, -1, 3], "meaning": "palette RGB colour"}
    else:
        prediction = {"dtype": "int32", "shape": [-1, -1, -1, 1], "meaning": "class id"}
    outputs = {OUTPUT_NAME: prediction}
    if output_scores:
        outputs[SCORES_NAME] = {
            "dtype": "float32",
            "shape": [-1, -1, -1, dataset.num_classes],
            "meaning": "softmax probability of each class",
        }
    return {
        "metadata_format_version": METADATA_FORMAT_VERSION,
        "project": {"name": PROJECT_NAME, "version": project_version},
        "model": model_name,
        "dataset": {
            "name": dataset.name,
            "num_classes": dataset.num_classes,
            "class_names": list(dataset.class_names),
            "palette": [list(colour) for colour in dataset.palette],
            "ignore_label": dataset.ignore_label,
            "label_ids": list(dataset.label_ids) if dataset.label_ids is not None else None,
        },
        "input": {
            "name": INPUT_NAME,
            "dtype": "uint8",
            "colour_order": "RGB",
            "value_range": [0, 255],
            "network_input_size": list(input_shape[1:3]),
            "pad_to_shape": list(pad_to_shape) if pad_to_shape else None,
            "batch_size": -1 if input_shape[0] is None else input_shape[0],
            "any_size_formats": sorted(n for n, f in formats.items() if f.get("any_size")),
        },
        "normalisation": {
            "in_graph": True,
            "formula": "x * scale + offset per RGB channel, done inside the graph; send raw RGB",
            **(normalisation or {"scale": None, "offset": None}),
        },
        "outputs": outputs,
        "formats": dict(formats),
    }


def format_entries(
    paths: Mapping[str, str], input_shape: InputShape, dynamic: bool, output_scores: bool
) -> dict:
    """``metadata.json``'s ``formats``: where each written format is and what it takes.

    Args:
      paths: format name (``frozen_graph``, ``saved_model``, ``tflite_float32``,
        ``tflite_int8``, ``onnx``) -> its file or folder, relative to the export folder.
      input_shape: the network's fixed input ``(batch or None, H, W, 3)``.
      dynamic: the frozen graph takes any size.
      output_scores: ``scores`` was exported.

    Returns:
      Format name -> ``{"path", "input_shape", "any_size", names...}``.
    """
    any_size = _shape((input_shape[0], None, None, 3))
    fixed = _shape(input_shape)
    outputs = [OUTPUT_NAME, SCORES_NAME] if output_scores else [OUTPUT_NAME]
    tflite = {
        "input_shape": [input_shape[0] or 1, *input_shape[1:]],
        "any_size": False,
        "signature": SIGNATURE_KEY,
        "inputs": [INPUT_NAME],
        "outputs": outputs,
    }
    entries = {
        "frozen_graph": {
            "input_shape": any_size if dynamic else fixed,
            "any_size": dynamic,
            "input_tensor": f"{INPUT_NAME}:0",
            "output_tensors": [f"{name}:0" for name in outputs],
        },
        "saved_model": {
            "input_shape": any_size,
            "any_size": True,
            "signature": SIGNATURE_KEY,
            "inputs": [INPUT_NAME],
            "outputs": outputs,
            "fixed_size_signature": FIXED_SIGNATURE_KEY,
            "fixed_input_shape": fixed,
        },
        "tflite_float32": tflite,
        "tflite_int8": dict(tflite),
        # core.deploy.onnx_export: graph input/output names, opset 17, from the fixed graph.
        "onnx": {**tflite, "signature": None, "opset": 17},
    }
    other = {"input_shape": fixed, "any_size": False}  # a format added later, e.g. ONNX
    return {name: {"path": path, **entries.get(name, other)} for name, path in paths.items()}


def write_files(directory: str, dataset: DatasetMetadata, metadata: dict) -> list[str]:
    """Writes ``labels.txt`` and ``metadata.json`` into ``directory`` (a staging directory).

    Returns:
      The two file names.
    """
    with open(os.path.join(directory, LABELS_NAME), "w", encoding="utf-8") as stream:
        stream.write(labels_text(dataset))
    with open(os.path.join(directory, METADATA_NAME), "w", encoding="utf-8") as stream:
        json.dump(metadata, stream, indent=2)
        stream.write("\n")
    return [LABELS_NAME, METADATA_NAME]
