"""Map-style PyTorch datasets over `EpisodeSource`: what each model trains on, without TensorFlow.

    from torch.utils.data import DataLoader
    from dropj.loaders import EpisodeSource, WindowDataset, VAEFrames, PreferencePairs, LabelledSteps

    windows = WindowDataset(EpisodeSource('dropj_carracing/real', data_dir='D'), length=20)
    loader = DataLoader(windows, batch_size=32, shuffle=True, num_workers=2, persistent_workers=True)

Each item is a dict of numpy arrays (the DataLoader's collate makes tensors),
with the keys and values of the tf.data pipelines in `transformations.py`:
`world_model_windows`, `vae_frames`, `preference_pairs`, `labelled_steps`
(tests compare them item by item). `episodes` picks the records an item may
come from (a train / validation split by episode); items keep the stored
order. Random access works with `shuffle=True`, `DistributedSampler` and any
worker count; a worker imports numpy, Pillow and torch, never TensorFlow.
Making a dataset reads the episodes' lengths from the index (no record).

`WindowDataset` and `VAEFrames` also decode a whole batch at once straight
into its memory (`batch(indices)`, or `fill` into given arrays): what
`training_data.Batches` and its ring of shared buffers (`batch_ring`) read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
import torch.utils.data

from dropj.loaders.episode_source import EpisodeSource
from dropj_datasets import schema

__all__ = ["WindowDataset", "VAEFrames", "PreferencePairs", "LabelledSteps"]

WINDOW_OBSERVATION = schema.OBSERVATION
WINDOW_ACTION = schema.ACTION
WINDOW_NEXT_OBSERVATION = schema.NEXT_OBSERVATION
PAIR_WEIGHT = "weight"


def _chosen(source: EpisodeSource, episodes: Optional[Sequence[int]]) -> np.ndarray:
    chosen = np.arange(len(source)) if episodes is None else np.asarray(episodes, np.int64).reshape(-1)
    if len(chosen) and (chosen.min() < 0 or chosen.max() >= len(source)):
        raise IndexError(f"episodes must lie in [0, {len(source)}); got {chosen.min()}..{chosen.max()}")
    return chosen


class _PerStep(torch.utils.data.Dataset):
    """Items laid out episode after episode: `_first[k]` is the first item of `episodes[k]`."""

    def __init__(self, source: EpisodeSource, episodes: Optional[Sequence[int]], counts_of) -> None:
        self.source = source
        self.episodes = _chosen(source, episodes)
        counts = counts_of(source.episode_lengths()[self.episodes])
        self._first = np.r_[0, np.cumsum(counts)].astype(np.int64)

    def __len__(self) -> int:
        return int(self._first[-1])

    def _locate(self, index: int) -> tuple[int, int]:
        """(episode, item within it) of item `index`."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"item {index} of {len(self)}")
        index = int(index) % len(self)
        k = int(np.searchsorted(self._first, index, side="right")) - 1
        return int(self.episodes[k]), index - int(self._first[k])


class WindowDataset(_PerStep):
    """Windows of `length` consecutive transitions inside one episode, `world_model_windows`' semantics.

    Item: ``{'observation': (length, *obs), 'action': (length, 3), 'next_observation': (length, *obs)}``.
    Windows start every `shift` transitions (default `length`); an episode of T transitions gives
    ``(T - length) // shift + 1`` windows when T >= length, else none. Only the window's length + 1
    steps are read and decoded.
    """

    def __init__(self, source: EpisodeSource, length: int, shift: Optional[int] = None,
                 action_key: str = schema.ACTION, episodes: Optional[Sequence[int]] = None):
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        self.shift = length if shift is None else shift
        if self.shift < 1:
            raise ValueError(f"shift must be >= 1, got {self.shift}")
        self.length, self.action_key = length, action_key

        def windows(steps: np.ndarray) -> np.ndarray:
            transitions = steps - 1
            return np.where(transitions >= length, (transitions - length) // self.shift + 1, 0)

        super().__init__(source, episodes, windows)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        episode, window = self._locate(index)
        start = window * self.shift
        steps = self.source.steps(episode, start, start + self.length + 1,
                                  fields=(schema.OBSERVATION, self.action_key))
        observation = steps[schema.OBSERVATION]
        return {WINDOW_OBSERVATION: observation[:-1], WINDOW_ACTION: steps[self.action_key][:-1],
                WINDOW_NEXT_OBSERVATION: observation[1:]}

    def batch_layout(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """What one item of a whole batch holds: {field: (shape, dtype)} (`batch_ring`)."""
        fields = self.source.index_fields
        return {name: ((self.length + 1, *fields[name].shape), fields[name].dtype)
                for name in (schema.OBSERVATION, self.action_key)}

    def fill(self, indices: Sequence[int], arrays: dict[str, np.ndarray]) -> None:
        """Decodes the windows `indices` straight into rows of `arrays` (`batch_layout`'s fields)."""
        for row, index in enumerate(indices):
            episode, window = self._locate(index)
            start = window * self.shift
            self.source.steps(episode, start, start + self.length + 1, fields=tuple(arrays),
                              out={name: array[row] for name, array in arrays.items()})

    def assemble(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The batch of the filled fields: ``observation`` and ``next_observation`` are views of one
        (B, length + 1, *obs) tensor."""
        frames = tensors[schema.OBSERVATION]
        return {WINDOW_OBSERVATION: frames[:, :-1], WINDOW_ACTION: tensors[self.action_key][:, :-1],
                WINDOW_NEXT_OBSERVATION: frames[:, 1:]}

    def batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """The items `indices` as one batch, decoded straight into it: the values `default_collate` of
        the items gives, without their copies (``observation`` and ``next_observation`` share memory)."""
        return _whole_batch(self, indices)


def _whole_batch(dataset: Any, indices: Sequence[int]) -> Any:
    """`dataset.fill` into new tensors, in shared memory inside a DataLoader worker (as `default_collate`
    allocates), then `dataset.assemble`."""
    from dropj.loaders.batch_ring import shared_tensor, torch_dtype

    in_worker = torch.utils.data.get_worker_info() is not None
    tensors = {name: (shared_tensor if in_worker else _private_tensor)((len(indices), *shape), torch_dtype(dtype))
               for name, (shape, dtype) in dataset.batch_layout().items()}
    dataset.fill(indices, {name: tensor.numpy() for name, tensor in tensors.items()})
    return dataset.assemble(tensors)


def _private_tensor(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype)


class VAEFrames(_PerStep):
    """Every frame of every episode (T+1 per episode), `vae_frames`' order; item: one (H, W, 3) uint8 frame."""

    def __init__(self, source: EpisodeSource, episodes: Optional[Sequence[int]] = None):
        super().__init__(source, episodes, lambda steps: steps)

    def __getitem__(self, index: int) -> np.ndarray:
        episode, step = self._locate(index)
        return self.source.steps(episode, step, step + 1, fields=(schema.OBSERVATION,))[schema.OBSERVATION][0]

    def batch_layout(self) -> dict[str, tuple[tuple[int, ...], str]]:
        field = self.source.index_fields[schema.OBSERVATION]
        return {schema.OBSERVATION: (field.shape, field.dtype)}

    def fill(self, indices: Sequence[int], arrays: dict[str, np.ndarray]) -> None:
        frames = arrays[schema.OBSERVATION]
        for row, index in enumerate(indices):
            episode, step = self._locate(index)
            self.source.steps(episode, step, step + 1, fields=(schema.OBSERVATION,),
                              out={schema.OBSERVATION: frames[row:row + 1]})

    def assemble(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        return tensors[schema.OBSERVATION]

    def batch(self, indices: Sequence[int]) -> torch.Tensor:
        """The frames `indices` as one (B, H, W, 3) batch, decoded straight into it."""
        return _whole_batch(self, indices)


class LabelledSteps(_PerStep):
    """Every labelled step of ReQueST / DROS sketches, `labelled_steps`' items:
    ``{'observation', 'action', 'reward'}``."""

    def __init__(self, source: EpisodeSource, episodes: Optional[Sequence[int]] = None):
        if schema.content_of(source.spec) != schema.LABELLED_STEPS:
            raise ValueError(f"LabelledSteps reads sketches configs; {source.directory} is a {source.spec.kind} config")
        super().__init__(source, episodes, lambda steps: steps)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        sketch, step = self._locate(index)
        steps = self.source.steps(sketch, step, step + 1, fields=(schema.OBSERVATION, schema.ACTION, schema.REWARD))
        return {key: value[0] for key, value in steps.items()}


class PreferencePairs(torch.utils.data.Dataset):
    """Preference examples as pairs of clips, `preference_pairs`' items and labels.

    Item: ``{'left_observation', 'left_action', 'right_observation', 'right_action', 'label', 'weight'}``.
    With `labelled_only` (default) skipped queries are left out; without, they come with label 0.0 and
    weight 0.0. Reads `preferences_*` configs and `dropj annotate` directories.
    """

    def __init__(self, source: EpisodeSource, labelled_only: bool = True, episodes: Optional[Sequence[int]] = None):
        if schema.content_of(source.spec) != schema.LABELLED_PAIRS:
            raise ValueError(f"PreferencePairs reads preference configs or annotations; {source.directory} is a "
                             f"{source.spec.kind} config")
        self.source = source
        self._examples = [int(i) for i in _chosen(source, episodes)
                          if not labelled_only or bool(source.field(int(i), schema.HAS_LABEL))]

    def __len__(self) -> int:
        return len(self._examples)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        example = self.source[self._examples[index]]
        has_label = bool(example[schema.HAS_LABEL])
        label = np.asarray(example[schema.LABEL])
        pair = {f"{side}_{field}": example[side][field]
                for side in (schema.LEFT, schema.RIGHT) for field in (schema.OBSERVATION, schema.ACTION)}
        pair[schema.LABEL] = label if has_label else np.zeros_like(label)
        pair[PAIR_WEIGHT] = np.asarray(1.0 if has_label else 0.0, dtype=label.dtype)
        return pair
