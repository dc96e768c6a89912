"""The episode player of `dropj serve` in headless Chromium: stepping by buttons and keys, the speed, the loading
and error states, the padding step and the heat maps' legend; the screenshots of docs/browse.md."""

from __future__ import annotations

import os

import numpy as np
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

import factory
from dropj_datasets import schema
from dropj_datasets.app import views
from factory import legacy
from factory.web import App, wait_for

pytestmark = pytest.mark.slow
CONFIGS = ("dropj_carracing/real", "dropj_carracing/dream", "dropj_carracing/request",
           "dropj_obst_carracing/chuckccar_real")
LONG = 400  # transitions of the synthetic episode the pace is measured on


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    for dataset in CONFIGS:
        factory.build(dataset, factory.dummy_data(dataset.split("/")[0]), data)
    return data


@pytest.fixture(scope="module")
def long_dir(tmp_path_factory):
    """A real config of one long noise episode: long enough that playing it takes seconds, and that its last
    frames are not loaded ahead while the first are shown."""
    manual, data = tmp_path_factory.mktemp("manual"), tmp_path_factory.mktemp("long")
    legacy.make_real_source(manual, schema.DATASETS["dropj_carracing"]["real"], lengths=(LONG,))
    factory.build("dropj_carracing/real", manual, data)
    return data


@pytest.fixture(scope="module")
def server(data_dir):
    app = App("serve", "--data_dir", str(data_dir))
    yield app.base
    app.stop()


def episode_of(data_dir, dataset: str, index: int = 0) -> views.Episode:
    return views.load_episode(views.open_built(dataset, str(data_dir)), index)


def state(browser) -> str:
    return browser.find_element("id", "player").get_attribute("data-state")


def step(browser) -> int:
    return int(browser.find_element("id", "overlay").get_attribute("data-step"))


def open_player(browser, base: str, dataset: str, index: int = 0) -> None:
    browser.get(f"{base}/d/{dataset}/episode/{index}")
    wait_for(lambda: state(browser) == "paused" and shown(browser) == 0, 120, lambda: state(browser))


def shown(browser) -> int:
    """The step whose frame is on screen (-1 before the first)."""
    return int(browser.execute_script("const f = document.getElementById('frame');"
                                      "return f.complete && f.naturalWidth ? Number(f.dataset.step) : -1"))


def press(browser, *keys) -> None:
    """Keys as a person types them: to whatever has the focus."""
    chain = ActionChains(browser)
    for key in keys:
        chain.send_keys(key)
    chain.perform()


def visible(browser, element_id: str) -> bool:
    return browser.find_element("id", element_id).is_displayed()


def test_step_buttons_and_keys_move_the_step_and_its_overlay(server, browser, data_dir):
    episode = episode_of(data_dir, "dropj_carracing/real", 1)
    last = len(episode.frames) - 1
    open_player(browser, server, "dropj_carracing/real", 1)
    overlay = browser.find_element("id", "overlay")
    assert f"step 0 of {last}" in overlay.text and not browser.find_element("id", "back").is_enabled()

    def at(t):
        wait_for(lambda: step(browser) == t and shown(browser) == t and state(browser) in ("paused", "ended"),
                 30, lambda: (step(browser), shown(browser), state(browser)))
        steer, gas, brake = episode.actions[t]
        text = browser.find_element("id", "overlay").text
        if not episode.padding(t):
            assert f"steer {steer:+.2f}  gas {gas:.2f}  brake {brake:.2f}" in text.replace("\n", " ")
            assert f"reward {views._signed(episode.rewards[t])}" in text
        assert f"step {t} of {last}" in text

    browser.find_element("id", "forward").click()
    at(1)
    browser.find_element("id", "forward").click()
    at(2)
    browser.find_element("id", "back").click()
    at(1)
    press(browser, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)  # the focus is on a button: the keys still step, once each
    at(3)
    press(browser, Keys.ARROW_LEFT)
    at(2)
    press(browser, Keys.END)
    at(last)
    assert not browser.find_element("id", "forward").is_enabled()
    press(browser, Keys.HOME)
    at(0)
    crash = next(t for t, flags in enumerate(episode.flags) if "crash" in flags)
    for _ in range(crash):
        press(browser, Keys.ARROW_RIGHT)
    at(crash)
    assert "crash" in browser.find_element("id", "overlay").text
    press(browser, Keys.HOME)
    at(0)

    Select(browser.find_element("id", "speed")).select_by_value("0.25")  # 12.5 steps/s: time to press again
    press(browser, Keys.SPACE)
    wait_for(lambda: state(browser) == "playing" and step(browser) > 0, 30, lambda: state(browser))
    press(browser, Keys.SPACE)
    wait_for(lambda: state(browser) == "paused", 30, lambda: state(browser))
    paused_at = step(browser)
    browser.find_element("id", "play").click()  # the Play button has the focus now: Space pauses, once
    wait_for(lambda: step(browser) > paused_at, 30)
    press(browser, Keys.SPACE)
    wait_for(lambda: state(browser) == "paused", 30, lambda: state(browser))
    held = step(browser)
    browser.execute_script("return new Promise((done) => setTimeout(done, 400))")
    assert step(browser) == held and state(browser) == "paused"


def test_the_speed_sets_the_pace(browser, long_dir):
    """Each speed plays at its multiple of the recorded pace: never faster, and not much slower while the frames
    keep up (they are loaded ahead)."""
    app = App("serve", "--data_dir", str(long_dir))
    try:
        open_player(browser, app.base, "dropj_carracing/real")
        fps = episode_of(long_dir, "dropj_carracing/real").fps
        browser.execute_script("window.stepLog = []; const o = document.getElementById('overlay');"
                               "new MutationObserver(() => window.stepLog.push([Number(o.dataset.step),"
                               "performance.now()])).observe(o, {attributes: true, attributeFilter: ['data-step']});")
        rates = {}
        for speed in ("0.25", "2"):
            Select(browser.find_element("id", "speed")).select_by_value(speed)
            assert browser.find_element("id", "pace").text.startswith(f"{fps * float(speed):g} steps/s")
            browser.execute_script("window.stepLog.length = 0")
            press(browser, Keys.SPACE)
            browser.execute_script("return new Promise((done) => setTimeout(done, 2000))")
            press(browser, Keys.SPACE)
            log = browser.execute_script("return window.stepLog")
            (first, start), (end, stop) = log[0], log[-1]
            rates[speed] = (end - first) / ((stop - start) / 1000)
            assert rates[speed] <= fps * float(speed) * 1.1, rates
            press(browser, Keys.HOME)
        assert rates["0.25"] >= fps * 0.25 * 0.7, rates
        assert rates["2"] >= 3 * rates["0.25"], rates
    finally:
        app.stop()


@pytest.mark.parametrize("dataset", ["dropj_carracing/real", "dropj_carracing/dream", "dropj_carracing/request"])
def test_the_padding_step_is_marked_where_the_kind_has_one(server, browser, data_dir, dataset):
    """The last step of a kind that ends in a padding step (`Kind.extra_last_step`: real and dream episodes, and
    recordings) says no action was taken there, and looks different; a sketch's last step is a real one."""
    episode = episode_of(data_dir, dataset)
    padding = schema.kind_of(views.open_built(dataset, str(data_dir)).spec).extra_last_step
    assert padding == (dataset != "dropj_carracing/request")  # both cases are here
    last = len(episode.frames) - 1
    open_player(browser, server, dataset)
    assert not visible(browser, "padding") and not visible(browser, "badge")
    press(browser, Keys.END)
    wait_for(lambda: step(browser) == last and state(browser) == "ended", 30, lambda: state(browser))
    text = browser.find_element("id", "overlay").text
    assert visible(browser, "padding") == visible(browser, "badge") == padding
    assert ("none: padding step" in text) == padding
    if padding:
        assert "No action was taken" in browser.find_element("id", "padding").text
        outline = browser.execute_script("return getComputedStyle(document.getElementById('screen')).outlineWidth")
        assert outline == "6px"
    else:
        assert f"steer {episode.actions[last][0]:+.2f}" in text
    press(browser, Keys.ARROW_LEFT)
    wait_for(lambda: step(browser) == last - 1, 30)
    assert not visible(browser, "padding") and "none: padding step" not in browser.find_element("id", "overlay").text


@pytest.mark.parametrize("dataset", ["dropj_carracing/real", "dropj_carracing/dream", "dropj_carracing/request"])
def test_heat_maps_have_a_legend_of_their_scale(server, browser, data_dir, dataset):
    episode = episode_of(data_dir, dataset)
    open_player(browser, server, dataset)
    assert visible(browser, "legend") == episode.latent
    if episode.latent:
        scale = float(f"{episode.scale:.3g}")
        assert float(browser.find_element("id", "legend-min").text) == -scale
        assert float(browser.find_element("id", "legend-max").text) == scale
        bar = browser.execute_script("return getComputedStyle(document.querySelector('#legend .bar')).backgroundImage")
        ends = [tuple(int(c) for c in (views.heat_colours(np.array(v)) * 255).round()) for v in (-1.0, 0.0, 1.0)]
        assert bar == "linear-gradient(to right, " + ", ".join(f"rgb{c}" for c in ends) + ")"


def test_a_slow_first_frame_shows_the_loading_state_never_a_blank_box(browser, data_dir, tmp_path):
    """With --vae the first frame waits for torch and the model: the box is there, 'decoding frames' over it,
    until the frame is."""
    import torch

    from dropj.models import ConvVAE, save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(ConvVAE.for_env(schema.CARRACING), None, tmp_path / "vae.pt")
    app = App("serve", "--data_dir", str(data_dir), "--vae", str(tmp_path / "vae.pt"))
    try:
        browser.get(f"{app.base}/d/dropj_carracing/dream/episode/0")
        wait_for(lambda: state(browser) == "loading" and visible(browser, "status") and
                 "decoding frames with the VAE" in browser.find_element("id", "status").text, 30,
                 lambda: (state(browser), browser.find_element("id", "status").text))
        assert browser.find_element("id", "screen").size["height"] >= 200
        wait_for(lambda: shown(browser) == 0 and state(browser) == "paused", 120, lambda: state(browser))
        assert browser.execute_script("return document.getElementById('frame').naturalWidth") == 84
        assert not visible(browser, "status") and not visible(browser, "legend")  # decoded frames: no heat map
    finally:
        app.stop()


def test_a_failed_frame_and_a_server_gone_are_said(browser, long_dir):
    app = App("serve", "--data_dir", str(long_dir))
    try:
        open_player(browser, app.base, "dropj_carracing/real")
        # The server's own refusal, as the page says it: frames of an episode that is not there.
        browser.execute_script("document.getElementById('player').dataset.frames = "
                               "'/frame/dropj_carracing/real/7/'")
        press(browser, Keys.END)
        said = wait_for(lambda: state(browser) == "error" and browser.find_element("id", "status").text, 30,
                        lambda: state(browser))
        assert f"The frame of step {LONG} could not be loaded: episode 7 is out of range" in said and "404" in said
        assert visible(browser, "status")
        browser.execute_script("document.getElementById('player').dataset.frames = '/frame/dropj_carracing/real/0/'")
        press(browser, Keys.HOME)
        wait_for(lambda: state(browser) == "paused" and not visible(browser, "status"), 30)
    finally:
        app.stop()
    press(browser, Keys.END)  # not loaded ahead, and nobody there to ask
    said = wait_for(lambda: state(browser) == "error" and browser.find_element("id", "status").text, 30,
                    lambda: state(browser))
    assert "The server is not answering: is dropj serve still running?" in said


@pytest.mark.parametrize("dataset, name", [("dropj_obst_carracing/chuckccar_real", "browse_player.png"),
                                           ("dropj_carracing/dream", "browse_player_dream.png")])
def test_screenshots(server, browser, data_dir, tmp_path, dataset, name):
    """The player paused mid-play, on a flagged step where there is one; also into $DROPJ_SCREENSHOTS
    (docs/images) when set."""
    episode = episode_of(data_dir, dataset)
    target = next((t for t, flags in enumerate(episode.flags) if flags and t > 5), len(episode.frames) // 3)
    browser.set_window_size(1000, 860)
    open_player(browser, server, dataset)
    Select(browser.find_element("id", "speed")).select_by_value("0.5")
    press(browser, Keys.SPACE)
    wait_for(lambda: step(browser) >= target - 1, 30)
    press(browser, Keys.SPACE)
    browser.execute_script(f"const s = document.getElementById('scrub'); s.value = {target};"
                           "s.dispatchEvent(new Event('input'));")
    wait_for(lambda: shown(browser) == target and state(browser) == "paused", 30, lambda: state(browser))
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(tmp_path / name))
    if os.environ.get("DROPJ_SCREENSHOTS"):
        browser.save_screenshot(os.path.join(os.environ["DROPJ_SCREENSHOTS"], name))
