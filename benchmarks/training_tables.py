"""The report's training tables: training step, training memory, input pipeline."""

from __future__ import annotations

from benchmarks.markdown import cells_under, escape, gib, status_text, table


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


def memory_table(document: dict) -> list[str]:
    """Peak memory of train.py vs train_mem_saving.py (``memory/*``)."""
    cells = cells_under(document, "memory/")
    if not cells:
        return []
    header = ["Script", "Batch", "Crop", "peak RSS GiB", "RSS before the steps GiB",
              "peak − before GiB", "peak GPU memory GiB", "s/step (median)"]  # fmt: skip
    rows = []
    measured = {}
    for key, cell in cells.items():
        script = key.split("/", 1)[1]
        status = status_text(cell)
        if status:
            rows.append([script, status, *[""] * 6])
            continue
        before = cell.get("rss_before_steps_bytes")
        increment = cell["peak_rss_bytes"] - before if before is not None else None
        measured[script] = (increment, cell.get("gpu_peak_bytes"), cell["s_per_step"])
        rows.append(
            [
                f"`{script}`",
                cell["batch_size"],
                f"{cell['crop'][0]}x{cell['crop'][1]}",
                gib(cell["peak_rss_bytes"]),
                gib(before),
                gib(increment),
                gib(cell.get("gpu_peak_bytes")),
                f"{cell['s_per_step']:.3f}",
            ]
        )
    lines = [
        "## Training memory: train.py vs train_mem_saving.py",
        "",
        "The same training step without and with gradient checkpointing (`train_mem_saving.py`'s "
        "default segments, each backbone block and the fusion units, under `tf.recompute_grad`), "
        "each in a fresh process. Peak RSS is the process's high-water mark (`VmHWM`) over the "
        "warm-up and timed steps, so it includes Python, TensorFlow and the weights; "
        '"peak − before" is what the steps added after the model and optimizer were built. Peak '
        "GPU memory is `tf.config.experimental.get_memory_info`.",
        "",
        *table(header, rows),
        "",
    ]
    plain, saving = measured.get("train.py"), measured.get("train_mem_saving.py")
    if plain and saving and plain[0] and saving[0] is not None:
        lines += [
            f"Gradient checkpointing changes the steps' memory by "
            f"{100 * (saving[0] - plain[0]) / plain[0]:+.0f}% (RSS) and the step time by "
            f"{100 * (saving[2] - plain[2]) / plain[2]:+.0f}%.",
            "",
        ]
    return lines


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
