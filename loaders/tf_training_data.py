"""The tf.data side of `training_data`: the same splits through TFDS, `rlds.transformations` and
`TorchIterable` (``training_data.vae_data(..., loader='tf.data')``). Imports TensorFlow."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import tensorflow as tf
import tensorflow_datasets as tfds

from dropj_datasets import schema

from .torch_bridge import TorchIterable
from .transformations import labelled_steps, preference_pairs, vae_frames, world_model_windows

from .splits import DEFAULT_DATASETS, VALIDATION_EVERY

__all__ = ["HeldOutShards", "vae_data", "mdnrnn_data", "reward_data", "sparse_data"]


def _builder(name: str, data_dir: str | None) -> Any:
    """The TFDS builder of NAME/CONFIG: a registered builder, or a directory `dropj record` / `dropj annotate`
    wrote (found under data_dir as NAME/CONFIG/VERSION)."""
    from dropj.converters.store import dataset_dir  # the untrusted directory is checked before TFDS opens it

    if name.split("/", 1)[0] in schema.WRITTEN:
        return tfds.builder_from_directory(str(dataset_dir.locate(name, data_dir)))
    dataset_dir.parse_name(name)  # one error with the closest name, not TFDS's list of every dataset
    return tfds.builder(name, data_dir=data_dir)


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
        stored = _builder(self.name, self.data_dir).as_dataset(split="train", shuffle_files=False)
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
    pipeline = functools.partial(world_model_windows, length=sequence_length, action_key=schema.ACTION)
    return _split(name, pipeline, data_dir, batch_size=batch_size, seed=seed, shuffle_buffer=shuffle_buffer)


def reward_data(data_dir: str | None, name: str = DEFAULT_DATASETS["reward"], *, batch_size: int = 16,
                seed: int = 0, shuffle_buffer: int = 100) -> tuple[TorchIterable, TorchIterable]:
    """(train, validation) labelled preference pairs from a `preferences_*` config or a `dropj annotate`
    directory (`dropj_annotations/METHOD`, found under data_dir) (`preference_pairs`)."""
    return _split(name, preference_pairs, data_dir, batch_size=batch_size, seed=seed, shuffle_buffer=shuffle_buffer)


def sparse_data(data_dir: str | None, name: str = DEFAULT_DATASETS["sparse"], *, batch_size: int = 64,
                seed: int = 0, shuffle_buffer: int = 1000) -> tuple[TorchIterable, TorchIterable]:
    """(train, validation) labelled steps of a ReQueST / DROS config (`labelled_steps`); the split is by sketch."""
    return _split(name, labelled_steps, data_dir, batch_size=batch_size, seed=seed, shuffle_buffer=shuffle_buffer)
