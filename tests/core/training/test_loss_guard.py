"""The NaN/Inf and divergence guard, on hand-computed loss sequences."""

from __future__ import annotations

import math

import pytest
import tensorflow as tf

from core.training.hooks import HOOKS, LossDivergedError, NonFiniteLossError, NonFiniteLossGuard
from core.training.loop import TrainLoop
from tests.core.training.test_hooks import Clock, FakeStep, _checkpoint_hook, _saved_steps


def _run(totals, guard, tmp_path=None):
    clock, weight = Clock(), tf.Variable(0.0)
    hooks = [guard]
    if tmp_path is not None:  # a checkpoint after every step, as with --save_interval_secs=0
        saver = _checkpoint_hook(tmp_path, clock, weight, interval_secs=0)
        guard._checkpoints = lambda: saver.manager.checkpoints
        hooks.append(saver)
    loop = TrainLoop(FakeStep(clock, 1.0, totals, weight), None, 0, len(totals), hooks)
    return loop, loop.run


def test_a_blow_up_stops_the_run_and_names_the_last_sane_checkpoint(tmp_path):
    # Medians: step 5 sees [3, 2, 2.5, 2.2] -> 2.35, 2000 < 2350 passes; step 6 sees
    # [3, 2, 2.5, 2.2, 2000] -> 2.5, and 1e4 > 1000 * 2.5 stops it. Checkpoint 5 holds the
    # weights step 6 computed its loss with; checkpoint 4 the last that gave a sane loss.
    loop, run = _run([3.0, 2.0, 2.5, 2.2, 2000.0, 1e4], NonFiniteLossGuard(), tmp_path)
    with pytest.raises(LossDivergedError) as error:
        run()
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(
        "the total loss diverged at step 6: 1e+04 is over 1000 times the median 2.5 of the "
        "last 5 steps; training stopped and this step's weights were not saved."
    )
    assert f"The last good checkpoint is {tmp_path}/model.ckpt-4;" in message
    assert f"gave this loss, is {tmp_path}/model.ckpt-5." in message
    assert _saved_steps(str(tmp_path)) == [1, 2, 3, 4, 5]  # step 6 not saved
    assert loop.step == 6
    assert isinstance(error.value, NonFiniteLossError)  # caught wherever NaN/Inf is


@pytest.mark.parametrize(
    ("window", "factor", "stops_at"),
    [
        # [1, 5, 9, 60]: over the whole run the median before step 4 is 5, and 60 > 10 * 5;
        # over the last 2 steps it is 7, and 60 < 70.
        (100, 10.0, 4),
        (2, 10.0, None),
        (100, 0.0, None),  # 0: the divergence check is off
        (100, 12.0, None),  # 60 is not over 12 * 5 (strictly greater stops)
    ],
)
def test_the_median_window_and_factor(window, factor, stops_at):
    guard = NonFiniteLossGuard(divergence_factor=factor, window=window)
    _, run = _run([1.0, 5.0, 9.0, 60.0], guard)
    if stops_at is None:
        assert run() == 4
    else:
        with pytest.raises(LossDivergedError, match=f"at step {stops_at}: 60 is over"):
            run()


def test_nan_names_the_checkpoint_before_the_newest(tmp_path):
    _, run = _run([3.0, 2.0, math.inf], NonFiniteLossGuard(), tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"is inf at step 3") as error:
        run()
    assert not isinstance(error.value, LossDivergedError)
    assert f"The last good checkpoint is {tmp_path}/model.ckpt-1;" in str(error.value)
    assert f"is {tmp_path}/model.ckpt-2." in str(error.value)


def test_no_history_no_divergence_and_bad_settings():
    _, run = _run([1e12], NonFiniteLossGuard())  # the first loss has nothing to compare with
    assert run() == 1
    with pytest.raises(ValueError, match="divergence_factor >= 0"):
        NonFiniteLossGuard(divergence_factor=-1.0)
    assert HOOKS.get("nan_guard") is NonFiniteLossGuard
