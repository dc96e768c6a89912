"""WindowDataset, VAEFrames, PreferencePairs: the tf.data pipelines' items, from `EpisodeSource`, in torch."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dropj.loaders import EpisodeSource, PreferencePairs, VAEFrames, WindowDataset
from factory import build, dummy_data

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
pytestmark = pytest.mark.slow  # three builds and the tf.data pipelines to compare with: over 5 s in all


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    data = tmp_path_factory.mktemp("data")
    return {name: Path(build(name, dummy_data(name.split("/")[0]), data).data_dir)
            for name in ("dropj_carracing/real", "dropj_carracing/dream", "dropj_carracing/preferences_dropj")}


def _tf_items(directory: Path, pipeline) -> list:
    import tensorflow_datasets as tfds

    import dropj_datasets  # noqa: F401

    dataset = tfds.builder_from_directory(str(directory)).as_dataset(split="train")
    return list(tfds.as_numpy(pipeline(dataset)))


def _same(ours, theirs) -> None:
    if isinstance(theirs, dict):
        assert set(ours) == set(theirs)
        for key in theirs:
            _same(ours[key], theirs[key])
        return
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    assert np.array_equal(ours, theirs, equal_nan=True)


@pytest.mark.parametrize("config,length,shift,action_key", [
    ("dropj_carracing/real", 5, None, "action"), ("dropj_carracing/real", 7, 3, "action"),
    ("dropj_carracing/dream", 4, 1, "action_scaled")])
def test_windows_are_world_model_windows(built, config, length, shift, action_key):
    from dropj.loaders import world_model_windows

    ours = WindowDataset(EpisodeSource(built[config]), length, shift, action_key=action_key)
    theirs = _tf_items(built[config], functools.partial(world_model_windows, length=length, shift=shift,
                                                         action_key=action_key))
    assert len(ours) == len(theirs) > 0
    for i, window in enumerate(theirs):
        item = ours[i]
        assert set(item) == {"observation", "action", "next_observation"}
        _same(item, window)


def test_frames_are_vae_frames(built):
    from dropj.loaders import vae_frames

    ours = VAEFrames(EpisodeSource(built["dropj_carracing/real"]))
    theirs = _tf_items(built["dropj_carracing/real"], vae_frames)
    assert len(ours) == len(theirs) > 0
    for i in range(0, len(theirs), 7):
        _same(ours[i], theirs[i])
    _same(ours[-1], theirs[-1])


@pytest.mark.parametrize("labelled_only", [True, False])
def test_pairs_are_preference_pairs(built, labelled_only):
    from dropj.loaders import preference_pairs

    config = "dropj_carracing/preferences_dropj"
    ours = PreferencePairs(EpisodeSource(built[config]), labelled_only=labelled_only)
    theirs = _tf_items(built[config], functools.partial(preference_pairs, labelled_only=labelled_only))
    assert len(ours) == len(theirs) > 0
    for i, pair in enumerate(theirs):
        _same(ours[i], pair)


def test_pairs_refuse_other_kinds(built):
    with pytest.raises(ValueError, match="preference configs"):
        PreferencePairs(EpisodeSource(built["dropj_carracing/real"]))


def test_windows_decode_only_their_steps(built, monkeypatch):
    from dropj.loaders import episode_source

    decoded = []
    original = episode_source._decode_frame
    monkeypatch.setattr(episode_source, "_decode_frame", lambda frame_codec, data, shape, out=None:
                        decoded.append(1) or original(frame_codec, data, shape, out))
    windows = WindowDataset(EpisodeSource(built["dropj_carracing/real"]), 5)
    assert not decoded  # making the index decodes nothing
    windows[3]
    assert len(decoded) == 6


@pytest.mark.slow
def test_a_shuffling_dataloader_with_persistent_workers_and_no_tensorflow(built, tmp_path):
    """Spawned workers, shuffle, persistent workers, a DistributedSampler's share, stopping early;
    no TensorFlow in the main process or any worker."""
    code = f"""
import sys, torch
from torch.utils.data import DataLoader, DistributedSampler
from dropj.loaders import EpisodeSource, WindowDataset

def no_tensorflow(_):
    assert 'tensorflow' not in sys.modules

if __name__ == '__main__':
    windows = WindowDataset(EpisodeSource({str(built['dropj_carracing/real'])!r}), 5)
    loader = DataLoader(windows, batch_size=2, shuffle=True, num_workers=2, persistent_workers=True,
                        worker_init_fn=no_tensorflow, multiprocessing_context='spawn')
    seen = 0
    for epoch in range(2):
        for batch in loader:
            assert batch['observation'].dtype == torch.uint8 and batch['observation'].shape[1:] == (5, 84, 84, 3)
            seen += len(batch['observation'])
    print(seen, len(windows))
    shard = DistributedSampler(windows, num_replicas=2, rank=1, shuffle=True, seed=0)
    first = next(iter(DataLoader(windows, batch_size=1, sampler=shard, num_workers=2)))  # and stop early
    print(sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow'))
"""
    script = tmp_path / "loader_check.py"  # a file: spawned workers import its functions by name
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    counts, modules = done.stdout.splitlines()[-2:]
    seen, total = map(int, counts.split())
    assert seen == 2 * total and total > 0 and modules == "[]"
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_whole_batches_in_workers_stop_cleanly_in_the_middle_of_a_pass(built, tmp_path, context):
    """`training_data.Batches`' loader: batches decoded in the workers' shared memory equal the items'
    default collate; a loader stopped after a few batches leaves no aborted worker."""
    code = f"""
import sys, torch
from torch.utils.data import DataLoader
from dropj.loaders import EpisodeSource, WindowDataset
from dropj.loaders.training_data import Batches

if __name__ == '__main__':
    windows = WindowDataset(EpisodeSource({str(built['dropj_carracing/real'])!r}), 3)
    batches = Batches(windows, 4, shuffle=False).loader(num_workers=2, multiprocessing_context={context!r})
    items = DataLoader(windows, batch_size=4)
    for n, (ours, theirs) in enumerate(zip(batches, items)):
        for key in theirs:
            assert ours[key].dtype == theirs[key].dtype and torch.equal(ours[key], theirs[key]), key
    it = iter(batches)
    first = next(it)
    del it, batches
    print(n + 1, 'tensorflow' in sys.modules)
"""
    script = tmp_path / "stop_early.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    count, tensorflow = done.stdout.split()
    assert int(count) > 1 and tensorflow == "False"
    assert "terminate called" not in done.stderr and "Traceback" not in done.stderr, done.stderr[-3000:]


def test_ring_buffers_are_reused_only_once_every_tensor_of_a_batch_is_freed(built):
    """The main process's side of `batch_ring`: a buffer is free again only when the batch's last tensor,
    or a view of one, is gone; a consumer that keeps every batch still gets them all, whole (the workers
    make fresh shared memory when no buffer is free)."""
    import gc

    import torch
    from torch.utils.data import DataLoader

    from dropj.loaders.batch_ring import FREE, RingLoader
    from dropj.loaders.training_data import Batches

    windows = WindowDataset(EpisodeSource(built["dropj_carracing/real"]), 2)
    loader = Batches(windows, 2, shuffle=False).loader(num_workers=2)
    assert isinstance(loader, RingLoader)
    expected = list(DataLoader(windows, batch_size=2))
    kept = list(loader)  # holds every batch: more than the ring's buffers
    assert len(kept) == len(expected) > len(loader.ring.flags)
    for ours, theirs in zip(kept, expected):
        for key in theirs:
            assert torch.equal(ours[key], theirs[key]), key
    del kept
    gc.collect()
    assert (loader.ring.flags == FREE).all()
    freed = []  # the buffers given back, in order (the workers may take one again at once: flags race)
    release = loader.ring._release
    loader.ring._release = lambda slot: (release(slot), slot in loader.ring._held or freed.append(slot))
    it = iter(loader)
    batch = next(it)
    (slot, alive), = loader.ring._held.items()  # the one batch handed out so far: frames and actions
    assert alive == 2 and loader.ring.flags[slot] != FREE
    view = batch["next_observation"][:, 1:]  # a view that outlives the batch
    del batch
    gc.collect()
    assert loader.ring._held == {slot: 1} and slot not in freed  # the frames are still in use
    assert torch.equal(view, expected[0]["next_observation"][:, 1:])
    del view
    gc.collect()
    assert slot not in loader.ring._held and freed.count(slot) == 1
    del it
