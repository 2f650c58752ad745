"""A three-stage video pipeline: decode, inference and encode overlap, frames stay in order.

One thread decodes frames into a bounded queue, the calling thread runs the network on them (one
at a time, so their order is kept) into a second bounded queue, and one thread renders and
encodes the results. TensorFlow, TFLite, OpenCV and PIL release the GIL in their kernels, so on a
machine with spare cores the decode and encode of frame i+1 and i-1 hide behind the inference of
frame i: end-to-end frames per second approach the network's own rate. The bounded queues
(``queue_size`` frames each) keep memory flat whatever the video's length.

A failure in any stage stops the others within a fraction of a second and is raised once, as a
:class:`PipelineError` naming the stage and the frame; the caller then discards its partial
output.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from absl import logging

# How often a blocked stage looks whether another one failed.
_POLL_SECONDS = 0.05
_END = object()


class PipelineError(RuntimeError):
    """A stage failed; ``stage`` is "decode", "inference" or "encode", ``frame`` its index."""

    def __init__(self, stage: str, frame: int, error: BaseException):
        super().__init__(f"{stage} failed at frame {frame}: {type(error).__name__}: {error}")
        self.stage = stage
        self.frame = frame
        self.error = error


class ProgressLog:
    """Logs ``done/total``, frames per second and the time left, at most once per ``interval_s``.

    Args:
      name: what is processed, e.g. the video's path.
      total: number of frames, or None when the container does not say.
      interval_s: seconds between two lines (the last frame always logs).
      clock: seconds, monotonic (a parameter for tests).
    """

    def __init__(
        self,
        name: str,
        total: int | None,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.name = name
        self.total = total if total and total > 0 else None
        self.interval_s = interval_s
        self._clock = clock
        self._started = clock()
        self._last = self._started
        self.lines: list[str] = []

    def update(self, done: int, final: bool = False) -> None:
        """Records that ``done`` frames are finished; logs when a line is due."""
        now = self._clock()
        if not final and now - self._last < self.interval_s:
            return
        self._last = now
        elapsed = max(now - self._started, 1e-9)
        fps = done / elapsed
        if self.total:
            left = max(self.total - done, 0) / fps if fps > 0 else float("inf")
            eta = "?" if left == float("inf") else time.strftime("%H:%M:%S", time.gmtime(left))
            line = (
                f"{self.name}: frame {done}/{self.total} ({100 * done / self.total:.0f}%), "
                f"{fps:.1f} fps, ETA {eta}"
            )
        else:
            line = f"{self.name}: frame {done}, {fps:.1f} fps"
        self.lines.append(line)
        logging.info("%s", line)


def run_pipeline(
    frames: Iterable[Any],
    infer: Callable[[Any], Any],
    encode: Callable[[int, Any, Any], None],
    queue_size: int = 4,
    progress: ProgressLog | None = None,
) -> int:
    """Decodes, infers and encodes every frame, the three stages running at once.

    Args:
      frames: yields the decoded frames (e.g. uint8 [height, width, 3]); iterated in a thread.
      infer: frame -> result (e.g. class ids [height, width]); runs in the calling thread.
      encode: ``(index, frame, result)``, called in frame order from a thread.
      queue_size: frames waiting between two stages, >= 1.
      progress: updated after every encoded frame.

    Returns:
      The number of frames encoded.

    Raises:
      PipelineError: a stage raised; the other stages have stopped.
    """
    if queue_size < 1:
        raise ValueError(f"queue_size must be >= 1, got {queue_size}.")
    decoded: queue.Queue = queue.Queue(queue_size)
    inferred: queue.Queue = queue.Queue(queue_size)
    stop = threading.Event()
    failures: list[PipelineError] = []
    counts = {"decode": 0, "encode": 0}

    def fail(stage: str, frame: int, error: BaseException) -> None:
        failures.append(PipelineError(stage, frame, error))
        stop.set()

    def put(target: queue.Queue, item) -> bool:
        while not stop.is_set():
            try:
                target.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def get(source: queue.Queue):
        while not stop.is_set():
            try:
                return source.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
        return _END

    def decode_stage() -> None:
        try:
            for frame in frames:
                if not put(decoded, frame):
                    return
                counts["decode"] += 1
        except Exception as error:  # noqa: BLE001 - re-raised by the caller as PipelineError
            fail("decode", counts["decode"], error)
        put(decoded, _END)

    def encode_stage() -> None:
        while True:
            item = get(inferred)
            if item is _END:
                return
            index, frame, result = item
            try:
                encode(index, frame, result)
            except Exception as error:  # noqa: BLE001 - re-raised by the caller
                fail("encode", index, error)
                return
            counts["encode"] = index + 1
            if progress is not None:
                progress.update(index + 1)

    threads = [
        threading.Thread(target=decode_stage, name="video-decode", daemon=True),
        threading.Thread(target=encode_stage, name="video-encode", daemon=True),
    ]
    for thread in threads:
        thread.start()
    index = 0
    try:
        while True:
            frame = get(decoded)
            if frame is _END:
                break
            try:
                result = infer(frame)
            except Exception as error:  # noqa: BLE001 - re-raised below
                fail("inference", index, error)
                break
            if not put(inferred, (index, frame, result)):
                break
            index += 1
    except BaseException:
        stop.set()  # e.g. Ctrl-C: the other stages end instead of waiting on their queues
        raise
    finally:
        put(inferred, _END)
        if failures:
            stop.set()
        for thread in threads:
            thread.join()
    if failures:
        raise failures[0]
    if progress is not None and counts["encode"]:
        progress.update(counts["encode"], final=True)
    return counts["encode"]
