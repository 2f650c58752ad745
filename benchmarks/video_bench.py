"""End-to-end video inference against the network alone (issue 15 item 2).

Cell ``video/<model>/<size>``: a short video is generated (moving shapes, MPEG-4, at the network's
input size so nothing is resized), then

- *model only*: ``Segmenter.run`` on one frame, repeated (the network's own frame rate);
- *end to end*: ``core.deploy.inference_runner.run_inference`` on the video: decode, inference,
  render and MP4 encode, overlapped by ``core.deploy.video_pipeline``; frames / wall time.

The model-only runs are taken before and after the end-to-end run and averaged, so a change in
the machine's load hits both figures alike.
"""

from __future__ import annotations

import os
import time

import numpy as np

from benchmarks.plan import Results

VIDEO_MODEL = "icnet_0.5"


def video_key(model: str, size: tuple[int, int]) -> str:
    return f"video/{model}/{size[0]}x{size[1]}"


def video_settings(quick: bool) -> tuple[tuple[int, int], int]:
    """(height, width) of the frames and their count."""
    # MPEG-4 needs even sides; frames of another size would go through the resizing graph.
    return ((128, 256), 8) if quick else ((512, 1024), 40)


def write_test_video(path: str, size: tuple[int, int], frames: int, fps: float = 25.0) -> str:
    """An MPEG-4 video of ``frames`` frames [height, width] with a square moving across."""
    import cv2

    height, width = size
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError("OpenCV has no MPEG-4 encoder; the video benchmark needs one.")
    rows, cols = np.mgrid[0:height, 0:width]
    side = max(min(height, width) // 4, 2)
    for index in range(frames):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[..., 0] = (cols * 255 // max(width - 1, 1)).astype(np.uint8)
        frame[..., 1] = (rows * 255 // max(height - 1, 1)).astype(np.uint8)
        left = (index * max(width // frames, 1)) % max(width - side, 1)
        frame[height // 3 : height // 3 + side, left : left + side] = (255, 255, 0)
        writer.write(frame)
    writer.release()
    return path


def _model_fps(segmenter, frame: np.ndarray, runs: int) -> float:
    seconds = []
    for _ in range(runs):
        segmenter.run(frame[np.newaxis])
        seconds.append(segmenter.last_run_seconds)
    return 1.0 / float(np.median(seconds))


def measure_video(
    results: Results, store, model_key: str, work_dir: str, quick: bool, warmup: int = 1
) -> None:
    """Times the network alone and the whole video pipeline on a generated video."""
    from core.deploy.inference_runner import run_inference
    from core.deploy.segmenters import ModelSegmenter

    size, frames = video_settings(quick)
    folder = os.path.join(work_dir, "video")
    os.makedirs(folder, exist_ok=True)
    source = write_test_video(os.path.join(folder, "input.mp4"), size, frames)
    model = store.model(model_key)
    segmenter = ModelSegmenter(model, (1, *size, 3), description=model_key)
    frame = np.zeros((*size, 3), np.uint8)
    for _ in range(warmup + 1):
        segmenter.run(frame[np.newaxis])
    runs = max(frames // 2, 3)
    before = _model_fps(segmenter, frame, runs)
    started = time.perf_counter()
    report = run_inference(segmenter, source, os.path.join(folder, "out"), warmup=0)
    wall = time.perf_counter() - started
    after = _model_fps(segmenter, frame, runs)
    model_fps = (before + after) / 2
    end_to_end = report.frames / wall
    results.set(
        video_key(model_key, size),
        model=model_key,
        size=list(size),
        frames=report.frames,
        model_fps=model_fps,
        model_fps_before=before,
        model_fps_after=after,
        end_to_end_fps=end_to_end,
        end_to_end_s=wall,
        ratio=end_to_end / model_fps,
    )


def video_table(document: dict) -> list[str]:
    """End-to-end fps beside model-only fps (``video/*``)."""
    from benchmarks.markdown import cells_under, status_text, table

    cells = cells_under(document, "video/")
    if not cells:
        return []
    rows = []
    for key, cell in cells.items():
        status = status_text(cell)
        if status:
            rows.append([key.split("/", 1)[1], status, "", "", ""])
            continue
        rows.append(
            [
                f"{cell['model']} at {cell['size'][0]}x{cell['size'][1]}",
                cell["frames"],
                f"{cell['model_fps']:.2f}",
                f"{cell['end_to_end_fps']:.2f}",
                f"{100 * cell['ratio']:.0f}%",
            ]
        )
    header = ["Model", "frames", "model-only fps", "end-to-end fps", "end-to-end / model"]
    return [
        "## Video: end to end vs the network alone",
        "",
        "A generated MPEG-4 video at the network's input size through `inference.py`'s path "
        "(decode, inference, render side by side, encode; the stages overlap in "
        "`core/deploy/video_pipeline.py`), against `Segmenter.run` on one frame (median, "
        "before and after, averaged).",
        "",
        *table(header, rows),
        "",
    ]


def video_task(store, quick: bool, warmup: int):
    """The ``video`` section's task (see :mod:`benchmarks.plan`)."""
    from benchmarks.plan import Task

    size, frames = video_settings(quick)
    return Task(
        f"video: end-to-end vs model-only fps of {VIDEO_MODEL} at {size[0]}x{size[1]}",
        [video_key(VIDEO_MODEL, size)],
        lambda r: measure_video(r, store, VIDEO_MODEL, store.work_dir, quick, warmup),
        5.0 if quick else 60.0,
    )
