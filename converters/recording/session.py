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
dropped, as in `dropj record`'s window. An episode in which no key was
pressed is dropped at its time limit, never saved (an idle tab records
nothing). Only our own code runs on either end
of the socket (the browser's messages are JSON, checked by the server), so
its pickles are trusted.
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
        self.keys_messages = 0  # key changes received: a session tells an untouched episode by it
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

    def poll(self, timeout: float = 0.0) -> None:
        """Applies the controls that have arrived, waiting for more until `timeout` s have passed (or a stop or
        restart came)."""
        deadline = time.perf_counter() + timeout
        try:
            while not (self.stop or self.restart) and self.conn.poll(max(0.0, deadline - time.perf_counter())):
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


class Session:
    """The stepping loop of one session, paced on the session's own clock."""

    def __init__(self, args: SessionArgs, link: ServerLink):
        self.args, self.link = args, link
        self.recorder: Optional[record.Recorder] = None
        self._held: tuple[bool, ...] = (False,) * len(schema.KEYS)
        self.saved = self.dropped = self.steps = 0

    def keys_held(self) -> tuple[bool, ...]:
        """The keys held when this step's action was read (EnvLogger asks after the step)."""
        return self._held

    def _action(self) -> np.ndarray:
        self.link.poll()  # the keys that came since the last step
        self._held = self.link.held
        return self.link.action.copy()

    def drive(self, car: Any) -> None:
        import pygame

        config, recorder, link = self.args.config, self.recorder, self.link
        surface = pygame.Surface(config.window)
        while not link.stop and (config.episodes is None or self.saved < config.episodes):
            link.restart = False
            timestep = recorder.logger.reset()
            episode = recorder.writer.episodes_before + recorder.writer.episodes_written
            pace = controls.Pace(config.fps)
            keys_at_reset, touched = link.keys_messages, False
            while True:
                if link.stop or link.restart:
                    self.dropped += 1 if recorder.adapter.episode_steps else 0
                    recorder.writer.discard_episode()
                    break
                pace.step_starts()
                action = self._action()
                touched = touched or link.keys_messages != keys_at_reset or any(self._held)
                if not touched and recorder.adapter.episode_steps + 1 >= recorder.adapter.time_limit:
                    # An idle tab's episode: no key was pressed in it, and this step ends it at the time limit.
                    # It is dropped, never saved (as Enter drops one); the next starts. A session idle for
                    # --idle_timeout is ended by the server.
                    self.dropped += 1
                    recorder.writer.discard_episode()
                    self.link.log(f"{self.args.user}: episode {episode} dropped at the time limit: no key was "
                                  "pressed in it")
                    break
                timestep = recorder.logger.step(action)
                self.steps += 1
                if timestep.last():
                    self.saved += 1
                self._publish(surface, car, episode)
                if timestep.last():
                    rate = pace.steps_per_second()
                    self.link.log(f"{self.args.user}: episode {episode} saved ({recorder.adapter.episode_steps} "
                                  f"steps, return {recorder.adapter.episode_return}, {rate:.1f} steps/s)")
                    if rate < SLOW * config.fps:  # (NaN, a one-step episode, is never slow)
                        self.link.log(f"{self.args.user}: episode {episode} ran slower than {config.fps:g} steps/s: "
                                      "this machine is short of CPU for its sessions (fewer: --max_sessions)")
                    break
                pace.wait(link.poll)  # returns early on a stop or restart

    def _publish(self, surface: Any, car: Any, episode: int) -> None:
        """The step's view as JPEG, with the status line's numbers, to the server (which sends the newest)."""
        from PIL import Image

        adapter = self.recorder.adapter
        if adapter.spec.is_dream:
            image = Image.fromarray(car.render()).resize(surface.get_size(), Image.NEAREST)
        else:
            car.draw(surface, indicators=True)
            image = view_image(surface)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
        if self.args.screenshot and self.steps == controls.SCREENSHOT_STEP:
            image.save(self.args.screenshot, format="PNG")
        self.link.send("frame", buffer.getvalue(), {"episode": episode, "step": adapter.episode_steps,
                                                     "return": int(adapter.episode_return), "saved": self.saved})


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
