"""Procedural street scenes with pixel-exact Cityscapes train-id labels.

Each scene is a small pinhole-camera street: a ground plane (road with lane
markings and crossings, paved sidewalks with kerbs, grass verges), facades
along both sides (buildings with windows, walls, fences, hedges) with more
buildings or trees behind them, an optional block closing the street, a
distant skyline, a sky with clouds, and objects standing on the ground, sorted
far to near: trees, poles carrying traffic signs or traffic lights, cars seen
from behind or ahead (with shadows) and people. Sizes follow the perspective,
so objects shrink towards the horizon. Every class is textured (noise, value
noise, windows, tiles, slats) and its colours are jittered per image and per
object, so a model has to use texture, shape and context, not one colour.

Labels are pixel-exact: every shape is rasterised once into a mask and that
mask both paints the image and writes the label, in painter's order. Drawing
is plain numpy; a 256x512 scene takes a few tens of milliseconds. The same
seed gives byte-identical records: example ``i`` of a split is drawn from
``np.random.default_rng([seed, 0 for train / 1 for val, i])`` alone.

Classes drawn (train ids): road 0, sidewalk 1, building 2, wall 3, fence 4,
pole 5, traffic light 6, traffic sign 7, vegetation 8, terrain 9, sky 10,
person 11, car 13. No pixel is left unlabelled (no 255).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import numpy as np

from dataset_tools.synthetic_canvas import Camera, Canvas, frac, rgb

# The class ids and size limits live with the objects; re-exported as this module's interface.
from dataset_tools.synthetic_objects import (
    BUILDING,
    CAR,
    FENCE,
    LIGHT,
    MIN_LIGHT_PX,
    MIN_POLE_PX,
    MIN_SIGN_PX,
    PERSON,
    PERSON_FAR,
    POLE,
    ROAD,
    SIDEWALK,
    SIGN,
    SKY,
    SYNTHETIC_CLASSES,
    TERRAIN,
    VEGETATION,
    WALL,
    ObjectPainter,
)

__all__ = [
    "BUILDING",
    "CAR",
    "FENCE",
    "LIGHT",
    "MIN_LIGHT_PX",
    "MIN_POLE_PX",
    "MIN_SIGN_PX",
    "PERSON",
    "PERSON_FAR",
    "POLE",
    "ROAD",
    "SIDEWALK",
    "SIGN",
    "SKY",
    "SYNTHETIC_CLASSES",
    "TERRAIN",
    "VEGETATION",
    "WALL",
    "generate_scene",
]


@dataclasses.dataclass(frozen=True)
class _Side:
    """One side of the street: ground bands from the kerb outwards and the facade line."""

    sign: float  # -1 left, +1 right
    bands: tuple[tuple[int, float, float], ...]  # (class, |X| from, |X| to)
    facade: float  # |X| of the facade plane


class _Scene(ObjectPainter):
    """Draws one street scene on a canvas."""

    def __init__(self, height: int, width: int, rng: np.random.Generator) -> None:
        self.rng = rng
        self.canvas = Canvas(height, width, rng)
        self.height, self.width = height, width
        self.cam = Camera(
            horizon=height * rng.uniform(0.36, 0.5),
            centre_x=width * rng.uniform(0.4, 0.6),
            focal=width * rng.uniform(0.6, 0.9),
            cam_h=rng.uniform(1.2, 1.7),
        )
        # The camera rides in a lane; the road spans [road_left, road_right] in X.
        self.lane = rng.uniform(2.8, 3.6)
        lanes_left, lanes_right = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        offset = rng.uniform(-0.5, 0.5)
        self.road_left = -self.lane * (lanes_left - 0.5) + offset
        self.road_right = self.lane * (lanes_right - 0.5) + offset
        self.sides = (self._make_side(-1.0, -self.road_left), self._make_side(1.0, self.road_right))
        self.z_end = rng.uniform(55.0, 140.0) if rng.random() < 0.6 else None
        self.z_near = self.cam.focal * self.cam.cam_h / (height - self.cam.horizon)
        # Per-image class colours: jittered around a typical value.
        self.road_colour = rgb(*(rng.uniform(75, 115) + rng.uniform(-6, 6, 3)))
        self.sidewalk_colour = self._pick([(175, 170, 165), (160, 150, 150), (180, 140, 130)], 15)
        self.terrain_colour = self._pick([(120, 140, 70), (140, 130, 80), (100, 125, 60)], 15)
        self.vegetation_colour = self._pick([(60, 100, 35), (75, 115, 45), (50, 85, 40)], 12)

    def _make_side(self, sign: float, kerb: float) -> _Side:
        rng = self.rng
        layouts = (
            ((SIDEWALK, 2.0, 5.0),),
            ((TERRAIN, 1.0, 3.0), (SIDEWALK, 2.0, 4.0)),
            ((SIDEWALK, 1.5, 3.0), (TERRAIN, 2.0, 6.0)),
        )
        bands = []
        edge = kerb
        for class_id, lo, hi in layouts[int(rng.integers(len(layouts)))]:
            width = rng.uniform(lo, hi)
            bands.append((class_id, edge, edge + width))
            edge += width
        return _Side(sign, tuple(bands), edge)

    # ---------------------------------------------------------------- background

    def draw_sky(self) -> None:
        rng, canvas = self.rng, self.canvas
        rows = min(int(np.ceil(self.cam.horizon)), self.height)
        if rows <= 0:
            return
        box = (0, rows, 0, self.width)
        t = (np.arange(rows, dtype=np.float32)[:, None, None] + 0.5) / max(self.cam.horizon, 1.0)
        if rng.random() < 0.25:  # overcast
            top = rgb(*([rng.uniform(150, 190)] * 3)) + rng.uniform(-5, 5, 3).astype(np.float32)
            low = top + rng.uniform(15, 35)
        else:
            top = rgb(rng.uniform(40, 90), rng.uniform(90, 140), rng.uniform(165, 225))
            low = rgb(rng.uniform(165, 215), rng.uniform(190, 225), rng.uniform(215, 245))
        colour = top * (1 - t) + low * t + 2.5 * canvas.fine[:rows, :, None]
        clouds = np.clip((canvas.blob[:rows] - rng.uniform(0.1, 0.6)) * 1.5, 0, 1)
        colour += clouds[:, :, None] * (rgb(235, 235, 240) - colour) * rng.uniform(0.4, 0.9)
        canvas.paint((box, None), colour, SKY)

    def draw_skyline(self) -> None:
        """Distant buildings and tree clumps standing on the horizon."""
        rng, canvas = self.rng, self.canvas
        x, horizon = -5.0, self.cam.horizon
        haze = rgb(150, 160, 175)
        while x < self.width:
            w = self.width * rng.uniform(0.04, 0.15)
            h = self.height * rng.uniform(0.02, 0.12)
            if rng.random() < 0.6:
                region = canvas.rect(x, horizon - h, x + w, horizon + 1)
                if region is not None:
                    base = 0.6 * haze + 0.4 * self._pick([(120, 120, 125), (150, 130, 110)], 15)
                    canvas.paint(region, canvas.texture(region[0], base, 3.0, 6.0), BUILDING)
            else:
                for _ in range(3):
                    r = w * rng.uniform(0.25, 0.45)
                    cx = x + w * rng.uniform(0.2, 0.8)
                    region = canvas.ellipse(cx, horizon - r * 0.5, r, r * rng.uniform(0.6, 1.0))
                    if region is not None:
                        base = 0.4 * haze + 0.6 * self.vegetation_colour
                        canvas.paint(region, canvas.texture(region[0], base, 8.0, 10.0), VEGETATION)
            x += w

    # ---------------------------------------------------------------- ground

    def draw_ground(self) -> None:
        rng, canvas, cam = self.rng, self.canvas, self.cam
        box = canvas.box(0, cam.horizon, self.width, self.height)
        if box is None:
            return
        ys, xs = canvas.centres(box)
        depth = cam.focal * cam.cam_h / np.maximum(ys - cam.horizon, 1e-3)  # [h, 1]
        lateral = (xs - cam.centre_x) * depth / cam.focal  # [h, w]

        label = np.where(lateral < 0, self.sides[0].bands[-1][0], self.sides[1].bands[-1][0])
        label = label.astype(np.uint8)
        for side in self.sides:
            signed = lateral * side.sign
            for class_id, lo, hi in side.bands:
                label[(signed >= lo) & (signed < hi)] = class_id
        on_road = (lateral >= self.road_left) & (lateral < self.road_right)
        label[on_road] = ROAD

        base = np.zeros((256, 3), dtype=np.float32)
        fine = np.zeros(256, dtype=np.float32)
        blob = np.zeros(256, dtype=np.float32)
        base[ROAD], fine[ROAD], blob[ROAD] = self.road_colour, 6.0, 7.0
        base[SIDEWALK], fine[SIDEWALK], blob[SIDEWALK] = self.sidewalk_colour, 6.0, 6.0
        base[TERRAIN], fine[TERRAIN], blob[TERRAIN] = self.terrain_colour, 14.0, 14.0
        y0, y1, x0, x1 = box
        colour = (
            base[label]
            + (fine[label] * canvas.fine[y0:y1, x0:x1])[:, :, None]
            + (blob[label] * canvas.blob[y0:y1, x0:x1])[:, :, None]
        )
        # Grass varies more in green than in red and blue.
        grass = label == TERRAIN
        colour[grass, 1] += 6.0 * canvas.fine[y0:y1, x0:x1][grass]

        # Paving tiles and a bright kerb on sidewalks.
        tile = rng.uniform(0.3, 0.6)
        joints = (frac(lateral / tile) < 0.1) | (frac(depth / tile) < 0.1)
        colour[(label == SIDEWALK) & joints] -= rng.uniform(15, 30)
        for edge in (self.road_left, self.road_right):
            kerb = (np.abs(lateral - edge) < 0.2) & (label == SIDEWALK)
            colour[kerb] += 30.0

        # Lane markings (still road): dashed between lanes, solid near the edges.
        paint = rgb(225, 225, 220) if rng.random() < 0.85 else rgb(225, 190, 60)
        width = rng.uniform(0.1, 0.16)
        lanes = max(int(round((self.road_right - self.road_left) / self.lane)), 1)
        marks = np.zeros(lateral.shape, dtype=bool)
        dash, period = rng.uniform(0.3, 0.5), rng.uniform(6.0, 12.0)
        for k in range(1, lanes):
            line = self.road_left + k * (self.road_right - self.road_left) / lanes
            marks |= (np.abs(lateral - line) < width) & (frac(depth / period) < dash)
        if rng.random() < 0.6:
            for edge in (self.road_left + 0.3, self.road_right - 0.3):
                marks |= np.abs(lateral - edge) < width
        if rng.random() < 0.3:  # zebra crossing
            start = rng.uniform(1.2, 3.0) * self.z_near
            stripes = frac((lateral - self.road_left) / 1.0) < 0.5
            marks |= stripes & (depth > start) & (depth < start + 3.0)
        marks &= on_road
        colour[marks] = paint + 5.0 * canvas.fine[y0:y1, x0:x1][marks][:, None]
        canvas.paint((box, None), colour, None)
        canvas.label[y0:y1, x0:x1] = label

    # ---------------------------------------------------------------- facades

    def _side_segments(self, z_start: float, z_stop: float, tall: bool) -> Iterator[tuple]:
        """Yields ``(z0, z1, kind, height)`` segments of a facade line."""
        rng = self.rng
        z = z_start
        while z < z_stop:
            length = rng.uniform(6.0, 25.0)
            roll = rng.random()
            if tall:
                kind = BUILDING if roll < 0.65 else VEGETATION
                height = rng.uniform(10.0, 35.0) if kind == BUILDING else rng.uniform(6.0, 14.0)
            elif roll < 0.55:
                kind, height = BUILDING, rng.uniform(7.0, 28.0)
            elif roll < 0.67:
                kind, height = WALL, rng.uniform(1.0, 3.0)
            elif roll < 0.8:
                kind, height = FENCE, rng.uniform(1.0, 2.5)
            elif roll < 0.9:
                kind, height = VEGETATION, rng.uniform(1.0, 2.5)
            else:
                kind, height = None, 0.0  # a gap
            yield z, min(z + length, z_stop), kind, height
            z += length

    def _draw_side_plane(self, sign: float, x_plane: float, tall: bool) -> None:
        cam, canvas = self.cam, self.canvas
        z_stop = self.z_end if self.z_end is not None else 250.0
        for z0, z1, kind, height in self._side_segments(0.8, z_stop, tall):
            if kind is None:
                continue
            x = sign * x_plane
            corners = [(x, 0.0, z0), (x, 0.0, z1), (x, height, z1), (x, height, z0)]
            region = canvas.polygon([cam.project(*c) for c in corners])
            if region is None:
                continue
            box = region[0]
            ys, xs = canvas.centres(box)
            offset = xs - cam.centre_x
            offset = np.where(np.abs(offset) < 1e-3, 1e-3 * sign, offset)
            along = cam.focal * x / offset  # depth of the plane at each column, [1, w]
            up = cam.cam_h - (ys - cam.horizon) * along / cam.focal  # [h, w]
            along = np.broadcast_to(along, up.shape)
            canvas.paint(region, self._facade_texture(box, along, up, kind, height), kind)

    def draw_facades(self) -> None:
        rng, cam, canvas = self.rng, self.cam, self.canvas
        for side in self.sides:  # buildings and trees behind the facade line first
            self._draw_side_plane(side.sign, side.facade + rng.uniform(6.0, 20.0), tall=True)
        if self.z_end is not None:  # a block closing the street
            z = self.z_end
            x = (0.0 - cam.centre_x) * z / cam.focal
            x_stop = (self.width - cam.centre_x) * z / cam.focal
            ceiling = cam.cam_h + (cam.horizon - 0.12 * self.height) * z / cam.focal
            while x < x_stop:
                w = rng.uniform(8.0, 25.0)
                height = rng.uniform(0.3, 1.0) * max(ceiling, 3.0)
                (left, top), (right, bottom) = cam.project(x, height, z), cam.project(x + w, 0, z)
                region = canvas.rect(left, top, right, bottom)
                if region is not None:
                    ys, xs = canvas.centres(region[0])
                    up = cam.cam_h - (ys - cam.horizon) * z / cam.focal
                    along = (xs - cam.centre_x) * z / cam.focal
                    shape = (ys.shape[0], xs.shape[1])
                    up, along = np.broadcast_to(up, shape), np.broadcast_to(along, shape)
                    canvas.paint(
                        region,
                        self._facade_texture(region[0], along, up, BUILDING, height),
                        BUILDING,
                    )
                x += w
        for side in self.sides:
            self._draw_side_plane(side.sign, side.facade, tall=False)

    def _depth(self, far: float) -> float:
        """A depth between just below the image bottom and ``far``, favouring near ones."""
        near = self.z_near * 0.9
        far = max(far, near + 1.0)
        return near + (far - near) * self.rng.random() ** 1.3

    def _band_x(self, side: _Side, class_id: int) -> float | None:
        bands = [b for b in side.bands if b[0] == class_id]
        if not bands:
            return None
        _, lo, hi = bands[int(self.rng.integers(len(bands)))]
        return side.sign * self.rng.uniform(lo + 0.3, max(hi - 0.3, lo + 0.31))

    def draw_objects(self) -> None:
        rng = self.rng
        z_limit = self.z_end if self.z_end is not None else 120.0
        objects: list[tuple[float, Callable[[float, float], None], float]] = []
        lanes = max(int(round((self.road_right - self.road_left) / self.lane)), 1)
        lane_w = (self.road_right - self.road_left) / lanes
        for _ in range(int(rng.integers(1, 8))):
            if rng.random() < 0.3:  # parked by the kerb
                x = self.road_left + 1.1 if rng.random() < 0.5 else self.road_right - 1.1
            else:
                x = self.road_left + lane_w * (int(rng.integers(lanes)) + 0.5)
                x += rng.uniform(-0.3, 0.3)
            objects.append((self._depth(min(z_limit, 70.0)), self.draw_car, x))
        for _ in range(int(rng.integers(0, 6)) + (rng.random() < 0.8)):
            side = self.sides[int(rng.integers(2))]
            x = self._band_x(side, SIDEWALK)
            if x is None or rng.random() < 0.15:  # crossing the road
                x = rng.uniform(self.road_left, self.road_right)
            objects.append((self._depth(min(z_limit, PERSON_FAR)), self.draw_person, x))
        for _ in range(int(rng.integers(1, 6))):
            side = self.sides[int(rng.integers(2))]
            x = side.sign * (side.bands[0][1] + rng.uniform(0.3, 0.6))
            objects.append((self._depth(min(z_limit, 35.0)), self.draw_pole, x))
        for _ in range(int(rng.integers(0, 6))):
            side = self.sides[int(rng.integers(2))]
            x = self._band_x(side, TERRAIN)
            if x is None:
                x = side.sign * (side.facade - 0.8)
            objects.append((self._depth(min(z_limit, 60.0)), self.draw_tree, x))
        for z, draw, x in sorted(objects, key=lambda item: -item[0]):
            draw(x, z)

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        self.draw_sky()
        self.draw_skyline()
        self.draw_ground()
        self.draw_facades()
        self.draw_objects()
        rng = self.rng
        # Global exposure and colour cast; labels are untouched.
        gain = rng.uniform(0.8, 1.15) * rng.uniform(0.94, 1.06, 3).astype(np.float32)
        image = self.canvas.image * gain + rng.uniform(-10, 10)
        return np.clip(image + 0.5, 0, 255).astype(np.uint8), self.canvas.label


def generate_scene(
    height: int, width: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draws one synthetic street scene.

    Args:
      height: image height in pixels (any size >= 1; 256 and up looks best).
      width: image width in pixels.
      rng: the only source of randomness; the same generator state gives the same scene.

    Returns:
      ``image``: ``[height, width, 3]`` uint8 RGB; ``label``: ``[height, width]``
      uint8 Cityscapes train ids, a subset of :data:`SYNTHETIC_CLASSES`.
    """
    if height < 1 or width < 1:
        raise ValueError(f"scene size must be positive, got {height}x{width}")
    return _Scene(height, width, rng).render()
