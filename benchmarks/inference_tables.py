"""The report's inference tables: models (parameters, FLOPs), latency, exports."""

from __future__ import annotations

from benchmarks.markdown import cells_under, escape, mib, ms, status_text, table
from benchmarks.plan import OK

FORMAT_TITLES = {
    "checkpoint": "checkpoint model",
    "frozen_graph": "frozen graph (.pb)",
    "saved_model": "SavedModel",
    "tflite_float32": "TFLite float32",
    "tflite_int8": "TFLite int8",
    "onnxruntime": "ONNX Runtime (.onnx)",
    "openvino": "OpenVINO (.onnx), f32",
    "openvino_bf16": "OpenVINO (.onnx), bf16",
}
EXPORT_COLUMNS = ("frozen_graph", "saved_model", "tflite_float32", "tflite_int8", "onnx")


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
        "TFLite float32 MiB", "TFLite int8 MiB", "ONNX MiB", "int8 pixel agreement",
        "int8 ops left in float",
    ]  # fmt: skip
    rows = []
    for key, cell in cells.items():
        _, model, size = key.split("/")
        status = status_text(cell)
        if status:
            rows.append([model, size, status, *[""] * 7])
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
                *["failed" if fmt in failed else mib(sizes.get(fmt)) for fmt in EXPORT_COLUMNS],
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
        "export time covers all five formats (int8 calibration on 2 synthetic scenes "
        "included). The int8 agreement is the share of pixels whose class equals the float "
        "graph's (random weights: indicative only).",
        "",
        *table(header, rows),
        "",
    ]


def runtimes_table(document: dict) -> list[str]:
    """Every format and runtime side by side, as ratios to the fastest (``runtimes/*``)."""
    cells = cells_under(document, "runtimes/")
    if not cells:
        return []
    machine = document["machine"]
    extensions = ", ".join(machine.get("vector_extensions") or ["unknown"])
    load = machine.get("load_average_start")
    lines = [
        "## Formats and runtimes side by side (batch 1)",
        "",
        "The checkpoint model and every exported format and runtime of one model, loaded together "
        "and timed round-robin: each round calls each of them once, in an order rotated every "
        "round, so a burst of load from another process hits all of them alike. **×fastest** is "
        "a row's median over the fastest row's median; compare rows within one model and size, "
        "not across runs. Same deploy graph everywhere (uint8 image in, class ids out), "
        f"{machine['tf_threads']} threads for every runtime. CPU: {escape(machine['cpu_model'])}; "
        f"vector extensions: {extensions}"
        + (f"; load average at the start {load[0]}" if load else "")
        + ".",
        "",
    ]
    header = ["Model", "Input", "Format / runtime", "Precision", "ms: median (IQR)", "×fastest"]
    rows = []
    for key, cell in cells.items():
        _, model, size = key.split("/")
        status = status_text(cell)
        if status:
            rows.append([model, size, status, "", "", ""])
            continue
        ordered = sorted(cell["rows"].items(), key=lambda item: item[1]["ratio_to_fastest"])
        for fmt, row in ordered:
            ratio = (
                f"**{row['ratio_to_fastest']:.2f}**"
                if fmt == cell["fastest"]
                else (f"{row['ratio_to_fastest']:.2f}")
            )
            title = FORMAT_TITLES.get(fmt, fmt)
            rows.append([model, size, title, row["precision"], ms(row), ratio])
        for fmt in cell.get("not_timed", []):
            reason = status_text(document["cells"].get(f"latency/{model}/{fmt}/{size}"))
            rows.append([model, size, FORMAT_TITLES.get(fmt, fmt), "", reason or "not timed", ""])
    return [*lines, *table(header, rows), ""]
