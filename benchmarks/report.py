"""Writes the results as ``RESULTS.md`` (tables with units) and ``results.json`` (every number).

Both files are written atomically (``core.file_utils``), after every task of a run, so a reader
never sees a half-written file and an interrupted run leaves what it had measured.
"""

from __future__ import annotations

import json
import os

from benchmarks.inference_tables import (
    exports_table,
    latency_table,
    models_table,
    runtimes_table,
)
from benchmarks.markdown import escape, table
from benchmarks.plan import FAILED
from benchmarks.profile_bench import profile_table
from benchmarks.roofline import roofline_table
from benchmarks.training_tables import input_table, memory_table, training_table
from benchmarks.video_bench import video_table

MARKDOWN_NAME = "RESULTS.md"
JSON_NAME = "results.json"
SCHEMA_VERSION = 1


def write(output_dir: str, document: dict) -> tuple[str, str]:
    """Writes ``RESULTS.md`` and ``results.json`` into ``output_dir``; returns their paths."""
    from core import file_utils

    os.makedirs(output_dir, exist_ok=True)
    json_path = os.path.join(output_dir, JSON_NAME)
    markdown_path = os.path.join(output_dir, MARKDOWN_NAME)
    file_utils.atomic_write_text(json_path, json.dumps(document, indent=2, sort_keys=False) + "\n")
    file_utils.atomic_write_text(markdown_path, render_markdown(document))
    return markdown_path, json_path


def _machine(document: dict) -> list[str]:
    machine = document["machine"]
    settings = document["settings"]
    gpus = ", ".join(gpu["model"] for gpu in machine.get("accelerators", [])) or "none (CPU only)"
    load_start = machine.get("load_average_start")
    load_end = machine.get("load_average_end")
    rows = [
        (
            "CPU",
            f"{machine['cpu_model']}: {machine['usable_cores']} usable cores "
            f"({machine['cpu_count']} in the machine)",
        ),
        ("Vector extensions", ", ".join(machine.get("vector_extensions") or ["unknown"])),
        ("TensorFlow threads", f"{machine['tf_threads']} (latency and TFLite runs)"),
        ("Accelerator", gpus),
        ("Memory", f"{machine.get('memory_gib')} GiB"),
        (
            "Software",
            f"TensorFlow {machine['tensorflow']}, Python {machine['python']}, "
            f"{machine['platform']}",
        ),
        ("Commit", machine["git_commit"]),
        ("Date", machine["date_utc"]),
        ("Load average 1/5/15 min (start; end)", f"{load_start}; {load_end}"),
        (
            "Run",
            f"`{settings['command']}`: {settings['total_time']}"
            + (" (**--quick**: shrunken models, not comparable)" if settings["quick"] else ""),
        ),
    ]
    if machine.get("label"):
        rows.insert(0, ("Machine", escape(machine["label"])))
    return ["## Machine", "", *table(("", ""), rows), ""]


def _failures(document: dict) -> list[str]:
    failed = [(k, c) for k, c in document["cells"].items() if c["status"] == FAILED]
    if not failed:
        return []
    return [
        "## Failed cells",
        "",
        *[f"- `{key}`: {escape(cell['reason'])}" for key, cell in failed],
        "",
    ]


def render_markdown(document: dict) -> str:
    """The whole ``RESULTS.md``."""
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`python -m benchmarks.run`); regenerate rather than edit. "
        "How to read each table: docs/benchmarks.md. Every number comes with its raw values in "
        "`results.json`.",
        "",
    ]
    sections = (
        _machine,
        models_table,
        latency_table,
        runtimes_table,
        exports_table,
        training_table,
        memory_table,
        input_table,
        video_table,
        roofline_table,
        profile_table,
        _failures,
    )
    for section in sections:
        lines += section(document)
    return "\n".join(lines).rstrip() + "\n"
