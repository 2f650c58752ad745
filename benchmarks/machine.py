"""What the numbers were measured on: CPU, vector extensions, cores, accelerator, date, commit."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as stream:
            for line in stream:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as stream:
            for line in stream:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def git_commit() -> str:
    """``<sha>``, with ``+dirty`` when tracked files differ from it; ``unknown`` outside git."""
    sha = _git("rev-parse", "--short=12", "HEAD")
    if not sha:
        return "unknown"
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return f"{sha}+dirty" if dirty else sha


def accelerators() -> list[dict]:
    """``[{"name": "/physical_device:GPU:0", "model": "NVIDIA H100 ..."}]``; empty on CPU."""
    import tensorflow as tf

    found = []
    for device in tf.config.list_physical_devices("GPU"):
        try:
            details = tf.config.experimental.get_device_details(device)
        except (ValueError, RuntimeError):
            details = {}
        found.append({"name": device.name, "model": details.get("device_name", "GPU")})
    return found


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (how busy the machine was), or None."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def describe(device_label: str = "") -> dict:
    """The machine description stored with the results."""
    import tensorflow as tf

    from benchmarks.roofline import read_vector_extensions
    from core.analysis import latency

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    gpus = accelerators()
    return {
        "label": device_label,
        "cpu_model": _cpu_model(),
        # AVX2 / AVX-512 / AMX decide which kernels oneDNN and XNNPACK run, hence the peak.
        "vector_extensions": read_vector_extensions(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "tf_threads": latency.cpu_threads(),
        "memory_gib": _memory_gib(),
        "accelerators": gpus,
        "device": gpus[0]["model"] if gpus else "CPU",
        "tensorflow": tf.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git_commit(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_start": load_average(),
    }
