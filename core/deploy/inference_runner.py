"""``inference.py``: segments an image, a folder of images or a video and writes the results.

Outputs, per input (names keep the input's relative path and stem):

  default          ``<stem>.png``: the image and its coloured segmentation side by side
                   (``overlay="blend"``: the colours blended over the image);
  ``label_ids``    ``<stem>.png``: a one-channel map of the dataset's official label ids
                   (Cityscapes: train id 0 -> 7, 13 -> 26, ...) when its metadata has them,
                   else of the model's class ids;
  video            ``<stem>.mp4`` (MPEG-4) of overlay frames, or with ``label_ids`` a folder
                   ``<stem>/`` of per-frame label PNGs (``000000.png``, ...).

Latency: ``warmup`` network runs on a blank image first (graph tracing, allocations), then the
network time of every image or frame is recorded (resizing and file I/O excluded, as the
original timed only ``sess.run``) and summarised as median and 90th percentile.

Colours and label ids come from the dataset's :class:`core.datasets.DatasetMetadata` (the
config's ``dataset`` field); without one, :func:`core.datasets.default_metadata` of the model's
class count, and the Cityscapes palette when even that is unknown.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence

import numpy as np
from absl import logging
from PIL import Image

from core import file_utils, visualization
from core.datasets import DatasetMetadata, default_metadata
from core.datasets.cityscapes import CITYSCAPES_PALETTE
from core.deploy import video_pipeline
from core.deploy.segmenters import Segmenter

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm")
OVERLAYS = ("side_by_side", "blend")
VIDEO_SUFFIX = ".mp4"


class InferenceError(ValueError):
    """Inputs or options that cannot be processed; the message names the flag or file."""


@dataclasses.dataclass
class InferenceReport:
    """What a run did.

    Attributes:
      outputs: paths written.
      images: images segmented.
      frames: video frames segmented.
      latencies_ms: network time per image or frame, after warm-up.
    """

    outputs: list[str] = dataclasses.field(default_factory=list)
    images: int = 0
    frames: int = 0
    latencies_ms: list[float] = dataclasses.field(default_factory=list)

    @property
    def median_ms(self) -> float | None:
        return float(np.median(self.latencies_ms)) if self.latencies_ms else None

    @property
    def p90_ms(self) -> float | None:
        return float(np.percentile(self.latencies_ms, 90)) if self.latencies_ms else None

    def summary(self) -> str:
        """One line: counts and latency."""
        if not self.latencies_ms:
            return f"{self.images} image(s), {self.frames} frame(s): nothing timed."
        return (
            f"{self.images} image(s), {self.frames} frame(s); latency per image: median "
            f"{self.median_ms:.1f} ms, p90 {self.p90_ms:.1f} ms over {len(self.latencies_ms)} runs"
        )


def label_id_table(
    num_classes: int | None, metadata: DatasetMetadata | None = None
) -> np.ndarray | None:
    """A [256] uint8 lookup class id -> official label id, or None to keep the model's ids.

    Args:
      num_classes: the model's class count, when known.
      metadata: the dataset; None uses :func:`core.datasets.default_metadata` of
        ``num_classes`` (Cityscapes for 19 classes, no label ids otherwise).
    """
    if metadata is None:
        if num_classes is None:
            return None
        metadata = default_metadata(num_classes)
    return metadata.label_id_lut()


def find_inputs(input_path: str) -> list[tuple[str, str]]:
    """``(path, path relative to the input root)`` of every image or video to process.

    A file is taken as it is (image or video by extension); a directory is walked, in sorted
    order, for .jpg/.jpeg/.png images (case-insensitive), as the original did.

    Raises:
      InferenceError: the path is missing, of an unknown type, or a folder without images.
    """
    if os.path.isfile(input_path):
        if not input_path.lower().endswith(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS):
            raise InferenceError(
                f"--input_path {input_path!r}: unsupported file type; expected an image "
                f"({', '.join(IMAGE_EXTENSIONS)}) or a video ({', '.join(VIDEO_EXTENSIONS)})."
            )
        return [(input_path, os.path.basename(input_path))]
    if not os.path.isdir(input_path):
        raise InferenceError(f"--input_path {input_path!r} does not exist.")
    found = []
    for root, dirs, names in os.walk(input_path):
        dirs.sort()
        for name in sorted(names):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                path = os.path.join(root, name)
                found.append((path, os.path.relpath(path, input_path)))
    if not found:
        raise InferenceError(
            f"--input_path {input_path!r} holds no {'/'.join(IMAGE_EXTENSIONS)} images."
        )
    return found


def read_image(path: str) -> np.ndarray:
    """uint8 RGB [height, width, 3] (grey, palette and RGBA images are converted)."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except OSError as error:
        raise InferenceError(f"cannot read image {path!r}: {error}") from None


def render(
    image: np.ndarray,
    prediction: np.ndarray,
    overlay: str = "side_by_side",
    label_table: np.ndarray | None = None,
    label_ids: bool = False,
    alpha: float = 0.5,
    palette: Sequence[Sequence[int]] = CITYSCAPES_PALETTE,
) -> np.ndarray:
    """The output picture of one image.

    Args:
      image: uint8 RGB [height, width, 3].
      prediction: class ids [height, width], or colours [height, width, 3].
      overlay: "side_by_side" or "blend".
      label_table: train id -> label id lookup for ``label_ids`` (None: ids unchanged).
      label_ids: return the one-channel id map instead of a picture.
      alpha: colour weight of the blend.
      palette: one RGB colour per class id.

    Returns:
      uint8 [height, width] ids, or RGB [height, width(, x2 + gap), 3].
    """
    if label_ids:
        ids = prediction.astype(np.uint8)
        return label_table[ids] if label_table is not None else ids
    colours_out = prediction.ndim == 3  # a model exported with --output_colours
    if overlay == "blend":
        if colours_out:
            mixed = Image.blend(Image.fromarray(image), Image.fromarray(prediction), alpha)
            return np.asarray(mixed)
        return visualization.blend(image, prediction, alpha, palette)
    return visualization.side_by_side(image, prediction, palette=palette)  # colours id maps


def _check_output(source: str, target: str) -> None:
    if os.path.abspath(source) == os.path.abspath(target):
        raise InferenceError(
            f"the output {target!r} would overwrite the input; choose another --output_dir."
        )


def _open_video(path: str) -> tuple[Iterator[np.ndarray], float, int | None]:
    """RGB frames of a video (decoded lazily), its frame rate and frame count (None: unknown).

    OpenCV decodes; it returns BGR.
    """
    import cv2  # video support only; images need no OpenCV

    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise InferenceError(f"cannot open video {path!r} (unknown codec or not a video).")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0) or None

    def frames() -> Iterator[np.ndarray]:
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    return
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()

    return frames(), fps, count


class _VideoWriter:
    """Writes RGB frames to an MP4 under a temporary name, renamed when complete."""

    def __init__(self, path: str, fps: float, size: tuple[int, int]):
        import cv2

        self._cv2 = cv2
        self.path = path
        # The shared atomic writer: the usual permissions (0666 minus umask), renamed at the end.
        self._pending = file_utils.PendingFile(path, suffix=VIDEO_SUFFIX)
        self._temp = self._pending.temp
        self._writer = cv2.VideoWriter(
            self._temp, cv2.VideoWriter_fourcc(*"mp4v"), fps, (size[1], size[0])
        )
        if not self._writer.isOpened():
            self._pending.discard()
            raise InferenceError(f"cannot write video {path!r}: OpenCV has no MPEG-4 encoder.")

    def write(self, frame: np.ndarray) -> None:
        self._writer.write(self._cv2.cvtColor(frame, self._cv2.COLOR_RGB2BGR))

    def close(self, keep: bool) -> None:
        self._writer.release()
        if keep:
            self._pending.commit()
        else:
            self._pending.discard()


def run_inference(
    segmenter: Segmenter,
    input_path: str,
    output_dir: str,
    overlay: str = "side_by_side",
    label_ids: bool = False,
    warmup: int = 2,
    alpha: float = 0.5,
    metadata: DatasetMetadata | None = None,
) -> InferenceReport:
    """Segments every input under ``input_path`` and writes the results to ``output_dir``.

    Args:
      segmenter: any :class:`Segmenter`.
      input_path: an image, a video, or a folder of images.
      output_dir: created if needed; see the module docstring for the names.
      overlay: "side_by_side" (default) or "blend".
      label_ids: write label-id PNGs instead of pictures.
      warmup: untimed network runs before timing, >= 0.
      alpha: colour weight of the blend.
      metadata: the dataset (palette, label ids); None: the default of the model's class
        count (see the module docstring).

    Returns:
      An :class:`InferenceReport`.

    Raises:
      InferenceError: bad options or unreadable inputs, named.
    """
    if overlay not in OVERLAYS:
        raise InferenceError(f"--overlay {overlay!r}: choose one of {', '.join(OVERLAYS)}.")
    if warmup < 0:
        raise InferenceError(f"--warmup must be >= 0, got {warmup}.")
    if label_ids and segmenter.output_colours:
        raise InferenceError(
            "--label_ids needs class ids, but the model outputs colours (exported with "
            "--output_colours); re-export without it or drop --label_ids."
        )
    inputs = find_inputs(input_path)
    if metadata is None and segmenter.num_classes:
        metadata = default_metadata(segmenter.num_classes)
    if metadata is not None and segmenter.num_classes not in (None, metadata.num_classes):
        raise InferenceError(
            f"the model has {segmenter.num_classes} classes but dataset {metadata.name!r} has "
            f"{metadata.num_classes}; use the config the model was trained with."
        )
    palette = metadata.palette if metadata is not None else CITYSCAPES_PALETTE
    table = label_id_table(segmenter.num_classes, metadata) if label_ids else None
    if label_ids and table is None:
        logging.warning(
            "--label_ids: dataset %s has no official label ids; writing the class ids unchanged.",
            repr(metadata.name) if metadata is not None else "(unknown: no config)",
        )
    blank = np.zeros((1, *segmenter.input_size, 3), np.uint8)
    for _ in range(warmup):
        segmenter.run(blank)
    report = InferenceReport()
    options = dict(
        overlay=overlay, label_table=table, label_ids=label_ids, alpha=alpha, palette=palette
    )
    for source, relative in inputs:
        stem = os.path.splitext(os.path.join(output_dir, relative))[0]
        if source.lower().endswith(VIDEO_EXTENSIONS):
            _segment_video(segmenter, source, stem, options, report)
            continue
        image = read_image(source)
        picture = render(image, segmenter(image), **options)
        report.latencies_ms.append(segmenter.last_run_seconds * 1000.0)
        _check_output(source, stem + ".png")
        report.outputs.append(visualization.save_png(picture, stem + ".png"))
        report.images += 1
        logging.info("%s -> %s (%.1f ms)", source, stem + ".png", report.latencies_ms[-1])
    # Callers show report.summary() (inference.py prints it, the demo logs it): logging it here
    # too printed it twice.
    logging.debug("%s", report.summary())
    return report


def _segment_video(
    segmenter: Segmenter, source: str, stem: str, options: dict, report: InferenceReport
) -> None:
    """Segments every frame of a video into an MP4 (the source's frame rate) or a folder of
    label PNGs; decode, inference and encode overlap (:mod:`core.deploy.video_pipeline`)."""
    frames, fps, count = _open_video(source)
    state: dict = {"writer": None, "pngs": []}
    completed = False

    def infer(frame: np.ndarray) -> np.ndarray:
        prediction = segmenter(frame)
        report.latencies_ms.append(segmenter.last_run_seconds * 1000.0)
        return prediction

    def encode(index: int, frame: np.ndarray, prediction: np.ndarray) -> None:
        picture = render(frame, prediction, **options)
        if options["label_ids"]:
            path = os.path.join(stem, f"{index:06d}.png")
            state["pngs"].append(visualization.save_png(picture, path))
            return
        if state["writer"] is None:
            _check_output(source, stem + VIDEO_SUFFIX)
            state["writer"] = _VideoWriter(stem + VIDEO_SUFFIX, fps, picture.shape[:2])
        state["writer"].write(picture)

    try:
        done = video_pipeline.run_pipeline(
            frames, infer, encode, progress=video_pipeline.ProgressLog(source, count)
        )
        completed = True
    except video_pipeline.PipelineError as error:
        if isinstance(error.error, InferenceError):
            raise error.error from None
        raise InferenceError(
            f"video {source!r}: {error}. No output was kept for it; fix the cause and run again."
        ) from error
    finally:
        writer = state["writer"]
        if writer is not None:
            writer.close(keep=completed)
        if not completed:
            for path in state["pngs"]:  # no partial output: a failed video leaves no frames
                os.remove(path)
        frames.close()
    report.outputs.extend(state["pngs"])
    if done == 0:
        raise InferenceError(f"video {source!r} has no readable frames.")
    if writer is not None:
        report.outputs.append(writer.path)
    report.frames += done
    logging.info(
        "%s: %d frame(s) at %.3g fps -> %s", source, done, fps, writer.path if writer else stem
    )
