"""Random access to a built DROPJ dataset without TensorFlow: `EpisodeSource`.

    from dropj.loaders import EpisodeSource
    src = EpisodeSource('dropj_carracing/real', data_dir='D')
    len(src)                          # episodes (or queries, or sketches) of the train split
    ep = src[3]                       # {'steps': {field: array stacked over steps}, 'episode_metadata': {...}}
    ep['steps']['observation'].shape  # (T+1, 84, 84, 3) uint8

It reads the TFRecord shards that the default `tfds build` writes, with the
values `tfds.load` gives (tests/loaders/test_episode_source.py compares every example
of every config), importing numpy and Pillow only:

* the index (`episode_index`): where each record, and each step's value of
  each step field, lies in the shards; made in one pass over the data the
  first time, kept beside it and memory-mapped after;
* each record is a `tf.train.Example`, parsed from the protobuf wire format
  (`tfrecord_wire`);
* each field is decoded as the schema declares it (`schema.Spec.fields()`,
  the same declaration the builder makes its TFDS features from): frames by
  the codec their field names (`codec.for_field`): for PNG, the indexed
  frames our builders write directly (`codec.decode_indexed_png`, 1.5x
  Pillow's rate on Car Racing frames), any other PNG through Pillow;
  BYTES-encoded tensors from their raw bytes, integers and booleans from
  varints, text as bytes.

A built directory is untrusted input: it is checked as `dropj` checks it
before TFDS opens one (`converters.dataset_dir`), every length is bounded by
the file, and a bad record is one `DataError` naming the shard, the record
and the field. The records' own CRCs are not checked (CRC-32C over megabytes
in Python would cost more than the decoding); a damaged record fails to parse
or decode instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Collection, Optional, Union

import numpy as np

from dropj_datasets import codec, schema
from dropj_datasets.schema import DataError, Field

from . import episode_index
from .tfrecord_wire import ByteItems, Corrupt, TooMany, feature_spans, feature_values, index_example

_MIN_GAP = 4096  # bytes: a smaller span of unwanted values is read with the rest (one read, not two)

__all__ = ["EpisodeSource", "decode_example"]


# --- the schema's fields, decoded --------------------------------------------------------------------

def _decode_frame(frame_codec: codec.FrameCodec, data: bytes, shape: tuple[int, ...],
                  out: Optional[np.ndarray] = None) -> np.ndarray:
    """One frame, into `out` when given: by the codec's fast path when it takes the bytes (for PNG, the
    indexed frames our builders write), else by its decoder once the header says the frame has the
    schema's size (a header claiming 10^12 pixels never reaches the decoder)."""
    frame = frame_codec.decode_fast(data, shape, out)
    if frame is not None:
        return frame
    name = frame_codec.name.upper()
    try:
        size = frame_codec.size(data)
        if size != (shape[1], shape[0]):
            raise Corrupt(f"an image of {name} {size[0]}x{size[1]}, expected {name} {shape[1]}x{shape[0]}")
        frame = frame_codec.decode(data)
    except DataError as exc:  # the codec's message, which names no file: the caller adds where
        raise Corrupt(str(exc)) from None
    if frame.shape != (shape[0], shape[1], 3):
        raise Corrupt(f"an image of {frame.shape[1]}x{frame.shape[0]}, expected {name} {shape[1]}x{shape[0]}")
    if out is not None:
        out[...] = frame
    return frame


def _decode_frames(frame_codec: codec.FrameCodec, values: Any, items: int, shape: tuple[int, ...],
                   out: np.ndarray) -> np.ndarray:
    if not isinstance(values, list) or len(values) != items:
        raise Corrupt(f"{len(values)} images, expected {items}")
    for k, value in enumerate(values):
        _decode_frame(frame_codec, value, shape, out[k])
    return out


def _decode(field: Field, values: Any, items: Optional[int], shape: tuple[int, ...],
            out: Optional[np.ndarray] = None) -> np.ndarray:
    """One field's values: `items` per-item values of `shape` (a sequence), or one of `shape` (None);
    into `out` (an array of the result's shape and dtype) when given."""
    frame_codec = codec.for_field(field)
    if out is not None:
        if frame_codec is not None and items is not None:
            return _decode_frames(frame_codec, values, items, shape, out)
        out[...] = _decode(field, values, items, shape)
        return out
    count = 1 if items is None else items
    size = int(np.prod(shape))
    out_shape = shape if items is None else (items, *shape)
    if frame_codec is not None:
        if not isinstance(values, list) or len(values) != count:
            raise Corrupt(f"{len(values)} images, expected {count}")
        if items is None:
            return _decode_frame(frame_codec, values[0], shape)
        return _decode_frames(frame_codec, values, items, shape, np.empty(out_shape, np.uint8))
    if field.dtype in ("str", "bytes"):
        if not isinstance(values, list) or len(values) != count * size:
            raise Corrupt(f"{len(values)} strings, expected {count * size}")
        array = np.empty(len(values), object)
        array[:] = values
        return array.reshape(out_shape)
    dtype = np.dtype(field.dtype)
    if field.encoding == "bytes":
        if not isinstance(values, list) or len(values) != count or any(len(v) != size * dtype.itemsize
                                                                       for v in values):
            raise Corrupt(f"{len(values)} raw tensors, expected {count} of {size * dtype.itemsize} bytes")
        flat = np.frombuffer(b"".join(values), dtype.newbyteorder("<")).astype(dtype)
        return flat.reshape(out_shape)
    if not isinstance(values, np.ndarray) or len(values) != count * size:
        raise Corrupt(f"{len(values)} values, expected {count * size}")
    if dtype.kind == "f":
        if values.dtype != np.float32:
            raise Corrupt("integers where floats are stored")
        return values.astype(dtype).reshape(out_shape)
    if values.dtype != np.int64:
        raise Corrupt("floats where integers are stored")
    if dtype == np.bool_:
        if values.size and (values.min() < 0 or values.max() > 1):
            raise Corrupt("a boolean that is neither 0 nor 1")
        return values.astype(np.bool_).reshape(out_shape)
    info = np.iinfo(dtype)
    if values.size and (values.min() < info.min or values.max() > info.max):
        raise Corrupt(f"a value outside {dtype.name}")
    return values.astype(dtype).reshape(out_shape)


def _byte_strings(field: Field, values: Any, items: int, shape: tuple[int, ...], record: Optional[bytes]) -> Any:
    """`values` as `_decode` takes them: where byte strings lie in `record` (`ByteItems`) made into them
    only when there are as many as `items` of `shape` need (a forged count costs nothing)."""
    if not isinstance(values, ByteItems):
        return values
    expected = items * (1 if episode_index.one_string_per_item(field) else int(np.prod(shape)))
    if len(values) != expected:
        raise Corrupt(f"{len(values):,} byte strings, expected {expected:,}")
    return values.items(record)


def _sequence_of(name: str, sequences: dict) -> Optional[tuple[str, str]]:
    """(path of the sequence a field belongs to, its group name), or None: as the builder nests them, a
    group named in the kind's `sequences` is a sequence at whatever depth it sits."""
    parts = name.split("/")
    for depth, part in enumerate(parts[:-1]):
        if part in sequences:
            return "/".join(parts[:depth + 1]), part
    return None


def decode_example(features: dict, spec: schema.Spec, record: Optional[bytes] = None,
                   max_steps: Optional[int] = None, names: Optional[Collection[str]] = None) -> dict:
    """The parsed features of one record -> the nested dict of numpy values `tfds.load` gives.

    `features` as `parse_example` gives them, or as `index_example` does with the `record` they lie in:
    then a field's byte strings are made only once its count is the one expected. `max_steps`: the
    longest sequence accepted (refused before anything of that length is allocated). `names`: only these
    fields ('/'-paths of `spec.fields()`; default all), nested as in the whole example; a sequence's length
    is then told by the first of them that tells it."""
    sequences = dict(schema.KINDS[spec.kind].sequences)
    fields = spec.fields() if names is None else [field for field in spec.fields() if field.name in names]

    def per_item(field: Field, group: str) -> tuple:
        return field.shape if group == schema.STEPS else field.shape[1:]  # as the builder declares them

    lengths: dict[str, int] = {}
    for field in fields:  # each sequence's length, from its first field that tells it
        found = _sequence_of(field.name, sequences)
        if found is None or found[0] in lengths or field.name not in features:
            continue
        unit = 1 if episode_index.one_string_per_item(field) else int(np.prod(per_item(field, found[1])))
        if unit and len(features[field.name]) % unit == 0:
            lengths[found[0]] = len(features[field.name]) // unit
            if max_steps is not None and lengths[found[0]] > max_steps:
                raise Corrupt(f"field '{field.name}': {lengths[found[0]]:,} steps, more than the {max_steps:,} "
                              "a sequence may have")
    out: dict = {}
    for field in fields:
        if field.name not in features:
            raise Corrupt(f"field '{field.name}' is missing")
        found = _sequence_of(field.name, sequences)
        try:
            if found is not None:
                if found[0] not in lengths:
                    raise Corrupt("the sequence's length cannot be told")
                shape = per_item(field, found[1])
                values = _byte_strings(field, features[field.name], lengths[found[0]], shape, record)
                value = _decode(field, values, lengths[found[0]], shape)
            else:
                value = _decode(field, _byte_strings(field, features[field.name], 1, field.shape, record), None,
                                field.shape)
                if value.ndim == 0:
                    value = value[()]  # a scalar as TFDS gives it: a numpy scalar, or bytes for text
        except Corrupt as exc:
            raise Corrupt(f"field '{field.name}': {exc}") from None
        *parents, leaf = field.name.split("/")
        node = out
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return out


# --- the source --------------------------------------------------------------------------------------

class EpisodeSource:
    """Map-style access to one split of a built DROPJ dataset, without TensorFlow.

    `name_or_dir`: 'dataset/config' (the newest version under `data_dir`, TFDS's default when None)
    or a built version folder. `src[i]` decodes record i of the split (source order).
    `index_dir`: where the split's index is kept (default: the version folder's `dropj_index/`;
    see `episode_index`). `progress`: a bar while an index is made (shown after 2 s).

    It pickles without its open files and, when the index is on disk, without the index (a spawned
    DataLoader worker maps the same file); every process opens its own file descriptors and reads
    with `pread`, so forked workers never share a file position.
    """

    def __init__(self, name_or_dir: Union[str, os.PathLike], data_dir: Optional[Union[str, os.PathLike]] = None,
                 split: str = "train", *, index_dir: Optional[Union[str, os.PathLike]] = None,
                 progress: bool = True):
        from dropj.converters.store import dataset_dir  # the writer's check of an untrusted built folder

        from .splits import read_slice

        self.directory = dataset_dir.locate(os.fspath(name_or_dir), None if data_dir is None else os.fspath(data_dir))
        # the shards as the dataset_info.json that was checked lists them (read once: a file swapped
        # after the check is never read)
        self.name, self.spec, self._shards = dataset_dir.check_shards(self.directory)
        try:  # the one split every DROPJ config has, or a slice of it
            split_name, self._first, self._stop = read_slice(split, sum(count for _, count in self._shards))
        except ValueError as exc:
            raise DataError(f"{self.directory}: {exc}") from None
        self._max_steps = dataset_dir.max_steps()  # every sequence of a record, episode or not
        for path, _ in self._shards:
            if path.is_symlink():
                raise DataError(f"{path}: a symlink; EpisodeSource reads the shards in the folder itself")
        self.split = split  # as asked for; the index is of the whole split, `split_name`
        self.split_name = split_name
        self.index_dir = None if index_dir is None else Path(index_dir)
        self.progress = progress
        self._fields = {field.name: field for field in self.spec.fields()}
        self._index: Optional[episode_index.EpisodeIndex] = None
        self._files: dict[int, Any] = {}
        self._pid = os.getpid()

    # -- the index and the files, per process ---------------------------------------------------------

    @property
    def index(self) -> episode_index.EpisodeIndex:
        """Where every record and step lies (`episode_index`): read, or made once, on first use."""
        if self._index is None:
            self._index = episode_index.open_index(self.directory, self.split_name, self._shards, self.spec,
                                                   self.index_dir, progress=self.progress)
        return self._index

    @property
    def shards(self) -> list[tuple[Path, int]]:
        """The split's shard files and the records each holds, as the checked dataset_info.json lists them."""
        return list(self._shards)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__, _files={})
        if self._index is not None and self._index.path is not None:
            state["_index"] = None  # the worker maps the file itself
        return state

    def _file(self, shard: int) -> Any:
        if self._pid != os.getpid():  # a forked worker: its own descriptors
            self._files, self._pid = {}, os.getpid()
        f = self._files.get(shard)
        if f is None:
            from dropj.converters.store import dataset_dir  # a regular file only, opened without blocking

            f = self._files[shard] = dataset_dir.open_shard(self._shards[shard][0])
        return f

    def _read(self, shard: int, offset: int, length: int) -> bytes:
        f = self._file(shard)
        data = os.pread(f.fileno(), length, offset) if hasattr(os, "pread") else _seek_read(f, offset, length)
        if len(data) != length:
            raise Corrupt("the shard ends inside the record")
        return data

    def _read_into(self, shard: int, offset: int, into: memoryview) -> None:
        f = self._file(shard)
        if hasattr(os, "preadv"):
            done = os.preadv(f.fileno(), [into], offset) if len(into) else 0
        else:
            f.seek(offset)
            done = f.readinto(into)
        if done != len(into):
            raise Corrupt("the shard ends inside the record")

    def close(self) -> None:
        """Closes the shard files this process opened (they open again when needed)."""
        for f in self._files.values():
            f.close()
        self._files = {}

    def __enter__(self) -> "EpisodeSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- records --------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._stop - self._first

    def _where(self, i: int) -> str:
        shard = int(self.index.records[i, 0])
        return f"{self._shards[shard][0]}: record {i - sum(c for _, c in self._shards[:shard])}"

    def raw(self, i: int) -> bytes:
        """The serialised `tf.train.Example` of record i."""
        return self._raw(self._checked(i))

    def _raw(self, i: int) -> bytes:  # i: the record's place in the whole split (`_checked`)
        shard, offset, length, _ = (int(v) for v in self.index.records[i])
        try:
            return self._read(shard, offset, length)
        except Corrupt as exc:
            raise DataError(f"{self._where(i)}: {exc}") from None

    def __getitem__(self, i: int) -> dict:
        i = self._checked(i)
        try:
            record = self._raw(i)
            return decode_example(index_example(record), self.spec, record, self._max_steps)
        except Corrupt as exc:
            raise DataError(f"{self._where(i)}: {exc}") from None

    def field(self, i: int, name: str) -> Any:
        """One field of record i that is not in a sequence (e.g. 'has_label'), as `src[i]` gives it,
        decoding nothing else."""
        i = self._checked(i)
        fields = self._fields
        if name not in fields or _sequence_of(name, dict(schema.KINDS[self.spec.kind].sequences)):
            raise KeyError(f"{name!r} is not a field outside the sequences of a {self.spec.kind} config")
        try:
            record = self._raw(i)
            features = index_example(record)
            if name not in features:
                raise Corrupt(f"field '{name}' is missing")
            values = _byte_strings(fields[name], features[name], 1, fields[name].shape, record)
            value = _decode(fields[name], values, None, fields[name].shape)
        except Corrupt as exc:
            raise DataError(f"{self._where(i)}: field '{name}': {exc}") from None
        return value[()] if value.ndim == 0 else value

    def select(self, i: int, names: Collection[str]) -> dict:
        """Fields `names` of record i ('/'-paths of `spec.fields()`: 'steps/reward', 'steps/info/crash',
        'response/total_time'), as `src[i]` gives them and nested the same way, decoding nothing else.

        The values of the step fields not asked for are not even read: where the index says an episode's
        frames (or latent states, or any step field) lie, that part of the record is left a gap of zeros
        that the parse steps over. A gap is kept only when the parse found it inside the value of the field
        it was left for, where the parse never looks, so the fields read are those of the whole record;
        anything else (a record our writers did not make) is read whole. `dropj stats` reads the numbers of
        an episode of 1,000 frames this way (`loaders/statistics.py`)."""
        i = self._checked(i)
        wanted = frozenset(names)
        unknown = wanted - set(self._fields)
        if unknown:
            raise KeyError(f"no field {sorted(unknown)} in a {self.spec.kind} config")
        sequences = dict(schema.KINDS[self.spec.kind].sequences)
        steps = int(self.index.steps[i])
        try:
            record, where = self._record_without(i, wanted)
            view = memoryview(record)
            features = {}
            for name in wanted:
                if name not in where:
                    continue
                at, length = where[name]
                limit = None
                found = _sequence_of(name, sequences)
                if steps >= 0 and found is not None and found[1] == schema.STEPS:  # no more than the index's steps
                    field = self._fields[name]
                    limit = steps * (1 if episode_index.one_string_per_item(field) else int(np.prod(field.shape)))
                try:
                    features[name] = feature_values(view[at:at + length], at, limit=limit)
                except TooMany:
                    raise Corrupt(f"field '{name}': more than {limit:,} values for {steps:,} steps") from None
            return decode_example(features, self.spec, record, self._max_steps, names=wanted)
        except Corrupt as exc:
            raise DataError(f"{self._where(i)}: {exc}") from None

    def _record_without(self, i: int, wanted: frozenset) -> tuple[Any, dict[str, tuple[int, int]]]:
        """Record i with the values of the step fields not `wanted` left unread (zeros), and where each
        feature lies in it (`feature_spans`)."""
        index = self.index
        shard, offset, length, steps = (int(v) for v in index.records[i])
        gaps = []  # (field, start, stop) in the record
        if steps > 0:
            for k, name in enumerate(index.bytes_fields):
                if name not in wanted:
                    items = index.items_of(i, k)
                    gaps.append((name, int(items.starts.min()), int((items.starts + items.lengths).max())))
            for k, name in enumerate(index.list_fields):
                if name not in wanted:
                    at, size = (int(v) for v in index.lists[i, k])
                    gaps.append((name, at, at + size))
        gaps = sorted((g for g in gaps if g[2] - g[1] >= _MIN_GAP), key=lambda g: g[1])
        if not gaps or any(a[2] > b[1] for a, b in zip(gaps, gaps[1:])):
            record = self._read(shard, offset, length)
            return record, feature_spans(record)
        # np.zeros takes pages the kernel fills only when touched: a gap costs neither a read nor memory
        record = np.zeros(length, np.uint8)
        view, at = memoryview(record), 0
        for _, start, stop in [*gaps, ("", length, length)]:
            self._read_into(shard, offset + at, view[at:start])
            at = stop
        where = feature_spans(record)
        for name, start, stop in gaps:
            if name not in where or not where[name][0] <= start <= stop <= sum(where[name]):
                record = self._read(shard, offset, length)  # not where our writers put it: read it all
                return record, feature_spans(record)
        return record, where

    # -- steps of an episode, only those asked for ----------------------------------------------------

    @property
    def index_fields(self) -> dict[str, Field]:
        """The top-level step fields `steps` reads, by their name inside the steps."""
        prefix = len(schema.STEPS) + 1
        stored_as_bytes, stored_as_numbers = episode_index.step_fields(self.spec)
        return {name[prefix:]: self._fields[name] for name in stored_as_bytes + stored_as_numbers}

    def episode_lengths(self) -> np.ndarray:
        """Steps of every episode (T+1 for T transitions), from the index: no record is read."""
        steps = np.asarray(self.index.steps)[self._first:self._stop]
        if len(steps) and steps.min() < 0:
            raise DataError(f"{self.directory}: a {self.spec.kind} config has no episodes of steps")
        return steps.copy()

    def num_steps(self, i: int) -> int:
        """The number of steps of episode i (T+1 for T transitions), without reading it."""
        return self._num_steps(self._checked(i))

    def _num_steps(self, i: int) -> int:
        steps = int(self.index.steps[i])
        if steps < 0:
            raise DataError(f"{self.directory}: a {self.spec.kind} config has no episodes of steps")
        return steps

    def steps(self, i: int, start: int = 0, stop: Optional[int] = None, fields: Optional[tuple[str, ...]] = None,
              out: Optional[dict[str, np.ndarray]] = None) -> dict[str, np.ndarray]:
        """Steps [start, stop) of episode i, only `fields` (top-level step fields; default all), reading and
        decoding only those: a window of 21 steps reads and decodes 21 frames, not the episode's 1001.
        `out`: arrays to decode into ({field: (stop - start, *shape) array}), e.g. a row of a batch."""
        i = self._checked(i)
        total = self._num_steps(i)
        stop = total if stop is None else stop
        if not 0 <= start <= stop <= total:
            raise IndexError(f"steps [{start}, {stop}) of an episode of {total}")
        index = self.index
        prefix = len(schema.STEPS) + 1
        known = {name[prefix:] for name in index.bytes_fields + index.list_fields}
        if fields is not None and set(fields) - known:
            raise KeyError(f"no step field {sorted(set(fields) - known)}; the steps hold {sorted(known)}")
        shard, offset, _, _ = (int(v) for v in index.records[i])
        by_name = self._fields
        result: dict[str, np.ndarray] = {}

        def into(name: str) -> Optional[np.ndarray]:
            target = None if out is None else out.get(name[prefix:])
            expected = (stop - start, *by_name[name].shape)
            if target is not None and (target.shape != expected or target.dtype != np.dtype(by_name[name].dtype)):
                raise ValueError(f"out[{name[prefix:]!r}]: expected {by_name[name].dtype} {expected}, got "
                                 f"{target.dtype} {target.shape}")
            return target

        try:
            for number, name in enumerate(index.bytes_fields):
                if fields is None or name[prefix:] in fields:
                    values = self._items(shard, offset, index.items_of(i, number), start, stop)
                    result[name[prefix:]] = self._decoded(by_name[name], values, start, stop, into(name))
            for number, name in enumerate(index.list_fields):
                if fields is None or name[prefix:] in fields:
                    at, length = (int(v) for v in index.lists[i, number])
                    field = by_name[name]
                    unit = int(np.prod(field.shape))
                    try:  # the index keeps only where the list lies: read no more of it than the episode has
                        values = feature_values(self._read(shard, offset + at, length), limit=total * unit)
                    except TooMany:
                        raise Corrupt(f"field '{name}': more than {total * unit} values for {total} steps") from None
                    if not isinstance(values, np.ndarray) or len(values) != total * unit:
                        raise Corrupt(f"field '{name}': {len(values)} values for {total} steps")
                    result[name[prefix:]] = self._decoded(field, values[start * unit:stop * unit], start, stop,
                                                          into(name))
        except Corrupt as exc:
            raise DataError(f"{self._where(i)}: {exc}") from None
        return result

    @staticmethod
    def _decoded(field: Field, values: Any, start: int, stop: int, out: Optional[np.ndarray]) -> np.ndarray:
        try:
            return _decode(field, values, stop - start, field.shape, out)
        except Corrupt as exc:
            raise Corrupt(f"field '{field.name}', steps [{start}, {stop}): {exc}") from None

    def _items(self, shard: int, offset: int, items: ByteItems, start: int, stop: int) -> list[bytes]:
        """Items [start, stop) of a byte-string list: one read of the span they lie in."""
        if start == stop:
            return []
        first = int(items.starts[start])
        end = int(items.starts[stop - 1] + items.lengths[stop - 1])
        chunk = self._read(shard, offset + first, end - first)
        return ByteItems(items.starts[start:stop] - first, items.lengths[start:stop]).items(chunk)

    def _checked(self, i: int) -> int:
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"an index is an int, got {type(i).__name__}")
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"record {i} of {n}")
        return self._first + int(i) % n  # the record's place in the whole split

    def __repr__(self) -> str:
        return f"EpisodeSource({str(self.directory)!r}, split={self.split!r}, {len(self)} records)"


def _seek_read(f: Any, offset: int, length: int) -> bytes:
    f.seek(offset)
    return f.read(length)
