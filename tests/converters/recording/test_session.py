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
    assert len(frames) == 40 and all(jpeg[:2] == b"\xff\xd8" for jpeg, _ in frames)
    assert [status["step"] for _, status in frames[:3]] == [1, 2, 3] and frames[-1][1]["saved"] == 2
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
