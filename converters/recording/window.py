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
written the moment it ends (`writer.RecordingWriter`).

Driving waits for the driver, as in `dropj record --web`: each episode's
track is shown under "press an arrow key to start", and the episode (its
clock, its first step) begins only when an arrow key is down, so no step is
recorded while the driver reads the window or looks away. An episode in
which no key was down for `RecordConfig.episode_idle_s` seconds is dropped,
never saved, and the next track waits for its first key.
"""

from __future__ import annotations

import functools
import itertools
import os
import sys
import time

import numpy as np

from dropj.converters.recording import capture as record
from dropj_datasets import schema
from dropj.converters.recording.controls import (  # noqa: F401 - re-exported
    SCREENSHOT_STEP, Keyboard, Pace, RecordConfig, SessionSummary)

WINDOW_TITLE = "DROPJ record"
HELP = "arrows drive  |  Enter restarts  |  Esc quits"
READY = "Press an arrow key to start"
FIRST_KEY_POLL_MS = 5  # how often the window looks for the first key (a step is 20 ms)
REDRAW_S = 0.5  # how often a waiting track is drawn again
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
    adapter, writer = recorder.adapter, recorder.writer
    saved = dropped = steps = paced_steps = 0
    driving = 0.0
    last = ""  # how the previous episode ended, shown with the next track
    log(f"recording {config.config_name} into {writer.directory} "
        f"({schema.counted(writer.episodes_before, 'episode')} there already); {HELP}")
    try:
        quit_requested = False
        while not quit_requested and (config.episodes is None or saved < config.episodes):
            episode_number = writer.episodes_before + saved
            adapter.prepare()  # the track, shown; the episode and its clock start at the first key
            prompt = (READY, last)
            quit_requested, restart = _first_key(pygame, keys, keyboard, functools.partial(
                _draw, window, font, car, episode_number, adapter, prompt))
            if quit_requested or restart:
                continue  # Esc: the loop ends; Enter: another track (nothing was recorded)
            timestep = recorder.logger.reset()
            pace = Pace(config.fps)
            last_key = time.monotonic()
            while True:
                quit_requested, restart, changed = _events(pygame, keys, keyboard)
                if quit_requested or restart:
                    if adapter.episode_steps:
                        dropped += 1
                        last = f"episode {episode_number} dropped ({'Esc' if quit_requested else 'Enter'})"
                    writer.discard_episode()
                    break
                pace.step_starts()
                now = time.monotonic()
                if changed or any(keyboard.keys_held()):
                    last_key = now
                elif now - last_key >= config.episode_idle_s:
                    # No key down for --episode_idle_s: the driver left, so what follows is not driving. The
                    # episode is dropped, never saved (as Enter drops one), and the next track waits for a key.
                    dropped += 1
                    writer.discard_episode()
                    last = f"episode {episode_number} dropped: no key pressed for {config.episode_idle_s:g} s"
                    log(f"episode {episode_number} dropped after {adapter.episode_steps} steps: no key pressed for "
                        f"{config.episode_idle_s:g} s (--episode_idle_s)")
                    break
                timestep = recorder.logger.step(keyboard.action.copy())
                steps += 1
                _draw(window, font, car, episode_number, adapter)
                if config.screenshot and steps == SCREENSHOT_STEP:
                    pygame.image.save(window, config.screenshot)
                if timestep.last():
                    saved += 1
                    break
                pace.wait()
            driving, paced_steps = driving + pace.seconds, paced_steps + pace.intervals
            if timestep.last():
                last = f"episode {episode_number} saved: {adapter.episode_steps} steps, return {adapter.episode_return}"
                log(f"episode {episode_number} saved: {adapter.episode_steps} steps, "
                    f"return {adapter.episode_return}, seed {adapter.seed}")
    finally:
        directory = writer.directory
        recorder.close()
        pygame.display.quit()
    summary = SessionSummary(directory, saved, dropped, steps, paced_steps, driving)
    log(f"{schema.counted(saved, 'episode')} saved, {dropped} dropped, {summary.steps_per_second:.1f} steps/s -> "
        f"{directory}")
    return summary


def _events(pygame, keys: dict, keyboard: Keyboard) -> tuple[bool, bool, bool]:
    """Applies the window's pending events to the keyboard: (quit asked, restart asked, an arrow key changed)."""
    quit_requested = restart = changed = False
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
                changed = True
        elif event.type == pygame.KEYUP and event.key in keys:
            keyboard.release(keys[event.key])
            changed = True
        elif event.type == pygame.WINDOWFOCUSLOST:
            keyboard.clear()
    return quit_requested, restart, changed


def _first_key(pygame, keys: dict, keyboard: Keyboard, draw) -> tuple[bool, bool]:
    """Shows the waiting track (`draw`, again every `REDRAW_S`) and steps nothing until an arrow key is down
    (pressed now, or still held from the last episode): (False, False); or (True, _) on Esc or a closed window,
    (_, True) on Enter."""
    drawn = -REDRAW_S
    while True:
        quit_requested, restart, _ = _events(pygame, keys, keyboard)
        if quit_requested or restart or any(keyboard.keys_held()):
            return quit_requested, restart
        if time.monotonic() - drawn >= REDRAW_S:  # (a window uncovered meanwhile is drawn again)
            draw()
            drawn = time.monotonic()
        pygame.time.wait(FIRST_KEY_POLL_MS)


def _draw(window, font, car, episode: int, adapter: record.DmEnvAdapter, prompt: tuple[str, ...] = ()) -> None:
    """The driver's view with the status line; `prompt` (a title and a line) large over it, while a track waits."""
    import pygame

    if adapter.spec.is_dream:  # what the world model dreams, decoded by the VAE, filling the window
        frame = car.render()
        image = pygame.surfarray.make_surface(np.ascontiguousarray(frame.transpose(1, 0, 2)))
        window.blit(pygame.transform.scale(image, window.get_size()), (0, 0))
    else:
        car.draw(window, indicators=True)
    if prompt:
        shade = pygame.Surface(window.get_size(), pygame.SRCALPHA)
        shade.fill((0, 0, 0, 150))  # the track stays visible, dimmed, under the prompt
        window.blit(shade, (0, 0))
    steps = adapter.episode_steps if not prompt else 0
    lines = [f"episode {episode}   step {steps}   return {adapter.episode_return if not prompt else 0:+d}", HELP]
    y = 8
    for line in lines:
        text = font.render(line, True, (255, 255, 255), (0, 0, 0))
        window.blit(text, (8, y))
        y += text.get_height() + 4
    if prompt:
        big = pygame.font.Font(None, max(32, window.get_height() // 10))
        rendered = [big.render(prompt[0], True, (255, 255, 255))] + \
            [font.render(line, True, (230, 230, 230)) for line in prompt[1:] if line]
        y = (window.get_height() - sum(r.get_height() + 12 for r in rendered)) // 2
        for text in rendered:
            window.blit(text, ((window.get_width() - text.get_width()) // 2, y))
            y += text.get_height() + 12
    pygame.display.flip()
