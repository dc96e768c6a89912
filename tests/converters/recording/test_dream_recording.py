"""Recording a person's drive inside the world model (`dropj record`'s recorder on `DropjDream-v0`), exported as
the release's dream pickles (DATA_FORMATS.md 2.1), field by field and type by type."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest

import factory
from dropj.converters.store import legacy_pickle
from dropj.converters.recording import capture as record
from dropj.converters.roundtrip.export import export
from dropj_datasets import schema

STEPS = 30
INIT = factory.dummy_data("dropj_carracing") / "extracted" / "default_init_obs.pkl"


@pytest.fixture(scope="module")
def checkpoints(world_model):
    return world_model


def _drive(checkpoints, out, episodes=2):
    gym_env = record.make_env("carracing_dream", STEPS, mdnrnn=str(checkpoints / "rnn.pt"),
                              vae=str(checkpoints / "vae.pt"), init_states=str(INIT))
    recorder = record.open_recorder("carracing_dream", out, "p1", seeds=itertools.count(7), gym_env=gym_env,
                                    log=lambda line: None)
    actions = []
    for _ in range(episodes):
        timestep = recorder.logger.reset()
        while not timestep.last():
            t = recorder.adapter.episode_steps
            action = np.array([(-1.0, 0.0, 1.0)[t % 3], 1.0, 0.8 if t % 7 == 0 else 0.0])
            actions.append(action)
            timestep = recorder.logger.step(action)
    recorder.close()
    return record.recording_dir(out, "carracing_dream"), actions


def test_a_dream_recording_exports_as_the_release_dream_files(checkpoints, tmp_path):
    directory, actions = _drive(checkpoints, tmp_path / "rec")
    written = export(str(directory), tmp_path / "legacy", log=lambda line: None)
    assert [p.name for p in written] == ["dream_user_rollouts.pkl", "dream_user_rollouts_scaled.pkl"]
    initial = pickle.loads(INIT.read_bytes())
    unscaled, scaled = (pickle.loads(p.read_bytes()) for p in written)
    assert all(p.read_bytes()[:2] == b"\x80\x04" for p in written)  # protocol 4, as the release's
    assert len(unscaled) == len(scaled) == 2 and all(len(ep) == STEPS for ep in unscaled)
    for episode, scaled_episode in zip(unscaled, scaled):
        for t, (prev_obs, action, reward, obs, done, info) in enumerate(episode):
            assert prev_obs.shape == obs.shape == (544,)
            assert prev_obs.dtype == (np.float64 if t == 0 else np.float32) and obs.dtype == np.float32
            assert type(reward) is int and reward == 0 and type(done) is float and done == 0.0 and info == {}
            assert action.dtype == np.float64 and action.shape == (3,)
            if t:
                assert np.array_equal(prev_obs, episode[t - 1][3])
            assert np.array_equal(scaled_episode[t][1], schema.scale_action(action))
            assert np.array_equal(scaled_episode[t][0], prev_obs) and scaled_episode[t][0].dtype == prev_obs.dtype
        assert np.array_equal(episode[0][0], initial)
    recorded = np.concatenate([[a for _, a, *_ in ep] for ep in unscaled])
    assert np.array_equal(recorded, np.stack(actions))
    for path in written:  # the safe reader takes them as release files
        with open(path, "rb") as f:
            assert len(list(legacy_pickle.iter_list(f, str(path)))) == 2


def test_the_dream_is_reproducible_from_its_seed_and_actions(checkpoints, tmp_path):
    directory, actions = _drive(checkpoints, tmp_path / "rec", episodes=1)
    [path, _] = export(str(directory), tmp_path / "legacy", log=lambda line: None)
    [episode] = pickle.loads(path.read_bytes())
    env = record.make_env("carracing_dream", STEPS, mdnrnn=str(checkpoints / "rnn.pt"), init_states=str(INIT))
    obs, _ = env.reset(seed=7)
    for t, action in enumerate(actions):
        obs, *_ = env.step(action)
        assert np.array_equal(obs, episode[t][3])
    env.close()


@pytest.mark.slow
def test_dropj_record_env_dream_in_a_real_window(checkpoints, tmp_path):
    """`dropj record --env dream` on Xvfb, with real key events: the driver sees the VAE's frames."""
    import time

    import tensorflow_datasets as tfds

    from factory import window as xwindow

    if xwindow.MISSING:
        pytest.skip(f"needs {', '.join(xwindow.MISSING)} (`make sysdeps` installs them)")
    server = xwindow.XServer()
    try:
        rec = xwindow.Recording(server.display, tmp_path / "out", tmp_path / "logs", "--env", "dream",
                                "--vae", str(checkpoints / "vae.pt"), "--mdnrnn", str(checkpoints / "rnn.pt"),
                                "--init_states", str(INIT), "--episodes", "1", "--seed", "2", "--max_steps", "60",
                                "--screenshot", str(tmp_path / "dream.png"), user="dreamer")
        try:
            rec.find_window()
            rec.keys("keydown", "Up", "Left")
            time.sleep(0.4)
            rec.keys("keyup", "Left", "Up")
            rc = rec.wait(120)
            stdout = rec.stdout
        finally:
            rec.close()
    finally:
        server.close()
    assert rc == 0, stdout + rec.stderr[-2000:]
    assert "episode 0 saved: 60 steps" in stdout
    builder = tfds.builder_from_directory(str(record.recording_dir(tmp_path / "out", "carracing_dream")))
    [episode] = tfds.as_numpy(builder.as_dataset(split="train"))
    steps = list(episode["steps"])
    assert len(steps) == 61 and steps[0]["observation"].shape == (544,)
    assert any(s["action"][1] == 1.0 and s["action"][0] == -1.0 for s in steps)  # Up + Left became gas + left
    assert episode["episode_metadata"]["env_id"] == b"DropjDream-v0"
    assert not (tmp_path / "dream.png").exists()  # the screenshot is taken at step 100; this episode has 60
