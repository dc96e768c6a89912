"""`dropj serve`, `dropj show` and `dropj stats` on built sample configs; the pages in a real headless Chromium."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

import factory
from dropj.loaders import video
from dropj_datasets import schema
from dropj_datasets.app import views
from factory.web import free_port, wait_for

CONFIGS = ("real", "dream", "preferences_dropj", "queries")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    for config in CONFIGS:
        factory.build(f"dropj_carracing/{config}", factory.dummy_data("dropj_carracing"), data)
    return data


def _dropj(*args):
    return subprocess.run([sys.executable, "-m", "dropj_datasets.app", *map(str, args)], capture_output=True,
                          text=True, cwd=factory.REPO, timeout=300)


def test_statistics_count_what_the_episodes_hold(data_dir):
    built = views.open_built("dropj_carracing/real", str(data_dir))
    stats = views.statistics(built)
    episodes = list(built.episodes())
    assert stats["lengths"] == [ep.num_transitions for _, ep, _ in episodes]
    assert stats["returns"] == [float(ep.rewards.sum()) for _, ep, _ in episodes]
    assert stats["flags_per_episode"]["crash"] == [int((ep.info["crash"] == 1).sum()) for _, ep, _ in episodes]
    assert len(stats["actions"]["steer"]) == sum(stats["lengths"])
    prefs = views.statistics(views.open_built("dropj_carracing/preferences_dropj", str(data_dir)))
    assert prefs["items"] == 10 and prefs["skipped"] == 2 and sum(prefs["answers"].values()) == 8


def test_stats_writes_one_self_contained_page(data_dir, tmp_path):
    done = _dropj("stats", "dropj_carracing/real", "--data_dir", data_dir, "--out", tmp_path / "report.html")
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "report.html").read_text()
    assert page.count("<svg") >= 8 and "return per episode" in page and "action: steer" in page
    assert "src=" not in page and "href=" not in page  # nothing to fetch: plots are inline


@pytest.mark.parametrize("config", CONFIGS)
def test_stats_pages_are_the_tfds_paths_counted_then_kept(data_dir, tmp_path, config):
    """`dropj stats` reads the numbers without TensorFlow and keeps them beside the index: its page, counted and
    then read back, is the one the TFDS path (every example decoded, frames included) gives."""
    built = views.open_built(f"dropj_carracing/{config}", str(data_dir))
    expected = views.report(built, views.statistics_through_tfds(built))
    shutil.rmtree(built.directory / "dropj_index", ignore_errors=True)
    for run in ("counted", "kept"):
        done = _dropj("stats", f"dropj_carracing/{config}", "--data_dir", data_dir, "--out", tmp_path / f"{run}.html")
        assert done.returncode == 0, done.stderr
        assert (tmp_path / f"{run}.html").read_text() == expected, run


@pytest.mark.parametrize("config, suffix", [("real", ".gif"), ("real", ".mp4"), ("dream", ".gif")])
def test_show_writes_the_episode_with_overlays_at_its_pace(data_dir, tmp_path, config, suffix):
    out = tmp_path / f"episode{suffix}"
    done = _dropj("show", f"dropj_carracing/{config}", "--data_dir", data_dir, "--episode", 1, "--out", out)
    assert done.returncode == 0, done.stderr
    episode = views.load_episode(views.open_built(f"dropj_carracing/{config}", str(data_dir)), 1)
    if suffix == ".gif":
        with Image.open(out) as gif:
            assert gif.n_frames == len(episode.frames)
            assert gif.info["duration"] == 20  # 50 steps/s
            first = np.asarray(gif.convert("RGB"))
        scale = 4 if episode.frames.shape[1] < 200 else 1
        assert first.shape[0] == episode.frames.shape[1] * scale + 34  # the frame, then two lines of text
    else:
        assert video.info(out.read_bytes())["frames"] == len(episode.frames)
    assert episode.latent == (config == "dream")


def test_show_plays_at_the_pace_asked_for(data_dir, tmp_path):
    """`--fps` sets the playback pace (a 26-step episode need not last half a second); a pace no player can show
    is refused in one line."""
    for suffix in (".gif", ".mp4"):
        out = tmp_path / f"slow{suffix}"
        done = _dropj("show", "dropj_carracing/real", "--data_dir", data_dir, "--fps", "5", "--out", out)
        assert done.returncode == 0 and "at 5 steps/s" in done.stdout, done.stderr
        if suffix == ".gif":
            with Image.open(out) as gif:
                assert gif.info["duration"] == 200
        else:
            assert video.info(out.read_bytes())["fps"] == 5.0
    for fps, message in (("0", "must be a positive number"), ("5000", "--fps 5000: at most 1000 steps/s")):
        done = _dropj("show", "dropj_carracing/real", "--data_dir", data_dir, "--fps", fps, "--out", tmp_path / "x.gif")
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_show_and_serve_refuse_what_they_cannot_show(data_dir, tmp_path):
    done = _dropj("show", "dropj_carracing/real", "--data_dir", data_dir, "--episode", 99, "--out", tmp_path / "x.gif")
    assert done.returncode == 2 and "episode 99 is out of range: the dataset holds 3" in done.stderr
    done = _dropj("show", "dropj_carracing/queries", "--data_dir", data_dir, "--out", tmp_path / "x.gif")
    assert done.returncode == 2 and "holds queries, not episodes" in done.stderr
    done = _dropj("show", "dropj_carracing/real", "--data_dir", data_dir, "--out", tmp_path / "x.avi")
    assert done.returncode == 2 and "must end in .mp4 or .gif" in done.stderr


@pytest.fixture(scope="module")
def server(data_dir):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "dropj_datasets.app", "serve", "--data_dir", str(data_dir),
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=factory.REPO)
    for line in proc.stdout:
        if line.startswith("open "):
            break
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


def test_serve_answers_only_what_exists(server):
    import urllib.error
    import urllib.request

    def status(path, method="GET"):
        try:
            with urllib.request.urlopen(urllib.request.Request(server + path, method=method), timeout=30) as r:
                return r.status
        except urllib.error.HTTPError as error:
            return error.code

    assert status("/") == 200 and status("/d/dropj_carracing/real") == 200
    assert status("/d/nope/real") == 404 and status("/d/dropj_carracing/real/episode/3") == 404
    assert status("/frame/dropj_carracing/real/0/999.png") == 404
    assert status("/d/dropj_carracing/queries/episode/0") == 404
    assert status("/video/dropj_carracing/queries/77.mp4") == 404
    assert status("/static/../serve.py") == 404
    assert status("/", method="POST") == 405


_wait = wait_for


def test_the_pages_in_chromium(server, browser, data_dir):
    browser.get(server + "/")
    listed = [a.text for a in browser.find_elements("css selector", "td a")]
    assert listed == [f"dropj_carracing/{c}" for c in CONFIGS]

    browser.get(server + "/d/dropj_carracing/real")
    assert len(browser.find_elements("css selector", "svg")) >= 8
    browser.find_element("link text", "1").click()  # episode 1

    _wait(lambda: browser.find_element("id", "overlay").get_attribute("data-step") == "0")
    _wait(lambda: browser.execute_script("return document.getElementById('frame').naturalWidth") == 84)
    episode = views.load_episode(views.open_built("dropj_carracing/real", str(data_dir)), 1)
    crash = next(t for t, flags in enumerate(episode.flags) if "crash" in flags)
    browser.execute_script(f"const s = document.getElementById('scrub'); s.value = {crash};"
                           "s.dispatchEvent(new Event('input'));")
    _wait(lambda: browser.find_element("id", "overlay").get_attribute("data-step") == str(crash))
    assert f"reward {int(episode.rewards[crash])}" in browser.find_element("id", "overlay").text
    assert "crash" in browser.find_element("id", "overlay").text
    browser.find_element("id", "play").click()  # plays on from there at 50 steps/s
    _wait(lambda: int(browser.find_element("id", "overlay").get_attribute("data-step")) > crash)

    built = views.open_built("dropj_carracing/preferences_dropj", str(data_dir))
    index, first = next((i, e) for i, e in enumerate(built.examples()) if e[schema.HAS_LABEL])
    browser.get(server + f"/d/dropj_carracing/preferences_dropj/item/{index}")
    answers = [td.text for td in browser.find_elements("css selector", "td.answer")]
    assert answers == [a.decode() for a in first[schema.RESPONSE][schema.ANSWERS][schema.ANSWER]]
    assert f"{float(first[schema.LABEL]):g}" in browser.find_element("id", "label").text
    _wait(lambda: browser.execute_script("return document.getElementById('query').readyState") >= 1)
    assert browser.execute_script("return document.getElementById('query').duration") == pytest.approx(8.0, abs=0.5)


def test_latent_episodes_decode_through_a_vae_checkpoint(data_dir, tmp_path):
    import torch

    from dropj.models import ConvVAE, save_checkpoint

    torch.manual_seed(0)
    model = ConvVAE.for_env(schema.CARRACING)
    save_checkpoint(model, None, tmp_path / "vae.pt")
    built = views.open_built("dropj_carracing/dream", str(data_dir))
    decoded = views.load_episode(built, 0, vae=str(tmp_path / "vae.pt"))
    heat = views.load_episode(built, 0)
    assert decoded.frames.shape == (len(heat.frames), 84, 84, 3) and decoded.frames.dtype == np.uint8
    with torch.no_grad():  # the frames are the model's own decoding of each state's z
        states = next(iter(built.examples()))[schema.STEPS][schema.OBSERVATION]
        expected = model.decode(torch.as_tensor(states[:, :32], dtype=torch.float32)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(decoded.frames, (expected * 255).round().astype(np.uint8))
