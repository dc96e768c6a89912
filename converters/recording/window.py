"""`dropj record`: drive a DROPJ environment with the arrow keys, as the participants did, and record it.

The window shows gym 0.20's driver view (the whole 1000x800 scene, indicator
bar included) with the episode, step and return on top. Keys, as in the
authors' recorder (`user_extract.py`):

* Left / Right: steer -1 / +1. The last pressed wins; releasing a key
  straightens the wheel only if that key's direction is the one applied.
* Up: gas 1. Down: brake 0.8. Each is 0 when released.
* Enter: restart (the episode being driven is dropped). Escape or closing
  the window: quit (the episode being driven is dropped).

Steps are paced to the environment's 50 per second. Each episode is
written the moment it ends (`recording_writer.RecordingWriter`).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import sys
import time
from typing import Any, Callable, Optional

import numpy as np

from dropj.converters.recording import capture as record
from dropj_datasets import schema

STEER_LEFT, STEER_RIGHT, GAS, BRAKE = -1.0, 1.0, 1.0, 0.8
WINDOW_TITLE = "DROPJ record"
HELP = "arrows drive  |  Enter restarts  |  Esc quits"
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


_KEY_NAMES = {"K_LEFT": "left", "K_RIGHT": "right", "K_UP": "up", "K_DOWN": "down"}


# SDL falls back to these when there is no screen: the window would exist nowhere, and the car
# would be "driven" with no key ever pressed.
_HEADLESS_DRIVERS = ("offscreen", "dummy")


def check_display() -> None:
    """Raises RecordingError unless pygame can open a real window (before anything is recorded)."""
    import pygame

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                                                 or os.environ.get("SDL_VIDEODRIVER")):
        raise record.RecordingError("no display: neither DISPLAY nor WAYLAND_DISPLAY is set (dropj record needs a "
                                    "window; on a machine without a screen run it under Xvfb, as the tests do)")
    try:
        pygame.display.init()
    except pygame.error as exc:
        raise record.RecordingError(f"no display: {exc} (dropj record needs a window; on a machine "
                                    "without a screen run it under Xvfb, as the tests do)") from None
    driver = pygame.display.get_driver()
    if driver in _HEADLESS_DRIVERS:
        pygame.display.quit()
        raise record.RecordingError(f"no display: SDL chose its {driver!r} video driver, so no window would be "
                                    "seen and no key pressed (set DISPLAY, or run under Xvfb)")


def run(config: RecordConfig, log=print) -> SessionSummary:
    """Opens the window and records until `config.episodes` are saved or the driver quits."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame

    check_display()  # first: nothing is created on disk without a window to drive in
    gym_env = config.make_env()
    keyboard = Keyboard()
    seeds = itertools.count(config.seed) if config.seed is not None else None
    try:
        recorder = record.open_recorder(config.config_name, config.out, config.user, seeds=seeds,
                                        keys_held=keyboard.keys_held, gym_env=gym_env, log=log)
    except BaseException:
        pygame.display.quit()
        raise
    keys = {getattr(pygame, name): key for name, key in _KEY_NAMES.items()}
    pygame.font.init()
    window = pygame.display.set_mode(config.window)
    pygame.display.set_caption(WINDOW_TITLE)
    font = pygame.font.Font(None, max(18, config.window[1] // 28))
    car = gym_env.unwrapped
    saved = dropped = steps = paced_steps = 0
    driving = 0.0
    log(f"recording {config.config_name} into {recorder.writer.directory} "
        f"({recorder.writer.episodes_before} episodes there already); {HELP}")
    try:
        quit_requested = False
        while not quit_requested and (config.episodes is None or saved < config.episodes):
            timestep = recorder.logger.reset()
            episode_number = recorder.writer.episodes_before + saved
            restart = False
            pace = Pace(config.fps)
            while True:
                for event in pygame.event.get():
                    if event.type == pygame.QUIT:
                        quit_requested = True
                    elif event.type == pygame.KEYDOWN:
                        if event.key == pygame.K_ESCAPE:
                            quit_requested = True
                        elif event.key in (pygame.K_RETURN, pygame.K_KP_ENTER):
                            restart = True
                        elif event.key in keys:
                            keyboard.press(keys[event.key])
                    elif event.type == pygame.KEYUP and event.key in keys:
                        keyboard.release(keys[event.key])
                    elif event.type == pygame.WINDOWFOCUSLOST:
                        keyboard.clear()
                if quit_requested or restart:
                    dropped += 1 if recorder.adapter.episode_steps else 0
                    recorder.writer.discard_episode()
                    break
                pace.step_starts()
                timestep = recorder.logger.step(keyboard.action.copy())
                steps += 1
                _draw(window, font, car, episode_number, recorder.adapter)
                if config.screenshot and steps == SCREENSHOT_STEP:
                    pygame.image.save(window, config.screenshot)
                if timestep.last():
                    saved += 1
                    break
                pace.wait()
            driving, paced_steps = driving + pace.seconds, paced_steps + pace.intervals
            if timestep.last():
                log(f"episode {episode_number} saved: {recorder.adapter.episode_steps} steps, "
                    f"return {recorder.adapter.episode_return}, seed {recorder.adapter.seed}")
    finally:
        directory = recorder.writer.directory
        recorder.close()
        pygame.display.quit()
    summary = SessionSummary(directory, saved, dropped, steps, paced_steps, driving)
    log(f"{saved} episodes saved, {dropped} dropped, {summary.steps_per_second:.1f} steps/s -> {directory}")
    return summary


def _draw(window, font, car, episode: int, adapter: record.DmEnvAdapter) -> None:
    import pygame

    if adapter.spec.is_dream:  # what the world model dreams, decoded by the VAE, filling the window
        frame = car.render()
        image = pygame.surfarray.make_surface(np.ascontiguousarray(frame.transpose(1, 0, 2)))
        window.blit(pygame.transform.scale(image, window.get_size()), (0, 0))
    else:
        car.draw(window, indicators=True)
    lines = [f"episode {episode}   step {adapter.episode_steps}   return {adapter.episode_return:+d}", HELP]
    y = 8
    for line in lines:
        text = font.render(line, True, (255, 255, 255), (0, 0, 0))
        window.blit(text, (8, y))
        y += text.get_height() + 4
    pygame.display.flip()
