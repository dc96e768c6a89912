"""The EnvLogger recorder: real environments, real EnvLogger, real TFDS directories, real SIGKILL."""

from __future__ import annotations

import itertools
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import tensorflow_datasets as tfds

import dropj_datasets.envs  # noqa: F401
from dropj.converters.roundtrip import export
from dropj.converters.store import legacy_pickle
from dropj.converters.recording import capture as record, store as recording_store, writer as recording_writer
from dropj.loaders import transformations
from dropj_datasets import builder as builder_lib
from dropj_datasets import schema
from factory.compare import assert_reads_like_tfds

GAS = np.array([0.0, 1.0, 0.0])
RIGHT_GAS = np.array([1.0, 1.0, 0.0])
KEYS_GAS = (False, False, True, False)


def short_env(steps: int):
    return record.make_env("carracing", steps)


def drive(recorder, script):
    """Runs one episode through EnvLogger; returns what the environment returned, per step."""
    seen = {"obs": [], "reward": [], "info": []}
    timestep = recorder.logger.reset()
    seen["obs"].append(timestep.observation)
    t = 0
    while not timestep.last():
        timestep = recorder.logger.step(script(t))
        seen["obs"].append(timestep.observation)
        seen["reward"].append(int(timestep.reward))
        seen["info"].append(dict(recorder.adapter.last_raw_info))
        t += 1
    return seen


def load(data_dir, env_name="carracing"):
    builder = tfds.builder_from_directory(str(record.recording_dir(data_dir, env_name)))
    episodes = []
    for example in tfds.as_numpy(builder.as_dataset(split="train", shuffle_files=False)):
        steps = list(example[schema.STEPS])
        episodes.append(({k: np.array([s[k] for s in steps]) for k in steps[0] if k != schema.INFO},
                         {k: np.array([s[schema.INFO][k] for s in steps]) for k in steps[0][schema.INFO]},
                         example[schema.EPISODE_METADATA]))
    return builder, episodes


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """Two time-limited episodes (30 steps) and one that leaves the playfield (seed 0)."""
    data_dir = tmp_path_factory.mktemp("recordings")
    rec = record.open_recorder("carracing", data_dir, "driver-1", session_id="s1", seeds=iter([7, 8]),
                               keys_held=lambda: KEYS_GAS, gym_env=short_env(30))
    seen = [drive(rec, lambda t: GAS), drive(rec, lambda t: GAS)]
    rec.close()
    rec = record.open_recorder("carracing", data_dir, "driver-2", session_id="s2", seeds=iter([0]),
                               gym_env=short_env(1000))
    seen.append(drive(rec, lambda t: GAS if t < 150 else RIGHT_GAS))
    rec.close()
    return data_dir, seen


def test_features_are_the_builders_real_features_plus_recording_metadata(recorded):
    data_dir, _ = recorded
    builder, _ = load(data_dir)
    real = builder_lib.features(schema.spec_for("dropj_carracing", "real"))
    rec_steps = builder.info.features[schema.STEPS].feature
    real_steps = real[schema.STEPS].feature
    for key, feature in real_steps.items():
        assert repr(rec_steps[key]) == repr(feature), key
    assert set(rec_steps) - set(real_steps) == {schema.WALL_TIME, schema.KEYS_HELD}
    spec = schema.spec_for(schema.RECORDING_DATASET, "carracing")
    assert repr(builder.info.features) == repr(builder_lib.features(spec))
    assert (builder.name, builder.builder_config.name) == (schema.RECORDING_DATASET, "carracing")
    by_name = tfds.load(f"{schema.RECORDING_DATASET}/carracing", data_dir=str(data_dir), split="train")
    assert by_name.cardinality().numpy() == 3


def test_steps_are_aligned_as_the_release_builders_align_them(recorded):
    _, seen = recorded
    _, episodes = load(recorded[0])
    assert len(episodes) == 3
    for (steps, info, _meta), env_seen in zip(episodes, seen):
        n = len(env_seen["reward"])
        assert len(steps[schema.OBSERVATION]) == n + 1
        np.testing.assert_array_equal(steps[schema.OBSERVATION], np.stack(env_seen["obs"]))  # PNG is lossless
        assert steps[schema.REWARD][:-1].tolist() == env_seen["reward"] and steps[schema.REWARD][-1] == 0
        assert steps[schema.IS_FIRST].tolist() == [True] + [False] * n
        assert steps[schema.IS_LAST].tolist() == [False] * n + [True]
        for key, column in info.items():
            source_key = {v: k for k, v in schema.INFO_FEATURE_NAMES.items()}[key]
            if source_key != schema.TIME_LIMIT_TRUNCATED:
                expected = [schema.INFO_TRUE if i.get(source_key) else schema.INFO_ABSENT for i in env_seen["info"]]
                assert column[:-1].tolist() == expected, key
            assert column[-1] == schema.INFO_ABSENT
        assert np.all(np.diff(steps[schema.WALL_TIME]) >= 0)
        assert not steps[schema.KEYS_HELD][-1].any()


def test_time_limit_is_a_truncation_and_leaving_the_field_a_termination(recorded):
    _, episodes = load(recorded[0])
    (steps, info, meta) = episodes[0]
    assert info["time_limit_truncated"][:-1].tolist() == [-1] * 29 + [1]
    assert not steps[schema.IS_TERMINAL].any()
    assert steps[schema.DISCOUNT].tolist() == [1.0] * 31
    steps, info, meta = episodes[2]
    assert steps[schema.IS_TERMINAL].tolist()[-2:] == [False, True]
    assert steps[schema.DISCOUNT][-1] == 0.0 and (steps[schema.DISCOUNT][:-1] == 1.0).all()
    assert (info["time_limit_truncated"] == -1).all()
    assert info["crash"][-2] == 1 and steps[schema.REWARD][-2] == -1
    assert 150 < len(steps[schema.REWARD]) < 1000


def test_episode_metadata_and_appending(recorded):
    _, episodes = load(recorded[0])
    metas = [m for _, _, m in episodes]
    assert [int(m[schema.EPISODE_INDEX]) for m in metas] == [0, 1, 2]  # the second session appended
    assert [m[schema.USER_ID_TEXT].decode() for m in metas] == ["driver-1", "driver-1", "driver-2"]
    assert [m[schema.SESSION_ID].decode() for m in metas] == ["s1", "s1", "s2"]
    assert [int(m[schema.SEED]) for m in metas] == [7, 8, 0]
    assert [int(m[schema.TIME_LIMIT]) for m in metas] == [30, 30, 1000]
    assert metas[0][schema.ENV_ID].decode() == "DropjCarRacing-v0" and metas[0][schema.ENV_MODE] == b""
    assert metas[0][schema.GYMNASIUM_VERSION].decode() == gym.__version__
    assert metas[0][schema.DROPJ_VERSION].decode() == record.package_version()
    assert abs(float(metas[0][schema.START_TIME]) - time.time()) < 3600
    steps = episodes[0][0]
    assert steps[schema.KEYS_HELD][:-1].tolist() == [list(KEYS_GAS)] * 30


def test_a_seed_rebuilds_the_episode(recorded):
    _, episodes = load(recorded[0])
    steps, _, meta = episodes[1]
    env = short_env(30)
    obs, _ = env.reset(seed=int(meta[schema.SEED]))
    replayed = [obs] + [env.step(a)[0] for a in steps[schema.ACTION][:-1]]
    np.testing.assert_array_equal(np.stack(replayed), steps[schema.OBSERVATION])
    env.close()


def test_export_gives_dataset_r_structure_and_types(recorded, tmp_path):
    data_dir, seen = recorded
    directory = record.recording_dir(data_dir, "carracing")
    [path] = export.export(str(directory), tmp_path, log=lambda line: None)
    assert path.name == "raw_user_rollouts_res84_ep3.pkl"
    assert path.read_bytes()[:2] == pickle.PROTO + bytes([schema.RECORDED_PICKLE_PROTOCOL])
    with open(path, "rb") as f:
        episodes = legacy_pickle.load(f)
    # The embedded sample's Dataset R file is in the release's exact format: compare types per position.
    sample_zip = Path(dropj_datasets.__file__).parent / "dropj_carracing" / "dummy_data" / "carracing_rollouts.zip"
    import zipfile

    with zipfile.ZipFile(sample_zip) as z, z.open("raw_user_rollouts_res84_ep600.pkl") as f:
        release = legacy_pickle.load(f)
    template = release[0][0]
    assert len(episodes) == 3
    for episode, env_seen in zip(episodes, seen):
        assert isinstance(episode, list) and len(episode) == len(env_seen["reward"])
        for t, transition in enumerate(episode):
            assert isinstance(transition, tuple) and len(transition) == 6
            for got, want in zip(transition, template):
                assert type(got) is type(want)
                if isinstance(want, np.ndarray):
                    assert (got.dtype, got.shape) == (want.dtype, want.shape)
            prev_obs, action, reward, obs, done, info = transition
            assert reward == env_seen["reward"][t]
            assert done == (1.0 if t == len(episode) - 1 else 0.0)
            np.testing.assert_array_equal(obs, env_seen["obs"][t + 1])
            if t:
                np.testing.assert_array_equal(prev_obs, episode[t - 1][3])
            assert info == env_seen["info"][t] | (
                {schema.TIME_LIMIT_TRUNCATED: True} if t == 29 and len(episode) == 30 else {})


def test_loaders_read_a_recording(recorded):
    builder, episodes_np = load(recorded[0])
    assert assert_reads_like_tfds(Path(builder.data_dir)) == 3  # the TF-free reader, on a recording
    episodes = builder.as_dataset(split="train", shuffle_files=False)
    frames = np.stack(list(transformations.vae_frames(episodes).as_numpy_iterator()))
    expected = np.concatenate([steps[schema.OBSERVATION] for steps, _, _ in episodes_np])
    np.testing.assert_array_equal(frames, expected)
    windows = list(transformations.world_model_windows(episodes, 10).take(3).as_numpy_iterator())
    assert len(windows) == 3 and windows[0][schema.OBSERVATION].shape[1:] == (84, 84, 3)


def test_unfinished_episodes_are_dropped(tmp_path):
    rec = record.open_recorder("carracing", tmp_path, "u", seeds=itertools.count(3), gym_env=short_env(12))
    rec.logger.reset()
    for _ in range(5):
        rec.logger.step(GAS)
    assert rec.writer.discard_episode() == 5  # restart: what was driven is dropped
    drive(rec, lambda t: GAS)  # a whole episode
    rec.logger.reset()
    rec.logger.step(GAS)  # quit mid-episode
    rec.close()
    _, episodes = load(tmp_path)
    assert len(episodes) == 1 and len(episodes[0][0][schema.REWARD]) == 13
    assert int(episodes[0][2][schema.SEED]) == 4


def test_refuses_a_directory_holding_something_else(tmp_path):
    directory = record.recording_dir(tmp_path, "carracing")
    directory.mkdir(parents=True)
    (directory / "dataset_info.json").write_text(json.dumps({"name": "dropj_carracing", "configName": "real"}))
    with pytest.raises(record.RecordingError, match="holds dropj_carracing/real"):
        recording_writer.RecordingWriter(tmp_path, "carracing")
    (directory / "dataset_info.json").write_text("{not json")
    with pytest.raises(record.RecordingError, match="not readable JSON"):
        recording_writer.RecordingWriter(tmp_path, "carracing")


_KILL_SCRIPT = """
import itertools, sys, numpy as np, gymnasium as gym
import dropj_datasets.envs
from dropj.converters.recording import capture as record
env = gym.make("DropjCarRacing-v0", max_episode_steps=40, disable_env_checker=True)
rec = record.open_recorder("carracing", sys.argv[1], "k", seeds=itertools.count(), gym_env=env)
while True:
    ts = rec.logger.reset()
    while not ts.last():
        ts = rec.logger.step(np.array([0.0, 1.0, 0.0]))
        if rec.writer.episodes_written >= 2 and rec.adapter.episode_steps == 20:
            print("mid-episode", rec.writer.episodes_written, flush=True)
"""


@pytest.mark.slow
def test_sigkill_mid_episode_loses_only_that_episode(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", NO_GCE_CHECK="true")
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        line = proc.stdout.readline()  # blocks until it is 20 steps into episode 3 (or later)
        assert line.startswith("mid-episode"), line
        written = int(line.split()[1])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    builder, episodes = load(tmp_path)
    assert written >= 2 and len(episodes) in (written, written + 1)  # the kill may land after a later save
    for steps, _, _meta in episodes:
        assert len(steps[schema.REWARD]) == 41 and steps[schema.IS_LAST][-1]
    # The killed directory takes more episodes, numbered on.
    rec = record.open_recorder("carracing", tmp_path, "k2", seeds=iter([99]), gym_env=short_env(5))
    drive(rec, lambda t: GAS)
    rec.close()
    _, episodes = load(tmp_path)
    assert [int(m[schema.EPISODE_INDEX]) for _, _, m in episodes] == list(range(len(episodes)))


def test_metadata_is_replaced_atomically_and_staging_left_by_a_kill_is_cleared(tmp_path):
    directory = record.recording_dir(tmp_path, "carracing")
    directory.mkdir(parents=True)
    stale = directory / (recording_store.STAGING_PREFIX + "killed")
    stale.mkdir()
    (stale / recording_store.DATASET_INFO).write_text("{half a fi")
    rec = record.open_recorder("carracing", tmp_path, "u", seeds=iter([1, 2]), gym_env=short_env(6))
    assert not stale.exists()
    before = (directory / recording_store.DATASET_INFO).stat().st_ino
    drive(rec, lambda t: GAS)
    after = (directory / recording_store.DATASET_INFO).stat().st_ino
    assert after != before  # a new file moved into place, not the old one rewritten
    assert not list(directory.glob(recording_store.STAGING_PREFIX + "*"))
    rec.close()
    _, episodes = load(tmp_path)
    assert len(episodes) == 1


def test_an_environment_without_a_step_limit_is_refused(tmp_path):
    from dropj_datasets.envs.car_racing import DropjCarRacing

    with pytest.raises(ValueError, match="needs a step limit"):
        record.DmEnvAdapter("carracing", gym_env=DropjCarRacing())


def test_sessions_sharing_one_store_write_every_episode_with_its_own_number(tmp_path):
    """Several sessions of one process (what `dropj record --web` runs) share the directory's one store:
    episodes finished at the same moment in different threads each get their own shard and number, with
    their own session and user; the directory stays locked against any other recorder."""
    import threading

    spec = record.recording_spec("carracing")
    store = recording_store.RecordingStore(record.recording_dir(tmp_path, "carracing"), spec, holder="web server")
    recorders = [record.open_recorder("carracing", tmp_path, f"driver-{n}", session_id=f"web-{n}",
                                      seeds=iter(range(10 * n, 10 * n + 3)), gym_env=short_env(8 + n), store=store)
                 for n in range(3)]
    barrier = threading.Barrier(len(recorders))
    failures = []

    def session(rec) -> None:
        try:
            for _ in range(3):
                barrier.wait()  # the sessions finish their episodes together
                drive(rec, lambda t: GAS)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=session, args=(rec,)) for rec in recorders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    with pytest.raises(recording_store.RecordingError, match="another recording is writing here"):
        record.open_recorder("carracing", tmp_path, "intruder", gym_env=short_env(5))
    for rec in recorders:
        rec.close()
    assert store.episodes == 9  # closing the sessions leaves the shared store open
    store.close()
    _, episodes = load(tmp_path)
    metadata = [meta for _, _, meta in episodes]
    assert [int(m[schema.EPISODE_INDEX]) for m in metadata] == list(range(9))
    by_session = {}
    for m in metadata:
        by_session.setdefault(m[schema.SESSION_ID].decode(), []).append(
            (m[schema.USER_ID_TEXT].decode(), int(m[schema.SEED])))
    assert by_session == {f"web-{n}": [(f"driver-{n}", 10 * n + k) for k in range(3)] for n in range(3)}
    for steps, _, m in episodes:
        n = int(m[schema.SESSION_ID].decode()[-1])
        assert len(steps[schema.REWARD]) == 8 + n + 1  # each session's own time limit, whole
