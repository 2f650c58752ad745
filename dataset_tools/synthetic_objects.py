"""The objects standing in a synthetic street (trees, poles with signs or lights, cars, people)
and the textures of facades and vegetation.

:class:`ObjectPainter` is the part of ``synthetic_scene._Scene`` that draws one object at a
ground position ``(x, z)`` (metres right of the camera, metres ahead) and textures a facade;
the scene decides where objects and facades stand and in which order. Each object is a few
rasterised shapes in a local frame (``u`` metres right, ``v`` metres up) that paint the image
and write the label through the same mask. The random draws happen in a fixed order, so a seed
gives byte-identical scenes. The class ids (Cityscapes train ids) are defined here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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


class ObjectPainter:
    """Draws objects on ``self.canvas`` through ``self.cam`` with ``self.rng``.

    Attributes (set by the scene):
      rng: the scene's only source of randomness.
      canvas: the :class:`Canvas` painted on.
      cam: the :class:`Camera` projecting metres to pixels.
      vegetation_colour: this scene's RGB vegetation colour, float32 ``[3]``.
    """

    rng: np.random.Generator
    canvas: Canvas
    cam: Camera
    vegetation_colour: np.ndarray

    # ---------------------------------------------------------------- textures

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

    # ---------------------------------------------------------------- objects

    def _pick(self, options: Sequence[tuple[float, float, float]], jitter: float) -> np.ndarray:
        base = options[int(self.rng.integers(len(options)))]
        return rgb(*base) + self.rng.uniform(-jitter, jitter, 3).astype(np.float32)

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
