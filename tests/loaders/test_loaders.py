"""dropj.loaders (transformations and the torch bridge) on the built sample: the pipelines against the release files
themselves, and TorchIterable through real DataLoaders (0, 1 and 2 spawned workers)."""

from __future__ import annotations

import collections
import functools
import hashlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
import torch

from factory import REPO, dummy_data
import dropj_datasets  # noqa: F401  (registers the builders)
from dropj.converters.store import legacy_pickle
from dropj.converters.release import sources
from dropj.loaders import TorchIterable, preference_pairs, vae_frames, world_model_windows
from dropj.loaders import torch_bridge
from dropj_datasets import schema

MANUAL = dummy_data("dropj_carracing")
CONFIGS = ("real", "dream", "preferences_dropj")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("loaders_data")
    for config in CONFIGS:
        builder = tfds.builder(f"dropj_carracing/{config}", data_dir=str(root))
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(MANUAL)))
    return str(root)


def _stored(data_dir: str, config: str) -> tf.data.Dataset:
    return tfds.builder(f"dropj_carracing/{config}", data_dir=data_dir).as_dataset(split="train",
                                                                                  shuffle_files=False)


def _release(name: str) -> list:
    """The episodes of one release file, as the legacy transition tuples."""
    ref = sources.locate(MANUAL, (name,), required=(name,))[name]
    with ref.open() as f:
        return list(legacy_pickle.iter_list(f, str(ref)))


def _release_episodes(config: str, scaled: bool = False) -> list[dict]:
    """Per episode: s_0..s_T (T+1 states) and a_0..a_{T-1}, straight from the release tuples."""
    spec = schema.spec_for("dropj_carracing", config)
    out = []
    for episode in _release(spec.sources.scaled if scaled else spec.sources.episodes):
        states = [t[0] for t in episode] + [episode[-1][3]]
        dtype = np.uint8 if not spec.is_dream else np.float32  # dream step 0 is float64 in the release
        out.append({"states": np.stack([np.asarray(s, dtype) for s in states]),
                    "actions": np.stack([np.asarray(t[1], np.float64) for t in episode])})
    return out


# -- vae_frames ---------------------------------------------------------------------------------------------


def test_vae_frames_are_every_source_frame_in_order(data_dir):
    frames = list(tfds.as_numpy(vae_frames(_stored(data_dir, "real"))))
    episodes = _release_episodes("real")
    expected = [frame for episode in episodes for frame in episode["states"]]
    assert len(frames) == sum(len(e["actions"]) + 1 for e in episodes) == len(expected)
    for got, want in zip(frames, expected):
        assert got.dtype == np.uint8 and got.shape == (84, 84, 3)
        np.testing.assert_array_equal(got, want)


def test_vae_frames_refuses_latent_observations(data_dir):
    with pytest.raises(ValueError, match=r"needs \(H, W, 3\) uint8 frame observations; got float32 \[544\]"):
        vae_frames(_stored(data_dir, "dream"))


# -- world_model_windows ------------------------------------------------------------------------------------


def _expected_windows(episodes: list[dict], length: int, shift: int) -> list[tuple[int, int]]:
    """(episode, first transition) of each window: whole windows inside one episode, every `shift`."""
    return [(e, start) for e, episode in enumerate(episodes)
            for start in range(0, len(episode["actions"]) - length + 1, shift)]


@pytest.mark.parametrize("config, length, shift, scaled", [
    ("real", 5, None, False),
    ("real", 12, None, False),   # the 12-transition episode gives exactly one window, ending at s_T
    ("real", 13, None, False),   # ... and none here
    ("real", 1, None, False),
    ("real", 6, 1, False),       # overlapping windows
    ("dream", 6, None, False),
    ("dream", 7, 3, True),
])
def test_world_model_windows_are_slices_of_one_episode(data_dir, config, length, shift, scaled):
    action_key = schema.ACTION_SCALED if scaled else schema.ACTION
    windows = list(tfds.as_numpy(world_model_windows(_stored(data_dir, config), length,
                                                     action_key=action_key, shift=shift)))
    episodes = _release_episodes(config, scaled=scaled)
    expected = _expected_windows(episodes, length, shift or length)
    assert len(windows) == len(expected)
    if shift is None:
        assert len(windows) == sum(len(e["actions"]) // length for e in episodes)
    for window, (e, start) in zip(windows, expected):
        states, actions = episodes[e]["states"], episodes[e]["actions"]
        assert set(window) == {"observation", "action", "next_observation"}
        np.testing.assert_array_equal(window["observation"][1:], window["next_observation"][:-1])
        np.testing.assert_array_equal(window["observation"], states[start:start + length])
        np.testing.assert_array_equal(window["action"], actions[start:start + length])
        np.testing.assert_array_equal(window["next_observation"], states[start + 1:start + length + 1])
        assert window["action"].dtype == np.float64 and window["action"].shape == (length, 3)


def test_world_model_windows_reports_an_unknown_action_key(data_dir):
    with pytest.raises(ValueError, match=r"action_key 'action_scaled' is not a step field; the steps hold \["):
        world_model_windows(_stored(data_dir, "real"), 4, action_key=schema.ACTION_SCALED)
    with pytest.raises(ValueError, match="length must be >= 1, got 0"):
        world_model_windows(_stored(data_dir, "real"), 0)


# -- preference_pairs ---------------------------------------------------------------------------------------


def _stored_examples(data_dir: str) -> list[dict]:
    out = []
    for example in _stored(data_dir, "preferences_dropj"):
        out.append({f"{side}_{field}": np.stack([s[field].numpy() for s in example[side]])
                    for side in (schema.LEFT, schema.RIGHT) for field in (schema.OBSERVATION, schema.ACTION)}
                   | {"label": example[schema.LABEL].numpy(), "has_label": bool(example[schema.HAS_LABEL])})
    return out


@pytest.mark.slow
@pytest.mark.parametrize("labelled_only", [True, False])
def test_preference_pairs_match_the_examples(data_dir, labelled_only):
    examples = _stored_examples(data_dir)
    assert any(not e["has_label"] for e in examples) and any(e["has_label"] for e in examples)
    kept = [e for e in examples if e["has_label"] or not labelled_only]
    pairs = list(tfds.as_numpy(preference_pairs(_stored(data_dir, "preferences_dropj"),
                                                labelled_only=labelled_only)))
    assert len(pairs) == len(kept)
    for pair, example in zip(pairs, kept):
        for key in ("left_observation", "left_action", "right_observation", "right_action"):
            assert pair[key].shape == example[key].shape == ((20, 544) if key.endswith("observation") else (20, 3))
            np.testing.assert_array_equal(pair[key], example[key])
        if example["has_label"]:
            assert pair["label"] == example["label"] and pair["weight"] == 1.0
        else:
            assert np.isnan(example["label"])
            assert pair["label"] == 0.0 and pair["weight"] == 0.0


# -- TorchIterable ------------------------------------------------------------------------------------------

WINDOWS = functools.partial(world_model_windows, length=4)


def _key(item: dict) -> str:
    digest = hashlib.sha1()
    for name in sorted(item):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(item[name]).tobytes())
    return digest.hexdigest()


def _unbatched(batches) -> list[dict]:
    items = []
    for batch in batches:
        assert all(isinstance(v, torch.Tensor) for v in batch.values())
        size = len(next(iter(batch.values())))
        items += [{k: v[i].numpy() for k, v in batch.items()} for i in range(size)]
    return items


@pytest.fixture(scope="module")
def all_windows(data_dir) -> collections.Counter:
    return collections.Counter(_key(w) for w in tfds.as_numpy(WINDOWS(_stored(data_dir, "real"))))


@pytest.mark.slow
@pytest.mark.parametrize("num_workers", [0, 1, 2])
def test_torch_iterable_yields_every_element_once(data_dir, all_windows, num_workers):
    data = TorchIterable.from_tfds("dropj_carracing/real", WINDOWS, data_dir=data_dir,
                                   shuffle_buffer=64, batch_size=3, seed=3)
    loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=num_workers,
                                         multiprocessing_context="spawn" if num_workers else None)
    items = _unbatched(loader)
    assert len(all_windows) == sum(len(e["actions"]) // 4 for e in _release_episodes("real"))  # all distinct
    assert collections.Counter(_key(i) for i in items) == all_windows
    assert items[0]["observation"].dtype == np.uint8 and items[0]["action"].dtype == np.float64


def test_torch_iterable_ranks_split_the_data(data_dir, all_windows):
    keys = collections.Counter()
    for rank in range(2):
        data = TorchIterable.from_tfds("dropj_carracing/real", WINDOWS, data_dir=data_dir, rank=rank, world_size=2)
        keys.update(_key(item) for item in _unbatched(data.loader(batch_size=1)))
    assert keys == all_windows


def test_torch_iterable_order_follows_seed_and_epoch(data_dir, all_windows):
    def order(seed: int, epoch: int) -> list[str]:
        data = TorchIterable.from_tfds("dropj_carracing/real", WINDOWS, data_dir=data_dir,
                                       shuffle_buffer=100, seed=seed)
        data.set_epoch(epoch)
        return [_key({k: v.numpy() for k, v in item.items()})
                for item in torch.utils.data.DataLoader(data, batch_size=None, num_workers=0)]

    first = order(seed=5, epoch=0)
    assert collections.Counter(first) == all_windows
    assert order(seed=5, epoch=0) == first
    second_epoch = order(seed=5, epoch=1)
    assert second_epoch != first and sorted(second_epoch) == sorted(first)
    assert order(seed=6, epoch=0) != first
    unshuffled = TorchIterable.from_tfds("dropj_carracing/real", WINDOWS, data_dir=data_dir)
    assert [_key({k: v.numpy() for k, v in i.items()}) for i in unshuffled] == \
        [_key(w) for w in tfds.as_numpy(WINDOWS(_stored(data_dir, "real")))]


def test_torch_iterable_refuses_forked_workers(data_dir):
    data = TorchIterable.from_tfds("dropj_carracing/real", WINDOWS, data_dir=data_dir)
    loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=1, multiprocessing_context="fork")
    with pytest.raises(RuntimeError, match="forked DataLoader worker, where TensorFlow can deadlock"):
        next(iter(loader))


def test_torch_iterable_keeps_tensorflow_off_the_gpus(data_dir):
    TorchIterable.from_tfds("dropj_carracing/real", WINDOWS, data_dir=data_dir)
    assert tf.config.get_visible_devices("GPU") == []


def test_to_torch_converts_numbers_and_keeps_bytes():
    out = torch_bridge.to_torch({"a": np.float64(1.5), "b": np.arange(3, dtype=np.uint8), "c": b"x"})
    assert out["a"].dtype == torch.float64 and out["a"].item() == 1.5
    assert out["b"].dtype == torch.uint8 and out["b"].tolist() == [0, 1, 2]
    assert out["c"] == b"x"


@pytest.mark.slow
def test_importing_loaders_does_not_import_tensorflow():
    code = ("import sys, dropj.loaders, dropj.loaders.video; "
            "assert 'tensorflow' not in sys.modules; assert callable(dropj.loaders.vae_frames)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_mdnrnn_data_with_windows_longer_than_every_episode_says_how_long_they_may_be(data_dir):
    """Once torch's "num_samples should be a positive integer value, but got num_samples=0"."""
    from dropj.loaders import EpisodeSource, training_data

    longest = int(EpisodeSource("dropj_carracing/dream", data_dir=data_dir).episode_lengths().max()) - 1
    with pytest.raises(ValueError, match=f"no episode has the {longest + 1} transitions of a window "
                                         rf"\(the longest has {longest}\); pass --sequence_length {longest} or less"):
        training_data.mdnrnn_data(data_dir, "dropj_carracing/dream:1.1.0", sequence_length=longest + 1)
    train, _ = training_data.mdnrnn_data(data_dir, "dropj_carracing/dream:1.1.0", sequence_length=longest)
    assert len(train) > 0
