"""Reads a query video `{i}.mp4` (DATA_FORMATS.md 4.2) from its bytes: frames and properties.

The release's videos are H.264 / yuv420p mp4s of 20 frames at 2.5 fps,
1000x500 px: the left half shows the query's segment1, the right half
segment2. Decoding uses PyAV's bundled FFmpeg, imported only when a video is read.
`mp4` is the video's bytes: Python bytes, a numpy bytes scalar (`tfds.as_numpy`) or
a scalar string tensor (an example of `tfds.load` iterated eagerly).

    >>> frames = decode(example['video'])   # (20, 500, 1000, 3) uint8 RGB
    >>> left, right = frames[:, :, :500], frames[:, :, 500:]
    >>> info(mp4)['fps']
    2.5

Note the GUIs of the study played every frame with a 0.04 s pause, about
25 fps, not at the file's 2.5 fps (DATA_FORMATS.md 4.2).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np


def _require_av():
    try:
        import av
    except ImportError as exc:
        raise ImportError("reading query videos needs PyAV: pip install av "
                          "(the pinned version is in constraints.txt)") from exc
    return av


def _bytes(mp4: Any) -> bytes:
    """The video's bytes from bytes, a numpy bytes scalar or an eager scalar string tensor."""
    if isinstance(mp4, (bytes, bytearray, memoryview)):
        return bytes(mp4)
    if hasattr(mp4, "numpy"):  # a tf.Tensor, without importing TensorFlow here
        mp4 = mp4.numpy()
    if isinstance(mp4, np.ndarray) and mp4.shape == ():
        mp4 = mp4.item()
    if isinstance(mp4, (bytes, np.bytes_)):
        return bytes(mp4)
    raise TypeError(f"expected the video's bytes (bytes or a scalar string tensor), got {type(mp4).__name__}")


def decode(mp4: Any) -> np.ndarray:
    """All frames of the video's first video stream as (T, H, W, 3) uint8 RGB, in presentation order.

    yuv420p is converted to RGB by swscale's defaults (BT.601, limited range);
    H.264 is lossy, so the frames only approximate what was rendered.
    """
    av = _require_av()
    with av.open(io.BytesIO(_bytes(mp4)), mode="r") as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    if not frames:
        raise ValueError("the video holds no frames")
    return np.stack(frames)


def info(mp4: Any) -> dict[str, Any]:
    """The video's properties: codec, profile, pix_fmt, width, height, fps, frames, duration (seconds).

    `frames` counts the stream's packets (one frame each for H.264 in mp4) and
    `duration` is the stream's, so neither needs a full decode. For a release
    video: {'codec': 'h264', 'profile': 'High', 'pix_fmt': 'yuv420p',
    'width': 1000, 'height': 500, 'fps': 2.5, 'frames': 20, 'duration': 8.0}.
    """
    av = _require_av()
    with av.open(io.BytesIO(_bytes(mp4)), mode="r") as container:
        stream = container.streams.video[0]
        codec = stream.codec_context
        properties = {
            "codec": codec.name,
            "profile": codec.profile,
            "pix_fmt": codec.pix_fmt,
            "width": codec.width,
            "height": codec.height,
            "fps": float(stream.average_rate) if stream.average_rate else None,
            "duration": float(stream.duration * stream.time_base) if stream.duration is not None else None,
        }
        properties["frames"] = sum(1 for packet in container.demux(stream) if packet.size)
    return properties
