"""The inference video writer: atomic, with the permissions of every other output."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from core.deploy import inference_runner

cv2 = pytest.importorskip("cv2")


def _write_video(path: str, keep: bool, frames: int = 3) -> None:
    writer = inference_runner._VideoWriter(path, 10.0, (32, 48))
    for index in range(frames):
        writer.write(np.full((32, 48, 3), index * 40, np.uint8))
    assert not os.path.exists(path)  # a reader never sees a partial video
    writer.close(keep=keep)


def test_the_video_gets_0666_minus_the_umask(tmp_path):
    path = str(tmp_path / "clip_segmented.mp4")
    old_umask = os.umask(0o022)
    try:
        _write_video(path, keep=True)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644  # was 0o600 (mkstemp's mode)
    capture = cv2.VideoCapture(path)
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    assert count == 3
    assert os.listdir(tmp_path) == ["clip_segmented.mp4"]


def test_an_unfinished_video_leaves_nothing(tmp_path):
    _write_video(str(tmp_path / "clip.mp4"), keep=False)
    assert os.listdir(tmp_path) == []
