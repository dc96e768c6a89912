"""`dropj record --web`: drive in the browser with the arrow keys, recorded as `dropj record`'s window records.

A Starlette app served by uvicorn (WebSockets through wsproto). The page
(`static/record.html`, `record.js`) shows the driver's view and the episode /
step / return line, and sends every press and release of the study's keys
over a WebSocket (`/ws`). The server runs each connected participant's
session in a thread of its own (`DriveSession`): its own environment and
EnvLogger, stepped at the study's 50 steps/s on the server's clock with the
keys last received (`record_window.Keyboard`: the last pressed steering key
wins), each step's view sent back as one JPEG (the newest frame only: a slow
page skips frames, the steps never wait for it). All sessions record into one
directory through one shared store (`recording_store.RecordingStore`, locked
by the server), so every guarantee of `dropj record` holds: each finished
episode is its own shard, listed before the next reset; a closed tab, a lost
connection, Enter or Esc drops only the open episode.

Security, as `dropj annotate`: 127.0.0.1 by default; on any other host the
access token printed with the URL is required (`?token=` on the page, then a
same-site cookie, which the WebSocket handshake carries); a handshake from
another origin is refused; a message is at most `MAX_MESSAGE` bytes of JSON
of one of three fixed shapes, and anything else closes the connection (1008).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import io
import itertools
import json
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from dropj.converters import record, record_window, recording_store
from dropj_datasets import schema

STATIC = Path(__file__).parent / "static"
MAX_MESSAGE = 256  # bytes; a key message is about 30
MAX_SESSIONS = 16
JPEG_QUALITY = 80
TOKEN_COOKIE = "dropj_record_token"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
KEYS = {"ArrowLeft": "left", "ArrowRight": "right", "ArrowUp": "up", "ArrowDown": "down"}
POLICY = 1008  # WebSocket close code: a message or handshake this server does not accept


class Refused(Exception):
    """A WebSocket message or handshake that is not accepted; the message says why (sent, then closed)."""


@dataclasses.dataclass
class Frame:
    """What the page gets after each step: the view as JPEG, and the status line's numbers."""
    jpeg: bytes
    status: dict


class DriveSession:
    """One participant: a thread stepping their environment at `config.fps` with the keys they hold.

    `press`, `release`, `restart` and `quit` come from the WebSocket; `latest()` gives the newest frame
    (`frames` counts them), `wake` is called (from the stepping thread) whenever there is a new one.
    """

    def __init__(self, server: "WebRecordServer", user: str, session_id: str, wake: Callable[[], None]):
        self.server, self.user, self.session_id, self.wake = server, user, session_id, wake
        self.keyboard = record_window.Keyboard()
        self._keys_lock = threading.Lock()
        self._held = self.keyboard.keys_held()
        self._restart = threading.Event()
        self._stop = threading.Event()
        self._frame: Optional[Frame] = None
        self.frames = 0
        self.saved = self.dropped = self.steps = 0
        self.error: Optional[str] = None
        self.done = False
        self.thread = threading.Thread(target=self._run, name=f"drive-{session_id}", daemon=True)

    # -- from the WebSocket -------------------------------------------------------------------------------
    def press(self, key: str) -> None:
        with self._keys_lock:
            self.keyboard.press(key)

    def release(self, key: str) -> None:
        with self._keys_lock:
            self.keyboard.release(key)

    def restart(self) -> None:
        self._restart.set()

    def quit(self) -> None:
        self._stop.set()

    def latest(self) -> Optional[Frame]:
        return self._frame

    # -- the stepping thread --------------------------------------------------------------------------------
    def _keys_held(self) -> tuple[bool, bool, bool, bool]:
        """The keys held when this step's action was taken (EnvLogger asks after the step, by when the page
        may have released one)."""
        return self._held

    def _action(self) -> np.ndarray:
        with self._keys_lock:  # the action and the keys it comes from, at one instant
            self._held = self.keyboard.keys_held()
            return self.keyboard.action.copy()

    def _run(self) -> None:
        config, recorder = self.server.config, None
        try:
            gym_env = config.make_env()
            recorder = record.open_recorder(config.config_name, config.out, self.user, session_id=self.session_id,
                                            seeds=self.server.seeds(), keys_held=self._keys_held, gym_env=gym_env,
                                            log=self.server.log, store=self.server.store)
            self._drive(recorder, gym_env.unwrapped)
        except Exception as exc:  # noqa: BLE001 - the page and the log say it in one line
            self.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            self.server.log(f"session {self.session_id} ({self.user}) stopped: {self.error}")
        finally:
            if recorder is not None:
                recorder.close()  # drops the open episode; the shared store stays open
            self.done = True
            self.wake()

    def _drive(self, recorder: record.Recorder, car: Any) -> None:
        import pygame

        config = self.server.config
        surface = pygame.Surface(config.window)
        period = 1.0 / config.fps
        while not self._stop.is_set() and (config.episodes is None or self.saved < config.episodes):
            self._restart.clear()
            timestep = recorder.logger.reset()
            episode = recorder.writer.episodes_before + recorder.writer.episodes_written
            deadline = time.perf_counter()
            while True:
                if self._stop.is_set() or self._restart.is_set():
                    self.dropped += 1 if recorder.adapter.episode_steps else 0
                    recorder.writer.discard_episode()
                    break
                timestep = recorder.logger.step(self._action())
                self.steps += 1
                self._publish(surface, car, recorder.adapter, episode)
                if timestep.last():
                    self.saved += 1
                    self.server.log(f"{self.user}: episode {episode} saved ({recorder.adapter.episode_steps} steps, "
                                    f"return {recorder.adapter.episode_return})")
                    break
                deadline += period
                wait = deadline - time.perf_counter()
                if wait > 0:
                    self._stop.wait(wait)
                elif wait < -record_window.CATCH_UP_PERIODS * period:
                    deadline = time.perf_counter()  # far behind: the pace starts again rather than racing

    def _publish(self, surface: Any, car: Any, adapter: record.DmEnvAdapter, episode: int) -> None:
        import pygame
        from PIL import Image

        if adapter.spec.is_dream:
            image = Image.fromarray(car.render()).resize(surface.get_size(), Image.NEAREST)
        else:
            car.draw(surface, indicators=True)
            image = Image.frombytes("RGB", surface.get_size(), pygame.image.tobytes(surface, "RGB"))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
        if config_screenshot := self.server.take_screenshot(self.steps):
            image.save(config_screenshot, format="PNG")
        self._frame = Frame(buffer.getvalue(), {"episode": episode, "step": adapter.episode_steps,
                                                "return": int(adapter.episode_return), "saved": self.saved})
        self.frames += 1
        self.wake()


class WebRecordServer:
    """The app's state: the shared store of the recording and the open sessions."""

    def __init__(self, config: record_window.RecordConfig, *, token: Optional[str] = None,
                 log: Callable[[str], None] = print, holder: str = "dropj record --web"):
        self.config, self.token, self.log = config, token, log
        spec = record.recording_spec(config.config_name)
        self.store = recording_store.RecordingStore(record.recording_dir(config.out, config.config_name), spec,
                                                    holder=holder, log=log)
        self.sessions: dict[str, DriveSession] = {}
        self._lock = threading.Lock()
        self._seeds = itertools.count(config.seed) if config.seed is not None else None
        self._screenshot_taken = False

    def take_screenshot(self, step: int) -> Optional[str]:
        """`--screenshot`: where to save the first session's view at step 100 (once), else None."""
        with self._lock:
            if not self.config.screenshot or self._screenshot_taken or step != record_window.SCREENSHOT_STEP:
                return None
            self._screenshot_taken = True
            return self.config.screenshot

    def seeds(self) -> Optional[Any]:
        """Reset seeds for a session: drawn from the one counter of `--seed` (so no two episodes share one),
        or fresh entropy per episode."""
        if self._seeds is None:
            return None

        def draw():
            while True:
                with self._lock:
                    seed = next(self._seeds)
                yield seed

        return draw()

    def open_session(self, user: str, wake: Callable[[], None]) -> DriveSession:
        with self._lock:
            if len(self.sessions) >= MAX_SESSIONS:
                raise Refused(f"too many sessions ({MAX_SESSIONS}); try again later")
            session = DriveSession(self, user, record.new_session_id(), wake)
            self.sessions[session.session_id] = session
        session.thread.start()
        self.log(f"session {session.session_id}: {user} connected")
        return session

    def close_session(self, session: DriveSession) -> None:
        session.quit()
        session.thread.join()
        with self._lock:
            self.sessions.pop(session.session_id, None)
        self.log(f"session {session.session_id}: {session.user} left ({session.saved} episodes saved, "
                 f"{session.dropped} dropped)")

    def close(self) -> None:
        for session in list(self.sessions.values()):
            self.close_session(session)
        self.store.close()

    # -- requests -------------------------------------------------------------------------------------------
    def allowed(self, connection: Any) -> bool:
        """The access token (when one is required), from the query or the page's cookie."""
        if not self.token:
            return True
        given = (connection.query_params.get("token"), connection.cookies.get(TOKEN_COOKIE))
        return any(value and hmac.compare_digest(value, self.token) for value in given)

    def page(self, request: Any) -> Any:
        from starlette.responses import FileResponse, JSONResponse

        if not self.allowed(request):
            return JSONResponse({"error": "access token required"}, status_code=401)
        response = FileResponse(STATIC / "record.html", media_type="text/html")
        response.headers["content-security-policy"] = ("default-src 'self'; img-src 'self' blob:; "
                                                       "connect-src 'self'; object-src 'none'")
        if self.token:
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
        return response

    async def websocket(self, websocket: Any) -> None:
        origin, host = websocket.headers.get("origin"), websocket.headers.get("host")
        if not self.allowed(websocket) or (origin and origin.split("://", 1)[-1] != host):
            await websocket.close(code=POLICY)
            return
        await websocket.accept()
        try:
            user = checked_user(websocket.query_params.get("user") or self.config.user)
            loop = asyncio.get_running_loop()
            ready = asyncio.Event()
            session = self.open_session(user, lambda: loop.call_soon_threadsafe(ready.set))
        except Refused as refused:
            await websocket.send_text(json.dumps({"error": str(refused)}))
            await websocket.close(code=POLICY)
            return
        sender = asyncio.create_task(_send_frames(websocket, session, ready))
        try:
            await websocket.send_text(json.dumps({"session": session.session_id, "user": user,
                                                  "env": self.config.config_name, "fps": self.config.fps}))
            while not session.done:
                try:
                    message = await websocket.receive()
                except RuntimeError:  # the sender closed it: the session ended
                    break
                if message["type"] == "websocket.disconnect":
                    break
                try:
                    _apply(session, message.get("text"))
                except Refused as refused:
                    await websocket.send_text(json.dumps({"error": str(refused)}))
                    await websocket.close(code=POLICY)
                    break
        finally:
            sender.cancel()
            from starlette.concurrency import run_in_threadpool

            await run_in_threadpool(self.close_session, session)


def checked_user(user: Any) -> str:
    if not isinstance(user, str) or not 0 < len(user.strip()) <= 64 or not user.isprintable():
        raise Refused("user must be 1 to 64 printable characters")
    return user.strip()


def _apply(session: DriveSession, text: Optional[str]) -> None:
    """One message of the page: {"key": ArrowLeft|ArrowRight|ArrowUp|ArrowDown, "down": bool},
    {"restart": true} or {"quit": true}."""
    if text is None or len(text) > MAX_MESSAGE:
        raise Refused(f"messages are JSON text of at most {MAX_MESSAGE} bytes")
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        raise Refused("malformed JSON") from None
    if isinstance(message, dict) and set(message) == {"key", "down"} and message["key"] in KEYS \
            and isinstance(message["down"], bool):
        (session.press if message["down"] else session.release)(KEYS[message["key"]])
    elif isinstance(message, dict) and list(message) == ["restart"] and message["restart"] is True:
        session.restart()
    elif isinstance(message, dict) and list(message) == ["quit"] and message["quit"] is True:
        session.quit()  # (1 == True in Python: `is` keeps {"restart": 1} out)
    else:
        raise Refused("expected {key, down}, {restart: true} or {quit: true}")


async def _send_frames(websocket: Any, session: DriveSession, ready: asyncio.Event) -> None:
    """The newest frame whenever there is one: its status line, then its JPEG; frames the page had no
    time for are skipped, never queued."""
    sent = 0
    while True:
        await ready.wait()
        ready.clear()
        frame = session.latest()
        if frame is not None and session.frames != sent:
            sent = session.frames
            await websocket.send_text(json.dumps(frame.status))
            await websocket.send_bytes(frame.jpeg)
        if session.done:
            await websocket.send_text(json.dumps({"done": True, "saved": session.saved, "error": session.error}))
            await websocket.close()
            return


def build_app(server: WebRecordServer) -> Any:
    from starlette.applications import Starlette
    from starlette.routing import Mount, Route, WebSocketRoute
    from starlette.staticfiles import StaticFiles

    return Starlette(routes=[
        Route("/", server.page),
        WebSocketRoute("/ws", server.websocket),
        Mount("/static", app=StaticFiles(directory=STATIC, follow_symlink=False), name="static"),
    ])


def run(config: record_window.RecordConfig, *, host: str = "127.0.0.1", port: int = 8000,
        log: Callable[[str], None] = print) -> None:
    """`dropj record --web`: serve until Ctrl-C; every finished episode is already on disk."""
    import uvicorn

    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    token = None if host in LOOPBACK else secrets.token_urlsafe(16)
    server = WebRecordServer(config, token=token, log=log, holder=f"dropj record --web on port {port}")
    try:
        url = f"http://{host}:{port}/" + (f"?token={token}" if token else "")
        log(f"recording {config.config_name} into {server.store.directory} ({server.store.episodes} episodes there "
            f"already); each browser tab drives its own session")
        log(f"open {url}  (Ctrl-C stops; saved episodes are on disk)")
        uvicorn.run(build_app(server), host=host, port=port, log_level="warning", access_log=False, ws="wsproto",
                    ws_max_size=4 * MAX_MESSAGE)
    finally:
        server.close()
