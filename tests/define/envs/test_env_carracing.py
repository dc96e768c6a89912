"""DropjCarRacing: the data set's semantics (DATA_FORMATS.md 1 and 8.1), on real gymnasium/Box2D drives.

`fixtures/gym020_carracing_seed3.npz` was recorded from the authors' own
environment (gym 0.20.0 `CarRacing-v0` with their `install/car_racing.py`,
pyglet 1.5.27, Mesa under Xvfb; docs/environments.md) driving a seeded
keyboard-like script; our environment must reproduce it.
"""

from __future__ import annotations


import gymnasium as gym
import numpy as np
import pytest

import dropj_datasets.envs  # noqa: F401  (registers the ids)
from dropj_datasets import schema
from dropj_datasets.envs import car_racing, seeding
from dropj_datasets.envs.frames import process_frame
from factory import FIXTURES

FIXTURE = FIXTURES / "gym020_carracing_seed3.npz"
GAS = np.array([0.0, 1.0, 0.0])


def make(**kwargs):
    return gym.make("DropjCarRacing-v0", **kwargs)


def drive(env, actions, seed):
    obs, info = env.reset(seed=seed)
    out = {"obs": [obs], "state": [env.unwrapped.state.copy()], "reward": [], "info": [], "xy": [],
           "terminated": [], "truncated": []}
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        out["obs"].append(obs)
        out["state"].append(env.unwrapped.state.copy())
        out["reward"].append(reward)
        out["info"].append(info)
        out["xy"].append(tuple(env.unwrapped.car.hull.position))
        out["terminated"].append(terminated)
        out["truncated"].append(truncated)
        if terminated or truncated:
            break
    return out


@pytest.fixture(scope="module")
def reference():
    return np.load(FIXTURE)


@pytest.fixture(scope="module")
def replay(reference):
    env = make()
    try:
        yield drive(env, reference["actions"], int(reference["seed"])), np.array(env.unwrapped.track)
    finally:
        env.close()


def test_registered_with_the_release_time_limit_and_spaces():
    env = make()
    assert env.spec.max_episode_steps == car_racing.MAX_EPISODE_STEPS == 1000
    assert env.observation_space.shape == schema.CARRACING.frame_shape == (84, 84, 3)
    assert env.observation_space.dtype == np.uint8
    np.testing.assert_array_equal(env.action_space.low, [-1, 0, 0])
    np.testing.assert_array_equal(env.action_space.high, [1, 1, 1])
    env.close()


def test_seeding_is_gym_020s():
    # The first draws of gym 0.20's `seeding.np_random(seed)`, read off gym 0.20.0 itself.
    expected = {0: [0.05436005625078322, 0.9653909372423204, 0.6326909455841033],
                42: [0.3741433781083283, 0.48433855165563755, 0.9207708208612142],
                12345: [0.5213110009380251, 0.23811934847710303, 0.8980482107184392]}
    for seed, draws in expected.items():
        rng, used = seeding.legacy_random_state(seed)
        assert used == seed
        assert [rng.uniform() for _ in draws] == draws
    with pytest.raises(ValueError, match="non-negative"):
        seeding.legacy_random_state(-1)


def test_same_track_trajectory_rewards_and_flags_as_the_authors_env(reference, replay):
    ours, track = replay
    np.testing.assert_array_equal(track, reference["track"])  # bit for bit
    np.testing.assert_array_equal(np.array(ours["xy"]), reference["hull_xy"])
    assert ours["reward"] == reference["rewards"].astype(int).tolist()
    assert [bool(i.get("crash")) for i in ours["info"]] == reference["info_crash"].tolist()
    assert [bool(i.get("succ")) for i in ours["info"]] == reference["info_succ"].tolist()


def test_frames_match_the_authors_opengl_rendering(reference, replay):
    ours, _ = replay
    for k, step in enumerate(reference["frame_steps"]):
        theirs = reference["frames"][k]
        mine = ours["state"][int(step) + 1 if step else 0]
        assert mine.shape == theirs.shape == (96, 96, 3)
        scene = (mine[:84] == theirs[:84]).all(-1).mean()  # rows 84+ are the indicator bar, cropped away
        assert scene >= 0.999, f"step {step}: only {scene:.4%} of scene pixels equal gym 0.20's"
        processed = (process_frame(mine) == process_frame(theirs)).all(-1).mean()
        assert processed >= 0.995


def test_rewards_are_ints_and_exclusive_flags(replay):
    ours, _ = replay
    assert {type(r) for r in ours["reward"]} == {int}
    assert set(ours["reward"]) == {-1, 0, 10}
    for reward, info in zip(ours["reward"], ours["info"]):
        assert set(info) <= {"crash", "succ"}
        assert all(v is True for v in info.values())  # keys are present only when true
        assert (reward == -1) == ("crash" in info)
        assert (reward == 10) == ("succ" in info)


def test_frames_are_processed_as_released(replay):
    ours, _ = replay
    for obs, state in zip(ours["obs"][:60], ours["state"][:60]):
        assert obs.shape == (84, 84, 3) and obs.dtype == np.uint8
        assert not (obs == 0).all(-1).any()  # pure black became white
        np.testing.assert_array_equal(obs, process_frame(state))
    first = ours["state"][0]
    assert (first[84:] == 0).all(-1).mean() > 0.8  # the raw state keeps gym's black indicator bar
    assert (ours["obs"][0] == 255).all(-1).sum() > 100  # zoom-in: black outside the field became white


def test_succ_marks_each_newly_visited_tile():
    env = make()
    env.reset(seed=5)
    inner = env.unwrapped
    for _ in range(120):
        before = inner.tile_visited_count
        _, reward, *_ , info = env.step(GAS)
        new_tiles = inner.tile_visited_count - before
        if "crash" not in info:
            assert ("succ" in info) == (new_tiles > 0)
    assert inner.tile_visited_count > 10
    env.close()


def test_off_road_follows_the_wheel_contact_rule():
    env = make()
    env.reset(seed=5)
    inner = env.unwrapped
    crashed_while = []
    for t in range(160):
        action = GAS if t < 60 else np.array([1.0, 1.0, 0.0])  # then full right, off the road
        _, reward, terminated, _, info = env.step(action)
        any_wheel_off = any(not wheel.tiles for wheel in inner.car.wheels)
        if "crash" in info:
            crashed_while.append(any_wheel_off)
            assert reward == -1
        # The authors' flag: True once one wheel left its last tile, until some wheel touches a tile again.
        if inner.off_road:
            assert any_wheel_off
    assert crashed_while and any(crashed_while)
    env.close()


def test_terminates_only_out_of_the_playfield():
    env = make()
    actions = [GAS] * 150 + [np.array([1.0, 1.0, 0.0])] * 150
    out = drive(env, actions, seed=0)
    assert out["terminated"][-1] and not any(out["terminated"][:-1])
    assert not any(out["truncated"])
    x, y = out["xy"][-1]
    assert max(abs(x), abs(y)) > car_racing.PLAYFIELD
    assert out["reward"][-1] == -1 and out["info"][-1] == {"crash": True}
    env.close()


def test_a_finished_lap_does_not_terminate():
    env = make()
    env.reset(seed=1)
    inner = env.unwrapped
    for tile in inner.road:  # every tile visited: gymnasium's CarRacing would end the episode now
        tile.road_visited = True
    inner.tile_visited_count = len(inner.track)
    inner.new_lap = True
    _, _, terminated, truncated, _ = env.step(GAS)
    assert not terminated and not truncated
    env.close()


def test_time_limit_truncates():
    env = make(max_episode_steps=25)
    out = drive(env, [GAS] * 40, seed=2)
    assert len(out["reward"]) == 25
    assert out["truncated"][-1] and not out["terminated"][-1]
    env.close()


def test_reset_without_seed_continues_the_stream_and_reports_the_seed():
    env = make()
    _, info = env.reset()
    first = np.array(env.unwrapped.track)
    assert isinstance(info["seed"], int)
    env.reset()
    assert not np.array_equal(first, np.array(env.unwrapped.track))
    env.reset(seed=info["seed"])
    np.testing.assert_array_equal(first, np.array(env.unwrapped.track))
    env.close()


@pytest.mark.parametrize("bad", [np.array([0.0, 1.0]), np.array([np.nan, 0.0, 0.0])])
def test_bad_actions_are_refused(bad):
    env = make()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="3 finite floats"):
        env.step(bad)
    env.close()


def test_rgb_array_render():
    env = make(render_mode="rgb_array")
    env.reset(seed=0)
    env.step(GAS)
    frame = env.render()
    assert frame.shape == (car_racing.VIDEO_H, car_racing.VIDEO_W, 3) and frame.dtype == np.uint8
    env.close()


@pytest.mark.parametrize("kwargs", [{}, {"mode": "chuckc"}, {"mode": "chuckccar"}],
                         ids=["carracing", "chuckc", "chuckccar"])
def test_gymnasium_env_checker_passes_without_warnings(kwargs):
    import warnings

    from gymnasium.utils.env_checker import check_env

    env_id = "DropjObstCarRacing-v0" if kwargs else "DropjCarRacing-v0"
    env = gym.make(env_id, **kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped, skip_render_check=True)
    messages = [str(w.message) for w in caught if "Swig" not in str(w.message)]
    assert messages == []
    env.close()
