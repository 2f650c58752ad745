"""The report's training tables: training step, training memory, input pipeline."""

from __future__ import annotations

from benchmarks.markdown import cells_under, escape, gib, mib, status_text, table


def _train_row(cell: dict) -> list[str]:
    step = cell["step"]
    return [
        f"{cell['batch_size']}",
        f"{cell['crop'][0]}x{cell['crop'][1]}",
        cell["precision"],
        f"{step['median_ms'] / 1000:.3f} ({step['p25_ms'] / 1000:.3f}–{step['p75_ms'] / 1000:.3f})",
        f"{cell['images_per_s']:.2f}",
        f"{cell['first_step_s']:.1f}",
    ]


def training_table(document: dict) -> list[str]:
    """Seconds per step and images/s of each training case (``train/*``)."""
    cells = cells_under(document, "train/")
    if not cells:
        return []
    header = ["Case", "Batch", "Crop", "Precision", "s/step: median (IQR)", "images/s",
              "first step (s)"]  # fmt: skip
    rows = []
    steps = set()
    for key, cell in cells.items():
        status = status_text(cell)
        if status:
            rows.append([key.split("/", 1)[1], status, *[""] * 5])
            continue
        steps.add((cell["warmup"], cell["step"]["runs"]))
        rows.append([escape(cell["title"]), *_train_row(cell)])
    steps_text = ", ".join(f"{w} warm-up + {r} timed" for w, r in sorted(steps)) or "no"
    return [
        "## Training step",
        "",
        f"The compiled training step of `core.training.train_step` (forward, the config's losses with the "
        f"auxiliary ones, backward, optimizer update) on a fixed in-memory batch, so the input "
        f"pipeline is not included ({steps_text} steps; the first step traces the function). "
        "Each case runs in its own process.",
        "",
        *table(header, rows),
        "",
    ]


def _script_label(key: str) -> str:
    script = key.split("/", 1)[1]
    if script.endswith("_sqrt"):
        return f"`{script[: -len('_sqrt')]}` (sqrt plan)"
    return f"`{script}`" + (" (measured plan)" if script == "train_mem_saving.py" else "")


def _difference(value: float | None, base: float | None) -> str:
    return "" if not value or not base else f"{value / base:.2f}x"


def memory_table(document: dict) -> list[str]:
    """Step memory of train.py vs train_mem_saving.py (``memory/*``) and batches under a cap."""
    cells = cells_under(document, "memory/")
    lines = []
    if cells:
        lines += _step_memory_lines(cells)
    caps = cells_under(document, "cap/")
    if caps:
        lines += _cap_lines(caps)
    return lines


def _step_memory_lines(cells: dict[str, dict]) -> list[str]:
    header = ["Script", "Batch", "Crop", "tensors: peak − before MiB", "vs train.py",
              "RSS: first step peak − before MiB", "s/step (median)", "vs train.py"]  # fmt: skip
    rows = []
    plain = cells.get("memory/train.py", {})
    base_tensors = _tensor_increment(plain) if plain.get("status") == "ok" else None
    base_time = plain.get("s_per_step") if plain.get("status") == "ok" else None
    for key, cell in cells.items():
        status = status_text(cell)
        if status:
            rows.append([_script_label(key), status, *[""] * 6])
            continue
        before = cell.get("rss_before_steps_bytes")
        increment = cell["peak_rss_bytes"] - before if before is not None else None
        tensors = _tensor_increment(cell)
        rows.append(
            [
                _script_label(key),
                cell["batch_size"],
                f"{cell['crop'][0]}x{cell['crop'][1]}",
                mib(tensors),
                _difference(tensors, base_tensors),
                mib(increment),
                f"{cell['s_per_step']:.3f}",
                _difference(cell["s_per_step"], base_time),
            ]
        )
    return [
        "## Training memory: train.py vs train_mem_saving.py",
        "",
        "The same training step without and with gradient checkpointing (`train_mem_saving.py`'s "
        "`--checkpoint_nodes=measured` plan, and its default sqrt(n) plan), each in a fresh process. "
        '"tensors: peak − before" is the peak of the live tensors of TensorFlow\'s CPU allocator '
        "(`tf.config.experimental.get_memory_info`, or the GPU's) over the timed steps, less what "
        "was live before them: the step's own memory. The RSS column is the process's high-water "
        "mark over the first step less the RSS before it; it also counts tracing, graph "
        "optimization, oneDNN primitives and what malloc keeps cached, so it barely moves with "
        "recomputation.",
        "",
        *table(header, rows),
        "",
    ]


def _tensor_increment(cell: dict) -> int | None:
    if cell.get("gpu_peak_bytes") is not None:
        return cell["gpu_peak_bytes"] - (cell.get("gpu_before_steps_bytes") or 0)
    peak, before = cell.get("cpu_tensors_peak_bytes"), cell.get("cpu_tensors_before_bytes")
    return None if peak is None or before is None else peak - before


def _cap_lines(cells: dict[str, dict]) -> list[str]:
    header = ["Script", "Crop", "memory cap GiB (RSS)", "largest batch that trains",
              "smallest batch over the cap", "vs train.py"]  # fmt: skip
    rows = []
    plain = cells.get("cap/train.py", {})
    base = plain.get("largest_batch") if plain.get("status") == "ok" else None
    for key, cell in cells.items():
        status = status_text(cell)
        if status:
            rows.append([_script_label(key), status, *[""] * 4])
            continue
        largest = cell["largest_batch"]
        crop = cell.get("crop")
        rows.append(
            [
                _script_label(key),
                f"{crop[0]}x{crop[1]}" if crop else "config",
                gib(cell["memory_cap_bytes"]),
                "none (OOM at batch 1)" if largest is None else largest,
                "—" if cell["oom_batch"] is None else f"OOM at batch {cell['oom_batch']}",
                _difference(largest, base),
            ]
        )
    return [
        "## Largest batch under a memory cap",
        "",
        "Batches doubled until the step goes over a fixed cap on the child process's resident "
        "set, then the gap between the last batch that fit and that first failure bisected "
        "(exactly up to batch 16, to within an eighth of the batch above it) (`benchmarks/memory_cap.py`: a watchdog thread reads `VmRSS` every 5 ms, `VmHWM` "
        "after each step); each batch runs in its own process. A child over the cap writes "
        '"OOM at batch N" and stops; the run goes on.',
        "",
        *table(header, rows),
        "",
    ]


def input_table(document: dict) -> list[str]:
    """Input pipeline throughput against the demo's training images/s (``input/demo``)."""
    cell = document["cells"].get("input/demo")
    if not cell:
        return []
    status = status_text(cell)
    if status:
        rows = [["demo", status, "", "", "", ""]]
    else:
        train = cell.get("train_images_per_s")
        ratio = cell.get("ratio_to_training")
        rows = [
            [
                f"{cell['config']} train input",
                f"synthetic {cell['record_size'][0]}x{cell['record_size'][1]} PNG",
                cell["batch_size"],
                f"{cell['examples_per_s']:.1f}",
                "—" if train is None else f"{train:.2f}",
                "—" if ratio is None else f"{ratio:.1f}x",
            ]
        ]
    header = ["Pipeline", "Records", "Batch", "examples/s", "training images/s (demo)",
              "pipeline / training"]  # fmt: skip
    return [
        "## Input pipeline",
        "",
        "Batches of the demo's training input (read, decode, random scale, crop, flip, batch, "
        "prefetch) drawn after warm-up with nothing else running; examples/s = batch / median "
        "time per batch. It is not the bottleneck when it delivers well above the training "
        "step's images/s.",
        "",
        *table(header, rows),
        "",
    ]
