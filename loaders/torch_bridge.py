"""The bridge from tf.data to PyTorch: any ``Dataset -> Dataset`` pipeline as a `torch.utils.data.IterableDataset`.

    import functools
    from dropj.loaders import TorchIterable, world_model_windows

    data = TorchIterable.from_tfds('dropj_carracing/dream', functools.partial(
        world_model_windows, length=32, action_key='action_scaled'), data_dir=D,
        shuffle_buffer=1000, batch_size=16, seed=0)
    loader = data.loader(num_workers=4)   # a DataLoader with spawned workers (see TorchIterable)
    for epoch in range(10):
        data.set_epoch(epoch)
        for batch in loader: ...   # {'observation': (16, 32, 544) float32, ...}

One disjoint shard per worker; TensorFlow is kept off the GPUs, which PyTorch gets.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
import torch
import torch.utils.data

Make = Callable[[int, int, int], tf.data.Dataset]

_GPUS_HIDDEN = False


def hide_gpus_from_tensorflow() -> None:
    """Keeps TensorFlow off every GPU, so that PyTorch has them all (idempotent, safe on CPU-only).

    Must run before TensorFlow initialises its devices; `TorchIterable` calls it when it is
    made and again in each worker. If TensorFlow already holds a GPU, this warns instead.
    """
    global _GPUS_HIDDEN
    if _GPUS_HIDDEN:
        return
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # devices already initialised: too late to hide them
        if tf.config.get_visible_devices("GPU"):
            warnings.warn("TensorFlow initialised its GPUs before dropj.loaders could hide them; "
                          "call hide_gpus_from_tensorflow() before any other TensorFlow work",
                          RuntimeWarning, stacklevel=2)
    _GPUS_HIDDEN = True


def shard_seed(seed: int, epoch: int, shard_index: int) -> int:
    """The seed of one shard in one epoch: a deterministic mix of the three (32 bits)."""
    return int(np.random.SeedSequence([seed, epoch, shard_index]).generate_state(1)[0])


def to_torch(element: Any) -> Any:
    """numpy leaves of a nested element -> torch tensors (dtypes kept; bytes and strings left as numpy)."""
    def convert(value: Any) -> Any:
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            return value
        if not array.flags.writeable:  # tf's buffer: copy rather than alias read-only memory
            array = array.copy()
        return torch.from_numpy(array)
    return tf.nest.map_structure(convert, element)


@dataclasses.dataclass(frozen=True)
class TfdsShards:
    """A `TorchIterable` source: episode shard i of n of a built TFDS dataset, then `pipeline`.

    Sharding is by element of the stored dataset (``Dataset.shard``, before the
    pipeline), so every window of an episode comes from the one worker that reads it.
    Only names are kept, so it pickles to spawned workers when `pipeline` does (a
    module-level function or a `functools.partial` of one).
    """
    name: str
    pipeline: Callable[[tf.data.Dataset], tf.data.Dataset]
    data_dir: str | None = None
    split: str = "train"

    def __call__(self, shard_index: int, num_shards: int, seed: int) -> tf.data.Dataset:
        del seed  # the stored order is read as is; TorchIterable shuffles
        builder = tfds.builder(self.name, data_dir=self.data_dir)
        stored = builder.as_dataset(split=self.split, shuffle_files=False)
        return self.pipeline(stored.shard(num_shards, shard_index))


class TorchIterable(torch.utils.data.IterableDataset):
    """A tf.data pipeline as a PyTorch `IterableDataset`; each DataLoader worker reads one disjoint shard.

    ``make(shard_index, num_shards, seed)`` returns the elements of shard
    `shard_index` of `num_shards`, disjoint shards that together hold every element
    once (`TfdsShards` makes them with ``Dataset.shard``). Shard i is DataLoader worker
    i of rank `rank`: ``rank * num_workers + worker_id`` of ``world_size * num_workers``
    (num_workers=0 reads one shard, everything). Each shard is then shuffled within a
    buffer of `shuffle_buffer` elements (0: no shuffle) seeded by
    ``shard_seed(seed, epoch, shard_index)``, so the same seed, epoch and worker count
    give the same order, and `set_epoch` gives a new one; that seed is also passed to
    `make`. With `batch_size`, tf.data batches (use ``DataLoader(batch_size=None)``).
    Elements come out as the same nest with numeric arrays as torch tensors.

    TensorFlow is not fork-safe: a worker forked from a process that has run
    TensorFlow can deadlock in tf.data, so workers must be started with
    ``multiprocessing_context='spawn'`` (or 'forkserver'), and `make` must pickle
    (`TfdsShards` does). `loader` makes such a DataLoader; a forked worker stops with
    an error saying so rather than hang. `set_epoch` acts on the workers made for the
    next epoch, so do not combine it with ``persistent_workers=True``, whose workers
    keep the epoch they started with.
    """

    def __init__(self, make: Make, *, seed: int = 0, shuffle_buffer: int = 0, batch_size: int | None = None,
                 drop_remainder: bool = False, rank: int = 0, world_size: int = 1):
        super().__init__()
        if shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer must be >= 0, got {shuffle_buffer}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank {rank}, world_size {world_size}")
        hide_gpus_from_tensorflow()
        self.make = make
        self.seed = seed
        self.shuffle_buffer = shuffle_buffer
        self.batch_size = batch_size
        self.drop_remainder = drop_remainder
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self._unpickled = False

    def __setstate__(self, state: dict) -> None:
        # spawn and forkserver workers receive the dataset pickled; forked ones share
        # the parent's object as is, which is how __iter__ tells them apart.
        self.__dict__.update(state)
        self._unpickled = True

    @classmethod
    def from_tfds(cls, name: str, pipeline: Callable[[tf.data.Dataset], tf.data.Dataset], *,
                  data_dir: str | None = None, split: str = "train", **kwargs) -> TorchIterable:
        """`pipeline` over the built dataset `name` (e.g. 'dropj_carracing/dream'), sharded by episode."""
        return cls(TfdsShards(name, pipeline, data_dir=data_dir, split=split), **kwargs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def loader(self, num_workers: int = 0, **kwargs) -> torch.utils.data.DataLoader:
        """A DataLoader over this dataset: no further batching, spawned workers (see the class notes)."""
        kwargs.setdefault("batch_size", None)
        if num_workers > 0:
            kwargs.setdefault("multiprocessing_context", "spawn")
        return torch.utils.data.DataLoader(self, num_workers=num_workers, **kwargs)

    def shard(self) -> tuple[int, int]:
        """(shard_index, num_shards) of the calling process: the DataLoader worker, or the main process."""
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        return self.rank * workers + worker, self.world_size * workers

    def dataset(self) -> tf.data.Dataset:
        """The tf.data pipeline of the calling process's shard, as `__iter__` reads it."""
        hide_gpus_from_tensorflow()
        index, count = self.shard()
        seed = shard_seed(self.seed, self.epoch, index)
        ds = self.make(index, count, seed)
        if self.shuffle_buffer:
            ds = ds.shuffle(self.shuffle_buffer, seed=seed, reshuffle_each_iteration=False)
        if self.batch_size is not None:
            ds = ds.batch(self.batch_size, drop_remainder=self.drop_remainder)
        return ds.prefetch(tf.data.AUTOTUNE)

    def __iter__(self) -> Iterator[Any]:
        if torch.utils.data.get_worker_info() is not None and not self._unpickled:
            raise RuntimeError("TorchIterable was given to a forked DataLoader worker, where TensorFlow can "
                               "deadlock; use DataLoader(..., multiprocessing_context='spawn') or "
                               "TorchIterable.loader()")
        for element in tfds.as_numpy(self.dataset()):
            yield to_torch(element)
