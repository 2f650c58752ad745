"""recalibrate_bn.py end to end on the tiny ICNet: only the BN moving statistics change.

The script runs in a subprocess (absl flags are process-global).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from builders import config_util, model_builder
from core.checkpoints import checkpoint_utils

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MOVING = ("/BatchNorm/moving_mean", "/BatchNorm/moving_variance")


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "recalibrate_bn.py"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _variables(prefix: str) -> dict[str, np.ndarray]:
    """Every model variable of a checkpoint by slim name, read with TF's own reader.

    Keys look like ``model_variables/<scope with '/' written '.S'>/.ATTRIBUTES/VARIABLE_VALUE``.
    """
    reader = tf.train.load_checkpoint(prefix)
    head, tail = checkpoint_utils.MODEL_VARIABLES + "/", "/.ATTRIBUTES/VARIABLE_VALUE"
    return {
        key[len(head) : -len(tail)].replace(".S", "/"): reader.get_tensor(key)
        for key in reader.get_variable_to_shape_map()
        if key.startswith(head) and key.endswith(tail)
    }


def test_writes_a_checkpoint_with_only_new_moving_statistics(tiny_config_path, tmp_path):
    model = model_builder.build(config_util.load_pipeline_config(tiny_config_path).model)
    model.build_variables()
    prefix = str(tmp_path / "train" / "model.ckpt-3")
    checkpoint_utils.make_checkpoint(model).write(prefix)
    output_dir = tmp_path / "recalibrated"

    run = _run(
        f"--config_path={tiny_config_path}",
        f"--input_checkpoint={prefix}",
        f"--output_dir={output_dir}",
        "--num_batches=2",
    )

    assert run.returncode == 0, run.stderr[-3000:]
    assert "on 4 images" in run.stdout  # 2 batches of train_config.batch_size 2
    assert (output_dir / "pipeline.config").exists()
    before = _variables(prefix)
    after = _variables(str(output_dir / "model.ckpt"))
    assert after.keys() == before.keys()
    moving = {key for key in before if any(part in key for part in MOVING)}
    assert moving
    for key in before:
        if key in moving:
            # Fresh moving statistics are 0 and 1; real activations have neither.
            assert not np.allclose(after[key], before[key]), key
        else:
            np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    # Variances are variances: finite and non-negative.
    variances = [after[key] for key in moving if key.endswith("moving_variance")]
    assert variances and all(np.all(v >= 0) and np.all(np.isfinite(v)) for v in variances)


def test_bad_flags_are_one_clear_error(tiny_config_path, tmp_path):
    missing = _run(
        f"--config_path={tiny_config_path}",
        f"--input_checkpoint={tmp_path / 'nothing'}",
        f"--output_dir={tmp_path / 'out'}",
    )
    assert missing.returncode != 0
    last = missing.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "nothing" in last
    assert "Traceback" not in missing.stderr

    zero = _run(
        f"--config_path={tiny_config_path}",
        f"--input_checkpoint={tmp_path / 'nothing'}",
        f"--output_dir={tmp_path / 'out'}",
        "--num_batches=0",
    )
    assert zero.returncode != 0
    assert zero.stderr.strip().splitlines()[-1] == (
        "error: --num_batches must be at least 1, got 0."
    )
    assert not (tmp_path / "out").exists()
