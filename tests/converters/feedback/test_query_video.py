"""Query videos (DATA_FORMATS.md 4.2): rendered deterministically in the release's format, decoded for users,
and shipped beside every data.pkl of the sample."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from factory import REPO
from dropj.converters.store import legacy_pickle
from factory import query_video
from dropj.loaders import video

# (dummy_data zip, query folder, n_z, queries) of the sample
SAMPLE_QUERIES = (
    ("dropj_carracing/dummy_data/feedback/queries_s20.zip", "queries_s20", 32, 10),
    ("dropj_obst_carracing/dummy_data/feedback/queries_s20_chuckcobst.zip", "queries_s20_chuckcobst", 64, 4),
    ("dropj_obst_carracing/dummy_data/feedback/queries_s20_chuckccarobst.zip", "queries_s20_chuckccarobst", 64, 5),
)
MAX_MEAN_ERROR = 8.0  # grey levels: H.264 at crf 23 is lossy, so decoded frames only approximate the canvas


def _segment(seed: int, width: int = 547) -> np.ndarray:
    """A Car Racing-shaped (20, 547) float64 segment: z|c|h and a scaled action per row."""
    return np.random.default_rng(seed).normal(0.0, 1.2, size=(20, width))


def _frames(seed: int, size: int = 84) -> np.ndarray:
    """(20, size, size, 3) uint8 stand-ins for VAE reconstructions: smooth colour waves that move each step."""
    y, x = np.mgrid[:size, :size] / size
    t = np.arange(20)[:, None, None] / 20
    phase = np.random.default_rng(seed).uniform(0, 2 * np.pi, 3)
    waves = [np.sin(2 * np.pi * (x * (k + 1) / 3 + y + t) + phase[k]) for k in range(3)]
    return np.rint(127.5 + 127.5 * np.stack(waves, axis=-1)).astype(np.uint8)


@pytest.fixture(scope="module")
def query():
    left, right = query_video.latent_panels(_segment(0), 32), query_video.latent_panels(_segment(1), 32)
    return left, right, query_video.render(left, right)


def test_latent_panels_draw_z_as_a_heat_map():
    segment = np.zeros((20, 547))
    segment[:, 0], segment[:, 1], segment[:, 31] = 3.0, -2.5, 1.25  # cells (0, 0), (0, 1), (3, 7) of 4 x 8
    segment[:, 32:] = 7.0  # c, h and the action are not drawn
    panels = query_video.latent_panels(segment, 32)
    cell, margin = query_video.CELL, query_video.MARGIN
    assert panels.shape == (20, 4 * cell + 2 * margin, 8 * cell + 2 * margin, 3) and panels.dtype == np.uint8

    def colour(row, col):
        block = panels[:, margin + row * cell:margin + (row + 1) * cell, margin + col * cell:margin + (col + 1) * cell]
        assert (block == block[:, :1, :1]).all()
        return tuple(block[0, 0, 0])

    assert colour(0, 0) == (255, 0, 0)  # clipped at +Z_LIMIT: pure red
    assert colour(0, 1) == (0, 0, 255)  # -Z_LIMIT: pure blue
    assert colour(3, 7) == (255, 128, 128)  # half way: 255 * (1 - 0.5) rounds to 128
    assert colour(2, 3) == (255, 255, 255)  # z = 0: white, inside a grey outline
    assert tuple(panels[0, margin - 1, margin - 1]) == (query_video.GREY,) * 3
    assert tuple(panels[0, 0, 0]) == (255, 255, 255)
    assert query_video.latent_panels(np.zeros((20, 2115)), 64).shape[1:3] == (8 * cell + 2 * margin,) * 2


def test_canvas_scales_each_panel_up_by_nearest_neighbour_into_its_half():
    left, right = _frames(0), _frames(1)
    frames = query_video.canvas(left, right)
    assert frames.shape == (20, 500, 1000, 3) and frames.dtype == np.uint8
    scale = query_video.PANEL_BOX // 84  # 5: 420 x 420 px
    for half, panels in ((frames[:, :, :500], left), (frames[:, :, 500:], right)):
        drawn = np.argwhere((half != 255).any(axis=(0, 3)))
        (top, left_x), (bottom, right_x) = drawn.min(axis=0), drawn.max(axis=0) + 1
        assert (bottom - top, right_x - left_x) == (84 * scale, 84 * scale)
        assert 30 <= top <= 50 and 30 <= left_x <= 50  # about centred
        np.testing.assert_array_equal(half[:, top:bottom, left_x:right_x],
                                      panels.repeat(scale, axis=1).repeat(scale, axis=2))


def test_render_is_deterministic(query):
    left, right, mp4 = query
    assert query_video.render(left, right) == mp4
    assert query_video.render(left.copy(), right.copy()) == mp4


def test_rendered_video_has_the_release_properties(query):
    assert video.info(query[2]) == {
        "codec": "h264", "profile": "High", "pix_fmt": "yuv420p", "width": 1000, "height": 500,
        "fps": 2.5, "frames": 20, "duration": 8.0,
    }


@pytest.mark.slow
@pytest.mark.parametrize("source", ["latent", "frames"])
def test_decoded_frames_resemble_the_input_panels(source, query):
    if source == "latent":
        left, right, mp4 = query
    else:
        left, right = _frames(2), _frames(3)
        mp4 = query_video.render(left, right)
    frames = video.decode(mp4)
    assert frames.shape == (20, 500, 1000, 3) and frames.dtype == np.uint8
    expected = query_video.canvas(left, right).astype(np.int16)
    errors = {side: np.abs(frames[:, :, cols].astype(np.int16) - expected[:, :, cols]).mean()
              for side, cols in (("left", slice(0, 500)), ("right", slice(500, 1000)))}
    assert max(errors.values()) < MAX_MEAN_ERROR, errors
    # Each panel is on its own side: the swapped arrangement is far off.
    swapped = query_video.canvas(right, left).astype(np.int16)
    assert np.abs(frames.astype(np.int16) - swapped).mean() > 2 * max(errors.values())


def test_render_reports_every_bad_input():
    good = np.zeros((20, 10, 10, 3), np.uint8)
    with pytest.raises(ValueError) as excinfo:
        query_video.render(good[:19].astype(np.float32), np.zeros((20, 600, 10, 3), np.uint8))
    message = str(excinfo.value)
    assert "left_frames: expected dtype uint8, got float32" in message
    assert "left_frames: expected shape (20, H, W, 3), got (19, 10, 10, 3)" in message
    assert "right_frames: panels of 600x10 px do not fit the 440x440 px box" in message
    with pytest.raises(ValueError, match=r"need a \(20, >= n_z\) segment"):
        query_video.latent_panels(np.zeros((20, 10)), 32)


def test_decode_takes_bytes_numpy_scalars_and_string_tensors(query):
    """As docs/feedback.md uses it: `video.decode(example['video'])` on an eager tfds example."""
    import tensorflow as tf

    mp4 = query[2]
    expected = video.decode(mp4)
    for given in (np.bytes_(mp4), np.array(mp4, dtype=object), tf.constant(mp4)):
        assert np.array_equal(video.decode(given), expected), type(given).__name__
    assert video.info(tf.constant(mp4))["frames"] == 20
    with pytest.raises(TypeError, match="expected the video's bytes"):
        video.decode(12)


def test_decode_rejects_what_is_not_a_video():
    with pytest.raises(ValueError):  # PyAV's InvalidDataError is a ValueError
        video.decode(b"not an mp4")


@pytest.mark.slow
@pytest.mark.parametrize("archive, folder, n_z, count", SAMPLE_QUERIES)
def test_sample_ships_one_video_per_query(archive, folder, n_z, count):
    with zipfile.ZipFile(REPO / "dropj_datasets" / archive) as zf:
        queries = legacy_pickle.loads(zf.read(f"{folder}/data.pkl"), archive)
        videos = {info.filename: info for info in zf.infolist() if info.filename.endswith(".mp4")}
        assert sorted(videos) == sorted(f"{folder}/{key}" for key in queries) and len(queries) == count
        for key, segments in queries.items():
            assert videos[f"{folder}/{key}"].compress_type == zipfile.ZIP_STORED
            frames = video.decode(zf.read(f"{folder}/{key}"))
            assert frames.shape == (20, 500, 1000, 3), key
            # The video of key i shows that query's segments, left = segment1.
            expected = query_video.canvas(query_video.latent_panels(segments["segment1"], n_z),
                                          query_video.latent_panels(segments["segment2"], n_z))
            error = np.abs(frames.astype(np.int16) - expected).mean()
            assert error < MAX_MEAN_ERROR, (key, error)
