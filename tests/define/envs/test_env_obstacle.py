"""Obstacle Car Racing (`DropjObstCarRacing-v0`, DATA_FORMATS.md 8.2) on the real gymnasium env.

Scripted drives steer like a human would: pure pursuit of a track point a
few tiles ahead, or of an obstacle when one is close ahead. Each drive runs
once per module and several tests read its log.
"""

from __future__ import annotations

import itertools
import math
import os
import random
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import pytest

import dropj_datasets.envs  # noqa: F401  (registers the ids)
from dropj_datasets import schema
from dropj_datasets.envs import obst_car_racing as obst
from dropj_datasets.envs import render

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # read when pygame's display starts, not at import

ENV_ID = "DropjObstCarRacing-v0"
SEED = 0  # its first chuckhole is on track point 20 and NPC 1 on point 24: short drives reach both
ORANGE, BLUE = render.gl_color(obst.CHUCKHOLE_RGB), render.gl_color(obst.NPC_RGB)
BAR_ROWS = 128 // 8  # what gym's indicator bar would cover


@dataclass
class Drive:
    """What a scripted drive saw, step by step (index t: the step's result)."""

    env: gym.Env
    infos: list = field(default_factory=list)
    rewards: list = field(default_factory=list)
    speeds_before: list = field(default_factory=list)
    speeds_after: list = field(default_factory=list)
    contacts_after: list = field(default_factory=list)
    frames: list = field(default_factory=list)
    number: int = -1  # the chuckhole aimed at

    @property
    def core(self) -> obst.DropjObstCarRacing:
        return self.env.unwrapped

    def steps_with(self, key: str) -> list[int]:
        return [t for t, info in enumerate(self.infos) if key in info]


def speed(car) -> float:
    return car.hull.linearVelocity.length


def pursue(core: obst.DropjObstCarRacing, target, goal_speed: float) -> np.ndarray:
    """[steer, gas, brake] toward a world point: steer in proportion to the bearing, gas below the goal speed."""
    x, y = core.car.hull.position
    hx, hy = core.car.hull.GetWorldVector((0, 1))
    dx, dy = target[0] - x, target[1] - y
    bearing = math.atan2(hx * dy - hy * dx, hx * dx + hy * dy)  # > 0: target on the left (steer < 0)
    gas = 0.5 if speed(core.car) < goal_speed else 0.0
    return np.array([float(np.clip(-3.0 * bearing, -1.0, 1.0)), gas, 0.0])


def track_ahead(core: obst.DropjObstCarRacing, car=None, ahead: int = 4):
    index = int(core.nearest_track_points([car or core.car])[0])
    return core.track[(index + ahead) % len(core.track)][2:4]


def tiles_ahead(core: obst.DropjObstCarRacing, index: int) -> int:
    agent = int(core.nearest_track_points([core.car])[0])
    return (index - agent) % len(core.track)


def drive(env: gym.Env, steps: int, target_of, goal_speed: float, stop_after=None, extra: int = 0) -> Drive:
    """Runs a pursuit drive; `target_of(core)` names an obstacle to aim at, or None to follow the track."""
    log = Drive(env)
    core = log.core
    remaining = None
    for _ in range(steps):
        target = target_of(core) or track_ahead(core)
        log.speeds_before.append(speed(core.car))
        obs, reward, terminated, _, info = env.step(pursue(core, target, goal_speed))
        assert not terminated
        log.infos.append(info)
        log.rewards.append(reward)
        log.frames.append(obs)
        log.speeds_after.append(speed(core.car))
        log.contacts_after.append(core.wheel_chuckhole_contacts[obst.AGENT])
        if remaining is None and stop_after is not None and stop_after in info:
            remaining = extra
        if remaining is not None:
            if remaining == 0:
                break
            remaining -= 1
    return log


def first_chuckhole(core: obst.DropjObstCarRacing) -> int:
    return min(range(obst.CHUCKHOLE_COUNT), key=lambda number: core.chuckhole_tiles[number])


@pytest.fixture(scope="module")
def chuck_drive() -> Drive:
    """chuckc: follow the track, aim at the first chuckhole once it is 12 points ahead, go on 25 steps."""
    env = gym.make(ENV_ID, mode="chuckc")
    env.reset(seed=SEED)
    number = first_chuckhole(env.unwrapped)

    def target(core):
        if tiles_ahead(core, core.chuckhole_tiles[number]) < 12:
            return tuple(core.chuckholes[number].position)
        return None

    log = drive(env, 300, target, goal_speed=25.0, stop_after="chuck", extra=25)
    log.number = number
    yield log
    env.close()


@pytest.fixture(scope="module")
def car_drive() -> Drive:
    """chuckccar: follow the track faster than the NPCs, ram NPC 1 once it is 10 points ahead, go on 20 steps."""
    env = gym.make(ENV_ID, mode="chuckccar")
    env.reset(seed=SEED)

    def target(core):
        npc = core.npcs[0]
        if tiles_ahead(core, int(core.nearest_track_points([npc])[0])) < 10:
            return tuple(npc.hull.position)
        return None

    log = drive(env, 350, target, goal_speed=35.0, stop_after="car", extra=20)
    yield log
    env.close()


# --- construction, frames, seeding ---------------------------------------------------------------------


@pytest.mark.parametrize("mode, spec", [("chuckc", schema.CHUCKC), ("chuckccar", schema.CHUCKCCAR)])
def test_modes_build_their_env_spec(mode, spec):
    env = gym.make(ENV_ID, mode=mode)
    obs, info = env.reset(seed=SEED)
    core = env.unwrapped
    assert core.env_spec is spec and core.mode == mode
    assert env.observation_space.shape == (128, 128, 3) and obs.shape == (128, 128, 3) and obs.dtype == np.uint8
    assert info == {"seed": SEED}
    assert len(core.npcs) == (obst.NPC_COUNT if mode == "chuckccar" else 0)
    env.close()


def test_default_mode_is_chuckccar_and_unknown_modes_fail():
    env = gym.make(ENV_ID)
    assert env.unwrapped.mode == "chuckccar"
    env.close()
    with pytest.raises(ValueError, match="mode"):
        obst.DropjObstCarRacing(mode="cars")


def test_frames_are_the_128_scene_without_indicator_bar(chuck_drive):
    for frame in chuck_drive.frames[60::20]:  # after the zoom-in second
        assert frame.shape == (128, 128, 3) and frame.dtype == np.uint8
        bottom = frame[-BAR_ROWS:]
        assert (bottom == 0).all(axis=-1).mean() < 0.05  # gym's bar would be black here
        colours = {tuple(c) for c in bottom.reshape(-1, 3)}
        assert colours & {render.BACKGROUND, render.GRASS, render.gl_color(render.ROAD_RGB)}


def test_chuckholes_and_npcs_are_drawn_in_their_colours(chuck_drive, car_drive):
    near_hole = chuck_drive.steps_with("chuck_passed")[0]
    assert any((frame == ORANGE).all(axis=-1).any() for frame in chuck_drive.frames[near_hole:])
    near_car = car_drive.steps_with("car_passed")[0]
    assert any((frame == BLUE).all(axis=-1).any() for frame in car_drive.frames[near_car:])
    assert not any((frame == BLUE).all(axis=-1).any() for frame in chuck_drive.frames)


def _layout(core: obst.DropjObstCarRacing):
    return (np.array([point[2:4] for point in core.track]),
            [tuple(body.position) for body in core.chuckholes],
            [tuple(npc.hull.position) for npc in core.npcs])


def _same(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))


def test_seed_reproduces_track_chuckholes_and_npcs():
    env, other = gym.make(ENV_ID, mode="chuckccar"), gym.make(ENV_ID, mode="chuckccar")
    env.reset(seed=5)
    first = _layout(env.unwrapped)
    env.reset()  # unseeded: continues both random streams
    continued = _layout(env.unwrapped)
    env.reset(seed=6)
    assert not _same(_layout(env.unwrapped), first)
    env.reset(seed=5)
    assert _same(_layout(env.unwrapped), first)
    other.reset(seed=5)
    assert _same(_layout(other.unwrapped), first)
    other.reset()
    assert _same(_layout(other.unwrapped), continued) and not _same(continued, first)
    env.close()
    other.close()


# --- chuckholes --------------------------------------------------------------------------------------


def test_twenty_chuckholes_placed_by_the_spacing_rules():
    env = gym.make(ENV_ID, mode="chuckc")
    for seed in range(6):
        env.reset(seed=seed)
        core = env.unwrapped
        n = len(core.track)
        tiles = sorted(core.chuckhole_tiles)
        assert len(core.chuckholes) == obst.CHUCKHOLE_COUNT == len(tiles) == 20
        assert all(b - a > obst.CHUCK_DISTANCE for a, b in itertools.pairwise(tiles))
        assert not {i % n for i in range(-2, 20)} & set(tiles)
        for body, index in zip(core.chuckholes, core.chuckhole_tiles):
            fixture = body.fixtures[0]
            assert fixture.sensor and fixture.shape.radius == pytest.approx(1.2)
            _, beta, x, y = core.track[index]
            step = obst.gym_car_racing.TRACK_DETAIL_STEP
            assert np.allclose(tuple(body.position), (x - step / 2 * math.sin(beta), y + step / 2 * math.cos(beta)))
    env.close()


def test_placement_falls_back_like_the_authors_when_no_point_is_free():
    n = 60  # room for about 4 spaced chuckholes: the rest go on the last (excluded) point drawn
    tiles = obst.place_chuckholes(n, random.Random(1))
    start = {i % n for i in obst.START_CLEAR}
    breaks_rules = [t in start or any(abs(t - u) <= obst.CHUCK_DISTANCE for u in tiles[:k])
                    for k, t in enumerate(tiles)]
    assert len(tiles) == 20 and not breaks_rules[0] and sum(breaks_rules) >= 15


def test_touching_a_chuckhole_flags_it_once_and_slows_the_car(chuck_drive):
    chuck_steps = chuck_drive.steps_with("chuck")
    assert len(chuck_steps) == 1
    assert chuck_drive.core.touched_chuckholes == {chuck_drive.number}
    hit = chuck_steps[0]
    assert chuck_drive.contacts_after[hit] > 0 and chuck_drive.contacts_after[hit - 1] == 0
    assert chuck_drive.speeds_before[hit + 1] > 15
    # the next step starts with the hull's velocity x0.6; the wheels pull it back a little
    assert chuck_drive.speeds_after[hit + 1] == pytest.approx(0.6 * chuck_drive.speeds_before[hit + 1], rel=0.05)
    while_in = [t for t in range(hit + 1, len(chuck_drive.infos)) if chuck_drive.contacts_after[t - 1] > 0]
    assert len(while_in) >= 3
    assert all(chuck_drive.speeds_after[t] < chuck_drive.speeds_before[t] for t in while_in)


def test_approaching_a_chuckhole_flags_chuck_passed_first(chuck_drive):
    passed = chuck_drive.steps_with("chuck_passed")
    assert passed and passed[0] < chuck_drive.steps_with("chuck")[0]
    assert chuck_drive.core.passed_chuckholes >= {chuck_drive.number}
    assert len(passed) <= len(chuck_drive.core.passed_chuckholes)


def test_chuckc_has_no_cars(chuck_drive):
    assert not chuck_drive.core.npcs
    assert not any({"car", "car_passed"} & set(info) for info in chuck_drive.infos)


# --- NPC cars ----------------------------------------------------------------------------------------


def test_npcs_start_on_every_twelfth_of_the_track():
    env = gym.make(ENV_ID, mode="chuckccar")
    env.reset(seed=3)
    core = env.unwrapped
    step = len(core.track) // 12
    for i, npc in enumerate(core.npcs, start=1):
        _, beta, x, y = core.track[i * step]
        # The reset's step settles each car: gym's Car places its wheels unrotated and the joints pull them in.
        assert np.allclose(tuple(npc.hull.position), (x, y), atol=0.01)
        assert npc.hull.angle == pytest.approx(beta, abs=0.1)
    env.close()


def test_npc_activation_rules():
    n, step = 240, 20  # track points, points between NPC starts; indices: agent first, then NPCs
    assert obst.npc_moves([0, 20, 40], n, step) == [False, False]  # as placed: nobody near
    assert obst.npc_moves([8, 20, 38], n, step) == [True, True]  # agent 12 behind NPC 1, NPC 1 18 behind NPC 2
    assert obst.npc_moves([32, 20, 100], n, step) == [True, False]  # agent 12 ahead of NPC 1
    assert obst.npc_moves([33, 20, 100], n, step) == [False, False]  # 13 ahead is too far
    assert obst.npc_moves([15, 20, 23], n, step) == [False, True]  # NPC 2 only 3 ahead: NPC 1 waits


def test_ramming_an_npc_flags_car_once_and_car_passed(car_drive):
    cars = car_drive.steps_with("car")
    assert len(cars) == 1 and car_drive.core.hit_cars == {1}
    passed = car_drive.steps_with("car_passed")
    assert passed and passed[0] <= cars[0] and 1 in car_drive.core.passed_cars


def test_npc_wheels_neither_visit_nor_repaint_tiles(car_drive):
    core = car_drive.core
    reach = max(int(i) for i in core.nearest_track_points([core.car])) + 3
    npc_points = [int(i) for i in core.nearest_track_points(core.npcs)]
    assert max(npc_points) > reach  # NPCs drove ahead of the agent
    assert not [i for i, tile in enumerate(core.road) if tile.road_visited and i > reach]
    for i, tile in enumerate(core.road):
        if i > reach + 5 and i % 3:
            assert core._poly_colors[tile.poly_index] != render.gl_color(render.ROAD_RGB)
    assert all(not wheel.tiles for npc in core.npcs for wheel in npc.wheels)  # the authors' NPCs: grass friction
    assert core.tile_visited_count == sum(tile.road_visited for tile in core.road)


# --- rewards and info ----------------------------------------------------------------------------------


@pytest.mark.parametrize("log_name", ["chuck_drive", "car_drive"])
def test_reward_matches_flags_and_keys_keep_the_spec_order(log_name, request):
    log = request.getfixturevalue(log_name)
    keys = log.core.env_spec.info_keys
    for reward, info in zip(log.rewards, log.infos):
        assert type(reward) is int
        assert (reward == -1) == ("crash" in info) and (reward == 10) == ("succ" in info)
        assert reward in (-1, 0, 10) and not {"crash", "succ"} <= set(info)
        assert list(info) == [key for key in keys if key in info]
        assert all(value is True for value in info.values())
    assert log.steps_with("succ")


# --- driving aids ------------------------------------------------------------------------------------------


def test_no_driving_aids_by_default(chuck_drive):
    core = chuck_drive.core
    assert not (core.recover or core.control_speed or core.initial_acc)


def test_driving_aids_change_the_applied_action():
    env = gym.make(ENV_ID, mode="chuckc", driving_aids=True)
    env.reset(seed=SEED)
    car = env.unwrapped.car
    hard_right = np.array([1.0, 1.0, 0.0])
    for _ in range(obst.INITIAL_ACC_LAST_STEP - 1):  # INITIAL_ACC: straight at gas 0.3
        env.step(hard_right)
        assert car.wheels[0].steer == 0.0 and car.wheels[2].gas <= 0.3 + 1e-9
    env.step(hard_right)
    assert car.wheels[0].steer == -1.0
    assert car.wheels[2].gas == pytest.approx(0.5)  # RECOVER + CONTROL_SPEED: the authors' double gas ramp
    capped = recovered = False
    for _ in range(60):
        was_fast = speed(car) > obst.SPEED_LIMIT
        env.step(hard_right)
        capped |= was_fast and car.wheels[2].gas == 0.0
        recovered |= car.wheels[0].steer > 0  # only RECOVER steers left against a hard-right command
    assert capped and recovered
    env.close()


def test_without_aids_the_action_is_applied_as_given():
    env = gym.make(ENV_ID, mode="chuckc")
    env.reset(seed=SEED)
    car = env.unwrapped.car
    for t in range(5):
        env.step(np.array([1.0, 1.0, 0.0]))
        assert car.wheels[0].steer == -1.0 and car.wheels[2].gas == pytest.approx(0.1 * (t + 1))
    env.close()
