"""core.data.record_paths: one expansion rule for the input pipeline and the pre-run check.

Expected file lists are written out by hand from the files each test creates.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest

from core.data.record_paths import DATASET_TOOLS_HINT, expand_patterns
from runners import input_checks

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


def _local(patterns):
    return expand_patterns(patterns, exists=os.path.exists, glob=glob.glob)


@pytest.fixture()
def shards(tmp_path):
    """Files a-0, a-1, b-0 (records) and notes.txt in a fresh directory; returns the directory."""
    for name in ("a-0.record", "a-1.record", "b-0.record", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    return tmp_path


def test_missing_file_is_named_with_the_fix(shards):
    missing = str(shards / "c-0.record")
    with pytest.raises(FileNotFoundError) as error:
        _local([str(shards / "a-0.record"), missing])
    assert str(error.value) == (
        f"tf_record_input_reader.input_path {missing!r} matches no files. {DATASET_TOOLS_HINT}"
    )
    assert "dataset_tools/create_tfrecord_from_folders.py" in str(error.value)


def test_glob_that_matches_nothing_is_named(shards):
    pattern = str(shards / "z-*.record")
    with pytest.raises(FileNotFoundError, match=r"'.*z-\*\.record' matches no files"):
        _local([str(shards / "*.record"), pattern])


def test_empty_list_is_a_value_error():
    with pytest.raises(ValueError, match="input_path is empty: no record files to read"):
        _local([])


def test_files_sorted_once_whatever_the_pattern_order(shards):
    a0, a1, b0 = (str(shards / n) for n in ("a-0.record", "a-1.record", "b-0.record"))
    patterns = [b0, str(shards / "a-*.record"), a1, str(shards / "?-0.record"), b0]
    assert _local(patterns) == [a0, a1, b0]


def test_existing_path_with_glob_characters_is_taken_literally(tmp_path):
    # As a glob, "x[1].record" means "x1.record"; the file of that exact name wins.
    literal = tmp_path / "x[1].record"
    literal.write_bytes(b"")
    (tmp_path / "x1.record").write_bytes(b"")
    assert _local([str(literal)]) == [str(literal)]


def test_file_system_functions_are_the_callers():
    # A fake remote file system: only these calls may answer.
    files = {"gs://b/t-0", "gs://b/t-1", "gs://b/v-0"}
    calls = []

    def exists(path):
        calls.append(("exists", path))
        return path in files

    def fake_glob(pattern):
        calls.append(("glob", pattern))
        prefix = pattern.rstrip("*")
        return (f for f in files if f.startswith(prefix))  # any iterable will do

    assert expand_patterns(["gs://b/t-*", "gs://b/v-0"], exists, fake_glob) == [
        "gs://b/t-0",
        "gs://b/t-1",
        "gs://b/v-0",
    ]
    assert calls == [("exists", "gs://b/t-*"), ("glob", "gs://b/t-*"), ("exists", "gs://b/v-0")]


def test_pre_run_check_and_input_pipeline_agree(shards):
    from core.data import input_pipeline  # noqa: PLC0415 - TensorFlow only for this test

    patterns = [str(shards / "b-*.record"), str(shards / "a-?.record")]
    expected = [str(shards / n) for n in ("a-0.record", "a-1.record", "b-0.record")]
    assert input_checks.local_input_paths(patterns) == expected
    assert input_pipeline.expand_input_paths(patterns) == expected
    missing = [str(shards / "none-*")]
    for expand in (input_checks.local_input_paths, input_pipeline.expand_input_paths):
        with pytest.raises(FileNotFoundError) as error:
            expand(missing)
        assert str(error.value).startswith(f"tf_record_input_reader.input_path {missing[0]!r}")
    assert input_checks.local_input_paths(["gs://bucket/x-*"]) is None  # left to the pipeline


def test_modules_do_not_import_tensorflow():
    code = (
        "import sys, core.data.record_paths, runners.input_checks; "
        "sys.exit('tensorflow' in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
