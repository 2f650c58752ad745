"""EvalHook with a scripted evaluator: when it evaluates, which checkpoint it keeps as the best.

The training step is fake (it sets one weight to the step number), so each checkpoint's weight
names its step and the best checkpoint's content can be checked against the script's argmax.
The real evaluator (eval.py's runner) is driven in tests/runners/test_train_eval.py.
"""

from __future__ import annotations

import json
import os

import pytest
import tensorflow as tf

from core.checkpoints import checkpoint_utils
from core.training.eval_hook import BEST_JSON, EvalHook, read_best
from core.training.hooks import CheckpointHook
from core.training.loop import HookBase, TrainLoop


class _Model:
    """The part of the model contract the checkpoints use: one named weight."""

    def __init__(self):
        self.weight = tf.Variable(0.0)

    def named_variables(self) -> dict[str, tf.Variable]:
        return {"head/weights": self.weight}


class _Step:
    """Sets the weight (and the checkpointed step) to the number of the step just run."""

    def __init__(self, model: _Model, step: tf.Variable):
        self.model, self.step = model, step

    def __call__(self, iterator, save_request):
        self.step.assign_add(1)
        self.model.weight.assign(float(self.step.numpy()))
        return {"losses": {"total": 1.0}}


class _ScriptedEvaluator:
    """Restores a checkpoint into its own model (as eval.py's runner does) and returns the
    scripted mIoU of the step it read from the weight."""

    def __init__(self, mious: dict[int, float | None]):
        self.model = _Model()
        self.mious = mious
        self.calls: list[tuple[str, str]] = []

    def evaluate(self, checkpoint_path: str, eval_dir: str) -> dict:
        checkpoint_utils.restore_model(self.model, checkpoint_path)
        self.calls.append((checkpoint_path, eval_dir))
        step = int(self.model.weight.numpy())
        return {"miou": self.mious[step], "step": step, "json_path": f"{eval_dir}/m_{step}.json"}


class _RewriteAtEnd(HookBase):
    """Changes the weight at the end and saves the final checkpoint again, as the batch-norm
    recalibration of runners.trainer does (it runs before the checkpoint hook)."""

    def __init__(self, model: _Model, value: float):
        self.model, self.value, self.checkpoints = model, value, None

    def after_train(self) -> None:
        if self.loop.error is None:
            self.model.weight.assign(self.value)
            self.checkpoints.save(self.loop.step)


class _FailAt(HookBase):
    def __init__(self, step: int):
        self.step = step

    def after_step(self) -> None:
        if self.loop.step == self.step:
            raise RuntimeError("stop")


def _run(
    logdir, evaluator, every, num_steps, *, start=0, max_to_keep=15, best=True, before=(), after=()
):
    model, step = _Model(), tf.Variable(start, dtype=tf.int64)
    model.weight.assign(float(start))
    checkpoints = CheckpointHook(
        checkpoint_utils.make_checkpoint(model, step=step),
        logdir,
        interval_secs=1e9,  # only the evaluation asks for checkpoints (and the end)
        max_to_keep=max_to_keep,
        step_counter=step,
    )
    hook = EvalHook(
        evaluator,
        every,
        os.path.join(logdir, "eval"),
        best_dir=os.path.join(logdir, "best") if best else None,
    )
    for extra in before:
        extra.model, extra.checkpoints = model, checkpoints
    hooks = [*before, checkpoints, hook, *after]
    TrainLoop(_Step(model, step), None, start, num_steps, hooks).run()
    return hook, checkpoints


def _best_weight(logdir: str) -> float:
    tensors = checkpoint_utils.read_named_tensors(os.path.join(logdir, "best"))
    return float(tensors["head/weights"])


def test_evaluates_every_n_steps_and_the_last_and_keeps_the_best(tmp_path):
    mious = {3: 0.2, 6: 0.5, 9: 0.4, 10: 0.45}
    evaluator = _ScriptedEvaluator(mious)
    logdir = str(tmp_path)
    hook, _ = _run(logdir, evaluator, every=3, num_steps=10)

    # Each evaluated checkpoint is the one of its step, in eval_dir.
    assert [os.path.basename(path) for path, _ in evaluator.calls] == [
        f"model.ckpt-{step}" for step in (3, 6, 9, 10)
    ]
    assert {eval_dir for _, eval_dir in evaluator.calls} == {os.path.join(logdir, "eval")}
    assert hook.history == [(3, 0.2), (6, 0.5), (9, 0.4), (10, 0.45)]
    assert hook.loop.metrics["eval_miou"] == 0.45

    best_step = max(mious, key=mious.get)
    saved = json.loads((tmp_path / "best" / BEST_JSON).read_text())
    assert saved["step"] == best_step == 6 and saved["miou"] == mious[best_step]
    assert saved["metrics_json"].endswith("m_6.json")
    assert read_best(str(tmp_path / "best")) == saved == hook.best
    # The best checkpoint holds the weights of its step; earlier bests were removed.
    assert _best_weight(logdir) == float(best_step)
    assert saved["checkpoint"] == tf.train.latest_checkpoint(str(tmp_path / "best"))
    indexes = sorted(name for name in os.listdir(tmp_path / "best") if name.endswith(".index"))
    assert indexes == ["model.ckpt-6.index"]
    assert checkpoint_utils.checkpoint_step(saved["checkpoint"]) == 6


def test_best_survives_the_rotation_of_the_latest_checkpoints(tmp_path):
    mious = {2: 0.9, 4: 0.1, 6: 0.2}
    _run(str(tmp_path), _ScriptedEvaluator(mious), every=2, num_steps=6, max_to_keep=1)
    state = tf.train.get_checkpoint_state(str(tmp_path))
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == ["model.ckpt-6"]
    assert not os.path.exists(tmp_path / "model.ckpt-2.index")  # rotated out of the logdir
    assert _best_weight(str(tmp_path)) == 2.0  # but kept as the best


def test_undefined_miou_is_never_the_best(tmp_path):
    evaluator = _ScriptedEvaluator({1: None, 2: float("nan"), 3: 0.0, 4: None})
    hook, _ = _run(str(tmp_path), evaluator, every=1, num_steps=4)
    assert hook.history == [(1, None), (2, None), (3, 0.0), (4, None)]
    assert hook.best["step"] == 3 and _best_weight(str(tmp_path)) == 3.0
    # A tie keeps the earlier checkpoint.
    tie = _ScriptedEvaluator({1: 0.5, 2: 0.5})
    hook, _ = _run(str(tmp_path / "tie"), tie, every=1, num_steps=2)
    assert hook.best["step"] == 1


def test_a_resumed_run_keeps_the_better_earlier_best(tmp_path):
    logdir = str(tmp_path)
    _run(logdir, _ScriptedEvaluator({2: 0.7, 4: 0.3}), every=2, num_steps=4)
    hook, _ = _run(logdir, _ScriptedEvaluator({6: 0.6, 8: 0.8}), every=2, num_steps=8, start=4)
    assert hook.history == [(6, 0.6), (8, 0.8)]
    assert hook.best["step"] == 8 and _best_weight(logdir) == 8.0
    # Step 2's best was replaced by step 8's, not by step 6's worse one.
    assert sorted(os.listdir(tmp_path / "best")) == [
        "best.json",
        "checkpoint",
        "model.ckpt-8.data-00000-of-00001",
        "model.ckpt-8.index",
    ]


def test_the_last_step_is_evaluated_as_the_run_leaves_it(tmp_path):
    # A hook before the checkpoint hook rewrites the final checkpoint in after_train: the last
    # evaluation reads the rewritten weights (100), which eval.py would read too.
    evaluator = _ScriptedEvaluator({2: 0.1, 100: 0.6})
    rewrite = _RewriteAtEnd(None, 100.0)
    hook, checkpoints = _run(str(tmp_path), evaluator, every=2, num_steps=3, before=[rewrite])
    assert hook.history == [(2, 0.1), (3, 0.6)]
    assert os.path.basename(evaluator.calls[-1][0]) == "model.ckpt-3"
    assert _best_weight(str(tmp_path)) == 100.0 and hook.best["step"] == 3


def test_a_failed_run_is_not_evaluated_at_its_end(tmp_path):
    evaluator = _ScriptedEvaluator({2: 0.1, 4: 0.2})
    with pytest.raises(RuntimeError, match="stop"):
        _run(str(tmp_path), evaluator, every=2, num_steps=6, after=[_FailAt(6)])
    assert [os.path.basename(path) for path, _ in evaluator.calls] == [
        "model.ckpt-2",
        "model.ckpt-4",
    ]


def test_without_evaluator_or_best_dir(tmp_path):
    # A non-chief worker: the checkpoints of the evaluated steps are still written (collective).
    hook, checkpoints = _run(str(tmp_path / "worker"), None, every=2, num_steps=5)
    state = tf.train.get_checkpoint_state(str(tmp_path / "worker"))
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == [
        f"model.ckpt-{step}" for step in (2, 4, 5)
    ]
    assert hook.history == [] and not os.path.exists(tmp_path / "worker" / "best")
    # No best directory: evaluations only.
    hook, _ = _run(str(tmp_path / "plain"), _ScriptedEvaluator({1: 0.3}), 1, 1, best=False)
    assert hook.history == [(1, 0.3)] and hook.best is None
    assert not os.path.exists(tmp_path / "plain" / "best")


def test_needs_a_checkpoint_hook_before_it_and_a_positive_interval(tmp_path):
    model, step = _Model(), tf.Variable(0, dtype=tf.int64)
    hook = EvalHook(_ScriptedEvaluator({}), 1, str(tmp_path))
    with pytest.raises(ValueError, match="register it after one"):
        TrainLoop(_Step(model, step), None, 0, 1, [hook]).run()
    with pytest.raises(ValueError, match="every_n_steps >= 1, got 0"):
        EvalHook(None, 0, str(tmp_path))
