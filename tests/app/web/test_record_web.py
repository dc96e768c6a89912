"""`dropj record --web` in a real server and a real headless Chromium: the keys held in the page are the
actions recorded, step by step; the protocol refuses what it does not expect."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from dropj.converters.recording import capture as record, session
from dropj_datasets import schema
from factory.web import CHROMIUM, DRIVER, RecordServer, new_chromium, received_until_closed, wait_for

needs_browser = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                   reason="needs Debian's chromium and chromium-driver (`make sysdeps` installs them)")
pytestmark = pytest.mark.slow


def _expected_action(held: np.ndarray, previous_steer: float) -> np.ndarray:
    """The study's keyboard: gas 1 with Up, brake 0.8 with Down, steer -1 / +1 with Left / Right (one at a time
    here), 0 with neither."""
    left, right, up, down = held
    steer = -1.0 if left and not right else (1.0 if right and not left else (0.0 if not (left or right)
                                                                               else previous_steer))
    return np.array([steer, 1.0 if up else 0.0, 0.8 if down else 0.0])


@needs_browser
def test_the_keys_held_in_chromium_are_the_actions_recorded_step_by_step(tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    server = RecordServer(tmp_path, "--max_steps", "300", "--episodes", "1", "--seed", "5")
    driver = new_chromium()
    try:
        driver.get(server.base + "/?user=web-1")
        state = lambda: driver.execute_script("return window.dropjRecord") or {}  # noqa: E731  (before the script: {})
        # (the episode waits for the first key: the track is shown, no frames stream before it)
        wait_for(lambda: state().get("session") and state().get("phase") == "ready", 30, lambda: state())
        view = driver.find_element("id", "view")
        ActionChains(driver).key_down(Keys.ARROW_UP, view).perform()
        time.sleep(0.6)
        ActionChains(driver).key_down(Keys.ARROW_LEFT, view).perform()
        time.sleep(0.4)
        ActionChains(driver).key_up(Keys.ARROW_LEFT, view).perform()
        time.sleep(0.3)
        ActionChains(driver).key_up(Keys.ARROW_UP, view).key_down(Keys.ARROW_DOWN, view).perform()
        time.sleep(0.2)
        ActionChains(driver).key_up(Keys.ARROW_DOWN, view).perform()
        final = wait_for(lambda: state().get("done") and state(), 60, lambda: state())
        assert final["framesShown"] > 50 and (final["last"] or {}).get("step") == 300, final
        assert driver.find_element("id", "status").text == "done: 1 episode saved"
    finally:
        driver.quit()
        log = server.stop()
    [episode] = server.episodes()
    steps = episode[schema.STEPS]
    held = np.array([step[schema.KEYS_HELD] for step in steps])[:-1]
    actions = np.array([step[schema.ACTION] for step in steps])[:-1]
    steer = 0.0
    for t, (keys, action) in enumerate(zip(held, actions)):
        expected = _expected_action(keys, steer)
        assert np.array_equal(action, expected), (t, keys, action)
        steer = expected[0]
    left, right, up, down = held.T
    assert up.sum() > 20 and left.sum() > 8 and down.sum() > 3 and not right.any()
    first, last = (lambda keys: np.flatnonzero(keys)[0]), (lambda keys: np.flatnonzero(keys)[-1])  # noqa: E731
    # the order the page pressed them in: Up, then Left within it, then Down after Up
    assert first(up) < first(left) <= last(left) < last(up) < first(down)
    assert up[first(up):last(up) + 1].all() and left[first(left):last(left) + 1].all()
    assert episode[schema.EPISODE_METADATA][schema.USER_ID_TEXT] == b"web-1"
    assert "web-1: episode 0 saved (300 steps" in log


def test_messages_and_handshakes_it_does_not_expect_are_refused(tmp_path):
    import websocket

    server = RecordServer(tmp_path, "--max_steps", "1000")
    url = f"ws://127.0.0.1:{server.port}/ws"
    try:
        with pytest.raises(websocket.WebSocketBadStatusException):  # another site's page
            websocket.create_connection(url, origin="http://evil.example", timeout=10)
        for bad in ("not json", json.dumps({"key": "KeyW", "down": True}), json.dumps({"key": "ArrowUp"}),
                    json.dumps({"key": "ArrowUp", "down": 1}), json.dumps({"restart": 1}), json.dumps({"quit": 1.0}),
                    "x" * 300, "[]"):
            ws = websocket.create_connection(url + "?user=tester", timeout=10)
            hello = json.loads(ws.recv())
            assert hello["user"] == "tester" and hello["env"] == "carracing"
            ws.send(bad)
            messages = received_until_closed(ws)
            errors = [json.loads(m)["error"] for m in messages if isinstance(m, str) and "error" in m]
            assert errors and ("expected" in errors[0] or "JSON" in errors[0] or "bytes" in errors[0]), (bad, errors)
        ws = websocket.create_connection(url + "?user=" + "u" * 65, timeout=10)
        assert "1 to 64 printable characters" in ws.recv()
    finally:
        log = server.stop()
    assert "Traceback" not in log
    assert not (record.recording_dir(tmp_path, "carracing") / "dropj_recording-train.tfrecord-00000").exists()


def _drive_until_saved(url: str, user: str, saved: int, timeout: float = 60.0) -> dict:
    """A participant without a browser: holds Up and reads frames until `saved` episodes are saved."""
    import websocket

    ws = websocket.create_connection(f"{url}?user={user}", timeout=30)
    try:
        hello = json.loads(ws.recv())
        assert "error" not in hello, hello
        ws.send(json.dumps({"key": "ArrowUp", "down": True}))
        deadline, frames, status = time.monotonic() + timeout, 0, {}
        while status.get("saved", 0) < saved:
            assert time.monotonic() < deadline, status
            message = ws.recv()
            if isinstance(message, bytes):
                assert message[:2] == b"\xff\xd8"  # a JPEG
                frames += 1
            else:
                status = json.loads(message)
        return {"hello": hello, "frames": frames, "status": status}
    finally:
        ws.close()


def test_two_participants_at_once_each_record_their_own_episodes(tmp_path):
    import threading

    server = RecordServer(tmp_path, "--max_steps", "40", "--seed", "11")
    url = f"ws://127.0.0.1:{server.port}/ws"
    results, failures = {}, []

    def participant(user: str) -> None:
        try:
            results[user] = _drive_until_saved(url, user, 2)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=participant, args=(user,)) for user in ("p-a", "p-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    server.stop()
    assert not failures
    assert results["p-a"]["hello"]["session"] != results["p-b"]["hello"]["session"]
    assert all(r["frames"] >= 60 for r in results.values())
    episodes = server.episodes()
    metadata = [e[schema.EPISODE_METADATA] for e in episodes]
    users = sorted(m[schema.USER_ID_TEXT].decode() for m in metadata)
    assert users[:2] == ["p-a", "p-a"] and users[-2:] == ["p-b", "p-b"]  # and any open episode was dropped
    assert [int(m[schema.EPISODE_INDEX]) for m in metadata] == list(range(len(episodes)))
    seeds = [int(m[schema.SEED]) for m in metadata]
    assert len(set(seeds)) == len(seeds) and min(seeds) >= 11  # one counter: no two episodes share a track
    for episode in episodes:
        steps = list(episode[schema.STEPS])
        assert len(steps) == 41 and all(step[schema.KEYS_HELD][2] for step in steps[:-1])  # Up, all along


def test_a_killed_server_keeps_every_saved_episode_and_the_next_one_appends(tmp_path):
    import signal

    server = RecordServer(tmp_path, "--max_steps", "30")
    _drive_until_saved(f"ws://127.0.0.1:{server.port}/ws", "p-k", 1)
    server.proc.send_signal(signal.SIGKILL)  # with the next episode open, or just begun
    server.proc.wait(timeout=30)
    assert len(server.episodes()) == 1
    again = RecordServer(tmp_path, "--max_steps", "30")  # the lock died with the process
    _drive_until_saved(f"ws://127.0.0.1:{again.port}/ws", "p-k2", 1)
    again.stop()
    users = [e[schema.EPISODE_METADATA][schema.USER_ID_TEXT] for e in again.episodes()]
    assert users[:2] == [b"p-k", b"p-k2"]


def test_off_loopback_the_page_and_the_socket_need_the_printed_token(tmp_path):
    import urllib.error
    import urllib.request

    import websocket

    server = RecordServer(tmp_path, "--host", "0.0.0.0", "--max_steps", "1000")
    try:
        token = server.token
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(server.base + "/", timeout=10)
        assert refused.value.code == 401
        with urllib.request.urlopen(f"{server.base}/?token={token}", timeout=10) as page:
            assert page.status == 200 and f"dropj_token_{server.port}=" in page.headers.get("set-cookie", "")
            assert "samesite=strict" in page.headers["set-cookie"].lower()
        with pytest.raises(websocket.WebSocketBadStatusException):
            websocket.create_connection(f"ws://127.0.0.1:{server.port}/ws", timeout=10)
        with pytest.raises(websocket.WebSocketBadStatusException):
            websocket.create_connection(f"ws://127.0.0.1:{server.port}/ws?token=wrong", timeout=10)
        ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/ws",
                                         cookie=f"dropj_token_{server.port}={token}", timeout=10)
        assert json.loads(ws.recv())["env"] == "carracing"
        ws.close()
    finally:
        server.stop()


def test_a_dream_is_driven_in_the_browser_as_in_the_window(tmp_path, world_model):
    """`--env dream`: the session drives inside the world model and records the dream config."""
    server = RecordServer(tmp_path, "--env", "dream", "--vae", str(world_model / "vae.pt"), "--mdnrnn",
                          str(world_model / "rnn.pt"), "--max_steps", "25", "--seed", "3", config="carracing_dream")
    try:
        result = _drive_until_saved(f"ws://127.0.0.1:{server.port}/ws", "dreamer", 1)
    finally:
        log = server.stop()
    assert result["hello"]["env"] == "carracing_dream" and result["frames"] >= 20
    [episode] = server.episodes()[:1]
    steps = list(episode[schema.STEPS])
    assert len(steps) == 26 and episode[schema.EPISODE_METADATA][schema.USER_ID_TEXT] == b"dreamer"
    assert steps[0][schema.OBSERVATION].shape == schema.WRITTEN[schema.RECORDING_DATASET]["carracing_dream"] \
        .step_field(schema.OBSERVATION).shape  # latent states, not frames
    for step in steps[1:-1]:  # Up held from the first frame on (the first action may precede the key)
        assert np.array_equal(step[schema.ACTION], [0.0, 1.0, 0.0]) and tuple(step[schema.KEYS_HELD]) == \
            (False, False, True, False)
    assert "dreamer: episode 0 saved (25 steps" in log and "Traceback" not in log


def test_a_full_server_says_so_and_takes_the_next_participant_once_one_leaves(tmp_path):
    import websocket

    server = RecordServer(tmp_path, "--max_steps", "1000", "--max_sessions", "1")
    url = f"ws://127.0.0.1:{server.port}/ws"
    try:
        first = websocket.create_connection(url + "?user=first", timeout=30)
        assert json.loads(first.recv())["user"] == "first"
        second = websocket.create_connection(url + "?user=second", timeout=30)
        # a full server queues (it used to refuse: {"error": "the server is full ..."})
        queued = json.loads(second.recv())
        assert "the server is full (1 participant driving" in queued["text"] and queued["queue"] == 1
        third = websocket.create_connection(url + "?user=third", timeout=30)
        assert json.loads(third.recv())["queue"] == 2
        first.close()
        assert json.loads(second.recv())["user"] == "second"  # the first in the queue gets the place
        assert json.loads(third.recv())["queue"] == 1  # and the next moves up
        third.close()  # a page that leaves the queue frees its place in it
        second.close()
        fourth = wait_for(lambda: _hello(url + "?user=fourth"), 30, "the place never came free")
        assert fourth["user"] == "fourth"
    finally:
        log = server.stop()
    assert "1 at once" in "".join(server.lines) and "Traceback" not in log


def _hello(url: str):
    import websocket

    ws = websocket.create_connection(url, timeout=30)
    try:
        hello = json.loads(ws.recv())
    finally:
        ws.close()
    return None if "error" in hello or "queue" in hello else hello  # refused, or queued: no place yet


def test_a_killed_session_process_ends_only_that_session(tmp_path):
    import signal

    import psutil
    import websocket

    server = RecordServer(tmp_path, "--max_steps", "30", "--seed", "1")
    url = f"ws://127.0.0.1:{server.port}/ws"
    try:
        doomed = websocket.create_connection(url + "?user=doomed", timeout=30)
        json.loads(doomed.recv())
        doomed.recv()  # its first frame: the session is driving
        children = psutil.Process(server.proc.pid).children()
        driving = [c for c in children if session.COMMAND in c.cmdline()]
        assert len(driving) == 2  # the doomed session's and the one made ahead for the next participant
        # the older one drives (the other was started when the doomed one began)
        victim = min(driving, key=lambda c: c.create_time())
        victim.send_signal(signal.SIGKILL)
        messages = []
        while not (messages and isinstance(messages[-1], str) and '"done"' in messages[-1]):
            messages.append(doomed.recv())
        done = json.loads(messages[-1])
        assert done["saved"] == 0 and "ended unexpectedly (exit code -9)" in done["error"]
        survivor = _drive_until_saved(url, "survivor", 1)
        assert survivor["status"]["saved"] == 1
    finally:
        log = server.stop()
    assert [e[schema.EPISODE_METADATA][schema.USER_ID_TEXT] for e in server.episodes()] == [b"survivor"]
    assert "Traceback" not in log


@needs_browser
def test_enter_in_chromium_drops_the_open_episode_and_esc_ends_the_session(tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    server = RecordServer(tmp_path, "--max_steps", "1000", "--seed", "9")
    driver = new_chromium()
    try:
        driver.get(server.base + "/?user=keys")
        state = lambda: driver.execute_script("return window.dropjRecord") or {}  # noqa: E731
        wait_for(lambda: state().get("phase") == "ready", 30, lambda: state())
        view = driver.find_element("id", "view")
        ActionChains(driver).key_down(Keys.ARROW_UP, view).perform()  # the episode starts with the first key
        wait_for(lambda: (state().get("last") or {}).get("step", 0) > 40, 30, lambda: state())
        ActionChains(driver).send_keys_to_element(view, Keys.ENTER).perform()
        # a new episode: the step count starts again
        wait_for(lambda: 0 < (state().get("last") or {}).get("step", 0) < 20, 30, lambda: state())
        ActionChains(driver).send_keys_to_element(view, Keys.ESCAPE).perform()
        final = wait_for(lambda: state().get("done") and state(), 30, lambda: state())
        assert final["last"]["saved"] == 0
        assert driver.find_element("id", "status").text == "done: 0 episodes saved"
    finally:
        driver.quit()
        log = server.stop()
    assert "keys left (0 episodes saved, 2 dropped)" in log
    assert not (record.recording_dir(tmp_path, "carracing") / "dropj_recording-train.tfrecord-00000").exists()


@needs_browser
def test_a_page_whose_server_was_killed_reconnects_to_the_next_one_as_a_new_session(tmp_path):
    import signal

    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    first = RecordServer(tmp_path, "--max_steps", "1000")
    driver = new_chromium()
    again = None
    try:
        driver.get(first.base + "/?user=back")
        state = lambda: driver.execute_script("return window.dropjRecord") or {}  # noqa: E731
        wait_for(lambda: state().get("phase") == "ready", 30, lambda: state())
        ActionChains(driver).key_down(Keys.ARROW_UP, driver.find_element("id", "view")).perform()
        wait_for(lambda: state().get("framesShown", 0) > 10, 30, lambda: state())
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=30)
        wait_for(lambda: "trying again" in driver.find_element("id", "status").text, 30,
                 lambda: driver.find_element("id", "status").text)
        _shot(driver, "lost")
        again = RecordServer(tmp_path, "--max_steps", "1000", port=first.port)  # the lock died with the first
        wait_for(lambda: state().get("sessions") == 2 and state().get("phase") == "ready", 60, lambda: state())
        view = driver.find_element("id", "view")  # a new session starts with no key held: Up again
        ActionChains(driver).key_up(Keys.ARROW_UP, view).key_down(Keys.ARROW_UP, view).perform()
        shown = state()["framesShown"]
        wait_for(lambda: state()["framesShown"] > shown + 10, 30, lambda: state())
        assert state()["session"]["user"] == "back"
        assert driver.find_element("id", "status").text == "recording carracing as back"
    finally:
        driver.quit()
        log = again.stop() if again else ""
    assert "back connected" in log


def _shot(driver, name: str) -> None:
    """The page as it is, into $DROPJ_SCREENSHOTS (docs/images) when set, as record_web_NAME.png."""
    if os.environ.get("DROPJ_SCREENSHOTS"):
        driver.save_screenshot(os.path.join(os.environ["DROPJ_SCREENSHOTS"], f"record_web_{name}.png"))


def _overlay(driver) -> tuple[str, str]:
    """What the page says large over the view: (its state, its text), or ("driving", "") when it shows none."""
    element = driver.find_element("id", "overlay")
    return element.get_attribute("data-state"), element.text if element.is_displayed() else ""


@needs_browser
def test_a_driver_who_waits_3_s_before_the_first_key_has_no_idle_step_recorded(tmp_path):
    """The episode clock started when the page connected: 162 steps passed before the first key in one run."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    server = RecordServer(tmp_path, "--max_steps", "100", "--episodes", "1", "--seed", "21")
    driver = new_chromium()
    try:
        driver.get(server.base + "/?user=waiter")
        state = lambda: driver.execute_script("return window.dropjRecord") or {}  # noqa: E731
        wait_for(lambda: state().get("phase") == "ready", 30, lambda: state())
        time.sleep(3.0)  # the driver reads the page before pressing anything
        phase, said = _overlay(driver)
        assert phase == "ready" and "Press an arrow key to start" in said, said
        _shot(driver, "ready")
        assert state()["framesShown"] == 1 and state()["last"]["step"] == 0  # the track, and not one step
        pressed = time.time()
        ActionChains(driver).key_down(Keys.ARROW_UP, driver.find_element("id", "view")).perform()
        wait_for(lambda: _overlay(driver)[0] == "driving", 10, lambda: _overlay(driver))
        wait_for(lambda: state()["last"]["step"] >= 60, 30, lambda: state())
        _shot(driver, "driving")
        final = wait_for(lambda: state().get("done") and state(), 60, lambda: state())
        ActionChains(driver).key_up(Keys.ARROW_UP).perform()
        assert final["last"]["step"] == 100 and final["framesShown"] > 20
        assert _overlay(driver) == ("done", "Done: 1 episode saved\nThank you. You can close this tab now."), \
            _overlay(driver)
        _shot(driver, "done")
    finally:
        driver.quit()
        log = server.stop()
    [episode] = server.episodes()
    steps = list(episode[schema.STEPS])
    assert len(steps) == 101 and tuple(steps[0][schema.KEYS_HELD]) == (False, False, True, False)
    wall = np.array([step[schema.WALL_TIME] for step in steps])
    start = float(episode[schema.EPISODE_METADATA][schema.START_TIME])
    # the episode begins at the key (within the page -> server -> session latency), never at the page's arrival
    assert pressed <= start < pressed + 1.0 and pressed <= wall[0] < pressed + 1.0, (pressed, start, wall[0])
    # the 3 s of waiting are nowhere in it (its length at 50 steps/s would depend on the machine's load)
    assert np.diff(wall).max() < 1.0, np.diff(wall).max()
    assert "waiter: episode 0 saved (100 steps" in log


@needs_browser
def test_an_idle_tab_drops_its_episode_then_ends_and_saves_nothing(tmp_path):
    """A participant presses once and walks away: the episode is dropped after --episode_idle_s, the next track
    waits, and the session ends after --idle_timeout, each said on the page; nothing is saved."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    server = RecordServer(tmp_path, "--max_steps", "1000", "--episode_idle_s", "1.5", "--idle_timeout", "5")
    driver = new_chromium()
    try:
        driver.get(server.base + "/?user=gone")
        state = lambda: driver.execute_script("return window.dropjRecord") or {}  # noqa: E731
        wait_for(lambda: state().get("phase") == "ready", 30, lambda: state())
        view = driver.find_element("id", "view")
        ActionChains(driver).key_down(Keys.ARROW_UP, view).perform()
        time.sleep(0.3)
        ActionChains(driver).key_up(Keys.ARROW_UP, view).perform()
        wait_for(lambda: ((state().get("last") or {}).get("last") or {}).get("outcome") == "dropped", 30,
                 lambda: state())
        phase, said = _overlay(driver)
        assert phase == "ready" and "dropped, not saved (no key pressed for 1.5 s)" in said, said
        _shot(driver, "dropped")
        wait_for(lambda: state().get("error"), 30, lambda: state())
        phase, said = _overlay(driver)
        assert phase == "ended" and said.startswith("This session has ended\nNo key pressed for 5 s"), said
        assert "reload the page to drive again." in said and said.endswith("Drive again"), said
        _shot(driver, "ended")
    finally:
        driver.quit()
        log = server.stop()
    assert "gone: episode 0 dropped after " in log and "no key pressed for 1.5 s (--episode_idle_s)" in log
    assert "gone idle for 5 s, ended" in log and "gone left (0 episodes saved, 1 dropped)" in log, log
    assert not (record.recording_dir(tmp_path, "carracing") / "dropj_recording-train.tfrecord-00000").exists()


@needs_browser
def test_a_full_server_shows_the_place_in_the_queue_and_starts_the_session_when_a_place_frees(tmp_path):
    """A full server showed a black canvas and "(1 participants driving, --max_sessions)" in small grey text."""
    import websocket

    server = RecordServer(tmp_path, "--max_steps", "1000", "--max_sessions", "1")
    driver = new_chromium()
    try:
        first = websocket.create_connection(f"ws://127.0.0.1:{server.port}/ws?user=first", timeout=30)
        assert json.loads(first.recv())["user"] == "first"
        driver.get(server.base + "/?user=queued")
        state = lambda: driver.execute_script("return window.dropjRecord") or {}  # noqa: E731
        wait_for(lambda: state().get("phase") == "queued", 30, lambda: state())
        phase, said = _overlay(driver)
        assert said == ("The server is full\nYou are number 1 in the queue (1 participant driving). Your turn "
                        "starts by itself: keep this page open."), said
        assert "the server is full (1 participant driving, --max_sessions)" in \
            driver.find_element("id", "status").text
        _shot(driver, "queued")
        first.close()
        wait_for(lambda: state().get("phase") == "ready", 60, lambda: state())
        assert _overlay(driver)[1].startswith("Press an arrow key to start")
        assert state()["session"]["user"] == "queued" and state()["sessions"] == 1
    finally:
        driver.quit()
        log = server.stop()
    assert "queued waits for a place: number 1 in the queue (--max_sessions 1)" in log and "queued connected" in log


@needs_browser
def test_a_queued_page_is_told_a_place_is_coming_free_while_the_session_holding_it_saves_its_last_episode(tmp_path):
    """Every place taken, and the one session's last episode (--episodes 1) being saved: the participant first in
    the queue is told a place is coming free (not only their number), then their session starts."""
    import threading

    import websocket

    server = RecordServer(tmp_path, "--max_steps", "60", "--episodes", "1", "--max_sessions", "1", "--seed", "3")
    driver = new_chromium()
    first = websocket.create_connection(f"ws://127.0.0.1:{server.port}/ws?user=first", timeout=30)
    try:
        assert json.loads(first.recv())["user"] == "first"
        received = []
        reader = threading.Thread(target=lambda: received.extend(received_until_closed(first)), daemon=True)
        reader.start()
        driver.get(server.base + "/?user=queued")
        state = lambda: driver.execute_script("return window.dropjRecord") or {}  # noqa: E731
        wait_for(lambda: state().get("phase") == "queued", 30, lambda: state())
        assert _overlay(driver)[1].startswith("The server is full\nYou are number 1 in the queue")
        first.send(json.dumps({"key": "ArrowUp", "down": True}))  # drives its one episode: 60 steps, then saves
        wait_for(lambda: state().get("session"), 60, lambda: state())
        said = state()["queueSaid"]
        reader.join(timeout=30)
    finally:
        driver.quit()
        first.close()
        log = server.stop()
    coming = "A place is coming free\nA participant is finishing their session. Your turn starts in a moment: keep " \
             "this page open."
    assert said[0].startswith("The server is full\nYou are number 1") and said[-1] == coming, said
    statuses = [json.loads(m) for m in received if isinstance(m, str) and m]  # ("": the close)
    assert statuses[-1] == {"done": True, "saved": 1, "rescued": 0, "error": None}  # it finished, was not cut off
    assert "first: episode 0 saved (60 steps" in log and "queued connected" in log


@needs_browser
def test_the_page_says_saving_saved_and_a_rescued_episode_large_and_never_calls_a_rescued_one_saved(tmp_path):
    """The states too brief (saving, saved) or too rare (a full disk) to catch in a live session, as the session
    process reports them (`tests/converters/recording/test_session.py` checks the session's side)."""
    server = RecordServer(tmp_path, "--max_steps", "1000")
    driver = new_chromium()
    rescue = "recordings/dropj_recording/carracing/1.0.0/rescued/episode-7-s1-b1f116.pkl"
    repair = "dropj repair-recording recordings/dropj_recording/carracing/1.0.0"
    statuses = {
        "saving": {"phase": "saving", "episode": 7, "step": 412, "return": 230, "saved": 7, "rescued": 0, "last": None},
        "saved": {"phase": "ready", "episode": 8, "step": 0, "return": 0, "saved": 8, "rescued": 0,
                  "last": {"episode": 7, "outcome": "saved", "steps": 412, "return": 230}},
        "rescued": {"phase": "ready", "episode": 7, "step": 0, "return": 0, "saved": 7, "rescued": 1,
                    "last": {"episode": 7, "outcome": "rescued", "steps": 412, "return": 230, "file": rescue,
                             "repair": repair}},
    }
    statuses["coming"] = {"queue": 1, "driving": 1, "places": 1, "coming": True,
                          "text": "a place is coming free (a participant is finishing): your turn starts in a moment"}
    try:
        driver.get(server.base + "/?user=p07")
        state = lambda: driver.execute_script("return window.dropjRecord") or {}  # noqa: E731
        wait_for(lambda: state().get("phase") == "ready", 30, lambda: state())
        said = {}
        for name, status in statuses.items():
            driver.execute_script("onMessage({data: arguments[0]})", json.dumps(status))
            said[name] = _overlay(driver)
            _shot(driver, name)
        driver.execute_script("onMessage({data: arguments[0]})",
                              json.dumps({"done": True, "saved": 7, "rescued": 1, "error": None}))
        done = _overlay(driver)
        status_line = driver.find_element("id", "status").text
    finally:
        driver.quit()
        server.stop()
    assert said["saving"] == ("saving", "Saving episode 7…\nThe next track comes in a moment.")
    assert said["coming"] == ("queued", "A place is coming free\nA participant is finishing their session. Your turn "
                                        "starts in a moment: keep this page open.")
    assert said["saved"][1].startswith("Press an arrow key to start\nEpisode 7 saved (412 steps, return 230).")
    phase, text = said["rescued"]
    assert phase == "ready" and "Episode 7 was NOT saved" in text and "kept in a rescue file" in text
    assert repair in text and "saved (" not in text
    assert done == ("done", "Done: 7 episodes saved\n1 episode kept in a rescue file: please tell the "
                            "experimenter.\nThank you. You can close this tab now.")
    assert status_line == "done: 7 episodes saved, 1 kept in a rescue file"
