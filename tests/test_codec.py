"""The frame codec: indexed PNG where a frame has at most 256 colours, RGB otherwise, always exact."""

from __future__ import annotations

import concurrent.futures
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from dropj_datasets import codec, schema
from factory import drivers, sample


def _colour_type(data: bytes) -> int:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return data[25]  # IHDR: width, height, bit depth, then the colour type


def _decoded_everywhere(data: bytes, shape: tuple[int, ...]) -> list[np.ndarray]:
    """The frame as `tf.io.decode_png`, `tfds.features.Image` (what `tfds.load` runs) and Pillow read it."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    feature = codec.PNG.feature(shape)
    return [tf.io.decode_png(data, channels=3).numpy(), feature.decode_example(tf.constant(data)).numpy(),
            codec.PNG.decode(data)]


@pytest.fixture(scope="module")
def env_frames() -> dict[str, np.ndarray]:
    """Frames of our environments as a keyboard player sees them: 40 steps of each variant."""
    frames = {}
    for env in schema.ENVS.values():
        gym_env = sample.make_env(env)
        try:
            frame, _ = gym_env.reset(seed=3)
            core = gym_env.unwrapped
            seen = [frame]
            for step in range(40):
                frame, *_ = gym_env.step(drivers.keyboard_action(core, veer=step % 15 > 11))
                seen.append(frame)
        finally:
            gym_env.close()
        frames[env.name] = np.stack(seen)
    return frames


def test_frames_of_our_environments_are_indexed_and_exact(env_frames):
    for name, frames in env_frames.items():
        for frame in frames[::4]:
            data = codec.PNG.encode(frame)
            colours = len(np.unique(frame.reshape(-1, 3), axis=0))
            assert _colour_type(data) == (3 if colours <= 256 else 2), name
            for decoded in _decoded_everywhere(data, frame.shape):
                assert decoded.dtype == np.uint8 and np.array_equal(decoded, frame), name


def test_indexed_frames_are_smaller_than_the_rgb_png_before(env_frames):
    """The reason for the codec: the same frames took more bytes as RGB PNG (Pillow, zlib 6, run-length)."""
    for name, frames in env_frames.items():
        ours = sum(len(codec.PNG.encode(frame)) for frame in frames)
        before = 0
        for frame in frames:
            buffer = io.BytesIO()
            Image.fromarray(frame).save(buffer, format="PNG", compress_level=6, compress_type=zlib.Z_RLE)
            before += len(buffer.getvalue())
        assert ours < 0.9 * before, (name, ours, before)


def test_frames_of_many_colours_are_rgb_and_exact():
    frame = np.random.default_rng(0).integers(0, 256, (84, 84, 3), dtype=np.uint8)
    data = codec.PNG.encode(frame)
    assert _colour_type(data) == 2
    for decoded in _decoded_everywhere(data, frame.shape):
        assert np.array_equal(decoded, frame)


@pytest.mark.parametrize("shape", [(1, 1, 3), (7, 5, 3), (3, 257, 3), (96, 96, 3)])
def test_odd_shapes_and_palettes_of_every_size(shape):
    rng = np.random.default_rng(sum(shape))
    for colours in (1, 2, 17, 256):
        palette = rng.integers(0, 256, (colours, 3), dtype=np.uint8)
        frame = palette[rng.integers(0, colours, shape[:2])]
        data = codec.PNG.encode(frame)
        assert _colour_type(data) == 3
        for decoded in _decoded_everywhere(data, shape):
            assert np.array_equal(decoded, frame)


def test_a_view_of_a_larger_array_encodes_like_a_copy(env_frames):
    frames = env_frames["carracing"]
    view = frames[:, ::-1]  # not contiguous
    assert codec.PNG.encode(view[5]) == codec.PNG.encode(np.ascontiguousarray(view[5]))


def test_anything_but_a_colour_frame_is_refused():
    with pytest.raises(ValueError, match="H x W x 3"):
        codec.PNG.encode(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="H x W x 3"):
        codec.PNG.encode(np.zeros((8, 8, 4), np.uint8))


def test_the_bytes_do_not_depend_on_what_was_encoded_before_nor_on_threads(env_frames, monkeypatch):
    """Colour ids depend on the order colours are met; the palette order must not (reproducible builds)."""
    frames = np.concatenate(list(env_frames.values())[:1])
    first = [codec.PNG.encode(frame) for frame in frames]
    monkeypatch.setattr(codec, "_COLOURS", codec._ColourIndex())
    backwards = [codec.PNG.encode(frame) for frame in frames[::-1]][::-1]
    monkeypatch.setattr(codec, "_COLOURS", codec._ColourIndex())
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(codec.PNG.encode, frames))
    assert first == backwards == threaded


def test_a_full_colour_table_stops_growing_and_frames_stay_exact(monkeypatch):
    """Adversarial frames (a recording is untrusted input) cannot grow the colour table without bound."""
    table = codec._ColourIndex()
    monkeypatch.setattr(codec, "_COLOURS", table)
    monkeypatch.setattr(codec._ColourIndex, "_FULL", 300)
    rng = np.random.default_rng(1)
    for _ in range(6):
        palette = rng.integers(0, 256, (200, 3), dtype=np.uint8)
        frame = palette[rng.integers(0, 200, (40, 40))]
        data = codec.PNG.encode(frame)
        assert _colour_type(data) == 3
        assert np.array_equal(codec.PNG.decode(data), frame)
        assert len(table.known[0]) <= 300


def test_the_chunks_are_well_formed(env_frames):
    """Every chunk's CRC and length, IHDR's fields, one PLTE of the frame's colours, IEND last."""
    frame = env_frames["chuckc"][10]
    data = codec.PNG.encode(frame)
    position, kinds = 8, []
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length:position + 12 + length])
        assert crc == zlib.crc32(kind + body)
        kinds.append((kind, body))
        position += 12 + length
    assert [kind for kind, _ in kinds] == [b"IHDR", b"PLTE", b"IDAT", b"IEND"]
    assert struct.unpack(">IIBBBBB", kinds[0][1]) == (128, 128, 8, 3, 0, 0, 0)
    palette = np.frombuffer(kinds[1][1], np.uint8).reshape(-1, 3)
    assert len(palette) == len(np.unique(frame.reshape(-1, 3), axis=0))
