"""The demo's stage timer and its reuse of already generated synthetic records."""

from __future__ import annotations

import json
import os
import time

import pytest

from runners import demo

TINY = dict(num_train=2, num_val=1, height=17, width=33)


def test_stage_timer_records_wall_and_cpu_seconds_per_stage():
    timer = demo.StageTimer()
    with timer.stage("sleep"):
        time.sleep(0.1)  # wall time without CPU time
    with timer.stage("spin"):
        deadline = time.process_time() + 0.1
        while time.process_time() < deadline:
            pass
    (sleep_name, sleep_wall, sleep_cpu), (spin_name, spin_wall, spin_cpu) = timer.stages
    assert (sleep_name, spin_name) == ("sleep", "spin")
    assert sleep_wall >= 0.1 and sleep_cpu < 0.05
    assert spin_cpu >= 0.1 and spin_wall >= 0.1
    lines = timer.table().splitlines()
    assert lines[0].split() == ["stage", "wall", "s", "CPU", "s"]
    total = lines[-1].split()
    assert total[0] == "total"
    assert float(total[1]) == pytest.approx(sleep_wall + spin_wall, abs=0.051)
    assert float(total[2]) == pytest.approx(sleep_cpu + spin_cpu, abs=0.051)


def test_records_are_reused_only_for_the_same_options(tmp_path, monkeypatch):
    out = str(tmp_path)
    first = demo._synthetic_records(out, demo.DemoOptions(**TINY))
    with open(first["train"], "rb") as stream:
        original = stream.read()
    with open(os.path.join(out, "data", "manifest.json"), encoding="utf-8") as stream:
        manifest = json.load(stream)
    assert manifest["num_train"] == 2 and len(manifest["generator_sha256"]) == 64

    def fail(*args, **kwargs):
        raise AssertionError("regenerated records that were already there")

    with monkeypatch.context() as patch:
        patch.setattr(demo.create_synthetic_dataset, "write_synthetic_dataset", fail)
        again = demo._synthetic_records(out, demo.DemoOptions(**TINY))
    assert again["train"] == first["train"]

    # Another seed is other data: the records are rewritten, with other bytes.
    demo._synthetic_records(out, demo.DemoOptions(**TINY, seed=1))
    with open(first["train"], "rb") as stream:
        assert stream.read() != original
    # A missing record file is regenerated too, even when the manifest matches.
    os.remove(first["val"])
    demo._synthetic_records(out, demo.DemoOptions(**TINY, seed=1))
    assert os.path.exists(first["val"])
