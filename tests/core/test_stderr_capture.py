"""core.stderr_capture: what native code writes to descriptor 2 is held back, or replayed."""

from __future__ import annotations

import os

import pytest

from core.stderr_capture import captured_stderr


def test_native_writes_are_captured_and_dropped(capfd):
    with captured_stderr() as captured:
        os.write(2, b"native chatter\n")
    os.write(2, b"after\n")
    assert captured.text == "native chatter\n"
    assert capfd.readouterr().err == "after\n"


def test_replayed_with_replay_and_when_the_block_fails(capfd):
    with captured_stderr(replay=True):
        os.write(2, b"shown\n")
    assert capfd.readouterr().err == "shown\n"
    with pytest.raises(RuntimeError), captured_stderr():
        os.write(2, b"context of the failure\n")
        raise RuntimeError("boom")
    assert capfd.readouterr().err == "context of the failure\n"
