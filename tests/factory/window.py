"""`dropj record`'s window under test: a headless X server (Xvfb), the real `dropj record` process, keys
sent with xdotool (XTEST), and its episodes read back. Used by tests/converters/recording/ and
tests/benchmarks/bench_record.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
DROPJ = Path(sys.executable).parent / "dropj"
SCREEN = "1280x1024x24"
FPS = 50.0
ENV_NAME = "carracing"
SUMMARY = re.compile(r"^(\d+) episodes? saved, (\d+) dropped, ([\d.]+|nan) steps/s -> (.+)$", re.M)

MISSING = [tool for tool in ("Xvfb", "xdotool") if shutil.which(tool) is None]


# --- helpers (also used by tests/benchmarks/bench_record.py) -----------------------------------------


class XServer:
    """Xvfb on a display it picks itself (`-displayfd`: the server chooses a free number and writes it once it
    listens). Checking for a free number and then starting a server raced between test workers: two servers
    asked for one number, the loser's test took the winner's socket for its own and lost it with the winner."""

    def __init__(self, screen: str = SCREEN, timeout: float = 30.0):
        import select

        self.proc: Optional[subprocess.Popen] = None
        read, write = os.pipe()
        try:
            proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", screen, "-nolisten", "tcp"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(write,))
            os.close(write)
            write = -1
            said = b""
            deadline = time.monotonic() + timeout
            while not said.endswith(b"\n") and time.monotonic() < deadline:
                if select.select([read], [], [], 0.2)[0]:
                    chunk = os.read(read, 64)
                    if not chunk:
                        break  # it exited
                    said += chunk
        finally:
            os.close(read)
            if write >= 0:
                os.close(write)
        if not said.strip().isdigit():
            _stop(proc)
            raise RuntimeError(f"Xvfb did not start (it said {said!r})")
        self.proc, self.display = proc, f":{int(said)}"

    def close(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None


def _stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def xdotool(display: str, *args: str) -> str:
    done = subprocess.run(["xdotool", *args], env={**os.environ, "DISPLAY": display}, capture_output=True,
                          text=True, timeout=15)
    if done.returncode != 0 and not (args[0] == "search" and done.returncode == 1):  # 1: search found nothing
        raise RuntimeError(f"xdotool {' '.join(args)}: rc {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def record_environment(display: str) -> dict:
    env = {**os.environ, "DISPLAY": display, "TF_CPP_MIN_LOG_LEVEL": "2", "NO_GCE_CHECK": "true",
           "PYGAME_HIDE_SUPPORT_PROMPT": "1"}
    for name in ("SDL_VIDEODRIVER", "SDL_AUDIODRIVER", "WAYLAND_DISPLAY"):
        env.pop(name, None)  # the real X11 window, whatever the caller's session uses
    return env


class Recording:
    """A running `dropj record` process, its output going to files in `logs`."""

    def __init__(self, display: str, out: Path, logs: Path, *args: str, user: str = "tester"):
        logs.mkdir(parents=True, exist_ok=True)
        self.stdout_path, self.stderr_path = logs / "stdout.txt", logs / "stderr.txt"
        self._stdout, self._stderr = open(self.stdout_path, "w"), open(self.stderr_path, "w")
        # Started directly (not under `timeout`): xdotool finds the window by this process id.
        self.proc = subprocess.Popen([str(DROPJ), "record", "--out", str(out), "--user", user, *args],
                                     env=record_environment(display), stdout=self._stdout, stderr=self._stderr,
                                     stdin=subprocess.DEVNULL, cwd=str(out.parent))
        self.display = display

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def find_window(self, timeout: float = 60.0) -> str:
        """The id of the process's visible window (polled: imports take a few seconds), focused."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"dropj record exited (rc {self.proc.returncode}) before its window "
                                     f"appeared:\n{self.stdout}\n{self.stderr[-3000:]}")
            windows = xdotool(self.display, "search", "--onlyvisible", "--pid", str(self.proc.pid)).split()
            if windows:
                window = windows[-1]
                xdotool(self.display, "windowfocus", "--sync", window)
                return window
            time.sleep(0.1)
        raise AssertionError(f"no window of dropj record (pid {self.proc.pid}) after {timeout:g} s:\n"
                             f"{self.stderr[-3000:]}")

    def keys(self, action: str, *keys: str) -> None:
        """`action` is keydown or keyup; the events go to the focused window through XTEST."""
        xdotool(self.display, action, *keys)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"dropj record still running after {timeout:g} s:\n{self.stdout}") from None
        finally:
            self._stdout.close()
            self._stderr.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            _stop(self.proc)
        self._stdout.close()
        self._stderr.close()


def summary(stdout: str) -> tuple[int, int, float]:
    """(saved, dropped, steps/s) of `window.run`'s last line."""
    found = SUMMARY.findall(stdout)
    assert found, f"no summary line in:\n{stdout}"
    saved, dropped, rate, _ = found[-1]
    return int(saved), int(dropped), float(rate)


def read_episodes(out: Path) -> list[dict]:
    import tensorflow_datasets as tfds

    from dropj.converters.recording import capture as record

    builder = tfds.builder_from_directory(str(record.recording_dir(out, ENV_NAME)))
    return list(tfds.as_numpy(builder.as_dataset(split="train")))


def stacked_steps(episode: dict) -> dict[str, np.ndarray]:
    steps = list(episode["steps"])
    return {key: np.stack([s[key] for s in steps]) for key in ("action", "keys_held", "wall_time",
                                                               "is_last", "is_terminal")}


def expected_actions(keys_held: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The study's mapping replayed from the keys held at each step, in the order they were pressed.

    Gas 1 while up is held, brake 0.8 while down is held. Steer: a newly held left/right sets -1/+1 (the
    last pressed wins); a released key straightens the wheel only if its direction is the one applied.
    Returns (actions, ambiguous): ambiguous marks steps where left and right were both newly pressed
    since the previous step (the order is not in the data; either steer is accepted there).
    """
    actions = np.zeros((len(keys_held), 3))
    ambiguous = np.zeros(len(keys_held), dtype=bool)
    steer = 0.0
    previous = np.zeros(4, dtype=bool)
    for t, held in enumerate(keys_held):
        pressed, released = held & ~previous, ~held & previous
        if released[0] and steer == -1.0:
            steer = 0.0
        if released[1] and steer == 1.0:
            steer = 0.0
        if pressed[0] and pressed[1]:
            ambiguous[t] = True
            steer = -1.0
        elif pressed[0]:
            steer = -1.0
        elif pressed[1]:
            steer = 1.0
        actions[t] = (steer, 1.0 if held[2] else 0.0, 0.8 if held[3] else 0.0)  # up, down
        previous = held
    return actions, ambiguous
