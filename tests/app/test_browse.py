"""`dropj serve`, `dropj show` and `dropj stats` on built sample configs; the pages in a real headless Chromium."""

from __future__ import annotations

import collections
import re
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
from dropj_datasets.app import charts, views
from dropj_datasets.app.web import serve
from factory.web import free_port, wait_for
from tests.app.test_charts import Tables, read_chart

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
    # nothing to fetch: charts, style and script inline; the only references are a chart's to its own parts
    assert "src=" not in page and all(ref.startswith("#") for ref in re.findall(r'href="([^"]*)"', page))


def _charts(page: str) -> dict[str, dict]:
    """The page's charts read back from their SVG (`test_charts.read_chart`), by title."""
    return {chart["title"]: chart for chart in map(read_chart, re.findall(r"<svg .*?</svg>", page, re.S))}


def _shows(chart: dict, values, weights=None) -> None:
    """The chart is `values`' distribution: a bar per value labelled with it, or a histogram holding them all."""
    counts = collections.Counter()
    for value, weight in zip(values, weights or [1] * len(values)):
        counts[charts.number(value)] += weight
    if "bins of" in chart["note"] or "bin per" in chart["note"]:
        assert sum(chart["bars"]) == sum(counts.values()), chart
    else:
        assert chart["labelled"] == counts and chart["xticks"] == sorted(counts, key=float), chart


def test_stats_page_charts_and_tables_are_the_figures(data_dir):
    """Each chart's labels and bars, read from its SVG, and each table row equal the statistics they show."""
    built = views.open_built("dropj_carracing/real", str(data_dir))
    stats = views.statistics(built)
    page = views.report(built, stats)
    shown = _charts(page)
    _shows(shown["transitions per episode"], stats["lengths"])
    _shows(shown["return per episode"], stats["returns"])
    _shows(shown["reward per step"], list(stats["rewards"]), list(stats["rewards"].values()))
    for flag, per_episode in stats["flags_per_episode"].items():
        _shows(shown[f"'{flag}' steps per episode"], per_episode)
    for part, values in stats["actions"].items():
        _shows(shown[f"action: {part}"], values)
    assert set(stats["actions"]["brake"]) == {0.0}  # the sample never brakes: one bar "0", every transition
    assert shown["action: brake"]["labelled"] == {"0": sum(stats["lengths"])}
    rows = Tables(page).named("episode")
    flags = stats["flags_per_episode"].values()
    assert [[cell[0] for cell in row.values()] for row in rows] == [
        [str(i), str(n), charts.number(r), "yes" if t else "no", *(str(v[i]) for v in flags)]
        for i, (n, r, t) in enumerate(zip(stats["lengths"], stats["returns"], stats["terminal_per_episode"]))]
    assert list(rows[0]) == ["episode", "transitions", "return", "terminal",
                             *(f"'{flag}' steps" for flag in stats["flags_per_episode"])]
    assert f"This build holds {built.count} episodes: {sum(stats['lengths'])} transitions, " in page
    assert f"Release config: {built.spec.description}." in page

    built = views.open_built("dropj_carracing/preferences_dropj", str(data_dir))
    stats = views.statistics(built)
    page = views.report(built, stats)
    shown = _charts(page)
    order = views.answer_order(built.spec, list(stats["answers"]))
    assert shown["answers"]["xticks"] == order and shown["answers"]["labelled"] == stats["answers"]
    assert "Yes/Yes/Equally" in order and order.index("Yes/Yes/Left") < order.index("Yes/No") < order.index("No/No")
    _shows(shown["Repeat Video presses"], stats["repeat_count"])
    _shows(shown["seconds per query"], stats["total_time"])
    _shows(shown["labels (P(left preferred))"], list(stats["labels"]), list(stats["labels"].values()))
    assert shown["responses per annotator"]["labelled"] == {f"user {u}": n for u, n in stats["annotators"].items()}
    rows = Tables(page).named("response")
    assert [(r["response"][0], r["participant"][0], r["answers"][0], r["Repeat Video presses"][0]) for r in rows] == [
        (str(i), f"user {u}", a or "skipped", str(n)) for i, (u, a, n) in
        enumerate(zip(stats["user_per_response"], stats["answer_per_response"], stats["repeat_count"]))]
    assert [float(r["seconds"][1]) for r in rows] == stats["total_time"]
    [person] = Tables(page).named("participant")
    assert (person["participant"][0], person["responses"][0], person["skipped"][0]) == \
        (f"user {built.spec.user_id}", str(stats["items"]), str(stats["skipped"]))

    browser = serve.Browser(str(data_dir))  # the served page: the same, its items linked; kept for its figures
    served = serve.dataset_page(browser, "dropj_carracing", "preferences_dropj")
    assert _charts(served) == shown and serve.dataset_page(browser, "dropj_carracing", "preferences_dropj") is served
    assert [r["response"][2] for r in Tables(served).named("response")] == \
        [f"/d/dropj_carracing/preferences_dropj/item/{i}" for i in range(stats["items"])]


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
        assert first.shape[0] > episode.frames.shape[1] * scale  # the frame, then the text under it
    else:
        assert video.info(out.read_bytes())["frames"] == len(episode.frames)
    assert episode.latent == (config == "dream")


@pytest.mark.parametrize("config", ["real", "dream"])
def test_show_overlays_are_legible_mark_the_padding_step_and_give_the_heat_scale(data_dir, tmp_path, config):
    """What `dropj show` writes, read back from the GIF: text 14 px high or more, the padding step (the last, in
    these kinds: `Kind.extra_last_step`) in an amber band, and under heat maps a bar from blue to red."""
    out = tmp_path / "episode.gif"
    done = _dropj("show", f"dropj_carracing/{config}", "--data_dir", data_dir, "--episode", 1, "--out", out)
    assert done.returncode == 0, done.stderr
    built = views.open_built(f"dropj_carracing/{config}", str(data_dir))
    episode = views.load_episode(built, 1)
    assert episode.padding_last == schema.kind_of(built.spec).extra_last_step == True  # noqa: E712
    last = len(episode.frames) - 1
    middle = next((t for t, flags in enumerate(episode.flags) if flags), last // 2)
    height = episode.frames.shape[1] * (4 if episode.frames.shape[1] < 200 else 1)
    strips = {}
    with Image.open(out) as gif:
        for t in (middle, last):
            gif.seek(t)
            strips[t] = np.asarray(gif.convert("RGB")).astype(int)[height:]

    def runs(rows: np.ndarray) -> list[int]:  # the heights of the bands of rows holding dark (text) pixels
        heights, run = [], 0
        for dark in rows:
            if dark:
                run += 1
            elif run:
                heights, run = heights + [run], 0
        return heights + ([run] if run else [])

    def amber(strip):
        r, g, b = strip[..., 0], strip[..., 1], strip[..., 2]
        return int(((r > 230) & (g > 170) & (g < 230) & (b < 130)).sum())

    def pure(strip, channel):  # saturated blue (2) or red (0): the legend's ends
        others = np.delete(strip, channel, axis=2)
        return np.argwhere((strip[..., channel] > 220) & (others.max(axis=2) < 60))

    text = runs((strips[middle].max(axis=2) < 100).any(axis=1))
    assert len(text) >= 2 and min(text[:2]) >= 14, text  # step and reward, then the action: 14 px and more
    assert amber(strips[last]) > 20 * strips[last].shape[1] and amber(strips[middle]) == 0
    blue, red = pure(strips[middle], 2), pure(strips[middle], 0)
    if episode.latent:
        assert len(blue) and len(red) and blue[:, 1].max() < red[:, 1].min()  # the bar: blue on the left
    else:
        assert not len(blue) and not len(red)


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


def test_seconds_the_obstacle_gui_did_not_record_are_said_so(tmp_path):
    """The obstacle studies' answers carry no seconds (NaN in the dataset): the item page says "not recorded"."""
    factory.build("dropj_obst_carracing/chuckc_preferences", factory.dummy_data("dropj_obst_carracing"), tmp_path)
    page = serve.item_page(serve.Browser(str(tmp_path)), "dropj_obst_carracing", "chuckc_preferences", 0)
    seconds = [row[2][0] for row in Tables(page).tables[0][1:]]
    assert seconds and set(seconds) == {"not recorded"} and "nan" not in page


_COLUMN = """
const [first, name] = arguments;
const table = [...document.querySelectorAll('table.sortable')]
  .find((t) => t.tHead.rows[0].cells[0].textContent.trim() === first);
const k = [...table.tHead.rows[0].cells].findIndex((th) => th.textContent.trim() === name);
return [table.tHead.rows[0].cells[k].getAttribute('aria-sort'),
        [...table.tBodies[0].rows].map((row) => row.cells[k].textContent.trim())];
"""


def _sort_by(browser, first: str, name: str) -> None:
    """Clicks the header `name` of the table whose first header is `first`."""
    browser.find_element("xpath", f"//table[thead/tr/th[1][normalize-space()='{first}']]"
                                  f"/thead/tr/th[normalize-space()='{name}']/button").click()


def test_the_tables_sort_in_chromium(server, browser, data_dir, tmp_path):
    """A click on a header sorts the rows by that column, ascending, then descending: on the served pages (the
    script from /static) and on the page `dropj stats` writes (the script inline)."""
    stats = views.statistics(views.open_built("dropj_carracing/real", str(data_dir)))
    by_return = [str(i) for i in sorted(range(stats["items"]), key=lambda i: stats["returns"][i])]
    by_length = [str(i) for i in sorted(range(stats["items"]), key=lambda i: stats["lengths"][i])]
    browser.get(server + "/d/dropj_carracing/real")
    assert browser.execute_script(_COLUMN, "episode", "episode") == [None, [str(i) for i in range(stats["items"])]]
    _sort_by(browser, "episode", "return")
    assert browser.execute_script(_COLUMN, "episode", "episode") == [None, by_return]
    assert browser.execute_script(_COLUMN, "episode", "return")[0] == "ascending"
    _sort_by(browser, "episode", "return")
    assert browser.execute_script(_COLUMN, "episode", "episode") == [None, by_return[::-1]]
    assert browser.execute_script(_COLUMN, "episode", "return")[0] == "descending"

    prefs = views.statistics(views.open_built("dropj_carracing/preferences_dropj", str(data_dir)))
    browser.get(server + "/d/dropj_carracing/preferences_dropj")
    _sort_by(browser, "response", "seconds")
    assert browser.execute_script(_COLUMN, "response", "response")[1] == \
        [str(i) for i in sorted(range(prefs["items"]), key=lambda i: prefs["total_time"][i])]

    browser.get(server + "/")
    _sort_by(browser, "dataset/config", "MB")
    [_, sizes] = browser.execute_script(_COLUMN, "dataset/config", "MB")
    assert sizes == sorted(sizes, key=float) and len(sizes) == len(CONFIGS)
    browser.refresh()  # the listed order again: ties stay in it
    _sort_by(browser, "dataset/config", "this build holds")  # by the count, not as text ("10" after "3")
    built = sorted((views.open_built(f"dropj_carracing/{c}", str(data_dir)) for c in CONFIGS), key=lambda b: b.count)
    assert browser.execute_script(_COLUMN, "dataset/config", "dataset/config")[1] == \
        [f"{b.name}/{b.config}" for b in built]
    assert browser.execute_script(_COLUMN, "dataset/config", "this build holds")[1] == \
        [f"{b.count} {views.noun(b.spec, b.count != 1)}" for b in built]

    out = tmp_path / "real.html"
    assert _dropj("stats", "dropj_carracing/real", "--data_dir", data_dir, "--out", out).returncode == 0
    browser.get(out.as_uri())
    _sort_by(browser, "episode", "transitions")
    assert browser.execute_script(_COLUMN, "episode", "episode") == [None, by_length]


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
