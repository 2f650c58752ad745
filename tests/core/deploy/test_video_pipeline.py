"""Video inference: decode, inference and encode overlap; order, frame rate, failures, progress."""

from __future__ import annotations

import os
import random
import threading
import time

import numpy as np
import pytest

from core.deploy import inference_runner, video_pipeline
from core.deploy.segmenters import Segmenter
from tests.snippets import read_video

cv2 = pytest.importorskip("cv2")

FRAMES, FPS, SIZE, STEP = 12, 7.0, (32, 48), 20


class BrightnessSegmenter(Segmenter):
    """Class id = the frame's grey level / STEP, i.e. the index the test video encodes."""

    def __init__(self):
        super().__init__(SIZE, output_colours=False, num_classes=None, description="brightness")
        self.threads = set()

    def _run(self, batch: np.ndarray) -> np.ndarray:
        self.threads.add(threading.get_ident())
        time.sleep(0.002)  # a network takes time: the other stages run meanwhile
        level = int(round(float(batch.mean()) / STEP))
        return np.full((*batch.shape[:3], 1), level, np.int32)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> str:
    """12 uniform grey frames at 7 fps; frame i has grey level 20 * i."""
    path = str(tmp_path_factory.mktemp("video") / "clip.mp4")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE[::-1])
    for index in range(FRAMES):
        writer.write(np.full((*SIZE, 3), STEP * index, np.uint8))
    writer.release()
    return path


def test_label_frames_come_out_in_order(video, tmp_path):
    segmenter = BrightnessSegmenter()
    report = inference_runner.run_inference(
        segmenter, video, str(tmp_path), label_ids=True, warmup=0
    )
    assert report.frames == FRAMES
    names = sorted(os.listdir(tmp_path / "clip"))
    assert names == [f"{index:06d}.png" for index in range(FRAMES)]
    from PIL import Image

    for index, name in enumerate(names):
        ids = np.asarray(Image.open(tmp_path / "clip" / name))
        assert np.all(ids == index), name  # no dataset: class ids as they are
    assert threading.get_ident() in segmenter.threads  # inference ran in the calling thread


def test_video_keeps_order_and_frame_rate(video, tmp_path):
    report = inference_runner.run_inference(BrightnessSegmenter(), video, str(tmp_path), warmup=0)
    frames, fps = read_video(str(tmp_path / "clip.mp4"))
    assert report.outputs == [str(tmp_path / "clip.mp4")]
    assert fps == pytest.approx(FPS)
    assert len(frames) == FRAMES
    # Side by side: the left half is the input frame, grey level 20 * index (lossy codec).
    levels = [float(frame[:, : SIZE[1]].mean()) for frame in frames]
    np.testing.assert_allclose(levels, [STEP * i for i in range(FRAMES)], atol=STEP / 3)


def test_pipeline_keeps_order_with_uneven_stage_times():
    rng = random.Random(0)
    encoded = []

    def frames():
        for index in range(40):
            time.sleep(rng.random() * 0.002)
            yield index

    def encode(index, frame, result):
        time.sleep(rng.random() * 0.002)
        encoded.append((index, frame, result))

    done = video_pipeline.run_pipeline(frames(), lambda f: f * f, encode, queue_size=2)
    assert done == 40
    assert encoded == [(i, i, i * i) for i in range(40)]


def _failing_frames(video_path: str, fail_at: int, open_video=inference_runner._open_video):
    frames, fps, count = open_video(video_path)

    def broken():
        for index, frame in enumerate(frames):
            if index == fail_at:
                raise OSError("corrupt packet")
            yield frame

    return broken(), fps, count


def test_a_decoder_failure_is_one_error_and_leaves_no_output(video, tmp_path, monkeypatch):
    monkeypatch.setattr(inference_runner, "_open_video", lambda p: _failing_frames(p, 5))
    with pytest.raises(
        inference_runner.InferenceError, match=r"clip.mp4.*decode failed at frame 5.*corrupt"
    ):
        inference_runner.run_inference(BrightnessSegmenter(), video, str(tmp_path), warmup=0)
    assert os.listdir(tmp_path) == []
    with pytest.raises(inference_runner.InferenceError, match="decode failed at frame 5"):
        inference_runner.run_inference(
            BrightnessSegmenter(), video, str(tmp_path), label_ids=True, warmup=0
        )
    assert not os.path.exists(tmp_path / "clip") or os.listdir(tmp_path / "clip") == []


def test_an_encoder_failure_is_one_error_and_leaves_no_output(video, tmp_path, monkeypatch):
    original = inference_runner._VideoWriter.write
    written = []

    def write(self, frame):
        if len(written) == 3:
            raise OSError("disk full")
        written.append(1)
        original(self, frame)

    monkeypatch.setattr(inference_runner._VideoWriter, "write", write)
    with pytest.raises(inference_runner.InferenceError, match="encode failed at frame 3.*disk"):
        inference_runner.run_inference(BrightnessSegmenter(), video, str(tmp_path), warmup=0)
    assert os.listdir(tmp_path) == []  # neither the video nor its temporary file


def test_an_inference_failure_stops_the_other_stages():
    decoded = []

    def frames():
        for index in range(1000):
            decoded.append(index)
            yield index

    def infer(frame):
        if frame == 2:
            raise ValueError("bad frame")
        return frame

    with pytest.raises(video_pipeline.PipelineError, match="inference failed at frame 2") as info:
        video_pipeline.run_pipeline(frames(), infer, lambda *a: None, queue_size=2)
    assert info.value.stage == "inference" and isinstance(info.value.error, ValueError)
    assert len(decoded) < 10  # the decoder stopped: bounded queue, stop signal


def test_progress_lines_every_interval_with_fps_and_eta():
    now = [0.0]
    log = video_pipeline.ProgressLog("clip", total=10, interval_s=1.0, clock=lambda: now[0])
    for done in range(1, 11):
        now[0] += 0.5  # 2 frames per second
        log.update(done)
    log.update(10, final=True)
    assert log.lines[0] == "clip: frame 2/10 (20%), 2.0 fps, ETA 00:00:04"
    assert len(log.lines) == 6  # frames 2, 4, 6, 8, 10 and the final line
    assert log.lines[-1] == "clip: frame 10/10 (100%), 2.0 fps, ETA 00:00:00"
    unknown = video_pipeline.ProgressLog("clip", total=None, clock=lambda: 4.0)
    unknown._started = 0.0
    unknown.update(8, final=True)
    assert unknown.lines == ["clip: frame 8, 2.0 fps"]
