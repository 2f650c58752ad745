"""Runs the benchmark tasks one after another: progress, time estimates, failures as results.

A :class:`Task` measures one or more *cells* (one number each in the results table, keyed like
``latency/icnet_1.0/checkpoint/1024x2048``). A task that raises does not stop the run: every cell
it declared and did not fill is recorded as failed with the reason, and the next task starts.
After each task the results are handed to ``on_update`` (which rewrites the report files), so an
interrupted run still leaves a table of what was measured.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Callable, Sequence

from absl import logging

OK = "ok"
FAILED = "failed"
SKIPPED = "skipped"


class Results:
    """The measured cells: ``{key: {"status": ok|failed|skipped, ...values}}``, in run order."""

    def __init__(self):
        self.cells: dict[str, dict] = {}

    def set(self, key: str, **values) -> dict:
        """Records a measured cell (replacing an earlier record of it)."""
        self.cells[key] = {"status": OK, **values}
        return self.cells[key]

    def fail(self, key: str, reason: str) -> None:
        self.cells[key] = {"status": FAILED, "reason": reason}

    def skip(self, key: str, reason: str) -> None:
        self.cells[key] = {"status": SKIPPED, "reason": reason}

    def get(self, key: str) -> dict | None:
        """The cell if it was measured successfully, else None."""
        cell = self.cells.get(key)
        return cell if cell and cell["status"] == OK else None


def error_reason(error: BaseException, limit: int = 300) -> str:
    """A one-line reason for a table: the exception type and the first line of its message."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclasses.dataclass
class Task:
    """One unit of work.

    Attributes:
      title: what the progress line says.
      cells: the keys the task fills; those left unfilled when it raises are marked failed.
      run: ``run(results)`` measures and records the cells.
      estimate_s: expected seconds on a 2-core CPU, for the time-remaining estimate.
    """

    title: str
    cells: Sequence[str]
    run: Callable[[Results], None]
    estimate_s: float = 10.0


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    """Estimates the time left: the tasks' own estimates scaled by how fast the run is so far."""

    def __init__(self, estimates: Sequence[float], clock: Callable[[], float] = time.monotonic):
        self._estimates = [max(float(e), 0.1) for e in estimates]
        self._clock = clock
        self._started = clock()
        self._done_estimate = 0.0
        self._done = 0

    def elapsed(self) -> float:
        return self._clock() - self._started

    def task_done(self) -> None:
        self._done_estimate += self._estimates[self._done]
        self._done += 1

    def remaining(self) -> float:
        """Seconds left: remaining estimates times (elapsed / estimates of the finished tasks)."""
        left = sum(self._estimates[self._done :])
        speed = self.elapsed() / self._done_estimate if self._done_estimate else 1.0
        return left * speed


def run_tasks(
    tasks: Sequence[Task],
    results: Results,
    on_update: Callable[[Results], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Results:
    """Runs every task, logging progress; failures are recorded, never raised.

    Args:
      tasks: in order.
      results: filled in place.
      on_update: called after each task (e.g. to rewrite the report).
      clock: for tests.

    Returns:
      ``results``.
    """
    progress = Progress([task.estimate_s for task in tasks], clock)
    total = len(tasks)
    for index, task in enumerate(tasks, start=1):
        logging.info(
            "[%d/%d] %s (elapsed %s, about %s left)",
            index,
            total,
            task.title,
            _clock(progress.elapsed()),
            _clock(progress.remaining()),
        )
        started = clock()
        try:
            task.run(results)
        except Exception as error:  # one failing cell must not end the run
            reason = error_reason(error)
            logging.warning("%s failed: %s\n%s", task.title, reason, traceback.format_exc())
            for key in task.cells:
                if key not in results.cells:
                    results.fail(key, reason)
        for key in task.cells:
            if key not in results.cells:
                results.fail(key, "not measured (the task returned without recording it)")
        progress.task_done()
        logging.info("    done in %.1f s", clock() - started)
        if on_update is not None:
            on_update(results)
    logging.info("All %d tasks done in %s", total, _clock(progress.elapsed()))
    return results
