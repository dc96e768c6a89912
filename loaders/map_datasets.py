"""Map-style PyTorch datasets over `EpisodeSource`: what each model trains on, without TensorFlow.

    from torch.utils.data import DataLoader
    from dropj.loaders import EpisodeSource, WindowDataset, VAEFrames, PreferencePairs

    windows = WindowDataset(EpisodeSource('dropj_carracing/real', data_dir='D'), length=20)
    loader = DataLoader(windows, batch_size=32, shuffle=True, num_workers=2, persistent_workers=True)

Each item is a dict of numpy arrays (the DataLoader's collate makes tensors),
with the keys and values of the tf.data pipelines in `transformations.py`:
`world_model_windows`, `vae_frames`, `preference_pairs` (tests compare them).
Random access works with `shuffle=True`, `DistributedSampler` and any worker
count; a worker imports numpy, Pillow and torch, never TensorFlow.
"""

from __future__ import annotations

import bisect
from typing import Optional

import numpy as np
import torch.utils.data

from dropj.loaders.episode_source import EpisodeSource
from dropj_datasets import schema

WINDOW_OBSERVATION = schema.OBSERVATION
WINDOW_ACTION = schema.ACTION
WINDOW_NEXT_OBSERVATION = schema.NEXT_OBSERVATION


class WindowDataset(torch.utils.data.Dataset):
    """Windows of `length` consecutive transitions inside one episode, `world_model_windows`' semantics.

    Item: ``{'observation': (length, *obs), 'action': (length, 3), 'next_observation': (length, *obs)}``.
    Windows start every `shift` transitions (default `length`); an episode of T transitions gives
    ``(T - length) // shift + 1`` windows when T >= length, else none. Only the window's length + 1
    steps are decoded. Making the dataset reads each episode's length once (no frame is decoded).
    """

    def __init__(self, source: EpisodeSource, length: int, shift: Optional[int] = None,
                 action_key: str = schema.ACTION):
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        self.shift = length if shift is None else shift
        if self.shift < 1:
            raise ValueError(f"shift must be >= 1, got {self.shift}")
        self.source, self.length, self.action_key = source, length, action_key
        self._first = [0]  # the index of each episode's first window; the last entry is the total
        for episode in range(len(source)):
            transitions = source.num_steps(episode) - 1
            windows = (transitions - length) // self.shift + 1 if transitions >= length else 0
            self._first.append(self._first[-1] + windows)

    def __len__(self) -> int:
        return self._first[-1]

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"window {index} of {len(self)}")
        index %= len(self)
        episode = bisect.bisect_right(self._first, index) - 1
        start = (index - self._first[episode]) * self.shift
        steps = self.source.steps(episode, start, start + self.length + 1,
                                  fields=(schema.OBSERVATION, self.action_key))
        observation = steps[schema.OBSERVATION]
        return {WINDOW_OBSERVATION: observation[:-1], WINDOW_ACTION: steps[self.action_key][:-1],
                WINDOW_NEXT_OBSERVATION: observation[1:]}


class VAEFrames(torch.utils.data.Dataset):
    """Every frame of every episode (T+1 per episode), `vae_frames`' order; item: one (H, W, 3) uint8 frame."""

    def __init__(self, source: EpisodeSource):
        self.source = source
        self._first = [0]
        for episode in range(len(source)):
            self._first.append(self._first[-1] + source.num_steps(episode))

    def __len__(self) -> int:
        return self._first[-1]

    def __getitem__(self, index: int) -> np.ndarray:
        if not -len(self) <= index < len(self):
            raise IndexError(f"frame {index} of {len(self)}")
        index %= len(self)
        episode = bisect.bisect_right(self._first, index) - 1
        step = index - self._first[episode]
        return self.source.steps(episode, step, step + 1, fields=(schema.OBSERVATION,))[schema.OBSERVATION][0]


class PreferencePairs(torch.utils.data.Dataset):
    """Preference examples as pairs of clips, `preference_pairs`' items and labels.

    Item: ``{'left_observation', 'left_action', 'right_observation', 'right_action', 'label', 'weight'}``.
    With `labelled_only` (default) skipped queries are left out; without, they come with label 0.0 and
    weight 0.0.
    """

    def __init__(self, source: EpisodeSource, labelled_only: bool = True):
        self.source = source
        if source.spec.kind != "preferences":
            raise ValueError(f"PreferencePairs reads preference configs; {source.directory} is a "
                             f"{source.spec.kind} config")
        self._examples = [i for i in range(len(source))
                          if not labelled_only or bool(source[i][schema.HAS_LABEL])]

    def __len__(self) -> int:
        return len(self._examples)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        example = self.source[self._examples[index]]
        has_label = bool(example[schema.HAS_LABEL])
        label = np.asarray(example[schema.LABEL])
        pair = {f"{side}_{field}": example[side][field]
                for side in (schema.LEFT, schema.RIGHT) for field in (schema.OBSERVATION, schema.ACTION)}
        pair[schema.LABEL] = label if has_label else np.zeros_like(label)
        pair["weight"] = np.asarray(1.0 if has_label else 0.0, dtype=label.dtype)
        return pair
