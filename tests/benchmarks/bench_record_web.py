"""Benchmark of `dropj record --web`: steps/s per session, key-to-applied-step latency, frames delivered,
CPU per session, how many sessions keep the study's pace, and the frame encodings it chose between.

    .venv/bin/python tests/benchmarks/bench_record_web.py [--sessions 1,2,3,4,5,6] [--steps 500] [--write-docs]

In one run, on the same machine:

* encodings: the driver's view (1000x800, `DropjCarRacing-v0` driven by a seeded keyboard script) encoded
  by each candidate in this process (ms per frame, KiB per frame, what 50 frames/s cost in CPU and
  bandwidth), and decoded in headless Chromium the way the page does (`createImageBitmap` on a Blob);
* Chromium: the real page in headless Chromium, one participant, keys pressed and released through
  Selenium following a seeded human-like script; the page's own `keydown`/`keyup` times (a listener added
  by the benchmark, `performance.timeOrigin + performance.now()`) are matched to the recorded steps;
* sessions: for each count in `--sessions`, a fresh `dropj record --web` (its own process) and that many
  participants at once, each a WebSocket client thread here (the page's protocol: key state on change,
  every frame received and counted), each following its own seeded script, for one episode of `--steps`.

Every figure comes from what was recorded: a session's steps/s is (steps - 1) over the time between its
first and last `wall_time`; a key event's latency is from its send time to the `wall_time` of the
observation that followed the first action taken with the new key state. That `wall_time` is stamped after
the physics step, so the figure is an upper bound by one env step (about 3 ms). CPU is the server process's
user + system time over the sessions' run (psutil), per session and per wall second.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench_build  # noqa: E402  (machine, versions, code version, publish)
from factory.web import CHROMIUM, DRIVER, new_chromium, wait_for  # noqa: E402
from factory.web import RecordServer  # noqa: E402  (`dropj record --web` in a subprocess)

SECTION_HEADING = "## Recording in the browser"
FPS = 50.0
STEPS_TARGET = 49.5  # steps/s per session, the target
LATENCY_TARGET_MS = 60.0  # p99, the target
KEY_NAMES = ("ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown")  # the order of `keys_held`
ENCODE_FRAMES = 60
SETTLED_FRAMES = 1  # a participant's script starts once the track is shown (an episode waits for its first key)
SELENIUM_KEYS = {"ArrowLeft": "LEFT", "ArrowRight": "RIGHT", "ArrowUp": "UP", "ArrowDown": "DOWN"}


# --- the participants' keys ----------------------------------------------------------------------------


def key_events(seed: int, seconds: float) -> list[tuple[float, str, bool]]:
    """(seconds from the start, key, down) of a seeded human-like script: segments of 0.16..1.2 s, in each
    Up held 75 % of the time, Down 10 %, Left or Right a quarter of the time each (bench_record's script)."""
    rng = np.random.default_rng(seed)
    held = dict.fromkeys(KEY_NAMES, False)
    events, t = [], 0.5
    while t < seconds:
        steer = rng.choice(["none", "ArrowLeft", "ArrowRight"], p=[0.5, 0.25, 0.25])
        want = {"ArrowLeft": steer == "ArrowLeft", "ArrowRight": steer == "ArrowRight",
                "ArrowUp": bool(rng.random() < 0.75), "ArrowDown": bool(rng.random() < 0.10)}
        for key in KEY_NAMES:  # releases first, then presses, as a hand changes keys
            if held[key] and not want[key]:
                events.append((t, key, False))
                held[key] = False
        for key in KEY_NAMES:
            if want[key] and not held[key]:
                events.append((t, key, True))
                held[key] = True
        t += float(rng.uniform(0.16, 1.2))
    return events


def latencies(sent: list[tuple[float, str, bool]], wall_time: np.ndarray, keys_held: np.ndarray) -> tuple[list, int]:
    """Milliseconds from each key event's send time to the step that applied it (see the module's text), and the
    number of events never applied before the same key changed again. Events sent after the episode's last
    action was read are left out."""
    out, missed = [], 0
    for n, (t, key, down) in enumerate(sent):
        if t >= wall_time[-2]:
            continue
        k = KEY_NAMES.index(key)
        later = [s for s, other, _ in sent[n + 1:] if other == key]
        until = later[0] if later else np.inf
        # action j was read between wall_time[j] and wall_time[j + 1]
        candidates = np.flatnonzero((wall_time[1:] >= t) & (keys_held[:len(wall_time) - 1, k] == down))
        if not len(candidates) or wall_time[candidates[0] + 1] >= until:
            missed += 1
            continue
        out.append((wall_time[candidates[0] + 1] - t) * 1000)
    return out, missed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))] if ordered else float("nan")


# --- sessions over WebSocket ---------------------------------------------------------------------------


class Participant(threading.Thread):
    """One participant speaking the page's protocol: sends its script's key events on time, receives every
    frame (counted, with arrival times) until the server says its session is done."""

    def __init__(self, url: str, user: str, seed: int, seconds: float, start: threading.Barrier):
        super().__init__(daemon=True)
        self.url, self.user, self.script, self.start_barrier = url, user, key_events(seed, seconds), start
        self.sent: list[tuple[float, str, bool]] = []
        self.frame_times: list[float] = []
        self.frame_bytes = 0
        self.done: Optional[dict] = None
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        import websocket

        try:
            ws = websocket.create_connection(f"{self.url}?user={self.user}", timeout=120)
            json.loads(ws.recv())  # hello
            receiver = threading.Thread(target=self._receive, args=(ws,), daemon=True)
            receiver.start()
            wait_for(lambda: len(self.frame_times) >= SETTLED_FRAMES or self.done, 120, "no frames came")
            self.start_barrier.wait()  # a person's first key comes well after the page opens
            begin = time.monotonic()
            for offset, key, down in self.script:
                wait = begin + offset - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if self.done is not None:
                    break
                self.sent.append((time.time(), key, down))
                ws.send(json.dumps({"key": key, "down": down}))
            receiver.join()
            ws.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the run
            self.error = exc

    def _receive(self, ws: Any) -> None:
        while self.done is None:
            message = ws.recv()
            if isinstance(message, bytes):
                self.frame_times.append(time.monotonic())
                self.frame_bytes += len(message)
            elif message:
                status = json.loads(message)
                if status.get("done") or status.get("error"):
                    self.done = status

    def frames_per_s(self) -> float:
        times = self.frame_times
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


def recorded(server: RecordServer) -> dict[str, dict]:
    """Per user: the recorded episode's wall times and keys held."""
    from dropj_datasets import schema

    out = {}
    for episode in server.episodes():
        steps = episode[schema.STEPS]
        user = episode[schema.EPISODE_METADATA][schema.USER_ID_TEXT].decode()
        out[user] = {"wall_time": np.array([s[schema.WALL_TIME] for s in steps]),
                     "keys_held": np.array([s[schema.KEYS_HELD] for s in steps])}
    return out


def steps_per_s(wall_time: np.ndarray) -> float:
    return (len(wall_time) - 1) / (wall_time[-1] - wall_time[0])


def intervals_ms(wall_time: np.ndarray) -> np.ndarray:
    return np.diff(wall_time[1:]) * 1000  # the reset's row left out (the first step waits for nothing)


def tree_cpu(process: Any) -> float:
    """CPU seconds (user + system) of the server and its session processes, those alive and those ended."""
    import psutil

    times = process.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in process.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:
            pass  # ended between the two calls: counted in children_* next time
    return total


def tree_pss(process: Any) -> int:
    """Bytes of memory of the server and its sessions (PSS: shared pages split between them)."""
    import psutil

    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += bench_build._pss_bytes(member.pid)
        except (OSError, psutil.Error):
            pass
    return total


def session_processes(process: Any) -> list:
    """The server's session processes (`session.COMMAND`), the one waiting for the next participant included."""
    import psutil

    from dropj.converters.recording import session

    out = []
    for child in process.children():
        try:
            if session.COMMAND in child.cmdline():
                out.append(child)
        except psutil.Error:
            pass
    return out


def own_cpu() -> float:
    """CPU seconds of this process (the participants' threads, during a run)."""
    times = os.times()
    return times.user + times.system


def run_sessions(count: int, steps: int, workdir: Path) -> dict:
    """`count` participants at once on a fresh server, one episode of `steps` each."""
    import psutil

    out = workdir / f"sessions-{count}"
    server = RecordServer(out, "--max_steps", str(steps), "--episodes", "1", "--seed", "1000",
                          "--max_sessions", str(max(count, 1)))
    try:
        process = psutil.Process(server.proc.pid)
        barrier = threading.Barrier(count + 1)
        seconds = steps / FPS + 5
        participants = [Participant(f"ws://127.0.0.1:{server.port}/ws", f"bench-{k}", 20261203 + k, seconds, barrier)
                        for k in range(count)]
        for participant in participants:
            participant.start()
        barrier.wait(timeout=120)
        cpu_before, wall_before, clients_before = tree_cpu(process), time.monotonic(), own_cpu()
        parent_before = sum(process.cpu_times()[:2])
        rss = [tree_pss(process)]
        while any(p.is_alive() for p in participants):
            time.sleep(0.1)
            rss.append(tree_pss(process))
        wall = time.monotonic() - wall_before
        clients = own_cpu() - clients_before
        # every session's process has ended; the one started ahead for the next participant waits on
        wait_for(lambda: len(session_processes(process)) <= 1, 60, "the session processes never ended")
        cpu = tree_cpu(process) - cpu_before
        parent_cpu = sum(process.cpu_times()[:2]) - parent_before
    finally:
        server.stop()
    failed = [p.error for p in participants if p.error is not None]
    if failed:
        raise RuntimeError(f"{count} sessions: a participant failed: {failed[0]!r}")
    episodes = recorded(server)
    if len(episodes) != count:
        raise RuntimeError(f"{count} sessions: {len(episodes)} episodes recorded")
    rates, lat, missed, worst_intervals = [], [], 0, []
    for participant in participants:
        episode = episodes[participant.user]
        rates.append(steps_per_s(episode["wall_time"]))
        ms, miss = latencies(participant.sent, episode["wall_time"], episode["keys_held"])
        lat += ms
        missed += miss
        worst_intervals.append(percentile(list(intervals_ms(episode["wall_time"])), 99))
    return {"count": count, "rates": rates, "latency": lat, "missed": missed, "events": sum(len(p.sent) for p in
                                                                                             participants),
            "frames_per_s": [p.frames_per_s() for p in participants],
            "kib_per_s": [p.frame_bytes / 1024 / (p.frame_times[-1] - p.frame_times[0]) for p in participants],
            "cpu_cores": cpu / wall, "cpu_per_session": cpu / wall / count, "interval_p99": max(worst_intervals),
            "server_cores": parent_cpu / wall, "clients_cores": clients / wall, "rss_peak": max(rss),
            "steps": [len(episodes[p.user]["wall_time"]) - 1 for p in participants]}


# --- one participant in Chromium -----------------------------------------------------------------------

LISTEN = """
window.benchKeys = [];
const note = (down) => (event) => { if (event.key.startsWith('Arrow') && !event.repeat)
  window.benchKeys.push([(performance.timeOrigin + performance.now()) / 1000, event.key, down]); };
addEventListener('keydown', note(true)); addEventListener('keyup', note(false));
"""


def run_chromium(steps: int, workdir: Path) -> dict:
    """The real page, keys through Selenium on the script's times; frames shown counted by the page."""
    import psutil
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    out = workdir / "chromium"
    server = RecordServer(out, "--max_steps", str(steps), "--episodes", "1", "--seed", "2000")
    driver = new_chromium()
    try:
        process = psutil.Process(server.proc.pid)
        driver.get(server.base + "/?user=chromium")
        state = lambda: driver.execute_script("return window.dropjRecord") or {}  # noqa: E731
        wait_for(lambda: state().get("phase") == "ready", 60, lambda: state())
        driver.execute_script(LISTEN)
        view = driver.find_element("id", "view")
        browser = psutil.Process(driver.service.process.pid)
        cpu_before, browser_before = tree_cpu(process), tree_cpu(browser)
        begin = time.monotonic()
        for offset, key, down in key_events(20261204, steps / FPS + 5):
            wait = begin + offset - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if state().get("done"):
                break
            chain = ActionChains(driver)
            (chain.key_down if down else chain.key_up)(getattr(Keys, SELENIUM_KEYS[key]), view).perform()
        final = wait_for(lambda: state().get("done") and state(), 120, lambda: state())
        wall = time.monotonic() - begin
        cpu, browser_cpu = tree_cpu(process) - cpu_before, tree_cpu(browser) - browser_before
        sent = [(t, key, down) for t, key, down in driver.execute_script("return window.benchKeys")]
    finally:
        driver.quit()
        server.stop()
    episode = recorded(server)["chromium"]
    lat, missed = latencies(sent, episode["wall_time"], episode["keys_held"])
    episode_seconds = episode["wall_time"][-1] - episode["wall_time"][0]
    return {"rate": steps_per_s(episode["wall_time"]), "latency": lat, "missed": missed, "events": len(sent),
            "frames_shown_per_s": final["framesShown"] / episode_seconds, "frames_shown": final["framesShown"],
            "frames_received": final["frames"],
            "interval_p99": percentile(list(intervals_ms(episode["wall_time"])), 99),
            "cpu_cores": cpu / wall, "browser_cores": browser_cpu / wall, "steps": len(episode["wall_time"]) - 1}


# --- the encodings -------------------------------------------------------------------------------------


def candidate_encoders() -> dict[str, Any]:
    """name -> encode(PIL image) -> bytes; the first is what `dropj record --web` sends."""
    from PIL import Image

    from dropj.converters.recording import session as session_lib

    def pillow(fmt: str, size: Optional[tuple[int, int]] = None, **options: Any):
        def encode(image: Any) -> bytes:
            if size:
                image = image.resize(size, Image.BILINEAR)
            buffer = io.BytesIO()
            image.save(buffer, format=fmt, **options)
            return buffer.getvalue()
        return encode

    return {
        f"JPEG q{session_lib.JPEG_QUALITY} (sent)": pillow("JPEG", quality=session_lib.JPEG_QUALITY),
        "JPEG q60": pillow("JPEG", quality=60),
        "JPEG q80, 500x400 (page scales up)": pillow("JPEG", (500, 400), quality=80),
        "PNG, zlib level 1": pillow("PNG", compress_level=1),
        "WebP lossy q80, fastest": pillow("WEBP", quality=80, method=0),
        "WebP lossless, fastest": pillow("WEBP", lossless=True, quality=0, method=0),
    }


def driver_views(count: int) -> list[Any]:
    """The driver's view as the web session draws it, every 5th of `5 * count` scripted steps."""
    import pygame
    from PIL import Image

    from dropj.converters.recording import capture as record, controls

    env = record.make_env("carracing", 10 * count)  # DropjCarRacing-v0, as the server makes it
    env.reset(seed=7)
    car, surface, keyboard = env.unwrapped, pygame.Surface((1000, 800)), controls.Keyboard()
    names = {"ArrowLeft": "left", "ArrowRight": "right", "ArrowUp": "up", "ArrowDown": "down"}
    events = key_events(7, 5 * count / FPS)
    views = []
    for step in range(5 * count):
        while events and events[0][0] <= step / FPS:
            _, key, down = events.pop(0)
            (keyboard.press if down else keyboard.release)(names[key])
        env.step(keyboard.action.copy())
        if step % 5 == 4:
            car.draw(surface, indicators=True)
            views.append(Image.frombytes("RGB", surface.get_size(), pygame.image.tobytes(surface, "RGB")))
    env.close()
    return views


DECODE = """
const [frames, type, done] = [arguments[0], arguments[1], arguments[arguments.length - 1]];
(async () => {
  const blobs = frames.map((b64) => new Blob([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], {type}));
  for (const blob of blobs.slice(0, 3)) (await createImageBitmap(blob)).close();  // warm up
  const times = [];
  for (const blob of blobs) {
    const start = performance.now();
    const bitmap = await createImageBitmap(blob);
    times.push(performance.now() - start);
    bitmap.close();
  }
  done(times);
})();
"""


def measure_encodings() -> list[dict]:
    import base64

    views = driver_views(ENCODE_FRAMES)
    rows = []
    encoded_by = {}
    for name, encode in candidate_encoders().items():
        encode(views[0])  # warm up
        times, sizes, blobs = [], [], []
        for image in views:
            start = time.perf_counter()
            data = encode(image)
            times.append((time.perf_counter() - start) * 1000)
            sizes.append(len(data))
            blobs.append(data)
        encoded_by[name] = blobs
        rows.append({"name": name, "ms": statistics.median(times), "kib": statistics.median(sizes) / 1024})
    if CHROMIUM and DRIVER:
        driver = new_chromium()
        try:
            driver.set_script_timeout(120)
            driver.get("about:blank")
            for row in rows:
                kind = "image/jpeg" if row["name"].startswith("JPEG") else (
                    "image/png" if row["name"].startswith("PNG") else "image/webp")
                frames = [base64.b64encode(blob).decode() for blob in encoded_by[row["name"]]]
                row["decode_ms"] = statistics.median(driver.execute_async_script(DECODE, frames, kind))
        finally:
            driver.quit()
    return rows


# --- the report ----------------------------------------------------------------------------------------


def report(args: argparse.Namespace, encodings: list[dict], chromium: Optional[dict], sweep: list[dict],
           code: str) -> str:
    command = (f"`.venv/bin/python tests/benchmarks/bench_record_web.py --sessions {args.sessions} --steps {args.steps}"
               f"{' --write-docs' if args.write_docs else ''}`")
    lines = [
        SECTION_HEADING, "",
        f"Measured {time.strftime('%Y-%m-%d')} with {command}, on {bench_build.machine()}; {bench_build.versions()}, "
        f"starlette {bench_build.version('starlette')}, uvicorn {bench_build.version('uvicorn')}, wsproto "
        f"{bench_build.version('wsproto')}, pygame-ce {bench_build.version('pygame-ce', 'pygame')}, Debian chromium; "
        f"{code}. Load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end (1/5/15 min): the machine "
        f"is shared, and the participants (threads here, or Chromium) run on the same 2 cores as the server.", "",
        f"The real server (`dropj record --web --max_steps {args.steps} --episodes 1`, a process of its own, "
        f"`carracing`). Each participant follows its own seeded key script (segments of 0.16-1.2 s; Up 75 % of the "
        "time, Left or Right a quarter each, Down 10 %), begun once its session has shown the track (the episode "
        "starts at its first key), and "
        f"sends each change as the page does. *Steps/s* is "
        f"(steps - 1) over the time between the episode's first and last recorded `wall_time`. *Latency* runs from a "
        f"key event's send time to the recorded `wall_time` of the observation after the first action taken with "
        f"the new key state: stamped after the physics step, so an upper bound by about 3 ms; a step lasts 20 ms, "
        f"so waiting for the next step alone averages 10 ms. *CPU* is the server process's user + system time "
        f"over the run, with its session processes (one per participant), in cores (1.0 = one core busy); memory is "
        f"their PSS summed, sampled every 0.1 s.", "",
    ]
    if chromium:
        lines += [
            "### One participant in headless Chromium", "",
            "The page itself: keys pressed and released through Selenium on the script's times; the send time is "
            "the page's `keydown` / `keyup` time (`performance.timeOrigin + performance.now()`); frames shown are "
            "those the page drew (`createImageBitmap`, then the canvas).", "",
            "| steps | steps/s | step interval p99 ms | key events | latency p50 ms | p99 ms | max ms | "
            "not applied | frames drawn by the page (per s) | CPU, cores: server + session | Chromium |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {chromium['steps']} | {chromium['rate']:.2f} | {chromium['interval_p99']:.1f} | {chromium['events']} | "
            f"{percentile(chromium['latency'], 50):.1f} | {percentile(chromium['latency'], 99):.1f} | "
            f"{max(chromium['latency']):.1f} | {chromium['missed']} | "
            f"{chromium['frames_shown']} ({chromium['frames_shown_per_s']:.1f}) | "
            f"{chromium['cpu_cores']:.2f} | {chromium['browser_cores']:.2f} |", ""]
    lines += [
        "### Sessions at once", "",
        "WebSocket participants (threads of the benchmark process, receiving every frame), all starting together "
        "on a fresh server.", "",
        "| sessions | steps/s: slowest session (median) | worst step interval p99 ms | key events | latency p50 ms | "
        "p99 ms | not applied | frames received /s, slowest | KiB/s per session | CPU, cores: server + sessions "
        "(per session) | of it the server process | participants' clients | memory PSS peak MiB | "
        "all at >= 49.5 steps/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for run in sweep:
        lines.append(
            f"| {run['count']} | {min(run['rates']):.2f} ({statistics.median(run['rates']):.2f}) | "
            f"{run['interval_p99']:.1f} | {run['events']} | {percentile(run['latency'], 50):.1f} | "
            f"{percentile(run['latency'], 99):.1f} | {run['missed']} | {min(run['frames_per_s']):.1f} | "
            f"{statistics.median(run['kib_per_s']):.0f} | {run['cpu_cores']:.2f} ({run['cpu_per_session']:.2f}) | "
            f"{run['server_cores']:.2f} | {run['clients_cores']:.2f} | {run['rss_peak'] / 2**20:.0f} | "
            f"{'yes' if min(run['rates']) >= STEPS_TARGET else 'no'} |")
    lines += ["", "Why a process per session: in the first version (commit ba856f9) sessions were threads of the "
                  "server. Measured then with this benchmark's first version, 300-step episodes: 1 session 50.13 "
                  "steps/s at 0.54 cores; 2 sessions 43.41 steps/s with 1.07 cores busy, one core's worth (the GIL "
                  "held by stepping, drawing and Python around the encoder), so no second session kept the pace. "
                  "A session now also reads the view straight from the surface's pixels (0.3 ms instead of 1.3 ms "
                  "per step)."]
    keep = [run["count"] for run in sweep if min(run["rates"]) >= STEPS_TARGET]
    most = max(keep) if keep else 0
    lines += [
        "", "### Frame encodings", "",
        f"The driver's view (1000x800, as a web session draws it) at {ENCODE_FRAMES} points of a scripted drive, "
        f"encoded in this process by Pillow; decoded in headless Chromium as the page does (`createImageBitmap` on "
        f"a Blob, median). *At 50 frames/s*: the share of one server core the encoding alone takes per session, "
        f"and the stream's bandwidth.", "",
        "| encoding | encode ms | KiB per frame | at 50 frames/s: core share | Mbit/s | page decode ms |",
        "|---|---:|---:|---:|---:|---:|"]
    for row in encodings:
        decode = f"{row['decode_ms']:.1f}" if "decode_ms" in row else "-"
        lines.append(f"| {row['name']} | {row['ms']:.2f} | {row['kib']:.1f} | {row['ms'] * FPS / 10:.1f} % | "
                     f"{row['kib'] * 1024 * 8 * FPS / 1e6:.1f} | {decode} |")
    sent = encodings[0]
    others = [row for row in encodings if not row["name"].startswith("JPEG")]
    cheapest_other = min(others, key=lambda row: row["ms"])
    lines += ["", f"Chosen: {sent['name'].replace(' (sent)', '')} at the view's full size. Encoding is paid by "
                  f"every session 50 times a second, so its cost bounds the sessions per core: "
                  f"{sent['ms']:.2f} ms is {cheapest_other['ms'] / sent['ms']:.1f}x less than the cheapest "
                  f"lossless or WebP candidate ({cheapest_other['name']}, {cheapest_other['ms']:.2f} ms); the "
                  f"price is bandwidth, {sent['kib'] * 1024 * 8 * FPS / 1e6:.1f} Mbit/s per participant at full "
                  f"pace (a slower link gets fewer frames, never later steps: only the newest frame is sent). "
                  f"q60 saves {100 * (1 - encodings[1]['kib'] / sent['kib']):.0f} % of the bytes for the same "
                  f"time; q80 is kept as the closer look to the window the study's participants saw. Half size "
                  f"costs more here, in the resize."]
    one = next((run for run in sweep if run["count"] == 1), None)
    lat_chromium = percentile(chromium["latency"], 99) if chromium else float("nan")
    lines += ["", "| target | measured | met |", "|---|---:|---|"]
    if one:
        lines.append(f"| steps/s with one session >= {STEPS_TARGET} | {min(one['rates']):.2f} | "
                     f"{'yes' if min(one['rates']) >= STEPS_TARGET else 'no'} |")
    if chromium:
        lines.append(f"| steps/s, one session in Chromium >= {STEPS_TARGET} | {chromium['rate']:.2f} | "
                     f"{'yes' if chromium['rate'] >= STEPS_TARGET else 'no'} |")
        lines.append(f"| key-to-applied-step p99 < {LATENCY_TARGET_MS:.0f} ms, Chromium | {lat_chromium:.1f} ms | "
                     f"{'yes' if lat_chromium < LATENCY_TARGET_MS else 'no'} |")
    if one:
        p99 = percentile(one["latency"], 99)
        lines.append(f"| key-to-applied-step p99 < {LATENCY_TARGET_MS:.0f} ms, one WebSocket session | {p99:.1f} ms | "
                     f"{'yes' if p99 < LATENCY_TARGET_MS else 'no'} |")
    lines += ["", f"**Sessions that keep 50 steps/s on these 2 cores: {most}** (every session at >= {STEPS_TARGET} "
                  f"steps/s, participants' clients on the same cores)."]
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", default="1,2,3,4,5,6", help="session counts to measure, comma-separated")
    parser.add_argument("--steps", type=int, default=500, help="steps per episode (the study's: 1000)")
    parser.add_argument("--no-chromium", action="store_true", help="skip the page and the decode timings")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.sessions.split(",")]
    code = bench_build.code_version()
    work = Path(tempfile.mkdtemp(prefix="dropj-bench-record-web-"))
    try:
        encodings = measure_encodings()
        print("encodings:", encodings, flush=True)
        chromium = None
        if CHROMIUM and DRIVER and not args.no_chromium:
            chromium = run_chromium(args.steps, work)
            print("chromium:", {k: v for k, v in chromium.items() if k != "latency"}, flush=True)
        sweep = []
        for count in counts:
            run = run_sessions(count, args.steps, work)
            print(f"{count} sessions:", {k: v for k, v in run.items() if k != "latency"}, flush=True)
            sweep.append(run)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    bench_build.publish(report(args, encodings, chromium, sweep, code), args.write_docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
