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
"""

from __future__ import annotations

import itertools
import os
import sys

import numpy as np

from dropj.converters.recording import capture as record
from dropj.converters.recording.controls import (  # noqa: F401 - re-exported
    SCREENSHOT_STEP, Keyboard, Pace, RecordConfig, SessionSummary)

WINDOW_TITLE = "DROPJ record"
HELP = "arrows drive  |  Enter restarts  |  Esc quits"
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
