"""Issue 22's attacks on the three web apps (`dropj annotate`, `dropj serve`, `dropj record --web`), each against a
real server subprocess: a DNS-rebound Host, the token's one rule, a corpus of malformed requests to every route,
session floods, idle tabs, a busy port and Ctrl-C; `serve`'s byte-bounded cache; one page in headless Chromium
through the guard."""

from __future__ import annotations

import json
import re
import signal
import socket
import urllib.error
import urllib.request

import numpy as np
import pytest

import factory
from dropj.converters.feedback import annotations
from dropj.converters.recording import capture as record, session
from dropj_datasets import schema
from factory.web import App, received_until_closed, wait_for

pytestmark = pytest.mark.slow
EVIL = "evil.example"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    factory.build("dropj_carracing/queries", factory.dummy_data("dropj_carracing"), data)
    factory.build("dropj_carracing/dream", factory.dummy_data("dropj_carracing"), data)
    return data


def _annotate(data_dir, out, *extra, **kwargs):
    return App("annotate", "--queries", "dropj_carracing/queries", "--data_dir", str(data_dir), "--method", "dropj",
               "--user", "5", "--out", str(out), *extra, **kwargs)


def _serve(data_dir, *extra, **kwargs):
    return App("serve", "--data_dir", str(data_dir), *extra, **kwargs)


def _record(out, *extra, **kwargs):
    return App("record", "--web", "--out", str(out), "--user", "default", *extra, **kwargs)


def _http(app, method, path, body=None, headers=None, raw=None):
    """(status, JSON or text) of one request; `headers` may replace Host."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    all_headers = {"content-type": "application/json"} if data is not None else {}
    all_headers.update(headers or {})
    request = urllib.request.Request(app.base + path, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, _decoded(response.read()), response.headers
    except urllib.error.HTTPError as error:
        return error.code, _decoded(error.read()), error.headers


def _decoded(data: bytes):
    try:
        return json.loads(data or b"null")
    except ValueError:
        return data.decode(errors="replace")


def _raw(app, request: bytes) -> int:
    """The status of a request sent byte for byte (no Host, a 5,000-digit Content-Length ...)."""
    with socket.create_connection(("127.0.0.1", app.port), timeout=60) as s:
        s.sendall(request)
        reply = b""
        while b"\r\n" not in reply:
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    return int(reply.split(b" ", 2)[1]) if reply else 0


def _ws(app, path="/ws?user=tester", **kwargs):
    import websocket

    return websocket.create_connection(f"ws://127.0.0.1:{app.port}{path}", timeout=30, **kwargs)


def _stored_responses(out) -> int:
    directory = annotations.annotation_dir(out, "dropj")
    return len(list(directory.glob("*.tfrecord-*"))) if directory.is_dir() else 0


def _stored_episodes(out) -> int:
    directory = record.recording_dir(out, "carracing")
    return len(list(directory.glob("*.tfrecord-*"))) if directory.is_dir() else 0


# --- Host, token, Origin: the one guard ----------------------------------------------------------------------

def test_a_dns_rebound_host_is_refused_by_every_app_on_http_and_websocket(data_dir, tmp_path):
    """A page of evil.example rebound to 127.0.0.1 sends Host: evil.example: no session, no answer, no page, no
    drive; the bound address, localhost and an --allow_host name pass."""
    import websocket

    apps = [_annotate(data_dir, tmp_path / "ann", "--allow_host", "study.lab"), _serve(data_dir),
            _record(tmp_path / "rec", "--max_steps", "1000")]
    try:
        annotate, serve, rec = apps
        for app, paths in ((annotate, ["/", "/api/query?session=x", "/static/annotate.js"]),
                           (serve, ["/", "/d/dropj_carracing/dream", "/frame/dropj_carracing/dream/0/0.png",
                                    "/api/episode/dropj_carracing/dream/0"]),
                           (rec, ["/", "/static/record.js"])):
            for path in paths:
                status, reply, _ = _http(app, "GET", path, headers={"host": f"{EVIL}:{app.port}"})
                assert status in (400, 421), (app.args, path, status)
                assert "Host" in reply["error"] and "--allow_host" in reply["error"], reply
            assert _http(app, "GET", "/", headers={"host": f"localhost:{app.port}"})[0] == 200
            assert _http(app, "GET", "/")[0] == 200  # 127.0.0.1, the bound address
        status, reply, _ = _http(annotate, "POST", "/api/session", {}, {"host": f"{EVIL}:{annotate.port}",
                                                                         "origin": f"http://{EVIL}:{annotate.port}"})
        assert status in (400, 421), reply
        status, session, _ = _http(annotate, "POST", "/api/session", {}, {"host": f"study.lab:{annotate.port}"})
        assert status == 200 and session["session"]
        with pytest.raises(websocket.WebSocketBadStatusException):
            _ws(rec, host=f"{EVIL}:{rec.port}", origin=f"http://{EVIL}:{rec.port}")
        ws = _ws(rec, host=f"localhost:{rec.port}", origin=f"http://localhost:{rec.port}")
        assert json.loads(ws.recv())["env"] == "carracing"
        ws.close()
    finally:
        logs = [app.stop() for app in apps]
    assert not any("Traceback" in log for log in logs), logs
    assert _stored_responses(tmp_path / "ann") == 0 and _stored_episodes(tmp_path / "rec") == 0


def test_off_loopback_every_app_takes_the_token_by_one_rule(data_dir, tmp_path):
    """The token is required by all three, accepted from the query on any path (then a same-site HttpOnly cookie
    named for the port) or from that cookie; a wrong, empty or non-ASCII token is a 401, never a 500."""
    apps = [_annotate(data_dir, tmp_path / "ann", "--host", "0.0.0.0"), _serve(data_dir, "--host", "0.0.0.0"),
            _record(tmp_path / "rec", "--host", "0.0.0.0", "--max_steps", "1000")]
    try:
        for app, path in zip(apps, ("/api/query?session=none", "/d/dropj_carracing/dream", "/static/record.js")):
            token = app.token
            assert token, app.lines
            for bad in ("", "wrong", "%C3%A9" * 8, token[:-1]):
                status, reply, _ = _http(app, "GET", f"{path}{'&' if '?' in path else '?'}token={bad}")
                assert status == 401 and "token" in reply["error"], (app.args, bad, status, reply)
            many = "&".join(f"p{i}=1" for i in range(70))  # more query fields than the guard parses: a 400
            status, reply, _ = _http(app, "GET", f"{path}{'&' if '?' in path else '?'}{many}&token={token}")
            assert status == 400 and "query parameters" in reply["error"], (app.args, status, reply)
            status, _, headers = _http(app, "GET", f"{path}{'&' if '?' in path else '?'}token={token}")
            assert status != 401, (app.args, path)
            cookie = headers["set-cookie"]
            assert cookie.startswith(f"dropj_token_{app.port}=") and "httponly" in cookie.lower() \
                and "samesite=strict" in cookie.lower(), cookie
            assert _http(app, "GET", "/", headers={"cookie": cookie.split(";")[0]})[0] == 200
            assert _http(app, "GET", "/", headers={"cookie": f"dropj_token_{app.port}=wrong"})[0] == 401
        import websocket

        rec = apps[2]
        with pytest.raises(websocket.WebSocketBadStatusException):
            _ws(rec, "/ws?token=%C3%A9")
        ws = _ws(rec, f"/ws?user=t&token={rec.token}")
        assert json.loads(ws.recv())["user"] == "t"
        ws.close()
    finally:
        logs = [app.stop() for app in apps]
    assert not any("Traceback" in log for log in logs), logs


def test_a_name_as_host_prints_the_numeric_address_it_holds_and_mapped_loopback_needs_no_token():
    """`--host localhost` bound the first address the name resolves to, but printed the name, which a browser may
    resolve to another address where another server listens; ::ffff:127.0.0.1 asked for a token (3.11 does not call
    it loopback) and a query of 70 fields answered a bare 500."""
    from dropj_datasets.app.web import auth as web_auth

    sock, access = web_auth.bind("localhost", 0)
    try:
        bound = sock.getsockname()[0]
        assert access.url == f"http://{bound}:{access.port}/" if ":" not in bound else \
            f"http://[{bound}]:{access.port}/"
        assert access.token is None
        assert access.host_allowed(f"{bound}:{access.port}") and access.host_allowed("localhost")
        assert not access.host_allowed("evil.example")
    finally:
        sock.close()
    assert web_auth.is_loopback("::ffff:127.0.0.1") and web_auth.new_token("::ffff:127.0.0.1") is None
    assert not web_auth.is_loopback("::ffff:10.0.0.1") and web_auth.new_token("0.0.0.0")


# --- malformed requests: a 4xx from every route, nothing stored -------------------------------------------------

HUGE = "9" * 5000


def test_a_corpus_of_malformed_requests_gets_a_4xx_from_every_route_and_stores_nothing(data_dir, tmp_path):
    import websocket

    ann = _annotate(data_dir, tmp_path / "ann")
    serve = _serve(data_dir)
    rec = _record(tmp_path / "rec", "--max_steps", "30")
    statuses = []

    def expect_4xx(app, method, path, **kwargs):
        status, reply, _ = _http(app, method, path, **kwargs)
        statuses.append((app.args[0], method, path[:60], status))
        assert 400 <= status < 500, (method, path[:80], kwargs.get("raw", kwargs.get("body")), status, reply)

    try:
        _, session, _ = _http(ann, "POST", "/api/session", {})
        sid, csrf = session["session"], {"x-dropj-csrf": session["csrf"]}
        _, query, _ = _http(ann, "GET", f"/api/query?session={sid}")
        good = {"session": sid, "query_id": query["query_id"],
                "answers": [[schema.Q_LEFT_SAFE, "No"], [schema.Q_RIGHT_SAFE, "No"]],
                "seconds": [1.0, 1.0], "total_time": 2.5, "repeat_count": 0}
        huge = json.dumps(good).replace("2.5", HUGE[:401])  # an int of 401 digits: 10**400 > any float
        times = [  # malformed for an answer (a question takes no times)
            dict(raw=huge.encode(), headers=csrf),
            dict(raw=json.dumps(good).replace("1.0, 1.0", f"{HUGE[:401]}, 1.0").encode(), headers=csrf),
            dict(raw=json.dumps(good).replace("2.5", "1e400").encode(), headers=csrf),
            dict(raw=json.dumps(good).replace('"repeat_count": 0', f'"repeat_count": {HUGE[:401]}').encode(),
                 headers=csrf),
            dict(body={**good, "seconds": "1"}, headers=csrf),
            dict(body={**good, "seconds": [[1.0], [1.0]]}, headers=csrf),
            dict(body={**good, "total_time": "2.5"}, headers=csrf),
            dict(body={**good, "total_time": True}, headers=csrf),
            dict(body={**good, "skip": True, "total_time": int(HUGE[:401])}, headers=csrf),
        ]
        bodies = [
            dict(raw=json.dumps(good).replace('"repeat_count": 0', f'"repeat_count": {HUGE}').encode(), headers=csrf),
            dict(raw=b"[" * 8000 + b"]" * 8000, headers=csrf),
            dict(raw=b'{"a": ' * 2000 + b"1" + b"}" * 2000, headers=csrf),
            dict(raw=b"{not json", headers=csrf),
            dict(raw=b"\xff\xfe\x00", headers=csrf),
            dict(body={**good, "answers": {"a": 1}}, headers=csrf),
            dict(body={**good, "answers": [[1, 2], [3, 4]]}, headers=csrf),
            dict(body={**good, "answers": ["ab", "cd"]}, headers=csrf),
            dict(body={**good, "session": [sid]}, headers=csrf),
            dict(body={**good, "query_id": {"x": 1}}, headers=csrf),
            dict(body=[good], headers=csrf),
            dict(body=good, headers={"x-dropj-csrf": "é"}),
            dict(body=good, headers={**csrf, "origin": "null"}),
        ]
        for path, corpus in (("/api/answer", times + bodies), ("/api/question", bodies)):
            for kwargs in corpus:
                expect_4xx(ann, "POST", path, **kwargs)
        for body in ({"user": int(HUGE[:401])}, {"user": HUGE}, {"user": -1}, {"user": [5]}, {"user": 5.5}):
            expect_4xx(ann, "POST", "/api/session", raw=json.dumps(body).encode())
        expect_4xx(ann, "POST", "/api/session", raw=b"[" * 8000)
        for path in (f"/api/query?session={HUGE}", f"/api/video/{HUGE}.mp4?session={sid}",
                     f"/api/video/0.mp4?session={sid}&session=x", "/" + "a" * 6000, f"/static/{HUGE}",
                     "/api/query", "/api/video/..%2F..%2Fannotate.py?session=" + sid):
            expect_4xx(ann, "GET", path)
        expect_4xx(ann, "GET", "/api/answer")
        assert _raw(ann, b"POST /api/answer HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                         b"content-length: " + HUGE.encode() + b"\r\n\r\n{}") // 100 == 4
        assert _raw(ann, b"GET / HTTP/1.0\r\n\r\n") // 100 == 4  # no Host at all

        for path in (f"/d/dropj_carracing/dream/episode/{HUGE}", f"/api/episode/dropj_carracing/dream/{HUGE}",
                     f"/frame/dropj_carracing/dream/0/{HUGE}.png", f"/frame/dropj_carracing/dream/{HUGE}/0.png",
                     f"/d/dropj_carracing/queries/item/{HUGE}", "/d/dropj_carracing/dream/episode/-1",
                     "/d/" + "x" * 6000 + "/dream", f"/video/dropj_carracing/queries/{HUGE}",
                     "/d/dropj_carracing/dream/episode/1e3", "/frame/dropj_carracing/dream/0/0x1.png",
                     "/d/dropj_carracing/dream/episode/%EF%BC%91"):  # a fullwidth digit one
            expect_4xx(serve, "GET", path)
        expect_4xx(serve, "POST", "/", raw=b"{}")

        expect_4xx(rec, "GET", "/" + "a" * 6000)
        expect_4xx(rec, "GET", f"/?user={HUGE}", headers={"host": EVIL})
        for bad in (json.dumps({"key": "ArrowUp", "down": int(HUGE[:401])}), "[" * 250, b"\x00binary",
                    json.dumps({"restart": True, "x": 1}), '{"key": "ArrowUp", "down": true, "down": false}x'):
            ws = _ws(rec)
            json.loads(ws.recv())
            (ws.send_binary if isinstance(bad, bytes) else ws.send)(bad)
            messages = received_until_closed(ws)
            assert any(isinstance(m, str) and "error" in json.loads(m) for m in messages), (bad, messages[-3:])
        with pytest.raises(websocket.WebSocketBadStatusException):
            _ws(rec, f"/ws?user={HUGE}")  # a query over 4 kB: refused at the handshake
        for path in ("/ws?user=" + "u" * 65, "/ws?user=%00", "/ws?user=" + "%C3%A9" * 100):
            ws = _ws(rec, path)
            assert "error" in json.loads(ws.recv()), path
            ws.close()
    finally:
        logs = [app.stop() for app in (ann, serve, rec)]
    assert not any("Traceback" in log or "Exception" in log for log in logs), logs
    assert _stored_responses(tmp_path / "ann") == 0 and _stored_episodes(tmp_path / "rec") == 0


# --- sessions ------------------------------------------------------------------------------------------------

def test_a_thousand_new_sessions_do_not_lock_out_the_next_annotator(data_dir, tmp_path):
    """1,000 `POST /api/session` (a flood, or reloads) used to answer 429 to everyone until a restart; now the
    client's least recently used session goes, and the next annotator answers."""
    app = _annotate(data_dir, tmp_path / "ann")
    try:
        _, first, _ = _http(app, "POST", "/api/session", {})
        for _ in range(1000):  # the old global bound
            status, _, _ = _http(app, "POST", "/api/session", {})
            assert status == 200
        status, session, _ = _http(app, "POST", "/api/session", {"user": 9})
        assert status == 200, session
        sid, csrf = session["session"], {"x-dropj-csrf": session["csrf"]}
        _, query, _ = _http(app, "GET", f"/api/query?session={sid}")
        answer = {"session": sid, "query_id": query["query_id"], "answers": [[schema.Q_LEFT_SAFE, "No"],
                  [schema.Q_RIGHT_SAFE, "No"]], "seconds": [1.0, 1.0], "total_time": 2.5, "repeat_count": 0}
        assert _http(app, "POST", "/api/answer", answer, csrf)[0] == 200
        status, reply, _ = _http(app, "GET", f"/api/query?session={first['session']}")
        assert status == 404 and "reload the page" in reply["error"]  # evicted: its client opened too many
    finally:
        log = app.stop()
    assert "Traceback" not in log and _stored_responses(tmp_path / "ann") == 1


def test_sessions_expire_when_idle_are_capped_per_client_and_bounded_in_all():
    from dropj_datasets.app.web import auth as web_auth

    clock = [0.0]
    table = web_auth.Sessions(idle_s=60.0, per_client=3, total=5, clock=lambda: clock[0])
    a = [table.open("a", lambda sid: sid) for _ in range(3)]
    table.get(a[0])  # used: a[1] is now a's least recently used
    a.append(table.open("a", lambda sid: sid))
    with pytest.raises(web_auth.BadRequest) as gone:
        table.get(a[1])
    assert gone.value.status == 404
    assert [table.get(s) for s in (a[0], a[2], a[3])] == [a[0], a[2], a[3]]
    clock[0] = 30.0
    b = [table.open("b", lambda sid: sid) for _ in range(2)]
    c = table.open("c", lambda sid: sid)  # the table is full (5): the longest idle goes, whoever's
    assert len(table) == 5 and table.get(c) == c
    assert sum(1 for s in a if table.contains(s)) == 2
    clock[0] = 30.0 + 61.0
    assert all(not table.contains(s) for s in a)  # idle for over 60 s: expired
    for s in b + [c]:
        with pytest.raises(web_auth.BadRequest) as expired:
            table.get(s)
        assert expired.value.status == 404
    assert len(table) == 0


# --- record --web: idle tabs ------------------------------------------------------------------------------------

def test_an_idle_tab_saves_no_episode_and_its_place_is_given_back_after_the_idle_limit(tmp_path):
    """Three tabs that never press a key held every place forever and saved time-limit episodes; now an episode
    without a key press is dropped and an idle session ends, saying so, after --idle_timeout."""

    app = _record(tmp_path, "--max_steps", "20", "--max_sessions", "1", "--idle_timeout", "3")
    try:
        idle = _ws(app, "/ws?user=idle")
        assert json.loads(idle.recv())["user"] == "idle"
        messages = received_until_closed(idle)
        texts = [json.loads(m) for m in messages if isinstance(m, str) and m]  # ("" : the close frame)
        steps = [t["step"] for t in texts if "step" in t]
        # the track is shown and waits for a first key, which never comes: not one step is taken (before episodes
        # waited for their first key, an idle tab's episodes ran out of time, at least two, none saved)
        assert set(steps) <= {0} and {t["phase"] for t in texts if "phase" in t} <= {"ready"}, texts
        assert all(t.get("saved", 0) == 0 for t in texts)
        error = next(t["error"] for t in texts if t.get("error"))
        assert "no key" in error and "3 s" in error and "reload" in error, error
        driver = wait_for(lambda: _ws_hello(app, "/ws?user=driver"), 30, "the idle tab's place never came free")
        driver.send(json.dumps({"key": "ArrowUp", "down": True}))
        status = {}
        while status.get("saved", 0) < 1:
            message = driver.recv()
            if isinstance(message, str):
                status = json.loads(message)
        driver.close()
    finally:
        log = app.stop()
    assert "Traceback" not in log
    users = [e[schema.EPISODE_METADATA][schema.USER_ID_TEXT] for e in app.recorded(tmp_path, "carracing")]
    assert users and set(users) == {b"driver"}


def _ws_hello(app, path):
    ws = _ws(app, path)
    hello = json.loads(ws.recv())
    if "error" in hello:
        ws.close()
        return None
    return ws


def test_a_stop_before_begin_ends_the_waiting_session_process_quietly():
    """Ctrl-C closes the session process made ahead, whose ("stop",) comes before any "begin": it used to die
    with a ValueError traceback (the message unpacked as (kind, args))."""
    import subprocess
    import sys
    from multiprocessing.connection import Connection

    ours, theirs = socket.socketpair()
    with theirs:
        process = subprocess.Popen(
            [sys.executable, "-c", session.COMMAND,
             str(theirs.fileno())], pass_fds=[theirs.fileno()], stderr=subprocess.PIPE, text=True, cwd=factory.REPO)
    conn = Connection(ours.detach())
    conn.send(("stop",))
    _, stderr = process.communicate(timeout=120)
    conn.close()
    assert process.returncode == 0 and stderr == "", stderr


# --- ports and Ctrl-C -----------------------------------------------------------------------------------------

def test_a_busy_port_is_one_line_naming_port_before_anything_is_created_or_printed(data_dir, tmp_path):
    import subprocess
    import sys

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        for args, out in ((["annotate", "--queries", "dropj_carracing/queries", "--data_dir", str(data_dir),
                            "--method", "dropj", "--user", "1", "--out", str(tmp_path / "ann")], tmp_path / "ann"),
                          (["serve", "--data_dir", str(data_dir)], None),
                          (["record", "--web", "--out", str(tmp_path / "rec"), "--user", "u"], tmp_path / "rec")):
            done = subprocess.run([sys.executable, "-m", "dropj_datasets.app", *args, "--port", port],
                                  capture_output=True, text=True, cwd=factory.REPO, timeout=300)
            assert done.returncode == 2, (args[0], done.stdout, done.stderr)
            assert done.stdout == "" and "open http" not in done.stderr, (args[0], done.stdout)
            [line] = done.stderr.splitlines()
            assert f"port {port}" in line and "--port" in line and line.startswith(f"dropj {args[0]}: error: "), line
            assert out is None or not out.exists(), (args[0], list(out.rglob("*")))


def test_ctrl_c_ends_every_app_with_one_line_and_keeps_what_was_stored(data_dir, tmp_path):
    ann = _annotate(data_dir, tmp_path / "ann")
    rec = _record(tmp_path / "rec", "--max_steps", "100")
    serve = _serve(data_dir)
    try:
        _, session, _ = _http(ann, "POST", "/api/session", {})
        sid = session["session"]
        _, query, _ = _http(ann, "GET", f"/api/query?session={sid}")
        answer = {"session": sid, "query_id": query["query_id"], "answers": [[schema.Q_LEFT_SAFE, "No"],
                  [schema.Q_RIGHT_SAFE, "No"]], "seconds": [1.0, 1.0], "total_time": 2.5, "repeat_count": 0}
        assert _http(ann, "POST", "/api/answer", answer, {"x-dropj-csrf": session["csrf"]})[0] == 200
        ws = _ws(rec, "/ws?user=driver")
        json.loads(ws.recv())
        ws.send(json.dumps({"key": "ArrowUp", "down": True}))
        status = {}
        while status.get("saved", 0) < 1:  # one saved, the next one open when Ctrl-C comes
            message = ws.recv()
            if isinstance(message, str):
                status = json.loads(message)
    finally:
        ends = {app.args[0]: app.stop(signal.SIGINT) for app in (rec, ann, serve)}
    for app in (ann, rec, serve):
        tail = ends[app.args[0]]
        assert "Traceback" not in tail and "Error" not in tail, (app.args[0], tail)
        assert len(tail.strip().splitlines()) == 1, (app.args[0], tail)
        assert app.proc.returncode == 0, (app.args[0], app.proc.returncode, tail)
    assert _stored_responses(tmp_path / "ann") == 1 and "answered 1 of " in ends["annotate"]
    said = int(re.split(r" episodes? in ", ends["record"])[0].rsplit(" ", 1)[1])  # "...; N episodes in DIR"
    assert said >= 1 and len(rec.recorded(tmp_path / "rec", "carracing")) == said, ends["record"]


# --- serve: memory bounded by bytes ---------------------------------------------------------------------------

def test_serve_makes_frames_on_demand_and_caches_episodes_by_bytes(data_dir):
    from dropj_datasets.app.web import serve, auth as web_auth

    browser = serve.Browser(str(data_dir))
    episode = browser.episode("dropj_carracing", "dream", 0)
    steps = len(episode.frames)
    frame = episode.frames[steps - 1]
    assert frame.shape[2] == 3 and frame.dtype == np.uint8
    rendered = steps * frame.nbytes
    assert episode.nbytes < rendered / 10, (episode.nbytes, rendered)  # heat maps are made per request
    assert browser.cached_bytes == episode.nbytes <= serve.CACHE_BYTES
    room = max(episode.nbytes, browser.episode("dropj_carracing", "dream", 1).nbytes)
    small = serve.Browser(str(data_dir), cache_bytes=room)  # room for one episode
    small.episode("dropj_carracing", "dream", 0)
    small.episode("dropj_carracing", "dream", 1)
    assert small.cached_bytes <= room and len(small.cached) == 1
    tiny = serve.Browser(str(data_dir), cache_bytes=episode.nbytes - 1)
    with pytest.raises(web_auth.BadRequest) as refused:
        tiny.episode("dropj_carracing", "dream", 0)
    assert refused.value.status == 413 and "too large" in str(refused.value), refused.value
    assert tiny.cached_bytes == 0


def test_serve_refuses_an_episode_beyond_the_step_cap_before_reading_it_all(data_dir, monkeypatch):
    """Built datasets had no step cap of their own in `serve`: the pickle reader's cap applies, raised by the
    variable the message names."""
    from dropj_datasets.app.web import serve, auth as web_auth

    steps = len(serve.Browser(str(data_dir)).episode("dropj_carracing", "dream", 0).frames)
    monkeypatch.setenv("DROPJ_MAX_EPISODE_STEPS", str(steps - 3))
    with pytest.raises(web_auth.BadRequest) as refused:
        serve.Browser(str(data_dir)).episode("dropj_carracing", "dream", 0)
    assert refused.value.status == 413, refused.value
    assert f"more than the {steps - 2} steps an episode may have ({steps - 3} transitions); set " \
           "DROPJ_MAX_EPISODE_STEPS to its transitions" in str(refused.value), refused.value
    monkeypatch.setenv("DROPJ_MAX_EPISODE_STEPS", str(steps - 1))  # as the message says: its transitions
    assert len(serve.Browser(str(data_dir)).episode("dropj_carracing", "dream", 0).frames) == steps


# --- the normal page, in Chromium, through the guard -----------------------------------------------------------

def test_the_annotation_page_works_in_chromium_through_the_guard_off_loopback(data_dir, tmp_path, browser):
    app = _annotate(data_dir, tmp_path / "ann", "--host", "0.0.0.0")
    try:
        browser.get(app.url.replace("0.0.0.0", "localhost"))  # the token in the URL, then the cookie
        wait_for(lambda: browser.find_element("id", "progress").text.startswith("0 of "), 60,
                 lambda: browser.find_element("id", "status").text)
        for question in (schema.Q_LEFT_SAFE, schema.Q_RIGHT_SAFE):
            wait_for(lambda question=question: browser.find_element("id", "question").text == question, 30)
            wait_for(lambda: next((b for b in browser.find_elements("css selector", "#answers button")
                                   if b.text == "No" and b.is_displayed()), None), 30).click()
        wait_for(lambda: browser.find_element("id", "progress").text.startswith("1 of "), 30,
                 lambda: browser.find_element("id", "status").text)
    finally:
        app.stop()
    assert _stored_responses(tmp_path / "ann") == 1
