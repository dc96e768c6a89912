"""Reading for PyTorch: 20-step windows of 84x84 frames, without TensorFlow and through tf.data.

One run measures, each configuration in a fresh child process (its start-up and memory are its own), on
`dropj_carracing/real` built from frames of our `DropjCarRacing-v0` (bench_build's frame pool, driven like
a keyboard player), at 1x and 4x the episodes:

* the decode ceiling per core: every frame's PNG bytes of the first episodes read into memory, then decoded
  one after the other on one core by the reader's decoder (`episode_source._decode_frame`); the other
  decoders measured on the same bytes (Pillow, TensorFlow's `decode_png`, and pyspng and OpenCV when
  importable: `--candidates-path DIR` adds a folder they were `pip install --target`ed into);
* ours, the TF-free reader: `training_data.Batches(WindowDataset(EpisodeSource(D), 20), 32,
  shuffle=True).loader(num_workers=w)` for w = 0, 1, 2 (what `dropj train` reads: whole batches
  decoded straight into shared memory, forked workers kept between passes), and the plain
  `DataLoader(WindowDataset(...), batch_size=32, shuffle=True, num_workers=w, persistent_workers=True)`
  (items collated by PyTorch) at 0 and 2 workers;
* `TorchIterable` (tf.data, `rlds.transformations`, spawned workers) at 0 and 2 workers;
* a plain loop over `tfds.as_numpy`, windows stacked by hand;
* start-up: seconds from making the `EpisodeSource` (imports done) to the first batch, with the index
  kept beside the data and with none (the first use, which makes it);
* memory over a long run: ours with 2 workers for `--long-s` seconds, RSS, PSS and USS of the main
  process and of each worker every second;
* growth: start-up, throughput and memory at 1x and 4x the episodes.

*steps/s* counts delivered transitions (20 per window, 32 windows per batch); a window decodes 21 frames.

    .venv/bin/python tests/benchmarks/bench_loader.py [--episodes 20] [--long-s 60] [--rounds 3]
        [--candidates-path DIR] [--workdir DIR] [--write-docs]
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

STARTED = time.perf_counter()

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_build  # noqa: E402  (frame pool, episodes, machine and version strings, docs writer)

REPO = bench_build.REPO
SECTION_HEADING = "## Reading for PyTorch without TensorFlow: 20-step windows of 84x84 frames"
DATASET = "dropj_carracing/real"
SOURCE = bench_build.SOURCES["carracing"]
WINDOW, BATCH = 20, 32
STEPS_PER_BATCH = WINDOW * BATCH
WARMUP_BATCHES, MEASURED_BATCHES = 3, 40
CEILING_EPISODES = 3
SHUFFLE_BUFFER = 64  # TorchIterable's, in windows
DATASET_FORMAT = 1  # bump when the generated dataset changes
MIB = 1 << 20

# Targets of the issue.
SCALING_TARGET = 1.6  # 2 workers / 0 workers
CEILING_TARGET = 0.9
FIRST_BATCH_TARGET_S = 1.0
WORKER_MEMORY_TARGET_MIB = 150


# --- the datasets ------------------------------------------------------------------------------------


def ensure_dataset(workdir: Path, episodes: int) -> tuple[Path, dict]:
    """(the built version folder, its stamp), cached under workdir/loader/xN."""
    root = workdir / "loader" / f"episodes{episodes}"
    data, manual, stamp_path = root / "data", root / "manual", root / "dataset.json"
    stamp = json.loads(stamp_path.read_text()) if stamp_path.exists() else {}
    built = data / DATASET / "1.1.0"
    if stamp.get("format") == DATASET_FORMAT and built.is_dir():
        print(f"reusing {built} ({episodes} episodes)", flush=True)
        return built, stamp
    shutil.rmtree(root, ignore_errors=True)
    manual.mkdir(parents=True)
    pool = bench_build.load_pool(workdir, SOURCE)
    source = manual / SOURCE.file
    with open(source, "wb") as f:
        writer = bench_build.ReleaseListWriter(f, bench_build.PROTOCOL, episodes)
        for index in range(episodes):
            writer.append(bench_build.episode_from_pool(pool, SOURCE, index))
        writer.close()
    import tensorflow_datasets as tfds

    import dropj_datasets  # noqa: F401  (registers the builders)

    start = time.perf_counter()
    tfds.builder(DATASET, data_dir=str(data)).download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    source_bytes = source.stat().st_size
    shutil.rmtree(manual)  # the built dataset is what is cached
    built = next((data / DATASET).iterdir())
    stamp = {"format": DATASET_FORMAT, "episodes": episodes, "source_bytes": source_bytes,
             "dataset_bytes": sum(p.stat().st_size for p in built.iterdir() if p.is_file()),
             "build_s": time.perf_counter() - start}
    stamp_path.write_text(json.dumps(stamp))
    print(f"built {built} in {stamp['build_s']:.0f} s", flush=True)
    return built, stamp


# --- the children: one measurement each --------------------------------------------------------------


def _memory(pid: int) -> dict:
    import psutil

    try:
        info = psutil.Process(pid).memory_full_info()
    except psutil.Error:
        return {}
    return {"rss": info.rss / MIB, "pss": info.pss / MIB, "uss": info.uss / MIB}


def _process_memory() -> dict:
    """The main process's memory and each worker's (its child processes)."""
    import psutil

    children = psutil.Process().children(recursive=True)
    return {"main": _memory(os.getpid()), "workers": [_memory(child.pid) for child in children]}


def _steps(batch: Any) -> int:
    observation = batch["observation"]
    assert tuple(observation.shape[1:]) == (WINDOW, 84, 84, 3), observation.shape
    assert tuple(batch["next_observation"].shape) == tuple(observation.shape)
    return int(observation.shape[0]) * int(observation.shape[1])


def _timed(batches: Iterator[Any], made_at: float) -> dict:
    """First batch (seconds since `made_at`), then `MEASURED_BATCHES` after `WARMUP_BATCHES`."""
    first = next(batches)
    first_s = time.perf_counter() - made_at
    _steps(first)
    for _ in range(WARMUP_BATCHES):
        _steps(next(batches))
    start = time.perf_counter()
    steps = sum(_steps(next(batches)) for _ in range(MEASURED_BATCHES))
    seconds = time.perf_counter() - start
    return {"first_batch_s": first_s, "steps_per_s": steps / seconds}


def _forever(loader: Any) -> Iterator[Any]:
    while True:
        yield from loader


def child_ours(data: Path, workers: int, whole_batches: bool) -> dict:
    import torch.utils.data

    from dropj.loaders import EpisodeSource, WindowDataset
    from dropj.loaders.training_data import Batches, worker_context

    imported_s = time.perf_counter() - STARTED
    made_at = time.perf_counter()
    windows = WindowDataset(EpisodeSource(data), WINDOW)
    indexed_s = time.perf_counter() - made_at
    if whole_batches:
        loader = Batches(windows, BATCH, shuffle=True).loader(num_workers=workers)
    else:
        loader = torch.utils.data.DataLoader(windows, batch_size=BATCH, shuffle=True, num_workers=workers,
                                             persistent_workers=workers > 0,
                                             multiprocessing_context=worker_context() if workers else None)
    batches = _forever(loader)
    result = _timed(batches, made_at)
    result.update(imported_s=imported_s, indexed_s=indexed_s, memory=_process_memory(), windows=len(windows))
    del batches, loader  # stopped in the middle of a pass: the workers must end cleanly
    return result


def child_torchiterable(data: Path, workers: int) -> dict:
    from dropj.loaders import TorchIterable, world_model_windows

    imported_s = time.perf_counter() - STARTED
    made_at = time.perf_counter()
    iterable = TorchIterable.from_tfds(DATASET, functools.partial(world_model_windows, length=WINDOW),
                                       data_dir=str(data.parents[2]), batch_size=BATCH,
                                       shuffle_buffer=SHUFFLE_BUFFER, seed=0)

    def passes() -> Iterator[Any]:
        epoch = 0
        while True:
            iterable.set_epoch(epoch)
            yield from iterable.loader(num_workers=workers)
            epoch += 1

    batches = passes()
    result = _timed(batches, made_at)
    result.update(imported_s=imported_s, memory=_process_memory())
    batches.close()
    return result


def child_plain(data: Path) -> dict:
    import tensorflow_datasets as tfds

    import dropj_datasets  # noqa: F401

    imported_s = time.perf_counter() - STARTED
    made_at = time.perf_counter()
    builder = tfds.builder_from_directory(str(data))

    def windows() -> Iterator[dict]:
        while True:
            observations, actions, nexts = [], [], []
            for episode in tfds.as_numpy(builder.as_dataset(split="train", shuffle_files=False)):
                obs, act = [], []
                for step in episode["steps"]:
                    obs.append(step["observation"])
                    act.append(step["action"])
                for start in range(0, len(obs) - WINDOW, WINDOW):
                    observations.append(np.stack(obs[start:start + WINDOW]))
                    actions.append(np.stack(act[start:start + WINDOW]))
                    nexts.append(np.stack(obs[start + 1:start + WINDOW + 1]))
                    if len(observations) == BATCH:
                        yield {"observation": np.stack(observations), "action": np.stack(actions),
                               "next_observation": np.stack(nexts)}
                        observations, actions, nexts = [], [], []

    result = _timed(windows(), made_at)
    result.update(imported_s=imported_s, memory=_process_memory())
    return result


def child_ceiling(data: Path) -> dict:
    """Frames/s of each decoder on one core, the frames' bytes in memory; the reader's decoder first."""
    import io

    from PIL import Image

    from dropj.loaders import EpisodeSource
    from dropj.loaders.episode_source import _decode_frame
    from dropj_datasets.codec import PNG

    source = EpisodeSource(data)
    frames: list[bytes] = []
    for episode in range(CEILING_EPISODES):
        shard, offset, _, steps = (int(v) for v in source.index.records[episode])
        frames += source._items(shard, offset, source.index.items_of(episode, 0), 0, steps)
    shape = source.index_fields["observation"].shape
    reference = [_decode_frame(PNG, frame, shape) for frame in frames]

    def pillow(data: bytes) -> np.ndarray:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))

    decoders: dict[str, Callable[[bytes], np.ndarray]] = {
        "ours (`episode_source`: our indexed frames directly, others through Pillow)":
            lambda data: _decode_frame(PNG, data, shape),
        "Pillow (`Image.open(...).convert('RGB')`)": pillow}
    try:
        import pyspng

        decoders["pyspng (libspng)"] = pyspng.load
    except ImportError:
        pass
    try:
        import cv2

        cv2.setNumThreads(1)
        decoders["OpenCV `cv2.imdecode` + BGR to RGB"] = lambda data: cv2.cvtColor(
            cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    except ImportError:
        pass
    rates = {}
    for name, decode in decoders.items():
        same = all(np.array_equal(decode(frame), expected) for frame, expected in zip(frames, reference))
        best = min(_seconds(lambda decode=decode: [decode(frame) for frame in frames]) for _ in range(3))
        rates[name] = {"frames_per_s": len(frames) / best, "same": same}
    indexed = sum(frame[25] == 3 for frame in frames)  # IHDR's colour type: 3, a palette
    return {"frames": len(frames), "bytes_per_frame": sum(map(len, frames)) / len(frames),
            "indexed_fraction": indexed / len(frames), "decoders": rates,
            "parallel_frames_per_s": _parallel_ceiling(frames, shape)}


PARALLEL_S = 5.0  # seconds each process of the parallel ceiling decodes


def _decode_all(frames: list[bytes], shape: tuple[int, ...], barrier: Any, out: Any) -> None:
    from dropj.loaders.episode_source import _decode_frame
    from dropj_datasets.codec import PNG

    for frame in frames[:100]:  # warm
        _decode_frame(PNG, frame, shape)
    barrier.wait()
    start, count = time.perf_counter(), 0
    while time.perf_counter() - start < PARALLEL_S:
        for frame in frames[:500]:
            _decode_frame(PNG, frame, shape)
        count += 500
    out.put((count, time.perf_counter() - start))


def _parallel_ceiling(frames: list[bytes], shape: tuple[int, ...]) -> float:
    """Frames/s of the reader's decoder in one forked process per usable core, all decoding for the same
    `PARALLEL_S` seconds: what the cores give together (not a single core's rate times their number)."""
    import multiprocessing

    from dropj_datasets.codec import usable_cpus

    context = multiprocessing.get_context("fork")
    cores = usable_cpus()
    barrier, out = context.Barrier(cores), context.Queue()
    processes = [context.Process(target=_decode_all, args=(frames, shape, barrier, out)) for _ in range(cores)]
    for process in processes:
        process.start()
    results = [out.get() for _ in processes]
    for process in processes:
        process.join()
    return sum(count / seconds for count, seconds in results)


def child_torch_import() -> dict:
    """The memory of a process that imports torch and nothing else: the floor of any DataLoader worker."""
    import resource

    import torch  # noqa: F401

    return {"rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def child_tf_decode(data: Path) -> dict:
    """`tf.io.decode_png` on the same frames, one at a time (eager, the inter-op pool of one thread)."""
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    from dropj.loaders import EpisodeSource

    source = EpisodeSource(data)
    frames = []
    for episode in range(CEILING_EPISODES):
        shard, offset, _, steps = (int(v) for v in source.index.records[episode])
        frames += source._items(shard, offset, source.index.items_of(episode, 0), 0, steps)
    tensors = [tf.constant(frame) for frame in frames]
    best = min(_seconds(lambda: [tf.io.decode_png(t, channels=3) for t in tensors]) for _ in range(3))
    return {"frames_per_s": len(frames) / best}


def child_long(data: Path, seconds: float) -> dict:
    """Ours with 2 workers for `seconds`, the memory of every process sampled each second."""
    from dropj.loaders import EpisodeSource, WindowDataset
    from dropj.loaders.training_data import Batches

    loader = Batches(WindowDataset(EpisodeSource(data), WINDOW), BATCH, shuffle=True).loader(num_workers=2)
    samples: list[dict] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(1.0):
            samples.append({"t": time.perf_counter() - start, **_process_memory()})

    start = time.perf_counter()
    steps = passes = 0
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    while time.perf_counter() - start < seconds:
        for batch in loader:
            steps += _steps(batch)
            if time.perf_counter() - start >= seconds:
                break
        else:
            passes += 1
    elapsed = time.perf_counter() - start
    stop.set()
    thread.join()
    del loader
    return {"seconds": elapsed, "steps_per_s": steps / elapsed, "passes": passes, "samples": samples}


def _seconds(run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def child_main(args: argparse.Namespace) -> int:
    if args.candidates_path:
        sys.path.append(str(args.candidates_path))
    data = Path(args.data)
    kind = args.child
    if kind == "ceiling":
        result = child_ceiling(data)
    elif kind == "torch_import":
        result = child_torch_import()
    elif kind == "tf_decode":
        result = child_tf_decode(data)
    elif kind in ("batches", "items"):
        result = child_ours(data, args.workers, whole_batches=kind == "batches")
    elif kind == "torchiterable":
        result = child_torchiterable(data, args.workers)
    elif kind == "plain":
        result = child_plain(data)
    elif kind == "long":
        result = child_long(data, args.long_s)
    else:
        raise ValueError(kind)
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# --- the parent ------------------------------------------------------------------------------------------


def run_child(args: argparse.Namespace, kind: str, data: Path, workers: int = 0, fresh_index: bool = False) -> dict:
    if fresh_index:
        shutil.rmtree(data / "dropj_index", ignore_errors=True)
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--data", str(data),
               "--workers", str(workers), "--long-s", str(args.long_s)]
    if args.candidates_path:
        command += ["--candidates-path", str(args.candidates_path)]
    env = bench_build.child_environment()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{kind} ({workers} workers) failed:\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    result["clean_stop"] = "terminate called" not in done.stderr and "Traceback" not in done.stderr
    return result


CONFIGS = [("batches", 0), ("batches", 1), ("batches", 2), ("items", 0), ("items", 2),
           ("torchiterable", 0), ("torchiterable", 2), ("plain", 0)]
NAMES = {"batches": "ours: `training_data.Batches` (whole batches), {w}",
         "items": "ours: `DataLoader(WindowDataset)` (items, default collate), {w}",
         "torchiterable": "`TorchIterable` (tf.data + rlds, spawned workers), {w}",
         "plain": "plain loop over `tfds.as_numpy`, 1 process"}


def config_name(kind: str, workers: int) -> str:
    return NAMES[kind].format(w=f"{workers} worker{'s' * (workers != 1)}")


def measure(args: argparse.Namespace, small: Path, large: Path) -> dict:
    rounds: dict[str, list[dict]] = {}
    ceilings, tf_decode = [], []
    for round_number in range(args.rounds):
        print(f"round {round_number + 1} of {args.rounds}", flush=True)
        ceilings.append(run_child(args, "ceiling", small))
        tf_decode.append(run_child(args, "tf_decode", small))
        for kind, workers in CONFIGS:
            result = run_child(args, kind, small, workers)
            rounds.setdefault(config_name(kind, workers), []).append(result)
            print(f"  {config_name(kind, workers)}: {result['steps_per_s']:,.0f} steps/s, first batch after "
                  f"{result['first_batch_s']:.2f} s", flush=True)
    growth = {}
    for label, data in (("1x", small), ("4x", large)):
        first_use = run_child(args, "batches", data, 2, fresh_index=True)
        warm = [run_child(args, "batches", data, 2) for _ in range(args.rounds)]
        zero = [run_child(args, "batches", data, 0) for _ in range(args.rounds)]
        index_bytes = sum(p.stat().st_size for p in (data / "dropj_index").iterdir())
        growth[label] = {"first_use": first_use, "warm": warm, "zero": zero, "index_bytes": index_bytes}
        print(f"  {label}: first use {first_use['first_batch_s']:.2f} s, warm "
              f"{min(r['first_batch_s'] for r in warm):.2f} s", flush=True)
    print(f"long run ({args.long_s:g} s)", flush=True)
    long = run_child(args, "long", large, 2)
    torch_only = run_child(args, "torch_import", small)
    return {"rounds": rounds, "ceilings": ceilings, "tf_decode": tf_decode, "growth": growth, "long": long,
            "torch_import": torch_only}


# --- the report ------------------------------------------------------------------------------------------


def rates_text(values: Any) -> str:
    return ", ".join(f"{x:,.0f}" for x in values)


def best(results: list[dict]) -> dict:
    return max(results, key=lambda r: r["steps_per_s"])


def report(args: argparse.Namespace, stamps: dict, m: dict, loads: tuple[str, str]) -> str:
    ceiling_runs = m["ceilings"]
    ours_name = next(iter(ceiling_runs[0]["decoders"]))
    per_core = max(r["decoders"][ours_name]["frames_per_s"] for r in ceiling_runs)
    ceiling_steps = per_core * WINDOW / (WINDOW + 1)  # a window of 20 steps decodes 21 frames
    parallel_steps = max(r["parallel_frames_per_s"] for r in ceiling_runs) * WINDOW / (WINDOW + 1)
    from dropj_datasets.codec import usable_cpus

    cores = usable_cpus()

    def ceiling_of(workers: int) -> float:
        return ceiling_steps if workers <= 1 else parallel_steps
    rows = ["| reader | first batch after s | steps/s (best round) | / ceiling of its cores | steps/s of each round "
            "| stopped cleanly |", "|---|---:|---:|---:|---:|---|"]
    for name, results in m["rounds"].items():
        top = best(results)
        workers = 0 if "0 workers" in name or "1 process" in name else (1 if "1 worker" in name else 2)
        rows.append(f"| {name} | {min(r['first_batch_s'] for r in results):.2f} | {top['steps_per_s']:,.0f} "
                    f"| {top['steps_per_s'] / ceiling_of(workers):.2f} "
                    f"| {rates_text(r['steps_per_s'] for r in results)} "
                    f"| {'yes' if all(r['clean_stop'] for r in results) else '**no**'} |")
    decoders = ["| decoder, one core, frames in memory | frames/s (best of 3, each round) | / Pillow "
                "| same frames as ours |", "|---|---:|---:|---|"]
    pillow_name = next(name for name in ceiling_runs[0]["decoders"] if name.startswith("Pillow"))
    pillow = max(r["decoders"][pillow_name]["frames_per_s"] for r in ceiling_runs)
    for name in ceiling_runs[0]["decoders"]:
        rates = [r["decoders"][name]["frames_per_s"] for r in ceiling_runs]
        decoders.append(f"| {name} | {max(rates):,.0f} ({rates_text(rates)}) "
                        f"| {max(rates) / pillow:.2f} | "
                        f"{'yes' if ceiling_runs[0]['decoders'][name]['same'] else 'no'} |")
    tf_rates = [r["frames_per_s"] for r in m["tf_decode"]]
    decoders.append(f"| TensorFlow `tf.io.decode_png` (eager, one thread) | {max(tf_rates):,.0f} "
                    f"({rates_text(tf_rates)}) | {max(tf_rates) / pillow:.2f} | yes |")
    candidates = {"pyspng", "OpenCV"}
    missing = [c for c in sorted(candidates) if not any(n.startswith(c) for n in ceiling_runs[0]["decoders"])]

    batches = {w: best(m["rounds"][config_name("batches", w)]) for w in (0, 1, 2)}
    scaling = batches[2]["steps_per_s"] / batches[0]["steps_per_s"]
    zero_ratio = batches[0]["steps_per_s"] / ceiling_steps
    two_ratio = batches[2]["steps_per_s"] / ceiling_of(2)
    workers_2 = batches[2]["memory"]["workers"]
    worker_rss = max(w["rss"] for w in workers_2)
    worker_uss = max(w["uss"] for w in workers_2)
    worker_pss = max(w["pss"] for w in workers_2)
    growth_rows = ["| episodes | steps | index file | first use: index made + first batch s | first batch s, "
                   "index kept | steps/s, 0 workers | steps/s, 2 workers | main process RSS / USS MiB "
                   "| each worker RSS / USS MiB |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, g in m["growth"].items():
        stamp = stamps[label]
        warm = best(g["warm"])
        growth_rows.append(
            f"| {label}: {stamp['episodes']} | {stamp['episodes'] * bench_build.STEPS_PER_EPISODE:,} "
            f"| {g['index_bytes'] / 1024:.0f} KiB | {g['first_use']['first_batch_s']:.2f} "
            f"| {min(r['first_batch_s'] for r in g['warm']):.2f} | {best(g['zero'])['steps_per_s']:,.0f} "
            f"| {warm['steps_per_s']:,.0f} | {warm['memory']['main']['rss']:.0f} / {warm['memory']['main']['uss']:.0f} "
            f"| {max(w['rss'] for w in warm['memory']['workers']):.0f} / "
            f"{max(w['uss'] for w in warm['memory']['workers']):.0f} |")
    long = m["long"]
    samples = long["samples"]

    def total(sample: dict, key: str) -> float:
        return sample["main"].get(key, 0) + sum(w.get(key, 0) for w in sample["workers"])

    pss = [total(s, "pss") for s in samples]
    worker_uss_series = [max((w.get("uss", 0) for w in s["workers"]), default=0) for s in samples]
    half = len(pss) // 2
    growth_mib = max(pss[half:]) - max(pss[:half] or pss)
    first_warm = {label: min(r["first_batch_s"] for r in g["warm"]) for label, g in m["growth"].items()}
    targets = [
        ("2 workers >= 1.6x the 0-worker rate", f"{scaling:.2f}x", scaling >= SCALING_TARGET),
        ("0 workers >= 0.9x the decode ceiling of one core", f"{zero_ratio:.2f}x", zero_ratio >= CEILING_TARGET),
        (f"2 workers >= 0.9x the decode ceiling of the {cores} cores together", f"{two_ratio:.2f}x",
         two_ratio >= CEILING_TARGET),
        ("first batch < 1 s (index kept; 1x and 4x)",
         " / ".join(f"{first_warm[k]:.2f} s" for k in first_warm), max(first_warm.values()) < FIRST_BATCH_TARGET_S),
        ("memory per worker < 150 MB (USS: what each worker adds)", f"{worker_uss:.0f} MiB",
         worker_uss < WORKER_MEMORY_TARGET_MIB),
        ("memory per worker < 150 MB (RSS, shared pages of torch counted in full)", f"{worker_rss:.0f} MiB",
         worker_rss < WORKER_MEMORY_TARGET_MIB),
        ("flat memory over the long run (peak PSS, 2nd half vs 1st)", f"{growth_mib:+.0f} MiB",
         growth_mib <= max(16, 0.03 * max(pss))),
    ]
    command = ".venv/bin/python tests/benchmarks/bench_loader.py" + (
        f" --episodes {args.episodes}" if args.episodes != 20 else "") + (
        f" --long-s {args.long_s:g}" if args.long_s != 60 else "") + (
        f" --rounds {args.rounds}" if args.rounds != 3 else "") + (
        " --candidates-path DIR" if args.candidates_path else "") + " --write-docs"
    small = stamps["1x"]
    lines = [
        SECTION_HEADING, "",
        f"Measured {datetime.date.today().isoformat()} with `{command}`, on {bench_build.machine()}; "
        f"{bench_build.versions()}, torch {bench_build.version('torch')}; "
        f"{m.get('code') or bench_build.code_version()}; load "
        f"average {loads[0]} at the start and {loads[1]} at the end (1/5/15 min).", "",
        f"Dataset: `{DATASET}` built by `tfds build` from a release-format `{SOURCE.file}` of {small['episodes']} "
        f"episodes of {bench_build.STEPS_PER_EPISODE} steps of our `DropjCarRacing-v0` frames driven like a "
        f"keyboard player ({small['dataset_bytes'] / 1e6:.0f} MB built; 4x: {stamps['4x']['episodes']} episodes, "
        f"{stamps['4x']['dataset_bytes'] / 1e6:.0f} MB). Every reader ran in its own process, {args.rounds} "
        f"rounds; *first batch after* counts from making the reader (imports done) to its first batch, "
        f"workers' start included; rates are over {MEASURED_BATCHES} batches after {WARMUP_BATCHES}. *steps/s* "
        f"counts delivered transitions ({WINDOW} per window, {BATCH} windows per batch); the ceiling is the "
        f"reader's own decoder on one core, {per_core:,.0f} frames/s, i.e. {ceiling_steps:,.0f} steps/s since a "
        f"window of {WINDOW} steps decodes {WINDOW + 1} frames; with workers, the ceiling is that decoder run "
        f"in one process per core at once, {parallel_steps * (WINDOW + 1) / WINDOW:,.0f} frames/s on the {cores} "
        f"cores ({parallel_steps * (WINDOW + 1) / WINDOW / per_core:.2f}x one core). "
        "*Stopped cleanly*: each reader is stopped in "
        f"the middle of a pass; no worker aborted and nothing was printed.", "",
        *rows, "",
        f"Decoders on the same {ceiling_runs[0]['frames']:,} frames of {CEILING_EPISODES} episodes "
        f"({ceiling_runs[0]['bytes_per_frame']:,.0f} B per frame, {100 * ceiling_runs[0]['indexed_fraction']:.0f} % "
        f"indexed PNG, the rest RGB):", "",
        *decoders, "",
        *([f"Not measured in this run ({', '.join(missing)} not importable; `pip install --target DIR pyspng "
           f"opencv-python-headless` and `--candidates-path DIR` add them)."] if missing else []),
        "",
        "Growth: 4x the episodes, ours (`training_data.Batches`); *first use* starts with no index and makes it "
        "(one pass over every record).", "",
        *growth_rows, "",
        f"Long run: ours with 2 workers on the 4x dataset for {long['seconds']:.0f} s ({long['passes']} full "
        f"passes, {long['steps_per_s']:,.0f} steps/s), every process sampled each second ({len(samples)} samples): "
        f"summed PSS start {pss[0]:.0f} MiB, peak {max(pss):.0f} MiB, end {pss[-1]:.0f} MiB (peak of the first "
        f"half {max(pss[:half] or pss):.0f}, second half {max(pss[half:]):.0f}); the largest worker's USS "
        f"{worker_uss_series[0]:.0f} -> {worker_uss_series[-1]:.0f} MiB (peak {max(worker_uss_series):.0f}).", "",
        f"The rounds of one reader vary with the machine's other load (the load average above): the 1x growth "
        "row runs the same reader as the 2-worker row above, and reached "
        f"{best(m['growth']['1x']['warm'])['steps_per_s']:,.0f} "
        f"steps/s there ({best(m['growth']['1x']['warm'])['steps_per_s'] / ceiling_of(2):.2f}x the ceiling of the "
        f"cores together); the targets below read the table above.", "",
        "| target | measured | met |", "|---|---:|---|",
        *[f"| {what} | {value} | {'yes' if met else '**no**'} |" for what, value, met in targets], "",
        f"The workers' memory, 2 workers (1x): RSS {worker_rss:.0f} MiB, PSS {worker_pss:.0f} MiB, USS "
        f"{worker_uss:.0f} MiB each at most. RSS counts every page a worker maps, and a forked worker maps "
        "the main process's torch and numpy libraries and heap (shared, copy-on-write); USS is what it alone "
        f"holds. A process that only imports torch has an RSS of {m['torch_import']['rss_mib']:.0f} MiB "
        "(`ru_maxrss`), so no DataLoader worker can have an RSS under 150 MB: the memory target is read on "
        "USS, the memory each worker adds.",
    ]
    return "\n".join(lines) + "\n"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--episodes", type=int, default=20, help="episodes of the 1x dataset (4x: four times)")
    parser.add_argument("--long-s", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/dropj-bench"))
    parser.add_argument("--candidates-path", type=Path, help="a folder holding pyspng / opencv to compare")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--from-result", action="store_true",
                        help="write the report of the last run again (WORKDIR/loader/result.json), measuring nothing")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    small, small_stamp = ensure_dataset(args.workdir, args.episodes)
    large, large_stamp = ensure_dataset(args.workdir, 4 * args.episodes)
    result_path = args.workdir / "loader" / "result.json"
    if args.from_result:
        measured = json.loads(result_path.read_text())
        loads = tuple(measured["loads"])
    else:
        start_load = load_average()
        measured = measure(args, small, large)
        loads = (start_load, load_average())
        measured["loads"] = loads
        measured["code"] = bench_build.code_version()
        result_path.write_text(json.dumps(measured))
    section = report(args, {"1x": small_stamp, "4x": large_stamp}, measured, loads)
    bench_build.publish(section, args.write_docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
