"""What a killed save can leave in a checkpoint directory, and its removal; crash-test pauses.

A checkpoint ``<dir>/<name>-<N>`` is present when its ``.index`` file is. ``tf.train``'s save
writes the data files in a ``<prefix>_temp`` folder, renames them into place, then writes the
``.index`` under its final name (not atomically), and only then records the prefix in the
``checkpoint`` state file (atomically). So the state file only ever names complete checkpoints,
and a process killed inside a save can leave:

* a ``<prefix>_temp`` folder;
* data files without an ``.index``, or a truncated ``.index`` (an unreadable checkpoint);
* when killed while old checkpoints are deleted, a listed checkpoint missing a file.

:func:`remove_incomplete_checkpoints` removes all of these (and drops a broken checkpoint from
the state file); the checkpoint hook runs it before its first save, so after a restart no
checkpoint in the directory is unreadable. Complete checkpoints are never removed.

:func:`pause_point` is a test hook: inert unless the environment variable ``FSS_TEST_PAUSE_AT``
names the point, in which case the process creates the marker file ``FSS_TEST_PAUSE_MARKER`` and
waits to be killed, so a crash test can land a SIGKILL at an exact place (inside a save).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import time

import tensorflow as tf
from absl import logging
from google.protobuf import text_format
from tensorflow.python.checkpoint import checkpoint_management

from core import file_utils

PAUSE_ENV = "FSS_TEST_PAUSE_AT"
MARKER_ENV = "FSS_TEST_PAUSE_MARKER"
STATE_NAME = "checkpoint"
_DATA = re.compile(r"\.data-(\d{5})-of-(\d{5})$")


def pause_point(name: str) -> None:
    """Test hook: waits to be killed when ``$FSS_TEST_PAUSE_AT == name``; else returns at once.

    Args:
      name: the point, e.g. ``checkpoint_write:3`` (the files of step 3 written, not yet listed
        in the state file) or ``export_commit``.
    """
    if os.environ.get(PAUSE_ENV) != name:
        return
    marker = os.environ.get(MARKER_ENV)
    logging.warning("Paused at test point %s (%s is set); waiting to be killed.", name, PAUSE_ENV)
    if marker:
        file_utils.atomic_write_text(marker, name)
    while True:  # only a signal ends the wait
        time.sleep(1.0)


def _is_complete(prefix: str) -> bool:
    """Whether the checkpoint's index opens and every data shard it needs is there."""
    shards = [_DATA.search(path) for path in glob.glob(glob.escape(prefix) + ".data-*")]
    counts = {int(match.group(2)) for match in shards if match}
    if len(counts) != 1 or len(shards) != next(iter(counts)):
        return False
    try:
        tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError):
        return False
    return True


def _remove_files(prefix: str) -> None:
    for path in glob.glob(glob.escape(prefix) + ".*"):
        os.remove(path)


def _read_state(directory: str):
    path = os.path.join(directory, STATE_NAME)
    if not os.path.exists(path):
        return None
    state = checkpoint_management.CheckpointState()
    with open(path, encoding="utf-8") as stream:
        try:
            text_format.Merge(stream.read(), state)
        except text_format.ParseError:
            return None  # left for tf.train to report
    return state


def _drop_from_state(directory: str, removed: set[str]) -> None:
    """Rewrites the state file without the removed prefixes (relative names kept relative)."""
    state = _read_state(directory)
    if state is None:
        return

    def gone(path: str) -> bool:
        return os.path.basename(path) in removed

    paths = list(state.all_model_checkpoint_paths)
    stamps = list(state.all_model_checkpoint_timestamps)
    keep = [index for index, path in enumerate(paths) if not gone(path)]
    if len(keep) == len(paths) and not gone(state.model_checkpoint_path):
        return
    del state.all_model_checkpoint_paths[:]
    del state.all_model_checkpoint_timestamps[:]
    state.all_model_checkpoint_paths.extend(paths[index] for index in keep)
    if len(stamps) == len(paths):  # the timestamps run parallel to the paths
        state.all_model_checkpoint_timestamps.extend(stamps[index] for index in keep)
    if gone(state.model_checkpoint_path):
        state.model_checkpoint_path = paths[keep[-1]] if keep else ""
    file_utils.atomic_write_text(
        os.path.join(directory, STATE_NAME), text_format.MessageToString(state)
    )


def remove_incomplete_checkpoints(directory: str, checkpoint_name: str = "model.ckpt") -> list[str]:
    """Removes what an interrupted save of ``<directory>/<checkpoint_name>-<N>`` left behind.

    Args:
      directory: a training directory (nothing happens when it does not exist).
      checkpoint_name: the checkpoints' prefix, e.g. ``model.ckpt``.

    Returns:
      The prefixes (and ``_temp`` folders) removed, sorted.
    """
    if not os.path.isdir(directory):
        return []
    base = glob.escape(os.path.join(directory, checkpoint_name))
    removed = []
    for folder in glob.glob(base + "-*_temp"):
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    prefixes = {path[: -len(".index")] for path in glob.glob(base + "-*.index")} | {
        _DATA.sub("", path) for path in glob.glob(base + "-*.data-*")
    }
    broken = sorted(prefix for prefix in prefixes if not _is_complete(prefix))
    for prefix in broken:
        _remove_files(prefix)
    if broken:
        _drop_from_state(directory, {os.path.basename(prefix) for prefix in broken})
    removed.extend(broken)
    if removed:
        logging.warning(
            "Removed what an interrupted save left in %s: %s", directory, ", ".join(removed)
        )
    return sorted(removed)


__all__ = ["MARKER_ENV", "PAUSE_ENV", "pause_point", "remove_incomplete_checkpoints"]
