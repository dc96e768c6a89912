"""TFRecord files and `tf.train.Example` records, read without TensorFlow.

    from dropj.loaders.tfrecord_wire import record_spans, index_example, parse_example
    spans = record_spans(f, path)           # (N, 2) int64: offset and length of each record's data
    features = parse_example(record_bytes)  # {key: list of bytes | float32 array | int64 array}
    where = feature_spans(record_bytes)     # {key: (start, length) of its Feature}, no value decoded

Only what a `tf.train.Example` uses of the protobuf wire format is read
(Features, Feature, BytesList, FloatList, Int64List; packed or not). Input is
untrusted: every length is bounded by the bytes it lies in, and anything that
does not parse is a `Corrupt`, which the caller turns into a `DataError`
naming the file and record.

Memory follows what is recorded, not what a record claims: spans of records
and of BytesList items are gathered in `array('q')` (16 bytes an item, never
a Python object per item: a 25 MB record of 5 million empty items once cost
2 GiB that way), `count_values` counts a list without decoding it, and a
`limit` stops reading a list at the first value past it: a list is counted
entry by entry (a packed run by one vector count of its bytes, a value
written alone, as proto2 writes lists, as one), and nothing of it is kept or
gathered before its count is known to be within the limit.
"""

from __future__ import annotations

import os
import struct
from array import array
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Optional, Union

import numpy as np

from dropj_datasets.schema import DataError

MAX_RECORD = 1 << 31  # bytes; an episode of the release is a few MB


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


def record_spans(file: BinaryIO, path: Union[str, Path]) -> np.ndarray:
    """(offset, length) of the data of every record of an open TFRecord file, from its headers, as an
    (N, 2) int64 array; `path` names the file in errors."""
    spans = array("q")
    fd = file.fileno()
    size = os.fstat(fd).st_size
    offset = 0
    while offset < size:
        header = os.pread(fd, 12, offset)
        if len(header) < 12:
            raise DataError(f"{path}: record {len(spans) // 2}: truncated header at byte {offset}")
        length, crc = struct.unpack("<QI", header)
        if crc != _masked_crc32c(header[:8]):
            raise DataError(f"{path}: record {len(spans) // 2}: the length's checksum does not match "
                            f"(byte {offset}); not a TFRecord file, or damaged")
        if length > min(MAX_RECORD, size - offset - 16):
            raise DataError(f"{path}: record {len(spans) // 2}: claims {length:,} bytes, the file has "
                            f"{max(0, size - offset - 16):,} left")
        spans.append(offset + 12)
        spans.append(length)
        offset += 16 + length
    return np.frombuffer(spans, np.int64).reshape(-1, 2) if spans else np.zeros((0, 2), np.int64)


# --- tf.train.Example, from the wire format ----------------------------------------------------------

class Corrupt(Exception):
    """Bytes that are not what they should be; the message says what (the caller adds where)."""


class TooMany(Corrupt):
    """A list with more values than the `limit` it was read with. Reading stopped at the first entry past
    it, so its length may be unknown: `counted` values were counted by then, and `most` is the most the
    list can hold (what was counted and what its remaining bytes can hold: `counted` when it ended there),
    a bound a message can tell a user to raise a cap to."""

    def __init__(self, limit: int, counted: int, most: int):
        super().__init__(f"more than {limit:,} values")
        self.counted, self.most = counted, max(most, counted)
        self.kind = ""  # 'bytes', 'float' or 'int64': set by `count_values`, whose caller may not know it


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise Corrupt("a varint runs past its message")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(buf: Any, base: int = 0) -> Iterator[tuple[int, Any, int]]:
    """(field number, value, where the value starts in the whole record) of a message, one at a time: ints
    for varints, memoryviews for length-delimited and fixed-size fields. `base`: where `buf` starts in the
    record. Yielded, never listed: fields a reader skips (any number of them, protobuf allows) cost no
    memory (a list of them took 144x the message)."""
    pos, view = 0, memoryview(buf)
    while pos < len(view):
        key, pos = _varint(view, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            start = pos
            value, pos = _varint(view, pos)
        elif wire == 2:
            length, pos = _varint(view, pos)
            if pos + length > len(view):
                raise Corrupt("a field runs past its message")
            start, value, pos = pos, view[pos:pos + length], pos + length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > len(view):
                raise Corrupt("a fixed-size field runs past its message")
            start, value, pos = pos, view[pos:pos + size], pos + size
        else:
            raise Corrupt(f"wire type {wire}")
        yield number, value, base + start


def _packed_varints(data: memoryview) -> np.ndarray:
    """Packed varints (an Int64List) as int64, vectorised."""
    raw = np.frombuffer(data, np.uint8)
    if not len(raw):
        return np.zeros(0, np.int64)
    if raw.max() < 0x80:  # every value one byte: small non-negative ints, booleans
        return raw.astype(np.int64)
    ends = np.flatnonzero(raw < 0x80)
    if not len(ends) or ends[-1] != len(raw) - 1:
        raise Corrupt("a packed varint runs past its list")
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > 10:
        raise Corrupt("a varint longer than 10 bytes")
    shifts = (np.arange(len(raw)) - np.repeat(starts, lengths)).astype(np.uint64) * np.uint64(7)
    parts = (raw & 0x7F).astype(np.uint64) << shifts
    return np.bitwise_or.reduceat(parts, starts).view(np.int64)


class ByteItems:
    """Where each item of a BytesList lies in its record: the items are read only when asked for."""

    def __init__(self, starts: np.ndarray, lengths: np.ndarray):
        self.starts, self.lengths = starts, lengths

    def __len__(self) -> int:
        return len(self.starts)

    def items(self, record: Any, first: int = 0, stop: Optional[int] = None) -> list[bytes]:
        view = memoryview(record)
        return [bytes(view[s:s + n]) for s, n in zip(self.starts[first:stop].tolist(),
                                                     self.lengths[first:stop].tolist())]


def index_example(buf: bytes) -> dict[str, Union[ByteItems, np.ndarray]]:
    """A serialised `tf.train.Example` -> {feature key: where its byte strings lie, or its float32 / int64
    values}."""
    return index_example_with_spans(buf)[0]


def index_example_with_spans(buf: bytes) -> tuple[dict[str, Union[ByteItems, np.ndarray]],
                                                   dict[str, tuple[int, int]]]:
    """`index_example`, and (start, length) in `buf` of each feature's `Feature` message: what
    `feature_values` reads again later from those bytes alone."""
    spans = feature_spans(buf)
    view = memoryview(buf)
    return {key: feature_values(view[at:at + n], at) for key, (at, n) in spans.items()}, spans


def feature_spans(buf: Any) -> dict[str, tuple[int, int]]:
    """(start, length) in `buf` of each feature's `Feature` message of a serialised `tf.train.Example`;
    no value is decoded (a few fields per feature are walked)."""
    spans: dict = {}
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
                raise Corrupt("a feature without a name")
            spans[key] = (value_at, 0 if value is None else len(value))
    return spans


def feature_values(feature: Any, at: int = 0, limit: Optional[int] = None) -> Union[ByteItems, np.ndarray]:
    """One `Feature` message (a span `feature_spans` gave) -> its values, as `index_example` gives them;
    a BytesList's positions count from `at`. More than `limit` values: `TooMany`, before they are read."""
    try:
        return _feature_values(memoryview(feature), at, limit)
    except (ValueError, OverflowError) as exc:  # numpy on a list of the wrong length, a varint too large
        raise Corrupt(f"not a tf.train.Feature ({exc})") from None


def count_values(feature: Any, limit: Optional[int] = None) -> tuple[str, int]:
    """(kind: 'bytes', 'float' or 'int64', number of values) of one `Feature` message, nothing decoded.
    More than `limit` values: `TooMany` (its `kind` set), at the first entry past it."""
    found = _first_list(memoryview(feature), 0)
    if found is None:
        return "bytes", 0
    kind, payload, _ = found
    try:
        return _KINDS[kind], (len(_byte_items(payload, 0, limit)) if kind == 1
                              else _numbers(payload, kind, limit, decode=False))
    except TooMany as exc:
        exc.kind = _KINDS[kind]
        raise


def parse_example(buf: bytes) -> dict[str, Union[list[bytes], np.ndarray]]:
    """A serialised `tf.train.Example` -> {feature key: list of bytes, or float32 / int64 array}."""
    return {key: value.items(buf) if isinstance(value, ByteItems) else value
            for key, value in index_example(buf).items()}


_KINDS = {1: "bytes", 2: "float", 3: "int64"}  # a Feature's field number -> the kind of its list


def _varints_in(data: Any) -> int:
    """The number of varints in packed bytes: one ends at every byte below 0x80 (a vector count). Of any
    bytes of an Int64List message, the most values they can hold: every value ends at such a byte."""
    return int(np.count_nonzero(np.frombuffer(data, np.uint8) < 0x80))


def _byte_items(payload: memoryview, at: int, limit: Optional[int]) -> ByteItems:
    """The items of a BytesList message, their positions counted from `at`, in two int64 arrays."""
    starts, lengths = array("q"), array("q")
    pos, end = 0, len(payload)
    while pos < end:
        key = payload[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = _varint(payload, pos)
        wire = key & 7
        if wire == 2:
            length = payload[pos] if pos < end else 0x80
            if length < 0x80:
                pos += 1
            else:
                length, pos = _varint(payload, pos)
            if pos + length > end:
                raise Corrupt("a field runs past its message")
            if key >> 3 == 1:
                if limit is not None and len(starts) >= limit:  # each item after it takes 2 bytes or more
                    raise TooMany(limit, limit + 1, limit + 1 + (end - pos - length) // 2)
                starts.append(at + pos)
                lengths.append(length)
            pos += length
        elif wire == 0:
            _, pos = _varint(payload, pos)
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            if pos > end:
                raise Corrupt("a fixed-size field runs past its message")
        else:
            raise Corrupt(f"wire type {wire}")
    return ByteItems(np.frombuffer(starts, np.int64) if starts else np.zeros(0, np.int64),
                     np.frombuffer(lengths, np.int64) if lengths else np.zeros(0, np.int64))


def _numbers(payload: memoryview, kind: int, limit: Optional[int], decode: bool = True) -> Any:
    """The values of a FloatList (kind 2) or Int64List (kind 3), or their number (`decode=False`). Each
    entry is a packed run or one value (a fixed32, or a varint) and is counted as it is met (a run by one
    vector count): past `limit`, `TooMany` at once. Decoding, each entry's bytes are a packed run of one,
    so every entry is kept as a span and, once the count is known to be within `limit`, the spans' bytes
    are gathered and decoded together."""
    starts, ends = array("q"), array("q")
    single = 5 if kind == 2 else 0
    count, pos, end = 0, 0, len(payload)
    while pos < end:
        key = payload[pos]
        key, pos = (key, pos + 1) if key < 0x80 else _varint(payload, pos)
        number, wire = key >> 3, key & 7
        first = pos
        if wire == 2:
            length, pos = _varint(payload, pos)
            first, pos = pos, pos + length
        elif wire == 0:
            _, pos = _varint(payload, pos)
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise Corrupt(f"wire type {wire}")
        if pos > end:
            raise Corrupt("a field runs past its message")
        if number != 1:
            continue
        if wire == single:
            count += 1
        elif wire != 2:
            raise Corrupt(f"a {'float' if kind == 2 else 'int64'} list holding wire type {wire}")
        elif kind == 2:
            if (pos - first) % 4:
                raise Corrupt("a float list whose bytes are not whole floats")
            count += (pos - first) // 4
        elif pos > first:
            if payload[pos - 1] >= 0x80:
                raise Corrupt("a packed varint runs past its list")
            count += _varints_in(payload[first:pos])
        if limit is not None and count > limit:
            rest = payload[pos:]
            raise TooMany(limit, count, count + (len(rest) // 4 if kind == 2 else _varints_in(rest)))
        if decode:
            starts.append(first)
            ends.append(pos)
    if not decode:
        return count
    raw = np.frombuffer(payload, np.uint8)
    if len(starts) == 1:
        data = raw[starts[0]:ends[0]]
    else:  # every entry's bytes, in order: a mask of 1 byte per byte of the list, made in vector operations
        begin, stop = np.frombuffer(starts, np.int64), np.frombuffer(ends, np.int64)
        kept = stop > begin  # the entries are in order and apart, so the edges of those with bytes are distinct
        edges = np.zeros(len(raw) + 1, np.int8)
        edges[begin[kept]] += 1
        edges[stop[kept]] -= 1
        data = raw[np.cumsum(edges[:-1], dtype=np.int8).view(bool)]
    if kind == 2:
        return np.frombuffer(data.tobytes(), "<f4").astype(np.float32)
    return _packed_varints(memoryview(data.tobytes()))


def _first_list(feature: memoryview, at: int) -> Optional[tuple[int, memoryview, int]]:
    """(kind: 1, 2 or 3, its message, where it starts) of the first list of a `Feature` message, or None.
    Every field is walked (a damaged message is `Corrupt` whatever follows its list), one at a time."""
    found = None
    for kind, payload, payload_at in _fields(feature, at):
        if found is not None:
            continue
        if not isinstance(payload, memoryview):
            raise Corrupt("a feature list that is not a message")
        if kind in _KINDS:
            found = kind, payload, payload_at
    return found


def _feature_values(feature: Optional[memoryview], at: int, limit: Optional[int] = None
                    ) -> Union[ByteItems, np.ndarray]:
    found = None if feature is None else _first_list(feature, at)
    if found is None:
        return ByteItems(np.zeros(0, np.int64), np.zeros(0, np.int64))
    kind, payload, payload_at = found
    if kind == 1:  # BytesList
        return _byte_items(payload, payload_at, limit)
    return _numbers(payload, kind, limit)  # FloatList, Int64List: packed, or one value each
