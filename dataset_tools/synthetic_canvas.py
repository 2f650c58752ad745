"""Drawing primitives of the synthetic scenes: a canvas that paints image and label together.

Every shape is rasterised once into a mask (rectangle, ellipse, polygon); ``paint`` writes the
colour into the image and the class id into the label through that same mask, so labels are
pixel-exact. ``Camera`` is the pinhole projection the scenes are laid out with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

Box = tuple[int, int, int, int]  # y0, y1, x0, x1 (end exclusive)
Region = tuple[Box, "np.ndarray | None"]  # a box and its mask (None: the whole box)


def rgb(*values: float) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def value_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Smooth random field: a coarse Gaussian grid, smoothstep-interpolated to ``[H, W]``."""
    cell = max(cell, 1.0)
    grid = rng.standard_normal((int(height / cell) + 2, int(width / cell) + 2), dtype=np.float32)

    def axis(size: int) -> tuple[np.ndarray, np.ndarray]:
        t = (np.arange(size, dtype=np.float32) + 0.5) / cell
        index = t.astype(np.int64)
        frac = t - index
        return index, frac * frac * (3.0 - 2.0 * frac)

    iy, fy = axis(height)
    ix, fx = axis(width)
    rows = grid[iy] * (1.0 - fy[:, None]) + grid[iy + 1] * fy[:, None]
    return rows[:, ix] * (1.0 - fx) + rows[:, ix + 1] * fx


def frac(x: np.ndarray) -> np.ndarray:
    return x - np.floor(x)


class Canvas:
    """Image, label and shared noise fields, with mask rasterisers and a painter.

    Pixel ``(row, col)`` has its centre at ``(col + 0.5, row + 0.5)`` in the
    continuous ``(x, y)`` coordinates the shapes are given in.
    """

    def __init__(self, height: int, width: int, rng: np.random.Generator) -> None:
        self.height, self.width = height, width
        self.image = np.zeros((height, width, 3), dtype=np.float32)
        self.label = np.zeros((height, width), dtype=np.uint8)
        self.fine = rng.standard_normal((height, width), dtype=np.float32)
        scale = float(max(height, width / 2))
        self.blob = (
            0.6 * value_noise(rng, height, width, scale / 4)
            + 0.4 * value_noise(rng, height, width, scale / 14)
            + 0.3 * value_noise(rng, height, width, scale / 45)
        )

    def box(self, x0: float, y0: float, x1: float, y1: float) -> Box | None:
        """Pixels whose centres lie in ``[x0, x1) x [y0, y1)``, clipped; None if empty."""
        r0 = max(int(np.ceil(y0 - 0.5)), 0)
        r1 = min(int(np.ceil(y1 - 0.5)), self.height)
        c0 = max(int(np.ceil(x0 - 0.5)), 0)
        c1 = min(int(np.ceil(x1 - 0.5)), self.width)
        if r1 <= r0 or c1 <= c0:
            return None
        return r0, r1, c0, c1

    @staticmethod
    def centres(box: Box) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates of a box: ``y`` as ``[h, 1]``, ``x`` as ``[1, w]``."""
        y0, y1, x0, x1 = box
        ys = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5
        xs = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5
        return ys, xs

    def rect(self, x0: float, y0: float, x1: float, y1: float) -> Region | None:
        box = self.box(x0, y0, x1, y1)
        return None if box is None else (box, None)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float) -> Region | None:
        if rx <= 0 or ry <= 0:
            return None
        box = self.box(cx - rx, cy - ry, cx + rx, cy + ry)
        if box is None:
            return None
        ys, xs = self.centres(box)
        mask = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1.0
        return box, mask

    def polygon(self, points: Sequence[tuple[float, float]]) -> Region | None:
        """Even-odd rasterisation of a polygon given as ``(x, y)`` vertices."""
        pts = np.asarray(points, dtype=np.float64)
        box = self.box(pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max())
        if box is None:
            return None
        y0, y1, x0, x1 = box
        ys = np.arange(y0, y1, dtype=np.float64) + 0.5
        xs = np.arange(x0, x1, dtype=np.float64) + 0.5
        inside = np.zeros((y1 - y0, x1 - x0), dtype=bool)
        for (ax, ay), (bx, by) in zip(pts, np.roll(pts, -1, axis=0), strict=True):
            if ay == by:
                continue
            rows = np.nonzero((ay > ys) != (by > ys))[0]
            if rows.size == 0:
                continue
            x_cross = ax + (ys[rows] - ay) * (bx - ax) / (by - ay)
            inside[rows] ^= xs[None, :] < x_cross[:, None]
        return box, inside

    def texture(self, box: Box, base: np.ndarray, fine: float, blob: float) -> np.ndarray:
        """``base`` colour plus pixel noise and value noise: ``[h, w, 3]`` float32."""
        y0, y1, x0, x1 = box
        noise = fine * self.fine[y0:y1, x0:x1] + blob * self.blob[y0:y1, x0:x1]
        return base + noise[:, :, None]

    def paint(self, region: Region | None, colour: np.ndarray, class_id: int | None) -> None:
        """Paints ``colour`` (``[3]`` or ``[h, w, 3]``) and, unless None, the class id."""
        if region is None:
            return
        (y0, y1, x0, x1), mask = region
        if mask is None:
            self.image[y0:y1, x0:x1] = colour
            if class_id is not None:
                self.label[y0:y1, x0:x1] = class_id
            return
        np.copyto(self.image[y0:y1, x0:x1], colour, where=mask[:, :, None])
        if class_id is not None:
            self.label[y0:y1, x0:x1][mask] = class_id

    def shade(self, region: Region | None, factor: float) -> None:
        """Multiplies the image (not the label) by ``factor``: shadows."""
        if region is None:
            return
        (y0, y1, x0, x1), mask = region
        patch = self.image[y0:y1, x0:x1]
        if mask is None:
            patch *= factor
        else:
            patch[mask] *= factor


@dataclasses.dataclass(frozen=True)
class Camera:
    """Pinhole camera at height ``cam_h`` (m) looking along +Z; Y is up, X right."""

    horizon: float  # image row of the horizon
    centre_x: float  # image column of the vanishing point
    focal: float  # focal length in pixels
    cam_h: float

    def project(self, x: float, y: float, z: float) -> tuple[float, float]:
        return (
            self.centre_x + self.focal * x / z,
            self.horizon + self.focal * (self.cam_h - y) / z,
        )
