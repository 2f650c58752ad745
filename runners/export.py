"""``export.py``'s work: the model of a config, restored from a checkpoint, exported.

The library part (the deploy graph, the formats, the atomic output directory) is
:mod:`core.deploy.exporter`, which takes a built model and plain values; this runner reads the
config, builds and restores the model (:func:`runners.common.load_model`) and picks the int8
calibration images from the config's eval records.

A checkpoint trained with quantization-aware training (``train_config.quantize_with_delay``;
its activation ranges are in the checkpoint) gets its int8 TFLite from those ranges, without
calibration; the eval records, when configured, only feed the agreement report. Float
checkpoints keep post-training quantization.

The dataset metadata of the config (:mod:`builders.dataset_metadata_builder`) goes into the
export's ``labels.txt`` and ``metadata.json`` with this project's version.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from collections.abc import Iterable, Sequence

from builders import config_util, dataset_builder, dataset_metadata_builder
from core.checkpoints import checkpoint_utils
from core.deploy import export_metadata, tflite_export
from core.deploy.deploy_graph import ExportError, parse_export_shapes
from core.deploy.export_options import check_formats
from core.deploy.exporter import (
    DEFAULT_FORMATS,
    ExportResult,
    calibration_images_from_records,
    export_model,
)
from models import quantization
from runners.common import build_model, load_model


def export_inference_graph(
    config_path: str,
    trained_checkpoint: str,
    output_dir: str,
    input_shape: str | Sequence,
    pad_to_shape: str | Sequence | None = None,
    output_colours: bool = False,
    formats: Iterable[str] = DEFAULT_FORMATS,
    num_calibration_images: int = 100,
    config_override: str | Iterable[str] | None = None,
    dynamic_input_size: bool = False,
    output_scores: bool = False,
    serving_version: int | None = None,
) -> ExportResult:
    """``export.py``: builds the config's model, restores a checkpoint and exports it.

    Args:
      config_path: the pipeline ``.config``.
      trained_checkpoint: a checkpoint prefix or a training directory (latest checkpoint).
      output_dir: where the files go (see :mod:`core.deploy.exporter`).
      input_shape: ``H,W,3`` or ``N,H,W,3`` (N may be -1): the network's fixed input, which
        TFLite takes. ``-1,-1,3`` makes every graph that can take any size do so, with the
        network at ``pad_to_shape`` (then required).
      pad_to_shape: optional ``H,W`` the input is zero-padded to, e.g. 1025,2049.
      output_colours: output palette colours instead of class ids.
      formats: a subset of :data:`core.deploy.exporter.FORMATS`.
      num_calibration_images: eval images used to calibrate the int8 model.
      config_override: text-format config snippets applied on top of the file.
      dynamic_input_size: the frozen graph takes images of any size too (the SavedModel always
        does); TFLite stays at the fixed size.
      output_scores: every format also outputs ``scores`` (softmax float32 [N, H, W, C]).
      serving_version: write the SavedModel as ``saved_model/<N>/`` for TF Serving.

    Returns:
      The :class:`core.deploy.exporter.ExportResult` of the export.

    Raises:
      config_util.ConfigError, checkpoint_utils.CheckpointError, ExportError,
      tflite_export.TFLiteConversionError: each names the flag, file or op at fault.
    """
    config = config_util.load_pipeline_config(config_path, config_override)
    shape, padding, dynamic = parse_export_shapes(input_shape, pad_to_shape, dynamic_input_size)
    dataset = dataset_metadata_builder.build(config)
    formats = tuple(formats)
    check_formats(formats)  # before the checkpoint is read and the model built
    # Resolved before anything is built, so a wrong path fails in a second.
    prefix = checkpoint_utils.resolve_checkpoint(trained_checkpoint)
    qat = quantization.has_ranges(checkpoint_utils.checkpoint_shapes(prefix))
    calibration = None
    if "tflite_int8" in formats and qat:
        # Trained ranges: eval images, when there are any, only feed the agreement report.
        if config.HasField("eval_input_reader"):
            calibration = calibration_images_from_records(
                lambda: dataset_builder.build_eval_dataset(
                    config.eval_input_reader, config.eval_config
                ),
                shape[1:3],
                tflite_export.REPORT_IMAGES,
            )
    elif "tflite_int8" in formats:
        if not config.HasField("eval_input_reader"):
            raise ExportError(
                f"{config_path}: tflite_int8 is calibrated on the eval records, but the config "
                "has no eval_input_reader; add one or leave tflite_int8 out of --formats."
            )
        if num_calibration_images < 1:
            raise ExportError(
                f"--num_calibration_images must be >= 1, got {num_calibration_images}."
            )
        calibration = calibration_images_from_records(
            lambda: dataset_builder.build_eval_dataset(
                config.eval_input_reader, config.eval_config
            ),
            shape[1:3],
            num_calibration_images,
        )
    state = None
    if qat:
        # Attached (inactive) before the restore: the ranges are variables of the model.
        model = build_model(config)
        state = quantization.attach(model, active=False)
        prefix = checkpoint_utils.restore_model(model, prefix)
    else:
        model, prefix = load_model(config, prefix)
    return export_model(
        model,
        output_dir,
        shape,
        padding,
        output_colours,
        formats,
        calibration,
        write_config=lambda directory: config_util.write_pipeline_config(config, directory),
        summary_extra={"config_path": config_path, "checkpoint": prefix},
        quantization_state=state,
        dynamic_input_size=dynamic,
        output_scores=output_scores,
        serving_version=serving_version,
        dataset=dataset,
        project_version=project_version(),
    )


def project_version() -> str | None:
    """This project's version: the installed package's, else the clone's ``pyproject.toml``."""
    try:
        return importlib.metadata.version(export_metadata.PROJECT_NAME)
    except importlib.metadata.PackageNotFoundError:
        pass
    path = os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyproject.toml"
    )
    try:
        with open(path, encoding="utf-8") as stream:
            match = re.search(r'^version\s*=\s*"([^"]+)"', stream.read(), re.MULTILINE)
    except OSError:
        return None
    return match.group(1) if match else None
