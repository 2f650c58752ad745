"""Evaluation during training (train.py --eval_every_n_steps) on the tiny ICNet config.

The oracle is eval.py's own path (``runners.eval_loop.evaluate_checkpoint``) run afterwards on
the checkpoints the run left: the in-training numbers must be the same.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from builders import config_util
from core.checkpoints import checkpoint_utils
from runners import eval_loop, train_flags, trainer

# run_functions_eagerly does not apply to tf.data functions; TF says so on every run.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Even though the `tf.config"),
    pytest.mark.usefixtures("eager_steps"),
]


RUN = trainer.TrainOptions(
    seed=3,
    num_steps=4,
    save_summaries_steps=0,
    save_interval_secs=1e6,
    max_checkpoints_to_keep=1,
    mixed_precision=True,  # the evaluation is float32 anyway, as eval.py's
    eval_every_n_steps=2,
    eval_num_examples=2,
    # Rewrites the final checkpoint at the end: the last evaluation must read that one.
    recalibrate_bn_batches=1,
)


@pytest.fixture(scope="module")
def run(config_path, tmp_path_factory):
    """4 steps under mixed precision, evaluated at steps 2 and 4, one latest checkpoint kept,
    batch norm recalibrated at the end."""
    logdir = str(tmp_path_factory.mktemp("train_eval"))
    config = config_util.load_pipeline_config(config_path)
    return trainer.train(config, logdir, RUN), logdir, config


def _metrics(logdir: str) -> dict[int, dict]:
    found = {}
    for path in glob.glob(os.path.join(logdir, "eval", "metrics_*.json")):
        with open(path) as stream:
            payload = json.load(stream)
        if not path.endswith("latest.json"):
            found[payload["step"]] = payload
    return found


def _assert_same_results(ours: dict, oracle: dict) -> None:
    assert ours["num_images"] == oracle["num_images"] == 2
    np.testing.assert_allclose(ours["miou"], oracle["miou"], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(ours["validation_loss"], oracle["validation_loss"], rtol=1e-5)
    np.testing.assert_array_equal(ours["confusion_matrix"], oracle["confusion_matrix"])


def test_in_training_evaluation_equals_eval_py(run, tmp_path):
    result, logdir, config = run
    metrics = _metrics(logdir)
    assert sorted(metrics) == [2, 4] and result.step == 4
    latest = os.path.join(logdir, "model.ckpt-4")
    oracle = eval_loop.evaluate_checkpoint(
        config, latest, str(tmp_path), eval_loop.EvalOptions(num_examples=2)
    )
    assert metrics[4]["checkpoint"] == latest
    _assert_same_results(metrics[4], oracle)
    with open(os.path.join(logdir, "eval", "metrics_latest.json")) as stream:
        assert json.load(stream)["step"] == 4


def test_best_is_the_highest_miou_beside_the_latest(run, tmp_path):
    _, logdir, config = run
    metrics = _metrics(logdir)
    # The first of the highest (a later tie does not replace it).
    best_step = max(sorted(metrics), key=lambda step: metrics[step]["miou"])
    with open(os.path.join(logdir, "best", "best.json")) as stream:
        best = json.load(stream)
    assert best["step"] == best_step
    assert best["miou"] == pytest.approx(metrics[best_step]["miou"], abs=1e-7)
    # Only the newest checkpoint is left in the logdir; the best is kept beside it.
    state = tf.train.get_checkpoint_state(logdir)
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == ["model.ckpt-4"]
    best_dir = os.path.join(logdir, "best")
    assert checkpoint_utils.checkpoint_step(tf.train.latest_checkpoint(best_dir)) == best_step
    # eval.py reads it and scores it the same.
    oracle = eval_loop.evaluate_checkpoint(
        config, best_dir, str(tmp_path), eval_loop.EvalOptions(num_examples=2)
    )
    _assert_same_results(metrics[best_step], oracle)


def test_summaries_are_eval_py_s(run):
    _, logdir, _ = run
    metrics = _metrics(logdir)
    seen = {}
    for path in glob.glob(os.path.join(logdir, "eval", "events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.tag == "EvalMetrics/mIoU":
                    seen[event.step] = float(tf.make_ndarray(value.tensor))
    assert sorted(seen) == [2, 4]
    for step, miou in seen.items():
        assert miou == pytest.approx(metrics[step]["miou"], abs=1e-6)


def test_flags_and_options(tiny_config_path, tmp_path):
    values = flags.FlagValues()
    train_flags.define_flags(flag_values=values)
    values(["train.py", "--config_path=c", "--logdir=l"])
    defaults = train_flags.options_from_flags(values)
    assert defaults.eval_every_n_steps == 0  # off by default
    values = flags.FlagValues()
    train_flags.define_flags(mem_saving=True, flag_values=values)
    args = ["--eval_every_n_steps=50", "--eval_num_examples=7", "--eval_dir=/tmp/ev"]
    values(["train_mem_saving.py", "--config_path=c", "--logdir=l", *args])
    options = train_flags.options_from_flags(values, mem_saving=True)
    assert (options.eval_every_n_steps, options.eval_num_examples) == (50, 7)
    assert options.eval_dir == "/tmp/ev"
    with pytest.raises(trainer.TrainError, match="--eval_every_n_steps must be >= 0"):
        dataclasses.replace(options, eval_every_n_steps=-1)
    config = config_util.load_pipeline_config(tiny_config_path)
    config.ClearField("eval_input_reader")
    with pytest.raises(config_util.ConfigError, match="no eval_input_reader"):
        eval_loop.build_eval_hook(config, str(tmp_path), options)


def test_evaluating_does_not_change_a_seeded_run(run, tmp_path):
    result, logdir, config = run
    plain = trainer.train(config, str(tmp_path), dataclasses.replace(RUN, eval_every_n_steps=0))
    assert plain.loss == result.loss
    ours = checkpoint_utils.read_named_tensors(result.checkpoint_path)
    theirs = checkpoint_utils.read_named_tensors(plain.checkpoint_path)
    assert ours.keys() == theirs.keys()
    for name, value in theirs.items():
        np.testing.assert_array_equal(ours[name], value, err_msg=name)
    assert not os.path.exists(os.path.join(str(tmp_path), "eval"))
