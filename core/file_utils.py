"""Atomic file writes: a reader never sees a partial file under the final name.

Every output the project writes (configs, metrics, images, exports) goes to a
temporary file in the destination folder first and is renamed over the final
name only once complete; on failure the temporary file is removed and any
previous file is left untouched. Files get the usual permissions (0666 minus
the umask), not the 0600 of ``tempfile.mkstemp``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = "") -> Iterator[str]:
    """Yields a temporary path beside ``path``; renames it onto ``path`` on success.

    Args:
      path: the final file name; its folder is created if missing.
      suffix: suffix of the temporary name (some writers pick the format from it).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)
    os.close(handle)
    try:
        yield temp
        os.chmod(temp, _default_mode())
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise


def atomic_write_text(path: str, text: str) -> str:
    """Writes UTF-8 text to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as temp, open(temp, "w", encoding="utf-8") as stream:
        stream.write(text)
    return path


def atomic_write_bytes(path: str, data: bytes) -> str:
    """Writes bytes to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as temp, open(temp, "wb") as stream:
        stream.write(data)
    return path
