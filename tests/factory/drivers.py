"""Scripted keyboard-like drivers for the DROPJ environments (the sample, benchmarks and tests).

Each returns an action of the study's keyboard subset: steer -1, 0 or +1, gas 0 or 1, brake 0 or 0.8.
They read the environment's core (`env.unwrapped`): the car, the track and the obstacles.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np

STEER_LEFT, STEER_RIGHT = -1.0, 1.0
GAS = 1.0
BRAKE = 0.8


def bearing(core: Any, target: Sequence[float]) -> float:
    """Angle from the car's heading to a world point; > 0: the point is on the left."""
    x, y = core.car.hull.position
    hx, hy = core.car.hull.GetWorldVector((0.0, 1.0))
    dx, dy = target[0] - x, target[1] - y
    return math.atan2(hx * dy - hy * dx, hx * dx + hy * dy)


def speed(core: Any) -> float:
    return float(np.hypot(*core.car.hull.linearVelocity))


def track_point_ahead(core: Any, ahead: int = 4) -> tuple[float, float]:
    """The track point `ahead` points past the one nearest the car."""
    x, y = core.car.hull.position
    track = np.array([(tx, ty) for _, _, tx, ty in core.track])
    nearest = int(np.argmin(np.hypot(track[:, 0] - x, track[:, 1] - y)))
    return tuple(track[(nearest + ahead) % len(track)])


def keyboard_action(core: Any, veer: bool = False, target: Optional[Sequence[float]] = None,
                    cruise: float = 30.0, brake_above: float = 45.0, dead_band: float = 0.15) -> np.ndarray:
    """A 'human at the keyboard' steering at `target` (default: the track a few points ahead).

    Full left or right outside a small dead band, gas below `cruise`, brake 0.8 above `brake_above`;
    `veer` holds full right steer with gas, which takes the car off the road ('crash' steps).
    """
    if veer:
        return np.array([STEER_RIGHT, GAS, 0.0])
    angle = bearing(core, target if target is not None else track_point_ahead(core))
    steer = STEER_LEFT if angle > dead_band else STEER_RIGHT if angle < -dead_band else 0.0
    if speed(core) > brake_above:
        return np.array([steer, 0.0, BRAKE])
    return np.array([steer, GAS if speed(core) < cruise else 0.0, 0.0])


def points_ahead(core: Any, index: int) -> int:
    """How many track points `index` lies ahead of the car."""
    return (index - int(core.nearest_track_points([core.car])[0])) % len(core.track)


def obstacle_target(core: Any, chuckhole: Optional[int], npc: Optional[int],
                    within: int = 12) -> Optional[tuple[float, float]]:
    """Where to aim in Obstacle Car Racing: NPC car `npc` or chuckhole `chuckhole` once it is within
    `within` track points ahead (the car first), else None (follow the track)."""
    if npc is not None and npc < len(core.npcs):
        car = core.npcs[npc]
        if points_ahead(core, int(core.nearest_track_points([car])[0])) < within:
            return tuple(car.hull.position)
    if chuckhole is not None and points_ahead(core, core.chuckhole_tiles[chuckhole]) < within:
        return tuple(core.chuckholes[chuckhole].position)
    return None


def first_chuckhole(core: Any) -> int:
    """The chuckhole nearest the start along the track."""
    return min(range(len(core.chuckhole_tiles)), key=lambda number: core.chuckhole_tiles[number])
