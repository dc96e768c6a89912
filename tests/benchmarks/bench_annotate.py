"""Benchmark of `dropj annotate`: page load to a playable query, answer round trip, server memory.

    .venv/bin/python tests/benchmarks/bench_annotate.py [--annotators 8] [--pages 5] [--write-docs]

One run of the real server (`dropj annotate` in a subprocess) over the embedded sample's queries:

* page load: headless Chromium opens the page until the query's video can play (`readyState >= 3`);
* round trip: 8 simulated annotators (threads, each its own session and user id) answer DROPJ queries
  as the page does (`/api/question` per answer, then `/api/answer`, which commits durably before it
  returns); next to it, `/api/query` (no write) measured in the same run, as the floor;
* memory: the server's RSS, sampled every 50 ms, before and during the annotators' run;
* nothing lost: the stored responses are counted against the acknowledged ones after the run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench_build  # noqa: E402  (machine, versions, code version, publish)
import factory  # noqa: E402
from factory.web import CHROMIUM, DRIVER, Server, new_chromium  # noqa: E402

SECTION_HEADING = "## Annotating in the browser"
ROUND_TRIP_TARGET_MS = 50.0  # p99, the target


def _post(url: str, body: dict, csrf: str = "") -> tuple[float, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json", "x-dropj-csrf": csrf})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        data = json.loads(response.read())
    return (time.perf_counter() - start) * 1000, data


def _get(url: str) -> tuple[float, dict]:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        data = json.loads(response.read())
    return (time.perf_counter() - start) * 1000, data


def annotator(base: str, user: int, times: dict, acknowledged: list, think: float = 0.0) -> None:
    """Answers every query as the page would: a question call per answer, then the response.

    `think`: the longest pause before each answer (seconds, uniform from a seeded draw); 0 answers flat out.
    """
    import random

    rng = random.Random(user)
    _, session = _post(base + "/api/session", {"user": user})
    sid, csrf = session["session"], session["csrf"]
    while True:
        ms, query = _get(base + f"/api/query?session={sid}")
        times["query"].append(ms)
        if query["done"]:
            return
        answers = [["Does the left car stay safe?", "Yes"], ["Does the right car stay safe?", "No"]]
        for k in range(1, len(answers) + 1):
            time.sleep(rng.uniform(0.0, think))
            ms, _ = _post(base + "/api/question", {"session": sid, "query_id": query["query_id"],
                                                    "answers": answers[:k]}, csrf)
            times["question"].append(ms)
        ms, stored = _post(base + "/api/answer", {"session": sid, "query_id": query["query_id"], "answers": answers,
                                                  "seconds": [1.0, 0.5], "total_time": 1.75, "repeat_count": 0}, csrf)
        times["answer"].append(ms)
        acknowledged.append(stored["stored"])


def rss_sampler(pid: int, samples: list, stop: threading.Event) -> None:
    import psutil

    process = psutil.Process(pid)
    while not stop.is_set():
        try:
            samples.append(process.memory_info().rss)
        except psutil.Error:
            return
        time.sleep(0.05)


def page_loads(server: Server, pages: int) -> list[float]:
    """Seconds from navigation to a playable query video, each in a fresh session of a new user."""
    driver = new_chromium()
    out = []
    try:
        for k in range(pages):
            start = time.perf_counter()
            driver.get(server.url.rstrip("/") + f"/?user={1000 + k}")
            while driver.execute_script("const v = document.getElementById('clip'); return v && v.readyState") < 3:
                if time.perf_counter() - start > 60:
                    raise RuntimeError("the query never became playable")
                time.sleep(0.005)
            out.append(time.perf_counter() - start)
    finally:
        driver.quit()
    return out


def run_annotators(base: str, users: range, think: float) -> tuple[dict, list, float]:
    times: dict[str, list[float]] = {"query": [], "question": [], "answer": []}
    acknowledged: list[int] = []
    threads = [threading.Thread(target=annotator, args=(base, user, times, acknowledged, think)) for user in users]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return times, acknowledged, time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotators", type=int, default=8)
    parser.add_argument("--pages", type=int, default=5)
    parser.add_argument("--think", type=float, default=1.0,
                        help="paced run: the longest pause before an answer, s (the study's fastest query: 1.09 s)")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)
    if not (CHROMIUM and DRIVER):
        raise SystemExit("needs Debian's chromium and chromium-driver (make sysdeps)")
    code = bench_build.code_version()
    work = Path(tempfile.mkdtemp(prefix="dropj-bench-annotate-"))
    try:
        factory.build("dropj_carracing/queries", factory.dummy_data("dropj_carracing"), work / "data")
        server = Server(work / "data", work / "out")
        try:
            base = server.base
            loads = page_loads(server, args.pages)
            samples: list[int] = []
            stop = threading.Event()
            sampler = threading.Thread(target=rss_sampler, args=(server.proc.pid, samples, stop), daemon=True)
            sampler.start()
            time.sleep(0.3)
            idle_rss = max(samples)
            times, acknowledged, wall = run_annotators(base, range(args.annotators), args.think)
            flat, flat_acknowledged, flat_wall = run_annotators(base, range(args.annotators, 2 * args.annotators), 0.0)
            stop.set()
            sampler.join()
        finally:
            server.kill(signal.SIGTERM)
        stored = len(server.responses())
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def row(name: str, values: list[float]) -> str:
        return (f"| {name} | {len(values)} | {statistics.median(values):.1f} | {percentile(values, 99):.1f} | "
                f"{max(values):.1f} |")

    acknowledged_all = len(acknowledged) + len(flat_acknowledged)

    p99 = percentile(times["answer"], 99)
    section = "\n".join([
        SECTION_HEADING, "",
        f"Measured {time.strftime('%Y-%m-%d')} with `.venv/bin/python tests/benchmarks/bench_annotate.py "
        f"--annotators {args.annotators} --pages {args.pages}{' --write-docs' if args.write_docs else ''}`, on "
        f"{bench_build.machine()}; {bench_build.versions()}, starlette {bench_build.version('starlette')}, "
        f"uvicorn {bench_build.version('uvicorn')}, Debian chromium; {code}.", "",
        f"`dropj annotate --method dropj` over the embedded sample's 10 queries, the real server in its own process. "
        f"*Page load*: headless Chromium from navigation until the query's video can play (`readyState >= 3`), "
        f"{args.pages} fresh sessions. *Round trips*: {args.annotators} simulated annotators at once (threads, each "
        f"its own session and user id) answering every query as the page does: one `/api/question` per answer, "
        f"then `/api/answer`, which writes, flushes and lists the response before it replies; `/api/query` (no "
        f"write) is the floor, measured in the same run. *Paced*: a pause of up to {args.think:g} s (uniform) before "
        f"each answer, faster than any person in the release (its quickest query took 1.09 s). *Flat out*: no "
        f"pause at all, {args.annotators} more annotators right after: commits queue behind each other. Memory is "
        f"the server's RSS sampled every 50 ms over both.", "",
        "| request | n | p50 ms | p99 ms | max ms |", "|---|---:|---:|---:|---:|",
        row("paced: `/api/answer` (durable commit)", times["answer"]), row("paced: `/api/question`", times["question"]),
        row("paced: `/api/query` (no write)", times["query"]),
        row("flat out: `/api/answer`", flat["answer"]), row("flat out: `/api/query`", flat["query"]), "",
        "| measure | value |", "|---|---:|",
        f"| page load to a playable query, median (max) | {statistics.median(loads):.2f} s ({max(loads):.2f} s) |",
        f"| server RSS idle, peak with {args.annotators} annotators | {idle_rss / 2**20:.0f} MiB, "
        f"{max(samples) / 2**20:.0f} MiB |",
        f"| responses acknowledged, stored | {acknowledged_all}, {stored} |",
        f"| responses per second: paced, flat out | {len(acknowledged) / wall:.1f}, "
        f"{len(flat_acknowledged) / flat_wall:.1f} |",
        f"| paced answer round trip p99 < {ROUND_TRIP_TARGET_MS:.0f} ms | "
        f"{'met' if p99 < ROUND_TRIP_TARGET_MS else 'NOT met'} ({p99:.1f} ms) |",
        "| answer p50 / query p50 (the cost of the durable commit) | "
        f"{statistics.median(times['answer']) / statistics.median(times['query']):.1f}x |",
    ])
    bench_build.publish(section, args.write_docs)
    return 0 if stored == acknowledged_all else 1


if __name__ == "__main__":
    raise SystemExit(main())
