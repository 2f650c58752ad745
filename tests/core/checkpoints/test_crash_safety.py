"""What a killed save leaves in a checkpoint directory is removed; complete checkpoints stay."""

from __future__ import annotations

import os
import shutil

import pytest
import tensorflow as tf

from core.checkpoints import crash_safety
from core.training.hooks import CheckpointHook


def _value(prefix: str) -> float:
    restored = tf.Variable(-1.0)
    tf.train.Checkpoint(weight=restored).read(prefix).expect_partial()
    return float(restored)


def _leftovers_of_killed_saves(directory: str) -> None:
    """Checkpoints 1-3 saved (listed), then what kills at every point of a save leave."""
    weight = tf.Variable(0.0)
    checkpoint = tf.train.Checkpoint(weight=weight)
    manager = tf.train.CheckpointManager(
        checkpoint, directory, max_to_keep=5, checkpoint_name="model.ckpt"
    )
    for step in (1, 2, 3):
        weight.assign(float(step))
        manager.save(checkpoint_number=step)
    base = os.path.join(directory, "model.ckpt")
    # Killed while deleting old checkpoints: listed step 1 lost its data file.
    os.remove(base + "-1.data-00000-of-00001")
    # Killed while writing the index of step 4 (not listed yet): a truncated index.
    weight.assign(4.0)
    checkpoint.write(base + "-4")
    with open(base + "-4.index", "r+b") as stream:
        stream.truncate(os.path.getsize(base + "-4.index") // 2)
    # Killed between renaming the data of step 5 and writing its index; and inside the
    # shard write of step 6 (TF's temporary folder).
    shutil.copy(base + "-2.data-00000-of-00001", base + "-5.data-00000-of-00001")
    os.makedirs(base + "-6_temp")
    shutil.copy(base + "-2.index", os.path.join(base + "-6_temp", "part-00000-of-00001.index"))
    # Complete but never listed (killed after its write, before the state file): kept.
    weight.assign(7.0)
    checkpoint.write(base + "-7")


def test_incomplete_checkpoints_are_removed_and_the_state_file_fixed(tmp_path):
    directory = str(tmp_path)
    _leftovers_of_killed_saves(directory)
    with pytest.raises(tf.errors.OpError):
        tf.train.load_checkpoint(os.path.join(directory, "model.ckpt-4"))
    base = os.path.join(directory, "model.ckpt")
    removed = crash_safety.remove_incomplete_checkpoints(directory)
    assert removed == sorted([base + "-1", base + "-4", base + "-5", base + "-6_temp"])
    assert sorted(os.listdir(directory)) == [
        "checkpoint",
        *(
            f"model.ckpt-{step}.{kind}"
            for step in (2, 3, 7)
            for kind in ("data-00000-of-00001", "index")
        ),
    ]
    for step in (2, 3, 7):
        assert _value(f"{base}-{step}") == float(step)
    state = tf.train.get_checkpoint_state(directory)
    assert list(state.all_model_checkpoint_paths) == [base + "-2", base + "-3"]
    assert state.model_checkpoint_path == base + "-3"
    with open(os.path.join(directory, "checkpoint")) as stream:
        text = stream.read()
    assert '"model.ckpt-2"' in text and directory not in text  # still relative: movable
    assert len(state.all_model_checkpoint_timestamps) == 2
    assert crash_safety.remove_incomplete_checkpoints(directory) == []  # nothing left to do


def test_the_checkpoint_hook_cleans_up_before_its_first_save(tmp_path):
    directory = str(tmp_path)
    _leftovers_of_killed_saves(directory)
    weight = tf.Variable(8.0)
    hook = CheckpointHook(tf.train.Checkpoint(weight=weight), directory, max_to_keep=5)
    assert hook.latest_checkpoint == os.path.join(directory, "model.ckpt-3")
    hook.save(8)
    assert hook.manager.checkpoints == [
        os.path.join(directory, f"model.ckpt-{s}") for s in (2, 3, 8)
    ]
    indexes = sorted(name for name in os.listdir(directory) if name.endswith(".index"))
    assert indexes == [
        "model.ckpt-2.index",
        "model.ckpt-3.index",
        "model.ckpt-7.index",
        "model.ckpt-8.index",
    ]


def test_pause_point_is_inert_unless_named(monkeypatch):
    monkeypatch.delenv(crash_safety.PAUSE_ENV, raising=False)
    crash_safety.pause_point("checkpoint_write:1")  # returns at once
    monkeypatch.setenv(crash_safety.PAUSE_ENV, "checkpoint_write:2")
    crash_safety.pause_point("checkpoint_write:1")
    crash_safety.pause_point("checkpoint_write:12")
