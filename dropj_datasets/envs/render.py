"""Draws a Car Racing scene the way gym 0.20's OpenGL renderer did: straight into the target size, aliased.

gym 0.20 (the authors' stack) set an OpenGL viewport of the state size
(96x96, or 128x128 for the obstacle env) and drew the 1000x800 window's
geometry into it with hard edges. gymnasium instead draws at 1000x800 with
anti-aliasing and `smoothscale`s down, which blurs every edge (DATA_FORMATS.md
8.1). This module rasterises the same geometry directly at the target size
with aliased polygons, and uses gym 0.20's camera:

* zoom animates from 0.1*SCALE to ZOOM*SCALE over the first second;
* the view turns with the car's velocity once it moves faster than 0.5, and
  with the hull angle before that (gymnasium always uses the hull angle);
* the car sits at the horizontal centre, a quarter of the height from the
  bottom;
* colours are gym 0.20's float colours rounded to 8 bits, as OpenGL does.

A `Camera` maps world points to pixel coordinates of one target surface.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

# gym 0.20 / gymnasium CarRacing geometry (world units and window pixels).
WINDOW_W, WINDOW_H = 1000, 800
SCALE = 6.0
ZOOM = 2.7
PLAYFIELD = 2000 / SCALE
GRASS_DIM = PLAYFIELD / 20.0
VELOCITY_VIEW_MIN = 0.5  # above this speed the camera follows the velocity direction


def gl_color(rgb: Sequence[float]) -> tuple[int, int, int]:
    """A gym 0.20 float colour as the 8-bit value OpenGL writes (round to nearest)."""
    return tuple(int(min(255, max(0, round(float(c) * 255)))) for c in rgb)


ROAD_RGB = (0.4, 0.4, 0.4)
BACKGROUND = gl_color((0.4, 0.8, 0.4))
GRASS = gl_color((0.4, 0.9, 0.4))
BORDER_WHITE = gl_color((1.0, 1.0, 1.0))
BORDER_RED = gl_color((1.0, 0.0, 0.0))
WHEEL_COLOR = gl_color((0.0, 0.0, 0.0))
WHEEL_WHITE = gl_color((0.3, 0.3, 0.3))


def grass_patches() -> np.ndarray:
    """The 20x20 checkerboard of lighter grass squares, (400, 4, 2) world points."""
    squares = []
    for x in range(-20, 20, 2):
        for y in range(-20, 20, 2):
            x0, y0 = GRASS_DIM * x, GRASS_DIM * y
            squares.append([(x0 + GRASS_DIM, y0), (x0, y0), (x0, y0 + GRASS_DIM), (x0 + GRASS_DIM, y0 + GRASS_DIM)])
    return np.array(squares, dtype=np.float64)


class Camera:
    """World -> pixel transform of one frame (gym 0.20's view), for a width x height target."""

    def __init__(self, car_xy: Sequence[float], hull_angle: float, velocity: Sequence[float], t: float,
                 width: int, height: int):
        self.zoom = 0.1 * SCALE * max(1.0 - t, 0.0) + ZOOM * SCALE * min(t, 1.0)
        angle = -hull_angle
        if math.hypot(velocity[0], velocity[1]) > VELOCITY_VIEW_MIN:
            angle = math.atan2(velocity[0], velocity[1])
        cos, sin = math.cos(angle), math.sin(angle)
        self._rotation = np.array([[cos, -sin], [sin, cos]]) * self.zoom
        self._car = np.asarray(car_xy, dtype=np.float64)
        self.width, self.height = width, height
        self._sx, self._sy = width / WINDOW_W, height / WINDOW_H

    def pixels(self, points: np.ndarray) -> np.ndarray:
        """(..., 2) world points -> (..., 2) pixel coordinates, y pointing down."""
        window = (np.asarray(points, dtype=np.float64) - self._car) @ self._rotation.T
        x = (window[..., 0] + WINDOW_W / 2) * self._sx
        y = self.height - (window[..., 1] + WINDOW_H / 4) * self._sy
        return np.stack([x, y], axis=-1)

    def visible(self, pixel_polys: np.ndarray) -> np.ndarray:
        """Which of (N, k, 2) pixel polygons may touch the target (bounding-box test)."""
        lo, hi = pixel_polys.min(axis=1), pixel_polys.max(axis=1)
        return (hi[:, 0] >= -1) & (lo[:, 0] <= self.width + 1) & (hi[:, 1] >= -1) & (lo[:, 1] <= self.height + 1)


def fill_convex(image: np.ndarray, poly: np.ndarray, color: Sequence[int]) -> None:
    """Fills a convex pixel-space polygon into an (H, W, 3) array with OpenGL's rule.

    A pixel is covered when its centre (column + 0.5, row + 0.5) lies inside
    the polygon, which is how OpenGL rasterised gym 0.20's frames (pygame's
    own polygon fill also covers the boundary pixels, so edges and thin car
    parts come out a pixel wider).
    """
    height, width = image.shape[:2]
    points = poly.tolist()
    xs_, ys_ = [p[0] for p in points], [p[1] for p in points]
    c0, c1 = max(math.ceil(min(xs_) - 0.5), 0), min(math.floor(max(xs_) - 0.5), width - 1)
    r0, r1 = max(math.ceil(min(ys_) - 0.5), 0), min(math.floor(max(ys_) - 0.5), height - 1)
    if c0 > c1 or r0 > r1:
        return
    n = len(points)
    area = sum(xs_[i] * ys_[(i + 1) % n] - xs_[(i + 1) % n] * ys_[i] for i in range(n))
    if area == 0.0:
        return
    sign = 1.0 if area > 0 else -1.0
    xs = np.arange(c0, c1 + 1) + 0.5
    ys = (np.arange(r0, r1 + 1) + 0.5)[:, None]
    inside = None
    for i in range(n):
        vx, vy = xs_[i], ys_[i]
        ex, ey = sign * (xs_[(i + 1) % n] - vx), sign * (ys_[(i + 1) % n] - vy)
        # ex * (y - vy) - ey * (x - vx) >= 0, split so the row and column terms broadcast
        edge = (ex * ys - ex * vy + ey * vx) >= ey * xs
        inside = edge if inside is None else inside & edge
    image[r0:r1 + 1, c0:c1 + 1][inside] = color


def draw_polygons(target, camera: Camera, polys: np.ndarray, colors: Iterable[Sequence[int]]) -> None:
    """Fills world polygons (N, k, 2) with their colours, aliased, skipping those off the target.

    `target` is an (H, W, 3) uint8 array (state frames: OpenGL's pixel-centre
    rule, `fill_convex`) or a pygame surface (the recorder's window).
    """
    if len(polys) == 0:
        return
    pixel = camera.pixels(polys)
    if isinstance(target, np.ndarray):
        for poly, color, show in zip(pixel, colors, camera.visible(pixel)):
            if show:
                fill_convex(target, poly, color)
        return
    import pygame

    for poly, color, show in zip(pixel, colors, camera.visible(pixel)):
        if show:
            pygame.draw.polygon(target, color, poly.tolist())


def draw_car(surface, camera: Camera, car, hull_rgb: Sequence[float]) -> None:
    """The car's hull and wheels (with the rotating wheel stripe), as gym 0.20 drew them; no skid marks."""
    from gymnasium.envs.box2d import car_dynamics

    hull_color = gl_color(hull_rgb)
    for body in car.drawlist:
        is_wheel = "phase" in body.__dict__
        color = WHEEL_COLOR if is_wheel else hull_color
        for fixture in body.fixtures:
            transform = fixture.body.transform
            path = np.array([tuple(transform * v) for v in fixture.shape.vertices])
            draw_polygons(surface, camera, path[None], [color])
            if not is_wheel:
                continue
            stripe = _wheel_stripe(body.phase, car_dynamics.WHEEL_W * car_dynamics.SIZE,
                                   car_dynamics.WHEEL_R * car_dynamics.SIZE)
            if stripe is not None:
                path = np.array([tuple(transform * v) for v in stripe])
                draw_polygons(surface, camera, path[None], [WHEEL_WHITE])


def _wheel_stripe(phase: float, half_width: float, radius: float):
    """The lighter band that shows a wheel turning, in wheel coordinates, or None when hidden."""
    s1, s2 = math.sin(phase), math.sin(phase + 1.2)
    c1, c2 = math.cos(phase), math.cos(phase + 1.2)
    if s1 > 0 and s2 > 0:
        return None
    if s1 > 0:
        c1 = float(np.sign(c1))
    if s2 > 0:
        c2 = float(np.sign(c2))
    return [(-half_width, radius * c1), (half_width, radius * c1), (half_width, radius * c2),
            (-half_width, radius * c2)]


def surface_to_array(surface) -> np.ndarray:
    """(H, W, 3) uint8 copy of a pygame surface."""
    import pygame

    return np.ascontiguousarray(pygame.surfarray.array3d(surface).transpose(1, 0, 2))


def draw_indicators(surface, car, width: int, height: int) -> None:
    """gym 0.20's bottom bar (black, a 1/8 of the height): speed, wheel spin (ABS), steering, gyro.

    Drawn in window units (1000x800) scaled to the target, like the OpenGL
    viewport squeezed them. For Car Racing the bar is cropped away by the
    frame processing (DATA_FORMATS.md 1.2); the obstacle env draws none.
    """
    sx, sy = width / WINDOW_W, height / WINDOW_H
    s, h = WINDOW_W / 40.0, WINDOW_H / 40.0

    def fill(points, color):
        pixel = np.array([(x * sx, height - y * sy) for x, y in points])
        if isinstance(surface, np.ndarray):
            fill_convex(surface, pixel, color)
        else:
            import pygame

            pygame.draw.polygon(surface, color, pixel.tolist())

    fill([(WINDOW_W, 0), (WINDOW_W, 5 * h), (0, 5 * h), (0, 0)], (0, 0, 0))

    def vertical(place, value, color):
        if abs(value) > 1e-4:
            fill([(place * s, h + h * value), ((place + 1) * s, h + h * value), ((place + 1) * s, h),
                  (place * s, h)], gl_color(color))

    def horizontal(place, value, color):
        if abs(value) > 1e-4:
            fill([(place * s, 4 * h), ((place + value) * s, 4 * h), ((place + value) * s, 2 * h),
                  (place * s, 2 * h)], gl_color(color))

    velocity = car.hull.linearVelocity
    vertical(5, 0.02 * math.hypot(velocity[0], velocity[1]), (1, 1, 1))
    for place, wheel, color in zip((7, 8, 9, 10), car.wheels, ((0, 0, 1), (0, 0, 1), (0.2, 0, 1), (0.2, 0, 1))):
        vertical(place, 0.01 * wheel.omega, color)
    horizontal(20, -10.0 * car.wheels[0].joint.angle, (0, 1, 0))
    horizontal(30, -0.8 * car.hull.angularVelocity, (1, 0, 0))
