"""Tests of the atomic writes."""

import os
import stat

import pytest

from core import file_utils


def test_write_creates_folders_and_normal_permissions(tmp_path):
    path = str(tmp_path / "a" / "b.txt")
    old_umask = os.umask(0o022)
    try:
        file_utils.atomic_write_text(path, "hello")
    finally:
        os.umask(old_umask)
    assert open(path).read() == "hello"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert os.listdir(tmp_path / "a") == ["b.txt"]


def test_failure_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    path = str(tmp_path / "out.bin")
    file_utils.atomic_write_bytes(path, b"old")
    with pytest.raises(RuntimeError):
        with file_utils.atomic_path(path) as temp:
            with open(temp, "wb") as stream:
                stream.write(b"half")
            raise RuntimeError("interrupted")
    assert open(path, "rb").read() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def _with_umask(umask: int, write) -> None:
    old_umask = os.umask(umask)
    try:
        write()
    finally:
        os.umask(old_umask)


def test_pending_file_commits_with_the_umask_mode_or_vanishes(tmp_path):
    path = str(tmp_path / "video.mp4")

    def write():
        pending = file_utils.PendingFile(path, suffix=".mp4")
        assert pending.temp.endswith(".mp4") and os.path.dirname(pending.temp) == str(tmp_path)
        with open(pending.temp, "wb") as stream:
            stream.write(b"frames")
        assert not os.path.exists(path)  # nothing under the final name before the commit
        pending.commit()
        dropped = file_utils.PendingFile(str(tmp_path / "other.mp4"))
        dropped.discard()

    _with_umask(0o027, write)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~0o027  # 0o640, not mkstemp's 0o600
    assert os.listdir(tmp_path) == ["video.mp4"]


def test_a_symlinked_folder_is_followed(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    file_utils.atomic_write_text(str(tmp_path / "link" / "metrics.json"), "{}")
    assert (real / "metrics.json").read_text() == "{}"
    assert os.listdir(real) == ["metrics.json"]


def test_a_symlink_at_the_file_name_is_replaced_not_written_through(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "result.txt").symlink_to(outside)
    file_utils.atomic_write_text(str(out / "result.txt"), "new")
    assert outside.read_text() == "precious"
    assert not (out / "result.txt").is_symlink()
    assert (out / "result.txt").read_text() == "new"
