"""A config's statistics from the numbers of its examples, without TensorFlow, kept beside the index.

    from dropj.loaders import EpisodeSource, statistics
    figures = statistics.of(EpisodeSource('dropj_carracing/real', data_dir='D'))
    figures['lengths'], figures['returns']   # per episode
    figures['actions']['steer']              # every finite action of every transition
    statistics.accumulate(spec, examples)    # the same figures of examples as tfds.load gives them

What is counted follows how the kind is shown (`schema.kind_of(spec).shown_as`), and is what `dropj stats`
and `dropj serve` show:

* episodes (and sketches, recordings, encoded episodes): `items`, `lengths` (transitions: the steps, less the
  padding last step where `extra_last_step`), `returns`, `terminal` (episodes with a terminal step) and
  `terminal_per_episode`, `flags_per_episode` (steps whose info flag is set, per flag), `rewards`
  ({reward: steps}), `actions` (`steer`, `gas`, `brake` of every transition whose action is finite);
* responses: `items`, `skipped`, `answers` ({'a/b/c': responses}, most common first), `labels`, `total_time`,
  `repeat_count`, `annotators` ({user: responses}), and per response `user_per_response` and
  `answer_per_response` (its 'a/b/c', None when skipped);
* queries: `items`, `video_bytes`.

At most `MAX_ITEMS` items are counted. `of` reads only the fields these need (`fields(spec)`) through
`EpisodeSource.select`: frames and latent states are neither decoded nor read (an episode of 1,000 Car Racing
steps is a few MB of frames and 50 kB of numbers), and each item's position field is checked as the TFDS
reader checks it (an incomplete or reordered dataset is one error).

The figures are kept beside the index, `VERSION_DIR/dropj_index/train.stats` (wherever the index is kept:
nowhere when it lives in memory), under the index's key: the shards' names, sizes, mtimes and inodes
(`episode_index.shard_signature`), with this module's `FORMAT`, the kind, the config, the fields counted and
`MAX_ITEMS`. Anything else there is recomputed and written over, written whole or not at all
(`durable.write_atomically`), never through a symlink; anything but a regular file there (a FIFO, a folder) is
left alone, with one warning, and the figures counted each time.

The file is untrusted input like the rest of the folder: it is opened without blocking and read only when it
is a regular file no larger than the dataset's figures can be (`_most_bytes`, from the index), its JSON
header (at most 4 MiB, no NaN, no duplicate keys, every count an int) gives exactly its size, and its figures
agree with the index (each episode's length with the index's steps, every count with the items). A file
failing any of it is ignored and the figures counted again; it never crashes a reader.

Layout: b'DROPJSTS', a little-endian uint32 header length, the JSON header (its `key`, the scalar figures
and the counts the arrays' lengths follow from), spaces to a multiple of 8 bytes, then the arrays
(`_layout`), little-endian int64 or float64, in order.
"""

from __future__ import annotations

import collections
import json
import logging
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import numpy as np

from dropj_datasets import schema
from dropj_datasets.schema import DataError

from . import episode_index
from .episode_source import EpisodeSource

__all__ = ["MAX_ITEMS", "accumulate", "fields", "of"]

FORMAT = 2  # 2: terminal_per_episode, user_per_response, answer_per_response
MAGIC = b"DROPJSTS"
SUFFIX = ".stats"
MAX_ITEMS = 100_000  # items counted at most
ACTION_PARTS = ("steer", "gas", "brake")
_MAX_HEADER = 4 << 20
_MAX_FLAGS = 64
_ALIGN = 8
_I8, _F8 = np.dtype("<i8"), np.dtype("<f8")
_FOREIGN = ", not a regular file"  # left alone: the figures are then counted and not kept
_log = logging.getLogger("dropj.loaders")


class _Stale(Exception):
    """A kept file that is not the figures of this dataset now; the message says why."""


def _path(*keys: str) -> str:
    return "/".join(keys)


def fields(spec: schema.Spec) -> tuple[str, ...]:
    """The fields the figures of `spec`'s kind are counted from ('/'-paths, in `spec.fields()` order): the
    numbers and flags, never a frame. The kind's position field too, which is checked, not counted."""
    kind = schema.kind_of(spec)
    if kind.shown_as == schema.RESPONSE_VIEW:
        wanted = {_path(schema.RESPONSE, schema.TOTAL_TIME), _path(schema.RESPONSE, schema.REPEAT_COUNT),
                  _path(schema.ANNOTATOR, schema.USER_ID), _path(schema.RESPONSE, schema.SKIPPED),
                  _path(schema.RESPONSE, schema.ANSWERS, schema.ANSWER), schema.LABEL}
        flags = None
    elif kind.shown_as == schema.QUERY_VIEW:
        wanted, flags = {schema.VIDEO}, None
    else:
        wanted = {_path(schema.STEPS, key) for key in (schema.IS_FIRST, schema.REWARD, schema.IS_TERMINAL,
                                                        schema.ACTION)}
        flags = _path(schema.STEPS, schema.INFO) + "/"
    if kind.index_field:
        wanted.add(kind.index_field)
    return tuple(f.name for f in spec.fields() if f.name in wanted or (flags and f.name.startswith(flags)))


# --- the figures, from examples -------------------------------------------------------------------------

def accumulate(spec: schema.Spec, examples: Iterable[dict]) -> dict:
    """The figures of the first `MAX_ITEMS` of `examples` (nested dicts of numpy values, as `tfds.load` and
    `EpisodeSource` give them; those of `EpisodeSource.select(i, fields(spec))` are enough)."""
    shown_as = schema.kind_of(spec).shown_as
    items = _first(examples)
    if shown_as == schema.RESPONSE_VIEW:
        return _responses(spec, items)
    if shown_as == schema.QUERY_VIEW:
        sizes = [len(example[schema.VIDEO]) for example in items]
        return {"kind": spec.kind, "items": len(sizes), "video_bytes": sizes}
    return _episodes(spec, items)


def _first(examples: Iterable[dict]) -> Iterator[dict]:
    for index, example in enumerate(examples):
        if index >= MAX_ITEMS:
            return
        yield example


def _episodes(spec: schema.Spec, examples: Iterable[dict]) -> dict:
    extra_last = schema.kind_of(spec).extra_last_step
    lengths, returns, terminal = [], [], []
    flags: dict[str, list[int]] = collections.defaultdict(list)
    actions: list[np.ndarray] = []
    rewards: collections.Counter = collections.Counter()
    for example in examples:
        steps = example[schema.STEPS]
        n = len(steps[schema.IS_FIRST]) - extra_last
        lengths.append(n)
        episode_rewards = np.asarray(steps[schema.REWARD])[:n]
        returns.append(float(np.sum(episode_rewards)))
        rewards.update(float(r) for r in episode_rewards)
        terminal.append(bool(np.any(steps[schema.IS_TERMINAL])))
        # by name, as tfds.load orders a dict's features (the schema's order, which EpisodeSource keeps, is
        # another for the obstacle environments' flags): the page shows them in this order
        for name, column in sorted((steps.get(schema.INFO) or {}).items(), key=lambda item: item[0]):
            flags[name].append(int(np.sum(np.asarray(column)[:n] == schema.INFO_TRUE)))
        action = np.asarray(steps[schema.ACTION], dtype=np.float64)[:n]
        actions.append(action[np.isfinite(action).all(axis=1)])
    stacked = np.concatenate(actions) if actions else np.zeros((0, 3))
    return {"kind": spec.kind, "items": len(lengths), "lengths": lengths, "returns": returns,
            "terminal": sum(terminal), "terminal_per_episode": terminal, "flags_per_episode": dict(flags),
            "rewards": dict(sorted(rewards.items())),
            "actions": {name: stacked[:, k].tolist() for k, name in enumerate(ACTION_PARTS)}}


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _responses(spec: schema.Spec, examples: Iterable[dict]) -> dict:
    answers: collections.Counter = collections.Counter()
    labels: collections.Counter = collections.Counter()
    times, repeats, skipped, users, given = [], [], 0, [], []
    for example in examples:
        response = example[schema.RESPONSE]
        times.append(float(response[schema.TOTAL_TIME]))
        repeats.append(int(response[schema.REPEAT_COUNT]))
        users.append(int(example[schema.ANNOTATOR][schema.USER_ID]))
        if response[schema.SKIPPED]:
            skipped += 1
            given.append(None)
            continue
        given.append("/".join(_text(a) for a in response[schema.ANSWERS][schema.ANSWER]))
        answers[given[-1]] += 1
        labels[round(float(example[schema.LABEL]), 4)] += 1
    return {"kind": spec.kind, "items": len(times), "skipped": skipped, "answers": dict(answers.most_common()),
            "labels": dict(sorted(labels.items())), "total_time": times, "repeat_count": repeats,
            "annotators": dict(sorted(collections.Counter(users).items())), "user_per_response": users,
            "answer_per_response": given}


# --- through the TF-free reader, kept beside the index ---------------------------------------------------

def of(source: EpisodeSource, *, keep: bool = True) -> dict:
    """The figures of `source`'s split: read from beside its index when they are current, else counted
    from the fields they need (`fields`) and kept there (`keep=False`: neither read nor kept)."""
    spec = source.spec
    index = source.index  # made, or read, first: the figures are kept where it is
    if len(source) != len(index.records):
        raise ValueError(f"{source.directory}: statistics are of a whole split, not of {source.split!r}")
    path = index.path.with_name(index.path.stem + SUFFIX) if keep and index.path is not None else None
    key = _key(source)
    if path is not None:
        found, why = _read(path, key, spec, index, len(source))
        if found is not None:
            return found
        if why.endswith(_FOREIGN):  # not ours to replace
            _log.warning("%s: %s; the statistics are counted for this run only (remove it to keep them there)",
                         path, why)
            path = None
        elif why:
            _log.info("%s: %s; counting the statistics again", path, why)
    figures = accumulate(spec, _examples(source))
    if path is not None and _key(source) == key:  # no shard changed while they were counted
        try:
            _write(path, key, schema.kind_of(spec).shown_as, figures)
        except (OSError, DataError) as exc:
            _log.warning("%s: the statistics cannot be kept (%s); they are counted again next time", path,
                         exc.strerror if isinstance(exc, OSError) and exc.strerror else exc)
    return figures


def _examples(source: EpisodeSource) -> Iterator[dict]:
    """The items' counted fields, each item's position checked as `roundtrip.built` checks it."""
    names = fields(source.spec)
    position = schema.kind_of(source.spec).index_field
    for i in range(min(len(source), MAX_ITEMS)):
        example = source.select(i, names)
        if position:
            value: Any = example
            for key in position.split("/"):
                value = value[key]
            if int(value) != i:
                raise DataError(f"{source.directory}: item {i} expected next, found {int(value)} "
                                "(incomplete or reordered dataset)")
        yield example


def _key(source: EpisodeSource) -> dict:
    return {"format": FORMAT, "shards": episode_index.shard_signature(source.shards), "kind": source.spec.kind,
            "config": source.spec.config, "fields": list(fields(source.spec)), "max_items": MAX_ITEMS}


# --- the kept file --------------------------------------------------------------------------------------

def _encode(shown_as: str, figures: dict) -> tuple[dict, list[np.ndarray]]:
    """(the header's figures and counts, the arrays in `_layout` order)."""
    if shown_as == schema.RESPONSE_VIEW:
        labels = figures["labels"]
        header = {"items": figures["items"], "skipped": figures["skipped"],
                  "answers": [[k, v] for k, v in figures["answers"].items()],
                  "annotators": [[k, v] for k, v in figures["annotators"].items()], "labels": len(labels)}
        position = {answer: k for k, answer in enumerate(figures["answers"])}
        arrays = [np.array(list(labels), _F8), np.array(list(labels.values()), _I8),
                  np.array(figures["total_time"], _F8), np.array(figures["repeat_count"], _I8),
                  np.array(figures["user_per_response"], _I8),
                  np.array([-1 if a is None else position[a] for a in figures["answer_per_response"]], _I8)]
    elif shown_as == schema.QUERY_VIEW:
        header = {"items": figures["items"]}
        arrays = [np.array(figures["video_bytes"], _I8)]
    else:
        rewards, actions = figures["rewards"], figures["actions"]
        header = {"items": figures["items"], "terminal": figures["terminal"],
                  "flags": list(figures["flags_per_episode"]), "rewards": len(rewards),
                  "actions": len(actions[ACTION_PARTS[0]])}
        arrays = [np.array(figures["lengths"], _I8), np.array(figures["returns"], _F8),
                  np.array(figures["terminal_per_episode"], _I8),
                  *(np.array(v, _I8) for v in figures["flags_per_episode"].values()),
                  np.array(list(rewards), _F8), np.array(list(rewards.values()), _I8),
                  *(np.array(actions[part], _F8) for part in ACTION_PARTS)]
    return header, arrays


def _count(header: dict, name: str, most: int) -> int:
    value = header.get(name)
    if type(value) is not int or not 0 <= value <= most:
        raise _Stale(f"'{name}' is not a count up to {most}")
    return value


def _layout(shown_as: str, header: dict, most: int) -> list[tuple[str, np.dtype, int]]:
    """The arrays that follow the header: (name, dtype, length), their lengths from the header's counts."""
    items = _count(header, "items", most)
    if shown_as == schema.RESPONSE_VIEW:
        labels = _count(header, "labels", most)
        return [("label values", _F8, labels), ("label counts", _I8, labels), ("total_time", _F8, items),
                ("repeat_count", _I8, items), ("users", _I8, items), ("answer of", _I8, items)]
    if shown_as == schema.QUERY_VIEW:
        return [("video_bytes", _I8, items)]
    flags = header.get("flags")
    if not isinstance(flags, list) or len(flags) > _MAX_FLAGS or not all(type(f) is str for f in flags) \
            or len(set(flags)) != len(flags):
        raise _Stale("'flags' is not a list of distinct names")
    rewards, actions = _count(header, "rewards", most), _count(header, "actions", most)
    return [("lengths", _I8, items), ("returns", _F8, items), ("terminal", _I8, items),
            *((f"flag {f}", _I8, items) for f in flags),
            ("reward values", _F8, rewards), ("reward counts", _I8, rewards),
            *((part, _F8, actions) for part in ACTION_PARTS)]


def _most_bytes(records: int, steps: int) -> int:
    """The largest file the figures of `records` items of `steps` steps in all can take."""
    return len(MAGIC) + 4 + _MAX_HEADER + _ALIGN + 8 * ((4 + _MAX_FLAGS) * records + 5 * steps)


def _write(path: Path, key: dict, shown_as: str, figures: dict) -> None:
    from dropj.converters.store import durable

    if path.parent.is_symlink() or path.is_symlink():
        raise DataError(f"{path}: a symlink; the statistics are never written through one")
    header, arrays = _encode(shown_as, figures)
    text = json.dumps({"key": key, **header}, allow_nan=False).encode()
    if len(text) > _MAX_HEADER:
        raise DataError(f"a header of {len(text):,} bytes, more than the {_MAX_HEADER:,} a reader takes")
    text += b" " * (-(len(MAGIC) + 4 + len(text)) % _ALIGN)

    def write(f) -> None:
        f.write(MAGIC + len(text).to_bytes(4, "little") + text)
        for array in arrays:
            f.write(array.tobytes())

    durable.write_atomically(path, write, force=True)


def _refuse(name: str) -> None:
    raise ValueError(f"{name} in the header")


def _no_duplicates(pairs: list) -> dict:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise ValueError("a key twice in the header")
    return found


def _read(path: Path, key: dict, spec: schema.Spec, index: episode_index.EpisodeIndex,
          records: int) -> tuple[Optional[dict], str]:
    """(the figures kept in `path`, '') when they are current and sound, else (None, why not; '' when
    there are none)."""
    opened, size, why = episode_index.open_kept(path)  # a FIFO, a folder or a symlink there: left alone
    if opened is None:
        return None, why
    steps = np.asarray(index.steps)
    most = _most_bytes(records, int(steps[steps > 0].sum()))
    with opened as f:
        if size > most:
            return None, f"{size:,} bytes, more than these statistics can take ({most:,})"
        data = f.read(size + 1)
    try:
        return _decoded(data, key, spec, steps, records), ""
    except _Stale as exc:
        return None, str(exc)


def _decoded(data: bytes, key: dict, spec: schema.Spec, steps: np.ndarray, records: int) -> dict:
    start = len(MAGIC) + 4
    if len(data) < start or data[:len(MAGIC)] != MAGIC:
        raise _Stale("not a statistics file")
    length = int.from_bytes(data[len(MAGIC):start], "little")
    if length > min(_MAX_HEADER, len(data) - start) or (start + length) % _ALIGN:
        raise _Stale("a header longer than the file, or unaligned")
    try:
        header = json.loads(data[start:start + length], parse_constant=_refuse, object_pairs_hook=_no_duplicates)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _Stale("an unreadable header") from None
    if not isinstance(header, dict) or not isinstance(header.get("key"), dict) \
            or header["key"].get("format") != FORMAT:
        raise _Stale("another format")
    if header["key"] != key:
        raise _Stale("the shards changed since they were counted")
    shown_as = schema.kind_of(spec).shown_as
    items = min(records, MAX_ITEMS)
    layout = _layout(shown_as, header, int(steps[steps > 0].sum()) + records)
    if len(data) != start + length + sum(dtype.itemsize * n for _, dtype, n in layout):
        raise _Stale("its size does not match its header")
    arrays, at = {}, start + length
    for name, dtype, n in layout:
        arrays[name] = np.frombuffer(data, dtype, n, at)
        at += dtype.itemsize * n
    if header["items"] != items:
        raise _Stale(f"{header['items']} items counted, the dataset has {items}")
    if shown_as == schema.RESPONSE_VIEW:
        return _responses_from(spec, header, arrays, items)
    if shown_as == schema.QUERY_VIEW:
        if (arrays["video_bytes"] < 0).any():
            raise _Stale("a negative size")
        return {"kind": spec.kind, "items": items, "video_bytes": arrays["video_bytes"].tolist()}
    return _episodes_from(spec, header, arrays, steps[:items])


def _counts(counts: np.ndarray, total: int, what: str) -> None:
    if len(counts) and counts.min() < 1 or int(counts.sum()) != total:
        raise _Stale(f"{what} counts that do not add up to {total}")


def _increasing(values: np.ndarray, what: str) -> None:
    if np.isfinite(values).all() and not (np.diff(values) > 0).all():
        raise _Stale(f"{what} out of order")


def _episodes_from(spec: schema.Spec, header: dict, arrays: dict, steps: np.ndarray) -> dict:
    lengths = arrays["lengths"]
    if not np.array_equal(lengths, steps - schema.kind_of(spec).extra_last_step):
        raise _Stale("episode lengths other than the index's")
    transitions = int(lengths.sum())
    items = len(lengths)
    terminal = arrays["terminal"]
    if len(terminal) and (terminal.min() < 0 or terminal.max() > 1) or int(terminal.sum()) != \
            _count(header, "terminal", items):
        raise _Stale("terminal episodes other than the count")
    if header["actions"] > transitions:
        raise _Stale("more actions than transitions")
    _counts(arrays["reward counts"], transitions, "reward")
    _increasing(arrays["reward values"], "rewards")
    flags = {}
    for name in header["flags"]:
        column = arrays[f"flag {name}"]
        if len(column) and (column.min() < 0 or (column > lengths).any()):
            raise _Stale(f"flag '{name[:40]}' set on more steps than an episode has")
        flags[name] = column.tolist()
    return {"kind": spec.kind, "items": items, "lengths": lengths.tolist(), "returns": arrays["returns"].tolist(),
            "terminal": header["terminal"], "terminal_per_episode": [bool(t) for t in terminal.tolist()],
            "flags_per_episode": flags,
            "rewards": dict(zip(arrays["reward values"].tolist(), arrays["reward counts"].tolist())),
            "actions": {part: arrays[part].tolist() for part in ACTION_PARTS}}


def _pairs(header: dict, name: str, key_type: type) -> list:
    pairs = header.get(name)
    if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 and type(p[0]) is key_type
                                              and type(p[1]) is int and p[1] > 0 for p in pairs) \
            or len({p[0] for p in pairs}) != len(pairs):
        raise _Stale(f"'{name}' is not a list of distinct [{key_type.__name__}, count] pairs")
    return pairs


def _responses_from(spec: schema.Spec, header: dict, arrays: dict, items: int) -> dict:
    skipped = _count(header, "skipped", items)
    answers = _pairs(header, "answers", str)
    annotators = _pairs(header, "annotators", int)
    if sum(count for _, count in answers) != items - skipped:
        raise _Stale("answer counts that do not add up")
    if sum(count for _, count in annotators) != items or [k for k, _ in annotators] != sorted(k for k, _ in annotators):
        raise _Stale("annotator counts that do not add up")
    _counts(arrays["label counts"], items - skipped, "label")
    _increasing(arrays["label values"], "labels")
    users, answer_of = arrays["users"].tolist(), arrays["answer of"]
    if sorted(collections.Counter(users).items()) != [tuple(pair) for pair in annotators]:
        raise _Stale("responses per user other than the annotator counts")
    if len(answer_of) and (answer_of.min() < -1 or answer_of.max() >= len(answers)) or \
            np.bincount(answer_of + 1, minlength=len(answers) + 1).tolist() != [skipped] + [n for _, n in answers]:
        raise _Stale("answers per response other than the answer counts")
    names = [answer for answer, _ in answers]
    return {"kind": spec.kind, "items": items, "skipped": skipped, "answers": dict(map(tuple, answers)),
            "labels": dict(zip(arrays["label values"].tolist(), arrays["label counts"].tolist())),
            "total_time": arrays["total_time"].tolist(), "repeat_count": arrays["repeat_count"].tolist(),
            "annotators": dict(map(tuple, annotators)), "user_per_response": users,
            "answer_per_response": [None if k < 0 else names[k] for k in answer_of.tolist()]}
