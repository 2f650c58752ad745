"""keep_checkpoint_every_n_hours: older checkpoints kept one per N hours (fake clock)."""

from __future__ import annotations

import pytest
import tensorflow as tf
from tensorflow.python.checkpoint import checkpoint_management

from core.training.hooks import CheckpointHook
from core.training.loop import TrainLoop
from tests.core.training.test_hooks import Clock, FakeStep, _saved_steps


class _FakeTimeModule:
    """Stands in for the ``time`` module the CheckpointManager stamps its checkpoints with."""

    def __init__(self, clock: Clock):
        self.clock = clock

    def time(self) -> float:
        return self.clock()


@pytest.mark.parametrize(
    "keep_every_n_hours, expected",
    [
        # Saves after every step, the steps at t = 0.5, 1.0, ..., 2.5 h; max_to_keep 1. A
        # checkpoint falling out of the newest one is kept when it is at least 1 h younger
        # than the last kept one (the manager starts with "kept" at t = -1 s): step 2 (1.0 h)
        # is kept, step 3 (1.5 h) not, step 4 (2.0 h) is; step 5 (2.5 h) is the newest.
        (1.0, [2, 4, 5]),
        (None, [5]),  # only the newest
    ],
)
def test_older_checkpoints_are_kept_one_per_n_hours(
    tmp_path, monkeypatch, keep_every_n_hours, expected
):
    clock, weight = Clock(), tf.Variable(0.0)
    monkeypatch.setattr(checkpoint_management, "time", _FakeTimeModule(clock))
    saver = CheckpointHook(
        tf.train.Checkpoint(weight=weight),
        str(tmp_path),
        clock=clock,
        weights=[weight],
        interval_secs=0,  # a save after every step
        max_to_keep=1,
        keep_every_n_hours=keep_every_n_hours,
    )
    TrainLoop(FakeStep(clock, 1800.0, weight=weight), None, 0, 5, [saver]).run()
    assert _saved_steps(str(tmp_path)) == expected
