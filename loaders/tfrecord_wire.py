"""TFRecord files and `tf.train.Example` records, read without TensorFlow.

    from dropj.loaders.tfrecord_wire import record_spans, index_example, parse_example
    spans = record_spans(path)              # (offset, length) of each record, from the headers
    features = parse_example(record_bytes)  # {key: list of bytes | float32 array | int64 array}

Only what a `tf.train.Example` uses of the protobuf wire format is read
(Features, Feature, BytesList, FloatList, Int64List; packed or not). Input is
untrusted: every length is bounded by the bytes it lies in, and anything that
does not parse is a `Corrupt`, which the caller turns into a `DataError`
naming the file and record.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, Optional, Union

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
            if length > min(MAX_RECORD, size - offset - 16):
                raise DataError(f"{path}: record {len(spans)}: claims {length:,} bytes, the file has "
                                f"{max(0, size - offset - 16):,} left")
            spans.append((offset + 12, length))
            offset += 16 + length
            f.seek(offset)
    return spans


# --- tf.train.Example, from the wire format ----------------------------------------------------------

class Corrupt(Exception):
    """Bytes that are not what they should be; the message says what (the caller adds where)."""


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
                raise Corrupt("a field runs past its message")
            start, value, pos = pos, view[pos:pos + length], pos + length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > len(view):
                raise Corrupt("a fixed-size field runs past its message")
            start, value, pos = pos, view[pos:pos + size], pos + size
        else:
            raise Corrupt(f"wire type {wire}")
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
    try:
        return _index_example(buf)
    except (ValueError, OverflowError) as exc:  # numpy on a list of the wrong length, a varint too large
        raise Corrupt(f"not a tf.train.Example ({exc})") from None


def feature_values(feature: bytes) -> Union[ByteItems, np.ndarray]:
    """One `Feature` message (a span `index_example_with_spans` gave) -> its values, as `index_example`."""
    try:
        return _feature_values(memoryview(feature), 0)
    except (ValueError, OverflowError) as exc:
        raise Corrupt(f"not a tf.train.Feature ({exc})") from None


def parse_example(buf: bytes) -> dict[str, Union[list[bytes], np.ndarray]]:
    """A serialised `tf.train.Example` -> {feature key: list of bytes, or float32 / int64 array}."""
    return {key: value.items(buf) if isinstance(value, ByteItems) else value
            for key, value in index_example(buf).items()}


def _index_example(buf: bytes) -> tuple[dict[str, Union[ByteItems, np.ndarray]], dict[str, tuple[int, int]]]:
    out: dict = {}
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
            out[key] = _feature_values(value, value_at)
            spans[key] = (value_at, 0 if value is None else len(value))
    return out, spans


def _feature_values(feature: Optional[memoryview], at: int) -> Union[ByteItems, np.ndarray]:
    if feature is None:
        return ByteItems(np.zeros(0, np.int64), np.zeros(0, np.int64))
    for kind, payload, payload_at in _fields(feature, at):
        if not isinstance(payload, memoryview):
            raise Corrupt("a feature list that is not a message")
        items = _fields(payload, payload_at)
        if kind == 1:  # BytesList
            spans = [(item_at, len(v)) for n, v, item_at in items if n == 1 and isinstance(v, memoryview)]
            array = np.array(spans, np.int64).reshape(-1, 2)
            return ByteItems(array[:, 0], array[:, 1])
        if kind == 2:  # FloatList: packed, or one fixed32 each
            return np.concatenate([np.frombuffer(v, "<f4") for n, v, _ in items if n == 1] or
                                  [np.zeros(0, "<f4")]).astype(np.float32)
        if kind == 3:  # Int64List: packed, or one varint each
            parts = [_packed_varints(v) if isinstance(v, memoryview) else np.array([v], np.uint64).view(np.int64)
                     for n, v, _ in items if n == 1]
            return np.concatenate(parts) if parts else np.zeros(0, np.int64)
    return ByteItems(np.zeros(0, np.int64), np.zeros(0, np.int64))
