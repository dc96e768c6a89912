"""Renders a preference query's video `{i}.mp4` as the release has them, deterministically (PyAV's FFmpeg).

In the release each `queries_s20*/data.pkl` key `'{i}.mp4'` names a video
beside it: two image panels side by side, left = segment1, right = segment2,
each step's frame a VAE reconstruction of the step's z (`dropj make-queries`
decodes them). Its properties, matched here:

    1000x500 px, 20 frames at 2.5 fps (8 s), H.264 (libx264, High), yuv420p, mp4.

Panels are scaled up by nearest neighbour where they are small and put in
their half of a white 1000x500 canvas (`canvas`); there are no matplotlib
axes and no antialiasing.

Deterministic: the same bytes on every call on one machine (and one PyAV
build). libx264 runs single-threaded with fixed options, frames get fixed
timestamps, and the muxer is bitexact (no creation time, no library version
strings; the x264 SEI still names the x264 build and its options).
"""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np

WIDTH, HEIGHT = 1000, 500  # figsize (10, 5) at matplotlib's default dpi of 100
FRAMES = 20  # one per segment step (the 's20' of the folder names)
FPS = Fraction(5, 2)  # FuncAnimation interval=400 ms
CODEC = "libx264"
PIX_FMT = "yuv420p"
# libx264's defaults, as matplotlib's ffmpeg writer leaves them, made explicit so they cannot drift;
# one thread, as threaded lookahead/slices are where encoders may vary between runs.
X264_OPTIONS = {"preset": "medium", "crf": "23", "threads": "1"}
# The muxer writes no creation time and no 'encoder' (Lavf version) tag.
MUXER_OPTIONS = {"fflags": "+bitexact"}

PANEL_BOX = 440  # a panel is scaled up to fit a PANEL_BOX square centred in its 500x500 half
BACKGROUND = 255  # white, like the figure around matplotlib's axes
# Panels start on H.264's 16x16 macroblock grid: flat blocks that fill whole macroblocks cost a few bits,
# ones that cut through them cost more (measured: files 1.5x larger off the grid).
MACROBLOCK = 16

def _require_av():
    try:
        import av
    except ImportError as exc:
        raise ImportError("rendering query videos needs PyAV: pip install av "
                          "(the pinned version is in constraints.txt)") from exc
    return av


def _check_frames(name: str, frames: np.ndarray) -> list[str]:
    problems = []
    if frames.dtype != np.uint8:
        problems.append(f"{name}: expected dtype uint8, got {frames.dtype}")
    if frames.ndim != 4 or frames.shape[0] != FRAMES or frames.shape[-1] != 3:
        problems.append(f"{name}: expected shape ({FRAMES}, H, W, 3), got {frames.shape}")
    elif min(frames.shape[1:3]) < 1 or max(frames.shape[1:3]) > PANEL_BOX:
        problems.append(f"{name}: panels of {frames.shape[1]}x{frames.shape[2]} px do not fit "
                        f"the {PANEL_BOX}x{PANEL_BOX} px box")
    return problems


def _origin(start: int, free: int) -> int:
    """Where a panel with `free` px to spare in a half starting at `start` begins: about centred, on the
    macroblock grid (`free // 2` rounded to the nearest grid line that keeps the panel inside)."""
    lines = [x for x in range(start, start + free + 1) if x % MACROBLOCK == 0]
    return min(lines, key=lambda x: abs(x - (start + free // 2))) if lines else start + free // 2


def canvas(left_frames: np.ndarray, right_frames: np.ndarray) -> np.ndarray:
    """The (20, 500, 1000, 3) uint8 RGB frames `render` encodes.

    A white canvas; each panel is scaled up by the largest integer factor that
    fits PANEL_BOX (nearest neighbour: no interpolation) and put about in the
    middle of its half, the left panels in x < 500, the right ones in x >= 500.
    """
    left_frames, right_frames = np.asarray(left_frames), np.asarray(right_frames)
    problems = _check_frames("left_frames", left_frames) + _check_frames("right_frames", right_frames)
    if problems:
        raise ValueError("cannot render the query video:\n  " + "\n  ".join(problems))
    frames = np.full((FRAMES, HEIGHT, WIDTH, 3), BACKGROUND, dtype=np.uint8)
    for panels, x_start in ((left_frames, 0), (right_frames, WIDTH // 2)):
        _, h, w, _ = panels.shape
        scale = PANEL_BOX // max(h, w)
        h, w = h * scale, w * scale
        top, left = _origin(0, HEIGHT - h), _origin(x_start, WIDTH // 2 - w)
        frames[:, top:top + h, left:left + w] = panels.repeat(scale, axis=1).repeat(scale, axis=2)
    return frames


def render(left_frames: np.ndarray, right_frames: np.ndarray) -> bytes:
    """mp4 bytes of one query video (the release's properties, see the module docstring).

    left_frames, right_frames: (20, H, W, 3) uint8 RGB, H, W <= PANEL_BOX, for
    segment1 and segment2; frame t of the video shows step t of both.
    Deterministic: the same inputs give the same bytes.
    """
    frames = canvas(left_frames, right_frames)
    av = _require_av()
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4", container_options=MUXER_OPTIONS) as container:
        stream = container.add_stream(CODEC, rate=FPS, options=dict(X264_OPTIONS))
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, PIX_FMT
        stream.codec_context.time_base = 1 / FPS
        stream.codec_context.thread_count = 1
        for index, rgb in enumerate(frames):
            # rgb24 -> yuv420p by swscale's defaults (BT.601, limited range), as the ffmpeg CLI does.
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=PIX_FMT)
            frame.pts, frame.time_base = index, 1 / FPS
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()
