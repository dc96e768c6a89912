"""`dropj record` driven with real key events: a headless X server (Xvfb), the real pygame window, keys
sent with xdotool (XTEST), and the recorded TFDS episodes read back. No mocks.

Skipped only when `Xvfb` or `xdotool` is not installed (Debian: apt-get install xvfb xdotool).
The helpers (Xvfb, the `dropj record` process, xdotool) are in tests/factory/window.py.
"""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from factory.window import (ENV_NAME, FPS, MISSING, Recording, XServer, expected_actions, read_episodes, stacked_steps,
                            summary)


# --- tests -------------------------------------------------------------------------------------------

pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"{' and '.join(MISSING)} not installed "
                                                       "(Debian packages xvfb, xdotool)")


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    server = XServer()
    try:
        yield server.display
    finally:
        server.close()


@contextlib.contextmanager
def recording(display: str, tmp_path: Path, *args: str, user: str = "tester") -> Iterator[Recording]:
    rec = Recording(display, tmp_path / "out", tmp_path / "logs", *args, user=user)
    try:
        yield rec
    finally:
        rec.close()


@pytest.mark.slow
def test_arrow_keys_become_the_recorded_actions(display, tmp_path):
    out = tmp_path / "out"
    held: dict[str, float] = {}
    with recording(display, tmp_path, "--episodes", "1", "--seed", "4", "--max_steps", "250",
                   user="keys-test") as rec:
        rec.find_window()
        time.sleep(0.2)
        t_up = time.monotonic()
        rec.keys("keydown", "Up")
        time.sleep(0.6)
        rec.keys("keydown", "Left")  # Up still held
        time.sleep(0.5)
        rec.keys("keyup", "Left")
        time.sleep(0.3)
        rec.keys("keydown", "Right")
        time.sleep(0.5)
        rec.keys("keydown", "Down")  # gas and brake together, steering right
        time.sleep(0.5)
        rec.keys("keyup", "Down", "Right", "Up")
        held["up"] = time.monotonic() - t_up
        rc = rec.wait(120)
        stdout, stderr = rec.stdout, rec.stderr
    assert rc == 0, f"rc {rc}:\n{stdout}\n{stderr[-3000:]}"
    assert summary(stdout)[:2] == (1, 0), stdout
    assert "episode 0 saved: 250 steps" in stdout, stdout

    (episode,) = read_episodes(out)
    steps = stacked_steps(episode)
    assert len(steps["action"]) == 251  # 250 transitions + the final observation
    assert steps["is_last"][-1] and not steps["is_terminal"][-1]  # truncated at --max_steps
    meta = episode["episode_metadata"]
    assert meta["user_id"] == b"keys-test"
    assert meta["seed"] == 4

    keys_held, actions = steps["keys_held"], steps["action"]
    assert not keys_held[-1].any() and not actions[-1].any()  # the final step carries no action
    left, right, up, down = keys_held.T
    # each key really arrived: 0.5 s is about 25 steps at 50 steps/s
    for name, column in zip(("left", "right", "up", "down"), keys_held.T):
        assert column.sum() >= 10, f"{name} held on only {column.sum()} steps"
    # the mapping, key by key
    np.testing.assert_array_equal(actions[:, 1] == 1.0, up)
    np.testing.assert_array_equal(actions[:, 1] != 0.0, up)
    np.testing.assert_array_equal(actions[:, 2] == 0.8, down)
    np.testing.assert_array_equal(actions[:, 2] != 0.0, down)
    assert (actions[left & ~right, 0] == -1.0).all()
    assert (actions[right & ~left, 0] == 1.0).all()
    assert (actions[~left & ~right, 0] == 0.0).all()
    # ... and as a whole, replayed in press order
    expected, ambiguous = expected_actions(keys_held)
    clear = ~ambiguous
    np.testing.assert_array_equal(actions[clear], expected[clear])
    # The pace is paced, never raced: steps start no faster than 50 a second. Whether the loop keeps up with
    # 50 a second depends on the machine; that target is measured in tests/benchmarks/bench_record.py.
    pace = np.diff(steps["wall_time"][:-1])
    assert np.median(pace) >= 1 / FPS * 0.8, np.median(pace)
    assert np.median(pace) < 0.1, np.median(pace)  # a running loop, not a stalled one
    # up was held for held['up'] seconds: that many seconds of steps at the recorded pace
    expected_up = held["up"] / np.median(pace)
    assert 0.6 * expected_up <= up.sum() <= 1.4 * expected_up, (up.sum(), held["up"], np.median(pace))
    # and it was held in one run of consecutive steps, as it was on the keyboard
    assert np.flatnonzero(up).ptp() + 1 == up.sum()


@pytest.mark.slow
def test_enter_restarts_and_escape_quits_dropping_both_episodes(display, tmp_path):
    out = tmp_path / "out"
    with recording(display, tmp_path, "--max_steps", "1000", "--seed", "7") as rec:
        rec.find_window()
        time.sleep(0.2)
        rec.keys("keydown", "Up")
        time.sleep(0.5)
        rec.keys("keyup", "Up")
        rec.keys("key", "Return")  # restart: the episode being driven is dropped
        time.sleep(0.2)
        rec.keys("keydown", "Up")
        time.sleep(0.5)
        rec.keys("keyup", "Up")
        rec.keys("key", "Escape")  # quit: dropped too
        rc = rec.wait(60)
        stdout, stderr = rec.stdout, rec.stderr
    assert rc == 0, f"rc {rc}:\n{stdout}\n{stderr[-3000:]}"
    assert re.search(r"^0 episodes saved, 2 dropped, ", stdout, re.M), stdout
    assert "saved:" not in stdout  # no "episode N saved: ..." line
    directory = out / "dropj_recording" / ENV_NAME / "1.0.0"
    assert not list(directory.glob("*.tfrecord*")), sorted(p.name for p in directory.iterdir())
    info = directory / "dataset_info.json"
    if info.exists():
        import json

        splits = json.loads(info.read_text()).get("splits", [])
        assert sum(int(n) for split in splits for n in split.get("shardLengths", [])) == 0, splits


@pytest.mark.slow
def test_the_episode_waits_for_the_first_key_so_no_idle_step_is_recorded(display, tmp_path):
    """The episode clock started when the window opened: a driver who read the window first drove an episode
    that began with their reading time, and under load a short one could end before the first key arrived."""
    from dropj_datasets import schema

    with recording(display, tmp_path, "--episodes", "1", "--seed", "9", "--max_steps", "100", user="waiter") as rec:
        rec.find_window()
        try:
            time.sleep(2.0)  # the driver reads the window before pressing anything
            pressed = time.time()
            rec.keys("keydown", "Up")
            sent = time.time()
            rc = rec.wait(120)
        finally:
            rec.keys("keyup", "Up")
        stdout, stderr = rec.stdout, rec.stderr
    assert rc == 0, f"rc {rc}:\n{stdout}\n{stderr[-3000:]}"
    assert summary(stdout)[:2] == (1, 0) and "episode 0 saved: 100 steps" in stdout, stdout
    (episode,) = read_episodes(tmp_path / "out")
    steps = stacked_steps(episode)
    up = steps["keys_held"][:, 2]
    assert len(up) == 101 and up[:-1].all()  # Up from the very first step: not one step before the key
    wall = steps["wall_time"]
    start = float(episode[schema.EPISODE_METADATA][schema.START_TIME])
    # the episode begins at the key press, within a step or two (and the time xdotool takes to send it)
    assert pressed <= start <= wall[0] < sent + 2 / FPS + 0.05, (pressed, sent, start, wall[0])
    assert np.diff(wall).max() < 1.0, np.diff(wall).max()  # the 2 s of reading are nowhere in it


@pytest.mark.slow
def test_an_episode_with_no_key_for_episode_idle_s_is_dropped_and_the_next_track_waits(display, tmp_path):
    with recording(display, tmp_path, "--max_steps", "1000", "--seed", "12", "--episode_idle_s", "1") as rec:
        rec.find_window()
        rec.keys("keydown", "Up")
        time.sleep(0.3)
        rec.keys("keyup", "Up")
        time.sleep(3.0)  # 1 s with no key: dropped; the next track waits for its first key, stepping nothing
        rec.keys("key", "Escape")
        rc = rec.wait(60)
        stdout, stderr = rec.stdout, rec.stderr
    assert rc == 0, f"rc {rc}:\n{stdout}\n{stderr[-3000:]}"
    assert summary(stdout)[:2] == (0, 1), stdout  # Esc on a waiting track drops nothing more
    dropped = re.search(r"^episode 0 dropped after (\d+) steps: no key pressed for 1 s \(--episode_idle_s\)$",
                        stdout, re.M)
    assert dropped and int(dropped[1]) > 0, stdout  # (how many steps 1.3 s holds depends on the machine's pace)
    directory = tmp_path / "out" / "dropj_recording" / ENV_NAME / "1.0.0"
    assert not list(directory.glob("*.tfrecord*")), sorted(p.name for p in directory.iterdir())
