"""Exports a trained segmentation model for deployment (``export.py``).

:func:`export_model` takes a built, restored model and plain values; reading the config,
restoring the checkpoint and choosing calibration records is ``runners.export``'s job. The
deploy graph (uint8 ``inputs`` -> class ids or colours ``predictions``) is built by
:mod:`core.deploy.deploy_graph`.

Files written to ``output_dir`` (see :data:`FORMATS` for the selectable ones):

  ``frozen_inference_graph.pb``  GraphDef with the weights as constants (``inputs:0`` ->
                                 ``predictions:0``), as the original wrote.
  ``saved_model/``               SavedModel; signature ``serving_default``: ``inputs`` ->
                                 ``predictions``.
  ``model_float32.tflite``       TFLite, float weights.
  ``model_int8.tflite``          TFLite, post-training full-integer quantized (see
                                 :mod:`core.deploy.tflite_export`); same uint8-in / ids-out interface.
  ``model.ckpt.*``               the model variables only, in our checkpoint format
                                 (``compress.py``'s input).
  ``pipeline.config``            the config the model was built from.
  ``export_summary.json``        shapes, parameter counts, FLOPs (``core.analysis.flops``, batch 1),
                                 file sizes and the int8-vs-float agreement.

Every file is first written into a hidden staging directory inside ``output_dir`` and moved to
its final name (``os.replace``, atomic) only after *all* requested formats were written, so a
failed export leaves the previous export untouched and never a partial file under a final name.
Outputs of an earlier export that this one does not rewrite are kept, with a warning.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from core import file_utils
from core.analysis import flops
from core.checkpoints import checkpoint_utils
from core.checkpoints.crash_safety import pause_point
from core.data.standard_fields import InputDataFields
from core.deploy import tflite_export
from core.deploy.deploy_graph import (
    INPUT_NAME,
    OUTPUT_NAME,
    ExportError,
    InputShape,
    build_serving_function,
    freeze,
    with_input_size_check,
)

SIGNATURE_KEY = "serving_default"

FROZEN_GRAPH_NAME = "frozen_inference_graph.pb"
SAVED_MODEL_DIR = "saved_model"
TFLITE_FLOAT_NAME = "model_float32.tflite"
TFLITE_INT8_NAME = "model_int8.tflite"
CHECKPOINT_PREFIX = "model.ckpt"
CONFIG_NAME = "pipeline.config"
SUMMARY_NAME = "export_summary.json"
_STAGING_PREFIX = ".export-staging-"
_COMMIT_NAME = ".commit"
_ASIDE_INFIX = ".old-"

# Selectable outputs (``--formats``); the checkpoint, config and summary are always written.
FORMATS = ("frozen_graph", "saved_model", "tflite_float32", "tflite_int8")


# --------------------------------------------------------------------------- staging


class _Staging:
    """A hidden directory in ``output_dir`` where files are written before being committed.

    ``commit`` first records the staged names in a ``.commit`` file (the export is complete),
    then moves each staged entry to its final name with ``os.replace`` (atomic on one
    filesystem). A directory (the SavedModel) cannot replace a non-empty one, so the old one is
    first renamed aside and deleted after the new one is in place: a reader sees either the old
    or the new SavedModel, never a partial one. A process killed before the ``.commit`` file
    leaves the previous export as it was; one killed while moving (milliseconds) leaves a mix
    of old and new files, which the next export into the directory completes first
    (:func:`recover_interrupted_export`).
    """

    def __init__(self, output_dir: str):
        os.makedirs(output_dir, exist_ok=True)
        recover_interrupted_export(output_dir)
        self.output_dir = output_dir
        self.directory = tempfile.mkdtemp(dir=output_dir, prefix=_STAGING_PREFIX)
        self._entries: list[str] = []

    def path(self, name: str) -> str:
        """Staging path of an entry that will be committed as ``output_dir/name``."""
        self._entries.append(name)
        return os.path.join(self.directory, name)

    @property
    def entries(self) -> tuple[str, ...]:
        """Names staged so far."""
        return tuple(self._entries)

    def commit(self) -> list[str]:
        """Moves the staged entries into place, each atomically; returns their final paths."""
        pause_point("export_commit")  # a crash test's kill point; inert in normal runs
        file_utils.atomic_write_text(
            os.path.join(self.directory, _COMMIT_NAME), "\n".join(self._entries)
        )
        return _move_into_place(self.directory, self.output_dir, self._entries)

    def cleanup(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def _move_into_place(staging: str, output_dir: str, names: Sequence[str]) -> list[str]:
    final_paths = []
    # The checkpoint index is what marks a checkpoint as present; move it last.
    for name in sorted(names, key=lambda name: name.endswith(".index")):
        source = os.path.join(staging, name)
        target = os.path.join(output_dir, name)
        if os.path.isdir(source):
            aside = None
            if os.path.exists(target):
                aside = tempfile.mkdtemp(dir=output_dir, prefix=f".{name}{_ASIDE_INFIX}")
                os.rmdir(aside)
                os.replace(target, aside)
            os.replace(source, target)
            if aside:
                shutil.rmtree(aside, ignore_errors=True)
        elif os.path.exists(source):
            os.replace(source, target)
        final_paths.append(target)
    return final_paths


def recover_interrupted_export(output_dir: str) -> None:
    """Completes or discards what a killed export left in ``output_dir``.

    A staging directory with its ``.commit`` file was complete: its remaining entries are moved
    into place. One without was interrupted while writing: it is deleted. A SavedModel set aside
    by a commit is deleted, or put back if nothing took its place.
    """
    for staging in sorted(glob.glob(os.path.join(glob.escape(output_dir), _STAGING_PREFIX + "*"))):
        marker = os.path.join(staging, _COMMIT_NAME)
        if os.path.exists(marker):
            with open(marker, encoding="utf-8") as stream:
                names = [name for name in stream.read().split("\n") if name]
            _move_into_place(staging, output_dir, names)
            logging.warning("Completed the export interrupted while moving files: %s", staging)
        shutil.rmtree(staging, ignore_errors=True)
    target = os.path.join(output_dir, SAVED_MODEL_DIR)  # the one directory entry
    for aside in glob.glob(os.path.join(glob.escape(output_dir), f".{SAVED_MODEL_DIR}.old-*")):
        if os.path.exists(target):
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(aside, target)


# --------------------------------------------------------------------------- writers


def _write_frozen_graph(frozen, path: str) -> int:
    graph_def = frozen.graph.as_graph_def()
    with open(path, "wb") as stream:
        stream.write(graph_def.SerializeToString())
    return len(graph_def.node)


def _write_saved_model(model, serve, path: str) -> None:
    # The module tracks the model so its variables are saved with the signature's graph.
    module = tf.Module()
    module.model = model
    module.serve = checked = with_input_size_check(serve)  # serving ignores the spec's H, W
    tf.saved_model.save(module, path, signatures={SIGNATURE_KEY: checked.get_concrete_function()})


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
    known = (FROZEN_GRAPH_NAME, SAVED_MODEL_DIR, TFLITE_FLOAT_NAME, TFLITE_INT8_NAME)
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
    formats: Iterable[str] = FORMATS,
    calibration_images: Callable[[], Iterable[np.ndarray]] | None = None,
    write_config: Callable[[str], str] | None = None,
    summary_extra: dict | None = None,
    quantization_state=None,
) -> ExportResult:
    """Writes the requested formats of a restored model into ``output_dir``, atomically.

    Args:
      model: a built ``SegmentationModel`` with its trained weights.
      output_dir: created if needed; existing outputs are replaced only on success.
      input_shape: ``(batch or None, H, W, 3)``, see :func:`parse_input_shape`.
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

    Returns:
      An :class:`ExportResult`.

    Raises:
      ExportError: an unknown format, or int8 requested without calibration images.
      tflite_export.TFLiteConversionError: a TFLite conversion failed (names the ops).
    """
    formats = tuple(formats)
    unknown = [name for name in formats if name not in FORMATS]
    if unknown:
        raise ExportError(f"--formats: unknown {unknown}; choose from {', '.join(FORMATS)}.")
    qat = quantization_state is not None
    if "tflite_int8" in formats and calibration_images is None and not qat:
        raise ExportError(
            "tflite_int8 needs calibration images from the config's eval_input_reader; set it, "
            "or leave tflite_int8 out of --formats."
        )
    started = time.monotonic()
    serve = build_serving_function(model, input_shape, pad_to_shape, output_colours)
    frozen = freeze(serve)
    summary = {
        "model": model.name,
        "num_classes": model.num_classes,
        "input_shape": [-1 if d is None else d for d in input_shape],
        "pad_to_shape": list(pad_to_shape) if pad_to_shape else None,
        "output": "colours uint8 [N,H,W,3]" if output_colours else "class ids int32 [N,H,W,1]",
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "parameters": model.count_parameters(),
        "parameters_with_batch_norm": model.count_parameters(include_bn=True),
        "flops": _flops(model, pad_to_shape or input_shape[1:3]),
        **(summary_extra or {}),
    }
    staging = _Staging(output_dir)
    try:
        if "frozen_graph" in formats:
            nodes = _write_frozen_graph(frozen, staging.path(FROZEN_GRAPH_NAME))
            summary["frozen_graph_nodes"] = nodes
        if "saved_model" in formats:
            _write_saved_model(model, serve, staging.path(SAVED_MODEL_DIR))
        if "tflite_float32" in formats:
            float_model = tflite_export.convert_float(frozen)
            with open(staging.path(TFLITE_FLOAT_NAME), "wb") as stream:
                stream.write(float_model)
        if "tflite_int8" in formats and qat:
            int8_model, summary["int8"] = _qat_int8(
                model, quantization_state, input_shape, pad_to_shape, output_colours,
                calibration_images,
            )  # fmt: skip
            with open(staging.path(TFLITE_INT8_NAME), "wb") as stream:
                stream.write(int8_model)
        elif "tflite_int8" in formats:
            int8_model = tflite_export.convert_int8(frozen, calibration_images)
            with open(staging.path(TFLITE_INT8_NAME), "wb") as stream:
                stream.write(int8_model)
            summary["int8"] = tflite_export.int8_report(int8_model, frozen, calibration_images)
        _write_checkpoint(model, staging)
        if write_config is not None:
            write_config(staging.directory)
            staging.path(CONFIG_NAME)
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


def _qat_int8(model, state, input_shape, pad_to_shape, output_colours, images) -> tuple:
    """The int8 flatbuffer from a QAT model's trained ranges, and its report.

    The report compares it with the simulated-int8 graph (the same graph with its fake-quant
    ops run in float), not with the float model.
    """
    state.active = True
    try:
        serve = build_serving_function(model, input_shape, pad_to_shape, output_colours)
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
