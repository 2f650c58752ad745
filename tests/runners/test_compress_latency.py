"""compress.py's latency-target flags: which combinations are refused, and with what message."""

from __future__ import annotations

import pytest

from runners import compress_latency


@pytest.mark.parametrize(
    "args, message",
    [
        ((50.0, 2.0, None, False, (97, 97)), "alternatives; give one"),
        ((50.0, None, 0.5, False, (97, 97)), "--compression_factor are alternatives"),
        ((None, 2.0, None, True, (97, 97)), "drop --soft_apply"),
        ((50.0, None, None, False, None), "needs --latency_input_size H,W"),
        ((-1.0, None, None, False, (97, 97)), "must be positive"),
        ((None, 0.9, None, False, (97, 97)), "must be above 1"),
    ],
)
def test_bad_target_combinations_are_one_clear_error(args, message):
    with pytest.raises(ValueError, match=message):
        compress_latency.check_targets(*args)


def test_a_target_or_none():
    assert compress_latency.check_targets(50.0, None, None, False, (97, 97))
    assert not compress_latency.check_targets(None, None, 0.5, True, None)


class _LoadedMachine:
    """A model's latency is its ``ms``, times the machine's load at the time of the call: the
    load doubles after every timing (another process starting), so single timings mislead."""

    def __init__(self, with_relative: bool):
        self.load = 1.0
        if with_relative:
            self.time_relative = self._time_relative

    def time_model(self, model, input_size):
        measured = model["ms"] * self.load
        self.load *= 2.0
        return measured

    def _time_relative(self, model, reference, input_size):
        # Round-robin: both timed under the same load.
        return model["ms"] / reference["ms"]


def test_relative_measurer_scales_the_ratio_to_the_full_model_by_the_reference():
    built = []

    def build(widths):
        built.append(dict(widths))
        return {"ms": 10.0 + widths["a"] / 4}  # full (a=40): 20 ms; a=8: 12 ms

    timer = _LoadedMachine(with_relative=True)
    measurer = compress_latency.RelativeMeasurer(build, {"a": 40}, 20.0, timer, (8, 8))
    # 12 / 20 of the reference, whatever the load did meanwhile.
    assert measurer({"a": 8}) == pytest.approx(12.0)
    assert measurer({"a": 20}) == pytest.approx(15.0)
    # The full model is built once, as the shared reference; each candidate once.
    assert built == [{"a": 8}, {"a": 40}, {"a": 20}]
    # Against another reference latency (a faster machine at calibration), the same ratio.
    faster = compress_latency.RelativeMeasurer(build, {"a": 40}, 10.0, timer, (8, 8))
    assert faster.model_ms({"ms": 15.0}) == pytest.approx(7.5)


def test_relative_measurer_without_round_robin_times_one_after_the_other():
    timer = _LoadedMachine(with_relative=False)
    measurer = compress_latency.RelativeMeasurer(
        lambda widths: {"ms": float(widths["a"])}, {"a": 20}, 20.0, timer, (8, 8)
    )
    # model at load 1 (10 ms), then the full model at load 2 (40 ms): 20 * 10 / 40.
    assert measurer({"a": 10}) == pytest.approx(5.0)
