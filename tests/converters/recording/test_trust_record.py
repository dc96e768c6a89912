"""Issue 9: the recorder loses nothing (real EnvLogger, real gymnasium environments, real TFDS directories)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

import dropj_datasets.envs  # noqa: F401
from dropj.converters.recording import capture as record, store as recording_store
from dropj.converters.store import durable
from dropj_datasets import schema
from dropj_datasets.envs.seeding import entropy_seed

GAS = np.array([0.0, 1.0, 0.0])
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", NO_GCE_CHECK="true")


def _drive(recorder, episodes: int = 1) -> None:
    for _ in range(episodes):
        timestep = recorder.logger.reset()
        while not timestep.last():
            timestep = recorder.logger.step(GAS)


def _open(data_dir, seeds=None, steps=5, log=lambda line: None, **kwargs):
    return record.open_recorder("carracing", data_dir, "tester", seeds=seeds or iter(range(100)),
                                gym_env=record.make_env("carracing", steps), log=log, **kwargs)


def _recorded(data_dir, episodes: int = 1):
    """Records `episodes` episodes in a session of their own; returns the recording's directory."""
    rec = _open(data_dir)
    _drive(rec, episodes)
    rec.close()
    return record.recording_dir(data_dir, "carracing")


def _episodes(data_dir) -> list[dict]:
    builder = tfds.builder_from_directory(str(record.recording_dir(data_dir, "carracing")))
    return [ex[schema.EPISODE_METADATA] for ex in tfds.as_numpy(builder.as_dataset(split="train"))]


def test_ten_thousand_entropy_seeds_fit_the_stored_int64():
    """Seeds drawn up to 2**64 overflowed the int64 `seed` feature and ended the session."""
    feature = tfds.features.Tensor(shape=(), dtype=np.int64)
    seeds = [entropy_seed() for _ in range(10_000)]
    assert max(seeds) < 2**63 and max(seeds) > 2**60  # 63 random bits
    encoded = [feature.encode_example(seed) for seed in seeds]
    assert [int(value) for value in encoded] == seeds


def test_a_seed_outside_int64_is_refused_before_the_episode():
    adapter = record.DmEnvAdapter("carracing", gym_env=record.make_env("carracing", 5), seeds=iter([2**64 - 1]))
    with pytest.raises(record.RecordingError, match="outside 0..9223372036854775807"):
        adapter.reset()


def test_one_recorder_per_directory(tmp_path):
    """Two recorders on one --out each reported 4 episodes and the directory held 4."""
    first = _open(tmp_path, session_id="first-session")
    try:
        with pytest.raises(record.RecordingError) as info:
            _open(tmp_path, session_id="second")
        message = str(info.value)
        assert "another recording is writing here" in message and f"pid {os.getpid()}" in message
        assert "session first-session" in message
        _drive(first, 2)
    finally:
        first.close()
    second = _open(tmp_path, seeds=iter([50]))
    _drive(second)
    second.close()
    assert [int(m[schema.EPISODE_INDEX]) for m in _episodes(tmp_path)] == [0, 1, 2]


@pytest.mark.slow
def test_an_append_refuses_a_list_that_disagrees_with_the_shards_and_repair_fixes_it(tmp_path):
    """A dataset_info.json listing fewer shards than exist made the next append overwrite a shard."""
    directory = _recorded(tmp_path, 3)
    shards = {p.name: p.read_bytes() for p in directory.glob("*.tfrecord-*")}
    info = json.loads((directory / "dataset_info.json").read_text())
    info["splits"][0]["shardLengths"] = info["splits"][0]["shardLengths"][:1]  # lists 1 of 3
    (directory / "dataset_info.json").write_text(json.dumps(info))
    with pytest.raises(record.RecordingError, match=r"lists 1 episodes but the shards on disk are 3 files") as err:
        _open(tmp_path)
    assert "dropj repair-recording" in str(err.value)
    assert {p.name: p.read_bytes() for p in directory.glob("*.tfrecord-*")} == shards  # nothing overwritten
    done = subprocess.run([sys.executable, "-m", "dropj_datasets.app", "repair-recording", str(directory)],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0 and "3 episodes listed" in done.stdout, done.stderr
    rec = _open(tmp_path, seeds=iter([77]))
    _drive(rec)
    rec.close()
    metas = _episodes(tmp_path)
    assert [int(m[schema.EPISODE_INDEX]) for m in metas] == [0, 1, 2, 3] and int(metas[3][schema.SEED]) == 77


@pytest.mark.slow
def test_the_one_shard_a_kill_left_unlisted_is_listed_by_the_next_session(tmp_path):
    """A kill between a shard's link and its listing left the next `dropj annotate` refusing to start (seen in
    CI: the annotation server killed mid-commit)."""
    directory = _recorded(tmp_path, 2)
    listed_two = (directory / "dataset_info.json").read_bytes()
    _recorded(tmp_path)
    (directory / "dataset_info.json").write_bytes(listed_two)  # the third shard on disk, not listed: the kill
    lines = []
    rec = _open(tmp_path, seeds=iter([88]), log=lines.append)
    assert rec.writer.episodes_before == 3
    _drive(rec)
    rec.close()
    assert any("listed dropj_recording-train.tfrecord-00002" in line for line in lines), lines
    metas = _episodes(tmp_path)
    assert [int(m[schema.EPISODE_INDEX]) for m in metas] == [0, 1, 2, 3] and int(metas[3][schema.SEED]) == 88


@pytest.mark.slow
def test_an_unlisted_shard_that_does_not_read_whole_is_refused(tmp_path):
    directory = _recorded(tmp_path, 2)
    info = json.loads((directory / "dataset_info.json").read_text())
    info["splits"][0]["shardLengths"] = info["splits"][0]["shardLengths"][:1]  # the second one "not listed"
    (directory / "dataset_info.json").write_text(json.dumps(info))
    second = directory / "dropj_recording-train.tfrecord-00001"
    second.write_bytes(second.read_bytes()[:-9])  # and cut short
    with pytest.raises(record.RecordingError, match=r"not listed in dataset_info.json and not readable whole"):
        _open(tmp_path)


def test_repair_closes_gaps_and_moves_damaged_shards_aside(tmp_path):
    directory = _recorded(tmp_path, 3)
    recording_store.shard_path(directory, 1, schema.RECORDING_DATASET).unlink()  # a gap
    damaged = recording_store.shard_path(directory, 2, schema.RECORDING_DATASET)
    damaged.write_bytes(damaged.read_bytes()[:-7])  # cut short
    summary = recording_store.repair(directory, log=lambda line: None)
    assert "1 episodes listed" in summary and "1 damaged shards" in summary
    assert (directory / "damaged" / damaged.name).exists()
    assert len(_episodes(tmp_path)) == 1


def test_a_failed_episode_write_keeps_the_episode_and_says_where(tmp_path, monkeypatch):
    """A failed write ended the session and printed a 2.4 MB dump of the example."""
    lines: list[str] = []
    rec = _open(tmp_path, log=lines.append)
    real_append = recording_store.RecordingStore.append
    calls = {"n": 0}

    def failing(self, example, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_append(self, example, **kwargs)

    monkeypatch.setattr(recording_store.RecordingStore, "append", failing)
    _drive(rec, 3)  # the session goes on after the failure
    rec.close()
    [message] = [line for line in lines if "could not be written" in line]
    assert "episode 1 could not be written" in message and "No space left on device" in message
    assert "kept in" in message and "dropj repair-recording" in message and len(message) < 1000
    [rescued] = rec.writer.rescued
    assert os.path.exists(rescued)
    assert len(_episodes(tmp_path)) == 2  # episodes 0 and 2 (numbered 0 and 1 on disk)
    monkeypatch.setattr(recording_store.RecordingStore, "append", real_append)
    summary = recording_store.repair(record.recording_dir(tmp_path, "carracing"), log=lambda line: None)
    assert "3 episodes listed" in summary and "1 of them rescued episodes added back" in summary
    assert len(_episodes(tmp_path)) == 3 and not os.path.exists(rescued)


def test_a_kill_during_a_shard_write_leaves_a_visible_partial_file_that_the_next_session_clears(tmp_path):
    directory = _recorded(tmp_path)
    second = recording_store.shard_path(directory, 1, schema.RECORDING_DATASET)
    partial = directory / f".{second.name}.dead{durable.PARTIAL_SUFFIX}"
    partial.write_bytes(b"half an episode")
    lines: list[str] = []
    rec = _open(tmp_path, log=lines.append)
    rec.close()
    assert not partial.exists() and any("a killed session was still writing" in line for line in lines)
    assert len(_episodes(tmp_path)) == 1


def test_no_display_is_a_clear_error_before_anything_starts(tmp_path):
    """With no display, pygame silently used SDL's offscreen driver and 'recorded' an idle car."""
    env = {k: v for k, v in ENV.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER")}
    done = subprocess.run([sys.executable, "-m", "dropj_datasets.app", "record", "--out", str(tmp_path / "rec"),
                           "--user", "u", "--episodes", "1"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("dropj record: error: no display")
    assert not (tmp_path / "rec").exists()
