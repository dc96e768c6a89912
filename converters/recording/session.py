"""One participant's recording session in a process of its own, driven from outside (`dropj record --web`).

Why a process: a session steps its environment, draws the driver's view and
encodes it as JPEG 50 times a second, about 7 ms of CPU per step, nearly all
of it holding the GIL. As threads of one server, two sessions shared one core
and fell to 43 steps/s on 2 cores (docs/benchmarks.md, "Recording in the
browser"); as processes they use every core.

A session process is a fresh interpreter (`python -c ...`, not a fork of the
server with its threads and event loop, nor multiprocessing's spawn, which
would run the server's main script again), started ahead of its participant
so its imports are done when they arrive. It talks with the server over one
socket pair (`multiprocessing.connection.Connection` framing):

* server -> session: `("begin", SessionArgs)` once; then `("keys", action,
  keys_held)` at each change (the action and the keys it came from, always
  together), `("restart",)`, `("stop",)`; and the answers to its requests.
* session -> server: `("frame", jpeg, status)` after each step, `("log",
  line)`, `("seed",)` at each reset when `--seed` was given (one counter for
  every session, so no two episodes get the same track), `("append",
  example, index_field)` and `("rescue", ...)` for each finished episode, and
  `("end", saved, dropped, steps, error)` last.

The server alone holds the recording's directory lock and its
`RecordingStore`: an episode is numbered and written durably before the
session hears "ok". If the server is gone (killed), the session keeps a
finished episode in a rescue file itself and ends; an open episode is
dropped, as in `dropj record`'s window. Only our own code runs on either end
of the socket (the browser's messages are JSON, checked by the server), so
its pickles are trusted.

Driving waits for the driver. Each episode's track is made ready and shown
(phase "ready": the page says "press an arrow key to start"), but the episode
begins, its clock and its first step, only when an arrow key is down: no step
is taken or recorded while a participant reads the page or looks away. An
episode in which no key was down for `RecordConfig.episode_idle_s` seconds is
dropped, never saved, and the next track waits for its first key; an idle tab
therefore records nothing, and the server ends it after `--idle_timeout`.

Each frame's status carries the session's phase ("ready", "driving",
"saving", then "saved", or "rescued" when the store could not append the
episode and it was kept in a rescue file: never called saved) and how the
previous episode ended, so a page that skipped frames still shows the truth.
"""

from __future__ import annotations

import dataclasses
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np

from dropj.converters.recording import capture as record, controls, store as recording_store
from dropj_datasets import schema

JPEG_QUALITY = 80  # the encoding chosen by measurement (docs/benchmarks.md, "Frame encodings")
SLOW = 0.95  # an episode below this share of --fps is reported as run short of CPU


@dataclasses.dataclass(frozen=True)
class SessionArgs:
    """What a session process is told when it starts."""
    config: controls.RecordConfig
    user: str
    session_id: str
    directory: str  # the recording's version folder, held by the server's store
    episodes: int  # episodes in it when the session started
    screenshot: Optional[str] = None  # save the view at step 100 (given to one session only)


class ServerGone(Exception):
    """The socket to the server is closed: the server ended or was killed."""


class Stopped(Exception):
    """Asked to stop before driving began."""


class StoreFailed(Exception):
    """The server could not append (or rescue) an episode; the message is its one-line reason."""


class ServerLink:
    """The session's end of the socket: its requests, and the server's controls as they arrive."""

    def __init__(self, conn: Any):
        self.conn = conn
        self.action = np.zeros(3, dtype=np.float64)
        self.held: tuple[bool, ...] = (False,) * len(schema.KEYS)
        self.keys_messages = 0  # key changes received: a session tells a driver who is there by them
        self.restart = self.stop = False

    def send(self, *message: Any) -> None:
        try:
            self.conn.send(message)
        except (OSError, EOFError, ValueError):
            raise ServerGone() from None

    def _receive(self) -> Optional[tuple]:
        """One message: a control is applied (None returned), an answer is returned."""
        try:
            message = self.conn.recv()
        except (OSError, EOFError):
            raise ServerGone() from None
        kind = message[0]
        if kind == "keys":
            self.action, self.held = np.array(message[1], dtype=np.float64), tuple(message[2])
            self.keys_messages += 1
        elif kind == "restart":
            self.restart = True
        elif kind == "stop":
            self.stop = True
        else:
            return message
        return None

    def poll(self, timeout: float = 0.0, until: Callable[[], bool] = lambda: False) -> None:
        """Applies the controls that have arrived, waiting for more until `timeout` s have passed (or a stop or
        restart came, or `until()` holds: then the messages after it wait for the next poll, so a key pressed
        and released at once is still down for the step that starts with it)."""
        deadline = time.perf_counter() + timeout
        try:
            while not (self.stop or self.restart or until()) and \
                    self.conn.poll(max(0.0, deadline - time.perf_counter())):
                if self._receive() is not None:
                    raise ServerGone()  # an answer nobody asked for: not our server
        except (OSError, EOFError):
            raise ServerGone() from None

    def request(self, *message: Any) -> Any:
        self.send(*message)
        while (answer := self._receive()) is None:
            pass
        kind, value = answer
        if kind == "failed":
            raise StoreFailed(value)
        return value

    def log(self, line: str) -> None:
        try:
            self.send("log", line)
        except ServerGone:
            pass  # the episode's fate is in its rescue file's name; nobody is left to read it


class StoreClient:
    """The server's `RecordingStore`, as a session's `RecordingWriter` uses it."""

    def __init__(self, link: ServerLink, args: SessionArgs):
        self.link = link
        self.spec = record.recording_spec(args.config.config_name)
        self.directory = Path(args.directory)
        self.episodes = args.episodes

    def append(self, example: dict, index_field: Optional[tuple[str, str]] = None) -> Path:
        reply = self.link.request("append", example, index_field)
        self.episodes = reply["episodes"]
        return Path(reply["path"])

    def rescue(self, example: dict, index: int, session: str) -> Path:
        try:
            return Path(self.link.request("rescue", example, index, session))
        except ServerGone:
            return recording_store.write_rescue(self.directory, self.spec.config, "episode", example, index, session)
        except StoreFailed as failed:
            raise recording_store.RecordingError(str(failed)) from None

    def close(self) -> None:
        """The server closes the store."""


def shared_seeds(link: ServerLink) -> Iterator[int]:
    """Reset seeds drawn from the server's one counter (`--seed`)."""
    while True:
        yield link.request("seed")


def view_image(surface: Any) -> Any:
    """The pygame surface as a PIL image, read straight from its pixels when they are 32-bit XRGB."""
    import pygame
    from PIL import Image

    if surface.get_bitsize() == 32 and surface.get_masks()[:3] == (0xFF0000, 0xFF00, 0xFF):
        return Image.frombuffer("RGB", surface.get_size(), surface.get_buffer(), "raw", "BGRX",
                                surface.get_pitch(), 1)
    return Image.frombytes("RGB", surface.get_size(), pygame.image.tobytes(surface, "RGB"))


def main() -> None:
    """A session process (`python -c ...`, see `start`): imports what driving needs, waits for its participant's
    `SessionArgs`, drives until stopped (or `--episodes` saved), then says how it ended."""
    from multiprocessing.connection import Connection

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server ends its sessions
    conn = Connection(int(sys.argv[1]))
    import envlogger  # noqa: F401  (imported before a participant waits for it)
    import pygame  # noqa: F401
    from PIL import Image  # noqa: F401

    from dropj_datasets import envs  # noqa: F401  (registers the environments)

    try:
        message = conn.recv()
    except (EOFError, OSError):
        return  # the server ended before a participant came
    if message[0] == "begin":
        drive(message[1], ServerLink(conn))
    # else ("stop",): the server is ending (Ctrl-C) and no participant came


def drive(args: SessionArgs, link: ServerLink) -> None:
    """One participant's session, from opening its recorder to the "end" message."""
    session = Session(args, link)
    error = None
    try:
        link.poll()
        if link.stop:  # the participant left while this process was getting ready
            raise Stopped()
        gym_env = args.config.make_env()
        session.recorder = record.open_recorder(
            args.config.config_name, args.config.out, args.user, session_id=args.session_id,
            seeds=shared_seeds(link) if args.config.seed is not None else None, keys_held=session.keys_held,
            gym_env=gym_env, log=link.log, store=StoreClient(link, args))
        session.drive(gym_env.unwrapped)
    except ServerGone:
        return
    except Stopped:
        pass
    except Exception as exc:  # noqa: BLE001 - the server logs it and the page shows it, in one line
        error = schema.one_line(exc)
    finally:
        if session.recorder is not None:
            session.recorder.close()  # drops the open episode
    try:
        link.send("end", session.saved, session.dropped, session.steps, error)
    except ServerGone:
        pass


# The phases of a session, as its frames' status tells the page.
READY, DRIVING, SAVING, SAVED, RESCUED = "ready", "driving", "saving", "saved", "rescued"
FIRST_KEY_POLL_S = 1.0  # how often a session waiting for its first key looks up (a stop or restart wakes it at once)


class Session:
    """The stepping loop of one session, paced on the session's own clock."""

    def __init__(self, args: SessionArgs, link: ServerLink):
        self.args, self.link = args, link
        self.recorder: Optional[record.Recorder] = None
        self._held: tuple[bool, ...] = (False,) * len(schema.KEYS)
        self.saved = self.dropped = self.rescued = self.steps = 0
        self.last: Optional[dict] = None  # how the previous episode ended, shown until the next one starts

    def keys_held(self) -> tuple[bool, ...]:
        """The keys held when this step's action was read (EnvLogger asks after the step)."""
        return self._held

    def _action(self) -> np.ndarray:
        self.link.poll()  # the keys that came since the last step
        self._held = self.link.held
        return self.link.action.copy()

    def _first_key(self) -> bool:
        """Waits, stepping nothing, until an arrow key is down: True; False on a stop or a restart."""
        link = self.link
        while not (link.stop or link.restart):
            if any(link.held):  # pressed now, or still held from the last episode: the driver is there
                return True
            link.poll(FIRST_KEY_POLL_S, until=lambda: any(link.held))
        return False

    def drive(self, car: Any) -> None:
        import pygame

        config, recorder, link = self.args.config, self.recorder, self.link
        surface = pygame.Surface(config.window)
        writer, adapter = recorder.writer, recorder.adapter
        episode = 0
        writer.before_write = lambda: self._publish(surface, car, episode, SAVING)
        while not link.stop and (config.episodes is None or self.saved + self.rescued < config.episodes):
            link.restart = False
            episode = writer.episodes_before + writer.episodes_written
            adapter.prepare()  # the track, shown; the episode and its clock start at the first key
            self._publish(surface, car, episode, READY)
            if not self._first_key():
                continue  # Enter: another track; Esc: the loop ends
            timestep = recorder.logger.reset()
            pace = controls.Pace(config.fps)
            keys_seen, last_key = link.keys_messages, time.monotonic()
            while True:
                if link.stop or link.restart:
                    if adapter.episode_steps:
                        self.dropped += 1
                        self.last = self._outcome(episode, "dropped", why="Enter: a new track" if link.restart
                                                  else "Esc")
                    writer.discard_episode()
                    break
                pace.step_starts()
                action = self._action()
                now = time.monotonic()
                if link.keys_messages != keys_seen or any(self._held):
                    keys_seen, last_key = link.keys_messages, now
                elif now - last_key >= config.episode_idle_s:
                    # No key down for --episode_idle_s: the driver left (or the tab lost focus), so what follows
                    # is not driving. The episode is dropped, never saved (as Enter drops one), and the next
                    # track waits for a first key; a session idle for --idle_timeout is ended by the server.
                    self.dropped += 1
                    writer.discard_episode()
                    why = f"no key pressed for {config.episode_idle_s:g} s"
                    self.last = self._outcome(episode, "dropped", why=why)
                    link.log(f"{self.args.user}: episode {episode} dropped after {adapter.episode_steps} steps: {why}"
                             " (--episode_idle_s)")
                    break
                written = writer.episodes_written
                timestep = recorder.logger.step(action)
                self.steps += 1
                if not timestep.last():
                    self._publish(surface, car, episode, DRIVING)
                    pace.wait(link.poll)  # returns early on a stop or restart
                    continue
                rate = pace.steps_per_second()
                said = f"{adapter.episode_steps} steps, return {adapter.episode_return}, {rate:.1f} steps/s"
                phase = SAVED if writer.episodes_written > written else RESCUED  # (else the writer raised)
                if phase == SAVED:
                    self.saved += 1
                    self.last = self._outcome(episode, "saved")
                    link.log(f"{self.args.user}: episode {episode} saved ({said})")
                else:
                    # The store could not append it (a full disk...): the writer kept it in a rescue file and said
                    # why. It is not in the recording until repaired, so it is never called saved, here or on
                    # the page, which shows the file and the command that adds it.
                    self.rescued += 1
                    path = writer.rescued[-1]
                    command = recording_store.repair_command(writer.directory, path)
                    self.last = self._outcome(episode, "rescued", file=path, repair=command)
                    link.log(f"{self.args.user}: episode {episode} not saved, kept in the rescue file {path} "
                             f"({said}): run `{command}` to add it")
                self._publish(surface, car, episode, phase)
                if rate < SLOW * config.fps:  # (NaN, a one-step episode, is never slow)
                    link.log(f"{self.args.user}: episode {episode} ran slower than {config.fps:g} steps/s: "
                             "this machine is short of CPU for its sessions (fewer: --max_sessions)")
                break

    def _outcome(self, episode: int, outcome: str, **more: Any) -> dict:
        adapter = self.recorder.adapter
        return {"episode": episode, "outcome": outcome, "steps": adapter.episode_steps,
                "return": int(adapter.episode_return), **more}

    def _publish(self, surface: Any, car: Any, episode: int, phase: str) -> None:
        """The view as JPEG, with the status line's numbers and the phase, to the server (which sends the
        newest). Every status but a driving one also says how the last episode ended."""
        from PIL import Image

        adapter = self.recorder.adapter
        if adapter.spec.is_dream:
            image = Image.fromarray(car.render()).resize(surface.get_size(), Image.NEAREST)
        else:
            car.draw(surface, indicators=True)
            image = view_image(surface)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
        if self.args.screenshot and self.steps == controls.SCREENSHOT_STEP and phase == DRIVING:
            image.save(self.args.screenshot, format="PNG")
        status = {"phase": phase, "episode": episode, "step": 0 if phase == READY else adapter.episode_steps,
                  "return": 0 if phase == READY else int(adapter.episode_return), "saved": self.saved,
                  "rescued": self.rescued}
        if phase != DRIVING:
            status["last"] = self.last
        self.link.send("frame", buffer.getvalue(), status)


class Ready:
    """A session process started ahead, waiting for its participant (`begin`); the server's end of its socket.

    `send` may be called from several threads (the page's keys, the answers to the session's requests)."""

    def __init__(self, process: subprocess.Popen, conn: Any):
        self.process, self.conn = process, conn
        self._sending = threading.Lock()

    def send(self, *message: Any) -> None:
        with self._sending:
            self.conn.send(message)

    def begin(self, args: SessionArgs) -> None:
        self.send("begin", args)

    def close(self, timeout: float) -> None:
        """Ends it: asked to stop (a waiting process ends when its socket closes), killed if it will not."""
        try:
            self.send("stop")
        except (OSError, ValueError):
            pass  # already gone
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.conn.close()


COMMAND = "from dropj.converters.recording import session; session.main()"  # what a session process runs


def start() -> Ready:
    """Starts a session process, which makes itself ready for a participant."""
    from multiprocessing.connection import Connection

    ours, theirs = socket.socketpair()
    with theirs:
        process = subprocess.Popen(
            [sys.executable, "-c", COMMAND, str(theirs.fileno())],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, "PYGAME_HIDE_SUPPORT_PROMPT": "1", "TF_CPP_MIN_LOG_LEVEL": "2"})
    return Ready(process, Connection(ours.detach()))


def serve_requests(ready: Ready, store: recording_store.RecordingStore, on_frame: Callable[[bytes, dict], None],
                   log: Callable[[str], None], next_seed: Callable[[], int]) -> Optional[tuple]:
    """The server's side of one session's socket, until it ends: frames to `on_frame`, log lines to `log`,
    episodes into `store`, seeds from `next_seed`. Returns the session's ("end", saved, dropped, steps,
    error), or None if the socket closed without one (the process died)."""
    while True:
        try:
            message = ready.conn.recv()
        except (EOFError, OSError):
            return None
        kind = message[0]
        if kind == "frame":
            on_frame(message[1], message[2])
        elif kind == "log":
            log(message[1])
        elif kind == "append":
            _answer(ready, lambda message=message: {"path": str(store.append(message[1], index_field=message[2])),
                                                    "episodes": store.episodes})
        elif kind == "rescue":
            _answer(ready, lambda message=message: str(store.rescue(*message[1:])))
        elif kind == "seed":
            _answer(ready, next_seed)
        elif kind == "end":
            return message


def _answer(ready: Ready, work: Callable[[], Any]) -> None:
    try:
        reply = ("ok", work())
    except Exception as exc:  # noqa: BLE001 - the session rescues the episode and says why, in one line
        reply = ("failed", schema.one_line(exc, 200))
    try:
        ready.send(*reply)
    except (OSError, ValueError):
        pass  # the session is gone; an episode it sent was written (or is in the rescue folder)
