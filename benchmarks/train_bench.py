"""Training step time and training memory: each configuration in its own process.

Cells:
  ``train/<case>``: seconds per step (median and IQR of the timed steps after warm-up, the
    compiled ``tf.function`` step of ``core.training.train_step``) and images/s, at the demo config and
    at 713x713 crops.
  ``memory/<script>``: peak memory of the same step without and with gradient checkpointing
    (``train.py``; ``train_mem_saving.py`` with its measured plan and with the sqrt(n) plan),
    same batch and crop.
  ``cap/<script>``: the largest batch whose step trains under a fixed memory cap on the child's
    resident set (:mod:`benchmarks.memory_cap`); a child over the cap is the cell's
    "OOM at batch N", not a failure.

See :mod:`benchmarks.train_child` for what one run does.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

from benchmarks import memory_cap
from benchmarks.machine import REPO_ROOT
from benchmarks.models import DEMO_CONFIG, ICNET_CONFIG
from benchmarks.plan import Results

CHILD_TIMEOUT_S = 1800


@dataclasses.dataclass(frozen=True)
class TrainCase:
    """One training configuration.

    Attributes:
      key: name in the result keys.
      title: name in the tables.
      config_path: pipeline config (relative to the repository root).
      config_override: text-format override, or None.
      batch_size: None keeps the config's ``train_config.batch_size``.
      crop: (height, width) of the batch; None keeps the config's ``random_image_crop``.
      mem_saving: gradient checkpointing, as ``train_mem_saving.py``.
      plan: its ``--checkpoint_nodes`` plan (``measured``, ``sqrt``, ``original``).
      memory_cap_bytes: the child's resident-set cap, or None.
    """

    key: str
    title: str
    config_path: str
    config_override: str | None = None
    batch_size: int | None = None
    crop: tuple[int, int] | None = None
    mem_saving: bool = False
    plan: str = "measured"
    memory_cap_bytes: int | None = None

    def settings(self) -> tuple:
        """What determines the measurement (two cases with equal settings share one run)."""
        plan = self.plan if self.mem_saving else None
        return (self.config_path, self.config_override, self.batch_size, self.crop,
                self.mem_saving, plan, self.memory_cap_bytes)  # fmt: skip


def train_cases(quick: bool, batch_size: int) -> list[TrainCase]:
    """The ``train`` section: the demo config as it is, and ICNet 1.0 at 713x713 crops."""
    if quick:
        return [
            TrainCase("demo", "demo config (quick: 97x97 crops)", DEMO_CONFIG, None, 2, (97, 97)),
            TrainCase(
                "icnet_1.0_713",
                "ICNet 1.0 (quick: filter_scale 0.125, 129x129 crops)",
                ICNET_CONFIG,
                "model { icnet { filter_scale: 0.125 } }",
                batch_size,
                (129, 129),
            ),
        ]
    return [
        TrainCase("demo", "demo config (ICNet 0.25, its batch and crop)", DEMO_CONFIG),
        TrainCase(
            "icnet_1.0_713", "ICNet 1.0, 713x713 crops", ICNET_CONFIG, None, batch_size, (713, 713)
        ),
    ]


def memory_cases(quick: bool, batch_size: int) -> list[TrainCase]:
    """``train.py`` vs ``train_mem_saving.py`` (measured and sqrt plans): the 713 case."""
    base = train_cases(quick, batch_size)[1]
    return [
        dataclasses.replace(base, key="train.py", title=f"train.py: {base.title}"),
        dataclasses.replace(
            base,
            key="train_mem_saving.py",
            title=f"train_mem_saving.py: {base.title}",
            mem_saving=True,
        ),
        dataclasses.replace(
            base,
            key="train_mem_saving.py_sqrt",
            title=f"train_mem_saving.py --checkpoint_nodes=sqrt: {base.title}",
            mem_saving=True,
            plan="sqrt",
        ),
    ]


def cap_batches(quick: bool) -> tuple[int, ...]:
    """Batches tried first under the cap, doubling (each one a child process)."""
    return (1, 2) if quick else (1, 2, 4, 8, 16, 32)


def refine_gap(largest: int) -> int:
    """How close the bisection between the largest fitting and the first failing batch goes.

    Exact (1) up to batch 16, then within about 1/8 of the batch: the ratio of two scripts'
    largest batches is then known to a few percent without a child per batch.
    """
    return max(1, largest // 8)


def largest_batch(
    runner: TrainRunner,
    case: TrainCase,
    cap_bytes: int,
    batches: tuple[int, ...],
    refine: bool = True,
) -> dict:
    """The largest batch whose step trains under ``cap_bytes``.

    ``batches`` (increasing) are tried until the first one over the cap; a larger one would not
    fit either. With ``refine``, the gap between the largest batch that fit and that first
    failure is then bisected down to :func:`refine_gap`, so two scripts are compared at the
    batch each really reaches rather than at the grid's powers of two.

    Returns:
      ``largest_batch`` (None if even the first is over), ``oom_batch`` (the smallest batch
      found over the cap, None if all fit), ``memory_cap_bytes`` and the tried batches'
      results (in the order tried).
    """
    tried: dict[str, dict] = {}

    def fits(batch: int) -> bool:
        result = runner.run(
            dataclasses.replace(
                case, key=f"{case.key}_cap_b{batch}", batch_size=batch, memory_cap_bytes=cap_bytes
            )
        )
        tried[str(batch)] = {
            "oom": bool(result.get("oom")),
            "peak_rss_bytes": result.get("peak_rss_bytes") or result.get("rss_bytes"),
        }
        return not result.get("oom")

    largest, oom = None, None
    for batch in batches:
        if not fits(batch):
            oom = batch
            break
        largest = batch
    if refine and largest is not None and oom is not None:
        while oom - largest > refine_gap(largest):
            middle = (largest + oom) // 2
            if fits(middle):
                largest = middle
            else:
                oom = middle
    return {
        "largest_batch": largest,
        "oom_batch": oom,
        "memory_cap_bytes": cap_bytes,
        "batches": tried,
        "crop": list(case.crop) if case.crop else None,
    }


def train_key(case: TrainCase) -> str:
    return f"train/{case.key}"


def memory_key(case: TrainCase) -> str:
    return f"memory/{case.key}"


def cap_key(case: TrainCase) -> str:
    return f"cap/{case.key}"


def _child_error(stderr: str) -> str:
    """The most telling line of a failed child's log (the exception, else the last line)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line.split(":", 1)[0] or line.startswith(("Traceback", "Killed")):
            return line
    return lines[-1] if lines else "no output"


class TrainRunner:
    """Runs cases in child processes; a case with the same settings runs once.

    Args:
      work_dir: where the children's logs and results go.
      warmup: untimed steps (the first one traces the step).
      steps: timed steps.
      mixed_precision: the ``--mixed_precision`` policy in the child.
    """

    def __init__(self, work_dir: str, warmup: int, steps: int, mixed_precision: bool = False):
        self.work_dir = os.path.join(work_dir, "train")
        self.warmup = warmup
        self.steps = steps
        self.mixed_precision = mixed_precision
        self._done: dict[tuple, dict] = {}

    def run(self, case: TrainCase) -> dict:
        """Measures a case (or returns the earlier run with the same settings)."""
        settings = case.settings()
        if settings in self._done:
            return self._done[settings]
        os.makedirs(self.work_dir, exist_ok=True)
        name = case.key.replace("/", "_")
        output = os.path.join(self.work_dir, f"{name}.json")
        oom_output = os.path.join(self.work_dir, f"{name}.oom.json")
        for stale in (output, oom_output):
            if os.path.exists(stale):
                os.remove(stale)
        description = dataclasses.asdict(case)
        description.update(
            warmup=self.warmup,
            steps=self.steps,
            mixed_precision=self.mixed_precision,
            oom_output=oom_output,
        )
        command = [
            sys.executable,
            "-m",
            "benchmarks.train_child",
            f"--case={json.dumps(description)}",
            f"--output={output}",
        ]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
        process = subprocess.run(
            command,
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
        )
        with open(os.path.join(self.work_dir, f"{name}.log"), "w", encoding="utf-8") as log:
            log.write(process.stdout + process.stderr)
        if process.returncode == memory_cap.OOM_EXIT_CODE and os.path.exists(oom_output):
            with open(oom_output, encoding="utf-8") as stream:
                result = json.load(stream)
            self._done[settings] = result
            return result
        if process.returncode != 0:
            reason = _child_error(process.stderr)
            if process.returncode < 0:
                reason = f"killed by signal {-process.returncode} (out of memory?); {reason}"
            raise RuntimeError(f"training child failed (exit {process.returncode}): {reason}")
        with open(output, encoding="utf-8") as stream:
            result = json.load(stream)
        self._done[settings] = result
        return result


def measure_train(results: Results, runner: TrainRunner, case: TrainCase) -> None:
    values = runner.run(case)
    results.set(train_key(case), title=case.title, config=case.config_path, **values)


def measure_memory(results: Results, runner: TrainRunner, case: TrainCase) -> None:
    values = runner.run(case)
    results.set(memory_key(case), title=case.title, config=case.config_path, **values)


def measure_cap(
    results: Results, runner: TrainRunner, case: TrainCase, cap_bytes: int, quick: bool
) -> None:
    values = largest_batch(runner, case, cap_bytes, cap_batches(quick))
    results.set(cap_key(case), title=case.title, config=case.config_path, **values)


def cap_tasks(quick: bool, batch_size: int, cap_bytes: int, runner: TrainRunner) -> list:
    """The ``memory`` section's batch search under ``cap_bytes``: train.py, then the sqrt plan."""
    from benchmarks.plan import Task

    cases = [c for c in memory_cases(quick, batch_size) if c.key != "train_mem_saving.py"]
    batches = cap_batches(quick)
    return [
        Task(
            f"largest batch under {cap_bytes / 2**30:.1f} GiB: {case.title}",
            [cap_key(case)],
            lambda r, c=case: measure_cap(r, runner, c, cap_bytes, quick),
            (len(batches) + 3) * (15.0 if quick else 120.0),
        )
        for case in cases
    ]
