"""The experimenter's dashboard of `dropj annotate` (`/admin`) in a real server and headless Chromium.

Two scripted participants answer shared queries through the real page; the dashboard, polling, shows their
counts and the kappas, which equal `dropj.loaders.agreement` on the stored data and the values computed by hand.
`/admin` needs its own token, which the participants' token never replaces.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import urllib.error
import urllib.request

import pytest

from dropj.converters.feedback import annotations
from dropj.converters.feedback.study import Study
from dropj.loaders import EpisodeSource, agreement
from dropj_datasets import schema

from factory.web import Server, wait_for
from tests.app.web.test_annotate_web import (_answered, _click, _position, _question, _visible, _wait,  # noqa: F401
                                             queries_dir, study_copy)

pytestmark = pytest.mark.slow


def _admin_url(server: Server) -> str:
    line = server.proc.stdout.readline()  # printed right after the participants' address
    assert line.startswith("admin: "), line
    return line.split()[1].replace("0.0.0.0", "127.0.0.1")


def _get(url, cookie=None):
    request = urllib.request.Request(url, headers={"cookie": cookie} if cookie else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers


def _answer(driver, *answers):
    for answer in answers:
        before = _question(driver)
        _click(driver, answer)
        if answer in (schema.A_YES, schema.A_NO) and before == schema.Q_LEFT_SAFE:
            _wait(driver, lambda: _question(driver) == schema.Q_RIGHT_SAFE)
        elif before == schema.Q_RIGHT_SAFE and answers[-1] != answer:
            _wait(driver, lambda: _question(driver) == schema.Q_PREFER)


def _kappas(driver) -> dict:
    rows = driver.find_elements("css selector", "#questions tbody tr")
    return {row.find_elements("css selector", "td")[0].text: row.find_elements("css selector", "td")[5].text
            for row in rows}


def test_two_participants_then_the_dashboard_shows_their_counts_and_kappas(queries_dir, tmp_path, browser):  # noqa: F811
    out = tmp_path / "out"
    server = Server(queries_dir, out, user=31)
    admin = _admin_url(server)
    base = server.base
    try:
        # the dashboard is the experimenter's: no token, a wrong one, or a participant's page cookie: refused
        assert _get(f"{base}/admin")[0] == 401
        assert _get(f"{base}/api/admin/figures")[0] == 401
        assert _get(f"{base}/admin?token=wrong")[0] == 401
        # participant A (31): safe/safe/Left with a Repeat, unsafe/unsafe, safe/safe/Right, then a skip
        browser.get(f"{base}/?user=31")
        _answered(browser, 0)
        _click(browser, "Repeat Video")
        _answer(browser, "Yes", "Yes", "Left")
        _answered(browser, 1)
        _answer(browser, "No", "No")
        _answered(browser, 2)
        _answer(browser, "Yes", "Yes", "Right")
        _answered(browser, 3)
        _click(browser, "Skip")
        _click(browser, "Yes, skip it")
        _answered(browser, 4)
        # the dashboard, open while the study runs
        browser.switch_to.new_window("tab")
        dashboard = browser.current_window_handle
        browser.get(admin)
        _wait(browser, lambda: browser.find_elements("css selector", "#participants tbody tr[data-user='31']"))
        assert "undefined" in _kappas(browser)[schema.Q_LEFT_SAFE]  # one participant: nothing shared yet
        # participant B (32), in another tab: safe/safe/Left, unsafe/unsafe, safe/unsafe
        browser.switch_to.new_window("tab")
        browser.get(f"{base}/?user=32")
        _answered(browser, 0)
        _answer(browser, "Yes", "Yes", "Left")
        _answered(browser, 1)
        _answer(browser, "No", "No")
        _answered(browser, 2)
        _answer(browser, "Yes", "No")
        _answered(browser, 3)
        browser.switch_to.window(dashboard)  # it polls: no reload
        wait_for(lambda: browser.find_elements("css selector", "#participants tbody tr[data-user='32']")
                 and "3 of" in browser.find_element("css selector", "tr[data-user='32']").text, 30,
                 "the dashboard never showed participant 32")
        kappas = _kappas(browser)
        # by hand (Cohen): left safe A = B = (Yes, No, Yes): kappa 1. Right safe A (Y, N, Y), B (Y, N, N):
        # p_o = 2/3, p_e = 2/3 * 1/3 + 1/3 * 2/3 = 4/9, kappa = (2/9) / (5/9) = 0.4. The preference was shared on
        # one query, both Left: chance agreement 1, kappa undefined.
        assert kappas[schema.Q_LEFT_SAFE] == "1.000"
        assert kappas[schema.Q_RIGHT_SAFE] == "0.400"
        assert kappas[schema.Q_PREFER].startswith("undefined: every answer is in one category")
        a = browser.find_element("css selector", "tr[data-user='31']").find_elements("css selector", "td")
        assert [a[2].text, a[3].text, a[4].text] == ["3", "1", "1"]  # answered, skipped, repeats
        assert a[1].text.startswith("4 of ")
        browser.set_window_size(1280, 1300)
        shot = tmp_path / "annotate_dashboard.png"
        browser.save_screenshot(str(shot))
        if os.environ.get("DROPJ_SCREENSHOTS"):
            browser.save_screenshot(os.path.join(os.environ["DROPJ_SCREENSHOTS"], "annotate_dashboard.png"))
        status, body, headers = _get(admin.replace("/admin?", "/api/admin/figures?"))
        assert status == 200 and len(body) < 64_000  # bounded (agreement.MAX_PARTICIPANTS)
        served = json.loads(body)
    finally:
        server.kill(signal.SIGTERM)
    # the page's figures are the library's on the stored data
    questions = [(q.text, q.options) for q in Study(schema.ANNOTATIONS["dropj"]).questions]
    with EpisodeSource(annotations.annotation_dir(out, "dropj")) as source:
        stored = agreement.of(source, questions=questions)
    assert [q["kappa"] for q in served["questions"]] == [q["kappa"] for q in stored["questions"]] == [1.0, 0.4, None]
    assert [(p["user"], p["responses"], p["skipped"], p["repeats"]) for p in stored["participants"]] == \
        [(31, 4, 1, 1), (32, 3, 0, 0)] == [(p["user"], p["responses"], p["skipped"], p["repeats"])
                                          for p in served["participants"]]


def test_the_admin_token_is_its_own_and_the_participants_token_never_opens_it(queries_dir, tmp_path):  # noqa: F811
    server = Server(queries_dir, tmp_path / "out", host="0.0.0.0")
    try:
        admin = _admin_url(server)
        participant_token = server.url.split("token=")[1]
        admin_token = admin.split("token=")[1]
        assert admin_token != participant_token
        base = server.base
        assert _get(f"{base}/admin?token={participant_token}")[0] == 401
        assert _get(f"{base}/api/admin/figures?token={participant_token}")[0] == 401
        cookie = f"dropj_token_{server.port}={participant_token}"
        assert _get(f"{base}/api/admin/figures", cookie=cookie)[0] == 401
        assert _get(f"{base}/?token={participant_token}")[0] == 200  # the participants' page still opens
        status, page, headers = _get(admin)
        assert status == 200 and b"dashboard" in page
        [set_cookie] = headers.get_all("set-cookie")
        assert set_cookie.startswith(f"dropj_admin_{server.port}={admin_token};")
        assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
        status, body, _ = _get(f"{base}/api/admin/figures", cookie=f"dropj_admin_{server.port}={admin_token}")
        assert status == 200 and json.loads(body)["responses"] == 0
        assert _get(f"{base}/static/admin.js", cookie=f"dropj_admin_{server.port}={admin_token}")[0] == 200
    finally:
        server.kill(signal.SIGTERM)


def _cells(driver, user):
    return driver.find_elements("css selector", f"#participants tr[data-user='{user}'] td")


def _instant(cell) -> float:
    """The epoch seconds a time cell's <time datetime> holds (what the page shows is the local time of it)."""
    stamp = cell.find_element("tag name", "time").get_attribute("datetime")
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _given(driver) -> dict:
    """{question: {answer: n}} of the agreement table's label distribution."""
    given = {}
    for row in driver.find_elements("css selector", "#questions tbody tr"):
        question, counts = row.find_elements("css selector", "td")[:2]
        given[question.text] = {item.text.split(": ")[0]: int(item.text.split(": ")[1])
                                for item in counts.find_elements("css selector", "li")}
    return given


def test_a_study_dashboard_shows_progress_consent_and_finish_and_never_counts_practice(queries_dir, tmp_path,  # noqa: F811
                                                                                      browser):
    """The shipped study (answers unlocked at once here): a participant consents, practises, answers two queries;
    another only consents. The dashboard shows "2 of 3" and "0 of 3", both consent times and no finish, and
    counts no practice answer; after the first one's last query (a skip), "3 of 3" and their finish time."""
    from factory.web import App

    out = tmp_path / "out"
    study = study_copy(tmp_path, play_through="false", review="false")
    app = App("annotate", "--study", study, "--data_dir", str(queries_dir), "--out", str(out))
    admin = wait_for(lambda: next((line.split()[1] for line in app.lines if line.startswith("admin: ")), None), 30)
    records = out / "dropj_participants" / "dropj"
    try:
        browser.get(app.base + "/?user=31")
        _click(browser, "I agree, continue")
        _click(browser, "Start the practice")
        _wait(browser, lambda: _position(browser) == "Practice query 1 of 1")
        _answer(browser, "Yes", "No")  # practice: the record keeps it, the figures never count it
        _visible(browser, "interlude")
        _click(browser, "Start the study")
        _wait(browser, lambda: _position(browser) == "Query 1 of 3")
        _answer(browser, "Yes", "Yes", "Left")
        _answered(browser, 1)
        _answer(browser, "No", "No")
        _answered(browser, 2)
        participant = browser.current_window_handle
        browser.switch_to.new_window("tab")
        browser.get(app.base + "/?user=32")
        _click(browser, "I agree, continue")
        _visible(browser, "instructions")

        browser.switch_to.new_window("tab")
        dashboard = browser.current_window_handle
        browser.get(admin)
        wait_for(lambda: len(_cells(browser, 31)) > 8 and len(_cells(browser, 32)) > 8, 30, "no participant rows")
        first, second = (json.loads((records / f"user{user}.json").read_text()) for user in (31, 32))
        assert len(first["practice"]) == 1 and "practice_done_at" in first  # what the figures must leave out
        a, b = _cells(browser, 31), _cells(browser, 32)
        assert [a[1].text, a[2].text, a[3].text, b[1].text, b[2].text] == ["2 of 3", "2", "0", "0 of 3", "0"]
        assert abs(_instant(a[7]) - first["consented_at"]) < 0.002 and a[8].text == "-"
        assert abs(_instant(b[7]) - second["consented_at"]) < 0.002 and b[8].text == "-"
        assert browser.find_element("id", "summary").text.startswith(
            "2 responses from 2 participants (1 started, 0 finished)")
        # the study's two answers only; with the practice's (Yes, No), left Yes and right No would be 2
        assert _given(browser) == {schema.Q_LEFT_SAFE: {"Yes": 1, "No": 1}, schema.Q_RIGHT_SAFE: {"Yes": 1, "No": 1},
                                   schema.Q_PREFER: {"Left": 1, "Right": 0, "Equally": 0}}

        browser.switch_to.window(participant)
        _click(browser, "Skip")
        _click(browser, "Yes, skip it")
        _visible(browser, "done")
        browser.switch_to.window(dashboard)  # it polls: no reload
        wait_for(lambda: _cells(browser, 31)[1].text == "3 of 3", 30, lambda: _cells(browser, 31)[1].text)
        first = json.loads((records / "user31.json").read_text())
        a = _cells(browser, 31)
        assert [a[2].text, a[3].text] == ["2", "1"] and abs(_instant(a[8]) - first["completed_at"]) < 0.002
        assert browser.find_element("id", "summary").text.startswith(
            "3 responses from 2 participants (1 started, 1 finished)")
        browser.set_window_size(1280, 1000)
        browser.save_screenshot(str(tmp_path / "annotate_dashboard_study.png"))
    finally:
        app.stop()
    with EpisodeSource(annotations.annotation_dir(out, "dropj")) as source:
        stored = agreement.of(source)
    assert stored["responses"] == 3 and [(p["user"], p["answered"], p["skipped"]) for p in stored["participants"]] \
        == [(31, 2, 1)]
