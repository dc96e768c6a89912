"""What each model trains on, from a built dataset, and the run that ties data, model and loop together.

    from dropj.loaders import training_data

    train, val = training_data.vae_data(D)                              # dropj_carracing/real frames
    train, val = training_data.mdnrnn_data(D, sequence_length=32)       # dropj_carracing/dream windows
    train, val = training_data.reward_data(D)                           # preferences_dropj pairs
    for batch in train.loader(num_workers=0): ...

    history = training_data.train_from_dataset('reward', D, out_dir='runs/reward', steps=100)

Train / validation split: by the index of the stored element (episode for `real` / `dream`, example
for `preferences_*`) in the dataset's stored order. Every `VALIDATION_EVERY`-th element (indices
0, 10, 20, ...) is validation, the rest train, so the split is the same on every machine and for
every number of workers, and no episode gives windows to both sides. The sample's 3 real episodes
hold out episode 0; its 2 dream episodes hold out episode 0.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import Any

import tensorflow as tf
import tensorflow_datasets as tfds

from dropj_datasets import schema

from .rlds_loaders import TorchIterable, preference_pairs, vae_frames, world_model_windows

__all__ = ["VALIDATION_EVERY", "DEFAULT_DATASETS", "KINDS", "HeldOutShards", "vae_data", "mdnrnn_data",
           "reward_data", "train_from_dataset"]

VALIDATION_EVERY = 10
KINDS = ("vae", "mdnrnn", "reward")
DEFAULT_DATASETS = {"vae": "dropj_carracing/real", "mdnrnn": "dropj_carracing/dream",
                    "reward": "dropj_carracing/preferences_dropj"}


@dataclasses.dataclass(frozen=True)
class HeldOutShards:
    """A `TorchIterable` source like `TfdsShards`, but only the train or the validation elements.

    The split is taken on the stored order before sharding, so it does not depend on the worker count.
    Module-level and made of names, so it pickles to spawned workers.
    """
    name: str
    pipeline: Callable[[tf.data.Dataset], tf.data.Dataset]
    data_dir: str | None = None
    validation: bool = False
    every: int = VALIDATION_EVERY

    def __call__(self, shard_index: int, num_shards: int, seed: int) -> tf.data.Dataset:
        del seed  # the stored order is read as is; TorchIterable shuffles
        stored = tfds.builder(self.name, data_dir=self.data_dir).as_dataset(split="train", shuffle_files=False)
        every, validation = self.every, self.validation
        chosen = (stored.enumerate()
                  .filter(lambda index, element: tf.equal(index % every == 0, validation))
                  .map(lambda index, element: element))
        return self.pipeline(chosen.shard(num_shards, shard_index))


def _split(name: str, pipeline: Callable, data_dir: str | None, *, batch_size: int, seed: int,
           shuffle_buffer: int) -> tuple[TorchIterable, TorchIterable]:
    train = TorchIterable(HeldOutShards(name, pipeline, data_dir, validation=False), seed=seed,
                          shuffle_buffer=shuffle_buffer, batch_size=batch_size)
    val = TorchIterable(HeldOutShards(name, pipeline, data_dir, validation=True), seed=seed, batch_size=batch_size)
    return train, val


def vae_data(data_dir: str | None, name: str = DEFAULT_DATASETS["vae"], *, batch_size: int = 32, seed: int = 0,
             shuffle_buffer: int = 1000) -> tuple[TorchIterable, TorchIterable]:
    """(train, validation) batches of frames (N, H, W, 3) uint8 from a `real` config (`vae_frames`)."""
    return _split(name, vae_frames, data_dir, batch_size=batch_size, seed=seed, shuffle_buffer=shuffle_buffer)


def mdnrnn_data(data_dir: str | None, name: str = DEFAULT_DATASETS["mdnrnn"], *, sequence_length: int = 32,
                batch_size: int = 16, seed: int = 0, shuffle_buffer: int = 100) -> tuple[TorchIterable, TorchIterable]:
    """(train, validation) windows of `sequence_length` transitions from a `dream` config (latent states).

    Actions are the env-unit ``action`` the MDN-RNN consumes (`world_model_windows`).
    """
    spec = schema.spec_for(*name.split("/", 1))
    if not getattr(spec, "is_dream", False):
        raise ValueError(f"the MDN-RNN trains on latent states: use a dream config, not {name!r}")
    pipeline = functools.partial(world_model_windows, length=sequence_length, action_key=schema.ACTION)
    return _split(name, pipeline, data_dir, batch_size=batch_size, seed=seed, shuffle_buffer=shuffle_buffer)


def reward_data(data_dir: str | None, name: str = DEFAULT_DATASETS["reward"], *, batch_size: int = 16,
                seed: int = 0, shuffle_buffer: int = 100) -> tuple[TorchIterable, TorchIterable]:
    """(train, validation) labelled preference pairs from a `preferences_*` config (`preference_pairs`)."""
    return _split(name, preference_pairs, data_dir, batch_size=batch_size, seed=seed, shuffle_buffer=shuffle_buffer)


def train_from_dataset(kind: str, data_dir: str | None, *, dataset: str | None = None, out_dir: str,
                       steps: int | None = None, batch_size: int | None = None, lr: float | None = None,
                       seed: int = 0, num_workers: int = 0, progress: bool = True,
                       log: Callable[[str], None] | None = None, **config: Any):
    """Train model `kind` ('vae' | 'mdnrnn' | 'reward') on a built dataset; returns the `History`.

    dataset: 'name/config' (default `DEFAULT_DATASETS[kind]`); the env, and so the model's size, is
    the dataset's. Unset steps / batch_size / lr keep the config class's defaults; further keywords go
    to the config (e.g. ``validate_every``, ``sequence_length``).
    """
    import torch

    from dropj.models import ConvVAE, MDNRNN, PreferenceRewardEnsemble
    from dropj.models import train as loop

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    dataset = dataset or DEFAULT_DATASETS[kind]
    if "/" not in dataset:
        raise ValueError(f"dataset must be 'name/config', e.g. {DEFAULT_DATASETS[kind]!r}; got {dataset!r}")
    spec = schema.spec_for(*dataset.split("/", 1))
    _check_fits(kind, dataset, spec)
    _check_built(dataset, data_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise schema.DataError(f"{out_dir}: is a file; --out must be a directory")
    env = spec.env
    given = {"steps": steps, "batch_size": batch_size, "lr": lr}
    config.update({k: v for k, v in given.items() if v is not None})
    config_class = {"vae": loop.VAETrainConfig, "mdnrnn": loop.MDNRNNTrainConfig,
                    "reward": loop.RewardTrainConfig}[kind]
    cfg = config_class(env=env.name, out_dir=str(out_dir), seed=seed, progress=progress, **config)
    torch.manual_seed(cfg.seed)  # the initial weights
    if kind == "vae":
        model, loss_fn = ConvVAE.for_env(env), loop.vae_batch_loss
        train, val = vae_data(data_dir, dataset, batch_size=cfg.batch_size, seed=cfg.seed)
    elif kind == "mdnrnn":
        model, loss_fn = MDNRNN.for_env(env), loop.mdnrnn_batch_loss
        train, val = mdnrnn_data(data_dir, dataset, sequence_length=cfg.sequence_length,
                                 batch_size=cfg.batch_size, seed=cfg.seed)
    else:
        model, loss_fn = PreferenceRewardEnsemble(env.latent_dim + 3, members=cfg.members), loop.reward_batch_loss
        train, val = reward_data(data_dir, dataset, batch_size=cfg.batch_size, seed=cfg.seed)
    return loop.train(model, loss_fn, train.loader(num_workers=num_workers), val.loader(num_workers=0), cfg,
                      log=log)


_TRAINS_ON = {"vae": "frames: a real config (e.g. dropj_carracing/real) or a recording",
              "mdnrnn": "latent states: a dream config (e.g. dropj_carracing/dream)",
              "reward": "labelled preferences: a preferences config (e.g. dropj_carracing/preferences_dropj)"}


def _check_fits(kind: str, dataset: str, spec: Any) -> None:
    """The model and the dataset's kind must match; say which configs would."""
    fits = {"vae": isinstance(spec, schema.DatasetSpec) and not spec.is_dream,
            "mdnrnn": isinstance(spec, schema.DatasetSpec) and spec.is_dream,
            "reward": isinstance(spec, schema.FeedbackSpec)}[kind]
    if not fits:
        raise ValueError(f"{dataset}: the {kind} model trains on {_TRAINS_ON[kind]}")


def _check_built(dataset: str, data_dir: str | None) -> None:
    """The dataset must be built, and its directory pass the checks of untrusted input (docs/security.md)."""
    from dropj.converters import dataset_dir

    dataset_dir.find_built(dataset, data_dir)
