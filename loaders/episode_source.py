"""Random access to a built DROPJ dataset without TensorFlow: `EpisodeSource`.

    from dropj.loaders import EpisodeSource
    src = EpisodeSource('dropj_carracing/real', data_dir='D')
    len(src)                          # episodes (or queries, or sketches) of the train split
    ep = src[3]                       # {'steps': {field: array stacked over steps}, 'episode_metadata': {...}}
    ep['steps']['observation'].shape  # (T+1, 84, 84, 3) uint8

It reads the TFRecord shards that the default `tfds build` writes, with the
values `tfds.load` gives (tests/test_episode_source.py compares every example
of every config), importing numpy and Pillow only:

* the record index: one pass over each shard's record headers (8-byte length
  and its masked CRC-32C, checked), kept in memory; a shard's record count
  must match `dataset_info.json`;
* each record is a `tf.train.Example`, parsed here from the protobuf wire
  format (three message types: Features, Feature, and the lists);
* each field is decoded as the schema declares it (`schema.Spec.fields()`,
  the same declaration the builder makes its TFDS features from): PNG frames
  through Pillow, BYTES-encoded tensors from their raw bytes, integers and
  booleans from varints, text as bytes.

A built directory is untrusted input: it is checked as `dropj` checks it
before TFDS opens one (`converters.dataset_dir`), every length is bounded by
the file, and a bad record is one `DataError` naming the shard, the record
and the field. The records' own CRCs are not checked (CRC-32C over megabytes
in Python would cost more than the decoding); a damaged record fails to parse
or decode instead.
"""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from dropj_datasets import schema
from dropj_datasets.schema import DataError, Field

_MAX_RECORD = 1 << 31  # bytes; an episode of the release is a few MB


# --- TFRecord framing --------------------------------------------------------------------------------

def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def _masked_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def record_spans(path: Path) -> list[tuple[int, int]]:
    """(offset, length) of the data of every record of a TFRecord file, from its headers."""
    spans = []
    size = path.stat().st_size
    with open(path, "rb") as f:
        offset = 0
        while offset < size:
            header = f.read(12)
            if len(header) < 12:
                raise DataError(f"{path}: record {len(spans)}: truncated header at byte {offset}")
            length, crc = struct.unpack("<QI", header)
            if crc != _masked_crc32c(header[:8]):
                raise DataError(f"{path}: record {len(spans)}: the length's checksum does not match "
                                f"(byte {offset}); not a TFRecord file, or damaged")
            if length > min(_MAX_RECORD, size - offset - 16):
                raise DataError(f"{path}: record {len(spans)}: claims {length:,} bytes, the file has "
                                f"{max(0, size - offset - 16):,} left")
            spans.append((offset + 12, length))
            offset += 16 + length
            f.seek(offset)
    return spans


# --- tf.train.Example, from the wire format ----------------------------------------------------------

class _Corrupt(Exception):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _Corrupt("a varint runs past its message")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(buf: Any, base: int = 0) -> list[tuple[int, Any, int]]:
    """(field number, value, where the value starts in the whole record) of a message: ints for varints,
    memoryviews for length-delimited and fixed-size fields. `base`: where `buf` starts in the record."""
    out, pos, view = [], 0, memoryview(buf)
    while pos < len(view):
        key, pos = _varint(view, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            start = pos
            value, pos = _varint(view, pos)
        elif wire == 2:
            length, pos = _varint(view, pos)
            if pos + length > len(view):
                raise _Corrupt("a field runs past its message")
            start, value, pos = pos, view[pos:pos + length], pos + length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > len(view):
                raise _Corrupt("a fixed-size field runs past its message")
            start, value, pos = pos, view[pos:pos + size], pos + size
        else:
            raise _Corrupt(f"wire type {wire}")
        out.append((number, value, base + start))
    return out


def _packed_varints(data: memoryview) -> np.ndarray:
    """Packed varints (an Int64List) as int64, vectorised."""
    raw = np.frombuffer(data, np.uint8)
    if not len(raw):
        return np.zeros(0, np.int64)
    if raw.max() < 0x80:  # every value one byte: small non-negative ints, booleans
        return raw.astype(np.int64)
    ends = np.flatnonzero(raw < 0x80)
    if not len(ends) or ends[-1] != len(raw) - 1:
        raise _Corrupt("a packed varint runs past its list")
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > 10:
        raise _Corrupt("a varint longer than 10 bytes")
    shifts = (np.arange(len(raw)) - np.repeat(starts, lengths)).astype(np.uint64) * np.uint64(7)
    parts = (raw & 0x7F).astype(np.uint64) << shifts
    return np.bitwise_or.reduceat(parts, starts).view(np.int64)


class _Bytes:
    """Where each item of a BytesList lies in its record: the items are read only when asked for."""

    def __init__(self, starts: np.ndarray, lengths: np.ndarray):
        self.starts, self.lengths = starts, lengths

    def __len__(self) -> int:
        return len(self.starts)

    def items(self, record: Any, first: int = 0, stop: Optional[int] = None) -> list[bytes]:
        view = memoryview(record)
        return [bytes(view[s:s + n]) for s, n in zip(self.starts[first:stop].tolist(),
                                                     self.lengths[first:stop].tolist())]


def index_example(buf: bytes) -> dict[str, Union[_Bytes, np.ndarray]]:
    """A serialised `tf.train.Example` -> {feature key: where its byte strings lie, or its float32 / int64
    values}."""
    try:
        return _index_example(buf)
    except (ValueError, OverflowError) as exc:  # numpy on a list of the wrong length, a varint too large
        raise _Corrupt(f"not a tf.train.Example ({exc})") from None


def parse_example(buf: bytes) -> dict[str, Union[list[bytes], np.ndarray]]:
    """A serialised `tf.train.Example` -> {feature key: list of bytes, or float32 / int64 array}."""
    return {key: value.items(buf) if isinstance(value, _Bytes) else value
            for key, value in index_example(buf).items()}


def _index_example(buf: bytes) -> dict[str, Union[_Bytes, np.ndarray]]:
    out: dict = {}
    for number, features, at in _fields(buf):
        if number != 1 or not isinstance(features, memoryview):
            continue
        for entry_number, entry, entry_at in _fields(features, at):
            if entry_number != 1 or not isinstance(entry, memoryview):
                continue
            key, value, value_at = None, None, 0
            for number_, part, part_at in _fields(entry, entry_at):
                if number_ == 1 and isinstance(part, memoryview):
                    key = bytes(part).decode("utf-8", "replace")
                elif number_ == 2 and isinstance(part, memoryview):
                    value, value_at = part, part_at
            if key is None:
                raise _Corrupt("a feature without a name")
            out[key] = _feature_values(value, value_at)
    return out


def _feature_values(feature: Optional[memoryview], at: int) -> Union[_Bytes, np.ndarray]:
    if feature is None:
        return _Bytes(np.zeros(0, np.int64), np.zeros(0, np.int64))
    for kind, payload, payload_at in _fields(feature, at):
        if not isinstance(payload, memoryview):
            raise _Corrupt("a feature list that is not a message")
        items = _fields(payload, payload_at)
        if kind == 1:  # BytesList
            spans = [(item_at, len(v)) for n, v, item_at in items if n == 1 and isinstance(v, memoryview)]
            array = np.array(spans, np.int64).reshape(-1, 2)
            return _Bytes(array[:, 0], array[:, 1])
        if kind == 2:  # FloatList: packed, or one fixed32 each
            return np.concatenate([np.frombuffer(v, "<f4") for n, v, _ in items if n == 1] or
                                  [np.zeros(0, "<f4")]).astype(np.float32)
        if kind == 3:  # Int64List: packed, or one varint each
            parts = [_packed_varints(v) if isinstance(v, memoryview) else np.array([v], np.uint64).view(np.int64)
                     for n, v, _ in items if n == 1]
            return np.concatenate(parts) if parts else np.zeros(0, np.int64)
    return _Bytes(np.zeros(0, np.int64), np.zeros(0, np.int64))


# --- the schema's fields, decoded --------------------------------------------------------------------

def _decode_png(data: bytes, shape: tuple[int, ...]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return _checked_frame(image, shape)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:  # Pillow's ways of saying "bad"
        raise _Corrupt(f"a frame that is not a readable PNG ({exc})") from None


def _checked_frame(image: Any, shape: tuple[int, ...]) -> np.ndarray:
    if image.format != "PNG" or image.size != (shape[1], shape[0]):
        raise _Corrupt(f"an image of {image.format} {image.size[0]}x{image.size[1]}, "
                       f"expected PNG {shape[1]}x{shape[0]}")
    return np.asarray(image.convert("RGB"))


def _decode(field: Field, values: Any, items: Optional[int], shape: tuple[int, ...]) -> np.ndarray:
    """One field's values: `items` per-item values of `shape` (a sequence), or one of `shape` (None)."""
    count = 1 if items is None else items
    size = int(np.prod(shape))
    out_shape = shape if items is None else (items, *shape)
    if field.encoding == "png":
        if not isinstance(values, list) or len(values) != count:
            raise _Corrupt(f"{len(values)} images, expected {count}")
        frames = [_decode_png(v, shape) for v in values]
        return frames[0] if items is None else (np.stack(frames) if frames else np.zeros(out_shape, np.uint8))
    if field.dtype in ("str", "bytes"):
        if not isinstance(values, list) or len(values) != count * size:
            raise _Corrupt(f"{len(values)} strings, expected {count * size}")
        array = np.empty(len(values), object)
        array[:] = values
        return array.reshape(out_shape)
    dtype = np.dtype(field.dtype)
    if field.encoding == "bytes":
        if not isinstance(values, list) or len(values) != count or any(len(v) != size * dtype.itemsize
                                                                       for v in values):
            raise _Corrupt(f"{len(values)} raw tensors, expected {count} of {size * dtype.itemsize} bytes")
        flat = np.frombuffer(b"".join(values), dtype.newbyteorder("<")).astype(dtype)
        return flat.reshape(out_shape)
    if not isinstance(values, np.ndarray) or len(values) != count * size:
        raise _Corrupt(f"{len(values)} values, expected {count * size}")
    if dtype.kind == "f":
        if values.dtype != np.float32:
            raise _Corrupt("integers where floats are stored")
        return values.astype(dtype).reshape(out_shape)
    if values.dtype != np.int64:
        raise _Corrupt("floats where integers are stored")
    if dtype == np.bool_:
        if values.size and (values.min() < 0 or values.max() > 1):
            raise _Corrupt("a boolean that is neither 0 nor 1")
        return values.astype(np.bool_).reshape(out_shape)
    info = np.iinfo(dtype)
    if values.size and (values.min() < info.min or values.max() > info.max):
        raise _Corrupt(f"a value outside {dtype.name}")
    return values.astype(dtype).reshape(out_shape)


def _sequence_of(name: str, sequences: dict) -> Optional[tuple[str, str]]:
    """(path of the sequence a field belongs to, its group name), or None: as the builder nests them, a
    group named in the kind's `sequences` is a sequence at whatever depth it sits."""
    parts = name.split("/")
    for depth, part in enumerate(parts[:-1]):
        if part in sequences:
            return "/".join(parts[:depth + 1]), part
    return None


def decode_example(features: dict, spec: schema.Spec) -> dict:
    """The parsed features of one record -> the nested dict of numpy values `tfds.load` gives."""
    sequences = dict(schema.KINDS[spec.kind].sequences)
    fields = spec.fields()

    def per_item(field: Field, group: str) -> tuple:
        return field.shape if group == schema.STEPS else field.shape[1:]  # as the builder declares them

    lengths: dict[str, int] = {}
    for field in fields:  # each sequence's length, from its first field that tells it
        found = _sequence_of(field.name, sequences)
        if found is None or found[0] in lengths or field.name not in features:
            continue
        unit = 1 if field.encoding in ("png", "bytes") else int(np.prod(per_item(field, found[1])))
        if unit and len(features[field.name]) % unit == 0:
            lengths[found[0]] = len(features[field.name]) // unit
    out: dict = {}
    for field in fields:
        if field.name not in features:
            raise _Corrupt(f"field '{field.name}' is missing")
        found = _sequence_of(field.name, sequences)
        try:
            if found is not None:
                if found[0] not in lengths:
                    raise _Corrupt("the sequence's length cannot be told")
                value = _decode(field, features[field.name], lengths[found[0]], per_item(field, found[1]))
            else:
                value = _decode(field, features[field.name], None, field.shape)
                if value.ndim == 0:
                    value = value[()]  # a scalar as TFDS gives it: a numpy scalar, or bytes for text
        except _Corrupt as exc:
            raise _Corrupt(f"field '{field.name}': {exc}") from None
        *parents, leaf = field.name.split("/")
        node = out
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return out


# --- the source --------------------------------------------------------------------------------------

def _default_data_dir() -> Path:
    return Path(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")).expanduser()


class EpisodeSource:
    """Map-style access to one split of a built DROPJ dataset, without TensorFlow.

    `name_or_dir`: 'dataset/config' (the newest version under `data_dir`, TFDS's default when None)
    or a built version folder. `src[i]` decodes record i of the split (source order).
    """

    def __init__(self, name_or_dir: Union[str, os.PathLike], data_dir: Optional[Union[str, os.PathLike]] = None,
                 split: str = "train"):
        from dropj.converters import dataset_dir  # the writer's check of an untrusted built folder

        path = Path(name_or_dir)
        if path.is_dir():
            self.directory = path
        else:
            self.directory = dataset_dir.find_built(str(name_or_dir), str(data_dir or _default_data_dir()))
        self.name, self.spec = dataset_dir.check(self.directory)
        if split not in ("train",):  # the one split every DROPJ config has
            raise DataError(f"{self.directory}: no split {split!r}; DROPJ datasets have 'train'")
        self.split = split
        self._shards = self._shard_files()
        self._index: Optional[list[tuple[Path, int, int]]] = None
        self._records: dict[int, dict] = {}  # record -> where its features lie: made once per record

    def _shard_files(self) -> list[tuple[Path, int]]:
        info = json.loads((self.directory / "dataset_info.json").read_text())  # checked by dataset_dir
        splits = [s for s in info.get("splits", []) if isinstance(s, dict) and s.get("name") == self.split]
        if not splits:
            raise DataError(f"{self.directory}: no split '{self.split}'")
        lengths = splits[0].get("shardLengths", [])
        if info.get("fileFormat", "tfrecord") != "tfrecord":
            raise DataError(f"{self.directory}: written as {info.get('fileFormat')}; EpisodeSource reads tfrecord")
        try:
            counts = [int(n) for n in lengths]
        except (TypeError, ValueError):
            raise DataError(f"{self.directory}/dataset_info.json: shard lengths are not numbers") from None
        if not isinstance(lengths, list) or len(counts) > 100_000 or any(n < 0 for n in counts):
            raise DataError(f"{self.directory}/dataset_info.json: shard lengths out of range")
        name = self.name.partition("/")[0]  # checked against the schema, unlike the JSON's own
        shards = []
        for i, count in enumerate(counts):
            path = self.directory / f"{name}-{self.split}.tfrecord-{i:05d}-of-{len(counts):05d}"
            if not path.is_file() or path.is_symlink():
                raise DataError(f"{path}: missing (dataset_info.json lists {len(counts)} shards)")
            shards.append((path, count))
        return shards

    @property
    def index(self) -> list[tuple[Path, int, int]]:
        """(shard, offset, length) of every record, in order; made on first use."""
        if self._index is None:
            index = []
            for path, count in self._shards:
                spans = record_spans(path)
                if len(spans) != count:
                    raise DataError(f"{path}: {len(spans)} records, dataset_info.json says {count}")
                index.extend((path, offset, length) for offset, length in spans)
            self._index = index
        return self._index

    def __len__(self) -> int:
        return sum(count for _, count in self._shards)

    def raw(self, i: int) -> bytes:
        """The serialised `tf.train.Example` of record i."""
        path, offset, length = self.index[self._checked(i)]
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(length)
        if len(data) != length:
            raise DataError(f"{path}: record {i}: truncated")
        return data

    def __getitem__(self, i: int) -> dict:
        i = self._checked(i)
        path = self.index[i][0]
        try:
            return decode_example(parse_example(self.raw(i)), self.spec)
        except _Corrupt as exc:
            raise DataError(f"{path}: record {i}: {exc}") from None

    def _record(self, i: int) -> dict:
        """Where each feature of record i lies (byte strings) or its values (numbers), kept once made."""
        found = self._records.get(i)
        if found is None:
            try:
                found = index_example(self.raw(i))
            except _Corrupt as exc:
                raise DataError(f"{self.index[i][0]}: record {i}: {exc}") from None
            self._records[i] = found
        return found

    def num_steps(self, i: int) -> int:
        """The number of steps of episode i (T+1 for T transitions), without decoding any."""
        i = self._checked(i)
        values = self._record(i).get(f"{schema.STEPS}/{schema.IS_FIRST}")
        if not isinstance(values, np.ndarray):
            raise DataError(f"{self.index[i][0]}: record {i}: not an episode (no '{schema.STEPS}/{schema.IS_FIRST}')")
        return len(values)

    def steps(self, i: int, start: int = 0, stop: Optional[int] = None,
              fields: Optional[tuple[str, ...]] = None) -> dict[str, np.ndarray]:
        """Steps [start, stop) of episode i, only `fields` (top-level step fields; default all), reading and
        decoding only those: a window of 21 steps reads and decodes 21 frames, not the episode's 1001."""
        i = self._checked(i)
        total = self.num_steps(i)
        stop = total if stop is None else stop
        if not 0 <= start <= stop <= total:
            raise IndexError(f"steps [{start}, {stop}) of an episode of {total}")
        record = self._record(i)
        path, offset, _ = self.index[i]
        prefix = f"{schema.STEPS}/"
        out = {}
        for field in self.spec.fields():
            if not field.name.startswith(prefix) or "/" in field.name[len(prefix):]:
                continue
            name = field.name[len(prefix):]
            if fields is not None and name not in fields:
                continue
            values = record.get(field.name)
            unit = 1 if isinstance(values, _Bytes) else int(np.prod(field.shape))
            try:
                if values is None or len(values) != total * unit:
                    raise _Corrupt(f"field '{field.name}': {0 if values is None else len(values)} values for "
                                   f"{total} steps")
                if isinstance(values, _Bytes):
                    values = self._read_items(path, offset, values, start, stop)
                else:
                    values = values[start * unit:stop * unit]
                out[name] = _decode(field, values, stop - start, field.shape)
            except _Corrupt as exc:
                raise DataError(f"{path}: record {i}: {exc}") from None
        if fields is not None and set(fields) - set(out):
            raise KeyError(f"no step field {sorted(set(fields) - set(out))}; the steps hold {sorted(out)}")
        return out

    @staticmethod
    def _read_items(path: Path, offset: int, items: _Bytes, start: int, stop: int) -> list[bytes]:
        """Items [start, stop) of a byte-string list: one read of the span they lie in."""
        if start == stop:
            return []
        first = int(items.starts[start])
        end = int(items.starts[stop - 1] + items.lengths[stop - 1])
        with open(path, "rb") as f:
            f.seek(offset + first)
            chunk = f.read(end - first)
        if len(chunk) != end - first:
            raise _Corrupt("the record ends early")
        shifted = _Bytes(items.starts[start:stop] - first, items.lengths[start:stop])
        return shifted.items(chunk)

    def _checked(self, i: int) -> int:
        if not isinstance(i, (int, np.integer)):
            raise TypeError(f"an index is an int, got {type(i).__name__}")
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"record {i} of {n}")
        return int(i) % n

    def __repr__(self) -> str:
        return f"EpisodeSource({str(self.directory)!r}, split={self.split!r}, {len(self)} records)"
