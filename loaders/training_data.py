"""What each model trains on, from a built dataset (`dropj train` ties it to a model and the loop).

    from dropj.loaders import training_data

    train, val = training_data.vae_data(D)                              # dropj_carracing/real frames
    train, val = training_data.mdnrnn_data(D, sequence_length=32)       # dropj_carracing/dream windows
    train, val = training_data.reward_data(D)                           # preferences_dropj pairs
    train, val = training_data.sparse_data(D)                           # dros labelled steps
    for batch in train.loader(num_workers=2, pin_memory=True): ...      # a torch DataLoader

Two readers give the same items. The default, ``loader='map'``, reads with
`EpisodeSource` and the map-style datasets of `map_datasets` (no TensorFlow
anywhere, random access, shuffled by the DataLoader's sampler each epoch).
``loader='tf.data'`` reads through TFDS, `rlds.transformations` and
`TorchIterable` (`tf_training_data`; shuffled in a buffer of `shuffle_buffer`).

Train / validation split: by the index of the stored element (episode for `real` / `dream`, example
for `preferences_*`, sketch for `request` / `dros`) in the dataset's stored order. Every
`VALIDATION_EVERY`-th element (indices 0, 10, 20, ...) is validation, the rest train, so the split is
the same on every machine, for every number of workers and for both readers, and no episode gives
windows to both sides. The sample's 3 real episodes hold out episode 0; its 2 dream episodes hold out
episode 0.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, Optional

import torch
import torch.utils.data

from dropj_datasets import schema

from .splits import DEFAULT_DATASETS, VALIDATION_EVERY, held_out

__all__ = ["VALIDATION_EVERY", "DEFAULT_DATASETS", "LOADERS", "Batches", "held_out", "vae_data",
           "mdnrnn_data", "reward_data", "sparse_data"]

LOADERS = ("map", "tf.data")


def worker_context() -> Optional[str]:
    """How DataLoader workers start: forked on Linux (fast; nothing here holds threads a fork would
    break), spawned where TensorFlow is already loaded in this process (it is not fork-safe) or elsewhere."""
    if sys.platform.startswith("linux") and "tensorflow" not in sys.modules:
        return "fork"
    return "spawn"


@dataclasses.dataclass
class Batches:
    """One side of the split of a map-style dataset, and how it is batched; `loader()` makes the DataLoader.

    shuffle: a new order every pass, from a generator seeded with `seed` (the same run gives the
    same orders). The last batch may be smaller.
    """
    dataset: torch.utils.data.Dataset
    batch_size: int
    shuffle: bool = True
    seed: int = 0

    def __len__(self) -> int:
        return (len(self.dataset) + self.batch_size - 1) // self.batch_size

    def loader(self, num_workers: int = 0, *, pin_memory: bool = False, persistent_workers: Optional[bool] = None,
               **kwargs: Any) -> torch.utils.data.DataLoader:
        """A DataLoader over the batches; `num_workers` processes decode (kept between passes unless
        ``persistent_workers=False``); `pin_memory` for fast copies to a GPU.

        A dataset with a ``batch(indices)`` method (`WindowDataset`, `VAEFrames`) is asked for whole
        batches, which it decodes straight into the batch's memory: with workers, a ring of shared
        buffers reused from batch to batch (`batch_ring`); others are collated by PyTorch's
        `default_collate`."""
        if num_workers > 0:
            kwargs.setdefault("multiprocessing_context", worker_context())
            kwargs.setdefault("persistent_workers", True if persistent_workers is None else persistent_workers)
        generator = torch.Generator().manual_seed(self.seed) if self.shuffle else None
        if not hasattr(self.dataset, "batch"):
            return torch.utils.data.DataLoader(self.dataset, batch_size=self.batch_size, shuffle=self.shuffle,
                                               generator=generator, num_workers=num_workers, pin_memory=pin_memory,
                                               **kwargs)
        order = (torch.utils.data.RandomSampler(self.dataset, generator=generator) if self.shuffle
                 else torch.utils.data.SequentialSampler(self.dataset))
        batches = torch.utils.data.BatchSampler(order, self.batch_size, drop_last=False)
        if num_workers > 0:
            from .batch_ring import RingLoader

            return RingLoader(self.dataset, batches, num_workers=num_workers, batch_size=self.batch_size,
                              pin_memory=pin_memory, **kwargs)
        return torch.utils.data.DataLoader(_WholeBatches(self.dataset), sampler=batches, batch_size=None,
                                           pin_memory=pin_memory, **kwargs)


class _WholeBatches(torch.utils.data.Dataset):
    """`dataset[indices]` is `dataset.batch(indices)`: one call decodes a whole batch."""

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices: list[int]) -> Any:
        return self.dataset.batch(indices)


def _source(name: str, data_dir: Optional[str]) -> Any:
    from dropj.converters.store import dataset_dir  # the untrusted directory is checked before it is read

    from .episode_source import EpisodeSource

    return EpisodeSource(dataset_dir.locate(name, data_dir))


def _split(source: Any, make: Any, *, batch_size: int, seed: int, shuffle: bool) -> tuple[Batches, Batches]:
    train, validation = held_out(len(source))
    return (Batches(make(source, train), batch_size, shuffle=shuffle, seed=seed),
            Batches(make(source, validation), batch_size, shuffle=False, seed=seed))


def _read(function: str, data_dir: Optional[str], name: str, make: Any, *, loader: str, batch_size: int, seed: int,
          shuffle_buffer: int, **tf_arguments: Any) -> tuple[Any, Any]:
    """(train, validation): the map datasets `make(source, chosen_records)` makes (``loader='map'``), or the
    tf.data reader's `function` of `tf_training_data` with `tf_arguments` (``loader='tf.data'``)."""
    if loader not in LOADERS:
        raise ValueError(f"loader must be one of {list(LOADERS)}, got {loader!r}")
    if loader == "tf.data":
        from . import tf_training_data

        return getattr(tf_training_data, function)(data_dir, name, batch_size=batch_size, seed=seed,
                                                   shuffle_buffer=shuffle_buffer, **tf_arguments)
    return _split(_source(name, data_dir), make, batch_size=batch_size, seed=seed, shuffle=shuffle_buffer > 0)


def vae_data(data_dir: Optional[str], name: str = DEFAULT_DATASETS["vae"], *, batch_size: int = 32, seed: int = 0,
             shuffle_buffer: int = 1000, loader: str = "map") -> tuple[Any, Any]:
    """(train, validation) batches of frames (N, H, W, 3) uint8 from a `real` config (`vae_frames`).

    shuffle_buffer: 0 keeps the stored order (both readers); else the tf.data reader's buffer size."""
    from .map_datasets import VAEFrames

    return _read("vae_data", data_dir, name, VAEFrames, loader=loader, batch_size=batch_size, seed=seed,
                 shuffle_buffer=shuffle_buffer)


def mdnrnn_data(data_dir: Optional[str], name: str = DEFAULT_DATASETS["mdnrnn"], *, sequence_length: int = 32,
                batch_size: int = 16, seed: int = 0, shuffle_buffer: int = 100,
                loader: str = "map") -> tuple[Any, Any]:
    """(train, validation) windows of `sequence_length` transitions from a `dream` config (latent states).

    Actions are the env-unit ``action`` the MDN-RNN consumes (`world_model_windows`).
    """
    from .map_datasets import WindowDataset

    from dropj.converters.store import dataset_dir

    spec = schema.spec_for(*dataset_dir.parse_name(name)[:2]) if not os.path.isdir(name) else \
        dataset_dir.check(Path(name))[1]
    if not getattr(spec, "is_dream", False):
        raise ValueError(f"the MDN-RNN trains on latent states: use a dream config, not {name!r}")

    def windows(source: Any, chosen: Any) -> WindowDataset:
        lengths = source.episode_lengths()
        if len(lengths) and lengths.max() <= sequence_length:  # T+1 steps hold T transitions
            longest = int(lengths.max()) - 1
            raise ValueError(f"{name}: no episode has the {sequence_length} transitions of a window (the longest "
                             f"has {longest}); pass --sequence_length {longest} or less")
        return WindowDataset(source, sequence_length, action_key=schema.ACTION, episodes=chosen)

    return _read("mdnrnn_data", data_dir, name, windows, loader=loader, batch_size=batch_size, seed=seed,
                 shuffle_buffer=shuffle_buffer, sequence_length=sequence_length)


def reward_data(data_dir: Optional[str], name: str = DEFAULT_DATASETS["reward"], *, batch_size: int = 16,
                seed: int = 0, shuffle_buffer: int = 100, loader: str = "map") -> tuple[Any, Any]:
    """(train, validation) labelled preference pairs from a `preferences_*` config or a `dropj annotate`
    directory (`dropj_annotations/METHOD`, found under data_dir) (`preference_pairs`)."""
    from .map_datasets import PreferencePairs

    return _read("reward_data", data_dir, name, lambda source, chosen: PreferencePairs(source, episodes=chosen),
                 loader=loader, batch_size=batch_size, seed=seed, shuffle_buffer=shuffle_buffer)


def sparse_data(data_dir: Optional[str], name: str = DEFAULT_DATASETS["sparse"], *, batch_size: int = 64,
                seed: int = 0, shuffle_buffer: int = 1000, loader: str = "map") -> tuple[Any, Any]:
    """(train, validation) labelled steps of a ReQueST / DROS config (`labelled_steps`); the split is by sketch."""
    from .map_datasets import LabelledSteps

    return _read("sparse_data", data_dir, name, LabelledSteps, loader=loader, batch_size=batch_size, seed=seed,
                 shuffle_buffer=shuffle_buffer)
