"""runners.trainer's hooks: the built-in order, and extra hooks seeing a real run.

The hooks themselves are tested with a fake step in tests/core/training/test_hooks.py.
"""

from __future__ import annotations

import dataclasses
import os
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf

from builders import config_util
from core.training import hooks
from core.training.loop import HookBase
from runners import trainer

# run_functions_eagerly does not apply to tf.data functions; TF says so on every run.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Even though the `tf.config"),
    pytest.mark.usefixtures("eager_steps"),
]

BASE = trainer.TrainOptions(seed=7, save_summaries_steps=0, log_every_n_steps=2)


def test_build_hooks_order_and_extra_hooks(tmp_path):
    class Extra(HookBase):
        pass

    parts = SimpleNamespace(
        model=SimpleNamespace(named_variables=dict),
        global_step=tf.Variable(0, dtype=tf.int64),
    )
    checkpoint = tf.train.Checkpoint(step=parts.global_step)
    logdir = str(tmp_path)
    everything = dataclasses.replace(BASE, log_memory=True, save_summaries_steps=5)
    built = trainer.build_hooks(
        everything,
        parts,
        checkpoint,
        logdir=logdir,
        save_dir=logdir,
        batch_size=2,
        extra_hooks=[Extra()],
    )
    built[3].writer.close()
    assert [type(hook) for hook in built] == [
        hooks.NonFiniteLossGuard,
        hooks.MemoryHook,
        hooks.ProgressHook,
        hooks.SummaryHook,
        hooks.CheckpointHook,
        Extra,
    ]
    # No summaries, no memory lines; a non-chief worker's scratch directory is removed.
    scratch = os.path.join(logdir, "workertemp_1")
    plain = trainer.build_hooks(
        BASE, parts, checkpoint, logdir=logdir, save_dir=scratch, batch_size=2, chief=False
    )
    assert [type(hook) for hook in plain] == [
        hooks.NonFiniteLossGuard,
        hooks.ProgressHook,
        hooks.CheckpointHook,
    ]
    assert plain[-1].remove_directory and not built[4].remove_directory
    with pytest.raises(trainer.TrainError, match="unknown training hook 'nope'; known"):
        trainer.build_hooks(
            BASE,
            parts,
            checkpoint,
            logdir=logdir,
            save_dir=logdir,
            batch_size=2,
            extra_hooks=["nope"],
        )


def test_extra_hooks_see_every_step_and_the_final_checkpoint(config_path, tmp_path):
    logdir = str(tmp_path / "hooked")

    class Recorder(HookBase):
        def __init__(self):
            self.events = []

        def before_train(self):
            self.events.append(("before_train", self.loop.step, self.loop.model.name))

        def after_step(self):
            self.events.append(("after_step", self.loop.step, self.loop.losses["total"]))

        def after_train(self):
            # Extra hooks run after the checkpoint hook: the last step is saved by now.
            self.events.append(("after_train", tf.train.latest_checkpoint(logdir)))

    counted = []

    @hooks.HOOKS.register("test_counting_hook")
    class Counting(HookBase):
        def after_step(self):
            counted.append(self.loop.step)

    recorder = Recorder()
    config = config_util.load_pipeline_config(config_path)
    options = dataclasses.replace(BASE, num_steps=2)
    try:
        result = trainer.train(config, logdir, options, [recorder, "test_counting_hook"])
    finally:
        hooks.HOOKS.unregister("test_counting_hook")
    assert [event[:2] for event in recorder.events] == [
        ("before_train", 0),
        ("after_step", 1),
        ("after_step", 2),
        ("after_train", os.path.join(logdir, "model.ckpt-2")),
    ]
    assert recorder.events[0][2] == "ICNet"
    assert recorder.events[2][2] == result.loss and np.isfinite(recorder.events[1][2])
    assert counted == [1, 2]
