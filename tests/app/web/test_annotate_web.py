"""`dropj annotate` in a real server and a real headless Chromium (Debian's chromium + chromium-driver).

The recorded responses must equal the clicks; a SIGKILLed server loses nothing committed and resumes;
two annotators do not see each other's queries; hostile requests get a 4xx and store nothing.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

import factory
from dropj.converters.feedback import annotations
from dropj.converters.roundtrip.export import export
from dropj_datasets import schema

from factory.web import CHROMIUM, DRIVER, Server, wait_for
needs_browser = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                   reason="needs Debian's chromium and chromium-driver (`make sysdeps` installs them)")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def queries_dir(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    factory.build("dropj_carracing/queries", factory.dummy_data("dropj_carracing"), data)
    return data


def _request(method, url, body=None, headers=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    all_headers = {"content-type": "application/json"} if data is not None else {}
    all_headers.update(headers or {})
    request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, _body(response.read())
    except urllib.error.HTTPError as error:
        return error.code, _body(error.read())


def _body(data: bytes):
    try:
        return json.loads(data or b"null")
    except ValueError:
        return data.decode(errors="replace")  # Starlette's own plain-text 404 for static paths


def _wait(driver, condition, timeout=30.0):
    return wait_for(condition, timeout, lambda: f"status {driver.find_element('id', 'status').text!r}")


def _click(driver, text):
    """Clicks the answer (or control) button whose visible text is exactly `text`, once it is shown."""
    def find():
        for button in driver.find_elements("css selector", "button"):
            if button.text == text and button.is_displayed():
                return button
        return None
    _wait(driver, find).click()


def _question(driver):
    return driver.find_element("id", "question").text


def _answered(driver, n):
    _wait(driver, lambda: driver.find_element("id", "progress").text.startswith(f"{n} of "))


@needs_browser
def test_the_dropj_flow_in_chromium_records_exactly_the_clicks(queries_dir, tmp_path, browser):
    server = Server(queries_dir, tmp_path / "out")
    try:
        browser.get(server.url)
        _answered(browser, 0)
        assert _question(browser) == schema.Q_LEFT_SAFE
        _click(browser, "Yes")
        _wait(browser, lambda: _question(browser) == schema.Q_RIGHT_SAFE)
        _click(browser, "No")  # not both safe: no preference question
        _answered(browser, 1)
        _click(browser, "Repeat Video")
        _click(browser, "Repeat Video")
        _click(browser, "Yes")
        _wait(browser, lambda: _question(browser) == schema.Q_RIGHT_SAFE)
        _click(browser, "Yes")
        _wait(browser, lambda: _question(browser) == schema.Q_PREFER)
        _click(browser, "Equally")
        _answered(browser, 2)
        _click(browser, "Skip")  # asks first (issue 24): nothing is skipped until it is confirmed
        _wait(browser, lambda: browser.find_element("id", "confirm-skip").is_displayed())
        _click(browser, "Yes, skip it")
        _answered(browser, 3)
        browser.save_screenshot(str(tmp_path / "annotate.png"))
    finally:
        server.kill(signal.SIGTERM)
    examples = server.responses()
    answers = [[a.decode() for a in e[schema.RESPONSE][schema.ANSWERS][schema.ANSWER]] for e in examples]
    assert answers == [["Yes", "No"], ["Yes", "Yes", "Equally"], []]
    assert [e[schema.QUERY_ID].decode() for e in examples] == ["0.mp4", "1.mp4", "2.mp4"]
    assert [int(e[schema.RESPONSE][schema.REPEAT_COUNT]) for e in examples] == [0, 2, 0]
    assert [bool(e[schema.RESPONSE][schema.SKIPPED]) for e in examples] == [False, False, True]
    assert [float(e[schema.LABEL]) for e in examples[:2]] == [1.0, 0.5]
    for e in examples[:2]:
        seconds = e[schema.RESPONSE][schema.ANSWERS][schema.SECONDS]
        assert (seconds >= 0).all() and seconds.sum() <= e[schema.RESPONSE][schema.TOTAL_TIME] + 1e-6
    assert b"Chrome" in examples[0][schema.ANNOTATION][schema.USER_AGENT]
    [path] = export(str(annotations.annotation_dir(tmp_path / "out", "dropj")), tmp_path / "legacy",
                    log=lambda line: None)
    assert path.name == "responses_user5_s20_q3_dropj.pkl"
    legacy = pickle.loads(path.read_bytes())
    assert [entry["responses"] if entry["responses"] == "Skipped" else [a for _, a, _ in entry["responses"]]
            for entry in legacy] == [["Yes", "No"], ["Yes", "Yes", "Equally"], "Skipped"]


@needs_browser
def test_the_drop_flow_offers_left_and_right_only(queries_dir, tmp_path, browser):
    server = Server(queries_dir, tmp_path / "out", method="drop")
    try:
        browser.get(server.url)
        _answered(browser, 0)
        assert _question(browser) == schema.Q_PREFER
        buttons = [b.text for b in browser.find_elements("css selector", "#answers button")]
        assert buttons == ["Left", "Right"]
        _click(browser, "Right")
        _answered(browser, 1)
    finally:
        server.kill(signal.SIGTERM)
    [example] = server.responses()
    assert (example[schema.PREFERENCE], float(example[schema.LABEL])) == (b"Right", 0.0)


@pytest.fixture(scope="module")
def obstacle_queries_dir(tmp_path_factory):
    data = tmp_path_factory.mktemp("obst")
    factory.build("dropj_obst_carracing/chuckc_queries", factory.dummy_data("dropj_obst_carracing"), data)
    return data


@needs_browser
def test_the_mjust_flow_on_chuckhole_queries(obstacle_queries_dir, tmp_path, browser):
    server = Server(obstacle_queries_dir, tmp_path / "out", method="mjust",
                    queries="dropj_obst_carracing/chuckc_queries")
    try:
        browser.get(server.url)
        _answered(browser, 0)
        assert _question(browser) == schema.Q_JUSTIFICATION
        buttons = browser.find_elements("css selector", "#answers button")
        assert [b.text for b in buttons] == ["Default", "Grass", "Chuckhole"]  # no Car without cars
        assert "preselected" in buttons[0].get_attribute("class")
        _click(browser, "Grass")
        _wait(browser, lambda: _question(browser) == schema.Q_PREFERENCE)
        assert [b.text for b in browser.find_elements("css selector", "#answers button")] == [
            "Left", "Equally", "Right"]
        _click(browser, "Right")
        _answered(browser, 1)
    finally:
        server.kill(signal.SIGTERM)
    [example] = server.responses()
    assert [a.decode() for a in example[schema.RESPONSE][schema.ANSWERS][schema.ANSWER]] == ["Grass", "Right"]
    assert np.isnan(example[schema.RESPONSE][schema.ANSWERS][schema.SECONDS]).all()  # 2-tuples, as the GUI
    assert float(example[schema.LABEL]) == 0.0  # chuckc's Grass weight 1.0: Right -> 1 - 1.0


@needs_browser
def test_a_sigkilled_server_resumes_where_it_stopped_and_two_annotators_stay_apart(queries_dir, tmp_path, browser):
    server = Server(queries_dir, tmp_path / "out", method="drope")
    try:
        browser.get(server.url)
        _answered(browser, 0)
        _click(browser, "Left")
        _answered(browser, 1)
        _click(browser, "Equally")
        _answered(browser, 2)
        server.kill()  # SIGKILL: no shutdown code runs
        server.start()  # the same command
        browser.get(server.url)
        _answered(browser, 2)  # resumes at the first unanswered query
        _click(browser, "Right")
        _answered(browser, 3)
        browser.get(server.url.rstrip("/") + "/?user=6")  # a second annotator starts at the beginning
        _answered(browser, 0)
        _click(browser, "Left")
        _answered(browser, 1)
    finally:
        server.kill(signal.SIGTERM)
    examples = server.responses()
    assert [(int(e[schema.ANNOTATOR][schema.USER_ID]), e[schema.QUERY_ID].decode(), e[schema.PREFERENCE].decode())
            for e in examples] == [(5, "0.mp4", "Left"), (5, "1.mp4", "Equally"), (5, "2.mp4", "Right"),
                                   (6, "0.mp4", "Left")]


def test_hostile_requests_get_a_4xx_and_store_nothing(queries_dir, tmp_path):
    server = Server(queries_dir, tmp_path / "out")
    try:
        status, session = _request("POST", server.base + "/api/session", {})
        assert status == 200
        sid, csrf = session["session"], {"x-dropj-csrf": session["csrf"]}
        status, query = _request("GET", server.base + f"/api/query?session={sid}")
        assert query["query_id"] == "0.mp4"
        good = {"session": sid, "query_id": "0.mp4",
                "answers": [[schema.Q_LEFT_SAFE, "No"], [schema.Q_RIGHT_SAFE, "No"]],
                "seconds": [1.0, 1.0], "total_time": 2.5, "repeat_count": 0}
        cases = [
            ("malformed JSON", dict(raw=b"{not json", headers=csrf), 400),
            ("oversized body", dict(raw=b'{"a": "' + b"x" * 20000 + b'"}', headers=csrf), 413),
            ("not JSON", dict(raw=b"a=b", headers={**csrf, "content-type": "application/x-www-form-urlencoded"}), 415),
            ("no CSRF token", dict(body=good), 403),
            ("cross-site", dict(body=good, headers={**csrf, "origin": "http://evil.example"}), 403),
            ("unknown session", dict(body={**good, "session": "nope"}, headers=csrf), 404),
            ("another query", dict(body={**good, "query_id": "5.mp4"}, headers=csrf), 409),
            ("out of order", dict(body={**good, "answers": [[schema.Q_RIGHT_SAFE, "No"], [schema.Q_LEFT_SAFE, "No"]]},
                                  headers=csrf), 422),
            ("impossible times", dict(body={**good, "seconds": [5.0, 5.0]}, headers=csrf), 422),
            ("unfinished", dict(body={**good, "answers": [[schema.Q_LEFT_SAFE, "Yes"]], "seconds": [1.0]},
                                headers=csrf), 422),
        ]
        for name, kwargs, expected in cases:
            status, reply = _request("POST", server.base + "/api/answer", **kwargs)
            assert status == expected, (name, reply)
            assert isinstance(reply, dict) and reply.get("error"), name
        assert _request("GET", server.base + "/api/video/0.mp4?session=nope")[0] == 404
        assert _request("GET", server.base + "/static/../annotate.py")[0] == 404
        assert _request("POST", server.base + "/api/answer", good, csrf) == (200, {"stored": 0})
        # The browser's retry after a lost reply: the same answer gets the stored index, and is not stored again;
        # other answers to the query just answered are refused (the first answer stands).
        assert _request("POST", server.base + "/api/answer", good, csrf) == (200, {"stored": 0})
        other = {**good, "answers": [[schema.Q_LEFT_SAFE, "Yes"], [schema.Q_RIGHT_SAFE, "No"]]}
        status, reply = _request("POST", server.base + "/api/answer", other, csrf)
        assert status == 422 and "the first answer stands" in reply["error"], reply
        # ... and a query it has not been shown stays refused
        assert _request("POST", server.base + "/api/answer", {**good, "query_id": "1.mp4"}, csrf)[0] == 409
    finally:
        server.kill(signal.SIGTERM)
    assert len(server.responses()) == 1


def test_another_host_needs_the_printed_token(queries_dir, tmp_path):
    server = Server(queries_dir, tmp_path / "out", host="0.0.0.0")
    try:
        assert "?token=" in server.url
        assert _request("GET", server.base + "/")[0] == 401
        assert _request("POST", server.base + "/api/session", {})[0] == 401
        with urllib.request.urlopen(server.url, timeout=30) as response:
            assert response.status == 200
            cookie = response.headers["set-cookie"].split(";")[0]
            assert "HttpOnly" in response.headers["set-cookie"]
        assert _request("POST", server.base + "/api/session", {}, {"cookie": cookie})[0] == 200
    finally:
        server.kill(signal.SIGTERM)
    assert not os.path.exists(annotations.annotation_dir(tmp_path / "out", "dropj")
                              / "dropj_annotations-train.tfrecord-00000")


# --- a study file (issue 24): consent, instructions, practice, the study in the participant's order, done --------

STUDY = factory.REPO / "docs" / "study.toml"  # the example the docs use, run as it ships (--data_dir overrides)


def study_copy(folder, **keys) -> str:
    """docs/study.toml with the given top-level keys' values replaced (TOML text, e.g. play_through="false")."""
    text = STUDY.read_text()
    for key, value in keys.items():
        text, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
        assert n == 1, key
    path = folder / "study.toml"
    path.write_text(text)
    return str(path)


def _shot(driver, tmp_path, name):
    """A screenshot of the page as it is; also into $DROPJ_SCREENSHOTS (docs/images) when set."""
    path = tmp_path / f"annotate_{name}.png"
    driver.save_screenshot(str(path))
    if os.environ.get("DROPJ_SCREENSHOTS"):
        driver.save_screenshot(os.path.join(os.environ["DROPJ_SCREENSHOTS"], f"annotate_{name}.png"))
    return path


def _stored(out, method):
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(str(annotations.annotation_dir(out, method)))
    return list(tfds.as_numpy(builder.as_dataset(split="train", shuffle_files=False)))


def _visible(driver, element_id):
    return _wait(driver, lambda: driver.find_element("id", element_id).is_displayed())


def _answer_buttons(driver):
    return driver.find_elements("css selector", "#answers button")


def _wait_played(driver):
    """The answers stay disabled until both clips played to the end (8 s in the fixture), then unlock."""
    assert _answer_buttons(driver) and all(not b.is_enabled() for b in _answer_buttons(driver))
    _wait(driver, lambda: all(b.is_enabled() for b in _answer_buttons(driver)), timeout=60)


def _position(driver):
    return driver.find_element("id", "position").text


@needs_browser
def test_a_participant_goes_through_consent_practice_and_a_study_with_a_back_step_and_a_skip(
        queries_dir, tmp_path, browser):
    from selenium.webdriver.common.keys import Keys

    from factory.web import App

    browser.set_window_size(1100, 1150)
    out = tmp_path / "out"
    app = App("annotate", "--study", str(STUDY), "--data_dir", str(queries_dir), "--out", str(out))
    try:
        assert app.url.endswith("/?user=31"), app.url  # the first listed participant's link
        browser.get(app.url)
        _visible(browser, "consent")
        assert "voluntary" in browser.find_element("id", "consent-text").text
        _shot(browser, tmp_path, "consent")
        _click(browser, "I agree, continue")
        _visible(browser, "instructions")
        definitions = browser.find_element("id", "definitions").text
        assert "stays on the road for the whole clip" in definitions and "asked only when both" in definitions
        _shot(browser, tmp_path, "instructions")
        _click(browser, "Start the practice")

        _visible(browser, "banner")  # practice: marked, and never stored with the study's answers
        assert _position(browser) == "Practice query 1 of 1"
        assert [b.text for b in _answer_buttons(browser)] == ["Yes", "No"]
        _wait_played(browser)
        _shot(browser, tmp_path, "practice")
        _click(browser, "Yes")
        _wait(browser, lambda: _question(browser) == schema.Q_RIGHT_SAFE)
        _click(browser, "No")
        _visible(browser, "review")
        _click(browser, "Submit")
        _visible(browser, "interlude")
        _click(browser, "Start the study")

        # query 1: a back step within the query, answers by key and by click
        _wait(browser, lambda: _position(browser) == "Query 1 of 3")
        assert not browser.find_element("id", "banner").is_displayed()
        assert [s.text for s in browser.find_elements("css selector", ".sides span")] == ["Left", "Right"]
        _wait_played(browser)
        _shot(browser, tmp_path, "query")
        _click(browser, "Yes")
        _wait(browser, lambda: _question(browser) == schema.Q_RIGHT_SAFE)
        _click(browser, "Back")
        _wait(browser, lambda: _question(browser) == schema.Q_LEFT_SAFE)
        browser.find_element("tag name", "body").send_keys("2")  # No, as its button shows
        _wait(browser, lambda: _question(browser) == schema.Q_RIGHT_SAFE)
        _click(browser, "Yes")
        _visible(browser, "review")
        _click(browser, "Back")  # from the review too, until Submit
        _wait(browser, lambda: _question(browser) == schema.Q_RIGHT_SAFE)
        _click(browser, "Yes")
        _visible(browser, "review")
        _click(browser, "Submit")
        _answered(browser, 1)

        # query 2: Skip asks first; "No, go back" keeps the query
        _wait(browser, lambda: _position(browser) == "Query 2 of 3")
        _click(browser, "Skip")
        _visible(browser, "confirm-skip")
        _click(browser, "No, go back")
        assert _position(browser) == "Query 2 of 3"
        _click(browser, "Skip")
        _click(browser, "Yes, skip it")
        _answered(browser, 2)

        # query 3: the preference by keys, submitted with Enter
        _wait(browser, lambda: _position(browser) == "Query 3 of 3")
        _wait_played(browser)
        body = browser.find_element("tag name", "body")
        body.send_keys("1")
        _wait(browser, lambda: _question(browser) == schema.Q_RIGHT_SAFE)
        body.send_keys("1")
        _wait(browser, lambda: _question(browser) == schema.Q_PREFER)
        assert [b.text for b in _answer_buttons(browser)] == ["Left", "Right", "Equally"]
        assert [b.get_attribute("data-key") for b in _answer_buttons(browser)] == ["1", "2", "3"]
        body.send_keys("3")
        _visible(browser, "review")
        body.send_keys(Keys.ENTER)
        _visible(browser, "done")
        assert browser.find_element("id", "code").text == "DROPJ-DEMO-7341"
        assert "Finished" in browser.find_element("id", "status").text
        _shot(browser, tmp_path, "done")

        # an id the study does not list, and one that is no id at all: told plainly, nothing else shown
        for user, said in (("abc", "'abc' is not a participant id"), ("40", "Participant 40 is not taking part")):
            browser.get(app.base + f"/?user={user}")
            _visible(browser, "refused")
            assert said in browser.find_element("id", "refused-text").text
            assert not browser.find_element("id", "query-view").is_displayed()
        _shot(browser, tmp_path, "unknown_user")
    finally:
        app.stop()

    record = json.loads((out / "dropj_participants" / "dropj" / "user31.json").read_text())
    assert sorted(record["order"]) == ["1.mp4", "2.mp4", "3.mp4"] and record["seed"] == 2024
    assert [(p["video"], [a for _, a, _ in p["responses"]]) for p in record["practice"]] == [("0.mp4", ["Yes", "No"])]
    examples = _stored(out, "dropj")
    assert [e[schema.QUERY_ID].decode() for e in examples] == record["order"]  # the participant's order
    assert "0.mp4" not in {e[schema.QUERY_ID].decode() for e in examples}  # practice is not a study answer
    answers = [[a.decode() for a in e[schema.RESPONSE][schema.ANSWERS][schema.ANSWER]] for e in examples]
    assert answers == [["No", "Yes"], [], ["Yes", "Yes", "Equally"]]
    assert [bool(e[schema.RESPONSE][schema.SKIPPED]) for e in examples] == [False, True, False]
    assert {int(e[schema.ANNOTATOR][schema.USER_ID]) for e in examples} == {31}
    for e in (examples[0], examples[2]):
        seconds = e[schema.RESPONSE][schema.ANSWERS][schema.SECONDS]
        total = e[schema.RESPONSE][schema.TOTAL_TIME]
        assert (seconds >= 0).all() and seconds.sum() <= total + 1e-6
        assert total >= 7.5  # nothing could be answered before the 8 s clips had played


def test_a_study_server_refuses_queries_before_consent_and_keeps_practice_out_of_the_store(queries_dir, tmp_path):
    from factory.web import App

    out = tmp_path / "out"
    study = study_copy(tmp_path, play_through="false")  # answers at once (the lock: the test below)
    app = App("annotate", "--study", study, "--data_dir", str(queries_dir), "--out", str(out))
    try:
        for user, status in (("abc", 403), ("9" * 5000, 403), ("40", 403), (-1, 400), (5.5, 400)):
            assert _request("POST", app.base + "/api/session", {"user": user})[0] == status, user
        assert _request("POST", app.base + "/api/session", {})[0] == 403  # no id in the link, no --user
        status, session = _request("POST", app.base + "/api/session", {"user": "32"})
        sid, csrf = session["session"], {"x-dropj-csrf": session["csrf"]}
        assert status == 200 and session["study"]["consented"] is False
        assert _request("GET", app.base + f"/api/query?session={sid}")[0] == 403  # consent first
        assert _request("POST", app.base + "/api/consent", {"session": sid})[0] == 403  # no CSRF token
        assert _request("POST", app.base + "/api/consent", {"session": "nope"}, csrf)[0] == 404
        assert _request("POST", app.base + "/api/consent", {"session": sid}, csrf) == (200, {"consented": True})
        _, practice = _request("GET", app.base + f"/api/query?session={sid}")
        assert (practice["practice"], practice["query_id"]) == (True, "0.mp4")
        good = {"session": sid, "query_id": "0.mp4",
                "answers": [[schema.Q_LEFT_SAFE, "No"], [schema.Q_RIGHT_SAFE, "No"]], "seconds": [1.0, 1.0],
                "total_time": 2.5, "repeat_count": 0}
        assert _request("POST", app.base + "/api/answer", {**good, "seconds": [5.0, 5.0]}, csrf)[0] == 422
        assert _request("POST", app.base + "/api/answer", good, csrf) == (200, {"practice": True})
        assert _request("POST", app.base + "/api/answer", good, csrf) == (200, {"practice": True})  # a retry
        _, first = _request("GET", app.base + f"/api/query?session={sid}")
        assert first["practice"] is False and first["query_id"] != "0.mp4" and first["position"] == 1
        assert _request("POST", app.base + "/api/answer", good, csrf) == (200, {"practice": True})  # still never stored
        stored = {**good, "query_id": first["query_id"]}
        assert _request("POST", app.base + "/api/answer", stored, csrf) == (200, {"stored": 0})
        assert _request("POST", app.base + "/api/answer", stored, csrf) == (200, {"stored": 0})  # retry: same index
        # a reload: consent and practice are remembered, the order goes on
        _, again = _request("POST", app.base + "/api/session", {"user": "32"})
        assert again["study"]["consented"] is True and again["study"]["practice_left"] == 0
        _, second = _request("GET", app.base + f"/api/query?session={again['session']}")
        assert second["position"] == 2 and second["query_id"] not in ("0.mp4", first["query_id"])
    finally:
        app.stop()
    assert [e[schema.QUERY_ID].decode() for e in _stored(out, "dropj")] == [first["query_id"]]
    record = json.loads((out / "dropj_participants" / "dropj" / "user32.json").read_text())
    assert record["order"][:2] == [first["query_id"], second["query_id"]] and len(record["practice"]) == 1


def _get_bytes(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def test_the_server_holds_the_play_through_lock_too_and_stores_no_early_answer(queries_dir, tmp_path):
    """A scripted client, which no page locks, answering sooner than the clips can have played: refused with a
    message, nothing stored (practice or study); a skip is never held; an answer after the clips' length is."""
    from dropj.converters.feedback import query_video
    from dropj.loaders import video
    from factory.web import App

    out = tmp_path / "out"
    app = App("annotate", "--study", str(STUDY), "--data_dir", str(queries_dir), "--out", str(out))
    try:
        _, session = _request("POST", app.base + "/api/session", {"user": "33"})
        sid, csrf = session["session"], {"x-dropj-csrf": session["csrf"]}
        assert session["study"]["play_through"] is True  # the shipped study's default
        assert _request("POST", app.base + "/api/consent", {"session": sid}, csrf)[0] == 200

        def serve():
            _, query = _request("GET", app.base + f"/api/query?session={sid}")
            return query, time.monotonic()

        def answer(query, skip=False):
            body = {"session": sid, "query_id": query["query_id"], "total_time": 0.1, "repeat_count": 0}
            body.update({"skip": True} if skip else {
                "answers": [[schema.Q_LEFT_SAFE, "No"], [schema.Q_RIGHT_SAFE, "No"]], "seconds": [0.05, 0.05]})
            return _request("POST", app.base + "/api/answer", body, csrf)

        def wait_until(moment):
            time.sleep(max(0.0, moment - time.monotonic()))

        practice, shown = serve()
        seconds = video.info(_get_bytes(app.base + practice["video"]))["duration"]
        assert seconds == query_video.FRAMES / query_video.FPS  # 8 s, the release's clips
        status, reply = answer(practice)
        assert status == 409 and reply["error"].startswith("Too early: the clips play for 8.0 s and were shown 0."), \
            reply
        assert "nothing was saved" in reply["error"]
        record = out / "dropj_participants" / "dropj" / "user33.json"
        assert json.loads(record.read_text())["practice"] == []
        wait_until(shown + seconds)
        assert answer(practice) == (200, {"practice": True})

        first, _ = serve()
        assert first["practice"] is False
        assert answer(first)[0] == 409
        assert answer(first, skip=True) == (200, {"stored": 0})  # a skip is not an answer: never held
        second, shown = serve()
        wait_until(shown + seconds - 2.0)  # 2 s short: still refused (the tolerance is 0.5 s)
        status, reply = answer(second)
        assert status == 409 and "were shown 6." in reply["error"], reply
        wait_until(shown + seconds)
        assert answer(second) == (200, {"stored": 1})
    finally:
        app.stop()
    examples = _stored(out, "dropj")
    assert [(e[schema.QUERY_ID].decode(), bool(e[schema.RESPONSE][schema.SKIPPED])) for e in examples] == [
        (first["query_id"], True), (second["query_id"], False)]
    assert len(json.loads(record.read_text())["practice"]) == 1


@needs_browser
def test_the_page_shows_the_servers_refusal_of_an_answer_before_the_clips_played(queries_dir, tmp_path, browser):
    """A page whose lock was opened early (as a tampered one could be): the server refuses, the page says why and
    keeps the answers for Submit again."""
    from factory.web import App

    out = tmp_path / "out"
    app = App("annotate", "--study", str(STUDY), "--data_dir", str(queries_dir), "--out", str(out))
    try:
        browser.get(app.base + "/?user=32")
        _click(browser, "I agree, continue")
        _click(browser, "Start the practice")
        _wait(browser, lambda: _position(browser) == "Practice query 1 of 1")
        browser.execute_script("onPlayed()")  # unlocked at once, the clip just started
        _click(browser, "Yes")
        _wait(browser, lambda: _question(browser) == schema.Q_RIGHT_SAFE)
        _click(browser, "No")
        _visible(browser, "review")
        _click(browser, "Submit")
        status = _wait(browser, lambda: "Too early" in browser.find_element("id", "status").text
                       and browser.find_element("id", "status"))
        assert status.text.startswith("Too early: the clips play for 8.0 s and were shown "), status.text
        assert status.text.endswith("(nothing was saved). Your answers are still here: Submit again."), status.text
        assert "error" in status.get_attribute("class") and browser.find_element("id", "review").is_displayed()
        _shot(browser, tmp_path, "too_early")
    finally:
        app.stop()
    record = json.loads((out / "dropj_participants" / "dropj" / "user32.json").read_text())
    assert record["practice"] == [] and "practice_done_at" not in record
