"""`DropjObstCarRacing`: Obstacle Car Racing as the DROPJ participants drove it (DATA_FORMATS.md 8.2).

A `DropjCarRacing` (same track, physics, reward, `crash`/`succ` flags,
termination and 1000-step limit) with 128x128 frames, no indicator bar, and
obstacles. Two modes, as the authors' module-level flags had them:

* ``"chuckc"``: 20 chuckholes (`schema.CHUCKC`);
* ``"chuckccar"`` (default): 20 chuckholes and 11 scripted NPC cars (`schema.CHUCKCCAR`).

**Chuckholes.** Sensor circles of radius 1.2, drawn as an orange 15-gon with
a black 15-gon ring 0.3 wide. Each sits on a randomly chosen track point,
moved half a track step forward along the road (the authors' "centre"
placement). Track points -2..19 around the start are never chosen, and after
each choice the points within 7 of it are excluded too (no wrap-around at the
end of the track). A choice is retried up to 100 times; when all 100 fail the
chuckhole goes on the last point drawn, excluded or not, as the authors'
loop did. That only happens on short tracks (measured: 5 % of layouts on a
249-point track, 0.3 % at 270, none on the tracks of seeds 0-59).

While any wheel of a car (agent or NPC) touches a chuckhole, that car's hull
linear velocity is multiplied by 0.6 once per step, before the physics step;
the wheels and the angular velocity are left alone, as in the authors' code.

**NPC cars** (chuckccar). Gymnasium's `Car` with the agent's size (the
authors' cars all have size 0.02, gymnasium's constant), blue hulls, placed
on track points ``i * (len(track) // 12)`` for i = 1..11. Each step an NPC
steers toward the heading of its nearest track point (gain 4) and holds
speed 15 (gas ``0.05 * (15 - speed)`` clipped to [0, 0.1], damped on turns),
but only while the agent is within 13 track points of it (either side) or
another NPC is less than ``len(track) // 12`` points behind it; it brakes
fully when it is not moving or another NPC is less than 5 points ahead.

NPC wheels neither visit tiles nor touch the off-road flag. Only the
agent's wheels repaint a touched tile in the plain road colour (gym's Car
Racing repainted it on any touch, hulls included). The authors' contact
listener also never records road tiles for NPC wheels, so NPCs always drive
with grass friction (0.6 of the limit); the NPC wheels here get a tile set
that stays empty to reproduce that.

**Info flags** (DATA_FORMATS.md 1.3), each True at most once per object per
episode and present only when True, after `crash`/`succ` in the order of the
mode's `EnvSpec.info_keys`:

* ``chuck_passed``: the agent's hull came within 20 of a chuckhole for the
  first time; ``car_passed``: the same for an NPC hull;
* ``chuck``: an agent wheel touched a chuckhole for the first time;
* ``car``: the agent's hull collided with an NPC hull for the first time.

The reset's action-less step runs the NPCs and the proximity checks as well
(objects near the start are marked passed there, without a flag), as the
authors' `reset` did.

**Driving aids** (``driving_aids=True``; off by default, as the human
recorders had them; the authors' MPC evaluation left them on). They change
what the car receives, never the recorded action:

* INITIAL_ACC: the first 49 action steps apply steer 0, gas 0.3, brake 0 (the
  authors count the reset's step as step 1 and accelerate up to step 50);
* RECOVER: when the hull is 8 or more from every track point, the car first
  follows the track heading at target speed 50 (braking above 30) until it
  is aligned within 0.05 rad, then steers a constant 0.05 toward the side it
  mostly steered while aligning, with gas 0.2, until back within 8;
* CONTROL_SPEED (when RECOVER is not steering): above speed 40 the gas is 0.
  With RECOVER also on, the authors applied the gas command twice a step, so
  gas ramps up 0.2 a step instead of 0.1; that is reproduced.

The three flags are attributes (`recover`, `control_speed`, `initial_acc`)
that can be set one by one after construction.

**Differences from the authors' environment, and why**

* Chuckhole tiles come from the env's own `random.Random`, seeded with the
  reset's seed (``info['seed']``) whenever the track's RandomState is seeded,
  and continued by unseeded resets. The authors drew them from Python's
  global `random`, which `env.seed` never seeded, so their obstacle layouts
  cannot be reproduced; here ``reset(seed=s)`` reproduces the track (the
  authors' track for s, see `seeding.py`), the chuckholes and the NPC starts.
* The RECOVER state (aligning phase, side) starts fresh at every reset; the
  authors' state carried over between episodes and was undefined before the
  car had first been near the track.
* No pacing sleep (the authors' chuckc mode slept to 50 FPS when recording
  trajectories): the recorder paces.
* Skid marks are not drawn (the authors disabled them too). On the state
  frames the chuckholes cover exactly the pixels OpenGL filled (pixel-centre
  rule, as `render.fill_convex`); in the pygame window (human mode and
  `rgb_array`) they are two plain 15-gons.
* The authors' unused options (randomised or discretised worlds, "block"
  and "visual" chuckholes, off-centre chuckholes, reverse driving, NPC colour
  shuffling) are left out.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
from Box2D.b2 import circleShape, fixtureDef
from gymnasium.envs.box2d import car_racing as gym_car_racing
from gymnasium.envs.box2d.car_dynamics import Car

from dropj_datasets import schema
from dropj_datasets.envs import render
from dropj_datasets.envs.car_racing import AGENT_HULL_RGB, FPS, DropjCarRacing

MODES = {"chuckc": schema.CHUCKC, "chuckccar": schema.CHUCKCCAR}
STATE_SIZE = 128
AGENT = 0  # car index of the agent; NPCs are 1..NPC_COUNT

# Chuckholes.
CHUCKHOLE_COUNT = 20
CHUCKHOLE_RADIUS = 1.2
CHUCKHOLE_RIM = 0.3  # black ring outside the radius
CHUCKHOLE_HOLE = 0.01  # the authors' orange fill left this radius at the centre undrawn
CHUCKHOLE_SEGMENTS = 15
CHUCKHOLE_RGB = (1.0, 0.6, 0.0)
RIM_RGB = (0.0, 0.0, 0.0)
CHUCK_DISTANCE = 7  # track points either side of a chuckhole that no other chuckhole may take
START_CLEAR = range(-2, 20)  # track points (negative: from the end) that never get a chuckhole
PLACEMENT_ATTEMPTS = 100
FORWARD_OFFSET = gym_car_racing.TRACK_DETAIL_STEP / 2  # along the road from the chosen track point
SLOWDOWN = 0.6

# NPC cars.
NPC_COUNT = 11
NPC_SLOTS = NPC_COUNT + 1  # the track is split in this many parts; the agent takes the first
NPC_RGB = (0.0, 0.0, 0.8)
NPC_TARGET_SPEED = 15.0
STEER_GAIN = 4.0
STEER_GAIN_SPEED_DAMPING = 0.05  # recovery only: gain / (1 + this * speed)
GAS_GAIN = 0.05
MAX_FOLLOW_GAS = 0.1
MIN_TURN_GAS_FACTOR = 0.4
AGENT_NEAR_TILES = 13
NPC_GAP_TILES = 5
PASS_DISTANCE = 20.0
CAR_DRAW_RADIUS = 3.0  # world units around a hull centre that hold the whole car, for culling

# Driving aids.
INITIAL_ACC_LAST_STEP = 50  # the authors' step counter, which counts the reset's step as 1
INITIAL_ACTION = (0.0, 0.3, 0.0)  # applied action (steer, gas, brake)
SPEED_LIMIT = 40.0
RECOVER_DISTANCE = 8.0
RECOVER_TARGET_SPEED = 50.0
RECOVER_BRAKE_ABOVE = 30.0
RECOVER_ALIGNED = 0.05
RECOVER_STEER = 0.05
RECOVER_GAS = 0.2

# The info flags this env adds (DATA_FORMATS.md 1.3); `step_flags` orders them by the EnvSpec's info_keys.
CHUCK_PASSED, CAR_PASSED, CHUCK, CAR = "chuck_passed", "car_passed", "chuck", "car"


def wrap_angle(angle: float) -> float:
    """The angle in [-pi, pi)."""
    return (angle + math.pi) % (2 * math.pi) - math.pi


def place_chuckholes(track_len: int, rng: random.Random, count: int = CHUCKHOLE_COUNT) -> list[int]:
    """Track point index of each chuckhole, in creation order (the authors' rejection sampling)."""
    excluded = {i % track_len for i in START_CLEAR}
    chosen = []
    for _ in range(count):
        for _ in range(PLACEMENT_ATTEMPTS):
            index = rng.randrange(track_len)
            if index not in excluded:
                excluded.update(range(max(0, index - CHUCK_DISTANCE), min(track_len, index + CHUCK_DISTANCE + 1)))
                break
        # after PLACEMENT_ATTEMPTS misses the last (excluded) draw is kept, as the authors' loop did
        chosen.append(index)
    return chosen


def chuckhole_centre(track_point: Sequence[float]) -> tuple[float, float]:
    """Half a track step forward of the track point (alpha, beta, x, y): the road runs along (-sin, cos) beta."""
    _, beta, x, y = track_point
    return x - FORWARD_OFFSET * math.sin(beta), y + FORWARD_OFFSET * math.cos(beta)


def npc_moves(indices: Sequence[int], track_len: int, tile_step: int) -> list[bool]:
    """Whether each NPC drives this step, from every car's nearest track point (agent first)."""
    agent, npcs = indices[0], range(1, len(indices))
    moves = []
    for i in npcs:
        mine, others = indices[i], [indices[j] for j in npcs if j != i]
        agent_behind = (mine - agent) % track_len
        move = agent_behind < AGENT_NEAR_TILES or agent_behind > track_len - AGENT_NEAR_TILES
        move = move or any(0 < (mine - other) % track_len < tile_step for other in others)
        if move and any(0 < (other - mine) % track_len < NPC_GAP_TILES for other in others):
            move = False
        moves.append(move)
    return moves


class _NoTiles(set):
    """An NPC wheel's tile set: stays empty, so the wheel always has grass friction (see the module docstring)."""

    def add(self, tile: Any) -> None:
        pass

    def discard(self, tile: Any) -> None:
        pass


def _tag_car(car: Car, index: int, npc: bool) -> None:
    """Marks the car's bodies with its index, for the contact listener."""
    car.hull.userData = car.hull
    car.hull.car_index = index
    for wheel in car.wheels:
        wheel.car_index = index
        if npc:
            wheel.tiles = _NoTiles()


def _speed(car: Car) -> float:
    velocity = car.hull.linearVelocity
    return math.hypot(velocity[0], velocity[1])


class _Recovery:
    """The RECOVER aid's state: aligning with the track (phase 1), then easing back onto it (phase 2)."""

    def __init__(self) -> None:
        self.aligning = True
        self.steers: list[float] = []  # steer commands while aligning
        self.side: int | None = None  # +1 or -1 once phase 2 began

    def reset(self) -> None:
        self.aligning, self.steers, self.side = True, [], None


class DropjObstCarRacing(DropjCarRacing):
    """Obstacle Car Racing with chuckholes (and NPC cars in chuckccar mode). See the module docstring."""

    state_size = (STATE_SIZE, STATE_SIZE)
    indicator_bar = False

    def __init__(self, render_mode: str | None = None, mode: str = "chuckccar", driving_aids: bool = False):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
        self.mode = mode
        self.env_spec = MODES[mode]
        super().__init__(render_mode=render_mode)
        self.recover = self.control_speed = self.initial_acc = bool(driving_aids)
        self.npcs: list[Car] = []
        self.chuckholes: list[Any] = []
        self.chuckhole_tiles: list[int] = []
        self._obstacle_rng: random.Random | None = None
        self._recovery = _Recovery()
        self._step_count = 0
        self._track_xy = np.zeros((0, 2))
        self._tile_step = 0
        self._chuckhole_polys = (np.zeros((0, CHUCKHOLE_SEGMENTS, 2)), np.zeros((0, CHUCKHOLE_SEGMENTS, 2)))
        self._reset_obstacle_state()

    # --- episode life cycle ---------------------------------------------------------------------

    @property
    def cars(self) -> list[Car]:
        """The agent's car, then the NPCs."""
        return [self.car] + self.npcs

    def _reset_obstacle_state(self) -> None:
        slots = NPC_SLOTS if self.mode == "chuckccar" else 1
        self.wheel_chuckhole_contacts = [0] * slots  # per car: wheel-chuckhole contacts now touching
        self.touched_chuckholes: set[int] = set()
        self.hit_cars: set[int] = set()
        self.passed_chuckholes: set[int] = set()
        self.passed_cars: set[int] = set()
        self._events: dict[str, bool] = {}

    def on_seed(self, seed: int) -> None:
        self._obstacle_rng = random.Random(seed)  # as the authors' global `random` after random.seed(seed)

    def on_reset(self) -> None:
        self._reset_obstacle_state()
        self._recovery.reset()
        self._step_count = 1  # the reset's action-less step, which follows
        self._track_xy = np.array([point[2:4] for point in self.track], dtype=np.float64)
        _tag_car(self.car, AGENT, npc=False)
        self._create_chuckholes()
        if self.mode == "chuckccar":
            self._create_npcs()

    def _create_chuckholes(self) -> None:
        assert self._obstacle_rng is not None
        self.chuckhole_tiles = place_chuckholes(len(self.track), self._obstacle_rng)
        fixture = fixtureDef(shape=circleShape(radius=CHUCKHOLE_RADIUS), isSensor=True)
        for number, index in enumerate(self.chuckhole_tiles):
            body = self.world.CreateStaticBody(position=chuckhole_centre(self.track[index]), fixtures=fixture)
            body.userData = body
            body.chuckhole_index = number
            self.chuckholes.append(body)
        centres = [tuple(body.position) for body in self.chuckholes]
        self._chuckhole_polys = (np.array([_polygon(c, CHUCKHOLE_RADIUS + CHUCKHOLE_RIM) for c in centres]),
                                 np.array([_polygon(c, CHUCKHOLE_RADIUS) for c in centres]))

    def _create_npcs(self) -> None:
        self._tile_step = len(self.track) // NPC_SLOTS
        for index in range(1, NPC_SLOTS):
            _, beta, x, y = self.track[index * self._tile_step]
            npc = Car(self.world, beta, x, y)
            _tag_car(npc, index, npc=True)
            self.npcs.append(npc)

    def _destroy(self) -> None:
        super()._destroy()
        for npc in self.npcs:
            npc.destroy()
        self.npcs = []
        for body in self.chuckholes:
            self.world.DestroyBody(body)
        self.chuckholes = []

    # --- contacts ---------------------------------------------------------------------------------

    def is_agent_wheel(self, wheel: Any) -> bool:
        return getattr(wheel, "car_index", AGENT) == AGENT

    def tile_touched(self, tile: Any, toucher: Any = None) -> None:
        # The authors repaint a tile only for the agent's wheels (not hulls, not NPCs).
        if toucher is not None and "phase" in toucher.__dict__ and self.is_agent_wheel(toucher):
            super().tile_touched(tile, toucher)

    def on_other_contact(self, contact: Any, begin: bool) -> None:
        a, b = contact.fixtureA.body.userData, contact.fixtureB.body.userData
        for hole, other in ((a, b), (b, a)):
            number = getattr(hole, "chuckhole_index", None)
            if number is not None:
                self._chuckhole_contact(number, other, begin)
                return
        first, second = getattr(a, "car_index", None), getattr(b, "car_index", None)
        hulls = a is not None and b is not None and "phase" not in a.__dict__ and "phase" not in b.__dict__
        if hulls and first is not None and second is not None and AGENT in (first, second) and first != second:
            other_car = second if first == AGENT else first
            if other_car not in self.hit_cars:
                self.hit_cars.add(other_car)
                self._events[CAR] = True

    def _chuckhole_contact(self, number: int, other: Any, begin: bool) -> None:
        if other is None or "phase" not in other.__dict__:
            return  # only wheels count, not hulls
        car = other.car_index
        self.wheel_chuckhole_contacts[car] += 1 if begin else -1
        if car == AGENT and begin and number not in self.touched_chuckholes:
            self.touched_chuckholes.add(number)
            self._events[CHUCK] = True

    # --- stepping ---------------------------------------------------------------------------------

    def nearest_track_points(self, cars: Sequence[Car]) -> np.ndarray:
        """Index of the track point nearest to each car's hull (the first one on ties)."""
        positions = np.array([tuple(car.hull.position) for car in cars], dtype=np.float64)
        distances = ((self._track_xy[None, :, :] - positions[:, None, :]) ** 2).sum(axis=-1)
        return distances.argmin(axis=1)

    def follow_track(self, car: Car, index: int, target_speed: float,
                     speed_scaled_steering: bool = False) -> tuple[float, float]:
        """(steer, gas) toward the heading of track point `index` at `target_speed`, as `Car.steer`/`gas` take them."""
        beta = self.track[index][1]
        speed = _speed(car)
        gain = STEER_GAIN / (1.0 + STEER_GAIN_SPEED_DAMPING * speed) if speed_scaled_steering else STEER_GAIN
        steer = float(np.clip(wrap_angle(beta - car.hull.angle) * gain, -1.0, 1.0))
        gas = float(np.clip(GAS_GAIN * (target_speed - speed), 0.0, MAX_FOLLOW_GAS))
        if index + 1 < len(self.track):  # the authors skip this on the last point
            turn = abs(wrap_angle(self.track[index + 1][1] - beta))
            gas *= float(np.clip(1.0 - turn, MIN_TURN_GAS_FACTOR, 1.0))
        return steer, gas

    def applied_action(self, action: np.ndarray) -> np.ndarray:
        self._step_count += 1
        if self.initial_acc and self._step_count <= INITIAL_ACC_LAST_STEP:
            return np.array(INITIAL_ACTION)
        if self.recover:
            recovery = self._recovery_action()
            if recovery is not None:
                return recovery
            if self.control_speed:
                self.car.gas(action[1])  # the authors' first of two gas commands this step
        if self.control_speed and _speed(self.car) > SPEED_LIMIT:
            return np.array([action[0], 0.0, action[2]])  # the authors' clip(0.05 * (40 - speed), 0, 0.1) is 0 here
        return action

    def _recovery_action(self) -> np.ndarray | None:
        """The RECOVER aid's action (steer, gas, brake as the agent gives them), or None near the track."""
        index = int(self.nearest_track_points([self.car])[0])
        x, y = self.car.hull.position
        state = self._recovery
        if math.hypot(self._track_xy[index, 0] - x, self._track_xy[index, 1] - y) < RECOVER_DISTANCE:
            state.reset()
            return None
        if state.aligning:
            speed = _speed(self.car)
            steer, gas = self.follow_track(self.car, index, RECOVER_TARGET_SPEED, speed_scaled_steering=True)
            state.steers.append(steer)
            if abs(wrap_angle(self.track[index][1] - self.car.hull.angle)) < RECOVER_ALIGNED:
                state.aligning = False
            brake = 1.0 if speed > RECOVER_BRAKE_ABOVE else 0.0
        else:
            if state.side is None:
                positive = sum(1 for s in state.steers if s > 0)
                negative = sum(1 for s in state.steers if s < 0)
                state.side = 1 if positive > negative else -1
            steer, gas, brake = RECOVER_STEER * state.side, RECOVER_GAS, 0.0
        return np.array([-steer, gas, brake])  # the base class steers the car by -action[0]

    def before_physics(self) -> None:
        self._events = {}
        if self.npcs:
            self._drive_npcs()
        for car, contacts in zip(self.cars, self.wheel_chuckhole_contacts):
            if contacts > 0:  # only the hull's linear velocity, as the authors did
                velocity = car.hull.linearVelocity
                car.hull.linearVelocity = (velocity[0] * SLOWDOWN, velocity[1] * SLOWDOWN)

    def _drive_npcs(self) -> None:
        indices = [int(i) for i in self.nearest_track_points(self.cars)]
        for npc, index, move in zip(self.npcs, indices[1:], npc_moves(indices, len(self.track), self._tile_step)):
            if move:
                steer, gas = self.follow_track(npc, index, NPC_TARGET_SPEED)
                npc.steer(steer)
                npc.gas(gas)
                npc.brake(0.0)
            else:
                npc.steer(0.0)
                npc.gas(0.0)
                npc.brake(1.0)
            npc.step(1.0 / FPS)

    def after_physics(self) -> None:
        x, y = self.car.hull.position
        for number, body in enumerate(self.chuckholes):
            cx, cy = body.position
            if number not in self.passed_chuckholes and math.hypot(x - cx, y - cy) < PASS_DISTANCE:
                self.passed_chuckholes.add(number)
                self._events[CHUCK_PASSED] = True
        for index, npc in enumerate(self.npcs, start=1):
            nx, ny = npc.hull.position
            if index not in self.passed_cars and math.hypot(x - nx, y - ny) < PASS_DISTANCE:
                self.passed_cars.add(index)
                self._events[CAR_PASSED] = True

    def step_flags(self) -> dict:
        return {key: True for key in self.env_spec.info_keys if self._events.get(key)}

    # --- drawing ----------------------------------------------------------------------------------

    def draw_objects(self, surface, camera: render.Camera) -> None:
        self._draw_chuckholes(surface, camera)
        render.draw_car(surface, camera, self.car, AGENT_HULL_RGB)
        if not self.npcs:
            return
        jacobian = _jacobian(camera)
        reach = np.abs(jacobian) @ np.full(2, CAR_DRAW_RADIUS)
        pixels = camera.pixels(np.array([tuple(npc.hull.position) for npc in self.npcs]))
        for npc, pixel in zip(self.npcs, pixels):
            if _box_on_surface(pixel - reach, pixel + reach, camera):
                render.draw_car(surface, camera, npc, NPC_RGB)

    def _draw_chuckholes(self, target, camera: render.Camera) -> None:
        """Orange 15-gons in black 15-gon rims; on state frames, exactly the pixels OpenGL filled."""
        rims, fills = self._chuckhole_polys
        if not isinstance(target, np.ndarray):  # a pygame window: plain polygons are good enough
            render.draw_polygons(target, camera, rims, [render.gl_color(RIM_RGB)] * len(rims))
            render.draw_polygons(target, camera, fills, [render.gl_color(CHUCKHOLE_RGB)] * len(fills))
            return
        if len(rims) == 0:
            return
        pixel_rims = camera.pixels(rims)
        for rim, show in zip(pixel_rims, camera.visible(pixel_rims)):
            if show:
                _fill_chuckhole(target, rim)


def _fill_chuckhole(image: np.ndarray, rim: np.ndarray) -> None:
    """One chuckhole into an (H, W, 3) frame, given its rim's outer 15-gon in pixel coordinates.

    Same pixel-centre rule as `render.fill_convex`, but the hole, the fill
    and the rim (15-gons scaled about one centre) are classified in one pass:
    `scale` is the smallest factor by which the rim's outline, shrunk about
    its centre, still contains the pixel centre.
    """
    height, width = image.shape[:2]
    lo, hi = rim.min(axis=0), rim.max(axis=0)
    c0, c1 = max(math.ceil(lo[0] - 0.5), 0), min(math.floor(hi[0] - 0.5), width - 1)
    r0, r1 = max(math.ceil(lo[1] - 0.5), 0), min(math.floor(hi[1] - 0.5), height - 1)
    if c0 > c1 or r0 > r1:
        return
    centre = rim.mean(axis=0)
    edges = np.roll(rim, -1, axis=0) - rim
    support = edges[:, 0] * (rim[:, 1] - centre[1]) - edges[:, 1] * (rim[:, 0] - centre[0])
    xs = (np.arange(c0, c1 + 1) + 0.5 - centre[0])[None, None, :]
    ys = (np.arange(r0, r1 + 1) + 0.5 - centre[1])[None, :, None]
    scale = ((edges[:, 0, None, None] * ys - edges[:, 1, None, None] * xs) / support[:, None, None]).max(axis=0)
    outer = CHUCKHOLE_RADIUS + CHUCKHOLE_RIM
    region = image[r0:r1 + 1, c0:c1 + 1]
    region[(scale >= CHUCKHOLE_HOLE / outer) & (scale < CHUCKHOLE_RADIUS / outer)] = render.gl_color(CHUCKHOLE_RGB)
    region[(scale >= CHUCKHOLE_RADIUS / outer) & (scale <= 1.0)] = render.gl_color(RIM_RGB)


def _polygon(centre: Sequence[float], radius: float) -> np.ndarray:
    """The authors' chuckhole 15-gon: vertices at angles 2*pi*k/15 from the x axis."""
    angles = 2 * np.pi * np.arange(CHUCKHOLE_SEGMENTS) / CHUCKHOLE_SEGMENTS
    return np.stack([centre[0] + radius * np.cos(angles), centre[1] + radius * np.sin(angles)], axis=-1)


def _jacobian(camera: render.Camera) -> np.ndarray:
    """The camera's world -> pixel linear part: columns are the pixel steps of one world unit along x and y."""
    origin, unit_x, unit_y = camera.pixels(np.array([(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)]))
    return np.stack([unit_x - origin, unit_y - origin], axis=1)


def _box_on_surface(low: np.ndarray, high: np.ndarray, camera: render.Camera) -> bool:
    return high[0] >= 0 and low[0] <= camera.width and high[1] >= 0 and low[1] <= camera.height
