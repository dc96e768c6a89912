"""`dropj make-queries`: new preference queries in the release's format, from built latent episodes.

    Q/queries_s20/data.pkl     {"{i}.mp4": {"segment1": (20, 547) float64, "segment2": ...}}, protocol 4
    Q/queries_s20/{i}.mp4      the two clips' VAE decodes side by side, 1000x500, 20 frames at 2.5 fps

(`queries_s20_chuckcobst/` and `queries_s20_chuckccarobst/` for the obstacle environments.) As the
authors' `create_pref_queries`: each query's left and right clips are drawn independently, the episode
with replacement and the start offset uniform in [0, T - 20], and row t of a clip is
`concat(state_t, scaled action_t)`. The source is a dream config (its scaled actions; step 0's exact
float64 state) or `dropj_encoded/ENV` (real segments). Deterministic with `--seed`. With
`--start_index K` the new queries are numbered from K and added to an existing data.pkl: merged, never
overwriting a key or a video. The `queries` configs build from Q unchanged.

It writes like a build: one run per folder at a time (a lock, `Q/.queries_s20.lock`), and a marker
`Q/.queries_s20.incomplete.json` naming the batch (source, seed, first index, count) from before its
first video until data.pkl, written last, lists it. The same command run again finishes an unfinished
batch (its videos are made again); another command is refused, naming the batch and the exact files to
remove to drop it (its videos that data.pkl does not list, never one it lists). A marker whose whole batch
data.pkl lists (a kill between the two) is removed, with a line saying so, and the run goes on.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import pickle
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from dropj.converters.store import dataset_dir, durable, legacy_pickle
from dropj.converters.feedback import query_video
from dropj.converters.store.durable import write_atomically
from dropj_datasets import schema
from dropj_datasets.schema import DataError

PROTOCOL = 4  # data.pkl: the default protocol under the authors' Python 3.8
MAX_QUERIES = 100_000  # per run


def incomplete_marker(folder: Path) -> Path:
    """The marker of a batch being written into `folder` (beside it: the folder holds the release's files only)."""
    return folder.with_name(f".{folder.name}.incomplete.json")


def output_lock(folder: Path) -> Path:
    return folder.with_name(f".{folder.name}.lock")


def queries_folder(env: schema.EnvSpec) -> str:
    """The release folder of an environment's queries: queries_s20, queries_s20_chuckcobst, ..."""
    [spec] = [s for cs in schema.DATASETS.values() for s in cs.values()
              if isinstance(s, schema.QuerySpec) and s.env is env]
    return spec.folder


def draw(lengths: list[int], num_queries: int, seed: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(left, right) = ((episode, offset), (episode, offset)) per query: episodes with replacement, offsets
    uniform in [0, T - 20] of the episode drawn."""
    usable = [i for i, n in enumerate(lengths) if n >= schema.SEGMENT_STEPS]
    if not usable:
        raise DataError(f"no episode has the {schema.SEGMENT_STEPS} transitions a clip needs (lengths {lengths[:10]})")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(num_queries):
        pair = []
        for _side in range(2):
            episode = usable[int(rng.integers(len(usable)))]
            pair.append((episode, int(rng.integers(0, lengths[episode] - schema.SEGMENT_STEPS + 1))))
        out.append(tuple(pair))
    return out


Decoder = Callable[[np.ndarray], np.ndarray]  # a clip's rows (20, D + 3) -> its frames (20, H, W, 3) uint8


def make_queries(dataset: str, make_decoder: Callable[[schema.EnvSpec], Decoder], num_queries: int,
                 out: str | os.PathLike, *, data_dir: Optional[str] = None, seed: int = 0, start_index: int = 0,
                 log: Callable[[str], None] = print) -> Path:
    """Writes the queries; `make_decoder(env)` gives the frames of a clip (the app wires a VAE's decode)."""
    from dropj.converters.roundtrip.built import BuiltDataset

    if not 1 <= num_queries <= MAX_QUERIES or start_index < 0:
        raise ValueError(f"need 1 <= num_queries <= {MAX_QUERIES} and start_index >= 0, got {num_queries}, "
                         f"{start_index}")
    source = BuiltDataset.open(dataset, data_dir)
    content = schema.content_of(source.spec)
    if content != schema.LATENT_STATES:
        what = source.spec.kind if content == schema.LABELLED_STEPS else f"{source.spec.kind} of frames"
        raise DataError(f"{dataset}: holds {what}; queries are cut from latent episodes "
                        "(a dream config, or dropj_encoded/ENV)")
    env = source.spec.env
    folder = Path(out) / queries_folder(env)
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = durable.take_output_lock(output_lock(folder), f"dropj make-queries {dataset}", lambda holder: (
        f"{folder}: another dropj make-queries is writing here ({holder}); wait for it to end"))
    try:
        return _make_queries(source, dataset, make_decoder, num_queries, folder, seed, start_index, log)
    finally:
        durable.release_lock(lock)


def _make_queries(source, dataset: str, make_decoder: Callable[[schema.EnvSpec], Decoder], num_queries: int,
                  folder: Path, seed: int, start_index: int, log: Callable[[str], None]) -> Path:
    env = source.spec.env
    data_file = folder / "data.pkl"
    existing = _existing(data_file)
    batch = {"dataset": dataset, "seed": seed, "start_index": start_index, "num_queries": num_queries}
    keys = _keys(batch)
    marker = incomplete_marker(folder)
    unfinished = _unfinished(marker)
    if unfinished is not None and all(k in existing for k in _keys(unfinished)):
        # data.pkl lists the whole batch: a kill (or a power loss) came between writing it and removing the
        # marker, so the marker speaks of nothing unfinished, and its advice would delete listed videos
        marker.unlink()
        durable.fsync_directory(marker.parent)
        log(f"{marker}: removed; data.pkl lists its batch ({_keys(unfinished)[0]} .. {_keys(unfinished)[-1]}), "
            "a run stopped just before removing it")
        unfinished = None
    if unfinished is not None and unfinished != batch:
        present = [str(folder / k) for k in _keys(unfinished) if k not in existing and os.path.lexists(folder / k)]
        # Its command can finish it only while data.pkl lists none of its queries (else it is refused as taken).
        again = "" if any(k in existing for k in _keys(unfinished)) else "run that command again to finish it, or "
        raise DataError(
            f"{folder}: an unfinished make-queries (--dataset {unfinished['dataset']} --seed {unfinished['seed']} "
            f"--start_index {unfinished['start_index']} --num_queries {unfinished['num_queries']}) left "
            f"{len(present)} videos that data.pkl does not list; {again}drop it: "
            f"`rm {' '.join(shlex.quote(p) for p in [str(marker), *present])}`")
    resuming = unfinished is not None  # its videos are listed nowhere: made again, replaced
    if start_index == 0 and existing:
        raise DataError(f"{data_file}: holds {len(existing)} queries already; pass --start_index to add to it")
    taken = [k for k in keys if k in existing or (not resuming and os.path.lexists(folder / k))]
    if taken:
        raise DataError(f"{folder}: {', '.join(taken[:3])} exist already; a query is never overwritten "
                        f"(choose --start_index {_next_free(existing, folder)})")
    lengths = [int(n) for n in _lengths(source)]
    picks = draw(lengths, num_queries, seed)
    wanted = {episode for pair in picks for episode, _ in pair}
    segments: dict[tuple[int, int], np.ndarray] = {}
    for index, example in enumerate(source.examples()):  # one pass: keep only the clips drawn from each episode
        if index not in wanted:
            continue
        rows = _rows(example, source.spec)
        for pair in picks:
            for episode, offset in pair:
                if episode == index:
                    segments[episode, offset] = rows[offset:offset + schema.SEGMENT_STEPS].copy()
    decode = make_decoder(env)
    queries = {}
    folder.mkdir(parents=True, exist_ok=True)
    # From here until data.pkl lists the batch, the marker says which videos are not part of the queries yet.
    write_atomically(marker, functools.partial(_write, data=json.dumps(batch).encode()), force=True)
    for key, (left, right) in zip(keys, picks):
        entry = {"segment1": segments[left], "segment2": segments[right]}
        mp4 = query_video.render(decode(entry["segment1"]), decode(entry["segment2"]))
        # never replaces a video, but one of the unfinished batch this run finishes
        write_atomically(folder / key, functools.partial(_write, data=mp4), force=resuming)
        queries[key] = entry
    merged = {**existing, **queries}
    write_atomically(data_file, functools.partial(_write, data=pickle.dumps(merged, protocol=PROTOCOL)), force=True)
    marker.unlink()
    durable.fsync_directory(marker.parent)
    log(f"wrote {schema.counted(num_queries, 'query', 'queries')} ({keys[0]} .. {keys[-1]}) from {dataset} into "
        f"{folder}; data.pkl holds {len(merged)}")
    return folder


def _keys(batch: dict) -> list[str]:
    """The video names of a batch (its marker's fields): its queries' keys in data.pkl."""
    return [f"{batch['start_index'] + i}.mp4" for i in range(batch["num_queries"])]


def _unfinished(marker: Path) -> Optional[dict]:
    """The batch an unfinished run was writing (its marker), or None."""
    if not os.path.lexists(marker):
        return None
    value = dataset_dir.read_json(marker, 1 << 16)
    fields = {"dataset": str, "seed": int, "start_index": int, "num_queries": int}
    if not isinstance(value, dict) or set(value) != set(fields) or \
            not all(type(value[k]) is t for k, t in fields.items()) or \
            not (1 <= value["num_queries"] <= MAX_QUERIES and 0 <= value["start_index"] <= 2**31):
        raise DataError(f"{marker}: not a make-queries marker; remove it and the videos data.pkl does not list")
    return value


def _write(f, data: bytes) -> None:
    f.write(data)


def _existing(data_file: Path) -> dict:
    if not data_file.exists():
        return {}
    from dropj.converters.release import preferences

    with open(data_file, "rb") as f:
        value = legacy_pickle.load(f, str(data_file))
    if not isinstance(value, dict):
        raise DataError(f"{data_file}: not a queries data.pkl (a dict of video name -> segments)")
    for key in value:
        if not (isinstance(key, str) and preferences.is_video_name(key)):
            raise DataError(f"{data_file}: key {schema.describe(key)} is not a video name like '17.mp4'")
    return value


def _next_free(existing: dict, folder: Path) -> int:
    numbers = [int(k.split(".")[0]) for k in existing] + [int(p.stem) for p in folder.glob("*.mp4") if p.stem.isdigit()]
    return max(numbers, default=-1) + 1


def _lengths(source) -> list[int]:
    import tensorflow_datasets as tfds

    ds = source.builder.as_dataset(split="train", shuffle_files=False)
    return [int(n) - 1 for n in tfds.as_numpy(ds.map(lambda ex: ex[schema.STEPS].cardinality()))]


def _rows(example: dict, spec) -> np.ndarray:
    """(T, D + 3) float64 rows concat(state_t, scaled action_t) of one latent episode."""
    steps = example[schema.STEPS]
    states = np.asarray(steps[schema.OBSERVATION], np.float64)[:-1].copy()
    initial = example[schema.EPISODE_METADATA].get(schema.INITIAL_STATE)
    if initial is not None:  # a dream episode's step 0 is the exact float64 initial state
        states[0] = np.asarray(initial, np.float64)
    scaled = np.asarray(steps[schema.ACTION_SCALED], np.float64)[:-1]
    if not np.isfinite(scaled).all():  # the scaled file was not there: scale as it was made
        scaled = schema.scale_action(np.asarray(steps[schema.ACTION], np.float64)[:-1])
    return np.concatenate([states, scaled], axis=1)
