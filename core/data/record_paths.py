"""Expansion of ``tf_record_input_reader.input_path`` patterns into record files.

One rule serves two callers: the input pipeline (``core/data/input_pipeline.py``, through
``tf.io.gfile`` so remote file systems work) and the pre-run record check
(``runners/input_checks.py``, through ``os.path`` and ``glob`` before TensorFlow is imported).
This module does not import TensorFlow, so that the check stays cheap; the callers pass the file
system functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

DATASET_TOOLS_HINT = (
    "Create the records with dataset_tools/create_cityscapes_tfrecord.py (Cityscapes) or "
    "dataset_tools/create_tfrecord_from_folders.py (your own images and labels), and point "
    "tf_record_input_reader.input_path at them."
)


def expand_patterns(
    patterns: Sequence[str],
    exists: Callable[[str], bool],
    glob: Callable[[str], Iterable[str]],
) -> list[str]:
    """Expands record paths and glob patterns into a sorted list of files.

    Args:
      patterns: file paths or glob patterns (``*``, ``?``, ``[...]``), in any order.
      exists: ``path -> bool``; a pattern naming an existing file is taken as it is, even when it
        contains glob characters (``os.path.exists`` or ``tf.io.gfile.exists``).
      glob: ``pattern -> matching paths`` (``glob.glob`` or ``tf.io.gfile.glob``).

    Returns:
      Every matched file once, sorted by name (not in pattern order).

    Raises:
      ValueError: ``patterns`` is empty.
      FileNotFoundError: a pattern matches no file; the message names the first such pattern.
    """
    if not patterns:
        raise ValueError(
            f"tf_record_input_reader.input_path is empty: no record files to read. "
            f"{DATASET_TOOLS_HINT}"
        )
    files: set[str] = set()
    for pattern in patterns:
        matches = [pattern] if exists(pattern) else list(glob(pattern))
        if not matches:
            raise FileNotFoundError(
                f"tf_record_input_reader.input_path {pattern!r} matches no files. "
                f"{DATASET_TOOLS_HINT}"
            )
        files.update(matches)
    return sorted(files)
