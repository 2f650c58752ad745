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
