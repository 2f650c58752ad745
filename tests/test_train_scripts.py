"""train.py / train_mem_saving.py: flags, their errors, and one real run of each script kind."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from absl import flags

from runners import train_flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _flags(argv: list[str], mem_saving: bool = False) -> flags.FlagValues:
    flag_values = flags.FlagValues()
    train_flags.define_flags(mem_saving=mem_saving, flag_values=flag_values)
    flag_values(["train.py", *argv])
    return flag_values


def test_defaults_and_options():
    plain = _flags(["--config_path=c", "--logdir=l"])
    saving = _flags(["--config_path=c", "--logdir=l", "--checkpoint_nodes=a,b/c"], True)
    assert plain.max_checkpoints_to_keep == 15 and saving.max_checkpoints_to_keep == 50
    assert plain.save_interval_secs == 600 and plain.num_clones == 1
    options = train_flags.options_from_flags(saving, mem_saving=True)
    assert options.gradient_checkpointing and options.checkpoint_nodes == ("a", "b/c")
    assert not train_flags.options_from_flags(plain).gradient_checkpointing
    assert options.use_tf1_momentum
    keras_sgd = _flags(["--config_path=c", "--logdir=l", "--notf1_momentum"])
    assert not train_flags.options_from_flags(keras_sgd).use_tf1_momentum
    assert not options.jit_compile  # XLA stays optional: slower on a CPU
    xla = _flags(["--config_path=c", "--logdir=l", "--jit_compile"])
    assert train_flags.options_from_flags(xla).jit_compile


def test_required_flags():
    with pytest.raises(flags.IllegalFlagValueError, match="logdir"):
        _flags(["--config_path=c"])


def test_bad_config_path_exits_with_reason(tmp_path, caplog):
    # Old TF1 command lines still parse; their distribution flags are ignored with a warning.
    flag_values = _flags(
        [f"--config_path={tmp_path}/nope.config", f"--logdir={tmp_path}/l", "--num_ps_tasks=2"]
    )
    with caplog.at_level(logging.WARNING), pytest.raises(SystemExit) as exit_info:
        train_flags.main(["train.py"], flag_values=flag_values)
    message = str(exit_info.value.code)
    assert message.startswith("train.py: error: config file not found")
    assert "nope.config" in message and "--config_path" in message
    assert "--num_ps_tasks is a TF1 distribution flag and is ignored" in caplog.text


def test_missing_records_exit_with_reason(tiny_config_path, tmp_path):
    override = 'train_input_reader { tf_record_input_reader { input_path: "/no/such-*.record" } }'
    flag_values = _flags(
        [
            f"--config_path={tiny_config_path}",
            f"--logdir={tmp_path}/l",
            f"--config_override={override}",
        ]
    )
    with pytest.raises(SystemExit) as exit_info:
        train_flags.main(["train.py"], flag_values=flag_values)
    assert "/no/such-*.record' matches no files" in str(exit_info.value.code)


def test_unknown_extra_hook_exits_before_training(tiny_config_path, tmp_path):
    flag_values = _flags(
        [f"--config_path={tiny_config_path}", f"--logdir={tmp_path}/l", "--extra_hooks=progres"]
    )
    assert flag_values.extra_hooks == ["progres"]
    with pytest.raises(SystemExit) as exit_info:
        train_flags.main(["train.py"], flag_values=flag_values)
    message = str(exit_info.value.code)
    assert message.startswith("train.py: error: --extra_hooks: unknown training hook 'progres'")
    known = message.split("known training hooks: ")[1].split(".")[0].split(", ")
    assert {"checkpoint", "memory", "nan_guard", "progress", "summaries"} <= set(known)
    assert "Did you mean 'progress'?" in message
    assert not os.path.exists(tmp_path / "l")  # nothing was built or written


def test_train_mem_saving_script_runs_and_logs_memory(tiny_config_path, tmp_path):
    logdir = tmp_path / "train"
    command = [
        sys.executable,
        os.path.join(REPO, "train_mem_saving.py"),
        f"--config_path={tiny_config_path}",
        f"--logdir={logdir}",
        "--config_override=train_config { num_steps: 2 }",
        "--log_memory",
        "--log_every_n_steps=1",
        "--save_summaries_steps=0",
        "--checkpoint_nodes=SharedFeatureExtractor/resnet_v1_50/block4/unit_3/bottleneck_v1/Relu,"
        "CascadeFeatureFusion/Relu",
        "--master=grpc://localhost:2222",
    ]
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    completed = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=REPO, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    log = completed.stderr
    assert "Gradient checkpointing (tf.recompute_grad) of: " in log
    assert "resnet_v1_50/block4, CascadeFeatureFusion" in log
    assert "--master is a TF1 distribution flag and is ignored" in log
    assert "step 2/2 | loss " in log and "steps/s" in log
    assert ("process peak RSS (CPU)" in log) or ("peak GPU memory" in log)
    assert (logdir / "model.ckpt-2.index").exists()
    assert (logdir / "pipeline.config").exists()


def test_train_script_bad_path_is_one_line(tmp_path):
    completed = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "train.py"),
            f"--config_path={tmp_path}/missing.config",
            f"--logdir={tmp_path}/l",
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2"),
        cwd=REPO,
        timeout=120,
    )
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr
    assert "error: config file not found" in completed.stderr
