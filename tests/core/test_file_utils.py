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
