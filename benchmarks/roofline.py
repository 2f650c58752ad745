"""Roofline: each model's achieved GFLOP/s against the machine's own float32 matmul peak.

Absolute latencies cannot be compared across machines (an AVX2 EPYC, an AVX-512 Xeon, a GPU);
the share of the machine's own peak can. The peak is measured, not looked up: a float32
``n x n`` matmul in TensorFlow on the thread count the latency runs use, timed ``runs`` times at
each of a few sizes; the best run of the fastest size is the peak (``peak_gflops_per_s``), the
median of that size is kept as ``gflops_per_s`` (the reference of ``percent_of_matmul``, as
before). Each model's FLOPs (``core.analysis.flops``, the ``params`` section) divided by the
median latency of every format the run timed (checkpoint model and exported files) gives the
rate it achieves.

The machine table names the CPU's vector extensions (AVX2, AVX-512 and its VNNI/BF16 parts, AMX)
read from ``/proc/cpuinfo``: they set what a peak can be and which int8 / bfloat16 paths oneDNN
and XNNPACK take.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from benchmarks import inference_bench as ib
from benchmarks.plan import Results

# /proc/cpuinfo flag -> name in the tables, in the order they are listed.
VECTOR_EXTENSIONS = (
    ("avx2", "AVX2"),
    ("fma", "FMA"),
    ("avx_vnni", "AVX-VNNI"),
    ("avx512f", "AVX-512F"),
    ("avx512bw", "AVX-512BW"),
    ("avx512_vnni", "AVX-512 VNNI"),
    ("avx512_bf16", "AVX-512 BF16"),
    ("avx512_fp16", "AVX-512 FP16"),
    ("amx_tile", "AMX"),
    ("amx_bf16", "AMX-BF16"),
    ("amx_int8", "AMX-INT8"),
    ("asimd", "NEON"),
    ("sve", "SVE"),
)
ROOFLINE_FORMATS = (ib.CHECKPOINT, *ib.FORMATS)


def cpu_flags(cpuinfo_text: str) -> frozenset[str]:
    """The feature flags of the first processor in ``/proc/cpuinfo`` text.

    x86 lists them on a ``flags`` line, ARM on a ``Features`` line; every core lists the same.
    """
    for line in cpuinfo_text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def vector_extensions(flags: Iterable[str]) -> list[str]:
    """Table names of the vector extensions among ``flags``, e.g. ``["AVX2", "FMA", "AVX-512F"]``."""
    present = set(flags)
    return [name for flag, name in VECTOR_EXTENSIONS if flag in present]


def read_vector_extensions(path: str = "/proc/cpuinfo") -> list[str] | None:
    """The vector extensions of this machine's CPU; None where ``path`` cannot be read."""
    try:
        with open(path, encoding="utf-8") as stream:
            return vector_extensions(cpu_flags(stream.read()))
    except OSError:
        return None


def matmul_flops(n: int) -> int:
    """FLOPs of an ``n x n`` by ``n x n`` matmul: ``n^3`` multiply-adds, 2 FLOPs each."""
    return 2 * n**3


def gflops_per_s(flops: float, milliseconds: float) -> float:
    """The rate of ``flops`` done in ``milliseconds``, in GFLOP/s."""
    if milliseconds <= 0:
        raise ValueError(f"milliseconds must be positive, got {milliseconds}")
    return flops / (milliseconds / 1000.0) / 1e9


def percent_of(rate: float, reference: float) -> float:
    """``rate`` as a percentage of ``reference``."""
    return 100.0 * rate / reference


def matmul_sizes(quick: bool) -> tuple[int, ...]:
    """The square matmul sizes tried; the fastest sets the reference rate."""
    import tensorflow as tf

    if quick:
        return (256,)
    return (4096, 8192) if tf.config.list_logical_devices("GPU") else (1024, 2048, 4096)


def measure_matmul(results: Results, sizes: Sequence[int], warmup: int, runs: int) -> None:
    """Fills ``roofline/matmul``: the float32 matmul rate (median) and peak (best run).

    Every size is timed ``runs`` times on the same threads as the latency cells; the size with
    the fastest best run sets the peak, and its median the ``gflops_per_s`` reference.
    """
    import tensorflow as tf

    from core.analysis import latency

    best = None
    by_size, peak_by_size = {}, {}
    for n in sizes:
        a = tf.random.stateless_uniform((n, n), seed=(1, 2), dtype=tf.float32)
        b = tf.random.stateless_uniform((n, n), seed=(3, 4), dtype=tf.float32)
        # The sum keeps the fetched result small; it adds n^2 FLOPs to 2 n^3 (< 0.1%).
        product = tf.function(lambda a=a, b=b: tf.reduce_sum(tf.matmul(a, b)))
        stats = latency.measure(lambda f=product: f().numpy(), warmup=max(warmup, 1), runs=runs)
        by_size[str(n)] = gflops_per_s(matmul_flops(n), stats.median_ms)
        peak_by_size[str(n)] = gflops_per_s(matmul_flops(n), stats.min_ms)
        if best is None or peak_by_size[str(n)] > peak_by_size[str(best[0])]:
            best = (n, stats)
    n, stats = best
    results.set(
        ib.MATMUL_KEY,
        n=n,
        dtype="float32",
        # On recent NVIDIA GPUs TensorFlow runs float32 matmuls in TF32 unless this is off.
        tensor_float_32=bool(tf.config.experimental.tensor_float_32_execution_enabled())
        and bool(tf.config.list_logical_devices("GPU")),
        flops=matmul_flops(n),
        gflops_per_s=by_size[str(n)],
        peak_gflops_per_s=peak_by_size[str(n)],
        by_size=by_size,
        peak_by_size=peak_by_size,
        **stats.as_dict(),
    )


def _rates(flops: float, median_ms: float, matmul: dict | None) -> dict:
    rate = gflops_per_s(flops, median_ms)
    values = {"median_ms": median_ms, "gflops_per_s": rate}
    if matmul:
        values["percent_of_matmul"] = percent_of(rate, matmul["gflops_per_s"])
        if "peak_gflops_per_s" in matmul:
            values["percent_of_peak"] = percent_of(rate, matmul["peak_gflops_per_s"])
    return values


def derive_roofline(results: Results, model_keys: Sequence[str], sizes: Sequence[ib.Size]) -> None:
    """Fills ``roofline/<model>/<size>``: FLOPs over the median latency of every timed format.

    The cell's top-level rate is the checkpoint model's; ``by_format`` holds every format that
    has a latency cell (the int8 TFLite model does integer work: its share of the float32
    peak is a speed figure, not an efficiency).
    """
    matmul = results.get(ib.MATMUL_KEY)
    for model_key in model_keys:
        params = results.get(ib.params_key(model_key))
        for size in sizes:
            key = ib.roofline_key(model_key, size)
            label = ib.size_label(size)
            timing = results.get(ib.latency_key(model_key, ib.CHECKPOINT, size))
            if not params or not timing or label not in params["flops"]:
                missing = "FLOPs (params section)" if not params else "latency"
                results.skip(key, f"no {missing} measured for this cell")
                continue
            flops = params["flops"][label]
            by_format = {}
            for fmt in ROOFLINE_FORMATS:
                cell = results.get(ib.latency_key(model_key, fmt, size))
                if cell:
                    by_format[fmt] = _rates(flops, cell["median_ms"], matmul)
            results.set(key, flops=flops, by_format=by_format, **by_format[ib.CHECKPOINT])


def roofline_table(document: dict) -> list[str]:
    """The matmul peak and each model's and format's achieved rate against it."""
    from benchmarks.markdown import cells_under, status_text, table

    matmul = document["cells"].get(ib.MATMUL_KEY)
    cells = {k: c for k, c in cells_under(document, "roofline/").items() if k != ib.MATMUL_KEY}
    if not matmul and not cells:
        return []
    lines = ["## Roofline", ""]
    status = status_text(matmul) if matmul else "not measured"
    extensions = document.get("machine", {}).get("vector_extensions")
    if status:
        lines += [f"float32 matmul rate: {status}", ""]
    else:
        peak = matmul.get("peak_gflops_per_s", matmul["gflops_per_s"])
        n = matmul["n"]
        lines += [
            f"The machine's float32 matmul peak: **{peak:,.1f} GFLOP/s** (best of "
            f"{matmul['runs']} runs of {n}x{n} by {n}x{n}, 2n³ FLOPs, "
            f"{matmul['min_ms']:.2f} ms; median {matmul['gflops_per_s']:,.1f} GFLOP/s; the "
            f"fastest of n = {', '.join(matmul.get('by_size', {}))}; "
            f"{matmul.get('threads', '?')} threads, as the latency runs"
            + (f"; {', '.join(extensions)}" if extensions else "")
            + ("; TF32 tensor cores enabled" if matmul.get("tensor_float_32") else "")
            + "). Each model's FLOPs divided by the median latency of each timed format gives "
            "the rate it achieves. Below 100%, the gap is time outside dense compute "
            "(memory-bound ops, resizes, small or depthwise convs, framework overhead); the int8 "
            "TFLite model does integer work, so its share is a speed figure only.",
            "",
        ]
    rows = []
    for key, cell in cells.items():
        _, model, size = key.split("/")
        status = status_text(cell)
        if status:
            rows.append([model, "", size, status, "", "", ""])
            continue
        by_format = cell.get("by_format") or {ib.CHECKPOINT: cell}
        for fmt, values in by_format.items():
            percent = values.get("percent_of_peak", values.get("percent_of_matmul"))
            rows.append(
                [
                    model,
                    fmt,
                    size,
                    f"{cell['flops'] / 1e9:,.2f}",
                    f"{values['median_ms']:,.1f}",
                    f"{values['gflops_per_s']:,.1f}",
                    "—" if percent is None else f"{percent:.0f}%",
                ]
            )
    if rows:
        header = ["Model", "Format", "Input", "GFLOPs", "latency ms", "GFLOP/s", "% of peak"]
        lines += [*table(header, rows), ""]
    return lines
