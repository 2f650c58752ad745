"""The export's atomic output directory: files are staged, then committed all at once.

Every file of an export is first written into a hidden staging directory inside ``output_dir``
and moved to its final name (``os.replace``, atomic) only after *all* requested formats were
written, so a failed export leaves the previous export untouched and never a partial file under
a final name. An entry may be nested (``saved_model/3``, a TF Serving version): it is moved into
its parent, which is created if needed, and the other entries of that parent (older versions)
are kept.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from collections.abc import Sequence

from absl import logging

from core import file_utils
from core.checkpoints.crash_safety import pause_point
from core.deploy.deploy_graph import ExportError

SAVED_MODEL_DIR = "saved_model"
STAGING_PREFIX = ".export-staging-"
COMMIT_NAME = ".commit"
ASIDE_INFIX = ".old-"
# Where a commit sets directories aside (see _aside_path), and which names it sets aside there:
# the SavedModel, and the TF Serving versions inside it.
_ASIDE_PARENTS = (("", lambda name: name == "saved_model"), ("saved_model", str.isdigit))


class Staging:
    """A hidden directory in ``output_dir`` where files are written before being committed.

    ``commit`` first records the staged names in a ``.commit`` file (the export is complete),
    then moves each staged entry to its final name with ``os.replace`` (atomic on one
    filesystem). A directory (the SavedModel) cannot replace a non-empty one, so the old one is
    first renamed aside and deleted after the new one is in place: a reader sees either the old
    or the new SavedModel, never a partial one. A process killed before the ``.commit`` file
    leaves the previous export as it was; one killed while moving (milliseconds) leaves a mix
    of old and new files, which the next export into the directory completes first
    (:func:`recover_interrupted_export`).
    """

    def __init__(self, output_dir: str):
        os.makedirs(output_dir, exist_ok=True)
        recover_interrupted_export(output_dir)
        self.output_dir = output_dir
        self.directory = tempfile.mkdtemp(dir=output_dir, prefix=STAGING_PREFIX)
        self._entries: list[str] = []

    def path(self, name: str) -> str:
        """Staging path of an entry that will be committed as ``output_dir/name``."""
        self._entries.append(name)
        return os.path.join(self.directory, name)

    @property
    def entries(self) -> tuple[str, ...]:
        """Names staged so far."""
        return tuple(self._entries)

    def commit(self) -> list[str]:
        """Moves the staged entries into place, each atomically; returns their final paths."""
        pause_point("export_commit")  # a crash test's kill point; inert in normal runs
        file_utils.atomic_write_text(
            os.path.join(self.directory, COMMIT_NAME), "\n".join(self._entries)
        )
        return move_into_place(self.directory, self.output_dir, self._entries)

    def cleanup(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def _aside_path(target: str) -> str:
    """A fresh hidden name beside ``target`` (``.<name>.old-XXXX``) to set it aside under."""
    parent, name = os.path.split(target)
    aside = tempfile.mkdtemp(dir=parent, prefix=f".{name}{ASIDE_INFIX}")
    os.rmdir(aside)
    return aside


def move_into_place(staging: str, output_dir: str, names: Sequence[str]) -> list[str]:
    """Moves each staged entry ``names[i]`` to ``output_dir/names[i]``; returns the targets."""
    final_paths = []
    # The checkpoint index is what marks a checkpoint as present; move it last.
    for name in sorted(names, key=lambda name: name.endswith(".index")):
        source = os.path.join(staging, name)
        target = os.path.join(output_dir, name)
        if os.path.isdir(source):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            aside = None
            if os.path.exists(target):
                aside = _aside_path(target)
                os.replace(target, aside)
            os.replace(source, target)
            if aside:
                shutil.rmtree(aside, ignore_errors=True)
        elif os.path.exists(source):
            os.replace(source, target)
        final_paths.append(target)
    return final_paths


def recover_interrupted_export(output_dir: str) -> None:
    """Completes or discards what a killed export left in ``output_dir``.

    A staging directory with its ``.commit`` file was complete: its remaining entries are moved
    into place. One without was interrupted while writing: it is deleted. A directory set aside
    by a commit is deleted, or put back if nothing took its place.
    """
    for staging in sorted(glob.glob(os.path.join(glob.escape(output_dir), STAGING_PREFIX + "*"))):
        marker = os.path.join(staging, COMMIT_NAME)
        if os.path.exists(marker):
            with open(marker, encoding="utf-8") as stream:
                names = [name for name in stream.read().split("\n") if name]
            move_into_place(staging, output_dir, names)
            logging.warning("Completed the export interrupted while moving files: %s", staging)
        shutil.rmtree(staging, ignore_errors=True)
    for parent, is_ours in _ASIDE_PARENTS:
        pattern = os.path.join(glob.escape(os.path.join(output_dir, parent)), f".*{ASIDE_INFIX}*")
        for aside in glob.glob(pattern):
            name = os.path.basename(aside)[1:].rsplit(ASIDE_INFIX, 1)[0]
            if not is_ours(name):
                continue
            target = os.path.join(os.path.dirname(aside), name)
            if os.path.exists(target):
                shutil.rmtree(aside, ignore_errors=True)
            else:
                os.replace(aside, target)


def saved_model_entry(output_dir: str, serving_version: int | None) -> str:
    """``saved_model`` or ``saved_model/<N>``; refuses to mix the two layouts in one folder.

    Raises:
      ExportError: a bad version, or the folder holds the other layout.
    """
    existing = os.path.join(output_dir, SAVED_MODEL_DIR)
    has_model = os.path.exists(os.path.join(existing, "saved_model.pb"))
    versions = os.path.isdir(existing) and any(n.isdigit() for n in os.listdir(existing))
    if serving_version is None:
        if versions and not has_model:
            raise ExportError(
                f"{existing} holds TF Serving versions; pass --serving_version=N to add one, or "
                "choose another --output_dir."
            )
        return SAVED_MODEL_DIR
    if isinstance(serving_version, bool) or not isinstance(serving_version, int):
        raise ExportError(f"--serving_version must be an integer >= 1, got {serving_version!r}.")
    if serving_version < 1:
        raise ExportError(f"--serving_version must be >= 1, got {serving_version}.")
    if has_model:
        raise ExportError(
            f"{existing} holds an unversioned SavedModel; TF Serving needs saved_model/<N>/ "
            "alone. Export without --serving_version, or choose another --output_dir."
        )
    return f"{SAVED_MODEL_DIR}/{serving_version}"
