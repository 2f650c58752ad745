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
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from dataset_tools.synthetic_canvas import Box, Camera, Canvas, Region, frac, rgb

ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN = 0, 1, 2, 3, 4, 5, 6, 7
VEGETATION, TERRAIN, SKY, PERSON, CAR = 8, 9, 10, 11, 13
# The train ids a scene can contain (rider, truck, bus, train, motorcycle, bicycle never occur).
SYNTHETIC_CLASSES = (
    ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY, PERSON, CAR
)  # fmt: skip

# Far objects are drawn no smaller than ICNet can represent: its logits are at 1/4 of the
# input, so a 4 px pole is a single logit column and even perfect 1/4-resolution logits,
# upsampled, miss about 30% of its IoU. Poles are therefore at least MIN_POLE_PX wide (thicker
# than life when far), signs and light housings at least MIN_SIGN_PX / MIN_LIGHT_PX across
# (larger than life, shape kept) and people stand at most PERSON_FAR metres away (at 15 m a
# person is at least about 30 px tall). Sizes are in pixels, whatever the scene size, chosen
# for the demo's 256x512; what they did to its IoU is in docs/datasets.md.
MIN_POLE_PX = 10.0
MIN_SIGN_PX = 12.0
MIN_LIGHT_PX = 14.0
PERSON_FAR = 15.0


@dataclasses.dataclass(frozen=True)
class _Side:
    """One side of the street: ground bands from the kerb outwards and the facade line."""

    sign: float  # -1 left, +1 right
    bands: tuple[tuple[int, float, float], ...]  # (class, |X| from, |X| to)
    facade: float  # |X| of the facade plane


class _Scene:
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

    def _pick(self, options: Sequence[tuple[float, float, float]], jitter: float) -> np.ndarray:
        base = options[int(self.rng.integers(len(options)))]
        return rgb(*base) + self.rng.uniform(-jitter, jitter, 3).astype(np.float32)

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

    def _facade_texture(
        self, box: Box, along: np.ndarray, up: np.ndarray, kind: int, height: float
    ) -> np.ndarray:
        """Colours of a facade from world coordinates along it and up it (metres)."""
        rng, canvas = self.rng, self.canvas
        if kind == BUILDING:
            base = self._pick(
                [(190, 175, 150), (140, 140, 140), (150, 85, 65), (210, 205, 195), (120, 130, 145)],
                15,
            )
            colour = canvas.texture(box, base, 5.0, 9.0)
            floor, spacing = rng.uniform(2.8, 3.6), rng.uniform(2.0, 3.5)
            lo, hi = rng.uniform(0.25, 0.4), rng.uniform(0.75, 0.85)
            windows = (
                (frac(up / floor) > lo)
                & (frac(up / floor) < hi)
                & (frac(along / spacing) > 0.25)
                & (frac(along / spacing) < 0.75)
                & (up > floor)
                & (up < height - 0.6)
            )
            if rng.random() < 0.5:  # shop windows on the ground floor
                windows |= (up > 0.4) & (up < floor * 0.8) & (frac(along / (2 * spacing)) < 0.7)
            glass = canvas.texture(box, self._pick([(45, 55, 70), (70, 80, 95)], 10), 4.0, 18.0)
            return np.where(windows[:, :, None], glass, colour)
        if kind == WALL:
            colour = canvas.texture(box, self._pick([(160, 155, 145), (130, 125, 120)], 15), 8, 10)
            joints = (frac(up / 0.5) < 0.08) | (frac(along / 1.2) < 0.03)
            return colour - 25.0 * joints[:, :, None]
        if kind == FENCE:
            colour = canvas.texture(box, self._pick([(130, 100, 70), (110, 115, 105)], 15), 6, 6)
            slats = frac(along / rng.uniform(0.12, 0.25)) < 0.35
            rails = frac(up / 0.8) < 0.12
            return colour - 35.0 * (slats & ~rails)[:, :, None]
        return self._vegetation_texture(box)

    def _vegetation_texture(self, box: Box) -> np.ndarray:
        y0, y1, x0, x1 = box
        canvas = self.canvas
        leaves = 14.0 * canvas.fine[y0:y1, x0:x1] + 22.0 * canvas.blob[y0:y1, x0:x1]
        return self.vegetation_colour + leaves[:, :, None] * rgb(0.7, 1.0, 0.5)

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

    # ---------------------------------------------------------------- objects

    def _billboard(self, x: float, z: float) -> Callable[[float, float], tuple[float, float]]:
        """Maps local (u right, v up) metres of an object standing at (x, z) to pixels."""
        cam = self.cam
        return lambda u, v: cam.project(x + u, v, z)

    def _poly(self, to_px: Callable, points: Sequence[tuple[float, float]]) -> Region | None:
        return self.canvas.polygon([to_px(u, v) for u, v in points])

    def _rect(self, to_px: Callable, u0: float, v0: float, u1: float, v1: float) -> Region | None:
        (x0, y0), (x1, y1) = to_px(u0, v1), to_px(u1, v0)
        return self.canvas.rect(x0, y0, x1, y1)

    def _ellipse(self, to_px: Callable, u: float, v: float, ru: float, rv: float) -> Region | None:
        (cx, cy), (ex, ey) = to_px(u, v), to_px(u + ru, v + rv)
        return self.canvas.ellipse(cx, cy, ex - cx, cy - ey)

    def draw_tree(self, x: float, z: float) -> None:
        rng, canvas = self.rng, self.canvas
        to_px = self._billboard(x, z)
        trunk_h, radius = rng.uniform(1.8, 3.0), rng.uniform(1.2, 2.8)
        trunk = self._rect(to_px, -0.15, 0.0, 0.15, trunk_h + radius * 0.5)
        if trunk is not None:
            canvas.paint(trunk, canvas.texture(trunk[0], rgb(90, 75, 60), 8.0, 6.0), VEGETATION)
        for _ in range(int(rng.integers(3, 7))):
            u = rng.uniform(-0.6, 0.6) * radius
            v = trunk_h + radius * (0.8 + rng.uniform(-0.4, 0.5))
            r = radius * rng.uniform(0.5, 0.8)
            region = self._ellipse(to_px, u, v, r, r * rng.uniform(0.8, 1.1))
            if region is not None:
                canvas.paint(region, self._vegetation_texture(region[0]), VEGETATION)

    def draw_pole(self, x: float, z: float) -> None:
        rng, canvas, cam = self.rng, self.canvas, self.cam
        to_px = self._billboard(x, z)
        height = rng.uniform(3.0, 7.5)
        half = max(rng.uniform(0.06, 0.12), 0.5 * MIN_POLE_PX * z / cam.focal)
        region = self._rect(to_px, -half, 0.0, half, height)
        if region is not None:
            ys, xs = canvas.centres(region[0])
            centre = to_px(0.0, 0.0)[0]
            across = np.abs(xs - centre) / max(half * cam.focal / z, 1e-3)  # cylinder shading
            base = self._pick([(130, 130, 130), (80, 90, 80), (160, 160, 155)], 12)
            colour = canvas.texture(region[0], base, 5.0, 4.0) - 40.0 * across[:, :, None]
            canvas.paint(region, colour, POLE)
        roll = rng.random()
        if roll < 0.5:
            self._draw_sign(to_px, height, cam.focal / z)
        elif roll < 0.9:
            self._draw_light(to_px, height, cam.focal / z)

    def _draw_sign(self, to_px: Callable, top: float, px_per_m: float) -> None:
        rng, canvas = self.rng, self.canvas
        size = rng.uniform(0.7, 1.2)  # larger than life: learnable at 256x512
        size = max(size, MIN_SIGN_PX / px_per_m)
        v = top - size / 2
        shape = int(rng.integers(4))
        if shape == 0:  # round: red ring, white or blue face
            outer = self._ellipse(to_px, 0.0, v, size / 2, size / 2)
            inner = self._ellipse(to_px, 0.0, v, size * 0.36, size * 0.36)
            face = rgb(235, 235, 230) if rng.random() < 0.6 else rgb(30, 70, 160)
            parts = [(outer, rgb(200, 30, 35)), (inner, face)]
        elif shape == 1:  # triangle: red border, white inside
            h = size * 0.87
            outer = self._poly(
                to_px, [(-size / 2, v - h / 2), (size / 2, v - h / 2), (0, v + h / 2)]
            )
            s = 0.6
            inner = self._poly(
                to_px,
                [
                    (-size * s / 2, v - h * s / 2.4),
                    (size * s / 2, v - h * s / 2.4),
                    (0, v + h * s / 2),
                ],
            )
            parts = [(outer, rgb(200, 30, 35)), (inner, rgb(235, 235, 230))]
        elif shape == 2:  # rectangle: blue or green with a white border
            outer = self._rect(to_px, -size / 2, v - size / 2, size / 2, v + size / 2)
            inner = self._rect(to_px, -size * 0.4, v - size * 0.4, size * 0.4, v + size * 0.4)
            face = rgb(30, 80, 170) if rng.random() < 0.6 else rgb(20, 120, 60)
            parts = [(outer, rgb(235, 235, 230)), (inner, face)]
        else:  # diamond: yellow on white
            d = size / 2
            outer = self._poly(to_px, [(-d, v), (0, v - d), (d, v), (0, v + d)])
            d2 = d * 0.7
            inner = self._poly(to_px, [(-d2, v), (0, v - d2), (d2, v), (0, v + d2)])
            parts = [(outer, rgb(235, 235, 230)), (inner, rgb(240, 190, 30))]
        for region, colour in parts:
            if region is not None:
                canvas.paint(region, canvas.texture(region[0], colour, 5.0, 5.0), SIGN)

    def _draw_light(self, to_px: Callable, top: float, px_per_m: float) -> None:
        rng, canvas = self.rng, self.canvas
        w, h = rng.uniform(0.4, 0.55), rng.uniform(1.0, 1.4)
        grow = max(1.0, MIN_LIGHT_PX / (w * px_per_m))  # far lights keep their shape, larger
        w, h = w * grow, h * grow
        u = rng.choice([-1.0, 0.0, 1.0]) * w * 0.5
        region = self._rect(to_px, u - w / 2, top - h, u + w / 2, top)
        if region is None:
            return
        housing = self._pick([(35, 35, 35), (60, 60, 40)], 8)
        canvas.paint(region, canvas.texture(region[0], housing, 4.0, 4.0), LIGHT)
        lit = int(rng.integers(3))
        lamps = (rgb(230, 40, 30), rgb(240, 180, 30), rgb(40, 220, 110))
        for k, lamp in enumerate(lamps):
            colour = lamp if k == lit else 0.25 * lamp + 25
            v = top - h * (0.2 + 0.3 * k)
            disc = self._ellipse(to_px, u, v, w * 0.3, w * 0.3)
            if disc is not None:
                canvas.paint(disc, canvas.texture(disc[0], colour, 4.0, 3.0), LIGHT)

    def draw_car(self, x: float, z: float) -> None:
        rng, canvas = self.rng, self.canvas
        to_px = self._billboard(x, z)
        w, h = rng.uniform(1.6, 2.0), rng.uniform(1.35, 1.75)
        front = x < (self.road_left + self.road_right) / 2  # oncoming traffic on the left
        shadow = self._ellipse(to_px, 0.0, 0.0, w * 0.65, 0.08)
        canvas.shade(shadow, rng.uniform(0.45, 0.65))
        body = self._pick(
            [(230, 230, 230), (170, 170, 175), (35, 35, 40), (30, 50, 110), (150, 30, 30)], 15
        )
        parts: list[tuple[Region | None, np.ndarray, float, float]] = []
        tyre = rgb(25, 25, 28)
        parts.append((self._rect(to_px, -w / 2 + 0.05, 0.0, -w / 2 + 0.35, 0.45), tyre, 4, 3))
        parts.append((self._rect(to_px, w / 2 - 0.35, 0.0, w / 2 - 0.05, 0.45), tyre, 4, 3))
        belt = 0.58 * h
        lower = [(-w / 2, 0.22), (w / 2, 0.22), (w / 2, belt - 0.1), (w / 2 - 0.1, belt)]
        lower += [(-w / 2 + 0.1, belt), (-w / 2, belt - 0.1)]
        parts.append((self._poly(to_px, lower), body, 5, 10))
        cabin = [(-w * 0.46, belt), (w * 0.46, belt), (w * 0.36, h), (-w * 0.36, h)]
        parts.append((self._poly(to_px, cabin), body * 0.9, 5, 10))
        glass = [(-w * 0.4, belt + 0.06), (w * 0.4, belt + 0.06), (w * 0.32, h - 0.08)]
        glass += [(-w * 0.32, h - 0.08)]
        parts.append((self._poly(to_px, glass), rgb(40, 50, 60), 4, 16))
        parts.append((self._rect(to_px, -w / 2, 0.22, w / 2, 0.32), rgb(40, 40, 42), 4, 4))
        lamp = rgb(245, 240, 200) if front else rgb(200, 25, 25)
        for side in (-1, 1):
            u0 = side * (w / 2 - 0.05)
            u1 = side * (w / 2 - 0.35)
            parts.append(
                (self._rect(to_px, min(u0, u1), 0.42 * h, max(u0, u1), 0.52 * h), lamp, 4, 2)
            )
        parts.append((self._rect(to_px, -0.26, 0.33, 0.26, 0.45), rgb(225, 225, 220), 3, 2))
        for region, colour, fine, blob in parts:
            if region is not None:
                canvas.paint(region, canvas.texture(region[0], colour, fine, blob), CAR)

    def draw_person(self, x: float, z: float) -> None:
        rng, canvas = self.rng, self.canvas
        to_px = self._billboard(x, z)
        h = rng.uniform(1.55, 1.95)
        stride = rng.uniform(0.0, 0.15)
        skin = self._pick([(225, 185, 150), (180, 130, 95), (110, 75, 55)], 10)
        top = self._pick(
            [(180, 30, 40), (40, 60, 140), (220, 220, 215), (40, 40, 45), (60, 120, 70)], 20
        )
        trousers = self._pick([(35, 40, 70), (30, 30, 32), (160, 140, 110)], 10)
        hip, shoulder = 0.47 * h, 0.82 * h
        parts: list[tuple[Region | None, np.ndarray]] = [
            (
                self._poly(
                    to_px,
                    [(-0.17 - stride, 0), (-0.03 - stride / 2, 0), (-0.01, hip), (-0.17, hip)],
                ),
                trousers,
            ),
            (
                self._poly(
                    to_px, [(0.03 + stride / 2, 0), (0.17 + stride, 0), (0.17, hip), (0.01, hip)]
                ),
                trousers,
            ),
            (self._rect(to_px, -0.29, hip + 0.05, -0.2, shoulder - 0.02), top * 0.85),
            (self._rect(to_px, 0.2, hip + 0.05, 0.29, shoulder - 0.02), top * 0.85),
            (
                self._poly(
                    to_px,
                    [(-0.18, hip - 0.03), (0.18, hip - 0.03), (0.22, shoulder), (-0.22, shoulder)],
                ),
                top,
            ),
            (self._ellipse(to_px, 0.0, 0.905 * h, 0.1, 0.12), skin),
            (
                self._ellipse(to_px, 0.0, 0.935 * h, 0.1, 0.07),
                self._pick([(40, 30, 25), (120, 90, 50)], 10),
            ),
        ]
        for region, colour in parts:
            if region is not None:
                canvas.paint(region, canvas.texture(region[0], colour, 5.0, 6.0), PERSON)

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
