"""Frame codecs: how an image field is stored, in one place.

A schema `Field` whose `encoding` names a codec here (`'png'`) is encoded,
decoded and declared to TFDS by that codec, for the builders, the recorder,
the TF-free reader (`loaders/episode_source.py`) and the tests alike:

    from dropj_datasets import codec
    frames_codec = codec.for_field(field)             # codec.PNG
    data = frames_codec.encode(frame)                 # HWC uint8 RGB -> bytes
    assert (frames_codec.decode(data) == frame).all()
    frames_codec.size(data)                           # (width, height) its header claims
    with frames_codec.pool() as pool:                 # an episode's frames on every core
        encoded = pool.encode_all(frames)

A new frame codec is one `FrameCodec` in `CODECS` and a field naming it; the
readers ask `for_field`, never a codec's name.

Importing this module needs numpy and Pillow only; `feature()` imports TFDS.

PNG: each frame is stored as the smallest of the encodings measured that
`tfds.features.Image` / `tf.io.decode_png` (and Pillow) decode to the
identical uint8 RGB array, at a cost the build can afford:

* a frame of at most 256 colours (the release's frames: aliased polygons,
  and for Car Racing a LANCZOS resize; 97 % of Car Racing frames and every
  Obstacle frame) is an indexed PNG: an 8-bit palette of its colours, filter
  0 on every row, zlib level 5 with the default strategy, the palette from
  the most to the least frequent colour (so the bytes are the same whatever
  thread or process encodes, and smaller than in colour order). The chunks
  are written here (IHDR, PLTE, IDAT, IEND); a colour table (`_ColourIndex`)
  finds a frame's palette in a few vector operations instead of a sort;
* any other frame is an RGB PNG from Pillow (adaptive filters, zlib level 5,
  run-length strategy).

docs/benchmarks.md ("Frame encoding") has the measurements on frames of our
environments driven like a keyboard player: against the RGB PNG stored
before, Car Racing frames are 16 % smaller and Obstacle frames 32 % smaller,
in less encoding time, and they decode about 2x (Car Racing) and
2.8x (Obstacle) faster in TensorFlow. Pillow's palette writer was larger or
slower, the run-length strategy is worse on palette rows, level 6 saves 2 %
(Car Racing) to 13 % (Obstacle) of the bytes for 10 to 20 % more encoding
time, level 9 a little more for 2 to 5x the time, and 4-bit pixels for
Obstacle's 9 to 11 colours save 0.2 %. zlib releases the GIL, so threads
spread the encoding over the cores too (the recorder's pool).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import os
import struct
import threading
import zlib
from typing import Any, Callable, Optional

import numpy as np
from PIL import Image

from dropj_datasets.schema import DataError

_CHUNK = 64  # frames per task: amortises the pool's per-task overhead


def _no_fast_path(data: bytes, shape: tuple[int, ...], out: Optional[np.ndarray] = None) -> None:
    return None


@dataclasses.dataclass(frozen=True)
class FrameCodec:
    """A lossless image encoding: `encode`/`decode` one HWC uint8 RGB frame, and its TFDS feature.

    The bytes a reader decodes are untrusted (a built directory, a recording): `decode` raises only
    `DataError` (the caller names the file) and refuses a header claiming more pixels than a frame may
    have before allocating them; `size` reads the header alone, so the TF-free reader checks it against
    the schema's shape before `decode` runs. `decode_fast`, when the codec has one, decodes the layout
    `encode` writes into a given array, and returns None for anything else (then `size` and `decode`
    read it): it must never accept bytes that `decode` would read differently.
    """

    name: str
    encode: Callable[[np.ndarray], bytes]
    decode: Callable[[bytes], np.ndarray]  # bytes -> HWC uint8 RGB; DataError when they are not a frame
    tfds_format: str  # tfds.features.Image's encoding_format, whose decoder reads these bytes
    size: Callable[[bytes], tuple[int, int]]  # (width, height) the header claims; DataError when not this format
    # (data, schema shape, out or None) -> the frame (in `out` when given), or None: not the layout `encode`
    # writes, or not of that shape
    decode_fast: Callable[[bytes, tuple[int, ...], Optional[np.ndarray]], Optional[np.ndarray]] = _no_fast_path

    def feature(self, shape: tuple[int, ...], doc: str = "") -> Any:
        """The TFDS feature that stores already-encoded frames of this codec (imports TFDS)."""
        import tensorflow_datasets as tfds

        return tfds.features.Image(shape=shape, dtype=np.uint8, encoding_format=self.tfds_format, doc=doc)

    def pool(self, workers: Optional[int] = None) -> "EncoderPool":
        return EncoderPool(self.encode, workers)


PNG_LEVEL = 5
RGB_STRATEGY = zlib.Z_RLE  # RGB rows after Pillow's adaptive filters
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MAX_PALETTE = 256


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


class _ColourIndex:
    """Numbers every colour seen so far, shared by a process's encoder threads.

    A table of 2**24 uint16 entries (32 MiB, made on first use) maps a packed
    RGB colour to its id; `known` holds each id's packed colour and RGB bytes.
    Ids are only ever added: an entry goes from `_UNSEEN` to an id once, after
    `known` has been replaced by a longer copy holding it, so a thread that
    reads ids first and `known` after finds every id it read without a lock.
    Adding takes the lock. Once `_FULL` colours are known (only adversarial
    frames get there), frames with new colours are sorted instead: the
    table's memory stays bounded.
    """

    _UNSEEN = 0xFFFF
    _FULL = 0xFFF0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: Optional[np.ndarray] = None
        self.known = (np.zeros(0, np.uint32), np.zeros((0, 3), np.uint8))

    def lookup(self, packed: np.ndarray) -> Optional[tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]]:
        """(id of each pixel, pixels per id, (packed colour, RGB) per id), or None when the table is full
        and a colour is new."""
        if self._ids is None:
            with self._lock:
                if self._ids is None:
                    self._ids = np.full(1 << 24, self._UNSEEN, np.uint16)
        ids = self._ids[packed]
        known = self.known
        counts = np.bincount(ids, minlength=len(known[0]))
        if len(counts) == len(known[0]):  # every id is below len(known): no new colour
            return ids, counts, known
        with self._lock:
            new = np.unique(packed[self._ids[packed] == self._UNSEEN])
            colours, rgb = self.known
            if len(colours) + len(new) > self._FULL:
                return None
            new_rgb = np.stack([new >> 16, (new >> 8) & 0xFF, new & 0xFF], axis=1).astype(np.uint8)
            self.known = known = (np.concatenate([colours, new]), np.concatenate([rgb, new_rgb]))
            self._ids[new] = np.arange(len(colours), len(known[0]), dtype=np.uint16)
            ids = self._ids[packed]
        return ids, np.bincount(ids, minlength=len(known[0])), known


_COLOURS = _ColourIndex()


def _indexed_rows(frame: np.ndarray) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """(palette: N x 3 uint8, the PNG rows: H x (1 + W) uint8, each a filter byte 0 then pixel indices)
    of a frame of N <= 256 colours, else None."""
    height, width = frame.shape[:2]
    packed = ((frame[..., 0].astype(np.uint32) << 16) | (frame[..., 1].astype(np.uint32) << 8)
              | frame[..., 2]).ravel()
    rows = np.zeros((height, width + 1), np.uint8)
    found = _COLOURS.lookup(packed)
    if found is None:  # a full colour table: sort this frame's colours instead
        colours = np.unique(packed)
        if len(colours) > _MAX_PALETTE:
            return None
        rows[:, 1:] = np.searchsorted(colours, packed).reshape(height, width)
        palette = np.stack([colours >> 16, (colours >> 8) & 0xFF, colours & 0xFF], axis=1).astype(np.uint8)
        return palette, rows
    ids, counts, (colours, rgb) = found
    used = np.flatnonzero(counts)
    if len(used) > _MAX_PALETTE:
        return None
    # The palette from the most to the least frequent colour (ties in colour order): the bytes do not
    # depend on which thread saw a colour first, and the common colours get the same small indices.
    used = used[np.lexsort((colours[used], -counts[used].astype(np.int64)))]
    remap = np.zeros(len(colours), np.uint8)
    remap[used] = np.arange(len(used), dtype=np.uint8)
    rows[:, 1:] = remap[ids].reshape(height, width)
    return rgb[used], rows


def _indexed_png(palette: np.ndarray, rows: np.ndarray, level: int) -> bytes:
    height, width = rows.shape[0], rows.shape[1] - 1
    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)  # 8 bits, colour type 3 (palette)
    return (_PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"PLTE", palette.tobytes())
            + _chunk(b"IDAT", zlib.compress(rows, level)) + _chunk(b"IEND", b""))


def _rgb_png(frame: np.ndarray, level: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame, "RGB").save(buffer, format="PNG", compress_level=level, compress_type=RGB_STRATEGY)
    return buffer.getvalue()


def encode_png(frame: np.ndarray, level: int = PNG_LEVEL) -> bytes:
    """One HWC uint8 RGB frame -> PNG bytes: indexed when it has at most 256 colours, else RGB."""
    frame = np.ascontiguousarray(frame, dtype=np.uint8)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"a frame is H x W x 3 uint8 RGB, got shape {frame.shape}")
    indexed = _indexed_rows(frame)
    if indexed is None:
        return _rgb_png(frame, level)
    return _indexed_png(*indexed, level)


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> HWC uint8 RGB: our own indexed frames directly (`decode_indexed_png`), any other PNG
    through Pillow (its PNG reader only). Bytes that are not a PNG, a header claiming more than
    `_MAX_PIXELS` (checked before Pillow allocates anything), or any decoding failure: one `DataError`
    (the caller names the file)."""
    frame = decode_indexed_png(data)
    if frame is not None:
        return frame
    width, height = png_size(data)
    if width * height > _MAX_PIXELS:
        raise DataError(f"a PNG of {width}x{height}, more than the {_MAX_PIXELS:,} pixels a frame may have")
    try:
        with Image.open(io.BytesIO(data), formats=("PNG",)) as image:
            return np.asarray(image.convert("RGB"))
    # Pillow's ways of saying "bad" (zlib's and struct's among them, from inside its plugins)
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error, Image.DecompressionBombError) as exc:
        raise DataError(f"a frame that is not a readable PNG ({str(exc)[:120]})") from None


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) a PNG's header claims, read from its bytes; `DataError` when they are not a PNG."""
    if data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR" or len(data) < 24:
        raise DataError("a frame that is not a readable PNG (no PNG signature and header)")
    return struct.unpack_from(">II", data, 16)


_IHDR_INDEXED = struct.Struct(">IIBBBBB")
_CHUNK_HEAD = struct.Struct(">I4s")
_CRC = struct.Struct(">I")
_MAX_PIXELS = 1 << 24  # 16 Mpixel: the largest frame decoded, directly or by Pillow


def _png_chunks(data: bytes) -> Optional[list[tuple[bytes, int, int]]]:
    """(kind, body start, body end) of each chunk up to IEND, every CRC checked; None for anything else
    (no signature, a chunk past the end, a CRC that does not match, bytes after IEND)."""
    if data[:8] != _PNG_SIGNATURE:
        return None
    view, pos, end, chunks = memoryview(data), 8, len(data), []
    while pos + 12 <= end:
        length, kind = _CHUNK_HEAD.unpack_from(data, pos)
        body_end = pos + 8 + length
        if body_end + 4 > end or zlib.crc32(view[pos + 4:body_end]) != _CRC.unpack_from(data, body_end)[0]:
            return None
        chunks.append((kind, pos + 8, body_end))
        pos = body_end + 4
        if kind == b"IEND":
            return chunks if pos == end else None
    return None


def decode_indexed_png(data: bytes, shape: Optional[tuple[int, ...]] = None,
                       out: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
    """The frame of an indexed PNG laid out as `encode_png` writes it, or None for any other PNG (or one
    whose size is not `shape`'s H x W, when given). `out`: a C-contiguous H x W x 3 uint8 array to
    decode into (returned), instead of a new one.

    The layout: IHDR (8-bit palette, no interlace), PLTE, one or more IDAT, IEND, every row filter 0.
    Such a frame is one zlib inflation and one palette lookup, 1.5x Pillow's rate on Car Racing frames
    (docs/benchmarks.md, "Reading for PyTorch without TensorFlow"). Anything else, or anything wrong (a
    chunk's CRC, the inflated size, a pixel past the palette), returns None, so the caller's general
    decoder reads it and reports what is wrong: this path never accepts a PNG Pillow would read
    differently. Memory is bounded by the header's size, checked before inflating.
    """
    chunks = _png_chunks(data)
    if chunks is None or len(chunks) < 4 or chunks[0][0] != b"IHDR" or chunks[1][0] != b"PLTE":
        return None
    if any(kind != b"IDAT" for kind, _, _ in chunks[2:-1]):
        return None  # an ancillary chunk, or a second palette: Pillow decides what it means
    (_, start, stop), (_, plte_start, plte_stop) = chunks[0], chunks[1]
    if stop - start != _IHDR_INDEXED.size:
        return None
    width, height, depth, colour, compression, filtering, interlace = _IHDR_INDEXED.unpack_from(data, start)
    if (depth, colour, compression, filtering, interlace) != (8, 3, 0, 0, 0) or not (
            0 < width and 0 < height and width * height <= _MAX_PIXELS):
        return None
    if shape is not None and (height, width) != tuple(shape[:2]):
        return None
    colours = plte_stop - plte_start
    if colours % 3 or not 0 < colours <= 3 * _MAX_PALETTE:
        return None
    view = memoryview(data)
    idat = [view[a:b] for _, a, b in chunks[2:-1]]
    expected = height * (width + 1)
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(idat[0] if len(idat) == 1 else b"".join(idat), expected + 1)
    except zlib.error:
        return None
    if len(raw) != expected or not inflater.eof:
        return None
    rows = np.frombuffer(raw, np.uint8).reshape(height, width + 1)
    if rows[:, 0].any():
        return None
    pixels = np.ascontiguousarray(rows[:, 1:])
    if colours < 3 * _MAX_PALETTE and int(pixels.max()) >= colours // 3:
        return None
    # The palette as 3-byte items: one take gives the contiguous H x W x 3 frame (5x faster than indexing
    # the N x 3 palette with the pixels).
    palette = np.frombuffer(data, "V3", colours // 3, plte_start)
    if out is None:
        return palette.take(pixels).view(np.uint8).reshape(height, width, 3)
    if out.shape != (height, width, 3) or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous ({height}, {width}, 3) uint8 array")
    palette.take(pixels, out=out.view("V3").reshape(height, width))
    return out


PNG = FrameCodec("png", encode_png, decode_png, "png", png_size, decode_indexed_png)
CODECS: dict[str, FrameCodec] = {PNG.name: PNG}


def for_field(field: Any) -> Optional[FrameCodec]:
    """The codec of a schema field, or None when the field is not an image."""
    return CODECS.get(field.encoding)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity: `taskset`, a container's cpuset), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _encode_chunk(encode: Callable[[np.ndarray], bytes], frames: np.ndarray) -> list[bytes]:
    return [encode(frame) for frame in frames]


class EncoderPool:
    """Encodes the frames of an episode in parallel threads; use as a context manager.

    `submit` returns at once, so one episode's frames encode while the caller
    writes the previous one; `collect` waits for them, in order.
    """

    def __init__(self, encode: Callable[[np.ndarray], bytes], workers: Optional[int] = None):
        self._encode = encode
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers or usable_cpus(), thread_name_prefix="dropj-frames")

    def submit(self, frames: np.ndarray) -> list[concurrent.futures.Future]:
        return [self._pool.submit(_encode_chunk, self._encode, frames[i:i + _CHUNK])
                for i in range(0, len(frames), _CHUNK)]

    @staticmethod
    def collect(futures: list[concurrent.futures.Future]) -> list[bytes]:
        return [data for future in futures for data in future.result()]

    def encode_all(self, frames: np.ndarray) -> list[bytes]:
        return self.collect(self.submit(frames))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "EncoderPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
