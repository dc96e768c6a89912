"""The one guard of every web app (`dropj annotate`, `dropj serve`, `dropj record --web`), and the socket they serve on.

Each app is a Starlette app wrapped in `Guard`, a pure ASGI middleware, so
HTTP requests and WebSocket handshakes pass the same checks, in this order,
before any route runs:

1. **Size**: a path over `MAX_PATH` or a query over `MAX_QUERY` bytes is refused (414).
2. **Host**: the `Host` header must name the bound address, `localhost`, or a
   name given with `--allow_host`; on a wildcard bind (0.0.0.0, ::) any IP
   literal too (an address cannot be rebound). This is what stops DNS
   rebinding: a page of evil.example whose name now points at 127.0.0.1 is
   same-origin with itself, but its requests say `Host: evil.example`.
3. **Token**, wherever the bind is not loopback: the `token` query parameter
   on any path, else the `dropj_token_PORT` cookie (HttpOnly, SameSite=Strict,
   set on a response to a request whose query carried the right token), one
   constant-time comparison of bytes. Loopback needs none: only this machine
   reaches it, and the Host rule keeps other sites' pages out.
   **Admin**: an app with an experimenter's view (`annotate`'s `/admin`) has a second token, on loopback
   too, printed only with the admin address. A path under `ADMIN_PATHS` needs it (in `?token=` or the
   `dropj_admin_PORT` cookie, set the same way), whatever the bind: the participants' token and cookie never
   open it. The admin token opens every other path too (the dashboard's own static files).
4. **Origin**: a request that carries an `Origin` must come from this very
   host (scheme://Host); anything else, `null` included, is cross-site (403).

A refusal is one JSON line `{"error": ...}` (a WebSocket handshake is closed
with 1008, which the client sees as 403). A `BadRequest` raised by a route
becomes its status and message; any other exception a 500 with one line
naming it, logged once (never Starlette's bare page).

`Sessions` is the session table of an app that keeps sessions (`annotate`):
idle ones expire, each client holds at most `per_client` (its least recently
used one goes), and the table at most `total` (the longest idle goes), so no
flood locks anyone out until a restart.

`listen` binds the port before the app creates or prints anything: a busy port
is one line naming `--port`, and the address printed is the socket we hold.
"""

from __future__ import annotations

import collections
import dataclasses
import hmac
import ipaddress
import json
import secrets
import socket
import threading
import time
import urllib.parse
from typing import Any, Callable, Generic, Optional, Sequence, TypeVar

from dropj_datasets import schema

MAX_PATH = 2048  # bytes of a request's path; every route's is under 200
MAX_QUERY = 4096  # bytes of its query string
MAX_QUERY_FIELDS = 64  # parameters in it; every route takes at most 3
MAX_ERROR = 500  # characters of an error message sent back
TOKEN_PARAM = "token"
LOOPBACK_NAMES = ("localhost",)
WILDCARDS = ("0.0.0.0", "::", "")
ADMIN_PATHS = ("/admin", "/api/admin")  # a path starting with one of these needs the admin token
GRACEFUL_S = 5  # seconds open connections get to end at Ctrl-C
# Sessions (`annotate`): a tab idle this long is forgotten (its page says "reload"); per client and in all.
SESSION_IDLE_S = 3600.0
SESSIONS_PER_CLIENT = 64
MAX_SESSIONS = 1000

T = TypeVar("T")


class BadRequest(Exception):
    """A request refused with `status` and a one-line message (the response body's "error")."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is loopback too (3.11 says it is not)
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def new_token(host: str) -> Optional[str]:
    """The access token an app on `host` requires: none on loopback."""
    return None if is_loopback(host) else secrets.token_urlsafe(16)


@dataclasses.dataclass(frozen=True)
class Access:
    """Who may talk to an app bound to `host`:`port`: the Host names it answers to, and its token (if any)."""

    host: str
    port: int
    token: Optional[str] = None
    allow_hosts: tuple[str, ...] = ()
    bound: str = ""  # the numeric address the socket holds (for --host NAME: the one the URL names)
    admin_token: Optional[str] = None  # the experimenter's token (`ADMIN_PATHS`); None: the app has no admin view

    @property
    def url(self) -> str:
        """The URL to open: the address of the socket we hold (numeric when --host was a name, so it cannot
        resolve to another server on another address of that name), with the token where one is needed."""
        shown = self.host if _is_ip(self.host) or self.host in WILDCARDS or not self.bound else self.bound
        shown = f"[{shown}]" if ":" in shown else shown
        return f"http://{shown}:{self.port}/" + (f"?{TOKEN_PARAM}={self.token}" if self.token else "")

    @property
    def admin_url(self) -> str:
        """The experimenter's address: the dashboard with the admin token (never given to participants)."""
        return self.url.split("?")[0] + f"admin?{TOKEN_PARAM}={self.admin_token}"

    @property
    def admin_cookie(self) -> str:
        return f"dropj_admin_{self.port}"

    @property
    def cookie(self) -> str:
        """The token's cookie, named for the port: two apps on one machine keep their own."""
        return f"dropj_token_{self.port}"

    def host_allowed(self, value: str) -> bool:
        name = _host_name(value)
        if name is None:
            return False
        if name in (self.host.lower().strip("[]"), self.bound.lower(), *LOOPBACK_NAMES,
                    *(h.lower() for h in self.allow_hosts)):
            return True
        return self.host in WILDCARDS and _is_ip(name)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
        return True
    except ValueError:
        return False


def _host_name(value: str) -> Optional[str]:
    """The name of a Host header ("name", "name:port", "[v6]", "[v6]:port"), lower case; None if malformed."""
    if not 0 < len(value) <= 255 or not value.isascii():
        return None
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket:
            return None
    else:
        name, colon, port = value.partition(":")
        rest = colon + port
    if rest and not (rest[0] == ":" and rest[1:].isdigit() and len(rest) <= 6):
        return None
    return name.lower().rstrip(".") or None


def _token_ok(given: Optional[str], token: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode())


class Guard:
    """Pure ASGI middleware: size, Host, token and Origin for every HTTP request and WebSocket handshake, and
    one JSON line for every refusal or failure (see the module docstring)."""

    def __init__(self, app: Any, access: Access, log: Callable[[str], None] = print):
        self.app, self.access, self.log = app, access, log

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            query_token = self._check(scope)
        except BadRequest as refused:
            await _refuse(scope, receive, send, refused)
            return
        started = False
        # the page's later requests (and its WebSocket) carry the cookie instead of the query's token
        cookies = {"participant": (self.access.cookie, self.access.token),
                   "admin": (self.access.admin_cookie, self.access.admin_token)}
        set_cookie = cookies.get(query_token)

        async def send_guarded(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if set_cookie:
                    cookie = f"{set_cookie[0]}={set_cookie[1]}; HttpOnly; SameSite=Strict; Path=/"
                    message = {**message, "headers": [*message.get("headers", []),
                                                      (b"set-cookie", cookie.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_guarded)
        except BadRequest as refused:
            if started or scope["type"] != "http":
                raise
            await _refuse(scope, receive, send_guarded, refused)
        except Exception as exc:  # noqa: BLE001 - one line, not Starlette's bare 500 page
            if started or scope["type"] != "http":
                raise
            why = schema.one_line(exc)
            self.log(f"{scope.get('path', '')[:80]}: {why}")
            await _refuse(scope, receive, send_guarded, BadRequest(500, f"the server failed: {why}"))

    def _check(self, scope: dict) -> Optional[str]:
        """Raises `BadRequest` unless the request may pass; which token its query carried rightly ('participant',
        'admin'), if any."""
        raw_path, query = scope.get("raw_path") or scope.get("path", "").encode(), scope.get("query_string", b"")
        if len(raw_path) > MAX_PATH or len(query) > MAX_QUERY:
            raise BadRequest(414, f"request path or query longer than {MAX_PATH} / {MAX_QUERY} bytes")
        headers = _headers(scope)
        host = headers.get("host", "")
        if not self.access.host_allowed(host):
            raise BadRequest(400, f"Host {schema.describe(host, 60)} is not this server's name "
                                  f"({self.access.host}, localhost); to open it under another name, start it "
                                  "with --allow_host NAME")
        from_query = None
        if self.access.token or self.access.admin_token:
            try:
                params = urllib.parse.parse_qs(query.decode("latin-1"), max_num_fields=MAX_QUERY_FIELDS,
                                               errors="surrogateescape")
            except ValueError:  # more fields than that
                raise BadRequest(400, f"more than {MAX_QUERY_FIELDS} query parameters") from None
            given = params.get(TOKEN_PARAM, [None])[-1]
            cookie = headers.get("cookie", "")
            admin = bool(self.access.admin_token) and (
                _token_ok(given, self.access.admin_token)
                or _token_ok(_cookie(cookie, self.access.admin_cookie), self.access.admin_token))
            if admin and _token_ok(given, self.access.admin_token):
                from_query = "admin"
            if self.access.admin_token and scope.get("path", "").startswith(ADMIN_PATHS):
                if not admin:  # the participants' token is not this one, whatever the bind
                    raise BadRequest(401, "the experimenter's token is required: open the admin address the server "
                                          "printed (admin: ...?token=...)")
            elif self.access.token and not admin:
                if _token_ok(given, self.access.token):
                    from_query = "participant"
                elif not _token_ok(_cookie(cookie, self.access.cookie), self.access.token):
                    raise BadRequest(401, "access token required: open the address the server printed (?token=...)")
        origin = headers.get("origin")
        if origin is not None and origin not in (f"http://{host}", f"https://{host}"):
            raise BadRequest(403, "cross-site request refused")
        return from_query


def _headers(scope: dict) -> dict[str, str]:
    """The request's headers, lower-case names, latin-1 values (the last of a repeated one)."""
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}


def _cookie(header: str, name: str) -> Optional[str]:
    for part in header.split(";")[:64]:
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


async def _refuse(scope: dict, receive: Callable, send: Callable, refused: BadRequest) -> None:
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 1008, "reason": str(refused)[:120]})
        return
    body = json.dumps({"error": str(refused)[:MAX_ERROR]}).encode()
    await send({"type": "http.response.start", "status": refused.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def middleware(access: Access, log: Callable[[str], None] = print) -> Any:
    """The guard, as Starlette's `middleware=[...]` takes it."""
    from starlette.middleware import Middleware

    return Middleware(Guard, access=access, log=log)


def bounded_int(text: str, what: str, maximum: int = 10**9) -> int:
    """A path's index: ASCII digits only, at most `maximum` (else a 404 naming `what`), never a 5,000-digit int."""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(maximum)) or int(text) > maximum:
        raise BadRequest(404, f"{what} must be a whole number 0..{maximum}, got {schema.describe(text, 30)}")
    return int(text)


# --- sessions ---------------------------------------------------------------------------------------------------

class Sessions(Generic[T]):
    """Open sessions by id, most recently used last: idle ones expire, at most `per_client` per client (its least
    recently used goes) and `total` in all (the longest idle goes). Thread-safe."""

    def __init__(self, *, idle_s: float = SESSION_IDLE_S, per_client: int = SESSIONS_PER_CLIENT,
                 total: int = MAX_SESSIONS, clock: Callable[[], float] = time.monotonic):
        self.idle_s, self.per_client, self.total, self.clock = idle_s, per_client, total, clock
        self._lock = threading.Lock()
        self._items: collections.OrderedDict[str, tuple[str, float, T]] = collections.OrderedDict()

    def open(self, client: str, make: Callable[[str], T]) -> T:
        """A new session of `client`: `make(id)` is its value."""
        with self._lock:
            self._expire()
            mine = [key for key, (owner, _, _) in self._items.items() if owner == client]
            if len(mine) >= self.per_client:
                del self._items[mine[0]]
            if len(self._items) >= self.total:
                self._items.popitem(last=False)
            key = secrets.token_hex(8)
            value = make(key)
            self._items[key] = (client, self.clock(), value)
            return value

    def get(self, key: Any) -> T:
        """The session `key`, marked as used now; 404 if unknown, expired or evicted."""
        with self._lock:
            self._expire()
            item = self._items.get(key) if isinstance(key, str) else None
            if item is None:
                raise BadRequest(404, "unknown or expired session: reload the page")
            self._items[key] = (item[0], self.clock(), item[2])
            self._items.move_to_end(key)
            return item[2]

    def contains(self, key: str) -> bool:
        with self._lock:
            self._expire()
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._items)

    def _expire(self) -> None:
        deadline = self.clock() - self.idle_s
        while self._items:
            key, (_, used, _) = next(iter(self._items.items()))
            if used >= deadline:
                return
            del self._items[key]


# --- the socket -------------------------------------------------------------------------------------------------

def listen(host: str, port: int) -> socket.socket:
    """A socket bound to `host`:`port` and listening, before anything is created or printed: a busy port or an
    address that is not this machine's is one line naming --port / --host."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise schema.DataError(f"--host {host}: not an address of this machine ({exc})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT, never one in use
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == 98:  # EADDRINUSE
            raise schema.DataError(f"port {port} on {host} is in use (another server?): choose another with "
                                   "--port") from None
        raise schema.DataError(f"cannot listen on {host} port {port} ({exc.strerror}): choose another --host or "
                               "--port") from None
    return sock


def bind(host: str, port: int, allow_hosts: Sequence[str] = (), *, admin: bool = False
         ) -> tuple[socket.socket, Access]:
    """`listen`, and who may talk to the app on that socket: the Host names, the token (off loopback) and the
    address `Access.url` prints; with `admin`, the experimenter's token too (on loopback as well). Called
    first, before the app creates or prints anything."""
    sock = listen(host, port)
    bound, bound_port = sock.getsockname()[:2]
    return sock, Access(host, bound_port, new_token(host), tuple(allow_hosts), bound=bound,
                        admin_token=secrets.token_urlsafe(24) if admin else None)


def serve(app: Any, sock: socket.socket, *, on_stop: Optional[Callable[[], None]] = None, **options: Any) -> bool:
    """Runs `app` on `sock` until Ctrl-C (or SIGTERM); True when it was Ctrl-C. `on_stop` is called as the
    signal comes, before open connections get `GRACEFUL_S` seconds to end."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            if on_stop is not None and not self.should_exit:
                on_stop()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=GRACEFUL_S,
                            **options)
    try:
        Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn ended gracefully, then raised the signal it caught again
        return True
    finally:
        sock.close()
    return False


__all__: Sequence[str] = ["Access", "BadRequest", "Guard", "Sessions", "bind", "bounded_int", "listen",
                          "middleware", "new_token", "serve"]
