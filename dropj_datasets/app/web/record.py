"""`dropj record --web`: drive in the browser with the arrow keys, recorded as `dropj record`'s window records.

A Starlette app served by uvicorn (WebSockets through wsproto). The page
(`static/record.html`, `record.js`) shows the driver's view and the episode /
step / return line, and sends every press and release of the study's keys
over a WebSocket (`/ws`). Each connected participant gets a session process
of their own (`converters/recording/session.py`; processes, not threads, so the
sessions use every core): its own environment and EnvLogger, stepped at the
study's 50 steps/s on its own clock with the keys last received
(`controls.Keyboard`: the last pressed steering key wins, kept here and
shared with the session at each change), each step's view sent back as one
JPEG (the newest frame only: a slow page skips frames, the steps never wait
for it). All sessions record into one directory through one store
(`recording/store.RecordingStore`, locked and written by this process alone),
so every guarantee of `dropj record` holds: each finished episode is its own
shard, listed before the next reset; a closed tab, a lost connection, Enter or
Esc drops only the open episode; a killed server loses only open episodes.

Security: every request and WebSocket handshake first passes
`auth.Guard`, the guard of every web app (the Host must be this server's
name; the access token printed with the URL wherever the bind is not
loopback, then a same-site cookie, which the handshake carries; no other
origin). A message is at most `MAX_MESSAGE` bytes of JSON of one of three
fixed shapes, and anything else closes the connection (1008).

Driving waits for the driver (`converters/recording/session.py`): an
episode begins at its first key, an episode with no key for
`--episode_idle_s` is dropped, never saved, and a session with no key pressed
for `--idle_timeout` seconds is ended, the page told why, so its place goes to
the next participant.

A full server queues: a participant who finds every place taken waits on
their page, told their place in the queue, and their session starts by
itself when they are first and a place is free (no one overtakes them, and
a page that closes leaves the queue). A session that is ending (Esc, its
last `--episodes` episode being saved, or ended for being idle) still holds
its place until its process is done; the participants it will make room for
are told at once that a place is coming free. At most `MAX_WAITING` wait;
one more is told to try again later.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from dropj.converters.recording import session as session_lib
from dropj.converters.recording import capture as record
from dropj.converters.recording import controls
from dropj.converters.recording import store as recording_store
from dropj_datasets import schema
from dropj_datasets.app.web import auth

STATIC = Path(__file__).parent / "static"
MAX_MESSAGE = 256  # bytes; a key message is about 30
MAX_SESSIONS = 64  # the most --max_sessions may ask for
SESSIONS_PER_CORE = 1.5  # a session takes 0.3-0.45 of a core (docs/benchmarks.md, "Recording in the browser")
MAX_ENDING = 16  # session processes still ending (a reloaded page's), beyond which new sessions wait
SESSION_EXIT_S = 30  # the longest a session may take to end (it may be writing its last episode)
IDLE_S = 120.0  # --idle_timeout: seconds without a key message after which a session is ended
MAX_WAITING = 64  # participants queued for a place, beyond which one more is told to try again later
QUEUE_POLL_S = 0.25  # how often a queued page's place is looked at
KEYS = {"ArrowLeft": "left", "ArrowRight": "right", "ArrowUp": "up", "ArrowDown": "down"}
POLICY = 1008  # WebSocket close code: a message or handshake this server does not accept


class Refused(Exception):
    """A WebSocket message or handshake that is not accepted; the message says why (sent, then closed).
    `reason` tells the page which words to choose: "refused", or "full" (every place is taken, or too many
    sessions are still ending: a participant in the queue waits on)."""

    def __init__(self, message: str, reason: str = "refused"):
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass
class Frame:
    """What the page gets after each step: the view as JPEG, and the status line's numbers."""
    jpeg: bytes
    status: dict


class Participant:
    """One participant, as the server sees them: a session process (`recording/session.py`), a thread serving its
    socket, and one passing the page's keys on.

    `press`, `release`, `restart` and `quit` come from the WebSocket and never wait for the session: they
    change the keyboard and wake the keys' thread, which sends the newest state (a burst of changes is sent
    as one). `latest()` gives the newest frame (`frames` counts them); `wake` is called whenever there is one.
    """

    def __init__(self, server: "WebRecordServer", user: str, session_id: str, wake: Callable[[], None],
                 ready: session_lib.Ready, screenshot: Optional[str] = None):
        self.server, self.user, self.session_id, self.wake, self.ready = server, user, session_id, wake, ready
        self.keyboard = controls.Keyboard()
        self._keys_lock = threading.Lock()
        self._pending: set[str] = set()  # "restart", "stop": flags, so a flood of them is one message each
        self._keys_changed = False
        self._changed = threading.Event()
        self._frame: Optional[Frame] = None
        self.frames = 0
        self.last_input = time.monotonic()  # the page's last key, restart or quit (the idle limit's clock)
        self.saved = self.dropped = self.rescued = 0
        self.error: Optional[str] = None
        self.done = False
        self._finishing = False  # Esc, its last episode being saved, or ended for idleness: see `ending`
        ready.begin(session_lib.SessionArgs(server.config, user, session_id, str(server.store.directory),
                                              server.store.episodes, screenshot))
        self.thread = threading.Thread(target=self._serve, name=f"drive-{session_id}", daemon=True)
        self.thread.start()
        self._keys_thread = threading.Thread(target=self._pass_keys, name=f"keys-{session_id}", daemon=True)
        self._keys_thread.start()

    # -- from the WebSocket -------------------------------------------------------------------------------
    def press(self, key: str) -> None:
        self.last_input = time.monotonic()
        with self._keys_lock:
            self.keyboard.press(key)
            self._keys_changed = True
        self._changed.set()

    def release(self, key: str) -> None:
        self.last_input = time.monotonic()
        with self._keys_lock:
            self.keyboard.release(key)
            self._keys_changed = True
        self._changed.set()

    def restart(self) -> None:
        self._control("restart")

    def quit(self) -> None:
        self.finishing()
        self._control("stop")

    @property
    def ending(self) -> bool:
        """Its place is coming free: the session is finishing or done, its process not yet gone."""
        return self._finishing or self.done

    def finishing(self) -> None:
        """The session will end by itself soon: the queue is told a place is coming free."""
        if not self._finishing:
            self._finishing = True
            self.server.wake_queue()

    def _control(self, kind: str) -> None:
        self.last_input = time.monotonic()
        with self._keys_lock:
            self._pending.add(kind)
        self._changed.set()

    def latest(self) -> Optional[Frame]:
        return self._frame

    # -- to and from the session ------------------------------------------------------------------------------
    def _pass_keys(self) -> None:
        """Sends the newest key state (and any restart or stop) whenever it changed, until the session ends."""
        while not self.done:
            self._changed.wait()
            self._changed.clear()
            with self._keys_lock:
                messages = [(kind,) for kind in ("restart", "stop") if kind in self._pending]
                self._pending.clear()
                if self._keys_changed:
                    messages.insert(0, ("keys", self.keyboard.action.tolist(), self.keyboard.keys_held()))
                    self._keys_changed = False
            try:
                for message in messages:
                    self.ready.send(*message)
            except (OSError, ValueError):
                return  # the session is gone

    def _frame_arrived(self, jpeg: bytes, status: dict) -> None:
        self._frame = Frame(jpeg, status)
        self.frames += 1
        self.saved, self.rescued = status["saved"], status["rescued"]
        episodes = self.server.config.episodes
        if status["phase"] == session_lib.SAVING and episodes is not None and \
                self.saved + self.rescued + 1 >= episodes:
            self.finishing()  # its last episode: the session ends once it is written
        self.wake()

    def _serve(self) -> None:
        try:
            end = session_lib.serve_requests(self.ready, self.server.store, self._frame_arrived, self.server.log,
                                               self.server.next_seed)
            if end is None:
                try:
                    code = self.ready.process.wait(timeout=5)
                except subprocess.TimeoutExpired:  # still running with its socket closed: said as unknown
                    code = None
                self.error = f"the session's process ended unexpectedly (exit code {code})"
            else:
                _, self.saved, self.dropped, _steps, self.error = end
            if self.error:
                self.server.log(f"session {self.session_id} ({self.user}) stopped: {self.error}")
        finally:
            self.done = True
            self._changed.set()
            self.wake()
            self.server.wake_queue()

    def close(self) -> None:
        """Ends the session (its open episode is dropped) and waits for its process."""
        self.quit()
        self.thread.join(timeout=SESSION_EXIT_S)
        self.ready.close(SESSION_EXIT_S)
        self._keys_thread.join(timeout=SESSION_EXIT_S)


class WebRecordServer:
    """The app's state: the shared store of the recording and the open sessions."""

    def __init__(self, config: controls.RecordConfig, *, log: Callable[[str], None] = print,
                 holder: str = "dropj record --web", max_sessions: Optional[int] = None, idle_s: float = IDLE_S):
        self.config, self.log, self.idle_s = config, log, idle_s
        self.stopping = False  # Ctrl-C: sessions end quietly, and `run` says it in one line
        self.max_sessions = min(max_sessions or default_max_sessions(), MAX_SESSIONS)
        spec = record.recording_spec(config.config_name)
        self.store = recording_store.RecordingStore(record.recording_dir(config.out, config.config_name), spec,
                                                    holder=holder, log=log)
        self.sessions: dict[str, Participant] = {}
        self._lock = threading.Lock()
        self._seeds = itertools.count(config.seed) if config.seed is not None else None
        self._screenshot_given = False
        self._closing = 0
        self._ready = session_lib.start()  # the next participant's session process, its imports done
        self._queue: list[int] = []  # tickets of the participants waiting for a place, first come first
        self._waiting: dict[int, Callable[[], None]] = {}  # ticket -> what wakes that participant's wait
        self._tickets = itertools.count()

    def next_seed(self) -> int:
        """The next reset seed of `--seed` (one counter for every session: no two episodes share a track)."""
        if self._seeds is None:
            raise RuntimeError("no --seed: each session draws fresh entropy")
        with self._lock:
            return next(self._seeds)

    def open_session(self, user: str, wake: Callable[[], None]) -> Participant:
        with self._lock:
            # a session that is ending no longer holds a place, but its process still counts against the bound
            if len(self.sessions) >= self.max_sessions or self._closing >= MAX_ENDING:
                raise Refused(self.full_message(), reason="full")
            screenshot = None
            if self.config.screenshot and not self._screenshot_given:  # `--screenshot`: the first session's view
                screenshot, self._screenshot_given = self.config.screenshot, True
            ready, self._ready = self._ready, session_lib.start()
            if ready.process.poll() is not None:  # the process made ahead ended (killed?): a fresh one
                ready = session_lib.start()
            try:
                session = Participant(self, user, record.new_session_id(), wake, ready, screenshot)
            except OSError as exc:
                ready.close(SESSION_EXIT_S)
                raise Refused(f"could not start a session ({exc.strerror or exc}); try again") from None
            self.sessions[session.session_id] = session
        self.log(f"session {session.session_id}: {user} connected")
        return session

    def full_message(self) -> str:
        return f"the server is full ({schema.counted(self.max_sessions, 'participant')} driving, --max_sessions)"

    # -- the queue of a full server -------------------------------------------------------------------------
    def join_queue(self, wake: Callable[[], None]) -> int:
        """A ticket for a place; `wake` is called (from any thread) whenever a place may be coming free."""
        with self._lock:
            if len(self._queue) >= MAX_WAITING:
                raise Refused(f"{self.full_message()} and {len(self._queue)} are waiting for a place; try again later",
                              reason="full")
            ticket = next(self._tickets)
            self._queue.append(ticket)
            self._waiting[ticket] = wake
            return ticket

    def place_in_queue(self, ticket: int) -> tuple[int, int, int]:
        """(the participant's place in the queue, 1 for the first; the places free now; the places coming free,
        held by sessions that are ending)."""
        with self._lock:
            return (self._queue.index(ticket) + 1, self.max_sessions - len(self.sessions),
                    sum(session.ending for session in self.sessions.values()))

    def leave_queue(self, ticket: int) -> None:
        with self._lock:
            if ticket in self._queue:
                self._queue.remove(ticket)
            self._waiting.pop(ticket, None)

    def wake_queue(self) -> None:
        """A session began to end, or ended: every waiting participant looks at their place again now."""
        with self._lock:
            wakes = list(self._waiting.values())
        for wake in wakes:
            try:
                wake()
            except RuntimeError:
                pass  # its event loop closed (Ctrl-C): nobody waits there any more

    def close_session(self, session: Participant) -> None:
        with self._lock:
            self.sessions.pop(session.session_id, None)
            self._closing += 1
        try:
            session.close()
        finally:
            with self._lock:
                self._closing -= 1
        if not self.stopping:
            self.log(f"session {session.session_id}: {session.user} left "
                     f"({schema.counted(session.saved, 'episode')} saved, {session.dropped} dropped)")

    def close(self) -> None:
        for session in list(self.sessions.values()):
            self.close_session(session)
        self._ready.close(SESSION_EXIT_S)
        self.store.close()

    # -- requests -------------------------------------------------------------------------------------------
    def page(self, request: Any) -> Any:
        from starlette.responses import FileResponse

        response = FileResponse(STATIC / "record.html", media_type="text/html")
        response.headers["content-security-policy"] = ("default-src 'self'; img-src 'self' blob:; "
                                                       "connect-src 'self'; object-src 'none'")
        return response  # (the guard sets the token's cookie)

    async def websocket(self, websocket: Any) -> None:
        from starlette.concurrency import run_in_threadpool

        await websocket.accept()  # (the guard has checked the handshake's Host, token and Origin)
        loop = asyncio.get_running_loop()
        ready = asyncio.Event()
        try:
            user = checked_user(websocket.query_params.get("user") or self.config.user)
            placed = await self._wait_for_place(websocket, user, lambda: loop.call_soon_threadsafe(ready.set))
        except Refused as refused:
            await websocket.send_text(json.dumps({"error": str(refused), "reason": refused.reason}))
            await websocket.close(code=POLICY)
            return
        if placed is None:
            return  # the page closed while it waited
        session, receiving = placed
        sender = asyncio.create_task(_send_frames(websocket, session, ready))
        watcher = asyncio.create_task(self._end_when_idle(websocket, session, sender))
        try:
            await websocket.send_text(json.dumps({"session": session.session_id, "user": user,
                                                  "env": self.config.config_name, "fps": self.config.fps,
                                                  "episode_idle_s": self.config.episode_idle_s,
                                                  "idle_timeout": self.idle_s}))
            while not session.done:
                try:
                    message = await (receiving or websocket.receive())
                    receiving = None
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
            watcher.cancel()
            await run_in_threadpool(self.close_session, session)

    async def _wait_for_place(self, websocket: Any, user: str,
                              wake: Callable[[], None]) -> Optional[tuple[Participant, Optional[asyncio.Task]]]:
        """The participant's session, once they are first in the queue and a place is free; meanwhile their page
        is told their place in the queue whenever it changes. None if the page closed while waiting. Returns the
        page's message being received, if any, with the session: it is the session's first."""
        from starlette.concurrency import run_in_threadpool

        loop = asyncio.get_running_loop()
        changed = asyncio.Event()
        ticket = self.join_queue(lambda: loop.call_soon_threadsafe(changed.set))
        receiving: Optional[asyncio.Task] = None
        told, logged = None, False
        try:
            while True:
                changed.clear()
                place, free, ending = self.place_in_queue(ticket)
                if place <= free:  # a place for everyone up to them (those ahead are taking theirs now)
                    try:
                        return await run_in_threadpool(self.open_session, user, wake), receiving
                    except Refused as refused:
                        if refused.reason != "full":
                            raise
                        place, free, ending = self.place_in_queue(ticket)  # taken meanwhile, or sessions ending
                coming = place <= free + ending  # their place is held only by sessions that are ending
                if (place, coming) != told:
                    told = place, coming
                    text = f"{self.full_message()}: you are number {place} in the queue; your turn starts by " \
                           "itself, keep this page open"
                    if coming:
                        text = "a place is coming free (a participant is finishing): your turn starts in a moment"
                    await websocket.send_text(json.dumps({"queue": place, "driving": len(self.sessions),
                                                          "places": self.max_sessions, "coming": coming,
                                                          "text": text}))
                    if not logged:
                        self.log(f"{user} waits for a place: number {place} in the queue (--max_sessions "
                                 f"{self.max_sessions})")
                        logged = True
                receiving = receiving or asyncio.create_task(websocket.receive())
                nudged = asyncio.create_task(changed.wait())
                await asyncio.wait({receiving, nudged}, timeout=QUEUE_POLL_S, return_when=asyncio.FIRST_COMPLETED)
                nudged.cancel()
                if receiving.done():
                    message, receiving = receiving.result(), None
                    if message["type"] == "websocket.disconnect":
                        return None
                    _checked(message.get("text"))  # a key while waiting does nothing, but the shape is checked
        except BaseException:
            if receiving is not None:
                receiving.cancel()
            raise
        finally:
            self.leave_queue(ticket)

    async def _end_when_idle(self, websocket: Any, session: Participant, sender: asyncio.Task) -> None:
        """Ends a session whose page sent no key for `idle_s` seconds, telling the page why (its place is free
        again; its open episode is dropped, as on Esc)."""
        while not session.done:
            left = session.last_input + self.idle_s - time.monotonic()
            if left > 0:
                await asyncio.sleep(min(left, 1.0))
                continue
            sender.cancel()
            session.finishing()
            self.log(f"session {session.session_id}: {session.user} idle for {self.idle_s:g} s, ended")
            try:
                await websocket.send_text(json.dumps({"error": f"no key pressed for {self.idle_s:g} s: this session "
                                                      "ended to give its place to the next participant; reload the "
                                                      "page to drive again", "reason": "idle"}))
                await websocket.close(code=1000)
            except RuntimeError:
                pass  # closed meanwhile
            return


def default_max_sessions() -> int:
    """As many sessions as this machine's usable cores keep at 50 steps/s (1.5 per core, at least 1)."""
    return max(1, int(SESSIONS_PER_CORE * len(os.sched_getaffinity(0))))


def checked_user(user: Any) -> str:
    if not isinstance(user, str) or not 0 < len(user.strip()) <= 64 or not user.isprintable():
        raise Refused("user must be 1 to 64 printable characters")
    return user.strip()


def _apply(session: Participant, text: Optional[str]) -> None:
    """One message of the page, applied to its session."""
    message = _checked(text)
    if "key" in message:
        (session.press if message["down"] else session.release)(KEYS[message["key"]])
    elif "restart" in message:
        session.restart()
    else:
        session.quit()


def _checked(text: Optional[str]) -> dict:
    """One message of the page, checked: {"key": ArrowLeft|ArrowRight|ArrowUp|ArrowDown, "down": bool},
    {"restart": true} or {"quit": true}."""
    if text is None or len(text) > MAX_MESSAGE:
        raise Refused(f"messages are JSON text of at most {MAX_MESSAGE} bytes")
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        raise Refused("malformed JSON") from None
    if isinstance(message, dict) and set(message) == {"key", "down"} and message["key"] in KEYS \
            and isinstance(message["down"], bool):
        return message
    if isinstance(message, dict) and list(message) in (["restart"], ["quit"]) and next(iter(message.values())) is True:
        return message  # (1 == True in Python: `is` keeps {"restart": 1} out)
    raise Refused("expected {key, down}, {restart: true} or {quit: true}")


async def _send_frames(websocket: Any, session: Participant, ready: asyncio.Event) -> None:
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
            await websocket.send_text(json.dumps({"done": True, "saved": session.saved, "rescued": session.rescued,
                                                  "error": session.error}))
            await websocket.close()
            return


def build_app(server: WebRecordServer, access: auth.Access) -> Any:
    from starlette.applications import Starlette
    from starlette.routing import Mount, Route, WebSocketRoute
    from starlette.staticfiles import StaticFiles

    return Starlette(routes=[
        Route("/", server.page),
        WebSocketRoute("/ws", server.websocket),
        Mount("/static", app=StaticFiles(directory=STATIC, follow_symlink=False), name="static"),
    ], middleware=[auth.middleware(access, server.log)])


def run(config: controls.RecordConfig, *, host: str = "127.0.0.1", port: int = 8000,
        max_sessions: Optional[int] = None, allow_hosts: Sequence[str] = (), idle_s: float = IDLE_S,
        log: Callable[[str], None] = print) -> None:
    """`dropj record --web`: serve until Ctrl-C; every finished episode is already on disk."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    sock, access = auth.bind(host, port, allow_hosts)  # a busy port: one line, before the recording is created
    try:
        server = WebRecordServer(config, log=log, holder=f"dropj record --web on port {access.port}",
                                 max_sessions=max_sessions, idle_s=idle_s)
    except BaseException:
        sock.close()
        raise
    try:
        log(f"recording {config.config_name} into {server.store.directory} "
            f"({schema.counted(server.store.episodes, 'episode')} there already); each browser tab drives its own "
            f"session, {server.max_sessions} at once")
        log(f"open {access.url}  (Ctrl-C stops; saved episodes are on disk)")
        driving = []

        def stopping() -> None:
            server.stopping = True
            driving.append(len(server.sessions))

        if auth.serve(build_app(server, access), sock, on_stop=stopping, ws="wsproto",
                          ws_max_size=4 * MAX_MESSAGE):
            log(f"stopped (Ctrl-C): {driving[0] if driving else 0} sessions ended, their open episodes dropped; "
                f"{schema.counted(server.store.episodes, 'episode')} in {server.store.directory}")
    finally:
        server.stopping = True
        server.close()
