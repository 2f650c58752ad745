"""Parameters, FLOPs, inference latency (checkpoint model and exported formats), roofline.

Every latency is ``core.analysis.latency.measure`` of one batch-1 call of the deploy graph (uint8 image
in, class ids out: preprocessing, network, resize to the input size and argmax), the same graph
for the checkpoint model (``core.deploy.segmenters.ModelSegmenter``) and for each exported format
(``FrozenGraphSegmenter``, ``SavedModelSegmenter``, ``TFLiteSegmenter``). The input is a
synthetic street scene (``dataset_tools.synthetic_scene``), so the int8 model is calibrated on
images of the kind it runs on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import numpy as np

from benchmarks.models import ModelStore, config_override, precision_policy
from benchmarks.plan import Results, error_reason

Size = tuple[int, int]

# The formats export.py writes, and the segmenter that runs each.
FORMATS = ("frozen_graph", "saved_model", "tflite_float32", "tflite_int8")
CHECKPOINT = "checkpoint"
CALIBRATION_IMAGES = 2


def size_label(size: Size) -> str:
    return f"{size[0]}x{size[1]}"


def params_key(model: str) -> str:
    return f"params/{model}"


def latency_key(model: str, fmt: str, size: Size) -> str:
    return f"latency/{model}/{fmt}/{size_label(size)}"


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


def _export(model, directory: str, size: Size) -> tuple[dict, dict[str, str]]:
    """Exports every format; on an error retries format by format.

    Returns:
      ``(summary, failures)``: the merged export summaries and ``{format: reason}``.
    """
    from core.deploy import exporter

    images = [scene(size, index) for index in range(CALIBRATION_IMAGES)]

    def calibration():
        return iter(images)

    def export(formats):
        return exporter.export_model(
            model, directory, (1, *size, 3), formats=formats, calibration_images=calibration
        ).summary

    started = time.perf_counter()
    try:
        summary = export(FORMATS)
        summary["seconds_all_formats"] = round(time.perf_counter() - started, 1)
        return summary, {}
    except Exception:  # find out which format fails
        pass
    merged: dict = {"files": {}}
    failures = {}
    for fmt in FORMATS:
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


def _segmenter_factory(fmt: str, directory: str, num_threads: int):
    from core.deploy import exporter, segmenters

    paths = {
        "frozen_graph": (segmenters.FrozenGraphSegmenter, exporter.FROZEN_GRAPH_NAME),
        "saved_model": (segmenters.SavedModelSegmenter, exporter.SAVED_MODEL_DIR),
        "tflite_float32": (segmenters.TFLiteSegmenter, exporter.TFLITE_FLOAT_NAME),
        "tflite_int8": (segmenters.TFLiteSegmenter, exporter.TFLITE_INT8_NAME),
    }
    cls, name = paths[fmt]
    path = os.path.join(directory, name)
    if cls is segmenters.TFLiteSegmenter:
        return lambda: cls(path, num_threads=num_threads)
    return lambda: cls(path)


def measure_exports(
    results: Results,
    store: ModelStore,
    model_key: str,
    size: Size,
    warmup: int,
    runs: int,
) -> None:
    """Exports the model at one input size (export.py's library call) and times each format.

    Exports are always float32 models (the int8 TFLite one quantized from them), whatever
    ``--mixed_precision`` says.
    """
    from core.analysis import latency

    model = store.model(model_key)
    directory = os.path.join(store.work_dir, "exports", model_key, size_label(size))
    summary, failures = _export(model, directory, size)
    files = summary.get("files", {})
    results.set(
        export_key(model_key, size),
        seconds=summary.get("seconds_all_formats"),
        file_bytes={
            "frozen_graph": files.get("frozen_inference_graph.pb"),
            "saved_model": files.get("saved_model"),
            "tflite_float32": files.get("model_float32.tflite"),
            "tflite_int8": files.get("model_int8.tflite"),
        },
        int8=summary.get("int8"),
        failed_formats=failures,
    )
    threads = latency.cpu_threads()
    batch = scene(size)
    for fmt in FORMATS:
        key = latency_key(model_key, fmt, size)
        if fmt in failures:
            results.fail(key, f"export failed: {failures[fmt]}")
            continue
        try:
            values = _time_segmenter(
                _segmenter_factory(fmt, directory, threads), batch, warmup, runs
            )
        except Exception as error:
            results.fail(key, error_reason(error))
            continue
        precision = "int8 (float32 interface)" if fmt == "tflite_int8" else "float32"
        results.set(key, precision=precision, **values)


# --------------------------------------------------------------------------- roofline


def matmul_sizes(quick: bool) -> tuple[int, ...]:
    """The square matmul sizes tried; the fastest sets the reference rate."""
    import tensorflow as tf

    if quick:
        return (256,)
    return (4096, 8192) if tf.config.list_logical_devices("GPU") else (1024, 2048, 4096)


def measure_matmul(results: Results, sizes: Sequence[int], warmup: int, runs: int) -> None:
    """The machine's float32 matmul rate: ``2 n^3`` FLOPs over the median time of ``n x n``.

    Several sizes are timed and the fastest rate is the reference (a kernel's efficiency
    depends on the size and the cache); every size's rate is kept in ``by_size``.
    """
    import tensorflow as tf

    from core.analysis import latency

    best = None
    by_size = {}
    for n in sizes:
        a = tf.random.stateless_uniform((n, n), seed=(1, 2), dtype=tf.float32)
        b = tf.random.stateless_uniform((n, n), seed=(3, 4), dtype=tf.float32)
        # The sum makes the result small to fetch; it adds n^2 FLOPs to 2 n^3 (< 0.1%).
        product = tf.function(lambda a=a, b=b: tf.reduce_sum(tf.matmul(a, b)))
        stats = latency.measure(lambda f=product: f().numpy(), warmup=warmup, runs=runs)
        rate = 2 * n**3 / (stats.median_ms / 1000.0) / 1e9
        by_size[str(n)] = rate
        if best is None or rate > best[1]:
            best = (n, rate, stats)
    n, rate, stats = best
    results.set(
        MATMUL_KEY,
        n=n,
        dtype="float32",
        # On recent NVIDIA GPUs TensorFlow runs float32 matmuls in TF32 unless this is off.
        tensor_float_32=bool(tf.config.experimental.tensor_float_32_execution_enabled())
        and bool(tf.config.list_logical_devices("GPU")),
        flops=2 * n**3,
        gflops_per_s=rate,
        by_size=by_size,
        **stats.as_dict(),
    )


def derive_roofline(results: Results, model_keys: Sequence[str], sizes: Sequence[Size]) -> None:
    """Each model's FLOPs over its checkpoint-model latency, against the matmul rate."""
    matmul = results.get(MATMUL_KEY)
    for model_key in model_keys:
        params = results.get(params_key(model_key))
        for size in sizes:
            key = roofline_key(model_key, size)
            timing = results.get(latency_key(model_key, CHECKPOINT, size))
            if not params or not timing or size_label(size) not in params["flops"]:
                missing = "FLOPs (params section)" if not params else "latency"
                results.skip(key, f"no {missing} measured for this cell")
                continue
            flops = params["flops"][size_label(size)]
            rate = flops / (timing["median_ms"] / 1000.0) / 1e9
            values = {"flops": flops, "median_ms": timing["median_ms"], "gflops_per_s": rate}
            if matmul:
                values["percent_of_matmul"] = 100.0 * rate / matmul["gflops_per_s"]
            results.set(key, **values)
