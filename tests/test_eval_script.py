"""eval.py as a user runs it: from the repository root, in a subprocess."""

import json
import os
import subprocess
import sys

import tensorflow as tf

from builders import config_util, model_builder
from core.checkpoints import checkpoint_utils

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_eval(*flags):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, "eval.py", *flags],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_bad_config_path_gives_a_clear_message(tmp_path):
    missing = str(tmp_path / "missing.config")
    process = _run_eval(
        f"--config_path={missing}", f"--train_dir={tmp_path}", f"--eval_dir={tmp_path / 'eval'}"
    )
    assert process.returncode != 0
    assert f"eval.py: error: config file not found: {missing!r}" in process.stderr
    assert "--config_path" in process.stderr
    assert "Traceback" not in process.stderr


def test_evaluates_all_checkpoints_from_one_and_exits(tiny_config_path, tmp_path):
    config = config_util.load_pipeline_config(tiny_config_path)
    model = model_builder.build(config.model)
    model.build_variables()
    train_dir = str(tmp_path / "train")
    checkpoint = checkpoint_utils.make_checkpoint(model, step=tf.Variable(3, dtype=tf.int64))
    manager = tf.train.CheckpointManager(checkpoint, train_dir, 5, checkpoint_name="model.ckpt")
    manager.save(checkpoint_number=3)

    eval_dir = tmp_path / "eval"
    process = _run_eval(
        f"--config_path={tiny_config_path}",
        f"--train_dir={train_dir}",
        f"--eval_dir={eval_dir}",
        "--evaluate_all_from_checkpoint=model.ckpt-3",
        "--num_examples=1",
        "--config_override=eval_config { ignore_label: 255 }",
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert "mIoU" in process.stderr  # the per-class table is logged
    saved = json.loads((eval_dir / "metrics_3.json").read_text())
    assert saved["step"] == 3 and saved["num_images"] == 1
