"""The session side of `dropj record --web` (`recording/session.py`), in this process: the keys sent are the actions
recorded, the server writes the episodes, and a session whose server is gone keeps a finished episode."""

from __future__ import annotations

import socket
import threading
from multiprocessing.connection import Connection

import numpy as np
import pytest
import tensorflow_datasets as tfds

from dropj.converters.recording import session as session_lib
from dropj.converters.recording import capture as record
from dropj.converters.recording import window as record_window
from dropj.converters.recording import store as recording_store
from dropj_datasets import schema


def _pair():
    ours, theirs = socket.socketpair()
    return Connection(ours.detach()), Connection(theirs.detach())


def _args(out, **config) -> session_lib.SessionArgs:
    directory = record.recording_dir(out, "carracing")
    return session_lib.SessionArgs(record_window.RecordConfig(out=str(out), fps=1000.0, **config), "p1",
                                     "s1", str(directory), 0)


@pytest.mark.slow
def test_the_server_side_writes_what_the_session_drove_with_the_keys_it_was_sent(tmp_path):
    server_end, session_end = _pair()
    ready = session_lib.Ready(process=None, conn=server_end)
    store = recording_store.RecordingStore(record.recording_dir(tmp_path, "carracing"),
                                           record.recording_spec("carracing"))
    frames, seeds, lines = [], iter(range(40, 50)), []
    ended = {}

    def serve():
        ended["end"] = session_lib.serve_requests(ready, store, lambda jpeg, status: frames.append((jpeg, status)),
                                                    lines.append, lambda: next(seeds))

    server = threading.Thread(target=serve)
    server.start()
    ready.send("keys", [-1.0, 1.0, 0.0], (True, False, True, False))  # before the session begins: applied at once
    session_lib.drive(_args(tmp_path, max_steps=20, episodes=2, seed=40), session_lib.ServerLink(session_end))
    server.join(timeout=60)
    store.close()
    assert ended["end"] == ("end", 2, 0, 40, None)
    # each episode: its track shown before its first step ("ready"), 20 steps, "saving" as the last one is written
    # (the frames were 20 an episode before the episode waited for its first key)
    assert len(frames) == 44 and all(jpeg[:2] == b"\xff\xd8" for jpeg, _ in frames)
    assert [status["step"] for _, status in frames[:4]] == [0, 1, 2, 3] and frames[-1][1]["saved"] == 2
    assert [status["phase"] for _, status in frames[:2] + frames[19:23]] == \
        ["ready", "driving", "driving", "saving", "saved", "ready"]
    assert frames[22][1]["last"] == {"episode": 0, "outcome": "saved", "steps": 20, "return": frames[21][1]["return"]}
    builder = tfds.builder_from_directory(str(record.recording_dir(tmp_path, "carracing")))
    episodes = list(tfds.as_numpy(builder.as_dataset(split="train", shuffle_files=False)))
    assert [int(e[schema.EPISODE_METADATA][schema.SEED]) for e in episodes] == [40, 41]  # the server's counter
    # 1000 steps/s asked, which no machine keeps: each episode says so, naming the remedy
    assert sum("p1: episode" in line and "ran slower than 1000 steps/s" in line and "--max_sessions" in line
               for line in lines) == 2, lines
    for episode in episodes:
        steps = list(episode[schema.STEPS])
        assert len(steps) == 21
        for step in steps[:-1]:
            assert np.array_equal(step[schema.ACTION], [-1.0, 1.0, 0.0])
            assert tuple(step[schema.KEYS_HELD]) == (True, False, True, False)


def test_a_session_whose_server_is_gone_keeps_its_finished_episode_for_repair(tmp_path):
    server_end, session_end = _pair()
    directory = record.recording_dir(tmp_path, "carracing")
    link = session_lib.ServerLink(session_end)
    recorder = record.open_recorder("carracing", tmp_path, "p1", gym_env=record.make_env("carracing", 10),
                                    seeds=iter(range(5, 10)), log=lambda line: None,
                                    store=session_lib.StoreClient(link, _args(tmp_path)))
    timestep = recorder.logger.reset()
    server_end.close()  # the server is killed mid-episode
    while not timestep.last():
        timestep = recorder.logger.step(np.array([0.0, 1.0, 0.0]))
    recorder.close()
    [rescued] = (directory / recording_store.RESCUED).glob("*.pkl")
    assert rescued.name.startswith("episode-0-")
    assert "1 episodes listed" in recording_store.repair(directory, log=lambda line: None)
    builder = tfds.builder_from_directory(str(directory))
    [episode] = tfds.as_numpy(builder.as_dataset(split="train"))
    assert len(list(episode[schema.STEPS])) == 11


def test_a_session_told_to_stop_before_it_began_ends_without_an_environment(tmp_path, monkeypatch):
    server_end, session_end = _pair()
    monkeypatch.setattr(record_window.RecordConfig, "make_env", lambda self: pytest.fail("made an environment"))
    server_end.send(("stop",))
    session_lib.drive(_args(tmp_path), session_lib.ServerLink(session_end))
    assert server_end.recv() == ("end", 0, 0, 0, None)


class _Served:
    """A session driven in a thread of this process, its server side (`serve_requests`) in another, with a real
    store: what the page would get (`frames`), what the server logs (`lines`), how it ended (`end`)."""

    def __init__(self, tmp_path, **config):
        import time

        server_end, session_end = _pair()
        self.ready = session_lib.Ready(process=None, conn=server_end)
        self.store = recording_store.RecordingStore(record.recording_dir(tmp_path, "carracing"),
                                                    record.recording_spec("carracing"))
        self.frames, self.lines, self.end = [], [], None
        seeds = iter(range(60, 90))
        self.time = time

        def serve():
            self.end = session_lib.serve_requests(self.ready, self.store, lambda _, status: self.frames.append(status),
                                                  self.lines.append, lambda: next(seeds))

        self.server = threading.Thread(target=serve)
        self.server.start()
        self.session = threading.Thread(target=session_lib.drive, args=(
            session_lib.SessionArgs(record_window.RecordConfig(out=str(tmp_path), seed=60, **config), "p1", "s1",
                                    str(self.store.directory), 0), session_lib.ServerLink(session_end)))
        self.session.start()

    def keys(self, up: bool) -> None:
        self.ready.send("keys", [0.0, 1.0 if up else 0.0, 0.0], (False, False, up, False))

    def wait_for(self, condition, timeout: float = 60.0):
        deadline = self.time.monotonic() + timeout
        while not condition():
            assert self.time.monotonic() < deadline, (self.frames[-3:], self.lines)
            self.time.sleep(0.02)

    def stop(self) -> None:
        self.ready.send("stop")
        self.session.join(timeout=60)
        self.server.join(timeout=60)
        self.store.close()

    def episodes(self) -> list:
        builder = tfds.builder_from_directory(str(self.store.directory))
        return list(tfds.as_numpy(builder.as_dataset(split="train", shuffle_files=False)))


@pytest.mark.slow
def test_a_session_steps_nothing_before_the_first_key_and_its_episode_starts_with_it(tmp_path):
    """The episode clock started when the page connected: 162 steps passed before the first key in one run."""
    served = _Served(tmp_path, max_steps=30, episodes=1)
    try:
        served.wait_for(lambda: served.frames)
        served.time.sleep(1.5)  # the driver reads the page
        assert [(f["phase"], f["step"]) for f in served.frames] == [("ready", 0)]  # the track, and no step
        pressed = served.time.time()
        served.keys(True)
        served.wait_for(lambda: served.end is not None)
    finally:
        served.stop()
    assert served.end == ("end", 1, 0, 30, None)
    [episode] = served.episodes()
    steps = list(episode[schema.STEPS])
    assert len(steps) == 31 and tuple(steps[0][schema.KEYS_HELD]) == (False, False, True, False)
    start = float(episode[schema.EPISODE_METADATA][schema.START_TIME])
    assert pressed <= start < pressed + 0.5 and pressed <= steps[0][schema.WALL_TIME] < pressed + 0.5


@pytest.mark.slow
def test_an_episode_with_no_key_for_episode_idle_s_is_dropped_and_the_next_track_waits(tmp_path):
    served = _Served(tmp_path, max_steps=1000, episode_idle_s=0.5)
    try:
        served.wait_for(lambda: served.frames)
        served.keys(True)
        served.time.sleep(0.3)
        served.keys(False)  # and nothing more: the driver left
        served.wait_for(lambda: len([f for f in served.frames if f["phase"] == "ready"]) == 2, 30)
        steps = len(served.frames)
        served.time.sleep(1.0)
        assert len(served.frames) == steps  # the next track waits for its first key: nothing stepped
    finally:
        served.stop()
    assert served.end[:3] == ("end", 0, 1)
    ready = served.frames[-1]
    assert ready["phase"] == "ready" and ready["last"]["outcome"] == "dropped", ready
    assert ready["last"]["why"] == "no key pressed for 0.5 s" and 5 < ready["last"]["steps"] < 200
    [line] = [line for line in served.lines if "dropped" in line]
    assert line.startswith("p1: episode 0 dropped after ") and "no key pressed for 0.5 s (--episode_idle_s)" in line
    assert not list(served.store.directory.glob("*.tfrecord-*"))


@pytest.mark.slow
def test_an_episode_the_store_cannot_append_is_kept_in_a_rescue_file_and_never_called_saved(tmp_path, monkeypatch):
    """On a full disk the log said "episode 0 saved" right after "could not be written ... kept in rescued/..."."""
    import errno
    import re

    real_append, calls = recording_store.RecordingStore.append, []

    def full_disk_once(self, example, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_append(self, example, **kwargs)

    monkeypatch.setattr(recording_store.RecordingStore, "append", full_disk_once)
    served = _Served(tmp_path, max_steps=10, episodes=2)
    try:
        served.keys(True)
        served.wait_for(lambda: served.end is not None)
    finally:
        served.stop()
    assert served.end == ("end", 1, 0, 20, None)  # a rescued episode is kept, so --episodes 2 counts it
    # the rescued episode, then the next one, numbered 0 again: the store's next index, as nothing was stored
    first, second = [line for line in served.lines if line.startswith(("p1: episode 0 saved", "p1: episode 0 not"))]
    rescue = re.search(r"kept in the rescue file (\S+) ", first).group(1)
    assert first.startswith("p1: episode 0 not saved, kept in the rescue file ") and "saved (" not in first, first
    command = recording_store.repair_command(served.store.directory, rescue)
    assert command.startswith("dropj repair-recording ") and f"run `{command}` to add it" in first, first
    assert second.startswith("p1: episode 0 saved (10 steps")
    rescued = next(f for f in served.frames if f["phase"] == "rescued")
    assert rescued["saved"] == 0 and rescued["rescued"] == 1 and rescued["last"]["outcome"] == "rescued"
    assert rescued["last"]["file"] == rescue and rescued["last"]["repair"] == command
    assert served.frames[-1]["phase"] == "saved" and served.frames[-1]["saved"] == 1
    summary = recording_store.repair(served.store.directory, log=lambda line: None)
    assert "2 episodes listed" in summary
