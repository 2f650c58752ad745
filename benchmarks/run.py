r"""``make bench``: measures the models and writes ``benchmarks/RESULTS.md`` and ``results.json``.

Usage, from the repository root::

    python -m benchmarks.run                       # everything, ~15-20 min on a 2-core CPU
    python -m benchmarks.run --sections=params,latency --models=icnet_1.0,icnet_0.5
    python -m benchmarks.run --quick --output_dir=/tmp/bench   # shrunken models, ~1 min
    python -m benchmarks.run --mixed_precision --device_label="H100, driver 550"   # on a GPU

Sections (``--sections``, comma-separated, default all):
  params    parameters and FLOPs of every model at every ``--sizes``
  latency   batch-1 latency of the checkpoint model of every model at every size
  export    export.py's formats of ICNet 1.0 and compressed ICNet 0.5, timed side by side with
            the checkpoint model, ONNX Runtime and OpenVINO (round-robin, ratio to the fastest)
  train     training step time and images/s: demo config, ICNet 1.0 at 713x713 crops
  memory    peak memory of the step: train.py vs train_mem_saving.py, same batch and crop;
            the largest batch of each under --train_memory_cap_gib
  input     the demo's input pipeline throughput, against the demo's training images/s
  video     end-to-end fps of inference on a generated video beside the model-only fps
  roofline  float32 matmul rate; each model's FLOPs / latency against it
  profile   where ICNet 1.0's inference time goes (ms by op type and by model part), at the
            first size; the first --models entry when ICNet 1.0 is not selected

A cell that fails (a conversion error, out of memory) is recorded as failed with its reason and
the run goes on. See docs/benchmarks.md.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence

from absl import app, flags, logging

SECTIONS = ("params", "latency", "export", "train", "memory", "input", "video", "roofline",
            "profile")  # fmt: skip
DEFAULT_SIZES = ("1024x2048", "512x1024")
QUICK_SIZES = ("129x257", "97x193")

flags.DEFINE_string(
    "output_dir",
    os.path.dirname(os.path.abspath(__file__)),
    "Where RESULTS.md and results.json are written (default: benchmarks/).",
)
flags.DEFINE_list("sections", list(SECTIONS), f"Sections to run, a subset of {SECTIONS}.")
flags.DEFINE_list(
    "models",
    None,
    "Models to measure (default all): icnet_1.0, icnet_0.5, icnet_0.5_compressed, pspnet50, "
    "icnet_mobilenet_v2.",
)
flags.DEFINE_bool(
    "quick", False, "Tiny models, sizes and run counts: checks the harness in about a minute."
)
flags.DEFINE_list(
    "sizes", None, f"Inference sizes HxW (default {','.join(DEFAULT_SIZES)}; quick: smaller)."
)
flags.DEFINE_integer("runs", None, "Timed runs per latency cell (default 5, quick 2).")
flags.DEFINE_integer("warmup", None, "Untimed runs before them (default 2, quick 1).")
flags.DEFINE_integer(
    "heavy_runs", 3, "Timed runs of models that take many seconds per pass (PSPNet50)."
)
flags.DEFINE_integer("train_steps", None, "Timed training steps (default 5, quick 2).")
flags.DEFINE_integer("train_warmup", 2, "Untimed training steps (the first traces the step).")
flags.DEFINE_integer("train_batch_size", 2, "Batch of the 713x713 training and memory cases.")
flags.DEFINE_float(
    "train_memory_cap_gib", None, "Resident-set cap of the batch search (default 6, quick 1.5)."
)
flags.DEFINE_integer("input_batches", None, "Timed input-pipeline batches (default 20).")
flags.DEFINE_bool(
    "mixed_precision",
    False,
    "Checkpoint-model latency and training in mixed precision (float16 on a GPU, bfloat16 on "
    "a CPU); exported formats stay float32.",
)
flags.DEFINE_string("device_label", "", "Free text describing the machine, shown in the table.")
flags.DEFINE_string(
    "work_dir", None, "Keep exports, checkpoints and logs here (default: a temporary directory)."
)

# Seconds per batch-1 pass at 1024x2048 on a 2-core CPU, and seconds per export of all four
# formats at that size: only used to estimate the time left.
_PASS_S = {"icnet_1.0": 2.0, "icnet_0.5": 0.5, "icnet_0.5_compressed": 0.5, "pspnet50": 25.0,
           "icnet_mobilenet_v2": 0.7}  # fmt: skip
_EXPORT_S = {"icnet_1.0": 200.0, "icnet_0.5_compressed": 90.0}


def parse_size(text: str) -> tuple[int, int]:
    """``"1024x2048"`` -> ``(1024, 2048)``."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise app.UsageError(f"--sizes: {text!r} is not HEIGHTxWIDTH, e.g. 1024x2048.") from None
    if height < 1 or width < 1:
        raise app.UsageError(f"--sizes: {text!r} must be positive.")
    return height, width


class Settings:
    """The run's settings, flags resolved (``--quick`` defaults applied)."""

    def __init__(self, fv: flags.FlagValues):
        from benchmarks.models import SPECS_BY_KEY

        unknown = [s for s in fv.sections if s not in SECTIONS]
        if unknown:
            raise app.UsageError(f"--sections: unknown {unknown}; choose from {SECTIONS}.")
        self.sections = [s for s in SECTIONS if s in fv.sections]
        self.models = list(fv.models or SPECS_BY_KEY)
        unknown = [m for m in self.models if m not in SPECS_BY_KEY]
        if unknown:
            raise app.UsageError(f"--models: unknown {unknown}; choose from {list(SPECS_BY_KEY)}.")
        self.quick = fv.quick
        self.sizes = [
            parse_size(s) for s in (fv.sizes or (QUICK_SIZES if fv.quick else DEFAULT_SIZES))
        ]
        self.runs = fv.runs or (2 if fv.quick else 5)
        self.warmup = fv.warmup if fv.warmup is not None else (1 if fv.quick else 2)
        self.heavy_runs = max(1, min(fv.heavy_runs, self.runs))
        self.train_steps = fv.train_steps or (2 if fv.quick else 5)
        self.train_warmup = max(1, fv.train_warmup)
        self.train_batch_size = fv.train_batch_size
        self.input_batches = fv.input_batches or (5 if fv.quick else 20)
        self.train_memory_cap_bytes = int(
            (fv.train_memory_cap_gib or (1.5 if fv.quick else 6.0)) * 2**30
        )
        self.mixed_precision = fv.mixed_precision
        if self.runs < 1 or self.warmup < 0 or self.train_batch_size < 1:
            raise app.UsageError("--runs and --train_batch_size must be >= 1, --warmup >= 0.")

    def timing(self, model_key: str) -> tuple[int, int]:
        """(warm-up, runs) of a model: heavy models get 1 warm-up and ``heavy_runs``."""
        from benchmarks.models import SPECS_BY_KEY

        if SPECS_BY_KEY[model_key].heavy and not self.quick:
            return min(self.warmup, 1), self.heavy_runs
        return self.warmup, self.runs

    def as_dict(self) -> dict:
        from benchmarks.inference_bench import size_label

        return {
            "command": " ".join(["python -m benchmarks.run", *sys.argv[1:]]),
            "sections": self.sections,
            "models": self.models,
            "quick": self.quick,
            "sizes": [size_label(s) for s in self.sizes],
            "runs": self.runs,
            "warmup": self.warmup,
            "heavy_runs": self.heavy_runs,
            "train_steps": self.train_steps,
            "train_warmup": self.train_warmup,
            "train_batch_size": self.train_batch_size,
            "input_batches": self.input_batches,
            "mixed_precision": self.mixed_precision,
        }


def coverage_note(settings: Settings) -> str:
    from benchmarks.models import SPECS_BY_KEY

    exported = [SPECS_BY_KEY[m].title for m in settings.models if SPECS_BY_KEY[m].exported]
    others = [SPECS_BY_KEY[m].title for m in settings.models if not SPECS_BY_KEY[m].exported]
    parts = []
    if "export" not in settings.sections:
        parts.append("Exported formats not measured (the export section did not run).")
    else:
        if exported:
            parts.append(f"Every format is timed for {', '.join(exported)}.")
        if others:
            parts.append(
                f"Checkpoint model only for {', '.join(others)}: an export of all four formats "
                "costs minutes on a CPU (the ICNet 0.5 that is exported is compress.py's; the "
                "models table shows whether it has the built one's shape)."
            )
    heavy = [SPECS_BY_KEY[m].title for m in settings.models if SPECS_BY_KEY[m].heavy]
    if heavy and not settings.quick:
        parts.append(
            f"{', '.join(heavy)}: 1 warm-up + {settings.heavy_runs} timed runs (tens of seconds "
            "per pass on a CPU)."
        )
    return " ".join(parts)


def build_tasks(settings: Settings, store, train_runner) -> list:
    """The run's tasks, in order, with their time estimates."""
    from benchmarks import inference_bench as ib
    from benchmarks import input_bench, roofline, train_bench, video_bench
    from benchmarks.models import SPECS_BY_KEY
    from benchmarks.plan import Task
    from benchmarks.profile_bench import PROFILE_MODEL, measure_profile, profile_key

    scale = 0.02 if settings.quick else 1.0
    tasks: list[Task] = []
    sections = settings.sections

    def pixels(size):
        return size[0] * size[1] / (1024 * 2048)

    if "params" in sections:
        for model in settings.models:
            tasks.append(
                Task(
                    f"parameters and FLOPs of {model}",
                    [ib.params_key(model)],
                    lambda r, m=model: ib.measure_params(r, store, m, settings.sizes),
                    (25.0 if SPECS_BY_KEY[model].compressed_from else 6.0) * scale + 2,
                )
            )
    if "roofline" in sections:
        sizes = roofline.matmul_sizes(settings.quick)
        tasks.append(
            Task(
                f"float32 matmul rate (n = {', '.join(map(str, sizes))})",
                [ib.MATMUL_KEY],
                lambda r: roofline.measure_matmul(r, sizes, settings.warmup, max(settings.runs, 5)),
                5.0 * scale + 1,
            )
        )
    if "latency" in sections:
        for model in settings.models:
            warmup, runs = settings.timing(model)
            for size in settings.sizes:
                estimate = 6 + (warmup + runs + 1) * _PASS_S[model] * pixels(size)
                tasks.append(
                    Task(
                        f"latency of {model} (checkpoint model) at {ib.size_label(size)}",
                        [ib.latency_key(model, ib.CHECKPOINT, size)],
                        lambda r, m=model, s=size, w=warmup, n=runs: ib.measure_checkpoint_latency(
                            r, store, m, s, w, n, settings.mixed_precision
                        ),
                        estimate * scale + 1,
                    )
                )
    if "export" in sections:
        for model in settings.models:
            if not SPECS_BY_KEY[model].exported:
                continue
            warmup, runs = settings.timing(model)
            for size in settings.sizes:
                cells = [ib.export_key(model, size)]
                cells += [ib.latency_key(model, fmt, size) for fmt in ib.FORMATS]
                cells.append(ib.runtimes_key(model, size))
                timing = len(ib.RUNTIMES) * (
                    5 + (warmup + runs + 1) * _PASS_S[model] * pixels(size)
                )
                estimate = _EXPORT_S[model] * pixels(size) ** 0.7 + timing
                tasks.append(
                    Task(
                        f"export of {model} at {ib.size_label(size)}, then latency per format",
                        cells,
                        lambda r, m=model, s=size, w=warmup, n=runs: ib.measure_exports(
                            r, store, m, s, w, n
                        ),
                        estimate * scale + 3,
                    )
                )
    if "profile" in sections:
        size = settings.sizes[0]
        model = PROFILE_MODEL if PROFILE_MODEL in settings.models else settings.models[0]
        tasks.append(
            Task(
                f"op profile of {model} at {ib.size_label(size)}",
                [profile_key(model, ib.size_label(size))],
                lambda r: measure_profile(r, store, model, size, settings.runs),
                (20 + (settings.runs + 3) * _PASS_S[model] * pixels(size)) * scale + 2,
            )
        )
    tasks.append(Task("free the models", [], lambda r: store.release(), 0.5))
    if "train" in sections:
        for case in train_bench.train_cases(settings.quick, settings.train_batch_size):
            tasks.append(
                Task(
                    f"training step: {case.title}",
                    [train_bench.train_key(case)],
                    lambda r, c=case: train_bench.measure_train(r, train_runner, c),
                    (40.0 if case.key == "demo" else 70.0) * scale + 10,
                )
            )
    if "memory" in sections:
        for case in train_bench.memory_cases(settings.quick, settings.train_batch_size):
            shared = "train" in sections and not case.mem_saving
            tasks.append(
                Task(
                    f"training memory: {case.title}",
                    [train_bench.memory_key(case)],
                    lambda r, c=case: train_bench.measure_memory(r, train_runner, c),
                    0.5 if shared else 90.0 * scale + 10,
                )
            )
    if "memory" in sections:
        tasks += train_bench.cap_tasks(
            settings.quick, settings.train_batch_size, settings.train_memory_cap_bytes, train_runner
        )
    if "video" in sections:
        tasks.append(video_bench.video_task(store, settings.quick, settings.warmup))
    if "input" in sections:
        tasks.append(
            Task(
                "input pipeline throughput (demo config)",
                [input_bench.INPUT_KEY],
                lambda r: input_bench.measure_input(
                    r, store.work_dir, settings.quick, settings.warmup + 2, settings.input_batches
                ),
                15.0 * scale + 3,
            )
        )
    if "roofline" in sections and "params" in sections and "latency" in sections:
        cells = [ib.roofline_key(m, s) for m in settings.models for s in settings.sizes]
        tasks.append(
            Task(
                "roofline: FLOPs / latency of every model",
                cells,
                lambda r: roofline.derive_roofline(r, settings.models, settings.sizes),
                0.1,
            )
        )
    return tasks


def run(settings: Settings, output_dir: str, device_label: str = "", work_dir: str | None = None):
    """Runs the selected sections and writes the report; returns the results document."""
    from benchmarks import machine, report
    from benchmarks.models import ModelStore
    from benchmarks.plan import Results, run_tasks
    from benchmarks.train_bench import TrainRunner

    started = time.monotonic()
    keep = work_dir is not None
    work_dir = work_dir or tempfile.mkdtemp(prefix="bench-")
    os.makedirs(work_dir, exist_ok=True)
    document = {
        "schema_version": report.SCHEMA_VERSION,
        "machine": machine.describe(device_label),
        "settings": {**settings.as_dict(), "coverage_note": coverage_note(settings)},
        "cells": {},
    }
    logging.info("Benchmarking on %s", document["machine"])
    results = Results()
    document["cells"] = results.cells

    def update(_results) -> None:
        elapsed = time.monotonic() - started
        document["settings"]["total_seconds"] = round(elapsed, 1)
        document["settings"]["total_time"] = f"{int(elapsed // 60)} min {int(elapsed % 60)} s"
        document["machine"]["load_average_end"] = machine.load_average()
        report.write(output_dir, document)

    store = ModelStore(work_dir, settings.quick)
    train_runner = TrainRunner(
        work_dir, settings.train_warmup, settings.train_steps, settings.mixed_precision
    )
    try:
        tasks = build_tasks(settings, store, train_runner)
        update(results)
        run_tasks(tasks, results, on_update=update)
    finally:
        if not keep:
            shutil.rmtree(work_dir, ignore_errors=True)
    markdown, json_path = report.write(output_dir, document)
    logging.info("Wrote %s and %s", markdown, json_path)
    return document


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    fv = flags.FLAGS
    settings = Settings(fv)
    document = run(settings, fv.output_dir, fv.device_label, fv.work_dir)
    failed = [k for k, c in document["cells"].items() if c["status"] == "failed"]
    if failed:
        logging.warning("%d cell(s) failed: %s", len(failed), ", ".join(failed))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    app.run(main)
