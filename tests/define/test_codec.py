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
    """The frame as `tf.io.decode_png`, `tfds.features.Image` (what `tfds.load` runs), Pillow and our own
    decoder read it."""
    import tensorflow as tf

    feature = codec.PNG.feature(shape)
    return [tf.io.decode_png(data, channels=3).numpy(), feature.decode_example(tf.constant(data)).numpy(),
            _pillow(data), codec.PNG.decode(data)]


def _pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


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


# -- decoding without TensorFlow: our indexed frames directly, anything else through Pillow ----------------


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    position, chunks = 8, []
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        chunks.append((kind, data[position + 8:position + 8 + length]))
        position += 12 + length
    return chunks


def _png(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(codec._chunk(kind, body) for kind, body in chunks)


def test_our_indexed_frames_decode_directly_and_like_pillow(env_frames):
    for name, frames in env_frames.items():
        for frame in frames[::5]:
            data = codec.PNG.encode(frame)
            fast = codec.decode_indexed_png(data, frame.shape)
            if _colour_type(data) == 3:
                assert fast is not None and fast.flags.c_contiguous and fast.dtype == np.uint8, name
                assert np.array_equal(fast, frame) and np.array_equal(fast, _pillow(data)), name
            else:
                assert fast is None, name  # an RGB frame goes to Pillow
            assert np.array_equal(codec.decode_png(data), frame), name


def test_the_direct_decoder_leaves_every_other_png_to_pillow(env_frames):
    frame = env_frames["chuckc"][7]
    data = codec.PNG.encode(frame)
    ihdr, plte, idat, iend = _chunks(data)
    height, width = frame.shape[:2]
    rows = np.frombuffer(zlib.decompress(idat[1]), np.uint8).reshape(height, width + 1).copy()
    filtered = rows.copy()
    filtered[:, 0] = 1  # filter 'Sub' on every row: the bytes differ, Pillow undoes the filter
    filtered[:, 2:] = (rows[:, 2:].astype(int) - rows[:, 1:-1]) % 256
    past_palette = rows.copy()
    past_palette[0, 1] = len(plte[1]) // 3  # the first index past the palette
    forged_size = struct.pack(">IIBBBBB", 1 << 20, 1 << 20, 8, 3, 0, 0, 0)
    broken_crc = bytearray(data)
    broken_crc[-20] ^= 1  # inside IDAT's body
    others = {
        "a filter other than 0": _png([ihdr, plte, (b"IDAT", zlib.compress(filtered.tobytes())), iend]),
        "a pixel past the palette": _png([ihdr, plte, (b"IDAT", zlib.compress(past_palette.tobytes())), iend]),
        "an ancillary chunk": _png([ihdr, (b"gAMA", struct.pack(">I", 45455)), plte, idat, iend]),
        "a 1M x 1M header": _png([(b"IHDR", forged_size), plte, idat, iend]),
        "a chunk's CRC": bytes(broken_crc),
        "too few rows": _png([ihdr, plte, (b"IDAT", zlib.compress(rows[:-1].tobytes())), iend]),
        "too many rows": _png([ihdr, plte, (b"IDAT", zlib.compress(np.vstack([rows, rows[:1]]).tobytes())), iend]),
        "bytes after IEND": data + b"\0",
        "no IEND": data[:-12],
        "an RGB PNG": _rgb(frame),
        "not a PNG": b"GIF89a" + data[6:],
    }
    for what, other in others.items():
        assert codec.decode_indexed_png(other) is None, what
    # the same frame split over two IDAT chunks is still ours
    half = len(idat[1]) // 2
    split = _png([ihdr, plte, (b"IDAT", idat[1][:half]), (b"IDAT", idat[1][half:]), iend])
    assert np.array_equal(codec.decode_indexed_png(split), frame)
    assert np.array_equal(codec.decode_png(others["a filter other than 0"]), frame)  # through Pillow
    assert codec.decode_indexed_png(data, (height + 1, width, 3)) is None  # not the size asked for


def _rgb(frame: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # a flipped IHDR size
def test_a_damaged_frame_is_never_decoded_differently_from_pillow(env_frames):
    """Random byte flips inside the chunks, with their CRCs made right again (a forger's frame): whatever
    the direct decoder accepts, Pillow reads the same; what Pillow refuses, it refuses too."""
    rng = np.random.default_rng(14)
    accepted = 0
    for frame in env_frames["carracing"][::8]:
        chunks = _chunks(codec.PNG.encode(frame))
        for _ in range(60):
            which = int(rng.integers(0, 3))  # IHDR, PLTE or IDAT
            body = bytearray(chunks[which][1])
            for position in rng.integers(0, len(body), size=rng.integers(1, 3)):
                body[position] = rng.integers(0, 256)
            damaged = _png(chunks[:which] + [(chunks[which][0], bytes(body))] + chunks[which + 1:])
            fast = codec.decode_indexed_png(damaged)
            try:
                slow = _pillow(damaged)
            except Exception:  # noqa: BLE001 - any refusal of Pillow's
                slow = None
            if fast is not None:
                accepted += 1
                assert slow is not None and np.array_equal(fast, slow)
    assert accepted > 0  # a changed palette colour or pixel is still a frame
