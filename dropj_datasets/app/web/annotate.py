"""`dropj annotate`: the study's preference questions in a browser, every answer stored durably as RLDS-era TFDS.

A Starlette app served by uvicorn. The page (`static/annotate.html`) plays the
query's video (both clips side by side, as the study showed them), asks one
question at a time with the study's exact buttons, measures each answer's
seconds with the browser's monotonic clock, and sends the finished response.
The server decides the questions (`study.Study`), checks every request, and
commits a finished response (`annotations.Annotations.commit`: flushed and
listed) before it answers with the next query.

Security: every request first passes `auth.Guard`, the guard all three
web apps share (the Host must be this server's name, so a DNS-rebound page is
refused; the access token printed with the URL wherever the bind is not
loopback; no cross-site Origin). Every state-changing request must also carry
the session's CSRF token in a header, which a cross-site page cannot set
without a CORS preflight this server never grants; bodies are limited to
`MAX_BODY` bytes; static files come only from this package's `static/`
folder. Sessions live in a `auth.Sessions` table: an idle one expires
(`--idle_timeout`), and a client that opens too many loses its least recently
used, so no flood of sessions turns the next annotator away.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import secrets
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from dropj.converters.feedback.study import Study
from dropj_datasets import schema
from dropj_datasets.app.web import auth
from dropj_datasets.app.web.auth import BadRequest
from dropj_datasets.schema import DataError

STATIC = Path(__file__).parent / "static"
MAX_BODY = 16 * 1024  # bytes of one JSON request; a response of the study is under 1 kB
CSRF_HEADER = "x-dropj-csrf"


@dataclasses.dataclass
class Session:
    """One annotator's browser tab: who, since when, and the query it is answering."""

    id: str
    csrf: str
    user: int
    start_time: float
    user_agent: str
    query: Optional[str] = None
    answered: Optional[str] = None  # the query this session last committed: a retry of it is answered again


class AnnotateServer:
    """The app's state: the annotations being collected, the study's questions and the open sessions."""

    def __init__(self, annotations: Any, *, user: int, log: Callable[[str], None] = print,
                 idle_s: float = auth.SESSION_IDLE_S):
        self.annotations = annotations  # converters.annotations.Annotations
        self.study = Study(annotations.spec)  # the queries' own variant (mjust: chuckc has no Car)
        self.default_user = user
        self.log = log
        self.sessions: auth.Sessions[Session] = auth.Sessions(idle_s=idle_s)
        self.lock = threading.Lock()  # one commit at a time (and a session's query changes only under it)

    # -- requests -------------------------------------------------------------------------------------------
    def page(self, request: Any) -> Any:
        from starlette.responses import FileResponse

        response = FileResponse(STATIC / "annotate.html", media_type="text/html")
        response.headers["content-security-policy"] = "default-src 'self'; media-src 'self'; object-src 'none'"
        return response  # (the guard sets the token's cookie)

    def new_session(self, request: Any, body: dict) -> dict:
        user = body.get("user", self.default_user)
        if type(user) is not int or not 0 <= user <= 2**31 - 1:
            raise BadRequest(400, f"user must be an int in [0, 2**31), got {schema.describe(user)}")
        client = request.client.host if request.client else ""
        session = self.sessions.open(client, lambda key: Session(key, secrets.token_urlsafe(24), user, time.time(),
                                                                 request.headers.get("user-agent", "")[:500]))
        self.log(f"session {session.id}: user {user} ({session.user_agent[:60]})")
        return {"session": session.id, "csrf": session.csrf, "user": user,
                "method": self.annotations.spec.method, "config": self.annotations.spec.config}

    def _session(self, request: Any, session_id: Any, *, csrf: bool) -> Session:
        session = self.sessions.get(session_id)  # 404 unless open
        if csrf and not hmac.compare_digest(request.headers.get(CSRF_HEADER, "").encode("utf-8", "surrogateescape"),
                                            session.csrf.encode()):
            raise BadRequest(403, "missing or wrong CSRF token")
        return session

    def query(self, request: Any) -> dict:
        # No commit lock: a commit marks its query answered only after it is on disk, and a session
        # sends its next request only after its commit returned.
        session = self._session(request, request.query_params.get("session"), csrf=False)
        video = self.annotations.next_query(session.user)
        session.query = video
        done, total = self.annotations.progress(session.user)
        if video is None:
            return {"done": True, "answered": done, "total": total}
        question = self.study.next_question([])
        return {"done": False, "query_id": video, "answered": done, "total": total,
                "video": f"/api/video/{video}?session={session.id}", "question": dataclasses.asdict(question)}

    def video(self, request: Any) -> Any:
        from starlette.responses import Response

        self._session(request, request.query_params.get("session"), csrf=False)
        query = self.annotations.queries.get(request.path_params["query_id"])
        if query is None:
            raise BadRequest(404, "unknown query")
        return Response(query["video"], media_type="video/mp4", headers={"cache-control": "no-store"})

    def question(self, request: Any, body: dict) -> dict:
        session = self._session(request, body.get("session"), csrf=True)
        if body.get("query_id") != session.query:
            raise BadRequest(409, "not the query this session is answering")
        try:
            question = self.study.next_question(_answers(body.get("answers")))
        except DataError as exc:
            raise BadRequest(422, str(exc)) from None
        return {"done": question is None, "question": dataclasses.asdict(question) if question else None}

    def answer(self, request: Any, body: dict) -> dict:
        with self.lock:
            session = self._session(request, body.get("session"), csrf=True)
            video = body.get("query_id")
            # A retry of the answer just committed (its reply was lost) goes on to the commit, which knows
            # the (user, query) and answers with the stored index, or refuses other answers.
            if video is None or video not in (session.query, session.answered):
                raise BadRequest(409, "not the query this session is answering (answered already, or not shown)")
            try:
                if body.get("skip") is True:
                    entry = self.study.skipped(video, total_time=body.get("total_time"),
                                               repeat_count=body.get("repeat_count"))
                else:
                    entry = self.study.entry(video, _answers(body.get("answers")),
                                             seconds=_seconds(body.get("seconds")),
                                             total_time=body.get("total_time"), repeat_count=body.get("repeat_count"))
            except DataError as exc:
                raise BadRequest(422, str(exc)) from None
            try:
                index = self.annotations.commit(session.user, entry, session=session.id,
                                                start_time=session.start_time, user_agent=session.user_agent)
            except DataError as exc:
                raise BadRequest(422, str(exc)) from None
            except Exception as exc:  # noqa: BLE001 - the page says it in one line; the store kept nothing of it
                why = schema.one_line(exc, 200)
                self.log(f"user {session.user}: {video} could not be stored ({why})")
                raise BadRequest(503, f"the response could not be stored ({why}); try again") from None
            if session.query == video:
                session.query, session.answered = None, video
        self.log(f"user {session.user}: {video} -> response {index}")
        return {"stored": index}


def _answers(value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, list) or len(value) > 8:
        raise DataError(f"answers must be a list of [question, answer] pairs, got {schema.describe(value)}")
    return [tuple(item) if isinstance(item, list) else item for item in value]


def _seconds(value: Any) -> list[float]:
    if not isinstance(value, list) or len(value) > 8:
        raise DataError(f"seconds must be a list of numbers, got {schema.describe(value)}")
    return value


def _json_endpoint(handler: Callable[[Any, dict], dict]) -> Callable:
    """A POST handler taking a JSON object body of at most MAX_BODY bytes."""
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse

    async def endpoint(request):
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise BadRequest(415, "expected a JSON body (content-type application/json)")
        length = request.headers.get("content-length")
        if length is not None and (not (length.isascii() and length.isdigit()) or len(length) > 9
                                   or int(length) > MAX_BODY):
            raise BadRequest(413, f"body larger than {MAX_BODY} bytes")
        data = b""
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_BODY:
                raise BadRequest(413, f"body larger than {MAX_BODY} bytes")
        try:
            body = json.loads(data)
        except (ValueError, RecursionError):
            raise BadRequest(400, "malformed JSON") from None
        if not isinstance(body, dict):
            raise BadRequest(400, "expected a JSON object")
        return JSONResponse(await run_in_threadpool(handler, request, body))

    return endpoint


def _get_endpoint(handler: Callable[[Any], Any]) -> Callable:
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse, Response

    async def endpoint(request):
        result = await run_in_threadpool(handler, request)
        return result if isinstance(result, Response) else JSONResponse(result)

    return endpoint


def build_app(server: AnnotateServer, access: auth.Access) -> Any:
    """The Starlette app behind the guard, every handler wrapped: JSON bodies checked, work off the event loop."""
    from starlette.applications import Starlette
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    routes = [
        Route("/", _get_endpoint(server.page)),
        Route("/api/session", _json_endpoint(server.new_session), methods=["POST"]),
        Route("/api/query", _get_endpoint(server.query), methods=["GET"]),
        Route("/api/video/{query_id}", _get_endpoint(server.video), methods=["GET"]),
        Route("/api/question", _json_endpoint(server.question), methods=["POST"]),
        Route("/api/answer", _json_endpoint(server.answer), methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=STATIC, follow_symlink=False), name="static"),
    ]
    return Starlette(routes=routes, middleware=[auth.middleware(access, server.log)])


def run(queries: str, method: str, out: str, *, user: int, data_dir: Optional[str] = None, host: str = "127.0.0.1",
        port: int = 8000, allow_hosts: Sequence[str] = (), idle_s: float = auth.SESSION_IDLE_S,
        log: Callable[[str], None] = print) -> None:
    """`dropj annotate`: serve until Ctrl-C; every finished response is already on disk."""
    from dropj.converters.feedback.annotations import Annotations

    sock, access = auth.bind(host, port, allow_hosts)  # a busy port: one line, before --out is created
    try:
        annotations = Annotations(queries, method, out, data_dir=data_dir,
                                  holder=f"dropj annotate on port {access.port}", log=log)
    except BaseException:
        sock.close()
        raise
    try:
        server = AnnotateServer(annotations, user=user, log=log, idle_s=idle_s)
        answered, total = annotations.progress(user)
        log(f"annotating {queries} with {method} into {annotations.store.directory}; user {user} has answered "
            f"{answered} of {total} queries")
        log(f"open {access.url}  (Ctrl-C stops; committed responses are on disk)")
        if auth.serve(build_app(server, access), sock):
            answered, total = annotations.progress(user)
            log(f"stopped (Ctrl-C): user {user} has answered {answered} of {total} queries, every one on disk in "
                f"{annotations.store.directory}; an answer not yet sent is not kept")
    finally:
        annotations.close()
