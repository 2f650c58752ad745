"""The report's inference tables: models (parameters, FLOPs), latency, exports, roofline."""

from __future__ import annotations

from benchmarks.markdown import cells_under, escape, mib, ms, status_text, table
from benchmarks.plan import OK

FORMAT_TITLES = {
    "checkpoint": "checkpoint model",
    "frozen_graph": "frozen graph (.pb)",
    "saved_model": "SavedModel",
    "tflite_float32": "TFLite float32",
    "tflite_int8": "TFLite int8",
}


def models_table(document: dict) -> list[str]:
    """Parameters and FLOPs of each model (``params/*`` cells)."""
    cells = cells_under(document, "params/")
    if not cells:
        return []
    sizes = document["settings"]["sizes"]
    header = ["Model", "Config", "Parameters", *[f"GFLOPs at {size}" for size in sizes]]
    rows = []
    for key, cell in cells.items():
        model = key.split("/", 1)[1]
        status = status_text(cell)
        if status:
            rows.append([model, "", status, *["" for _ in sizes]])
            continue
        config = cell["config"]
        if cell.get("config_override"):
            config += f" + `{cell['config_override']}`"
        if cell.get("compression"):
            info = cell["compression"]
            config += (
                f" (factor {info['factor']}: filter_scale {info['filter_scale']}"
                f", {info['layer_widths_entries']} layer_widths entries)"
            )
        flops = [
            f"{cell['flops'][size] / 1e9:,.2f}" if size in cell["flops"] else "—" for size in sizes
        ]
        rows.append(
            [
                cell["title"],
                escape(config),
                f"{cell['params'] / 1e6:.2f}M ({cell['params']:,})",
                *flops,
            ]
        )
    return [
        "## Models: parameters and FLOPs",
        "",
        "Parameters in the model zoo's convention (`model.count_parameters()`: no batch norm, no "
        "auxiliary heads). FLOPs of one batch-1 inference pass (preprocess, network, resize, "
        "argmax) in tfprof's convention (`core.analysis.flops`: a multiply-add is 2 FLOPs), in billions "
        '(the zoo\'s "B"). Weights are random: speed does not depend on them.',
        "",
        *table(header, rows),
        "",
    ]


def latency_table(document: dict) -> list[str]:
    """Latency per model and format, one column pair per size (``latency/*``)."""
    cells = cells_under(document, "latency/")
    if not cells:
        return []
    settings = document["settings"]
    sizes = settings["sizes"]
    by_row: dict[tuple[str, str], dict[str, dict]] = {}
    for key, cell in cells.items():
        _, model, fmt, size = key.split("/")
        by_row.setdefault((model, fmt), {})[size] = cell
    header = ["Model", "Format", "Precision"]
    for size in sizes:
        header += [f"{size} ms: median (IQR)", f"{size} fps"]
    rows = []
    runs = set()
    for (model, fmt), per_size in by_row.items():
        precision = next((c.get("precision") for c in per_size.values() if c["status"] == OK), "")
        row = [model, FORMAT_TITLES.get(fmt, fmt), precision]
        for size in sizes:
            cell = per_size.get(size)
            status = status_text(cell)
            if status:
                row += [status, ""]
                continue
            runs.add((cell["warmup"], cell["runs"]))
            row += [ms(cell), f"{cell['fps']:.2f}"]
        rows.append(row)
    runs_text = ", ".join(f"{w} warm-up + {r} timed" for w, r in sorted(runs)) or "none"
    return [
        "## Inference latency (batch 1)",
        "",
        f"Wall time of one call of the deploy graph (uint8 image in, class ids out), median and "
        f"interquartile range in milliseconds ({runs_text} runs; {document['machine']['tf_threads']}"
        " threads; TFLite with the same number of threads). The checkpoint model is the deploy "
        "graph traced around the built model, the formats are the files `export.py` writes, "
        "loaded by `inference.py`'s segmenters. " + settings["coverage_note"],
        "",
        *table(header, rows),
        "",
    ]


def exports_table(document: dict) -> list[str]:
    """Export time, file sizes and int8 agreement per model and size (``export/*``)."""
    cells = cells_under(document, "export/")
    if not cells:
        return []
    header = [
        "Model", "Input", "Export time (s)", "frozen graph MiB", "SavedModel MiB",
        "TFLite float32 MiB", "TFLite int8 MiB", "int8 pixel agreement", "int8 ops left in float",
    ]  # fmt: skip
    rows = []
    for key, cell in cells.items():
        _, model, size = key.split("/")
        status = status_text(cell)
        if status:
            rows.append([model, size, status, *[""] * 6])
            continue
        sizes = cell["file_bytes"]
        int8 = cell.get("int8") or {}
        agreement = int8.get("pixel_agreement_with_float")
        failed = cell.get("failed_formats") or {}
        rows.append(
            [
                model,
                size,
                cell["seconds"],
                *[
                    "failed" if fmt in failed else mib(sizes.get(fmt))
                    for fmt in ("frozen_graph", "saved_model", "tflite_float32", "tflite_int8")
                ],
                "—"
                if agreement is None
                else f"{100 * agreement:.2f}% ({int8.get('images')} images)",
                ", ".join(int8.get("float_ops", [])) or "none",
            ]
        )
    return [
        "## Exported formats",
        "",
        "`core.deploy.exporter.export_model` (what `export.py` runs) at each input size, batch 1; the "
        "export time covers all four formats (int8 calibration on 2 synthetic scenes "
        "included). The int8 agreement is the share of pixels whose class equals the float "
        "graph's (random weights: indicative only).",
        "",
        *table(header, rows),
        "",
    ]


def roofline_table(document: dict) -> list[str]:
    """The matmul rate and each model's achieved rate against it (``roofline/*``)."""
    matmul = document["cells"].get("roofline/matmul")
    cells = {k: c for k, c in cells_under(document, "roofline/").items() if k != "roofline/matmul"}
    if not matmul and not cells:
        return []
    lines = ["## Roofline", ""]
    status = status_text(matmul) if matmul else "not measured"
    if status:
        lines += [f"float32 matmul rate: {status}", ""]
    else:
        lines += [
            f"The machine's float32 matmul rate: {matmul['gflops_per_s']:,.1f} GFLOP/s "
            f"({matmul['n']}x{matmul['n']} by {matmul['n']}x{matmul['n']}, 2n³ FLOPs, median "
            f"{matmul['median_ms']:.2f} ms over {matmul['runs']} runs; the fastest of n = "
            f"{', '.join(matmul.get('by_size', {}))}"
            + ("; TF32 tensor cores enabled" if matmul.get("tensor_float_32") else "")
            + "). Each model's FLOPs divided by its checkpoint-model latency gives the rate it "
            "achieves. Below 100%, the gap is time outside dense compute (memory-bound ops, "
            "resizes, small or depthwise convs, framework overhead); above 100%, the model's "
            "convolutions (oneDNN) outrun TensorFlow's MatMul kernel: the matmul rate is a "
            "measured reference, not the hardware's peak.",
            "",
        ]
    rows = []
    for key, cell in cells.items():
        _, model, size = key.split("/")
        status = status_text(cell)
        if status:
            rows.append([model, size, status, "", "", ""])
            continue
        percent = cell.get("percent_of_matmul")
        rows.append(
            [
                model,
                size,
                f"{cell['flops'] / 1e9:,.2f}",
                f"{cell['median_ms']:,.1f}",
                f"{cell['gflops_per_s']:,.1f}",
                "—" if percent is None else f"{percent:.0f}%",
            ]
        )
    if rows:
        header = ["Model", "Input", "GFLOPs", "latency ms", "achieved GFLOP/s", "% of matmul"]
        lines += [*table(header, rows), ""]
    return lines
