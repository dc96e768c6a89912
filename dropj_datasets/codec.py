"""Frame codecs: how an image field is stored, in one place.

A schema `Field` whose `encoding` names a codec here (`'png'`) is encoded,
decoded and declared to TFDS by that codec, for the builders, the recorder
and the tests alike:

    from dropj_datasets import codec
    frames_codec = codec.for_field(field)             # codec.PNG
    data = frames_codec.encode(frame)                 # HWC uint8 RGB -> bytes
    assert (frames_codec.decode(data) == frame).all()
    with frames_codec.pool() as pool:                 # an episode's frames on every core
        encoded = pool.encode_all(frames)

Importing this module needs numpy and Pillow only; `feature()` imports TFDS.

PNG: Pillow's zlib work releases the GIL, so a thread pool spreads it over
the cores without copying frames between processes. zlib's run-length
strategy (Z_RLE) suits PNG's filtered rows: on 300 driving frames of
gymnasium CarRacing (84x84, processed as the release) it gave 2,599 B per
frame in 0.20 ms, against 2,601 B in 0.44 ms with the default strategy at the
same level 6 (level 9: 2,493 B, 2.2 ms; TensorFlow's encoder, which TFDS uses
for numpy frames: about 35 % larger and slower still).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import io
import os
import zlib
from typing import Any, Callable, Optional

import numpy as np
from PIL import Image

_CHUNK = 64  # frames per task: amortises the pool's per-task overhead


@dataclasses.dataclass(frozen=True)
class FrameCodec:
    """A lossless image encoding: `encode`/`decode` one HWC uint8 RGB frame, and its TFDS feature."""

    name: str
    encode: Callable[[np.ndarray], bytes]
    decode: Callable[[bytes], np.ndarray]
    tfds_format: str  # tfds.features.Image's encoding_format, whose decoder reads these bytes

    def feature(self, shape: tuple[int, ...], doc: str = "") -> Any:
        """The TFDS feature that stores already-encoded frames of this codec (imports TFDS)."""
        import tensorflow_datasets as tfds

        return tfds.features.Image(shape=shape, dtype=np.uint8, encoding_format=self.tfds_format, doc=doc)

    def pool(self, workers: Optional[int] = None) -> "EncoderPool":
        return EncoderPool(self.encode, workers)


PNG_LEVEL = 6
PNG_STRATEGY = zlib.Z_RLE


def encode_png(frame: np.ndarray, level: int = PNG_LEVEL) -> bytes:
    """One HWC uint8 RGB frame -> PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(frame, "RGB").save(buffer, format="PNG", compress_level=level, compress_type=PNG_STRATEGY)
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


PNG = FrameCodec("png", encode_png, decode_png, "png")
CODECS: dict[str, FrameCodec] = {PNG.name: PNG}


def for_field(field: Any) -> Optional[FrameCodec]:
    """The codec of a schema field, or None when the field is not an image."""
    return CODECS.get(field.encoding)


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
            max_workers=workers or os.cpu_count() or 1, thread_name_prefix="dropj-frames")

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
