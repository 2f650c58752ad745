"""Exports a trained segmentation model for deployment (``export.py``).

:func:`export_model` takes a built, restored model and plain values; reading the config,
restoring the checkpoint and choosing calibration records is ``runners.export``'s job. The
deploy graphs (uint8 ``inputs`` -> class ids or colours ``predictions``, optionally softmax
``scores``) are built by :mod:`core.deploy.deploy_graph`; every format uses these names.

Files written to ``output_dir`` (see :data:`FORMATS` for the selectable ones):

  ``frozen_inference_graph.pb``  GraphDef with the weights as constants (``inputs:0`` ->
                                 ``predictions:0``), as the original wrote; fixed size, or any
                                 size with ``dynamic_input_size``.
  ``saved_model/``               SavedModel (``saved_model/<N>/`` with ``serving_version``, the
                                 layout TF Serving's ``model_base_path`` reads). Signatures:
                                 ``serving_default`` takes any size (resized to the network and
                                 back in the graph), ``serving_fixed_size`` only the network's.
  ``model_float32.tflite``       TFLite, float weights; fixed size; signature ``serving_default``
                                 with the same input and output names.
  ``model_int8.tflite``          TFLite, post-training full-integer quantized (see
                                 :mod:`core.deploy.tflite_export`); same uint8-in / ids-out interface.
  ``model.onnx``                 ONNX opset 17 of the fixed-size graph, same names (only when
                                 asked: ``--formats=...,onnx``; see :mod:`core.deploy.onnx_export`).
  ``model.ckpt.*``               the model variables only, in our checkpoint format
                                 (``compress.py``'s input).
  ``pipeline.config``            the config the model was built from.
  ``labels.txt``, ``metadata.json``  class names and the export's description, when the
                                 dataset metadata is given (:mod:`core.deploy.export_metadata`).
  ``export_summary.json``        shapes, parameter counts, FLOPs (``core.analysis.flops``, batch 1),
                                 file sizes and the int8-vs-float agreement.

Files are staged and committed all at once (:mod:`core.deploy.export_staging`): a failed
export leaves the previous export untouched and never a partial file under a final name.
Outputs of an earlier export that this one does not rewrite are kept, with a warning.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from core.analysis import flops
from core.checkpoints import checkpoint_utils
from core.data.standard_fields import InputDataFields
from core.datasets import DatasetMetadata
from core.deploy import export_metadata, export_staging, onnx_export, tflite_export
from core.deploy.deploy_graph import (
    FIXED_SIGNATURE_KEY,
    INPUT_NAME,
    OUTPUT_NAME,
    SCORES_NAME,
    SIGNATURE_KEY,
    ExportError,
    InputShape,
    build_any_size_function,
    build_serving_function,
    freeze,
    with_input_size_check,
)
from core.deploy.export_options import (  # noqa: F401 - FORMATS, DEFAULT_FORMATS re-exported
    DEFAULT_FORMATS,
    FORMATS,
    check_formats,
)
from core.deploy.export_staging import Staging as _Staging
from core.deploy.export_staging import (
    recover_interrupted_export,  # noqa: F401 - re-exported
    saved_model_entry,
)

FROZEN_GRAPH_NAME = "frozen_inference_graph.pb"
SAVED_MODEL_DIR = export_staging.SAVED_MODEL_DIR
TFLITE_FLOAT_NAME = "model_float32.tflite"
TFLITE_INT8_NAME = "model_int8.tflite"
CHECKPOINT_PREFIX = "model.ckpt"
CONFIG_NAME = "pipeline.config"
SUMMARY_NAME = "export_summary.json"

ONNX_NAME = onnx_export.ONNX_NAME


# --------------------------------------------------------------------------- writers


@dataclasses.dataclass(frozen=True)
class ServingFunctions:
    """The deploy graphs of one export.

    Attributes:
      fixed: ``inputs`` [N, H, W, 3] at the network's input size (TFLite, fixed frozen graph).
      any_size: ``inputs`` [N, h, w, 3] of any size (SavedModel ``serving_default``).
    """

    fixed: tf.types.experimental.PolymorphicFunction
    any_size: tf.types.experimental.PolymorphicFunction


def _write_frozen_graph(frozen, path: str) -> int:
    graph_def = frozen.graph.as_graph_def()
    with open(path, "wb") as stream:
        stream.write(graph_def.SerializeToString())
    return len(graph_def.node)


def _write_saved_model(model, serve: ServingFunctions, path: str) -> None:
    # The module tracks the model so its variables are saved with the signatures' graphs.
    module = tf.Module()
    module.model = model
    module.serve = serve.any_size
    module.serve_fixed_size = checked = with_input_size_check(serve.fixed)  # serving ignores H, W
    signatures = {
        SIGNATURE_KEY: serve.any_size.get_concrete_function(),
        FIXED_SIGNATURE_KEY: checked.get_concrete_function(),
    }
    tf.saved_model.save(module, path, signatures=signatures)


def _write_checkpoint(model, staging: _Staging) -> None:
    # write() rather than save(): the prefix stays exactly model.ckpt (no -N suffix, no state).
    checkpoint_utils.make_checkpoint(model).write(
        os.path.join(staging.directory, CHECKPOINT_PREFIX)
    )
    for name in sorted(os.listdir(staging.directory)):
        if name.startswith(CHECKPOINT_PREFIX + "."):
            staging.path(name)


def _warn_stale(output_dir: str, written: Sequence[str]) -> None:
    """Warns about outputs of an earlier export that this one did not replace."""
    known = (
        FROZEN_GRAPH_NAME, SAVED_MODEL_DIR, TFLITE_FLOAT_NAME, TFLITE_INT8_NAME, ONNX_NAME,
        export_metadata.LABELS_NAME, export_metadata.METADATA_NAME,
    )  # fmt: skip
    written = {name.split("/")[0] for name in written}  # saved_model/<N> keeps other versions
    stale = [name for name in known if name not in written]
    stale = [name for name in stale if os.path.exists(os.path.join(output_dir, name))]
    if stale:
        logging.warning(
            "%s still holds %s from an earlier export (not in --formats this time).",
            output_dir,
            ", ".join(stale),
        )


def _flops(model, net_size: tuple[int, int]) -> dict | None:
    """FLOPs of one image at the network size from ``core.analysis.flops``, or None if unavailable."""
    try:
        report = flops.compute_flops(model, net_size, batch_size=1)
    except Exception as error:  # a summary line must not fail a finished export
        logging.warning("FLOPs not counted (core.analysis.flops failed: %s).", error)
        return None
    return {
        "input_size": list(net_size),
        "gflops": round(report.gflops, 3),
        "dilation_padding_gflops": round(report.dilation_padding_flops / 1e9, 3),
    }


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What an export wrote.

    Attributes:
      output_dir: the directory.
      files: final paths of everything written.
      summary: the contents of ``export_summary.json``.
    """

    output_dir: str
    files: tuple[str, ...]
    summary: dict


def export_model(
    model,
    output_dir: str,
    input_shape: InputShape,
    pad_to_shape: tuple[int, int] | None = None,
    output_colours: bool = False,
    formats: Iterable[str] = DEFAULT_FORMATS,
    calibration_images: Callable[[], Iterable[np.ndarray]] | None = None,
    write_config: Callable[[str], str] | None = None,
    summary_extra: dict | None = None,
    quantization_state=None,
    dynamic_input_size: bool = False,
    output_scores: bool = False,
    serving_version: int | None = None,
    dataset: DatasetMetadata | None = None,
    project_version: str | None = None,
) -> ExportResult:
    """Writes the requested formats of a restored model into ``output_dir``, atomically.

    Args:
      model: a built ``SegmentationModel`` with its trained weights.
      output_dir: created if needed; existing outputs are replaced only on success.
      input_shape: ``(batch or None, H, W, 3)``, see :func:`parse_input_shape`: the network's
        fixed input (TFLite's and the fixed frozen graph's input).
      pad_to_shape: optional ``(height, width)`` padding before the network.
      output_colours: palette colours instead of class ids.
      formats: a subset of :data:`FORMATS`.
      calibration_images: returns uint8 [1, H, W, 3] images at the export input size for the
        int8 quantization (required for ``tflite_int8``).
      write_config: writes the pipeline config into the directory it is given; returns its path.
      summary_extra: more entries for the summary (e.g. the checkpoint path).
      quantization_state: for a model trained with quantization-aware training, its
        ``models.layers.fake_quant.QuantizationState`` (inactive): the int8 model is then
        converted from the graph traced with it on (trained ranges, ``calibration_images``
        optional and used only for the agreement report); the other formats stay float.
      dynamic_input_size: the frozen graph takes images of any size, as the SavedModel does.
      output_scores: every format also outputs ``scores``, softmax float32 [N, H, W, C].
      serving_version: write the SavedModel as ``saved_model/<N>/`` (TF Serving's layout).
      dataset: the class names and colours; ``labels.txt`` and ``metadata.json`` are written
        when given.
      project_version: this project's version, for ``metadata.json``.

    Returns:
      An :class:`ExportResult`.

    Raises:
      ExportError: an unknown format, int8 requested without calibration images, or a
        ``serving_version`` that does not fit the folder.
      tflite_export.TFLiteConversionError: a TFLite conversion failed (names the ops).
    """
    formats = tuple(formats)
    check_formats(formats)
    qat = quantization_state is not None
    if "tflite_int8" in formats and calibration_images is None and not qat:
        raise ExportError(
            "tflite_int8 needs calibration images from the config's eval_input_reader; set it, "
            "or leave tflite_int8 out of --formats."
        )
    saved_model_name = SAVED_MODEL_DIR
    if "saved_model" in formats:
        saved_model_name = saved_model_entry(output_dir, serving_version)
    started = time.monotonic()
    options = dict(output_colours=output_colours, output_scores=output_scores)
    serve = build_serving_function(model, input_shape, pad_to_shape, **options)
    # Freezing traces and folds the whole net (seconds): only for the formats built from it.
    fixed_formats = {"tflite_float32", "onnx"} | ({"tflite_int8"} if not qat else set())
    if not dynamic_input_size:
        fixed_formats.add("frozen_graph")
    frozen = freeze(serve) if fixed_formats & set(formats) else None
    any_size = build_any_size_function(model, input_shape, pad_to_shape, **options)
    any_size_formats = (["frozen_graph"] if dynamic_input_size else []) + ["saved_model"]
    summary = {
        "model": model.name,
        "num_classes": model.num_classes,
        "input_shape": [-1 if d is None else d for d in input_shape],
        "pad_to_shape": list(pad_to_shape) if pad_to_shape else None,
        "output": "colours uint8 [N,H,W,3]" if output_colours else "class ids int32 [N,H,W,1]",
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "scores_name": SCORES_NAME if output_scores else None,
        "any_size_formats": [name for name in any_size_formats if name in formats],
        "parameters": model.count_parameters(),
        "parameters_with_batch_norm": model.count_parameters(include_bn=True),
        "flops": _flops(model, pad_to_shape or input_shape[1:3]),
        **(summary_extra or {}),
    }
    staging = _Staging(output_dir)
    try:
        if "frozen_graph" in formats:
            graph = freeze(any_size) if dynamic_input_size else frozen
            summary["frozen_graph_nodes"] = _write_frozen_graph(
                graph, staging.path(FROZEN_GRAPH_NAME)
            )
        if "saved_model" in formats:
            _write_saved_model(
                model, ServingFunctions(serve, any_size), staging.path(saved_model_name)
            )
        if "tflite_float32" in formats:
            float_model = tflite_export.convert_float(frozen)
            with open(staging.path(TFLITE_FLOAT_NAME), "wb") as stream:
                stream.write(float_model)
        if "tflite_int8" in formats and qat:
            int8_model, summary["int8"] = _qat_int8(
                model, quantization_state, input_shape, pad_to_shape, options, calibration_images
            )
            with open(staging.path(TFLITE_INT8_NAME), "wb") as stream:
                stream.write(int8_model)
        elif "tflite_int8" in formats:
            int8_model = tflite_export.convert_int8(frozen, calibration_images)
            with open(staging.path(TFLITE_INT8_NAME), "wb") as stream:
                stream.write(int8_model)
            summary["int8"] = tflite_export.int8_report(int8_model, frozen, calibration_images)
        if "onnx" in formats:  # from the fixed-size graph: tf2onnx needs static sizes
            with open(staging.path(ONNX_NAME), "wb") as stream:
                stream.write(onnx_export.convert(frozen))
        _write_checkpoint(model, staging)
        if write_config is not None:
            write_config(staging.directory)
            staging.path(CONFIG_NAME)
        if dataset is not None:
            paths = {
                "frozen_graph": FROZEN_GRAPH_NAME, "saved_model": saved_model_name,
                "tflite_float32": TFLITE_FLOAT_NAME, "tflite_int8": TFLITE_INT8_NAME,
                "onnx": ONNX_NAME,
            }  # fmt: skip
            metadata = export_metadata.build_metadata(
                dataset, model.name, input_shape, pad_to_shape,
                export_metadata.format_entries(
                    {name: paths[name] for name in formats if name in paths}, input_shape,
                    dynamic_input_size, output_scores,
                ),
                output_colours, output_scores, export_metadata.in_graph_normalisation(model),
                project_version,
            )  # fmt: skip
            for name in export_metadata.write_files(staging.directory, dataset, metadata):
                staging.path(name)
        summary["seconds"] = round(time.monotonic() - started, 1)
        summary["files"] = {
            name: _size(os.path.join(staging.directory, name)) for name in staging.entries
        }
        with open(staging.path(SUMMARY_NAME), "w", encoding="utf-8") as stream:
            json.dump(summary, stream, indent=2)
        _warn_stale(output_dir, staging.entries)
        files = staging.commit()
    finally:
        staging.cleanup()
    logging.info("Exported %s to %s: %s", model.name, output_dir, json.dumps(summary))
    return ExportResult(output_dir, tuple(files), summary)


def _qat_int8(model, state, input_shape, pad_to_shape, options, images) -> tuple:
    """The int8 flatbuffer from a QAT model's trained ranges, and its report.

    The report compares it with the simulated-int8 graph (the same graph with its fake-quant
    ops run in float), not with the float model.
    """
    state.active = True
    try:
        serve = build_serving_function(model, input_shape, pad_to_shape, **options)
        frozen = freeze(serve)
    finally:
        state.active = False
    int8_model = tflite_export.convert_int8_from_ranges(frozen)
    if images is not None:
        report = tflite_export.int8_report(int8_model, frozen, images)
    else:
        report = {"images": 0, "float_ops": tflite_export.float_ops(int8_model)}
    report["source"] = "quantization-aware training ranges"
    return int8_model, report


def _size(path: str) -> int:
    """Bytes of a file, or of all files under a directory."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )


# --------------------------------------------------------------------------- calibration


def calibration_images_from_records(
    dataset_fn: Callable[[], tf.data.Dataset], size: tuple[int, int], limit: int
) -> Callable[[], Iterable[np.ndarray]]:
    """Representative images for int8 calibration, as the deploy graph's input receives them.

    Args:
      dataset_fn: returns the eval dataset (batch 1, possibly padded by ``eval_input_type``).
      size: the export input (height, width); images are cropped to their decoded size (the
        eval padding removed) and resized bilinearly to it, as ``inference.py`` does.
      limit: at most this many images.

    Returns:
      A function returning an iterator of uint8 [1, height, width, 3] arrays.
    """

    def images() -> Iterable[np.ndarray]:
        for batch in dataset_fn().take(limit):
            height = int(batch[InputDataFields.original_height][0])
            width = int(batch[InputDataFields.original_width][0])
            image = batch[InputDataFields.input_image][:, :height, :width]
            if (height, width) != tuple(size):
                image = tf.image.resize(image, size, method="bilinear")
            yield np.clip(np.rint(image.numpy()), 0, 255).astype(np.uint8)

    return images
