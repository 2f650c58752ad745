"""TrainLoop: the order of hook calls, save requests, errors and Ctrl-C, over a fake step."""

from __future__ import annotations

import math

import pytest

from core.training.loop import HookBase, TrainLoop


class FakeStep:
    """``(iterator, save_request) -> outputs``: total loss ``10 * step``; logs its calls."""

    def __init__(self, events: list[str], fail_at: int | None = None, error=RuntimeError):
        self.events = events
        self.calls = 0
        self.save_requests: list[bool] = []
        self.fail_at = fail_at
        self.error = error

    def __call__(self, iterator, save_request):
        self.calls += 1
        self.save_requests.append(save_request)
        if self.calls == self.fail_at:
            raise self.error("step failed")
        self.events.append("step")
        return {"losses": {"total": 10.0 * self.calls, "logits": 1.0}}


class Recorder(HookBase):
    def __init__(self, name: str, events: list[str]):
        self.name = name
        self.events = events

    def before_train(self):
        self.events.append(f"{self.name}.before_train@{self.loop.step}")

    def before_step(self):
        self.events.append(f"{self.name}.before_step@{self.loop.step}")

    def after_step(self):
        self.events.append(f"{self.name}.after_step@{self.loop.step}")

    def after_train(self):
        error = type(self.loop.error).__name__ if self.loop.error else None
        self.events.append(f"{self.name}.after_train@{self.loop.step}:{error}")


def test_hooks_are_called_in_order_around_each_step():
    events: list[str] = []
    loop = TrainLoop(
        FakeStep(events),
        iterator=None,
        start_step=3,
        num_steps=5,
        hooks=[Recorder("a", events), Recorder("b", events)],
    )
    assert loop.run() == 5
    assert events == [
        "a.before_train@3",
        "b.before_train@3",
        "a.before_step@3",
        "b.before_step@3",
        "step",
        "a.after_step@4",
        "b.after_step@4",
        "a.before_step@4",
        "b.before_step@4",
        "step",
        "a.after_step@5",
        "b.after_step@5",
        "a.after_train@5:None",
        "b.after_train@5:None",
    ]
    # The losses of the last step, as floats.
    assert loop.losses == {"total": 20.0, "logits": 1.0}


def test_a_resumed_run_at_its_end_runs_no_step():
    events: list[str] = []
    loop = TrainLoop(
        FakeStep(events), None, start_step=4, num_steps=4, hooks=[Recorder("a", events)]
    )
    assert loop.run() == 4
    assert events == ["a.before_train@4", "a.after_train@4:None"]
    assert loop.losses == {}


def test_registered_hooks_run_after_the_first_ones_and_see_every_step():
    events: list[str] = []
    seen: list[tuple[int, float]] = []

    class Extra(HookBase):
        def after_step(self):
            seen.append((self.loop.step, self.loop.losses["total"]))

    loop = TrainLoop(FakeStep(events), None, num_steps=3, hooks=[Recorder("a", events)])
    loop.register_hooks([Extra()])
    loop.run()
    assert seen == [(1, 10.0), (2, 20.0), (3, 30.0)]
    assert [hook.loop for hook in loop.hooks] == [loop, loop]
    with pytest.raises(TypeError, match="must subclass HookBase"):
        loop.register_hooks([object()])


def test_after_train_runs_after_a_failed_step_and_sees_the_error():
    events: list[str] = []
    loop = TrainLoop(FakeStep(events, fail_at=2), None, num_steps=5, hooks=[Recorder("a", events)])
    with pytest.raises(RuntimeError, match="step failed"):
        loop.run()
    assert events == [
        "a.before_train@0",
        "a.before_step@0",
        "step",
        "a.after_step@1",
        "a.before_step@1",
        "a.after_train@1:RuntimeError",
    ]


def test_after_train_after_ctrl_c_and_failing_after_train():
    events: list[str] = []

    class BrokenClose(HookBase):
        def after_train(self):
            raise OSError("cannot close")

    hooks = [Recorder("a", events), BrokenClose(), Recorder("b", events)]
    step = FakeStep(events, fail_at=3, error=KeyboardInterrupt)
    loop = TrainLoop(step, None, num_steps=0, hooks=hooks)
    # The failing after_train does not keep "b" from closing; its error replaces Ctrl-C.
    with pytest.raises(OSError, match="cannot close"):
        loop.run()
    assert events[-2:] == ["a.after_train@2:KeyboardInterrupt", "b.after_train@2:KeyboardInterrupt"]
    assert isinstance(loop.error, KeyboardInterrupt)


def test_num_steps_zero_runs_until_a_hook_stops_it():
    class StopAt(HookBase):
        def after_step(self):
            if self.loop.step == 7:
                raise KeyboardInterrupt

    loop = TrainLoop(FakeStep([]), None, num_steps=0, hooks=[StopAt()])
    with pytest.raises(KeyboardInterrupt):
        loop.run()
    assert loop.step == 7
    with pytest.raises(ValueError, match="num_steps must be >= 0"):
        TrainLoop(FakeStep([]), None, num_steps=-1)


def test_save_requests_reach_the_step_and_the_step_decides():
    class EveryOther(HookBase):
        def before_step(self):
            if self.loop.step % 2:
                self.loop.request_save()

        def after_step(self):
            decisions.append(self.loop.should_save)

    decisions: list[bool] = []
    step = FakeStep([])
    TrainLoop(step, None, num_steps=4, hooks=[EveryOther()]).run()
    # Requested before steps 2 and 4 (after odd steps); no "save" output: the request decides.
    assert step.save_requests == [False, True, False, True]
    assert decisions == [False, True, False, True]

    # A step that returns "save" (agreed across workers) overrides this worker's request.
    decisions.clear()
    agreed = TrainLoop(lambda it, request: {"losses": {"total": 1.0}, "save": 1.0}, None, 0, 2)
    agreed.register_hooks([EveryOther()])
    agreed.run()
    assert decisions == [True, True]


def test_learning_rate_is_read_once_per_step():
    calls: list[int] = []

    class AskTwice(HookBase):
        def after_step(self):
            rates.append((self.loop.learning_rate(), self.loop.learning_rate()))

    rates: list[tuple[float, float]] = []

    def rate():
        calls.append(1)
        return 0.1 * len(calls)

    TrainLoop(FakeStep([]), None, 0, 2, [AskTwice()], learning_rate_fn=rate).run()
    assert len(calls) == 2
    assert rates == [(0.1, 0.1), (pytest.approx(0.2), pytest.approx(0.2))]
    no_rate = TrainLoop(FakeStep([]), None, 0, 1)
    assert math.isnan(no_rate.learning_rate())
