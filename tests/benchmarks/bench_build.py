"""Build benchmark: `dropj_carracing/real` from a release-sized source inside a zip.

What it measures. Two builds of the same source, one after the other, each in
its own child process and alone on the machine, alternately `--repeats` times
(the run with the median build time is reported):

* ours: `tfds.builder('dropj_carracing/real').download_and_prepare(...)`, the
  suite's builder (streaming safe unpickler, PNG encoding on every core);
* reference: the obvious RLDS builder a person would write, a plain
  `tfds.core.GeneratorBasedBuilder` whose generator `pickle.load`s the whole
  list and yields one frame per step through `tfds.features.Image` (TFDS
  defaults otherwise: PNG via TensorFlow, shuffling on).

For each: the source size (uncompressed pickle bytes, decimal MB), the wall
seconds of `download_and_prepare` (the throughput is source MB over these) and
of the whole process (imports included), the CPU seconds of the process and
its children (`os.wait4`), its peak memory summed over its process tree (a
build may fork helper processes: sampled RSS and PSS, see `TreeMemory`; and
`ru_maxrss`, the largest single process), the bytes of the built dataset
directory, and how the build time splits between waiting for the generator's
examples and TFDS's own encoding, serialising and writing. Last, each stage of our pipeline is timed alone on
one thread on the first episodes, which shows what dominates.

The source. `raw_user_rollouts_res84_ep600.pkl` in exactly the release format
(DATA_FORMATS.md section 1): a pickle (protocol 5) of a list of episodes of
1000 `deepcopy`'d 6-tuples, byte for byte what `pickle.dump` of that list
would write (checked on a small list before every generation), streamed into
a ZIP_DEFLATED (level 1) Zip64 member so that only one episode is ever in
memory. Frames are real gymnasium `CarRacing-v3` frames driven by the suite's
scripted keyboard driver and processed as the release (crop, LANCZOS resize,
black -> white); episodes are consecutive runs of a pool of those frames, so
`prev_obs[t+1] == obs[t]` holds. The frame pool and the zip are cached in the
work directory and reused.

    .venv/bin/python tests/benchmarks/bench_build.py [--gb 2.1] [--workdir DIR] [--repeats 3] [--write-docs]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import hashlib
import io
import itertools
import json
import math
import os
import pickle
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))  # the fixture factory (tests/factory)
DOCS = REPO / "docs" / "benchmarks.md"
DOCS_TITLE = "# Benchmarks"
DOCS_INTRO = "Measured speed, memory and output size of the suite's builds, each next to a plain reference."
SECTION_HEADING = "## Building Dataset R from 2 GB zips: Car Racing and Obstacle Car Racing"

PROTOCOL = 5  # the release's raw rollouts: HIGHEST_PROTOCOL under Python 3.8
STEPS_PER_EPISODE = 1000

# Frame pool: episodes of our environments driven by the scripted keyboard driver.
POOL_STEPS = 1000
VEER_EVERY, VEER_STEPS = 333, 10
BRAKE_ABOVE, COAST_IN_TURNS_ABOVE = 45.0, 34.0  # speed, env units
SOURCE_FORMAT = 3  # bump when the generated source changes, so a cached zip is rebuilt

# Targets of the issue.
RSS_TARGET_MIB = 1024
OUTPUT_TARGET_FRACTION = 0.04
OUTPUT_STRETCH_FRACTION = 0.033
SPEEDUP_TARGET = 2.5

# Single-threaded stage costs of our pipeline, measured on the first episodes.
STAGE_EPISODES = 3
STAGES = ("inflate (zipfile)", "unpickle (safe streaming VM)", "validate + columns (from_legacy)",
          "PNG encode (codec.PNG)", "TFDS encode + serialize")
SERIAL_STAGES = STAGES[:3]  # one reader process per source file
MAIN_THREAD_STAGES = STAGES[4:]  # TFDS's writer

MB = 1e6
MIB = 1 << 20

# The builds of one round: (kind, CPUs it may use; None = all).
BUILDS = (("ours", None), ("reference", None), ("ours", 1), ("beam", None))
CHILDREN = ("ours", "reference", "beam", "stages", "codecs")


@dataclasses.dataclass
class Args:
    """Command-line options; `child`, `source` and `cpus` are internal (one build, run by the parent)."""

    gb: float = 2.1
    workdir: Path = Path("/tmp/dropj-bench")
    write_docs: bool = False
    repeats: int = 3  # builds of each kind, interleaved; the median is reported
    sources: tuple[str, ...] = ("carracing", "chuckc", "chuckccar")
    source: str = "carracing"  # the source being measured
    child: Optional[str] = None
    cpus: Optional[int] = None  # the child runs on this many CPUs (taskset), or all

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        if not self.gb > 0:
            raise ValueError(f"--gb must be positive, got {self.gb}")
        if self.repeats < 1:
            raise ValueError(f"--repeats must be at least 1, got {self.repeats}")
        if self.child not in (None, *CHILDREN):
            raise ValueError(f"unknown child build {self.child!r}")
        unknown = set(self.sources) - set(SOURCES)
        if unknown or not self.sources:
            raise ValueError(f"--sources takes some of {', '.join(SOURCES)}, got {', '.join(self.sources)}")

    @property
    def src(self) -> "Source":
        return SOURCES[self.source]

    @property
    def source_dir(self) -> Path:
        return self.workdir / self.source

    @property
    def manual_dir(self) -> Path:
        return self.source_dir / "manual"

    @property
    def zip_path(self) -> Path:
        return self.manual_dir / self.src.zip_name

    def run_name(self, kind: str) -> str:
        return kind if self.cpus is None else f"{kind}_{self.cpus}cpu"

    def data_dir(self, kind: str) -> Path:
        return self.source_dir / f"data_{self.run_name(kind)}"

    def result_path(self, kind: str) -> Path:
        return self.source_dir / f"result_{self.run_name(kind)}.json"

    def log_path(self, kind: str) -> Path:
        return self.source_dir / f"build_{self.run_name(kind)}.log"


# --- the sources: pools of frames of our environments -----------------------------------------------

@dataclasses.dataclass(frozen=True)
class Source:
    """One benchmark source: a release file of Dataset R for one environment, inside a zip."""

    name: str  # our name for it, and the environment's
    dataset: str  # the config that builds it
    file: str  # the release file name
    zip_name: str
    pool_seeds: tuple[int, ...]  # environment seeds of the pool episodes, in order (the seeding is a stream)
    episode_offset_stride: int = 617  # each benchmark episode starts at a different pool frame

    @property
    def env(self) -> Any:
        from dropj_datasets import schema

        return schema.env_spec(self.name)

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return self.env.frame_shape

    def pool_dtype(self) -> np.dtype:
        return np.dtype([("frame", np.uint8, self.frame_shape), ("action", np.float64, (3,)),
                         ("reward", np.int64), ("flags", np.uint8)])


SOURCES = {
    "carracing": Source("carracing", "dropj_carracing/real", "raw_user_rollouts_res84_ep600.pkl",
                        "carracing_rollouts.zip", (0, 1, 2)),
    "chuckc": Source("chuckc", "dropj_obst_carracing/chuckc_real", "raw_user_rollouts_res128_ep600_chuckcobst.pkl",
                     "obst_rollouts.zip", (1, 3)),  # seeds on which the scripted driver stays on the road
    "chuckccar": Source("chuckccar", "dropj_obst_carracing/chuckccar_real",
                        "raw_user_rollouts_res128_ep800_chuckccarobst.pkl", "obst_rollouts.zip", (3,)),
}


def drive(core: Any, step: int) -> np.ndarray:
    """A keyboard player: mostly gas, steering towards the track ahead, braking when fast.

    Steering comes from the embedded sample's scripted driver; every
    `VEER_EVERY` steps it holds full right steer for `VEER_STEPS` steps, which
    sometimes takes the car onto the grass ('crash' steps, reward -1). In
    Obstacle Car Racing it drives through the chuckholes and cars on its way,
    as players sometimes did.
    """
    from factory import drivers

    veer = step % VEER_EVERY >= VEER_EVERY - VEER_STEPS
    action = drivers.keyboard_action(core, veer)
    if veer:
        return action
    steer = action[0]
    speed = float(np.hypot(*core.car.hull.linearVelocity))
    if speed > BRAKE_ABOVE:
        return np.array([steer, 0.0, drivers.BRAKE])
    if steer != 0.0 and speed > COAST_IN_TURNS_ABOVE:
        return np.array([steer, 0.0, 0.0])
    return np.array([steer, drivers.GAS, 0.0])


def render_pool(source: Source) -> np.ndarray:
    """(frame s_t, action a_t, reward r_t, info flags of t) for every step of the pool episodes.

    Drives our environment (`DropjCarRacing-v0` or `DropjObstCarRacing-v0` in
    the source's mode: the release's frames, reward rule and flags), as the
    embedded sample does. Flags are a bit mask over the environment's info keys.
    """
    from factory import sample as make_sample

    env_spec = source.env
    rows = []
    for seed in source.pool_seeds:
        env = make_sample.make_env(env_spec)
        try:
            frame, _ = env.reset(seed=seed)
            core = env.unwrapped
            for step in range(POOL_STEPS):
                action = drive(core, step)
                next_frame, reward, terminated, truncated, info = env.step(action)
                flags = sum(1 << bit for bit, key in enumerate(env_spec.info_keys) if info.get(key) is True)
                rows.append((frame, action, reward, flags))
                frame = next_frame
                if terminated or truncated:
                    break
        finally:
            env.close()
    return np.array(rows, dtype=source.pool_dtype())


def load_pool(workdir: Path, source: Source) -> np.ndarray:
    path = (workdir / f"{source.name}_pool_v{SOURCE_FORMAT}_seeds{'-'.join(map(str, source.pool_seeds))}"
            f"_x{POOL_STEPS}.npy")
    if path.exists():
        print(f"reusing the frame pool {path}")
        return np.load(path)
    print(f"rendering the frame pool ({len(source.pool_seeds)} {source.env.gym_id} {source.env.mode} episodes of "
          f"{POOL_STEPS} steps)...")
    start = time.perf_counter()
    pool = render_pool(source)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, pool)
    print(f"  {len(pool)} frames in {time.perf_counter() - start:.0f} s -> {path}")
    return pool


def _info(info_keys: tuple[str, ...], flags: int, last: bool) -> dict:
    """The info dict (DATA_FORMATS.md 1.3): flags present only when True, in the env's order, TimeLimit last."""
    from dropj_datasets import schema

    info = {key: True for bit, key in enumerate(info_keys)
            if flags >> bit & 1 and key != schema.TIME_LIMIT_TRUNCATED}
    if last:
        info[schema.TIME_LIMIT_TRUNCATED] = True  # cut by gym's TimeLimit at step 1000, still on the playfield
    return info


def episode_from_pool(pool: np.ndarray, source: Source, index: int, length: int = STEPS_PER_EPISODE) -> list:
    """Episode `index` of the source: `length` transitions over consecutive pool frames (wrapping).

    Frame k of the episode is pool row (offset + k) mod N and transition t
    takes that row's action, reward and flags, so `prev_obs[t+1] == obs[t]`
    always; only at the wrap (and between pool episodes) does the picture jump.
    """
    offset = index * source.episode_offset_stride
    rows = [pool[(offset + k) % len(pool)] for k in range(length + 1)]
    info_keys = source.env.info_keys
    episode = []
    for t in range(length):
        last = t == length - 1
        reward = int(rows[t]["reward"])
        # As the authors' recorder: a deepcopy'd tuple, so obs_t and prev_obs_{t+1}
        # are equal but distinct objects, and both are stored.
        episode.append(copy.deepcopy((rows[t]["frame"], rows[t]["action"], reward, rows[t + 1]["frame"],
                                      1.0 if last else 0.0, _info(info_keys, int(rows[t]["flags"]), last))))
    return episode


# --- the source: streaming the release pickle --------------------------------------------------------


def _shared_atom(obj: Any) -> bool:
    """Memoised objects a later episode may refer to: strings, dtypes, classes and functions."""
    return isinstance(obj, (str, np.dtype, type)) or (callable(obj) and not isinstance(obj, np.ndarray))


class _StreamingPickler(pickle._Pickler):  # the pure-Python pickler: its memo can be pruned
    def __init__(self, file: BinaryIO, protocol: int):
        super().__init__(file, protocol)
        self.next_memo = 0

    # Memo keys count every memoised object, as in one `pickle.dump`, even
    # after finished episodes are pruned from the memo.
    def memoize(self, obj: Any) -> None:
        assert id(obj) not in self.memo
        self.write(self.put(self.next_memo))
        self.memo[id(obj)] = self.next_memo, obj
        self.next_memo += 1

    def forget_since(self, first: int) -> None:
        """Drops what was memoised since key `first`, except shared atoms, so finished items can be freed.

        A later object can reuse a freed object's id; as its entry is gone, it is
        pickled afresh instead of wrongly referring to the old one.
        """
        for key, (index, obj) in list(self.memo.items()):
            if index >= first and not _shared_atom(obj):
                del self.memo[key]


_BATCH_SIZE = 1000  # items per MARK ... APPENDS, in both picklers


class ReleaseListWriter:
    """Writes exactly the bytes of `pickle.dump(items, file, protocol)` one item at a time.

    `count`, the number of items, must be known up front: the batching of
    the C pickler (which wrote the release) depends on it: MARK ... APPENDS
    per 1000 items, except a list of exactly one item (item, APPEND).
    """

    def __init__(self, file: BinaryIO, protocol: int, count: int):
        self._pickler = _StreamingPickler(file, protocol)
        self._count, self._written = count, 0
        self._outer: list = []  # stands for the list in the memo (key 0)
        pickler = self._pickler
        pickler.write(pickle.PROTO + bytes([protocol]))
        pickler.framer.start_framing()
        pickler.framer.commit_frame()  # what `save(list)` does first
        pickler.write(pickle.EMPTY_LIST)
        pickler.memoize(self._outer)

    def append(self, item: Any) -> None:
        if self._written >= self._count:
            raise ValueError(f"more than the declared {self._count} items")
        batched = self._count > 1
        position = self._written % _BATCH_SIZE
        if batched and position == 0:
            self._pickler.write(pickle.MARK)
        first = self._pickler.next_memo
        self._pickler.save(item)
        self._pickler.forget_since(first)
        self._written += 1
        if not batched:
            self._pickler.write(pickle.APPEND)
        elif position == _BATCH_SIZE - 1 or self._written == self._count:
            self._pickler.write(pickle.APPENDS)

    def close(self) -> None:
        if self._written != self._count:
            raise ValueError(f"{self._written} items written, {self._count} declared")
        self._pickler.write(pickle.STOP)
        self._pickler.framer.end_framing()


def check_writer(pool: np.ndarray, source: Source) -> None:
    """The streamed bytes equal `pickle.dumps` of the whole list (on a few short episodes)."""
    episodes = [episode_from_pool(pool, source, i, length=7) for i in range(3)]
    buffer = io.BytesIO()
    writer = ReleaseListWriter(buffer, PROTOCOL, len(episodes))
    for episode in episodes:
        writer.append(episode)
    writer.close()
    if buffer.getvalue() != pickle.dumps(episodes, protocol=PROTOCOL):
        raise AssertionError("the streaming writer does not reproduce pickle.dumps byte for byte")


def episodes_for(gb: float, pool: np.ndarray, source: Source) -> int:
    """Episodes needed for `gb` decimal GB of pickle (every episode has nearly the same size)."""
    per_episode = len(pickle.dumps(episode_from_pool(pool, source, 0), protocol=PROTOCOL))
    return max(2, math.ceil(gb * 1e9 / per_episode))


def write_source(zip_path: Path, pool: np.ndarray, source: Source, count: int) -> int:
    """Streams `count` episodes into the zip member; returns the member's uncompressed size."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    partial = zip_path.with_suffix(".partial")
    start = time.perf_counter()
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open(source.file, "w", force_zip64=True) as member:
            writer = ReleaseListWriter(member, PROTOCOL, count)
            for index in range(count):
                writer.append(episode_from_pool(pool, source, index))
                if (index + 1) % 10 == 0 or index + 1 == count:
                    print(f"  {index + 1}/{count} episodes, {time.perf_counter() - start:.0f} s", flush=True)
            writer.close()
    partial.replace(zip_path)
    return source_size(zip_path, source)


def source_size(zip_path: Path, source: Source) -> int:
    with zipfile.ZipFile(zip_path) as archive:
        return archive.getinfo(source.file).file_size


def ensure_source(args: Args) -> dict:
    """The cached source zip, generated if missing or made for other settings."""
    stamp_path = args.source_dir / "source.json"
    stamp = json.loads(stamp_path.read_text()) if stamp_path.exists() else {}
    if (stamp.get("format") == SOURCE_FORMAT and stamp.get("gb") == args.gb and args.zip_path.exists()
            and source_size(args.zip_path, args.src) == stamp.get("source_bytes")):
        print(f"reusing the source {args.zip_path} ({stamp['episodes']} episodes, "
              f"{stamp['source_bytes'] / MB:.1f} MB of pickle, {args.zip_path.stat().st_size / MB:.1f} MB zipped)")
        return stamp
    pool = load_pool(args.workdir, args.src)
    check_writer(pool, args.src)
    count = episodes_for(args.gb, pool, args.src)
    print(f"writing {count} episodes of {STEPS_PER_EPISODE} steps into {args.zip_path}...")
    start = time.perf_counter()
    size = write_source(args.zip_path, pool, args.src, count)
    print(f"  {size / MB:.1f} MB of pickle, {args.zip_path.stat().st_size / MB:.1f} MB zipped, "
          f"{time.perf_counter() - start:.0f} s")
    stamp = {"format": SOURCE_FORMAT, "gb": args.gb, "episodes": count, "source_bytes": size}
    stamp_path.write_text(json.dumps(stamp))
    return stamp


# --- the builds, each run in a child process ---------------------------------------------------------


def _timed_generator(generate, timing: dict):
    """Wraps `_generate_examples`, adding up the time TFDS waits for each example."""

    def wrapper(*args, **kwargs):
        examples = generate(*args, **kwargs)
        while True:
            start = time.perf_counter()
            try:
                item = next(examples)
            except StopIteration:
                return
            finally:
                timing["generator_s"] += time.perf_counter() - start
            yield item

    return wrapper


def rss_after_imports_kib() -> int:
    """Peak RSS so far, once TensorFlow (which TFDS would load during the build anyway) is imported."""
    import tensorflow  # noqa: F401

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def build_ours(args: Args) -> dict:
    import tensorflow_datasets as tfds

    import dropj_datasets  # noqa: F401  (registers the builders)

    timing = {"generator_s": 0.0, "import_rss_kib": rss_after_imports_kib()}
    builder = tfds.builder(args.src.dataset, data_dir=str(args.data_dir("ours")))
    split_generators = builder._split_generators  # ours hands TFDS the converter's generator from here

    def timed_splits(*a: Any, **kw: Any) -> dict:
        return {split: _timed_generator(lambda examples=examples: examples, timing)()
                for split, examples in split_generators(*a, **kw).items()}

    builder._split_generators = timed_splits
    start = time.perf_counter()
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(args.manual_dir)))
    return {"build_s": time.perf_counter() - start, **timing, "dataset_dir": str(builder.data_dir),
            "episodes": builder.info.splits["train"].num_examples}


BEAM_WORKERS = 2
BEAM_OPTIONS = f"runner=DirectRunner,direct_num_workers={BEAM_WORKERS},direct_running_mode=multi_processing"


def build_beam(args: Args) -> dict:
    """Ours on Apache Beam's DirectRunner, `BEAM_WORKERS` worker processes: `tfds build
    --beam_pipeline_options=BEAM_OPTIONS`, through the API."""
    import tensorflow_datasets as tfds
    from apache_beam.options.pipeline_options import PipelineOptions

    import dropj_datasets  # noqa: F401  (registers the builders)

    timing = {"generator_s": 0.0, "import_rss_kib": rss_after_imports_kib()}
    builder = tfds.builder(args.src.dataset, data_dir=str(args.data_dir("beam")))
    options = PipelineOptions([f"--{option}" for option in BEAM_OPTIONS.split(",")])
    start = time.perf_counter()
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(args.manual_dir), beam_options=options))
    return {"build_s": time.perf_counter() - start, **timing, "dataset_dir": str(builder.data_dir),
            "episodes": builder.info.splits["train"].num_examples}


def reference_builder_class(timing: dict, source: Source):
    """The plain RLDS builder a person would write; defined (and registered) only when called."""
    import tensorflow_datasets as tfds

    class PlainCarracingReference(tfds.core.GeneratorBasedBuilder):
        """Dataset R as RLDS, the straightforward way."""

        VERSION = tfds.core.Version("1.0.0")
        MANUAL_DOWNLOAD_INSTRUCTIONS = f"Put {source.zip_name} in the manual directory."

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "steps": tfds.features.Dataset({
                    "observation": tfds.features.Image(shape=source.frame_shape),
                    "action": tfds.features.Tensor(shape=(3,), dtype=np.float64,
                                                   encoding=tfds.features.Encoding.BYTES),
                    "reward": tfds.features.Scalar(dtype=np.float64),
                    "discount": tfds.features.Scalar(dtype=np.float64),
                    "is_first": tfds.features.Scalar(dtype=np.bool_),
                    "is_last": tfds.features.Scalar(dtype=np.bool_),
                    "is_terminal": tfds.features.Scalar(dtype=np.bool_),
                }),
            }))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(dl_manager.manual_dir / source.zip_name)}

        def _generate_examples(self, path):
            start = time.perf_counter()
            with zipfile.ZipFile(path) as archive, archive.open(source.file) as f:
                episodes = pickle.load(f)
            timing["pickle_load_s"] = time.perf_counter() - start
            for index, episode in enumerate(episodes):
                steps = [{"observation": prev_obs, "action": action, "reward": float(reward), "discount": 1.0,
                          "is_first": t == 0, "is_last": False, "is_terminal": False}
                         for t, (prev_obs, action, reward, _, _, _) in enumerate(episode)]
                final_obs, done, info = episode[-1][3], episode[-1][4], episode[-1][5]
                terminal = done == 1.0 and not info.get("TimeLimit.truncated", False)
                steps.append({"observation": final_obs, "action": np.zeros(3), "reward": 0.0,
                              "discount": 0.0 if terminal else 1.0, "is_first": False, "is_last": True,
                              "is_terminal": terminal})
                yield index, {"steps": steps}

    return PlainCarracingReference


def build_reference(args: Args) -> dict:
    import tensorflow_datasets as tfds

    timing = {"generator_s": 0.0, "pickle_load_s": 0.0, "import_rss_kib": rss_after_imports_kib()}
    builder = reference_builder_class(timing, args.src)(data_dir=str(args.data_dir("reference")))
    builder._generate_examples = _timed_generator(builder._generate_examples, timing)
    start = time.perf_counter()
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(args.manual_dir)))
    return {"build_s": time.perf_counter() - start, **timing, "dataset_dir": str(builder.data_dir),
            "episodes": builder.info.splits["train"].num_examples}


def measure_stages(args: Args) -> dict:
    """Each stage of our pipeline alone, on one thread, on `STAGE_EPISODES` episodes after a warm-up one.

    Adds up to the CPU work per episode that the build spreads over its
    processes (reader, encoders, TFDS on the main thread). As in the build,
    observations are written into one reused buffer (the build's shared
    slots), the colour table is warm and TFDS encodes a column at a time.
    """
    from tensorflow_datasets.core import example_serializer

    from dropj.converters.release import episodes, rollouts, sources
    from dropj.converters.store import legacy_pickle
    from dropj_datasets import builder, codec, schema

    spec = schema.spec_for(*args.src.dataset.split("/"))
    ref = sources.SourceRef(args.src.file, args.zip_path, args.src.file)
    seconds = dict.fromkeys(STAGES, 0.0)
    start = time.perf_counter()
    with ref.open() as f:
        raws = list(itertools.islice(legacy_pickle.iter_list(f, str(ref)), STAGE_EPISODES + 1))
        consumed = f.tell()
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    with ref.open() as f:
        while consumed > 0:
            consumed -= len(f.read(min(consumed, 1 << 20)))
    inflate_s = time.perf_counter() - start
    seconds[STAGES[0]] = inflate_s * STAGE_EPISODES / len(raws)
    seconds[STAGES[1]] = (read_s - inflate_s) * STAGE_EPISODES / len(raws)
    features = builder.features(spec)
    serializer = example_serializer.ExampleSerializer(features.get_serialized_info())
    buffer: dict = {}

    def reused(shape: tuple, dtype: np.dtype) -> np.ndarray:
        if buffer.get("array") is None or buffer["array"].shape != shape:
            buffer["array"] = np.empty(shape, dtype)
        return buffer["array"]

    png_bytes = frames = 0
    with builder.columnar_datasets(features):
        for index, raw in enumerate(raws):
            timed = index > 0  # the first episode warms the buffer, the colour table and TFDS
            start = time.perf_counter()
            ep = episodes.from_legacy(raw, spec, file=str(ref), episode=index, allocate=reused)
            seconds[STAGES[2]] += timed * (time.perf_counter() - start)
            start = time.perf_counter()
            pngs = [codec.PNG.encode(frame) for frame in ep.observations]
            seconds[STAGES[3]] += timed * (time.perf_counter() - start)
            png_bytes, frames = png_bytes + timed * sum(map(len, pngs)), frames + timed * len(pngs)
            start = time.perf_counter()
            example = {schema.STEPS: episodes.to_rlds_steps(ep, spec, pngs),
                       schema.EPISODE_METADATA: rollouts.episode_metadata(spec, {args.src.file: ref}, index, ep,
                                                                         PROTOCOL, {})}
            serializer.serialize_example(features.encode_example(example))
            seconds[STAGES[4]] += timed * (time.perf_counter() - start)
    return {"per_episode_ms": {stage: 1e3 * s / STAGE_EPISODES for stage, s in seconds.items()},
            "png_bytes_per_frame": png_bytes / frames}


CODEC_FRAMES = 600  # frames of each pool the codec candidates encode (every fifth, or so)


def codec_candidates() -> dict[str, Any]:
    """Lossless frame encodings measured for the codec choice: name -> encode(frame) -> bytes."""
    import zlib

    import tensorflow as tf
    from PIL import Image

    from dropj_datasets import codec

    def pillow(frame: np.ndarray, **options: Any) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(frame, "RGB").save(buffer, **options)
        return buffer.getvalue()

    def pillow_palette(frame: np.ndarray) -> bytes:
        found = codec._indexed_rows(frame)  # the frame's own colours, then Pillow's PNG writer
        if found is None:
            return pillow(frame, format="PNG", compress_level=6)
        palette, rows = found
        image = Image.fromarray(np.ascontiguousarray(rows[:, 1:]), "P")
        image.putpalette(palette.tobytes())
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", compress_level=6)
        return buffer.getvalue()

    return {
        "RGB PNG, TensorFlow `tf.io.encode_png` (what the reference stores)":
            lambda frame: tf.io.encode_png(frame).numpy(),
        "RGB PNG, Pillow, zlib 6, run-length strategy (the codec before)":
            lambda frame: pillow(frame, format="PNG", compress_level=6, compress_type=zlib.Z_RLE),
        "RGB PNG, Pillow, zlib 9": lambda frame: pillow(frame, format="PNG", compress_level=9),
        "indexed PNG, Pillow's writer, zlib 6": pillow_palette,
        "indexed PNG, ours, zlib 9": lambda frame: codec.encode_png(frame, level=9),
        "indexed PNG, ours, zlib 6": lambda frame: codec.encode_png(frame, level=6),
        f"**indexed PNG, ours, zlib {codec.PNG_LEVEL} (`codec.PNG`)**": codec.PNG.encode,
        "WebP lossless, Pillow (TensorFlow cannot decode it)":
            lambda frame: pillow(frame, format="WEBP", lossless=True, quality=100, method=4),
    }


def measure_codecs(args: Args) -> dict:
    """Each candidate encoding on the source's frame pool: size, encode and decode time, exactness."""
    import tensorflow as tf

    frames = load_pool(args.workdir, args.src)["frame"]
    frames = frames[::max(1, len(frames) // CODEC_FRAMES)][:CODEC_FRAMES]
    colours = [len(np.unique(frame.reshape(-1, 3), axis=0)) for frame in frames]
    out = {"frames": len(frames), "colours_median": float(np.median(colours)), "colours_max": max(colours),
           "indexed_share": float(np.mean([c <= 256 for c in colours])), "candidates": {}}
    for name, encode in codec_candidates().items():
        encode(frames[0])  # warm up (first-use tables, imports)
        start = time.perf_counter()
        encoded = [encode(frame) for frame in frames]
        encode_ms = (time.perf_counter() - start) / len(frames) * 1e3
        decodes = "WebP" not in name
        exact, decode_ms = None, None
        if decodes:
            start = time.perf_counter()
            decoded = [tf.io.decode_png(data, channels=3).numpy() for data in encoded]
            decode_ms = (time.perf_counter() - start) / len(frames) * 1e3
            exact = all(np.array_equal(a, b) for a, b in zip(decoded, frames))
        out["candidates"][name] = {"bytes": float(np.mean([len(data) for data in encoded])),
                                   "encode_ms": encode_ms, "decode_ms": decode_ms, "exact": exact}
    return out


def child_main(args: Args) -> int:
    work = {"ours": build_ours, "reference": build_reference, "beam": build_beam, "stages": measure_stages,
            "codecs": measure_codecs}[args.child]
    args.result_path(args.child).write_text(json.dumps(work(args)))
    return 0


@dataclasses.dataclass
class BuildRun:
    """What the parent measured of one child build."""

    kind: str
    cpus: Optional[int]  # the CPUs it was allowed (taskset), None for all
    source_bytes: int
    build_s: float  # download_and_prepare only
    generator_s: float  # of build_s: TFDS waiting for the generator's next example
    process_s: float  # the whole child, interpreter start and imports included
    cpu_s: float  # the build process and its reaped children (a reader process)
    peak_rss_kib: int  # `ru_maxrss`: the largest single process
    peak_pss_bytes: int  # summed over the build's processes, sampled
    peak_rss_sum_bytes: int  # summed over the build's processes, sampled
    processes: int  # most processes alive at once
    output_bytes: int
    episodes: int
    import_rss_kib: int  # peak RSS once the imports are done, before the build
    pickle_load_s: Optional[float] = None
    build_s_all: tuple[float, ...] = ()  # every repeat's build_s, when this stands for several

    @property
    def mb_per_s(self) -> float:
        return self.source_bytes / MB / self.build_s

    @property
    def peak_rss_mib(self) -> float:
        return self.peak_rss_kib * 1024 / MIB

    @property
    def peak_pss_mib(self) -> float:
        return self.peak_pss_bytes / MIB

    @property
    def peak_rss_sum_mib(self) -> float:
        return self.peak_rss_sum_bytes / MIB

    @property
    def import_rss_mib(self) -> float:
        return self.import_rss_kib * 1024 / MIB

    @property
    def output_fraction(self) -> float:
        return self.output_bytes / self.source_bytes

    @property
    def cores_busy(self) -> float:
        return self.cpu_s / self.process_s


_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE_BYTES
    except (OSError, IndexError, ValueError):
        return 0  # gone, or a zombie


def _pss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0


class TreeMemory:
    """Samples the memory of a process and all its descendants in a background thread.

    A build may fork helpers (our reader process), and `ru_maxrss` only gives
    the largest single process. Summed RSS (every `RSS_INTERVAL_S`, from
    /proc/PID/statm) counts the pages the processes share (a forked child's
    copy-on-write pages: TensorFlow, numpy) once per process, so it is an upper
    bound. Summed PSS (from /proc/PID/smaps_rollup, which costs about 10 ms per
    TensorFlow process, hence less often) splits each shared page among its
    sharers: the physical memory the build really holds.
    """

    RSS_INTERVAL_S = 0.1
    PSS_EVERY = 5  # samples
    CHILDREN_EVERY = 5  # samples

    def __init__(self, pid: int):
        self.pid = pid
        self.peak_rss_sum = self.peak_pss = 0
        self.processes = 1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-monitor", daemon=True)

    def __enter__(self) -> "TreeMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        pids = [self.pid]
        for sample in itertools.count():
            if sample % self.CHILDREN_EVERY == 0:
                try:
                    pids = [self.pid] + [child.pid for child in root.children(recursive=True)]
                except psutil.Error:
                    return
                self.processes = max(self.processes, len(pids))
            self.peak_rss_sum = max(self.peak_rss_sum, sum(map(_rss_bytes, pids)))
            if sample % self.PSS_EVERY == 0:
                self.peak_pss = max(self.peak_pss, sum(map(_pss_bytes, pids)))
            if self._stop.wait(self.RSS_INTERVAL_S):
                return


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def child_environment() -> dict:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("NO_GCE_CHECK", "true")  # TFDS would probe Google Cloud Storage; there is no network
    return env


def run_child(args: Args, kind: str) -> tuple[dict, Any, float, TreeMemory]:
    """Runs one child; returns its result, its resource usage (`os.wait4`), its wall seconds and
    the memory of its process tree."""
    args.result_path(kind).unlink(missing_ok=True)
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--gb", str(args.gb),
               "--workdir", str(args.workdir), "--source", args.source]
    if args.cpus is not None:
        cpus = sorted(os.sched_getaffinity(0))[:args.cpus]
        command = ["taskset", "-c", ",".join(map(str, cpus)), *command, "--cpus", str(args.cpus)]
    start = time.perf_counter()
    with open(args.log_path(kind), "w") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=child_environment())
        try:
            with TreeMemory(child.pid) as memory:
                _, status, usage = os.wait4(child.pid, 0)
        except BaseException:  # e.g. Ctrl-C: do not leave a build running behind us
            child.kill()
            child.wait()
            raise
    process_s = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        tail = args.log_path(kind).read_text()[-4000:]
        raise RuntimeError(f"the {kind} child failed with exit status {child.returncode}:\n{tail}")
    return json.loads(args.result_path(kind).read_text()), usage, process_s, memory


def run_build(args: Args, kind: str, source_bytes: int) -> BuildRun:
    """Runs one build in a fresh child process and measures it."""
    shutil.rmtree(args.data_dir(kind), ignore_errors=True)
    print(f"building {args.run_name(kind)} (log: {args.log_path(kind)})...", flush=True)
    result, usage, process_s, memory = run_child(args, kind)
    run = BuildRun(kind=kind, cpus=args.cpus, source_bytes=source_bytes, build_s=result["build_s"],
                   generator_s=result["generator_s"], process_s=process_s,
                   cpu_s=usage.ru_utime + usage.ru_stime, peak_rss_kib=usage.ru_maxrss,
                   peak_pss_bytes=memory.peak_pss, peak_rss_sum_bytes=memory.peak_rss_sum,
                   processes=memory.processes, output_bytes=directory_bytes(Path(result["dataset_dir"])),
                   episodes=result["episodes"],
                   import_rss_kib=result["import_rss_kib"], pickle_load_s=result.get("pickle_load_s"))
    print(f"  {run.build_s:.1f} s, {run.mb_per_s:.1f} MB/s, peak PSS {run.peak_pss_mib:.0f} MiB "
          f"(RSS: summed {run.peak_rss_sum_mib:.0f}, largest process {run.peak_rss_mib:.0f}; "
          f"{run.processes} processes), output {run.output_bytes / MB:.1f} MB", flush=True)
    return run


def median_run(runs: list[BuildRun]) -> BuildRun:
    """The run with the median build time (the lower one of an even count), standing for all of them:
    it carries every run's build seconds and the largest memory figures of all."""
    ordered = sorted(runs, key=lambda run: run.build_s)
    return dataclasses.replace(ordered[(len(ordered) - 1) // 2], build_s_all=tuple(run.build_s for run in runs),
                               peak_rss_kib=max(run.peak_rss_kib for run in runs),
                               peak_pss_bytes=max(run.peak_pss_bytes for run in runs),
                               peak_rss_sum_bytes=max(run.peak_rss_sum_bytes for run in runs),
                               processes=max(run.processes for run in runs))


def run_builds(args: Args, source: dict) -> tuple[dict[str, BuildRun], list[float]]:
    """Every build of `BUILDS`, in turn, `args.repeats` rounds; ({run name: median run}, ours over the
    reference in each round)."""
    runs: dict[str, list[BuildRun]] = {}
    for repeat in range(args.repeats):
        for kind, cpus in BUILDS:
            one = dataclasses.replace(args, cpus=cpus)
            if args.repeats > 1:
                print(f"[{args.source} {repeat + 1}/{args.repeats}] ", end="")
            run = run_build(one, kind, source["source_bytes"])
            if run.episodes != source["episodes"]:
                raise RuntimeError(f"the {kind} build wrote {run.episodes} episodes, expected {source['episodes']}")
            runs.setdefault(one.run_name(kind), []).append(run)
    speedups = [ours.mb_per_s / ref.mb_per_s for ours, ref in zip(runs["ours"], runs["reference"])]
    return {name: median_run(of_kind) for name, of_kind in runs.items()}, speedups


@dataclasses.dataclass
class Measured:
    """Everything measured on one source."""

    source: Source
    stamp: dict  # episodes, source_bytes
    zip_bytes: int
    runs: dict[str, BuildRun]  # by run name: ours, reference, ours_1cpu
    speedups: list[float]  # ours over the reference, each round
    stages: dict
    codecs: dict

    @property
    def ours(self) -> BuildRun:
        return self.runs["ours"]

    @property
    def reference(self) -> BuildRun:
        return self.runs["reference"]


# --- the report --------------------------------------------------------------------------------------


def machine() -> str:
    model = "unknown CPU"
    memory = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                memory = f", {int(line.split()[1]) / (1 << 20):.0f} GiB RAM"
    return f"{os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), {model}{memory}, {platform.platform()}"


def code_version() -> str:
    """The commit measured, and whether the library differed from it."""
    def git(*argv: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *argv], capture_output=True, text=True,
                              check=True).stdout.rstrip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--", "converters", "dropj_datasets")
        diff = git("diff", "HEAD", "--", "converters", "dropj_datasets")
    except (OSError, subprocess.CalledProcessError):
        return "code at an unknown commit"
    if not changed:
        return f"code at commit {head}"
    files = ", ".join(line[3:] for line in changed.splitlines())
    return (f"code at commit {head} plus uncommitted changes to {files} "
            f"(diff sha1 {hashlib.sha1(diff.encode()).hexdigest()[:10]})")


def version(*names: str) -> str:
    """The installed version of the first of these distributions that is installed, or '?'."""
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "?"


def versions() -> str:
    return ", ".join([f"Python {platform.python_version()}", f"numpy {version('numpy')}",
                      f"tensorflow {version('tensorflow-cpu', 'tensorflow')}",
                      f"tensorflow-datasets {version('tensorflow-datasets')}", f"pillow {version('pillow')}",
                      f"gymnasium {version('gymnasium')}"])


RUN_NAMES = {"ours": "ours", "reference": "reference (`pickle.load` + plain builder)",
             "ours_1cpu": "ours on 1 CPU (`taskset`)",
             "beam": f"ours on Apache Beam (DirectRunner, {BEAM_WORKERS} worker processes)"}


def results_table(measured: dict[str, Measured]) -> list[str]:
    rows = ["| source | build | build s | source MB/s | process s | CPU s (cores busy) | peak PSS MiB "
            "| peak RSS MiB: summed (largest process) | output MB | output / source | waiting for the generator |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in measured.values():
        for name, run in m.runs.items():
            spread = (f" ({min(run.build_s_all):.1f}-{max(run.build_s_all):.1f})"
                      if len(run.build_s_all) > 1 else "")
            rows.append(f"| {m.source.name} | {RUN_NAMES[name]} | {run.build_s:.1f}{spread} | {run.mb_per_s:.1f} "
                        f"| {run.process_s:.1f} | {run.cpu_s:.1f} ({run.cores_busy:.2f}) | {run.peak_pss_mib:.0f} "
                        f"| {run.peak_rss_sum_mib:.0f} ({run.peak_rss_mib:.0f}) "
                        f"| {run.output_bytes / MB:.1f} | {100 * run.output_fraction:.2f} % "
                        + ("| n/a |" if run.kind == "beam" else
                           f"| {run.generator_s:.1f} s ({100 * run.generator_s / run.build_s:.0f} %) |"))
        ours, reference = m.ours, m.reference
        rows.append(f"| {m.source.name} | **ours / reference** | {ours.build_s / reference.build_s:.2f} | "
                    f"**{ours.mb_per_s / reference.mb_per_s:.2f}x** | {ours.process_s / reference.process_s:.2f} "
                    f"| {ours.cpu_s / reference.cpu_s:.2f} | {ours.peak_pss_mib / reference.peak_pss_mib:.2f} "
                    f"| {ours.peak_rss_sum_mib / reference.peak_rss_sum_mib:.2f} "
                    f"| {ours.output_bytes / reference.output_bytes:.2f} | | |")
    return rows


def targets(m: Measured) -> list[tuple[str, str, bool, str]]:
    """(target, ours, met, margin) for each target of the issue, on the median runs of one source."""
    ours, reference = m.ours, m.reference
    speedup = ours.mb_per_s / reference.mb_per_s
    fraction = ours.output_fraction

    def memory(name: str, mib: float) -> tuple[str, str, bool, str]:
        met = mib < RSS_TARGET_MIB
        return (f"peak memory < {RSS_TARGET_MIB} MiB, {name}", f"{mib:.0f} MiB", met,
                f"{RSS_TARGET_MIB - mib:.0f} MiB to spare" if met else f"over by {mib - RSS_TARGET_MIB:.0f} MiB")

    def output(limit: float, what: str) -> tuple[str, str, bool, str]:
        met = fraction < limit
        return (f"output < {100 * limit:g} % of the source{what}", f"{100 * fraction:.2f} %", met,
                f"{100 * (limit - fraction):.2f} points under" if met
                else f"over by {100 * (fraction - limit):.2f} points")

    return [
        memory("summed over the build's processes (PSS)", ours.peak_pss_mib),
        output(OUTPUT_TARGET_FRACTION, ""),
        output(OUTPUT_STRETCH_FRACTION, " (stretch)"),
        (f"throughput >= {SPEEDUP_TARGET:g}x the reference", f"{speedup:.2f}x", speedup >= SPEEDUP_TARGET,
         f"{speedup / SPEEDUP_TARGET:.2f}x the target" if speedup >= SPEEDUP_TARGET
         else f"short by {SPEEDUP_TARGET - speedup:.2f}x ({100 * (1 - speedup / SPEEDUP_TARGET):.0f} % below)"),
    ]


def targets_table(measured: dict[str, Measured]) -> list[str]:
    rows = ["| source | target | ours | met | margin |", "|---|---|---:|---|---|"]
    for m in measured.values():
        for name, value, met, margin in targets(m):
            rows.append(f"| {m.source.name} | {name} | {value} | {'yes' if met else '**no**'} | {margin} |")
    return rows


def stages_table(measured: dict[str, Measured]) -> list[str]:
    names = list(measured)
    rows = [f"| stage of ours, alone on one thread ({STAGE_EPISODES} episodes after a warm-up one) | "
            + " | ".join(f"{name}: ms per episode (share)" for name in names) + " |",
            "|---|" + "---:|" * len(names)]
    for stage in STAGES:
        cells = []
        for m in measured.values():
            per_episode = m.stages["per_episode_ms"]
            cells.append(f"{per_episode[stage]:.0f} ({100 * per_episode[stage] / sum(per_episode.values()):.0f} %)")
        rows.append(f"| {stage} | " + " | ".join(cells) + " |")
    rows.append("| total | " + " | ".join(f"{sum(m.stages['per_episode_ms'].values()):.0f}"
                                         for m in measured.values()) + " |")
    return rows


def projection(m: Measured, cores: int) -> tuple[float, str]:
    """(source MB/s, limiting stage) of ours on `cores` cores, from the single-thread stage costs.

    The reader (inflate, unpickle, validate) is one process per file and the
    TFDS writer one thread: each is serial; the PNG encoding spreads over every core.
    """
    per_episode = m.stages["per_episode_ms"]
    reader = sum(per_episode[stage] for stage in SERIAL_STAGES)
    writer = sum(per_episode[stage] for stage in MAIN_THREAD_STAGES)
    total = sum(per_episode.values())
    limits = {"the reader process (inflate + unpickle + validate)": reader, "TFDS's writer thread": writer,
              f"all the work spread over {cores} cores": total / cores}
    stage, ms = max(limits.items(), key=lambda item: item[1])
    bytes_per_episode = m.stamp["source_bytes"] / m.stamp["episodes"]
    return bytes_per_episode / MB / (ms / 1e3), stage


def scaling_table(measured: dict[str, Measured]) -> list[str]:
    rows = ["| source | ours on 1 CPU MB/s | ours on 2 CPUs MB/s | 2 / 1 | reference MB/s | projected for 2 cores "
            "MB/s | projected for 16 cores MB/s | what limits 16 cores |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for m in measured.values():
        one, two = m.runs["ours_1cpu"].mb_per_s, m.ours.mb_per_s
        two_projected, _ = projection(m, 2)
        sixteen, limit = projection(m, 16)
        rows.append(f"| {m.source.name} | {one:.1f} | {two:.1f} | {two / one:.2f}x | {m.reference.mb_per_s:.1f} "
                    f"| {two_projected:.0f} | {sixteen:.0f} ({sixteen / m.reference.mb_per_s:.1f}x the reference) "
                    f"| {limit} |")
    return rows


def codecs_table(measured: dict[str, Measured]) -> list[str]:
    names = list(measured)
    rows = ["| encoding | " + " | ".join(f"{name}: B per frame | encode ms | `tf.io.decode_png` ms" for name in names)
            + " | decodes to the identical frame |", "|---|" + "---:|---:|---:|" * len(names) + "---|"]
    candidates = next(iter(measured.values())).codecs["candidates"]
    for candidate in candidates:
        cells, exact = [], []
        for m in measured.values():
            c = m.codecs["candidates"][candidate]
            decode = "n/a" if c["decode_ms"] is None else f"{c['decode_ms']:.3f}"
            cells.append(f"{c['bytes']:,.0f} | {c['encode_ms']:.3f} | {decode}")
            exact.append(c["exact"])
        verdict = ("not by TensorFlow" if any(e is None for e in exact)
                   else "yes, every frame" if all(exact) else "**no**")
        rows.append(f"| {candidate} | " + " | ".join(cells) + f" | {verdict} |")
    return rows


def codec_choice(measured: dict[str, Measured]) -> list[str]:
    """Why the chosen zlib level, from the codec table's own rows."""
    from dropj_datasets import codec

    chosen = f"**indexed PNG, ours, zlib {codec.PNG_LEVEL} (`codec.PNG`)**"
    other = "indexed PNG, ours, zlib 6"
    if codec.PNG_LEVEL == 6:
        return []
    parts = []
    for m in measured.values():
        a, b = m.codecs["candidates"][chosen], m.codecs["candidates"][other]
        parts.append(f"{m.source.name} {100 * (a['bytes'] / b['bytes'] - 1):+.1f} % bytes, "
                     f"{100 * (a['encode_ms'] / b['encode_ms'] - 1):+.0f} % encode time")
    return [f"zlib level {codec.PNG_LEVEL} rather than 6 ({'; '.join(parts)}): encoding is the largest stage of "
            "the build and the outputs stay under the size target at either level; the throughput target is "
            "the tighter one. The indexed frames also decode faster than the RGB ones in `tf.io.decode_png`, "
            "which every reader of the dataset pays."]


def interpretation(measured: dict[str, Measured]) -> list[str]:
    """What the figures say, worded from the figures themselves."""
    lines = []
    for m in measured.values():
        ours, reference = m.ours, m.reference
        per_episode = m.stages["per_episode_ms"]
        top_stage, top_ms = max(per_episode.items(), key=lambda item: item[1])
        steps = ours.episodes * STEPS_PER_EPISODE
        frame_bytes = int(np.prod(m.source.frame_shape))
        lines.append(
            f"- **{m.source.name}.** Ours {ours.mb_per_s:.0f} MB/s against {reference.mb_per_s:.0f} MB/s "
            f"({ours.mb_per_s / reference.mb_per_s:.2f}x; per round: "
            + ", ".join(f"{x:.2f}x" for x in m.speedups) + f"), {ours.cores_busy:.2f} cores busy against "
            f"{reference.cores_busy:.2f}. The largest stage is {top_stage} "
            f"({100 * top_ms / sum(per_episode.values()):.0f} %"
            f" of the single-threaded work). TFDS's main thread waited {ours.generator_s:.1f} s of "
            f"{ours.build_s:.1f} s for our next example. Output: {ours.output_bytes / steps:.0f} B per step, of which "
            f"the frame is {m.stages['png_bytes_per_frame']:.0f} B (raw {frame_bytes:,} B, stored twice per step "
            f"in the source); the reference stores {reference.output_bytes / steps:.0f} B per step. "
            f"Reference: `pickle.load` of the whole list took {reference.pickle_load_s or 0:.1f} s and its memory "
            f"grows with the source ({reference.peak_pss_mib:.0f} MiB PSS).")
    for m in measured.values():
        beam_run = m.runs.get("beam")
        if beam_run is None:
            continue
        lines.append(
            f"- **Apache Beam, {m.source.name}.** DirectRunner with {BEAM_WORKERS} worker processes built it in "
            f"{beam_run.build_s:.1f} s ({beam_run.mb_per_s:.0f} MB/s, {beam_run.mb_per_s / m.ours.mb_per_s:.2f}x "
            f"the default build, {beam_run.cores_busy:.2f} cores busy), peak {beam_run.peak_pss_mib:.0f} MiB PSS over "
            f"{beam_run.processes} processes, output {beam_run.output_bytes / MB:.1f} MB (the default's: "
            f"{m.ours.output_bytes / MB:.1f} MB; the records are the same bytes, tests/converters/build/test_beam.py).")
    missed = [f"{m.source.name}: {name}, {margin}" for m in measured.values()
              for name, _, met, margin in targets(m) if not met]
    lines.append(f"- **Missed:** {'; '.join(missed)}." if missed else "- Every target is met.")
    return lines


def report(args: Args, measured: dict[str, Measured], code: str) -> str:
    command = ".venv/bin/python tests/benchmarks/bench_build.py" + (
        f" --gb {args.gb:g}" if args.gb != Args.gb else "") + (
        f" --repeats {args.repeats}" if args.repeats != Args.repeats else "") + (
        f" --sources {','.join(args.sources)}" if args.sources != Args.sources else "") + " --write-docs"
    sources = "; ".join(
        f"{m.source.name}: `{m.source.file}`, {m.stamp['episodes']} episodes of {STEPS_PER_EPISODE} steps, "
        f"{m.stamp['source_bytes'] / MB:.1f} MB of pickle in a {m.zip_bytes / MB:.1f} MB ZIP_DEFLATED member, "
        f"frames of `{m.source.env.gym_id}`{' ' + m.source.env.mode if m.source.env.mode else ''} "
        f"({'x'.join(map(str, m.source.frame_shape[:2]))}), built as `{m.source.dataset}`"
        for m in measured.values())
    first = next(iter(measured.values()))
    lines = [
        SECTION_HEADING,
        "",
        f"Measured {datetime.date.today().isoformat()} with `{command}` (`make bench`), "
        f"on {machine()}; {versions()}; {code}.",
        "",
        f"Sources, in the release format (pickle protocol 5, a list of episodes of `deepcopy`'d 6-tuples, "
        f"byte for byte what `pickle.dump` writes): {sources}. Frames are our environments' own, driven like a "
        "keyboard player (the scripted driver of the embedded sample: gas, steering at the track ahead, braking "
        "when fast, full right for 10 steps in every 333); episodes are consecutive runs of a pool of "
        f"{POOL_STEPS}-step episodes, so `prev_obs[t+1] == obs[t]` holds. The builds ran one after the other, "
        f"each in its own process with nothing else running, {args.repeats} round(s) of: ours, the reference, "
        "ours on 1 CPU, ours on Apache Beam; each row is the run with the median build time (fastest and slowest "
        "in brackets) with "
        "the largest memory figures of its rounds. *Source MB/s* is the pickle's MB over the "
        "`download_and_prepare` seconds (*build s*); *process s* adds interpreter start and imports; *CPU s* "
        "counts the build process and its children. Memory is sampled over the build's process tree "
        f"(RSS every {TreeMemory.RSS_INTERVAL_S:g} s, "
        f"PSS every {TreeMemory.RSS_INTERVAL_S * TreeMemory.PSS_EVERY:g} s); "
        "*largest process* is `ru_maxrss`. The memory target is read on PSS: our reader and encoder processes "
        "are forked from the build's process after TensorFlow is loaded and share its 400 MiB of pages, "
        "which summed RSS counts once per process and PSS divides among them. The reference is the plain builder "
        "a person would write: `pickle.load` "
        "of the whole list, one `tfds.features.Image` per step (TensorFlow's PNG), TFDS defaults; it stores no "
        "`info` flags or episode metadata, so its output holds a little less than ours.",
        "",
        *results_table(measured),
        "",
        *targets_table(measured),
        "",
        "### Cores",
        "",
        "Ours on 1 and 2 CPUs from the table above; the projections use the single-thread stage costs below: "
        "the reader (one process per source file) and TFDS's writer thread are serial, the PNG encoding spreads "
        "over every core, and a build goes no faster than its slowest serial stage.",
        "",
        *scaling_table(measured),
        "",
        *stages_table(measured),
        "",
        "### Frame encoding",
        "",
        f"Each candidate encoded {first.codecs['frames']} frames of each pool on one thread; decoding is "
        "`tf.io.decode_png(data, channels=3)`, what `tfds.features.Image` runs, compared with the frame. "
        + " ".join(f"{m.source.name}: {100 * m.codecs['indexed_share']:.0f} % of the frames have at most 256 "
                   f"colours (median {m.codecs['colours_median']:.0f}, most {m.codecs['colours_max']})."
                   for m in measured.values()),
        "",
        *codecs_table(measured),
        "",
        *codec_choice(measured),
        "",
        *interpretation(measured),
    ]
    return "\n".join(lines) + "\n"


def write_docs(section: str, path: Path = DOCS) -> None:
    """Replaces the section of docs/benchmarks.md headed by `section`'s first line, keeping every other section
    (appended at the end if missing). Every benchmark in this folder writes its section with it."""
    heading = section.split("\n", 1)[0]
    text = path.read_text() if path.exists() else f"{DOCS_TITLE}\n\n{DOCS_INTRO}\n"
    start = text.find(heading + "\n")
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + section + ("\n" + text[end + 1:] if end != -1 else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def publish(section: str, write: bool) -> None:
    """Prints a benchmark's docs section and, with --write-docs, puts it into docs/benchmarks.md."""
    print()
    print(section)
    if write:
        write_docs(section)
        print(f"wrote {DOCS}")


def parse_args(argv: Optional[list[str]]) -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--gb", type=float, default=Args.gb, help="source size, decimal GB of pickle")
    parser.add_argument("--workdir", type=Path, default=Args.workdir,
                        help="cache of the frame pool and the source zip, and the build outputs")
    parser.add_argument("--write-docs", action="store_true", help=f"update the section in {DOCS.relative_to(REPO)}")
    parser.add_argument("--repeats", type=int, default=Args.repeats,
                        help="builds of each kind, alternating; the median is reported")
    parser.add_argument("--sources", default=",".join(Args.sources),
                        help=f"comma-separated, of: {', '.join(SOURCES)}")
    parser.add_argument("--child", choices=CHILDREN, help=argparse.SUPPRESS)
    parser.add_argument("--source", choices=tuple(SOURCES), default=Args.source, help=argparse.SUPPRESS)
    parser.add_argument("--cpus", type=int, help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    return Args(gb=ns.gb, workdir=ns.workdir, write_docs=ns.write_docs, repeats=ns.repeats,
                sources=tuple(name for name in ns.sources.split(",") if name), source=ns.source, child=ns.child,
                cpus=ns.cpus)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    code = code_version()
    measured = {}
    for name in args.sources:
        one = dataclasses.replace(args, source=name)
        source = ensure_source(one)
        runs, speedups = run_builds(one, source)
        measured[name] = Measured(one.src, source, one.zip_path.stat().st_size, runs, speedups,
                                  run_child(one, "stages")[0], run_child(one, "codecs")[0])
    if code_version() != code:
        code += " (**the library changed during the run**: rerun)"
    section = report(args, measured, code)
    publish(section, args.write_docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
