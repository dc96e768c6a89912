"""`dropj serve`: look at what is built under a data dir, in the browser (read-only).

    /                                   every built DROPJ config under D: kind, items, size (sortable)
    /d/NAME/CONFIG                      its statistics (the `dropj stats` page), a table of its items
    /d/NAME/CONFIG/episode/I            an episode player: frames at a speed times the recorded pace, step
                                        back / forward, a scrubber, keys; step, action, reward and flags, the
                                        padding step marked (latent states as heat maps with their legend, or
                                        decoded with --vae)
    /d/NAME/CONFIG/item/I               a query or a response: the video, the answers, the label

Only GET requests; every name and index is checked against the schema and the dataset before anything
is read (an index is at most 9 ASCII digits), and each dataset directory goes through
`BuiltDataset.open`'s checks. Every request first passes `auth.Guard`, the guard of every web app
(Host, the token printed with the URL wherever the bind is not loopback, Origin).

Memory is bounded by bytes: an episode keeps only what it stored (observations, actions, rewards,
flags); its frames are made per request (a heat map is about 50 times its latent state). Decoded
episodes are kept up to `CACHE_BYTES` in all, the least recently shown dropped first; an episode
larger than that is refused with 413. A dataset's page is kept for its figures (`PAGES_KEPT`): its
charts are drawn again only when the figures change.
"""

from __future__ import annotations

import collections
import hashlib
import html
import io
import math
import pickle
import threading
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from dropj_datasets import schema
from dropj_datasets.app import views
from dropj_datasets.app.web import auth
from dropj_datasets.app.web.auth import BadRequest

STATIC = Path(__file__).parent / "static"
PAGES_KEPT = 16  # dataset pages kept, by their figures (drawing the charts is most of a page's time)
CACHE_BYTES = 256 * 2**20  # decoded episodes kept; also the largest episode shown (a real 1,000-step one: 21 MB)


class Browser:
    """The built datasets under one data dir, opened on demand, with the episodes last shown kept decoded up to
    `cache_bytes` in all."""

    def __init__(self, data_dir: str, *, vae: Optional[str] = None, cache_bytes: int = CACHE_BYTES):
        self.data_dir = Path(data_dir)
        self.vae = vae
        self.cache_bytes = cache_bytes
        self._lock = threading.Lock()  # one episode decoded at a time: memory is one episode plus the cache
        self.cached: collections.OrderedDict[tuple[str, str, int], views.Episode] = collections.OrderedDict()
        self.pages: collections.OrderedDict[bytes, str] = collections.OrderedDict()  # `dataset_page`'s
        self.pages_lock = threading.Lock()

    @property
    def cached_bytes(self) -> int:
        return sum(episode.nbytes for episode in self.cached.values())

    def datasets(self) -> list[dict]:
        """Every built config under the data dir (`dataset_dir.catalog`, what `dropj list` shows): name,
        config, version, kind, items, bytes, status, and the config's description."""
        from dropj.converters.store import dataset_dir

        found = []
        for entry in dataset_dir.catalog(str(self.data_dir)):
            spec = schema.spec_for(entry["dataset"], entry["config"])
            about = {"built": spec.description, "incomplete": "incomplete: a build or a write that did not finish"
                     }.get(entry["status"], f"cannot be read: {entry.get('problem', '')[:200]}")
            found.append({"name": entry["dataset"], "config": entry["config"], "version": entry["version"],
                          "kind": entry["kind"], "items": entry["items"] or 0, "bytes": entry["bytes"],
                          "status": entry["status"], "description": about})
        return found

    def built(self, name: str, config: str) -> Any:
        try:
            schema.spec_for(name, config)
        except KeyError:
            raise BadRequest(404, f"unknown dataset {name[:40]}/{config[:40]}") from None
        try:
            return views.open_built(f"{name}/{config}", str(self.data_dir))
        except schema.DataError as exc:
            raise BadRequest(404, str(exc)) from None

    def episode(self, name: str, config: str, index: int) -> views.Episode:
        """Episode `index`, decoded once and kept for the next frame requests (the dataset is opened, and
        checked, only on a miss; `load_episode` refuses a wrong kind or index)."""
        key = (name, config, index)
        with self._lock:
            if key in self.cached:
                self.cached.move_to_end(key)
                return self.cached[key]
            try:
                episode = views.load_episode(self.built(name, config), index, self.vae)
            except schema.DataError as exc:  # longer than the step cap: refused before the rest was read
                raise BadRequest(413, str(exc)) from None
            except ValueError as exc:
                raise BadRequest(404, str(exc)) from None
            if episode.nbytes > self.cache_bytes:
                raise BadRequest(413, f"{name}/{config} episode {index} is too large to show here: "
                                      f"{episode.nbytes / 2**20:.0f} MiB decoded, more than "
                                      f"{self.cache_bytes / 2**20:.0f} MiB ({len(episode.frames)} steps)")
            while self.cached and self.cached_bytes + episode.nbytes > self.cache_bytes:
                self.cached.popitem(last=False)  # the least recently shown
            self.cached[key] = episode
            return episode

    def item(self, name: str, config: str, index: int) -> dict:
        built = self.built(name, config)
        if schema.kind_of(built.spec).shown_as not in (schema.QUERY_VIEW, schema.RESPONSE_VIEW):
            raise BadRequest(404, f"{name}/{config} holds {built.spec.kind}, not queries or responses")
        if not 0 <= index < built.count:
            raise BadRequest(404, f"item {index} is out of range (0..{built.count - 1})")
        import tensorflow_datasets as tfds

        ds = built.builder.as_dataset(split="train", shuffle_files=False).skip(index).take(1)
        [example] = tfds.as_numpy(ds.map(lambda ex: {k: v for k, v in ex.items()
                                                     if k not in (schema.LEFT, schema.RIGHT)}))
        return example

    def video(self, name: str, config: str, query_id: str) -> bytes:
        """The mp4 of a query: from the config itself (queries), or from the built queries config it answers."""
        spec = self.built(name, config).spec
        queries = name if isinstance(spec, schema.QuerySpec) else None
        if queries is None:  # a response: the queries config of the same study, if it is built here
            queries = next((d for d, cs in schema.DATASETS.items() for c, s in cs.items()
                            if isinstance(s, schema.QuerySpec) and s.queries_file == spec.queries_file), None)
        if queries is None:
            raise BadRequest(404, "no queries config holds this query's video")
        qconfig = next(c for c, s in schema.DATASETS[queries].items() if isinstance(s, schema.QuerySpec))
        built = self.built(queries, qconfig)
        import tensorflow as tf
        import tensorflow_datasets as tfds

        ds = built.builder.as_dataset(split="train", shuffle_files=False)
        ds = ds.filter(lambda ex: tf.equal(ex[schema.QUERY_ID], query_id)).map(lambda ex: ex[schema.VIDEO]).take(1)
        found = list(tfds.as_numpy(ds))
        if not found:
            raise BadRequest(404, f"query {query_id[:40]} is not in {queries}/{qconfig}")
        return bytes(found[0])


# --- pages ----------------------------------------------------------------------------------------------

def _page(title: str, body: str, scripts: str = "") -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<link rel="stylesheet" href="/static/serve.css">{scripts}</head><body>'
            f'<header><a href="/">DROPJ datasets</a></header><main>{body}</main></body></html>')


STATS_HEAD = '<link rel="stylesheet" href="/static/stats.css"><script src="/static/sortable.js" defer></script>'


def index_page(browser: Browser) -> str:
    """Every built config: how many items this build holds, and what the config is (a release config's
    description counts the whole release)."""
    rows = []
    for d in browser.datasets():
        spec = schema.spec_for(d["name"], d["config"])
        path = f'{d["name"]}/{d["config"]}'
        rows.append([views.Cell(f'<a href="/d/{path}">{path}</a>', path, markup=True), d["version"], d["kind"],
                     views.Cell(f'{d["items"]:,} {views.noun(spec, d["items"] != 1)}', d["items"]),
                     views.Cell(f'{d["bytes"] / 1e6:.2f}', d["bytes"], number=True),
                     views.about(spec, d["name"]) if d["version"] != "?" else d["description"]])
    where = html.escape(str(browser.data_dir))
    body = (f"<h1>Built under {where}</h1>"
            + views.table(["dataset/config", "version", "kind", "this build holds", "MB", "about"], rows)
            if rows else f"<p>No DROPJ dataset is built under {where}.</p>")
    return _page("DROPJ datasets", body, STATS_HEAD)


def dataset_page(browser: Browser, name: str, config: str) -> str:
    """The config's statistics page (`views.report`), each item linked to its page; kept for its figures."""
    built = browser.built(name, config)
    stats = views.statistics(built)
    key = hashlib.sha1(pickle.dumps((name, config, built.count, stats), protocol=5)).digest()
    with browser.pages_lock:
        if key in browser.pages:
            browser.pages.move_to_end(key)
            return browser.pages[key]
    report = views.report(built, stats, link=f"/d/{name}/{config}/")
    page = _page(f"{name}/{config}", report.split("<body>", 1)[1].rsplit("</body>", 1)[0], STATS_HEAD)
    with browser.pages_lock:
        browser.pages[key] = page
        while len(browser.pages) > PAGES_KEPT:
            browser.pages.popitem(last=False)
    return page


SPEEDS = (0.25, 0.5, 1, 2, 4)  # the player's paces, times the recorded one


def player_page(name: str, config: str, index: int) -> str:
    """The episode player's page: the frame (a loading or error state over it), step, action, reward and flags
    beside it, the padding step's banner, the heat maps' legend, the controls and the keys (static/player.js
    fills it in from `/api/episode/...` and plays it)."""
    speeds = "".join(f'<option value="{s:g}"{" selected" if s == 1 else ""}>{s:g}x</option>' for s in SPEEDS)
    body = (
        f'<h1><a href="/d/{name}/{config}">{name}/{config}</a>, episode {index}</h1>'
        f'<div id="player" data-source="/api/episode/{name}/{config}/{index}" '
        f'data-frames="/frame/{name}/{config}/{index}/" data-state="loading">'
        '<div id="screen"><img id="frame" alt="the frame of the step shown">'
        '<div id="badge">padding step</div>'
        '<div id="status" role="status"><span class="spinner"></span><span id="status-text">loading the episode'
        '\u2026</span></div></div>'
        '<div id="info"><div id="overlay" aria-live="polite"></div>'
        '<div id="padding" hidden><strong>Padding step:</strong> the episode\'s final state. No action was taken '
        'here: the action and reward stored on this step are padding (zeros), not something that happened.</div>'
        '<div id="legend" hidden><div class="caption">Heat map: one cell per value of the latent state, row by '
        'row</div><div class="bar"></div><div class="ticks"><span id="legend-min"></span><span>0</span>'
        '<span id="legend-max"></span></div><p>Blue below 0, red above, full colour at \u00b1 the scale (the 99th '
        'percentile of |value| in this episode); grey: cells past the last value.</p></div></div>'
        '<div id="controls"><button id="back" type="button" title="Left arrow">\u25c0 Step back</button>'
        '<button id="play" type="button" title="Space">\u25b6 Play</button>'
        '<button id="forward" type="button" title="Right arrow">Step forward \u25b6</button>'
        f'<label>Speed <select id="speed">{speeds}</select></label> <span id="pace"></span>'
        '<input id="scrub" type="range" min="0" value="0" aria-label="step"></div>'
        '<p id="keys">Keys: <kbd>Space</kbd> play / pause, <kbd>\u2190</kbd> <kbd>\u2192</kbd> one step back / '
        'forward, <kbd>Home</kbd> <kbd>End</kbd> the first / last step.</p></div>')
    return _page(f"{name}/{config} episode {index}", body, '<link rel="stylesheet" href="/static/player.css">'
                 '<script src="/static/player.js" defer></script>')


def item_page(browser: Browser, name: str, config: str, index: int) -> str:
    example = browser.item(name, config, index)
    query_id = views.text(example[schema.QUERY_ID])
    parts = [f'<h1><a href="/d/{name}/{config}">{name}/{config}</a>, item {index}: query {html.escape(query_id)}</h1>',
             f'<video id="query" controls muted src="/video/{name}/{config}/{html.escape(query_id)}" '
             'width="1000" height="500"></video>']
    if schema.RESPONSE in example:
        response = example[schema.RESPONSE]
        answers = response[schema.ANSWERS]
        rows = "".join(f"<tr><td>{html.escape(views.text(q))}</td><td class='answer'>{html.escape(views.text(a))}"
                       f"</td><td>{f'{s:.2f}' if math.isfinite(s) else 'not recorded'}</td></tr>"
                       for q, a, s in zip(answers[schema.QUESTION], answers[schema.ANSWER], answers[schema.SECONDS]))
        label = float(example[schema.LABEL])
        parts.append(
            f'<p>user {int(example[schema.ANNOTATOR][schema.USER_ID])}, '
            f'{"skipped" if response[schema.SKIPPED] else "answered"} in {float(response[schema.TOTAL_TIME]):.2f} s, '
            f'{schema.counted(int(response[schema.REPEAT_COUNT]), "repeat")}</p>'
            f'<table><tr><th>question</th><th>answer</th><th>seconds</th></tr>{rows}</table>'
            f'<p id="label">label P(left preferred): {"none (skipped)" if math.isnan(label) else f"{label:g}"}</p>')
    return _page(f"{name}/{config} item {index}", "".join(parts))


def png(frame: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    return buffer.getvalue()


# --- the app --------------------------------------------------------------------------------------------

def build_app(browser: Browser, access: auth.Access) -> Any:
    """The read-only app behind the guard (a route takes GET and HEAD only: anything else is a 405)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    def text(request: Any, key: str) -> str:
        value = request.path_params[key]
        if not value.replace("_", "").replace(".", "").isalnum() or len(value) > 64:
            raise BadRequest(404, f"bad {key}")
        return value

    def number(request: Any, key: str) -> int:
        return auth.bounded_int(request.path_params[key], key)

    def route(handler: Callable[[Any], Any]) -> Callable:
        async def endpoint(request):
            result = await run_in_threadpool(handler, request)
            if isinstance(result, Response):
                return result
            if isinstance(result, str):
                return HTMLResponse(result, headers={"content-security-policy":
                                                     "default-src 'self'; img-src 'self' data:; media-src 'self'"})
            return JSONResponse(result)
        return endpoint

    def episode_json(request):
        episode = browser.episode(text(request, "name"), text(request, "config"), number(request, "index"))
        return {"steps": len(episode.frames), "fps": episode.fps, "latent": episode.latent,
                "decoded": episode.latent and episode.scale is None,  # by --vae: the first decode takes seconds
                "scale": episode.scale, "padding_last": episode.padding_last,
                "actions": np.round(episode.actions, 4).tolist(), "rewards": episode.rewards.tolist(),
                "flags": episode.flags}

    def frame(request):
        episode = browser.episode(text(request, "name"), text(request, "config"), number(request, "index"))
        t = number(request, "step")
        if not 0 <= t < len(episode.frames):
            raise BadRequest(404, "no such step")
        return Response(png(episode.frames[t]), media_type="image/png")

    def video(request):
        data = browser.video(text(request, "name"), text(request, "config"), text(request, "query"))
        return Response(data, media_type="video/mp4")

    def player(request):
        name, config, index = text(request, "name"), text(request, "config"), number(request, "index")
        browser.episode(name, config, index)  # a 404 (or 413) now, not in the player
        return player_page(name, config, index)

    routes = [
        Route("/", route(lambda request: index_page(browser))),
        Route("/d/{name}/{config}", route(lambda r: dataset_page(browser, text(r, "name"), text(r, "config")))),
        Route("/d/{name}/{config}/episode/{index}", route(player)),
        Route("/d/{name}/{config}/item/{index}",
              route(lambda r: item_page(browser, text(r, "name"), text(r, "config"), number(r, "index")))),
        Route("/api/episode/{name}/{config}/{index}", route(episode_json)),
        Route("/frame/{name}/{config}/{index}/{step}.png", route(frame)),
        Route("/video/{name}/{config}/{query}", route(video)),
        Mount("/static", app=StaticFiles(directory=STATIC, follow_symlink=False), name="static"),
    ]
    return Starlette(routes=routes, middleware=[auth.middleware(access)])


def run(data_dir: str, *, host: str = "127.0.0.1", port: int = 8000, vae: Optional[str] = None,
        allow_hosts: Sequence[str] = (), log: Callable[[str], None] = print) -> None:
    """`dropj serve`: serve until Ctrl-C."""
    if not Path(data_dir).is_dir():
        raise schema.DataError(f"{data_dir}: no such directory")
    sock, access = auth.bind(host, port, allow_hosts)  # a busy port: one line, before anything is printed
    browser = Browser(data_dir, vae=vae)
    try:
        log(f"{len(browser.datasets())} built configs under {data_dir}")
    except BaseException:
        sock.close()
        raise
    log(f"open {access.url}  (Ctrl-C stops)")
    if auth.serve(build_app(browser, access), sock):
        log("stopped (Ctrl-C)")


__all__ = ["Browser", "build_app", "run"]
