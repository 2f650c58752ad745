"""The built-in hooks over a fake step and a fake clock: checkpoints, NaN guard, progress."""

from __future__ import annotations

import logging
import math
import os

import pytest
import tensorflow as tf

from core.registry import UnknownNameError
from core.training import hooks
from core.training.hooks import (
    HOOKS,
    CheckpointHook,
    MemoryHook,
    NonFiniteLossError,
    NonFiniteLossGuard,
    ProgressHook,
    SummaryHook,
)
from core.training.loop import HookBase, TrainLoop


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeStep:
    """Each step takes ``seconds`` on ``clock``, sets ``weight`` to the step and returns ``totals``."""

    def __init__(self, clock: Clock, seconds: float, totals=None, weight=None):
        self.clock = clock
        self.seconds = seconds
        self.totals = totals
        self.weight = weight
        self.calls = 0

    def __call__(self, iterator, save_request):
        self.calls += 1
        self.clock.now += self.seconds
        if self.weight is not None:
            self.weight.assign(float(self.calls))
        total = self.totals[self.calls - 1] if self.totals else 0.5 * self.calls
        return {"losses": {"total": total}}


def _saved_steps(directory: str) -> list[int]:
    if not os.path.isdir(directory):
        return []
    return sorted(
        int(name[len("model.ckpt-") : -len(".index")])
        for name in os.listdir(directory)
        if name.endswith(".index")
    )


def _checkpoint_hook(tmp_path, clock, weight, **kwargs) -> CheckpointHook:
    checkpoint = tf.train.Checkpoint(weight=weight)
    return CheckpointHook(
        checkpoint, str(tmp_path), clock=clock, weights=[weight], **{"max_to_keep": 5, **kwargs}
    )


def test_checkpoints_every_interval_and_at_the_end(tmp_path):
    clock, weight = Clock(), tf.Variable(0.0)
    saver = _checkpoint_hook(tmp_path, clock, weight, interval_secs=10, max_to_keep=2)
    saved: list[int] = []
    original_save = saver.save
    saver.save = lambda step: saved.append(step) or original_save(step)
    # 4 s a step; a save is asked before a step once 10 s passed since the last save (at the
    # end of that step): before step 4 (t=12, last 0), saved at t=16; before step 8 (t=28).
    TrainLoop(FakeStep(clock, 4.0, weight=weight), None, 0, 10, [saver]).run()
    assert saved == [4, 8, 10]
    assert _saved_steps(str(tmp_path)) == [8, 10]  # max_to_keep=2
    assert saver.latest_checkpoint == os.path.join(str(tmp_path), "model.ckpt-10")
    restored = tf.Variable(-1.0)
    tf.train.Checkpoint(weight=restored).read(os.path.join(str(tmp_path), "model.ckpt-8"))
    assert float(restored) == 8.0


def test_checkpoint_after_every_step_with_interval_zero_and_no_double_save(tmp_path):
    clock, weight = Clock(), tf.Variable(0.0)
    saver = _checkpoint_hook(tmp_path, clock, weight, interval_secs=0)
    TrainLoop(FakeStep(clock, 1.0, weight=weight), None, 2, 5, [saver]).run()
    # Resumed at 2: steps 3, 4 and 5, the last one not saved twice.
    assert _saved_steps(str(tmp_path)) == [3, 4, 5]


@pytest.mark.parametrize(
    ("error", "save_on_interrupt", "expected"),
    [(KeyboardInterrupt, True, [3]), (KeyboardInterrupt, False, []), (RuntimeError, True, [])],
)
def test_checkpoint_when_the_run_is_stopped(tmp_path, error, save_on_interrupt, expected):
    clock, weight = Clock(), tf.Variable(0.0)
    saver = _checkpoint_hook(
        tmp_path / "ckpt", clock, weight, interval_secs=100, save_on_interrupt=save_on_interrupt
    )

    class Stop(HookBase):
        def after_step(self):
            if self.loop.step == 3:
                raise error("stop")

    with pytest.raises(error):
        TrainLoop(FakeStep(clock, 1.0, weight=weight), None, 0, 10, [saver, Stop()]).run()
    assert _saved_steps(str(tmp_path / "ckpt")) == expected


def test_a_worker_scratch_directory_is_removed(tmp_path):
    clock, weight = Clock(), tf.Variable(0.0)
    scratch = tmp_path / "workertemp_1"
    saver = _checkpoint_hook(scratch, clock, weight, interval_secs=0, remove_directory=True)
    TrainLoop(FakeStep(clock, 1.0, weight=weight), None, 0, 2, [saver]).run()
    assert not scratch.exists()


def test_non_finite_weights_are_not_saved(tmp_path):
    clock, weight = Clock(), tf.Variable(0.0)
    saver = _checkpoint_hook(tmp_path, clock, weight, interval_secs=0)

    class Poison(HookBase):
        def before_step(self):
            if self.loop.step == 2:
                weight_override.append(1)

    weight_override: list[int] = []

    def step(iterator, request):
        weight.assign(math.inf if weight_override else 1.0)
        return {"losses": {"total": 1.0}}

    with pytest.raises(NonFiniteLossError, match=r"by step 3.*is .*model\.ckpt-2"):
        TrainLoop(step, None, 0, 5, [Poison(), saver]).run()
    assert _saved_steps(str(tmp_path)) == [1, 2]


def test_nan_guard_stops_at_the_step_and_names_the_last_checkpoint(tmp_path):
    clock, weight = Clock(), tf.Variable(0.0)
    saver = _checkpoint_hook(tmp_path, clock, weight, interval_secs=0)
    guard = NonFiniteLossGuard(lambda: saver.latest_checkpoint)
    totals = [3.0, 2.0, 1.0, math.nan, 1.0]
    loop = TrainLoop(FakeStep(clock, 1.0, totals, weight), None, 0, 5, [guard, saver])
    with pytest.raises(NonFiniteLossError, match=r"total loss is nan at step 4 .*model\.ckpt-3\."):
        loop.run()
    # Step 4's weights were not saved, neither after the step nor at the end.
    assert _saved_steps(str(tmp_path)) == [1, 2, 3]
    assert loop.step == 4


def test_nan_guard_before_any_checkpoint():
    clock = Clock()
    loop = TrainLoop(FakeStep(clock, 1.0, [-math.inf]), None, 0, 3, [NonFiniteLossGuard()])
    with pytest.raises(NonFiniteLossError, match=r"-inf at step 1.*none \(none was written\)"):
        loop.run()


def _messages(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "absl"]


def test_progress_lines_speed_eta_and_memory(caplog, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(hooks, "peak_memory", lambda: (1536, "process peak RSS (CPU)"))
    progress = ProgressHook(batch_size=8, every=10, clock=clock)
    memory = MemoryHook(every=10)
    step = FakeStep(clock, 0.25)  # 4 steps/s; total loss 0.5 * step
    loop = TrainLoop(step, None, 0, 40, [memory, progress], learning_rate_fn=lambda: 0.01)
    with caplog.at_level(logging.INFO, logger="absl"):
        loop.run()
    memory_part = " | process peak RSS (CPU) 1.5 KiB"
    # ETA: (40 - step) / 4 s, rounded to seconds (7.5 -> 8, 2.5 -> 2: round half to even).
    assert _messages(caplog) == [
        "step 1: loss 0.5000 (lr 0.01); first step (includes tracing) done",
        "step 10/40 | loss 5.0000 (lr 0.01) | 4.00 steps/s, 32.0 images/s | ETA 0:00:08"
        + memory_part,
        "step 20/40 | loss 10.0000 (lr 0.01) | 4.00 steps/s, 32.0 images/s | ETA 0:00:05"
        + memory_part,
        "step 30/40 | loss 15.0000 (lr 0.01) | 4.00 steps/s, 32.0 images/s | ETA 0:00:02"
        + memory_part,
        "step 40/40 | loss 20.0000 (lr 0.01) | 4.00 steps/s, 32.0 images/s | ETA 0:00:00"
        + memory_part,
    ]
    # 39 steps after the first in 9.75 s.
    assert progress.mean_speed() == pytest.approx(4.0)
    assert loop.metrics["steps_per_sec"] == pytest.approx(4.0)


def test_progress_without_an_end_and_resumed(caplog):
    clock = Clock()
    progress = ProgressHook(batch_size=2, every=5, clock=clock)
    loop = TrainLoop(FakeStep(clock, 0.5, [1.0] * 10), None, 3, 0, [progress])

    class Stop(HookBase):
        def after_step(self):
            if self.loop.step == 10:
                raise KeyboardInterrupt

    loop.register_hooks([Stop()])
    with caplog.at_level(logging.INFO, logger="absl"), pytest.raises(KeyboardInterrupt):
        loop.run()
    # No ETA without an end; the speed of step 5 is over 1 step (4 -> 5), of 10 over 5 steps.
    assert _messages(caplog) == [
        "step 4: loss 1.0000 (lr nan); first step (includes tracing) done",
        "step 5 | loss 1.0000 (lr nan) | 2.00 steps/s, 4.0 images/s",
        "step 10 | loss 1.0000 (lr nan) | 2.00 steps/s, 4.0 images/s",
    ]


class FakeWriter:
    def __init__(self):
        self.calls: list[tuple] = []

    def scalars(self, step, losses, learning_rate, speed=None):
        self.calls.append(("scalars", step, dict(losses), learning_rate, speed))

    def images(self, step, images, labels, predictions):
        self.calls.append(("images", step, images, labels, predictions))

    def close(self):
        self.calls.append(("close",))


def test_summaries_every_n_steps_with_speed_and_images():
    clock, writer = Clock(), FakeWriter()

    def step(iterator, request):
        clock.now += 0.5
        outputs = {"losses": {"total": 1.0}}
        if clock.now >= 2.0:  # from step 4 on
            outputs.update(images="i", labels="l", predictions="p")
        return outputs

    progress = ProgressHook(batch_size=1, every=3, clock=clock)
    summary = SummaryHook(writer, every=2)
    TrainLoop(step, None, 0, 6, [progress, summary], learning_rate_fn=lambda: 0.5).run()
    # Speed appears once a progress line measured it (step 3: 2 steps in 1 s).
    assert writer.calls == [
        ("scalars", 2, {"total": 1.0}, 0.5, None),
        ("scalars", 4, {"total": 1.0}, 0.5, 2.0),
        ("images", 4, "i", "l", "p"),
        ("scalars", 6, {"total": 1.0}, 0.5, 2.0),
        ("images", 6, "i", "l", "p"),
        ("close",),
    ]
    with pytest.raises(ValueError, match="every >= 1"):
        SummaryHook(writer, every=0)


def test_registry_names_the_built_in_hooks_and_takes_new_ones():
    assert {"checkpoint", "memory", "nan_guard", "progress", "summaries"} <= set(HOOKS.names())
    assert HOOKS.get("checkpoint") is CheckpointHook
    with pytest.raises(UnknownNameError, match="unknown training hook 'progres'.*'progress'"):
        HOOKS.get("progres")

    @HOOKS.register("test_counter")
    class Counter(HookBase):
        def __init__(self):
            self.steps = 0

        def after_step(self):
            self.steps += 1

    try:
        counter = HOOKS.get("test_counter")()
        TrainLoop(FakeStep(Clock(), 1.0), None, 0, 3, [counter]).run()
        assert counter.steps == 3
    finally:
        HOOKS.unregister("test_counter")
