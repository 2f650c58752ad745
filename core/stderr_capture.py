"""Capturing what native code writes to the process's stderr (file descriptor 2).

TensorFlow's C++ runtime and its converters (TFLite, tf2onnx's TF import) write straight to
file descriptor 2: ``sys.stderr`` redirection, ``contextlib.redirect_stderr`` and the
``TF_CPP_MIN_LOG_LEVEL`` variable do not reach all of it (in TF 2.21 the oneDNN notice and
absl's ``WARNING: All log messages before absl::InitializeLog() is called`` are printed before
that variable is read). :func:`captured_stderr` points descriptor 2 at a temporary file for the
duration of a block, so the text can be dropped, shown on request, or shown when the block fails.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import tempfile
from collections.abc import Iterator


@dataclasses.dataclass
class CapturedText:
    """The text written to descriptor 2 inside a :func:`captured_stderr` block.

    Attributes:
      text: everything written (decoded as UTF-8, bad bytes replaced); set when the block ends.
    """

    text: str = ""


def _flush_python_streams() -> None:
    # Text buffered by Python before the swap must land where it was meant to go.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


@contextlib.contextmanager
def captured_stderr(replay: bool = False) -> Iterator[CapturedText]:
    """Sends descriptor 2 to a temporary file for the block; yields what was written.

    Args:
      replay: write the captured text back to stderr when the block ends (``--verbose``). It is
        always written back when the block raises, so a failure keeps its native context.

    Yields:
      A :class:`CapturedText` whose ``text`` is filled in when the block ends.
    """
    captured = CapturedText()
    _flush_python_streams()
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 (a daemon): nothing to capture
        yield captured
        return
    failed = False
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        except BaseException:
            failed = True
            raise
        finally:
            _flush_python_streams()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", "replace")
            if (replay or failed) and captured.text:
                sys.stderr.write(captured.text)
                sys.stderr.flush()
