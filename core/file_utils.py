"""Atomic file writes: a reader never sees a partial file under the final name.

Every output the project writes (configs, metrics, images, exports) goes to a
temporary file in the destination folder first and is renamed over the final
name only once complete; on failure the temporary file is removed and any
previous file is left untouched. Files get the usual permissions (0666 minus
the umask), not the 0600 of ``tempfile.mkstemp``.

Symbolic links: a symlinked output *folder* is followed (the file lands in the link's
target, as with any ``open``); a symlink at the output *file* name is replaced by the new
file, never written through, so a link cannot send a write outside the output folder.
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


class PendingFile:
    """A temporary file beside ``path`` that becomes ``path`` on :meth:`commit`.

    For writers that open the file themselves and finish later (e.g. a video encoder); a
    ``with`` block is simpler through :func:`atomic_path`. The temporary name starts with
    ``.tmp-`` in the destination folder, so the final rename is atomic.

    Args:
      path: the final file name; its folder is created if missing.
      suffix: suffix of the temporary name (some writers pick the format from it).
    """

    def __init__(self, path: str, suffix: str = ""):
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        handle, self.temp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)
        os.close(handle)
        self.path = path

    def commit(self) -> str:
        """Gives the file the usual permissions and renames it onto ``path``; returns ``path``."""
        os.chmod(self.temp, _default_mode())
        os.replace(self.temp, self.path)
        return self.path

    def discard(self) -> None:
        """Removes the temporary file; ``path`` (and any earlier file there) is untouched."""
        if os.path.exists(self.temp):
            os.remove(self.temp)


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = "") -> Iterator[str]:
    """Yields a temporary path beside ``path``; renames it onto ``path`` on success.

    Args:
      path: the final file name; its folder is created if missing.
      suffix: suffix of the temporary name (some writers pick the format from it).
    """
    pending = PendingFile(path, suffix)
    try:
        yield pending.temp
        pending.commit()
    except BaseException:
        pending.discard()
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
