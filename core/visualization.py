"""Colouring segmentation maps and composing overlays, in numpy.

Class ids are coloured with a palette: one RGB colour per class id, by default the official
Cityscapes palette (train-id order); pass a dataset's ``DatasetMetadata.palette`` for others.
Ids outside the palette, the ignore label included, are drawn black.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from core import file_utils
from core.datasets.cityscapes import CITYSCAPES_PALETTE

IGNORE_COLOUR = (0, 0, 0)


def palette_lut(palette: Sequence[Sequence[int]] = CITYSCAPES_PALETTE) -> np.ndarray:
    """A ``[256, 3]`` uint8 lookup table: class id -> RGB; unknown ids are black."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[:] = IGNORE_COLOUR
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return table


_LUT = palette_lut()


def colorize(
    labels: np.ndarray, palette: Sequence[Sequence[int]] = CITYSCAPES_PALETTE
) -> np.ndarray:
    """Colours a class-id map.

    Args:
      labels: integer class ids, ``[height, width]`` or ``[height, width, 1]``,
        values in [0, 255].
      palette: one RGB colour per class id.

    Returns:
      ``[height, width, 3]`` uint8 RGB.
    """
    labels = np.asarray(labels)
    if labels.ndim == 3 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    if labels.ndim != 2:
        raise ValueError(f"colorize expects a [height, width] label map, got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"class ids must be in [0, 255], got [{labels.min()}, {labels.max()}]")
    table = _LUT if palette is CITYSCAPES_PALETTE else palette_lut(palette)
    # np.take along the table's rows is about 3.5x faster than fancy indexing (a 512x1024 map:
    # 1.3 ms instead of 4.8), which matters for video, where every frame is coloured.
    return np.take(table, labels.astype(np.uint8), axis=0)


def blend(
    image: np.ndarray,
    labels: np.ndarray,
    alpha: float = 0.5,
    palette: Sequence[Sequence[int]] = CITYSCAPES_PALETTE,
) -> np.ndarray:
    """Blends the coloured labels over an RGB image.

    Args:
      image: ``[height, width, 3]`` RGB, values in [0, 255].
      labels: ``[height, width]`` class ids of the same size.
      alpha: weight of the label colours, in [0, 1].
      palette: one RGB colour per class id.

    Returns:
      ``[height, width, 3]`` uint8 RGB.
    """
    image = np.asarray(image)
    colours = colorize(labels, palette)
    if image.shape[:2] != colours.shape[:2]:
        raise ValueError(
            f"image size {image.shape[:2]} differs from label size {colours.shape[:2]}"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    mixed = (1.0 - alpha) * image.astype(np.float32) + alpha * colours.astype(np.float32)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def side_by_side(
    *panels: np.ndarray, gap: int = 4, palette: Sequence[Sequence[int]] = CITYSCAPES_PALETTE
) -> np.ndarray:
    """Concatenates same-height RGB panels left to right with white gaps.

    Panels that are ``[height, width]`` class-id maps are coloured with ``palette``.
    """
    if not panels:
        raise ValueError("side_by_side needs at least one panel")
    height = panels[0].shape[0]
    pieces = []
    for index, panel in enumerate(panels):
        panel = np.asarray(panel)
        if panel.ndim == 2:
            panel = colorize(panel, palette)
        if panel.shape[0] != height:
            raise ValueError(f"panel {index} has height {panel.shape[0]}, expected {height}")
        if index:
            pieces.append(np.full((height, gap, 3), 255, dtype=np.uint8))
        pieces.append(panel.astype(np.uint8))
    return np.concatenate(pieces, axis=1)


def save_png(array: np.ndarray, path: str) -> str:
    """Writes a uint8 image as PNG atomically (a reader never sees a partial file)."""
    with file_utils.atomic_path(path, suffix=".png") as temp:
        Image.fromarray(np.asarray(array, dtype=np.uint8)).save(temp, format="PNG")
    return path
