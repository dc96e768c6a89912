"""GymRecorder: real gymnasium environments recorded, loaded back with TFDS, and every stored value compared with
what the environment produced (float bits and NaN payloads included); a recording killed mid-episode; discard;
spaces refused; the one-writer lock; a directory whose features.json is not its description's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from dropj.converters import GymRecorder
from dropj.converters.recording import gym_recorder
from dropj.converters.store.shards import RecordingError
from dropj_datasets import schema

REPO = Path(__file__).resolve().parents[3]


def load(directory: Path) -> list[tuple[list[dict], dict]]:
    """Each episode's steps and metadata, as numpy, read by TFDS from the directory alone."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(str(directory))
    episodes = []
    for episode in builder.as_dataset(split="train"):
        meta = tf.nest.map_structure(lambda t: t.numpy(), episode[schema.EPISODE_METADATA])
        episodes.append((list(episode[schema.STEPS].as_numpy_iterator()), meta))
    return episodes


def same(stored, produced, where: str) -> None:
    """Equal down to the bits: dtype, shape and bytes (a NaN's payload too)."""
    if isinstance(produced, dict):
        assert set(stored) == {str(k) for k in produced}, where
        for key, value in produced.items():
            same(stored[str(key)], value, f"{where}[{key}]")
        return
    if isinstance(produced, tuple):
        for i, value in enumerate(produced):
            same(stored[str(i)], value, f"{where}[{i}]")
        return
    produced = np.asarray(produced)
    assert (stored.dtype, stored.shape) == (produced.dtype, produced.shape), where
    assert stored.tobytes() == produced.tobytes(), f"{where}: {stored!r} != {produced!r}"


class Recorded:
    """What the environment produced, episode by episode, as the user's loop saw it."""

    def __init__(self):
        self.episodes: list[dict] = []

    def reset(self, env, seed):
        obs, info = env.reset(seed=seed)
        self.episodes.append({"seed": seed, "obs": [obs], "info": [info], "actions": [], "rewards": [],
                              "terminated": [False], "truncated": [False]})

    def step(self, env, action):
        obs, reward, terminated, truncated, info = env.step(action)
        ep = self.episodes[-1]
        for key, value in (("obs", obs), ("info", info), ("actions", action), ("rewards", reward),
                           ("terminated", terminated), ("truncated", truncated)):
            ep[key].append(value)
        return terminated or truncated

    def check(self, stored: list, info_keys=()):
        assert len(stored) == len(self.episodes)
        for index, ((steps, meta), ep) in enumerate(zip(stored, self.episodes)):
            assert len(steps) == len(ep["obs"]), f"episode {index}"
            assert meta[schema.EPISODE_INDEX] == index
            assert json.loads(meta[gym_recorder.RESET_SEED]) == ep["seed"]
            for t, step in enumerate(steps):
                where = f"episode {index} step {t}"
                same(step[schema.OBSERVATION], ep["obs"][t], where + " observation")
                if t < len(ep["actions"]):
                    same(step[schema.ACTION], ep["actions"][t], where + " action")
                    assert step[schema.REWARD].tobytes() == np.float64(ep["rewards"][t]).tobytes(), where
                    assert step[schema.DISCOUNT] == (0.0 if ep["terminated"][t + 1] else 1.0), where
                assert step[gym_recorder.TERMINATED] == ep["terminated"][t], where
                assert step[gym_recorder.TRUNCATED] == ep["truncated"][t], where
                assert step[schema.IS_FIRST] == (t == 0) and step[schema.IS_LAST] == (t == len(steps) - 1), where
                assert step[schema.IS_TERMINAL] == (t == len(steps) - 1 and ep["terminated"][t]), where
                for key in info_keys:
                    present = key in ep["info"][t]
                    assert step[gym_recorder.INFO_PRESENT][key] == present, where
                    if present:
                        same(step[schema.INFO][key], np.asarray(ep["info"][t][key]), f"{where} info {key}")


def test_cartpole_recorded_exactly_and_appended(tmp_path):
    recorded = Recorded()
    env = GymRecorder(gym.make("CartPole-v1"), tmp_path, name="cartpole", metadata={"policy": "random"}, log=None)
    env.action_space.seed(1)
    for seed in (0, 1):
        recorded.reset(env, seed)
        while not recorded.step(env, env.action_space.sample()):
            pass
    env.close()
    # a second session appends, and a truncation is kept apart from a termination
    env = GymRecorder(gym.make("CartPole-v1", max_episode_steps=5), tmp_path, name="cartpole", log=None)
    recorded.reset(env, 7)
    while not recorded.step(env, 0 if len(recorded.episodes[-1]["obs"]) % 2 else 1):
        pass
    env.close()
    assert recorded.episodes[-1]["truncated"][-1] and not recorded.episodes[-1]["terminated"][-1]

    stored = load(tmp_path / "cartpole" / gym_recorder.VERSION)
    recorded.check(stored)
    spec = json.loads(stored[0][1][gym_recorder.ENV_SPEC])
    assert (spec["id"], spec["gymnasium"], spec["package"]) == ("CartPole-v1", gym.__version__, "gymnasium")
    assert json.loads(stored[2][1][gym_recorder.ENV_SPEC])["kwargs"] == {}
    assert json.loads(stored[0][1][gym_recorder.USER_METADATA]) == {"policy": "random"}
    assert json.loads(stored[2][1][gym_recorder.USER_METADATA]) == {}
    meta = stored[0][1]
    assert meta[gym_recorder.STARTED] <= stored[0][0][0][schema.WALL_TIME] <= meta[gym_recorder.ENDED]


class Nested(gym.Env):
    """Dict, Tuple, MultiDiscrete and MultiBinary observations; floats with NaNs of chosen payloads."""

    NAN32 = np.array([0x7FC01234], np.uint32).view(np.float32)[0]
    NAN64 = np.array([0x7FF8_0000_DEAD_BEEF], np.uint64).view(np.float64)[0]

    def __init__(self):
        self.observation_space = spaces.Dict({
            "position": spaces.Box(-np.inf, np.inf, (3,), np.float64),
            "flags": spaces.MultiBinary(4),
            "counts": spaces.MultiDiscrete([3, 5]),
            "pair": spaces.Tuple((spaces.Discrete(4), spaces.Box(-1, 1, (2,), np.float32))),
        })
        self.action_space = spaces.Tuple((spaces.Discrete(3), spaces.Box(-1, 1, (2,), np.float32)))
        self.t = 0

    def _obs(self):
        obs = self.observation_space.sample()
        if self.t == 2:
            obs["position"][1] = self.NAN64
            obs["pair"][1][0] = self.NAN32
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.observation_space.seed(seed)
        self.t = 0
        return self._obs(), {"energy": np.float64(self.NAN64)}

    def step(self, action):
        self.t += 1
        info = {"energy": np.float64(self.t / 3)} if self.t % 2 else {}
        return self._obs(), float(self.t) / 7, self.t == 5, False, info


def test_nested_spaces_nan_payloads_and_info(tmp_path):
    recorded = Recorded()
    env = GymRecorder(Nested(), tmp_path, name="nested", info_keys=("energy", "never"), log=None)
    env.action_space.seed(3)
    for seed in (10, 11):
        recorded.reset(env, seed)
        while not recorded.step(env, (env.action_space.sample()[0], np.array([Nested.NAN32, 0.5], np.float32))):
            pass
    env.close()
    stored = load(tmp_path / "nested" / gym_recorder.VERSION)
    recorded.check(stored, info_keys=("energy",))
    assert set(stored[0][0][0][schema.INFO]) == {"energy"}  # a key the first episode never had is not recorded
    assert stored[0][0][2][schema.OBSERVATION]["position"][1:2].view(np.uint64)[0] == 0x7FF8_0000_DEAD_BEEF
    spec = json.loads(stored[0][1][gym_recorder.ENV_SPEC])
    assert spec["id"] is None and spec["entry_point"] == __name__


class Frames(gym.Env):
    """An RGB uint8 (H, W, 3) observation: stored as a lossless frame."""

    observation_space = spaces.Box(0, 255, (18, 14, 3), np.uint8)
    action_space = spaces.Discrete(5)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.np_random.integers(0, 256, (18, 14, 3), dtype=np.uint8), {}

    def step(self, action):
        self.t += 1
        return self.np_random.integers(0, 256, (18, 14, 3), dtype=np.uint8), 1.0, False, self.t == 6, {}


def test_image_observations_stored_as_lossless_frames(tmp_path):
    recorded = Recorded()
    env = GymRecorder(Frames(), tmp_path, name="frames", log=None)
    for seed in (0, 1):
        recorded.reset(env, seed)
        while not recorded.step(env, int(seed + len(recorded.episodes[-1]["obs"])) % 5):
            pass
    env.close()
    directory = tmp_path / "frames" / gym_recorder.VERSION
    features = json.loads((directory / "features.json").read_text())
    assert "image" in json.dumps(features).lower() and "png" in json.dumps(features)
    recorded.check(load(directory))


def test_discard_episode_drops_only_the_open_one(tmp_path):
    env = GymRecorder(Frames(), tmp_path, name="frames", log=None)
    for seed in (0, 1, 2):
        env.reset(seed=seed)
        for _ in range(6):
            env.step(0)
        if seed == 1:
            assert env.discard_episode() == 7
    env.close()
    stored = load(tmp_path / "frames" / gym_recorder.VERSION)
    assert [json.loads(meta[gym_recorder.RESET_SEED]) for _, meta in stored] == [0, 2]


KILLED = """
import os, sys, time
import gymnasium as gym
from dropj.converters import GymRecorder
env = GymRecorder(gym.make("CartPole-v1"), sys.argv[1], name="cartpole", log=None)
for seed in (0, 1, 2):
    env.reset(seed=seed)
    done = False
    while not done:
        _, _, terminated, truncated, _ = env.step(seed % 2)
        done = terminated or truncated
env.reset(seed=3)
env.step(0)
print("open", flush=True)
time.sleep(60)
"""


def test_a_killed_recording_loses_only_the_open_episode(tmp_path):
    script = tmp_path / "record.py"
    script.write_text(textwrap.dedent(KILLED))
    process = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE, cwd=REPO,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        assert process.stdout.readline() == b"open\n"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    directory = tmp_path / "cartpole" / gym_recorder.VERSION
    stored = load(directory)
    assert [json.loads(meta[gym_recorder.RESET_SEED]) for _, meta in stored] == [0, 1, 2]
    env = GymRecorder(gym.make("CartPole-v1"), tmp_path, name="cartpole", log=None)  # the lock died with it
    env.reset(seed=4)
    env.step(1)
    env.close()
    assert len(load(directory)) == 4


def test_one_writer_per_directory(tmp_path):
    first = GymRecorder(gym.make("CartPole-v1"), tmp_path, name="cartpole", log=None)
    try:
        with pytest.raises(RecordingError, match="another recording is writing here"):
            GymRecorder(gym.make("CartPole-v1"), tmp_path, name="cartpole", log=None)
    finally:
        first.close()


@pytest.mark.parametrize("space, named", [
    (spaces.Text(5), "Text"),
    (spaces.Dict({"a b": spaces.Discrete(2)}), "'a b'"),
    (spaces.Dict({"ok": spaces.Sequence(spaces.Discrete(2))}), "Sequence"),
])
def test_unsupported_spaces_refused_in_one_line(tmp_path, space, named):
    env = gym.make("CartPole-v1")
    env.observation_space = space
    with pytest.raises(ValueError) as refused:
        GymRecorder(env, tmp_path, name="bad", log=None)
    message = str(refused.value)
    assert "\n" not in message and named in message and "the observation" in message
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").rglob("*.tfrecord*"))


def test_other_spaces_or_tampered_features_refused(tmp_path):
    env = GymRecorder(gym.make("CartPole-v1"), tmp_path, name="run", log=None)
    env.reset(seed=0)
    env.step(0)
    env.close()
    with pytest.raises(RecordingError, match="other spaces"):
        GymRecorder(Frames(), tmp_path, name="run", log=None)
    features = tmp_path / "run" / gym_recorder.VERSION / "features.json"
    text = features.read_text()
    features.write_text(text.replace("tensorflow_datasets.core.features.tensor_feature.Tensor", "os.system", 1))
    with pytest.raises(RecordingError, match="not the features its metadata.json describes"):
        GymRecorder(gym.make("CartPole-v1"), tmp_path, name="run", log=None)
    assert "os.system" in features.read_text()  # refused, never rewritten


def test_rebuild_lists_the_shards_again(tmp_path):
    env = GymRecorder(gym.make("CartPole-v1"), tmp_path, name="run", log=None)
    for seed in (0, 1):
        env.reset(seed=seed)
        env.step(0)
    env.close()
    directory = tmp_path / "run" / gym_recorder.VERSION
    (directory / "dataset_info.json").unlink()
    with pytest.raises(RecordingError, match="repair-recording"):
        GymRecorder(gym.make("CartPole-v1"), tmp_path, name="run", log=None)
    assert gym_recorder.rebuild(directory, log=lambda line: None).endswith("2 episodes listed in dataset_info.json")
    assert len(load(directory)) == 2


class Drifting(Nested):
    """Its info's `energy` changes shape after the first episode."""

    episodes = 0

    def reset(self, *, seed=None, options=None):
        self.episodes += 1
        return super().reset(seed=seed, options=options)

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward, terminated, truncated, {"energy": np.zeros(2)} if self.episodes > 1 else info


def test_info_that_no_longer_fits_is_left_out_not_the_episode(tmp_path):
    notes = []
    env = GymRecorder(Drifting(), tmp_path, name="drift", info_keys=("energy",), log=notes.append)
    for seed in (0, 1):
        env.reset(seed=seed)
        for _ in range(5):
            env.step(env.action_space.sample())
    env.close()
    stored = load(tmp_path / "drift" / gym_recorder.VERSION)
    assert [len(steps) for steps, _ in stored] == [6, 6]
    second = stored[1][0]
    assert [bool(s[gym_recorder.INFO_PRESENT]["energy"]) for s in second] == [True] + [False] * 5
    assert len(notes) == 5 and all("info['energy'] is float64[2], its space float64[]" in n for n in notes), notes


def test_bad_names_refused(tmp_path):
    with pytest.raises(ValueError, match="not a dataset name"):
        GymRecorder(gym.make("CartPole-v1"), tmp_path, name="Cart Pole", log=None)
    with pytest.raises(ValueError, match="info keys"):
        GymRecorder(gym.make("CartPole-v1"), tmp_path, name="cartpole", info_keys=("a/b",), log=None)
