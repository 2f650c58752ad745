"""The README demo: synthetic scenes -> train ICNet -> evaluate -> export -> segment images.

Every stage is the project's own entry point called as a library (the same
code as ``train.py``, ``eval.py``, ``export.py`` and ``inference.py``), on the
built-in synthetic street scenes (:mod:`dataset_tools.create_synthetic_dataset`).
Outputs, under ``output_dir``::

    data/       synthetic_{train,val}.record, manifest.json (what they were generated from)
    previews/   a few generated scenes beside their labels
    train/      checkpoints, pipeline.config, TensorBoard events
    eval/       metrics_<step>.json, TensorBoard events
    export/     frozen graph, SavedModel, TFLite float32 / int8, model.ckpt
    images/     held-out scenes to segment
    overlays/   those scenes beside their predicted segmentation

Running it again resumes: the records are reused when the options and the generator's code
are unchanged, and training continues from the last checkpoint (and stops at once when it
already reached ``num_steps``). The wall and CPU seconds of each stage are logged at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Iterator

import numpy as np
from absl import logging

from builders import config_util, dataset_metadata_builder
from core import file_utils, visualization
from core.deploy import exporter, inference_runner
from core.evaluation import metrics
from dataset_tools import (
    create_synthetic_dataset,
    synthetic_canvas,
    synthetic_objects,
    synthetic_scene,
    tfrecord_utils,
)
from runners import eval_loop, trainer
from runners.export import export_inference_graph
from runners.inference import load_segmenter

# Beside the package, not the working directory: the demo runs from anywhere (also installed).
DEFAULT_CONFIG = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "configs",
    "icnet_synthetic_demo.config",
)


SPLITS = ("train", "val")


@dataclasses.dataclass(frozen=True)
class DemoOptions:
    """What the demo generates and how long it trains.

    Attributes:
      output_dir: folder for everything the demo writes.
      config_path: the pipeline config to train.
      num_train: synthetic training scenes.
      num_val: synthetic validation scenes (the evaluation split).
      height: scene height in pixels.
      width: scene width in pixels.
      num_steps: training steps; None keeps the config's ``num_steps``.
      num_images: held-out scenes segmented by the exported model.
      seed: seed of the data and of training.
      config_override: extra text-format overrides applied after the demo's own.
      formats: export formats (``core.deploy.exporter.FORMATS``).
    """

    output_dir: str = "demo_output"
    config_path: str = DEFAULT_CONFIG
    num_train: int = 400
    num_val: int = 50
    height: int = 256
    width: int = 512
    num_steps: int | None = None
    num_images: int = 4
    seed: int = 0
    config_override: tuple[str, ...] = ()
    formats: tuple[str, ...] = exporter.FORMATS


@dataclasses.dataclass(frozen=True)
class DemoResult:
    """What the demo produced: the trained step, the scores and where the files are.

    ``stages`` holds ``(name, wall seconds, CPU seconds)`` of each stage, in order.
    """

    step: int
    miou: float
    table: str
    metrics_path: str
    checkpoint_path: str
    export_dir: str
    overlays: tuple[str, ...]
    latency_ms: float | None
    seconds: float
    stages: tuple[tuple[str, float, float], ...] = ()


class StageTimer:
    """Wall and process CPU seconds of each named stage of the demo.

    CPU seconds count every thread of the process, so on a machine shared with other jobs
    they say what the stage costs while the wall time says how long it waited too.
    """

    def __init__(self) -> None:
        self.stages: list[tuple[str, float, float]] = []

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.stages.append((name, time.perf_counter() - wall, time.process_time() - cpu))

    def table(self) -> str:
        """The stages as aligned text, with a total line."""
        rows = [*self.stages]
        rows.append(("total", sum(r[1] for r in rows), sum(r[2] for r in rows)))
        width = max(len(r[0]) for r in rows)
        lines = [f"{'stage':<{width}}  wall s   CPU s"]
        lines += [f"{name:<{width}}  {wall:6.1f}  {cpu:6.1f}" for name, wall, cpu in rows]
        return "\n".join(lines)


def _overrides(options: DemoOptions, records: dict[str, str]) -> list[str]:
    """Points the config at the generated records; sets the steps and eval size."""
    overrides = [
        f'train_input_reader {{ tf_record_input_reader {{ input_path: "{records["train"]}" }} }}',
        f'eval_input_reader {{ tf_record_input_reader {{ input_path: "{records["val"]}" }} }}',
        f"eval_config {{ num_examples: {options.num_val} }}",
    ]
    if options.num_steps is not None:
        overrides.append(f"train_config {{ num_steps: {options.num_steps} }}")
    return overrides + list(options.config_override)


def _write_held_out_images(directory: str, options: DemoOptions) -> str:
    """Scenes from a stream neither split uses, as PNGs to segment."""
    os.makedirs(directory, exist_ok=True)
    for index in range(options.num_images):
        rng = np.random.default_rng([options.seed, 2, index])
        image, _ = synthetic_scene.generate_scene(options.height, options.width, rng)
        visualization.save_png(image, os.path.join(directory, f"scene_{index:02d}.png"))
    return directory


def _segment_held_out(out: str, export_dir: str, config, options: DemoOptions):
    """Segments ``num_images`` new scenes with the exported frozen graph; None for zero."""
    if options.num_images == 0:
        return None
    images = _write_held_out_images(os.path.join(out, "images"), options)
    segmenter = load_segmenter(model_path=os.path.join(export_dir, "frozen_inference_graph.pb"))
    return inference_runner.run_inference(
        segmenter,
        images,
        os.path.join(out, "overlays"),
        metadata=dataset_metadata_builder.build(config),
    )


def _data_manifest(options: DemoOptions) -> dict:
    """What the generated records depend on: the options and the generator's source code."""
    digest = hashlib.sha256()
    modules = (synthetic_scene, synthetic_canvas, synthetic_objects, tfrecord_utils)
    for module in (*modules, create_synthetic_dataset):
        with open(module.__file__, "rb") as stream:
            digest.update(stream.read())
    return {
        "num_train": options.num_train,
        "num_val": options.num_val,
        "height": options.height,
        "width": options.width,
        "seed": options.seed,
        "generator_sha256": digest.hexdigest(),
    }


def _synthetic_records(out: str, options: DemoOptions) -> dict[str, str]:
    """Writes the synthetic records, or reuses those of an earlier run with the same inputs.

    The scenes are deterministic, so records written with the same options by the same
    generator code are byte-identical: regenerating them would only cost time.
    """
    data_dir = os.path.join(out, "data")
    manifest_path = os.path.join(data_dir, "manifest.json")
    manifest = _data_manifest(options)
    records = {split: os.path.join(data_dir, f"synthetic_{split}.record") for split in SPLITS}
    try:
        with open(manifest_path, encoding="utf-8") as stream:
            cached = json.load(stream) == manifest
    except (OSError, ValueError):
        cached = False
    if cached and all(os.path.exists(path) for path in records.values()):
        logging.info("Reusing the synthetic scenes in %s (same options and generator)", data_dir)
        return records
    # Gone while the records are rewritten: an interrupted run must not leave a manifest that
    # vouches for a mix of old and new records.
    if os.path.exists(manifest_path):
        os.remove(manifest_path)
    records = create_synthetic_dataset.write_synthetic_dataset(
        data_dir,
        num_train=options.num_train,
        num_val=options.num_val,
        height=options.height,
        width=options.width,
        seed=options.seed,
        preview_dir=os.path.join(out, "previews"),
    )
    file_utils.atomic_write_text(manifest_path, json.dumps(manifest, indent=1) + "\n")
    return records


def run_demo(options: DemoOptions = DemoOptions()) -> DemoResult:
    """Runs the whole demo; returns its results (also logged).

    Each stage's wall and CPU seconds are logged at the end and returned in ``stages``.

    Raises:
      builders.config_util.ConfigError: the config or an override is invalid.
    """
    started = time.perf_counter()
    timer = StageTimer()
    out = os.path.abspath(options.output_dir)
    # Checked before any scene is generated (minutes with the defaults); the records are named
    # once they exist.
    named_later = {"train": "synthetic_train.record", "val": "synthetic_val.record"}
    config_util.load_pipeline_config(options.config_path, _overrides(options, named_later))
    logging.info(
        "Demo 1/5: generating %d + %d synthetic scenes", options.num_train, options.num_val
    )
    with timer.stage("1 data"):
        records = _synthetic_records(out, options)
    overrides = _overrides(options, records)
    config = config_util.load_pipeline_config(options.config_path, overrides)

    logging.info("Demo 2/5: training (%d steps)", config.train_config.num_steps)
    with timer.stage("2 training"):
        trained = trainer.train(
            config, os.path.join(out, "train"), trainer.TrainOptions(seed=options.seed)
        )

    logging.info("Demo 3/5: evaluating %s", trained.checkpoint_path)
    with timer.stage("3 evaluation"):
        scores = eval_loop.evaluate_checkpoint(
            config, trained.checkpoint_path, os.path.join(out, "eval")
        )

    logging.info("Demo 4/5: exporting")
    export_dir = os.path.join(out, "export")
    shape = (1, options.height, options.width, 3)
    pad = (options.height + 1, options.width + 1)  # the models' Interp sizes map 2^k+1 exactly
    with timer.stage("4 export"):
        export_inference_graph(
            options.config_path,
            trained.checkpoint_path,
            export_dir,
            input_shape=shape,
            pad_to_shape=pad,
            formats=options.formats,
            num_calibration_images=min(options.num_val, 50),
            config_override=overrides,
        )

    logging.info("Demo 5/5: segmenting %d held-out scenes", options.num_images)
    with timer.stage("5 inference"):
        report = _segment_held_out(out, export_dir, config, options)

    # The written results hold the confusion matrix; the table is derived from it.
    matrix = np.asarray(scores["confusion_matrix"], dtype=np.int64)
    table = metrics.format_table(
        metrics.scores_from_confusion_matrix(matrix), scores["class_names"]
    )
    result = DemoResult(
        step=trained.step,
        miou=float(scores["miou"]),
        table=table,
        metrics_path=scores["json_path"],
        checkpoint_path=trained.checkpoint_path,
        export_dir=export_dir,
        overlays=tuple(report.outputs) if report else (),
        latency_ms=report.median_ms if report else None,
        seconds=time.perf_counter() - started,
        stages=tuple(timer.stages),
    )
    logging.info(
        "Demo done in %.0f s. ICNet after %d steps, on %d held-out synthetic scenes:\n%s\n"
        "mIoU %.1f%% (classes absent from the scenes and never predicted are n/a)\n"
        "metrics: %s\nexported models: %s\noverlays: %s\n%s\n"
        "Time per stage (CPU s over wall s is how many cores a stage kept busy):\n%s",
        result.seconds,
        result.step,
        options.num_val,
        table,
        100 * result.miou,
        result.metrics_path,
        export_dir,
        os.path.join(out, "overlays"),
        report.summary() if report else "no held-out scenes segmented (--num_images=0)",
        timer.table(),
    )
    return result
