"""What a recording session is made of, whichever front end drives it (the pygame window, `window`; the
browser, `dropj_datasets.app.web.record` with a `session` process per participant): the keys -> the study's
actions (`Keyboard`), the recorder's settings (`RecordConfig`), the pace of 50 steps per second (`Pace`), and
what a session reports (`SessionSummary`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Optional

import numpy as np

from dropj.converters.recording import capture as record
from dropj_datasets import schema

STEER_LEFT, STEER_RIGHT, GAS, BRAKE = -1.0, 1.0, 1.0, 0.8  # the study's keyboard
SCREENSHOT_STEP = 100
CATCH_UP_PERIODS = 10  # up to 0.2 s behind is made up by shorter waits; further behind, the pace restarts


class Keyboard:
    """Arrow keys -> the study's action [steer, gas, brake] (DATA_FORMATS.md 0.3, keyboard subset)."""

    def __init__(self) -> None:
        self.action = np.zeros(3, dtype=np.float64)
        self.held = dict.fromkeys(schema.KEYS, False)

    def press(self, name: str) -> None:
        if name not in self.held:
            return
        self.held[name] = True
        if name == "left":
            self.action[0] = STEER_LEFT
        elif name == "right":
            self.action[0] = STEER_RIGHT
        elif name == "up":
            self.action[1] = GAS
        else:
            self.action[2] = BRAKE

    def release(self, name: str) -> None:
        if name not in self.held:
            return
        self.held[name] = False
        if name == "left" and self.action[0] == STEER_LEFT:
            self.action[0] = 0.0
        elif name == "right" and self.action[0] == STEER_RIGHT:
            self.action[0] = 0.0
        elif name == "up":
            self.action[1] = 0.0
        elif name == "down":
            self.action[2] = 0.0

    def keys_held(self) -> tuple[bool, bool, bool, bool]:
        return tuple(self.held[k] for k in schema.KEYS)

    def clear(self) -> None:
        """Window focus lost: no key counts as held any more."""
        for name in schema.KEYS:
            self.release(name)


@dataclasses.dataclass
class RecordConfig:
    """What `dropj record` was asked to do; validated on creation."""

    env: str = "carracing"
    out: str = "recordings"
    user: str = "anonymous"
    episodes: Optional[int] = None  # None: until the driver quits
    seed: Optional[int] = None  # first reset seed (then +1 per episode); None: fresh entropy per episode
    fps: float = 50.0
    max_steps: int = 1000  # the study's time limit
    window: tuple[int, int] = (1000, 800)
    screenshot: Optional[str] = None  # save the window as PNG once, at step 100 of the first episode
    # an episode in which no key was down for this long is dropped, never saved (the next track waits for a key)
    episode_idle_s: float = 30.0
    # env 'dream': drive inside the world model of `dream_of` (`DropjDream-v0`), seeing the VAE's frames
    vae: Optional[str] = None
    mdnrnn: Optional[str] = None
    init_states: Optional[str] = None
    dream_of: str = "carracing"

    @property
    def config_name(self) -> str:
        """The recording config: the environment's name, or '<world>_dream'."""
        return f"{self.dream_of}_dream" if self.env == "dream" else self.env

    def make_env(self) -> Any:
        if self.env != "dream":
            return record.make_env(self.env, self.max_steps)
        return record.make_env(self.config_name, self.max_steps, mdnrnn=self.mdnrnn, vae=self.vae,
                               init_states=self.init_states, render_mode="rgb_array")

    def __post_init__(self) -> None:
        if self.env not in schema.RECORDINGS and self.env != "dream":
            raise ValueError(f"env must be one of {sorted(schema.RECORDINGS) + ['dream']}, got {self.env!r}")
        if self.env == "dream" and not (self.vae and self.mdnrnn):
            raise ValueError("env dream needs the world model: --vae and --mdnrnn checkpoints")
        if self.dream_of not in schema.ENVS:
            raise ValueError(f"dream_of must be one of {sorted(schema.ENVS)}, got {self.dream_of!r}")
        if not self.user.strip():
            raise ValueError("user must not be empty")
        if self.episodes is not None and self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if self.seed is not None and not 0 <= self.seed <= record.MAX_SEED - 10**9:
            raise ValueError(f"seed must be within 0..{record.MAX_SEED - 10**9} (stored as int64, +1 per episode), "
                             f"got {self.seed}")
        if not 1 <= self.fps <= 1000:
            raise ValueError(f"fps must be within 1..1000, got {self.fps}")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if not self.episode_idle_s > 0:
            raise ValueError(f"episode_idle_s must be > 0 seconds, got {self.episode_idle_s}")
        if min(self.window) < 64:
            raise ValueError(f"window must be at least 64x64, got {self.window}")


@dataclasses.dataclass
class SessionSummary:
    directory: str
    episodes_saved: int
    episodes_dropped: int
    steps: int
    paced_steps: int  # steps after the first of each episode: the ones the pace applies to
    seconds_driving: float  # from the first to the last step start of each episode, summed

    @property
    def steps_per_second(self) -> float:
        return self.paced_steps / self.seconds_driving if self.seconds_driving > 0 else float("nan")


class Pace:
    """One episode's steps at `fps` on the caller's clock (the window's and each web session's).

    `step_starts()` when an action is read; `wait(sleep)` after the step sleeps until the next is due. Up
    to `CATCH_UP_PERIODS` behind is made up by shorter waits; further behind, the pace starts again rather
    than racing. The achieved pace counts from the first to the last step start, so the episode's write,
    done in its last step, is left out.
    """

    def __init__(self, fps: float):
        self.period = 1.0 / fps
        self.deadline = time.perf_counter()
        self.first: Optional[float] = None
        self.last: Optional[float] = None
        self.intervals = 0  # step starts after the first

    def step_starts(self) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        else:
            self.intervals += 1
        self.last = now

    @property
    def seconds(self) -> float:
        """From the first to the last step start."""
        return self.last - self.first if self.first is not None else 0.0

    def steps_per_second(self) -> float:
        return self.intervals / self.seconds if self.seconds > 0 else float("nan")

    def wait(self, sleep: Callable[[float], Any] = time.sleep) -> None:
        self.deadline += self.period
        wait = self.deadline - time.perf_counter()
        if wait > 0:
            sleep(wait)
        elif wait < -CATCH_UP_PERIODS * self.period:
            self.deadline = time.perf_counter()
