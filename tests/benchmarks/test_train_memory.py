"""Training memory cells: a child over the memory cap is a table cell, batch search, tables."""

from __future__ import annotations

import numpy as np

from benchmarks import train_bench, training_tables, video_bench
from benchmarks.models import ICNET_CONFIG
from tests.snippets import read_video

CASE = train_bench.TrainCase(
    "train.py",
    "tiny ICNet",
    ICNET_CONFIG,
    "model { icnet { filter_scale: 0.125 } }",
    1,
    (33, 65),
)


def test_child_over_the_cap_becomes_an_oom_cell(tmp_path):
    # 64 MiB is below what Python + TensorFlow alone hold, so the child's watchdog must stop it
    # before the first step; the parent gets a result, not an exception.
    runner = train_bench.TrainRunner(str(tmp_path), warmup=1, steps=1)
    cap = 64 * 2**20
    found = train_bench.largest_batch(runner, CASE, cap, (1, 2))
    assert found["largest_batch"] is None and found["oom_batch"] == 1
    assert list(found["batches"]) == ["1"]  # batch 2 is not tried after batch 1 failed
    assert found["batches"]["1"]["oom"] and found["batches"]["1"]["peak_rss_bytes"] > cap
    document = {"cells": {"cap/train.py": {"status": "ok", **found}}}
    text = "\n".join(training_tables.memory_table(document))
    assert "none (OOM at batch 1)" in text and "| 0.06 |" in text


class _FakeRunner:
    """Batches up to ``fits`` train; larger ones go over the cap."""

    def __init__(self, fits: int):
        self.fits = fits
        self.cases: list[train_bench.TrainCase] = []

    def run(self, case):
        self.cases.append(case)
        if case.batch_size > self.fits:
            return {"oom": True, "batch_size": case.batch_size, "rss_bytes": 7}
        return {"batch_size": case.batch_size, "peak_rss_bytes": 5}


def test_largest_batch_doubles_until_the_first_oom():
    runner = _FakeRunner(fits=3)
    found = train_bench.largest_batch(runner, CASE, 100, (1, 2, 4, 8), refine=False)
    assert (found["largest_batch"], found["oom_batch"]) == (2, 4)
    assert [c.batch_size for c in runner.cases] == [1, 2, 4]
    assert {c.memory_cap_bytes for c in runner.cases} == {100}
    assert len({c.settings() for c in runner.cases}) == 3  # distinct runs, not shared
    everything = train_bench.largest_batch(_FakeRunner(fits=99), CASE, 100, (1, 2))
    assert (everything["largest_batch"], everything["oom_batch"]) == (2, None)


def test_largest_batch_bisects_between_the_last_fit_and_the_first_oom():
    # 1..16 fit, 32 does not: 24 (over), 20 (fits), 22 (over); 20-22 is within 16 // 8 = 2.
    runner = _FakeRunner(fits=21)
    found = train_bench.largest_batch(runner, CASE, 100, (1, 2, 4, 8, 16, 32))
    assert [c.batch_size for c in runner.cases] == [1, 2, 4, 8, 16, 32, 24, 20, 22]
    assert (found["largest_batch"], found["oom_batch"]) == (20, 22)
    assert list(found["batches"]) == ["1", "2", "4", "8", "16", "32", "24", "20", "22"]
    # Below 16 the bisection is exact: 8 fits, 16 does not, the answer is 11.
    exact = train_bench.largest_batch(_FakeRunner(fits=11), CASE, 100, (1, 2, 4, 8, 16))
    assert (exact["largest_batch"], exact["oom_batch"]) == (11, 12)
    # Nothing to refine when the first batch is over, or when every batch fits.
    assert train_bench.largest_batch(_FakeRunner(fits=0), CASE, 100, (1, 2))["oom_batch"] == 1
    assert train_bench.largest_batch(_FakeRunner(fits=9), CASE, 100, (1, 2))["oom_batch"] is None


def _memory_cell(tensors_mib: float, seconds: float) -> dict:
    mib = 2**20
    return {
        "status": "ok",
        "batch_size": 2,
        "crop": [129, 129],
        "rss_before_steps_bytes": 100 * mib,
        "peak_rss_bytes": 400 * mib,
        "cpu_tensors_before_bytes": 10 * mib,
        "cpu_tensors_peak_bytes": int((10 + tensors_mib) * mib),
        "s_per_step": seconds,
    }


def test_memory_table_compares_each_script_with_train_py():
    cells = {
        "memory/train.py": _memory_cell(180.0, 1.0),
        "memory/train_mem_saving.py": _memory_cell(120.0, 1.2),
        "memory/train_mem_saving.py_sqrt": _memory_cell(90.0, 1.3),
        "cap/train.py": {
            "status": "ok",
            "largest_batch": 2,
            "oom_batch": 4,
            "memory_cap_bytes": 3 * 2**30,
            "crop": [129, 129],
        },  # fmt: skip
        "cap/train_mem_saving.py_sqrt": {
            "status": "ok",
            "largest_batch": 8,
            "oom_batch": None,
            "memory_cap_bytes": 3 * 2**30,
            "crop": [129, 129],
        },  # fmt: skip
    }
    lines = training_tables.memory_table({"cells": cells})
    # 120 / 180 and 90 / 180 of the tensors; 1.2 / 1.0 and 1.3 / 1.0 of the time.
    assert (
        "| `train_mem_saving.py` (measured plan) | 2 | 129x129 | 120.0 | 0.67x | 300.0 | 1.200 "
        "| 1.20x |" in lines
    )
    assert (
        "| `train_mem_saving.py` (sqrt plan) | 2 | 129x129 | 90.0 | 0.50x | 300.0 | 1.300 "
        "| 1.30x |" in lines
    )
    assert "| `train.py` | 129x129 | 3.00 | 2 | OOM at batch 4 | 1.00x |" in lines
    assert "| `train_mem_saving.py` (sqrt plan) | 129x129 | 3.00 | 8 | — | 4.00x |" in lines


def test_generated_video_has_the_frames_size_and_rate_asked_for(tmp_path):
    path = video_bench.write_test_video(str(tmp_path / "v.mp4"), (32, 64), 5, fps=12.0)
    frames, fps = read_video(path)
    assert fps == 12.0
    assert len(frames) == 5 and frames[0].shape == (32, 64, 3)
    # The square moves: consecutive frames differ.
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).max() > 100


def test_video_table_ratio_is_end_to_end_over_model_fps():
    cell = {"status": "ok", "model": "icnet_0.5", "size": [97, 193], "frames": 8,
            "model_fps": 20.0, "end_to_end_fps": 18.5, "ratio": 18.5 / 20.0}  # fmt: skip
    lines = video_bench.video_table({"cells": {"video/icnet_0.5/97x193": cell}})
    assert "| icnet_0.5 at 97x193 | 8 | 20.00 | 18.50 | 92% |" in lines
