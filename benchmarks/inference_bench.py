"""Parameters, FLOPs, inference latency (checkpoint model and exported formats).

Every latency is ``core.analysis.latency.measure`` of one batch-1 call of the deploy graph (uint8 image
in, class ids out: preprocessing, network, resize to the input size and argmax), the same graph
for the checkpoint model (``core.deploy.segmenters.ModelSegmenter``) and for each exported format
(``FrozenGraphSegmenter``, ``SavedModelSegmenter``, ``TFLiteSegmenter``, and ONNX Runtime and
OpenVINO on ``model.onnx``), the formats timed round-robin with the checkpoint model in one
group (:mod:`benchmarks.interleaved`). The input is a
synthetic street scene (``dataset_tools.synthetic_scene``), so the int8 model is calibrated on
images of the kind it runs on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import numpy as np
from absl import logging

from benchmarks import interleaved
from benchmarks.models import ModelStore, config_override, precision_policy
from benchmarks.plan import Results, error_reason

Size = tuple[int, int]

# The formats the export section asks export.py for (those it knows), and their files.
EXPORTED = ("frozen_graph", "saved_model", "tflite_float32", "tflite_int8", "onnx")
FILE_NAMES = {
    "frozen_graph": "frozen_inference_graph.pb",
    "saved_model": "saved_model",
    "tflite_float32": "model_float32.tflite",
    "tflite_int8": "model_int8.tflite",
    "onnx": "model.onnx",
}
# The exported rows timed side by side with the checkpoint model: a format run by its own
# runtime, or the ONNX model run by ONNX Runtime and OpenVINO (float32, and bfloat16: OpenVINO's
# default on CPUs with bf16 instructions).
ONNX_RUNTIMES = ("onnxruntime", "openvino", "openvino_bf16")
FORMATS = ("frozen_graph", "saved_model", "tflite_float32", "tflite_int8", *ONNX_RUNTIMES)
CHECKPOINT = "checkpoint"
RUNTIMES = (CHECKPOINT, *FORMATS)
PRECISIONS = {"tflite_int8": "int8 (float32 interface)", "openvino_bf16": "bfloat16"}
CALIBRATION_IMAGES = 2


def size_label(size: Size) -> str:
    return f"{size[0]}x{size[1]}"


def params_key(model: str) -> str:
    return f"params/{model}"


def latency_key(model: str, fmt: str, size: Size) -> str:
    return f"latency/{model}/{fmt}/{size_label(size)}"


def runtimes_key(model: str, size: Size) -> str:
    return f"runtimes/{model}/{size_label(size)}"


def export_key(model: str, size: Size) -> str:
    return f"export/{model}/{size_label(size)}"


def roofline_key(model: str, size: Size) -> str:
    return f"roofline/{model}/{size_label(size)}"


MATMUL_KEY = "roofline/matmul"


def scene(size: Size, index: int = 0) -> np.ndarray:
    """A synthetic street scene, uint8 [1, height, width, 3]."""
    from dataset_tools.synthetic_scene import generate_scene

    image, _ = generate_scene(size[0], size[1], np.random.default_rng([index, *size]))
    return np.ascontiguousarray(image[np.newaxis], dtype=np.uint8)


# --------------------------------------------------------------------------- parameters, FLOPs


def measure_params(results: Results, store: ModelStore, model_key: str, sizes: Sequence[Size]):
    """Parameters (zoo convention) and FLOPs (tfprof convention) at every size."""
    from core.analysis import flops

    spec = store.spec(model_key)
    model = store.model(model_key)
    counted = {}
    padding = {}
    for size in sizes:
        report = flops.compute_flops(model, size, batch_size=1)
        counted[size_label(size)] = report.total_flops
        padding[size_label(size)] = report.dilation_padding_flops
    values = {
        "title": spec.title,
        "config": spec.config_path,
        "config_override": config_override(spec, store.quick),
        "filter_scale": model.filter_scale,
        "params": model.count_parameters(),
        "params_with_bn": model.count_parameters(include_bn=True),
        "flops": counted,
        "dilation_padding_flops": padding,
    }
    if spec.compressed_from:
        summary = store.compression_summaries.get(model_key, {})
        values["config"] = f"compress.py output of {spec.compressed_from}"
        values["compression"] = {
            "factor": summary.get("compression_factor"),
            "filter_scale": summary.get("filter_scale"),
            "layer_widths_entries": len(summary.get("layer_widths", {})),
            "params_before": summary.get("params_before"),
            "params_after": summary.get("params_after"),
        }
    results.set(params_key(model_key), **values)


# --------------------------------------------------------------------------- latency


def _time_segmenter(make, batch: np.ndarray, warmup: int, runs: int) -> dict:
    """Loads/traces a segmenter, times its first call, then ``measure``s it."""
    from core.analysis import latency

    started = time.perf_counter()
    segmenter = make()
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    segmenter.run(batch)
    first_call = time.perf_counter() - started
    stats = latency.measure(lambda: segmenter.run(batch), warmup=max(warmup - 1, 0), runs=runs)
    values = stats.as_dict()
    values.update(
        warmup=warmup,
        load_s=round(loaded, 3),
        first_call_s=round(first_call, 3),
        fps=1000.0 / stats.median_ms,
    )
    return values


def measure_checkpoint_latency(
    results: Results,
    store: ModelStore,
    model_key: str,
    size: Size,
    warmup: int,
    runs: int,
    mixed_precision: bool = False,
) -> None:
    """Latency of the deploy graph traced around the built model (what export.py freezes)."""
    from core.deploy.segmenters import ModelSegmenter

    policy = precision_policy(mixed_precision)
    model = store.model(model_key, policy)
    values = _time_segmenter(
        lambda: ModelSegmenter(model, (1, *size, 3), description=model_key),
        scene(size),
        warmup,
        runs,
    )
    results.set(latency_key(model_key, CHECKPOINT, size), precision=policy or "float32", **values)


# --------------------------------------------------------------------------- export


def _export_formats() -> tuple[str, ...]:
    """What the export section writes: every format of :data:`EXPORTED` export.py knows."""
    from core.deploy import exporter

    return tuple(fmt for fmt in EXPORTED if fmt in exporter.FORMATS)


def _export(model, directory: str, size: Size) -> tuple[dict, dict[str, str]]:
    """Exports every format; on an error retries format by format.

    Returns:
      ``(summary, failures)``: the merged export summaries and ``{format: reason}``.
    """
    from core.deploy import exporter

    images = [scene(size, index) for index in range(CALIBRATION_IMAGES)]
    formats = _export_formats()

    def calibration():
        return iter(images)

    def export(selected):
        return exporter.export_model(
            model, directory, (1, *size, 3), formats=selected, calibration_images=calibration
        ).summary

    started = time.perf_counter()
    try:
        summary = export(formats)
        summary["seconds_all_formats"] = round(time.perf_counter() - started, 1)
        return summary, {}
    except Exception:  # find out which format fails
        pass
    merged: dict = {"files": {}}
    failures = {}
    for fmt in formats:
        try:
            summary = export((fmt,))
        except Exception as error:
            failures[fmt] = error_reason(error)
            continue
        files = {**merged["files"], **summary.get("files", {})}
        merged.update(summary)
        merged["files"] = files
    merged["seconds_all_formats"] = round(time.perf_counter() - started, 1)
    return merged, failures


def _exported_file(directory: str, name: str) -> str:
    """The path of an exported file; a SavedModel may sit in a numbered version folder."""
    path = os.path.join(directory, name)
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "saved_model.pb")):
        versions = sorted((n for n in os.listdir(path) if n.isdigit()), key=int)
        if versions:
            return os.path.join(path, versions[-1])
    return path


def _segmenter_factory(fmt: str, directory: str, num_threads: int):
    """A function loading the segmenter of one :data:`RUNTIMES` row from the export."""
    from core.deploy import exporter, onnx_export, onnx_segmenters, segmenters

    onnx_path = os.path.join(directory, onnx_export.ONNX_NAME)
    if fmt == "onnxruntime":
        return lambda: onnx_segmenters.OnnxRuntimeSegmenter(onnx_path, num_threads=num_threads)
    if fmt in ("openvino", "openvino_bf16"):
        precision = "bf16" if fmt == "openvino_bf16" else "f32"
        return lambda: onnx_segmenters.OpenVINOSegmenter(
            onnx_path, num_threads=num_threads, precision=precision
        )
    paths = {
        "frozen_graph": (segmenters.FrozenGraphSegmenter, exporter.FROZEN_GRAPH_NAME),
        "saved_model": (segmenters.SavedModelSegmenter, exporter.SAVED_MODEL_DIR),
        "tflite_float32": (segmenters.TFLiteSegmenter, exporter.TFLITE_FLOAT_NAME),
        "tflite_int8": (segmenters.TFLiteSegmenter, exporter.TFLITE_INT8_NAME),
    }
    cls, name = paths[fmt]
    path = _exported_file(directory, name)
    if cls is segmenters.TFLiteSegmenter:
        return lambda: cls(path, num_threads=num_threads)
    return lambda: cls(path)


def _load_rows(makers: dict, batch: np.ndarray, results: Results, keys: dict) -> dict:
    """Loads each runtime and times its first call; a failure is recorded on its cell."""
    loaded = {}
    for fmt, make in makers.items():
        try:
            started = time.perf_counter()
            segmenter = make()
            load_s = time.perf_counter() - started
            started = time.perf_counter()
            segmenter.run(batch)
            loaded[fmt] = (segmenter, load_s, time.perf_counter() - started)
        except Exception as error:  # a missing runtime or a refused model: the others go on
            if fmt in keys:
                results.fail(keys[fmt], error_reason(error))
            logging.warning("%s not timed: %s", fmt, error_reason(error))
    return loaded


def measure_exports(
    results: Results,
    store: ModelStore,
    model_key: str,
    size: Size,
    warmup: int,
    runs: int,
) -> None:
    """Exports the model at one input size and times every format and runtime side by side.

    The checkpoint model and each runtime of :data:`RUNTIMES` are loaded, then timed
    round-robin (:mod:`benchmarks.interleaved`) so that machine noise hits all alike; each row
    is also reported as its median over the fastest median (``runtimes/*`` cell). Exports are
    always float32 models (the int8 TFLite one quantized from them), whatever
    ``--mixed_precision`` says.
    """
    from core.analysis import latency
    from core.deploy.segmenters import ModelSegmenter

    model = store.model(model_key)
    directory = os.path.join(store.work_dir, "exports", model_key, size_label(size))
    summary, failures = _export(model, directory, size)
    files = summary.get("files", {})
    results.set(
        export_key(model_key, size),
        seconds=summary.get("seconds_all_formats"),
        file_bytes={fmt: files.get(name) for fmt, name in FILE_NAMES.items()},
        int8=summary.get("int8"),
        failed_formats=failures,
    )
    threads = latency.cpu_threads()
    batch = scene(size)
    keys = {fmt: latency_key(model_key, fmt, size) for fmt in FORMATS}
    makers = {CHECKPOINT: lambda: ModelSegmenter(model, (1, *size, 3), description=model_key)}
    exported = set(_export_formats())
    for fmt in FORMATS:
        source = "onnx" if fmt in ONNX_RUNTIMES else fmt
        if source in failures:
            results.fail(keys[fmt], f"export failed: {failures[source]}")
        elif source not in exported:
            results.skip(keys[fmt], f"export.py has no {source} format here")
        else:
            makers[fmt] = _segmenter_factory(fmt, directory, threads)
    loaded = _load_rows(makers, batch, results, keys)
    if not loaded:
        results.fail(runtimes_key(model_key, size), "no runtime could be loaded")
        return
    seconds = interleaved.time_interleaved(
        {fmt: (lambda s=segmenter: s.run(batch)) for fmt, (segmenter, _, _) in loaded.items()},
        max(warmup - 1, 0),  # the first call above was one warm-up
        runs,
    )
    stats = {fmt: latency.summarize(values, warmup) for fmt, values in seconds.items()}
    ratios = interleaved.ratios_to_fastest({fmt: s.median_ms for fmt, s in stats.items()})
    rows = {}
    for fmt, (_, load_s, first_call_s) in loaded.items():
        values = stats[fmt].as_dict()
        values.update(
            precision=PRECISIONS.get(fmt, "float32"),
            load_s=round(load_s, 3),
            first_call_s=round(first_call_s, 3),
            fps=1000.0 / stats[fmt].median_ms,
            ratio_to_fastest=ratios[fmt],
        )
        rows[fmt] = values
        if fmt in keys:  # the checkpoint's own cell belongs to the latency section
            results.set(keys[fmt], **values)
    results.set(
        runtimes_key(model_key, size),
        rows=rows,
        fastest=min(ratios, key=ratios.get),
        not_timed=[fmt for fmt in makers if fmt not in loaded],
        order="round-robin, rotated each round",
        runs=runs,
        warmup=warmup,
        threads=threads,
    )
