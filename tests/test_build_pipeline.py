"""The build's pipeline (converters/pipeline.py): reader and encoder processes, frames in shared memory."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from dropj.converters import pipeline
from factory import build, dummy_data

CONFIGS = [("dropj_carracing", "real"), ("dropj_obst_carracing", "chuckccar_real")]


def _records(data_dir: Path) -> dict[str, str]:
    """sha256 of every record file of a built dataset, by file name."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(data_dir.rglob("*.tfrecord*"))}


@pytest.mark.slow
@pytest.mark.parametrize("dataset,config", CONFIGS)
def test_builds_are_reproducible_and_the_long_episode_path_writes_the_same(tmp_path, monkeypatch, dataset, config):
    """Two builds write the same bytes (encoders in several processes, colours met in any order), and so
    does a build whose episodes are all too long for a shared-memory slot (frames piped to the encoders)."""
    name = f"{dataset}/{config}"
    first = _records(Path(build(name, dummy_data(dataset), tmp_path / "a").data_dir))
    second = _records(Path(build(name, dummy_data(dataset), tmp_path / "b").data_dir))
    monkeypatch.setattr(pipeline, "SLOT_BYTES_CAP", 1)
    piped = _records(Path(build(name, dummy_data(dataset), tmp_path / "c").data_dir))
    assert first and first == second == piped


def test_frame_slots_hand_frames_between_processes_in_place():
    import multiprocessing

    import numpy as np

    context = multiprocessing.get_context("fork")
    slots = pipeline.FrameSlots(context, 2, 1 << 16)
    try:
        a, b = slots.take(0), slots.take(0)
        assert {a, b} == {0, 1}
        frames = slots.array(a, (3, 4, 5, 3), np.dtype(np.uint8))
        frames[:] = 7
        child = context.Process(target=_fill, args=(slots, b))
        child.start()
        child.join(10)
        assert child.exitcode == 0
        assert (slots.array(b, (3, 4, 5, 3), np.dtype(np.uint8)) == 9).all()
        assert (slots.array(a, (3, 4, 5, 3), np.dtype(np.uint8)) == 7).all()  # the other slot untouched
        slots.release(a)
        assert slots.take(0) == a
    finally:
        slots.close()


def _fill(slots: pipeline.FrameSlots, slot: int) -> None:
    import numpy as np

    slots.array(slot, (3, 4, 5, 3), np.dtype(np.uint8))[:] = 9
