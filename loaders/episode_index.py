"""Where every episode's steps lie in a built split: made once, kept beside the data, memory-mapped.

    index = episode_index.open_index(directory, 'train', shards, spec)
    index.steps[i]                   # steps of episode i (-1: the record is not an episode)
    index.items_of(i, field_number)  # (start, length) in record i of each step's byte string
    index.path                       # VERSION_DIR/dropj_index/train.idx, or None (kept in memory)

Reading a window of 21 steps out of an episode of 1001 needs to know where
those 21 frames lie; finding that out parses the whole record (a few MB).
The index does it once per dataset: one pass over every record, then a file
of (for the release's `real` config) 16 bytes per step and 40 per episode.
`EpisodeSource` maps it read-only, so DataLoader workers share its pages
and start in milliseconds whatever the dataset's size.

The pass is input-bound too: each shard is opened as a regular file only
(`dataset_dir.open_shard`), a record's step count is read from its
`is_first` list without decoding it and refused past `dataset_dir.max_steps()`
(the pickle reader's cap, raised by `DROPJ_MAX_EPISODE_STEPS`; the message
says to what) before anything per step is made (counting stops at the cap:
a list written one entry per value is then told by the most its bytes can
hold, and that is what the message says to set), a step field's items are read
only up to the step count, and every span is gathered in arrays: its memory
is what the index records (16 bytes a step field, 8 in the file), never a
Python object per item (a 25 MB record claiming 5 million steps took 2 GiB).

The file is untrusted like the rest of the folder: it is opened without
blocking and used only when it is a regular file (a FIFO or anything else
there is left alone and the index kept in memory, with one warning saying to
remove it), when its size is exactly what its header's counts give, the header names these shards
with their current size, mtime and inode, and every span it holds lies
inside its record and every record where the TFRecord framing puts it (all
checked with a few vector operations). Otherwise it is stale: the index is
made again and written over it. It is written whole or not at all
(`durable.write_atomically`: a kill leaves the old file or none), never
through a symlink, and not at all while a shard was modified in the last
`SETTLE_S` seconds (a file rewritten within the file system's timestamp
granularity could keep its mtime: the index of such a shard lives in memory
only until it settles). A folder that cannot be written keeps the index in
memory, with one warning saying so.

Layout: b'DROPJIDX', a little-endian uint32 header length, the JSON header,
zero padding to a multiple of 64 bytes, then the arrays below in order.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import stat
import time
from pathlib import Path
from typing import BinaryIO, Optional, Union

import numpy as np

from dropj_datasets import codec, schema
from dropj_datasets.schema import DataError, Field

from .tfrecord_wire import ByteItems, Corrupt, TooMany, count_values, feature_spans, feature_values, record_spans

FORMAT = 1
MAGIC = b"DROPJIDX"
INDEX_DIR = "dropj_index"
SETTLE_S = 2.0
_MAX_HEADER = 1 << 20
_ALIGN = 64
_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a directory"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))
_log = logging.getLogger("dropj.loaders")


@dataclasses.dataclass
class EpisodeIndex:
    """records: (N, 4) int64 (shard, offset of the record's data, its length, steps or -1);
    first_item: (N + 1,) int64, episode i's steps are rows first_item[i]:first_item[i + 1] of `items`;
    items: (M, B, 2) uint32, (start, length) in its record of each step's value of each of `bytes_fields`;
    lists: (N, L, 2) uint32, (start, length) in its record of the `Feature` of each of `list_fields`."""
    records: np.ndarray
    first_item: np.ndarray
    items: np.ndarray
    lists: np.ndarray
    bytes_fields: tuple[str, ...]
    list_fields: tuple[str, ...]
    path: Optional[Path] = None

    @property
    def steps(self) -> np.ndarray:
        return self.records[:, 3]

    def items_of(self, record: int, field: int) -> ByteItems:
        rows = self.items[self.first_item[record]:self.first_item[record + 1], field]
        return ByteItems(rows[:, 0].astype(np.int64), rows[:, 1].astype(np.int64))


def one_string_per_item(field: Field) -> bool:
    """Whether each item (step) of the field is stored as one byte string: a frame of the codec the field
    names (`codec.for_field`), or a raw little-endian tensor."""
    return field.encoding == "bytes" or codec.for_field(field) is not None


def step_fields(spec: schema.Spec) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The top-level step fields of an episode kind: (stored as byte strings, stored as number lists)."""
    if not schema.kind_of(spec).episodic:
        return (), ()
    prefix = f"{schema.STEPS}/"
    fields = [f for f in spec.fields() if f.name.startswith(prefix) and "/" not in f.name[len(prefix):]]
    stored_as_bytes = [f.name for f in fields if one_string_per_item(f) or f.dtype in ("str", "bytes")]
    return tuple(stored_as_bytes), tuple(f.name for f in fields if f.name not in stored_as_bytes)


def shard_signature(shards: list[tuple[Path, int]]) -> list[list]:
    """What an index (and anything kept beside it, such as `statistics`) was made from: each shard's
    name, size, mtime and inode. Anything kept is current only while this is the same."""
    signature = []
    for path, _ in shards:
        stat = path.stat()
        signature.append([path.name, stat.st_size, stat.st_mtime_ns, stat.st_ino])
    return signature


def open_index(directory: Path, split: str, shards: list[tuple[Path, int]], spec: schema.Spec,
               index_dir: Optional[Union[str, os.PathLike]] = None, progress: bool = True) -> EpisodeIndex:
    """The split's index: read from `index_dir` (default: `directory`/dropj_index) when it is current,
    else made (one pass over the records) and written there when it can be."""
    folder = Path(index_dir) if index_dir is not None else directory / INDEX_DIR
    path = folder / f"{split}.idx"
    bytes_fields, list_fields = step_fields(spec)
    signature = shard_signature(shards)
    found, why = _read(path, signature, shards, bytes_fields, list_fields)
    if found is not None:
        return found
    foreign = why.endswith(", not a regular file")
    if why and not foreign:
        _log.info("%s: %s; indexing again", path, why)
    index = build(shards, bytes_fields, list_fields, progress=progress)
    if foreign:  # not ours to replace
        _log.warning("%s: %s; the index lives in memory for this run (remove %s to keep the index there)",
                     path, why, path)
        return index
    if signature and max(mtime for _, _, mtime, _ in signature) > time.time_ns() - SETTLE_S * 1e9:
        return index  # a shard written just now may still change within its mtime's granularity
    try:
        _write(path, index, signature)
        index.path = path
    except (OSError, DataError) as exc:
        _log.warning("%s: the index cannot be kept (%s); it lives in memory for this run "
                     "(pass index_dir= to keep it elsewhere)", path, exc.strerror if isinstance(exc, OSError)
                     and exc.strerror else exc)
    return index


def build(shards: list[tuple[Path, int]], bytes_fields: tuple[str, ...], list_fields: tuple[str, ...],
          progress: bool = True) -> EpisodeIndex:
    """One pass over every record of the shards (their counts checked against dataset_info.json)."""
    from tqdm.auto import tqdm

    from dropj.converters.store import dataset_dir  # regular files only; the step cap and its variable

    max_steps = dataset_dir.max_steps() if bytes_fields or list_fields else 0
    total = sum(count for _, count in shards)
    records = np.zeros((total, 4), np.int64)
    lists = np.zeros((total, len(list_fields), 2), np.uint32)
    items, first_item = [], np.zeros(total + 1, np.int64)
    bar = tqdm(total=total, desc="indexing", unit="record", delay=2, disable=not progress or None,
               dynamic_ncols=True)
    i = 0
    with bar:
        for number, (path, count) in enumerate(shards):
            with dataset_dir.open_shard(path) as f:
                spans = record_spans(f, path)
                if len(spans) != count:
                    raise DataError(f"{path}: {len(spans)} records, dataset_info.json says {count}")
                for local, (offset, length) in enumerate(spans.tolist()):
                    record = os.pread(f.fileno(), length, offset)
                    if len(record) != length:
                        raise DataError(f"{path}: record {local}: the shard ends inside the record")
                    try:
                        steps, rows = _episode(record, bytes_fields, list_fields, lists[i], max_steps)
                    except Corrupt as exc:
                        raise DataError(f"{path}: record {local}: {exc}") from None
                    records[i] = number, offset, length, steps
                    items.append(rows)
                    first_item[i + 1] = first_item[i] + len(rows)
                    i += 1
                    bar.update(1)
    stacked = items[0] if len(items) == 1 else np.concatenate(items) if items else \
        np.zeros((0, len(bytes_fields), 2), np.uint32)
    return EpisodeIndex(records, first_item, stacked, lists, bytes_fields, list_fields)


def _episode(record: bytes, bytes_fields: tuple[str, ...], list_fields: tuple[str, ...], lists: np.ndarray,
             max_steps: int) -> tuple[int, np.ndarray]:
    """(steps, or -1 for a record that is not an episode; (steps, fields, 2) spans of the byte-string step
    fields) of one record; `lists` gets the spans of the number-list step fields."""
    from dropj.converters.store import dataset_dir

    where = feature_spans(record)
    if not (bytes_fields or list_fields):
        return -1, np.zeros((0, 0, 2), np.uint32)
    is_first = f"{schema.STEPS}/{schema.IS_FIRST}"
    if is_first not in where:
        raise Corrupt(f"not an episode (no '{is_first}')")
    view = memoryview(record)
    at, length = where[is_first]
    try:
        kind, steps = count_values(view[at:at + length], limit=max_steps)
    except TooMany as exc:
        if exc.kind != "int64":
            raise Corrupt(f"not an episode ('{is_first}' holds {exc.kind} values)") from None
        # Refused before anything per step is made: the cap bounds the memory of every later read. Counting
        # stops at the cap (a list of one entry per value would take seconds to count): its length is then
        # told as the most its bytes can hold, a cap that reads it when set as the message says.
        told = f"{exc.most:,} steps" if exc.most == exc.counted else \
            f"at least {exc.counted:,} steps (up to {exc.most:,}: counted only to the cap)"
        raise Corrupt(f"field '{is_first}': {told}, more than the {max_steps:,} an episode may have "
                      f"({max_steps - 1:,} transitions); set {dataset_dir.MAX_STEPS_VARIABLE}={exc.most - 1} "
                      "to read it") from None
    if kind != "int64":
        raise Corrupt(f"not an episode ('{is_first}' holds {kind} values)")
    rows = np.zeros((steps, len(bytes_fields), 2), np.uint32)
    for k, name in enumerate(bytes_fields):
        if name not in where:
            raise Corrupt(f"field '{name}': 0 values for {steps} steps")
        at, length = where[name]
        try:
            found = feature_values(view[at:at + length], at, limit=steps)
        except TooMany:
            raise Corrupt(f"field '{name}': more than {steps} values for {steps} steps") from None
        if not isinstance(found, ByteItems) or len(found) != steps:
            raise Corrupt(f"field '{name}': {len(found)} values for {steps} steps")
        rows[:, k, 0], rows[:, k, 1] = found.starts, found.lengths
    for k, name in enumerate(list_fields):
        if name not in where:
            raise Corrupt(f"field '{name}' is missing")
        lists[k] = where[name]
    return steps, rows


def _layout(records: int, items: int, fields: int, lists: int) -> list[tuple[str, np.dtype, tuple[int, ...]]]:
    return [("records", np.dtype("<i8"), (records, 4)), ("first_item", np.dtype("<i8"), (records + 1,)),
            ("items", np.dtype("<u4"), (items, fields, 2)), ("lists", np.dtype("<u4"), (records, lists, 2))]


def _header(index: EpisodeIndex, signature: list) -> bytes:
    header = json.dumps({"format": FORMAT, "shards": signature, "bytes_fields": list(index.bytes_fields),
                         "list_fields": list(index.list_fields), "records": len(index.records),
                         "items": len(index.items)}).encode()
    return header + b" " * (-(len(MAGIC) + 4 + len(header)) % _ALIGN)


def _write(path: Path, index: EpisodeIndex, signature: list) -> None:
    from dropj.converters.store import durable

    if path.parent.is_symlink() or path.is_symlink():
        raise DataError(f"{path}: a symlink; the index is never written through one")
    header = _header(index, signature)
    layout = _layout(len(index.records), len(index.items), len(index.bytes_fields), len(index.list_fields))

    def write(f) -> None:
        f.write(MAGIC + len(header).to_bytes(4, "little") + header)
        for name, dtype, shape in layout:
            f.write(np.ascontiguousarray(getattr(index, name), dtype).reshape(shape).tobytes())

    durable.write_atomically(path, write, force=True)


def open_kept(path: Path) -> tuple[Optional[BinaryIO], int, str]:
    """A file kept beside the data (the index, the statistics), opened to read: never blocking (a FIFO there
    would hang the open), never through a symlink, a regular file only. (the file, its size, '') or (None, 0,
    why not; '' when there is none); "why" ends in ", not a regular file" for anything else there."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, 0, ""
    except OSError as exc:
        return None, 0, f"unreadable ({exc.strerror})"
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):  # before os.fdopen, which refuses a directory with an error
        os.close(fd)
        return None, 0, next((name for test, name in _KINDS if test(info.st_mode)), "not a file") + \
            ", not a regular file"
    return os.fdopen(fd, "rb"), info.st_size, ""


def _read(path: Path, signature: list, shards: list[tuple[Path, int]], bytes_fields: tuple[str, ...],
          list_fields: tuple[str, ...]) -> tuple[Optional[EpisodeIndex], str]:
    """(the index in `path`, '') when it is current and sound, else (None, why not; '' when missing)."""
    opened, size, why = open_kept(path)
    if opened is None:
        return None, why
    with opened as f:
        start = f.read(len(MAGIC) + 4)
        if len(start) < len(MAGIC) + 4 or start[:len(MAGIC)] != MAGIC:
            return None, "not an index file"
        length = int.from_bytes(start[len(MAGIC):], "little")
        if length > min(_MAX_HEADER, size):
            return None, "a header longer than the file"
        try:
            header = json.loads(f.read(length))
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None, "an unreadable header"
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            return None, "another format"
        if header.get("shards") != signature:
            return None, "the shards changed since it was made"
        if header.get("bytes_fields") != list(bytes_fields) or header.get("list_fields") != list(list_fields):
            return None, "made for other fields"
        counts = (header.get("records"), header.get("items"))
        if not all(type(n) is int and 0 <= n < 1 << 40 for n in counts):
            return None, "counts out of range"
        layout = _layout(counts[0], counts[1], len(bytes_fields), len(list_fields))
        offset = len(MAGIC) + 4 + length
        if offset % _ALIGN or size != offset + sum(d.itemsize * int(np.prod(s)) for _, d, s in layout):
            return None, "its size does not match its header"
        arrays = {}
        for name, dtype, shape in layout:
            count = int(np.prod(shape))
            # a plain ndarray over a mapping of the file checked above (not of whatever the path names now);
            # indexing it costs what indexing any array costs
            arrays[name] = np.asarray(np.memmap(f, dtype, "r", offset, shape)) if count else np.zeros(shape, dtype)
            offset += dtype.itemsize * count
    index = EpisodeIndex(**arrays, bytes_fields=bytes_fields, list_fields=list_fields, path=path)
    problem = _unsound(index, shards, signature)
    return (None, problem) if problem else (index, "")


def _unsound(index: EpisodeIndex, shards: list[tuple[Path, int]], signature: list) -> str:
    """What is wrong with an index read from disk, or ''; vector checks over every record and span."""
    records = np.asarray(index.records)
    shard, offset, length, steps = records.T
    counts = [count for _, count in shards]
    if len(records) != sum(counts):
        return "a record count other than dataset_info.json's"
    expected_shard = np.repeat(np.arange(len(shards)), counts)
    if not np.array_equal(shard, expected_shard):
        return "records in the wrong shards"
    # The framing: each shard's first record's data at byte 12, each next one 16 bytes after the last ends.
    first = np.r_[True, shard[1:] != shard[:-1]] if len(shard) else np.zeros(0, bool)
    following = np.r_[0, offset[:-1] + length[:-1] + 16] if len(shard) else np.zeros(0, np.int64)
    if (length < 0).any() or not np.array_equal(offset, np.where(first, 12, following)):
        return "record offsets that are not the shards' framing"
    last = np.r_[shard[1:] != shard[:-1], True] if len(shard) else np.zeros(0, bool)
    sizes = np.array([s[1] for s in signature], np.int64)
    filled = np.zeros(len(shards), np.int64)
    filled[shard[last]] = (offset + length + 4)[last]
    if not np.array_equal(filled, sizes):
        return "records that do not fill their shards"
    first_item = np.asarray(index.first_item)
    episodes = index.bytes_fields or index.list_fields
    if episodes and ((steps < 0).any() or first_item[0] != 0 or not np.array_equal(np.diff(first_item), steps)):
        return "step counts that do not add up"
    if not episodes and ((steps != -1).any() or first_item.any()):
        return "steps for records that are not episodes"
    if first_item[-1] != len(index.items):
        return "step counts that do not add up"
    spans = np.asarray(index.items, np.int64)
    owner_length = np.repeat(length, np.maximum(steps, 0))
    if len(spans) and (spans[..., 0] + spans[..., 1] > owner_length[:, None]).any():
        return "a step's span past its record"
    lists = np.asarray(index.lists, np.int64)
    if lists.size and (lists[..., 0] + lists[..., 1] > length[:, None]).any():
        return "a list's span past its record"
    return ""
