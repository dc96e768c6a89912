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

A study file (`dropj annotate --study study.toml`, `study.StudyFile`) adds the participant's flow: the
consent (recorded before any query is served), the instructions with what each answer means, practice
queries (checked by the same questions, kept only in the participant's record, never committed), then
the study's queries in that participant's own seeded order, and a done page with the completion code.
An id the study does not list is refused when the session opens. Without a study file the flags are the
quick path: straight to the queries, in the queries' order, answers committed at the last click.

The play-through lock (the study's `play_through`, default true) is the server's too, not only the page's:
it notes when it served each session its query, reads the clip's length from the query's video
(`dropj.loaders.video.info`), and refuses an answer (not a skip) that arrives sooner than the clips can have
played to the end, less `PLAY_TOLERANCE_S`; nothing of it is kept, and the page shows why. Repeat Video
restarts the clips, so their end comes later, never sooner: the bound holds whatever the repeats.

The experimenter's dashboard (`/admin`, `static/admin.*`) needs its own token, printed at start (`admin:
...`), on loopback too (`auth.ADMIN_PATHS`); participants' links never open it. Its figures
(`/api/admin/figures`, polled by the page) are `dropj.loaders.agreement.figures` of the responses this
server committed (the entries `Annotations` keeps of what is on disk) and of the participants' records.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import secrets
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from dropj.converters.feedback import study as flow
from dropj.converters.feedback.study import Study, StudyFile
from dropj_datasets import schema
from dropj_datasets.app.web import auth
from dropj_datasets.app.web.auth import BadRequest
from dropj_datasets.schema import DataError

STATIC = Path(__file__).parent / "static"
MAX_BODY = 16 * 1024  # bytes of one JSON request; a response of the study is under 1 kB
CSRF_HEADER = "x-dropj-csrf"
PLAY_TOLERANCE_S = 0.5  # the server's play-through lock allows the media's rounding and the clocks' jitter


_BROWSERS = (("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"), ("Chromium/", "Chromium"),
             ("Chrome/", "Chrome"), ("Version/", "Safari"))  # the token that names each, the most specific first
_SYSTEMS = (("Android", "Android"), ("iPhone", "iOS"), ("iPad", "iOS"), ("Windows", "Windows"),
            ("Mac OS X", "macOS"), ("CrOS", "ChromeOS"), ("Linux", "Linux"))


def browser_name(user_agent: str) -> str:
    """'Chrome 131 on Linux' for the log, from a browser's User-Agent (stored whole with each response); the
    User-Agent itself, bounded, when it names no browser this knows."""
    name = next((f"{label} {user_agent.split(token, 1)[1].split('.', 1)[0].split(' ', 1)[0]}"
                 for token, label in _BROWSERS if token in user_agent), None)
    system = next((label for token, label in _SYSTEMS if token in user_agent), None)
    said = (user_agent[:120].strip() or "no user agent") if name is None else \
        f"{name[:40]} on {system}" if system else name[:40]
    return "".join(c if c.isprintable() else "?" for c in said)  # a header is the sender's: no control codes


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
    practice: tuple[str, ...] = ()  # a study's practice queries this session still has to answer
    practiced: tuple[str, ...] = ()  # ... and those it answered (never committed to the store)
    order: Optional[list[str]] = None  # a study's queries in this participant's order, fixed at consent
    served_at: float = 0.0  # time.monotonic() when `query` was served: the play-through lock's clock


class AnnotateServer:
    """The app's state: the annotations being collected, the study's questions and the open sessions."""

    def __init__(self, annotations: Any, *, user: Optional[int], log: Callable[[str], None] = print,
                 idle_s: float = auth.SESSION_IDLE_S, plan: Optional[StudyFile] = None, out: str = ""):
        self.annotations = annotations  # converters.annotations.Annotations
        self.study = Study(annotations.spec)  # the queries' own variant (mjust: chuckc has no Car)
        self.default_user = user
        self.log = log
        self.sessions: auth.Sessions[Session] = auth.Sessions(idle_s=idle_s)
        self.lock = threading.Lock()  # one commit at a time (and a session's query changes only under it)
        self.plan, self.out = plan, out
        self._clip_seconds: dict[str, Optional[float]] = {}  # query -> its clips' length (None: unreadable)
        self.study_queries = plan.study_queries(annotations.order) if plan else None
        if plan and user is not None and not plan.admits(user):
            raise DataError(f"{plan.path}: --user {user} is not one of the study's participants")

    # -- requests -------------------------------------------------------------------------------------------
    def page(self, request: Any) -> Any:
        from starlette.responses import FileResponse

        response = FileResponse(STATIC / "annotate.html", media_type="text/html")
        response.headers["content-security-policy"] = "default-src 'self'; media-src 'self'; object-src 'none'"
        return response  # (the guard sets the token's cookie)

    def _user(self, value: Any) -> int:
        """The participant id a page asked for (`?user=`), or a plain refusal the page shows as it is."""
        if value is None:
            raise BadRequest(403, "This link has no participant id. Please open the link you were given "
                                  "(it ends in ?user= and your id).")
        if type(value) is str:  # as typed in the address: digits only
            if not (value.isascii() and value.isdigit() and len(value) <= 10):
                raise BadRequest(403, f"{schema.describe(value, 30)} is not a participant id (an id is a whole "
                                      "number, as in ?user=31). Please open the link you were given.")
            value = int(value)
        if type(value) is not int or not 0 <= value <= 2**31 - 1:
            raise BadRequest(400, f"user must be an int in [0, 2**31), got {schema.describe(value)}")
        if self.plan and not self.plan.admits(value):
            raise BadRequest(403, f"Participant {value} is not taking part in this study. Please check the link "
                                  "you were given, or ask the person running the study.")
        return value

    def new_session(self, request: Any, body: dict) -> dict:
        user = self._user(body.get("user", self.default_user))
        client = request.client.host if request.client else ""
        session = self.sessions.open(client, lambda key: Session(key, secrets.token_urlsafe(24), user, time.time(),
                                                                 request.headers.get("user-agent", "")[:500]))
        self.log(f"session {session.id}: user {user} ({browser_name(session.user_agent)})")
        reply = {"session": session.id, "csrf": session.csrf, "user": user,
                 "method": self.annotations.spec.method, "config": self.annotations.spec.config}
        if self.plan:
            with self.lock:
                record = self._record(user)
            if record is not None:  # consented before (a reload, another tab, a restarted server)
                session.order = self._order(user, record)
            if record is None or not record.get("practice_done_at"):
                session.practice = self.plan.practice
            reply["study"] = {
                "title": self.plan.title, "consent": self.plan.consent, "instructions": self.plan.instructions,
                "definitions": flow.definitions(self.study), "practice": len(self.plan.practice),
                "practice_left": len(session.practice), "consented": record is not None,
                "play_through": self.plan.play_through, "review": self.plan.review}
        return reply

    # -- the experimenter's dashboard ---------------------------------------------------------------------------
    def admin_page(self, request: Any) -> Any:
        from starlette.responses import FileResponse

        response = FileResponse(STATIC / "admin.html", media_type="text/html")
        response.headers["content-security-policy"] = "default-src 'self'; object-src 'none'"
        response.headers["cache-control"] = "no-store"
        return response

    def admin_figures(self, request: Any) -> dict:
        """Per participant and per question (`agreement.figures`), from the committed responses and the
        participants' records; bounded (`agreement.MAX_PARTICIPANTS`)."""
        from dropj.loaders import agreement

        with self.lock:  # a consistent view: no commit half-counted
            rows = [agreement.row_from_entry(user, answer) for user, done in self.annotations.answered.items()
                    for _, answer in sorted(done.values(), key=lambda stored: stored[0])]
            users = set(self.annotations.answered)
            records = self._records() if self.plan else {}
        total = len(self.study_queries) if self.plan else len(self.annotations.order)
        participants = {user: {"of": len(self._order(user, record)), **_times(record)}
                        for user, record in records.items()}
        for user in users - set(participants):
            participants[user] = {"of": total}
        figures = agreement.figures(rows, questions=[(q.text, q.options) for q in self.study.questions],
                                    participants=participants)
        return {"title": self.plan.title if self.plan else None, "method": self.annotations.spec.method,
                "config": self.annotations.spec.config, "queries": total, "now": time.time(),
                "directory": str(self.annotations.store.directory), **figures}

    def _records(self) -> dict[int, dict]:
        """The participants' records (`OUT/dropj_participants/METHOD/user{ID}.json`), at most
        `agreement.MAX_PARTICIPANTS` more than are listed; an unreadable one is left out."""
        from dropj.converters.feedback.annotations import participant_path, read_participant
        from dropj.loaders import agreement

        folder = participant_path(self.out, self.annotations.spec.config, 0).parent
        records = {}
        try:
            names = sorted(folder.iterdir())[:10 * agreement.MAX_PARTICIPANTS]
        except OSError:
            return records
        for path in names:
            user = path.name[4:-5]
            if not (path.name.startswith("user") and path.suffix == ".json" and user.isdigit()):
                continue
            try:
                record = read_participant(path)
            except DataError:
                continue
            if record is not None:
                records[int(user)] = record
        return records

    # -- a study's participant record (`annotations.participant_path`) -----------------------------------------
    def _record_path(self, user: int) -> Path:
        from dropj.converters.feedback.annotations import participant_path

        return participant_path(self.out, self.annotations.spec.config, user)

    def _record(self, user: int) -> Optional[dict]:
        from dropj.converters.feedback.annotations import read_participant

        return read_participant(self._record_path(user))

    def _save(self, user: int, record: dict) -> None:
        from dropj.converters.feedback.annotations import write_participant

        try:
            write_participant(self._record_path(user), record)
        except OSError as exc:
            raise BadRequest(503, f"the participant record could not be written ({schema.one_line(exc, 200)}); "
                                  "try again") from None

    def _order(self, user: int, record: dict) -> list[str]:
        """The recorded order, kept even if the study file changed since: queries no longer in the study
        drop out, new ones follow in the study's order for this participant."""
        queries = set(self.study_queries)
        kept = [q for q in record["order"] if q in queries]
        return kept + [q for q in self.plan.order_for(user, self.study_queries) if q not in set(kept)]

    def consent(self, request: Any, body: dict) -> dict:
        if not self.plan:
            raise BadRequest(404, "this server runs no study file (--study): there is nothing to consent to")
        with self.lock:
            session = self._session(request, body.get("session"), csrf=True)
            record = self._record(session.user)
            if record is None:
                order = self.plan.order_for(session.user, self.study_queries)
                record = {"user": session.user, "study": self.plan.title, "study_file": self.plan.path,
                          "study_sha256": self.plan.sha256, "order_rule": self.plan.order, "seed": self.plan.seed,
                          "order": order, "consented_at": time.time(), "practice": []}
                self._save(session.user, record)
                self.log(f"user {session.user}: consented; order {order[:5]}{' ...' if len(order) > 5 else ''}")
            session.order = self._order(session.user, record)
        return {"consented": True}

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
        if self.plan and session.order is None:
            raise BadRequest(403, "consent first: the study's queries are shown once the participant has agreed")
        if session.practice:  # a study's practice first: the same questions, nothing committed
            video = session.practice[0]
            session.query, session.served_at = video, time.monotonic()
            total = len(self.plan.practice)
            return {"done": False, "practice": True, "query_id": video, "position": total - len(session.practice) + 1,
                    "total": total, "answered": total - len(session.practice),
                    "video": f"/api/video/{video}?session={session.id}",
                    "question": dataclasses.asdict(self.study.next_question([]))}
        video = self.annotations.next_query(session.user, session.order)
        session.query, session.served_at = video, time.monotonic()
        done, total = self.annotations.progress(session.user, session.order)
        if video is None:
            reply = {"done": True, "answered": done, "total": total}
            if self.plan:
                reply["completion_code"] = self.plan.completion_code
                with self.lock:
                    record = self._record(session.user)
                    if record is not None and not record.get("completed_at"):
                        record["completed_at"] = time.time()
                        self._save(session.user, record)
            return reply
        question = self.study.next_question([])
        return {"done": False, "practice": False, "query_id": video, "answered": done, "total": total,
                "position": done + 1, "video": f"/api/video/{video}?session={session.id}",
                "question": dataclasses.asdict(question)}

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
            if video is not None and video in session.practiced:  # a retry of a practice answer
                return {"practice": True}
            if video is None or video not in (session.query, session.answered):
                raise BadRequest(409, "not the query this session is answering (answered already, or not shown)")
            if video == session.query and body.get("skip") is not True:
                self._check_played(session, video)
            if session.practice and video == session.practice[0]:
                return self._practice(session, video, body)
            entry = self._entry(video, body)
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

    def _check_played(self, session: Session, video: str) -> None:
        """The play-through lock, held here too (module docstring): refuses an answer that came sooner after
        its query was served than the clips play, less `PLAY_TOLERANCE_S`."""
        if not (self.plan and self.plan.play_through):
            return
        if video not in self._clip_seconds:
            self._clip_seconds[video] = clip_seconds(self.annotations.queries[video]["video"])
            if self._clip_seconds[video] is None:
                self.log(f"query {video}: its video's length cannot be read, so only the page holds its answers "
                         "until the clips have played")
        seconds = self._clip_seconds[video]
        elapsed = time.monotonic() - session.served_at
        if seconds is not None and elapsed < seconds - PLAY_TOLERANCE_S:
            raise BadRequest(409, f"Too early: the clips play for {seconds:.1f} s and were shown {elapsed:.1f} s "
                                  "ago. Watch them to the end, then answer (nothing was saved).")

    def _entry(self, video: str, body: dict) -> dict:
        try:
            if body.get("skip") is True:
                return self.study.skipped(video, total_time=body.get("total_time"),
                                          repeat_count=body.get("repeat_count"))
            return self.study.entry(video, _answers(body.get("answers")), seconds=_seconds(body.get("seconds")),
                                    total_time=body.get("total_time"), repeat_count=body.get("repeat_count"))
        except DataError as exc:
            raise BadRequest(422, str(exc)) from None

    def _practice(self, session: Session, video: str, body: dict) -> dict:
        """A practice answer: checked like a study answer, kept in the participant's record only (the
        annotation directory is the study's training data, so nothing of practice goes there)."""
        entry = self._entry(video, body)
        record = self._record(session.user)
        if record is None:
            raise BadRequest(403, "consent first: the study's queries are shown once the participant has agreed")
        record["practice"] = (record.get("practice") or [])[-99:] + [{**entry, "answered_at": time.time()}]
        if len(session.practice) == 1:
            record["practice_done_at"] = time.time()
        self._save(session.user, record)
        session.practice, session.practiced = session.practice[1:], session.practiced + (video,)
        session.query = None
        self.log(f"user {session.user}: practice {video} (not stored with the study's answers)")
        return {"practice": True}


def clip_seconds(mp4: bytes) -> Optional[float]:
    """How long a query's video plays (its stream's duration, else frames / fps), or None if unreadable."""
    from dropj.loaders import video

    try:
        info = video.info(mp4)
    except Exception:  # noqa: BLE001 - PyAV's errors are many; an unreadable length is said by the caller
        return None
    if info["duration"]:
        return info["duration"]
    return info["frames"] / info["fps"] if info["frames"] and info["fps"] else None


def _times(record: dict) -> dict:
    return {key: record[key] for key in ("consented_at", "completed_at") if key in record}


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
        Route("/api/consent", _json_endpoint(server.consent), methods=["POST"]),
        Route("/api/query", _get_endpoint(server.query), methods=["GET"]),
        Route("/api/video/{query_id}", _get_endpoint(server.video), methods=["GET"]),
        Route("/api/question", _json_endpoint(server.question), methods=["POST"]),
        Route("/api/answer", _json_endpoint(server.answer), methods=["POST"]),
        Route("/admin", _get_endpoint(server.admin_page), methods=["GET"]),  # the guard asks for the admin token
        Route("/api/admin/figures", _get_endpoint(server.admin_figures), methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC, follow_symlink=False), name="static"),
    ]
    return Starlette(routes=routes, middleware=[auth.middleware(access, server.log)])


def resolve_user(out: str, user: Optional[Union[int, str]], log: Callable[[str], None] = print) -> Optional[int]:
    """`--user` as an integer: itself, or the one a text id maps to under `out` (`store.participants`), said
    the first time."""
    if not isinstance(user, str):
        return user
    from dropj.converters.store import participants

    known = participants.read(out)
    value = participants.resolve(out, user)
    if user not in known:
        log(f"user {user!r} is user {value} ({participants.path(out)} keeps the mapping)")
    return value


def run(queries: Optional[str], method: Optional[str], out: str, *, user: Optional[Union[int, str]],
        data_dir: Optional[str] = None, host: str = "127.0.0.1", port: int = 8000, allow_hosts: Sequence[str] = (),
        idle_s: float = auth.SESSION_IDLE_S, log: Callable[[str], None] = print, study: Optional[str] = None) -> None:
    """`dropj annotate`: serve until Ctrl-C; every finished response is already on disk.

    With `study` (a study file, `study.load_study`), the queries, method and data_dir come from it (a
    `data_dir` given here overrides the file's), and `user` is only the id of a link without `?user=`."""
    from dropj.converters.feedback.annotations import Annotations

    plan = None
    if study is not None:
        plan = flow.load_study(study)  # a bad file: one line, before the port is bound
        given = [what for what, value in ((f"the queries ({queries})", queries), ("--method", method))
                 if value is not None]
        if given:
            raise DataError(f"{plan.path}: {' and '.join(given)} come from the study file; leave "
                            f"{'them' if len(given) > 1 else 'it'} out")
        queries, method, data_dir = plan.queries, plan.method, data_dir or plan.data_dir
        if isinstance(user, int) and not plan.admits(user):
            raise DataError(f"{plan.path}: --user {user} is not one of the study's participants")
    elif queries is None or method is None or user is None:
        raise DataError("dropj annotate needs --study STUDY.toml, or --queries, --method and --user")
    sock, access = auth.bind(host, port, allow_hosts, admin=True)  # a busy port: one line, before --out is created
    try:
        annotations = Annotations(queries, method, out, data_dir=data_dir,
                                  holder=f"dropj annotate on port {access.port}", log=log)
    except BaseException:
        sock.close()
        raise
    try:
        user = resolve_user(out, user, log)  # a text id: its integer, kept under --out (now made)
        if plan and user is not None and not plan.admits(user):
            raise DataError(f"{plan.path}: --user {user} is not one of the study's participants")
        server = AnnotateServer(annotations, user=user, log=log, idle_s=idle_s, plan=plan, out=out)
        if plan:
            log(f"study {plan.title!r} ({plan.path}): {len(server.study_queries)} queries of {queries} with {method}, "
                f"{len(plan.practice)} practice, order {plan.order}; into {annotations.store.directory}")
        else:
            answered, total = annotations.progress(user)
            log(f"annotating {queries} with {method} into {annotations.store.directory}; user {user} has answered "
                f"{answered} of {total} queries")
        url = access.url if not (plan and plan.participants) else _with_user(access.url, min(plan.participants))
        each = "; each participant opens ?user=THEIR_ID" if plan and plan.participants else ""
        log(f"open {url}  (Ctrl-C stops; committed responses are on disk{each})")
        log(f"admin: {access.admin_url}  (the experimenter's dashboard; never give this link to a participant)")
        if auth.serve(build_app(server, access), sock):
            if plan:
                log(f"stopped (Ctrl-C): every committed response is on disk in {annotations.store.directory}; "
                    "an answer not yet sent is not kept")
            else:
                answered, total = annotations.progress(user)
                log(f"stopped (Ctrl-C): user {user} has answered {answered} of {total} queries, every one on disk in "
                    f"{annotations.store.directory}; an answer not yet sent is not kept")
    finally:
        annotations.close()


def _with_user(url: str, user: int) -> str:
    """The printed address for one participant (each gets their own `?user=` link)."""
    return url + ("&" if "?" in url else "?") + f"user={user}"
