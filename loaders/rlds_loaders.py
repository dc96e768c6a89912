"""tf.data pipelines from built DROPJ RLDS datasets to what each PyTorch model consumes.

Each pipeline is a small pure ``Dataset -> Dataset`` function over what `tfds.load` /
``builder.as_dataset`` returns, built on `rlds.transformations`; `TorchIterable` hands
any such pipeline to a `torch.utils.data.DataLoader`, one disjoint shard per worker:

    import functools
    import tensorflow_datasets as tfds
    from dropj.loaders import TorchIterable, world_model_windows

    episodes = tfds.load('dropj_carracing/dream', split='train', data_dir=D)
    windows = world_model_windows(episodes, 32, action_key='action_scaled')

    data = TorchIterable.from_tfds('dropj_carracing/dream', functools.partial(
        world_model_windows, length=32, action_key='action_scaled'), data_dir=D,
        shuffle_buffer=1000, batch_size=16, seed=0)
    loader = data.loader(num_workers=4)   # a DataLoader with spawned workers (see TorchIterable)
    for epoch in range(10):
        data.set_epoch(epoch)
        for batch in loader: ...   # {'observation': (16, 32, 544) float32, ...}

The step alignment is the writer's (docs/format_decisions.md): an episode of T
transitions is T+1 steps; step t holds (s_t, a_t, r_t) and the last step holds s_T with
padding action and reward. The pipelines here never shift an index to repair it; they
only choose which steps to read.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import rlds
import tensorflow as tf
import tensorflow_datasets as tfds
import torch
import torch.utils.data

from dropj_datasets import schema

WINDOW_OBSERVATION = schema.OBSERVATION
WINDOW_ACTION = schema.ACTION
WINDOW_NEXT_OBSERVATION = schema.NEXT_OBSERVATION

PAIR_LEFT_OBSERVATION = f"{schema.LEFT}_{schema.OBSERVATION}"
PAIR_LEFT_ACTION = f"{schema.LEFT}_{schema.ACTION}"
PAIR_RIGHT_OBSERVATION = f"{schema.RIGHT}_{schema.OBSERVATION}"
PAIR_RIGHT_ACTION = f"{schema.RIGHT}_{schema.ACTION}"
PAIR_LABEL = schema.LABEL
PAIR_WEIGHT = "weight"

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


def _steps_spec(episodes: tf.data.Dataset, caller: str) -> dict:
    spec = episodes.element_spec
    if not isinstance(spec, dict) or schema.STEPS not in spec:
        raise ValueError(f"{caller} reads RLDS episodes (dicts with '{schema.STEPS}'); got elements {spec}")
    return spec[schema.STEPS].element_spec


def vae_frames(episodes: tf.data.Dataset) -> tf.data.Dataset:
    """Every frame of every episode, in order: (H, W, 3) uint8, one element per step.

    An episode of T transitions gives T+1 frames, s_0 ... s_T: the last step's
    observation is a real frame (the final state), and only its action and reward are
    padding, so it is kept. Episodes with 3 and 1 transitions:

        episodes:  [s0 s1 s2 s3] [u0 u1]        (steps; the last of each is_last)
        vae_frames -> s0, s1, s2, s3, u0, u1     (4 + 2 = 6 frames)
    """
    spec = _steps_spec(episodes, "vae_frames")[schema.OBSERVATION]
    if spec.dtype != tf.uint8 or spec.shape.rank != 3 or spec.shape[-1] != 3:
        raise ValueError(f"vae_frames needs (H, W, 3) uint8 frame observations; "
                         f"got {spec.dtype.name} {spec.shape.as_list()}")
    return episodes.flat_map(
        lambda episode: rlds.transformations.map_steps(
            episode[schema.STEPS], lambda step: step[schema.OBSERVATION], optimization_batch_size=1))


def world_model_windows(episodes: tf.data.Dataset, length: int, *, action_key: str = schema.ACTION,
                        shift: int | None = None) -> tf.data.Dataset:
    """Fixed-length windows of consecutive transitions (s_t, a_t, s_{t+1}) within one episode.

    Each element is ``{'observation': (length, *obs), 'action': (length, 3),
    'next_observation': (length, *obs)}``, where ``next_observation[k] ==
    observation[k + 1]`` for k < length - 1. A window of `length` transitions reads
    length + 1 consecutive steps: observation and action from the first `length`,
    next_observation from the last `length`. Windows start every `shift` transitions
    (default `length`: windows that share only their boundary state). Only steps
    0..T-1 give an action, so the last step's padding action is never read.

    Windows are made per episode (inside ``flat_map``), so none crosses an episode
    boundary, and a window that would run past s_T is dropped: an episode of T
    transitions gives ``(T - length) // shift + 1`` windows if T >= length, else none
    (with the default shift, ``T // length``). With T = 5, length 2:

        steps:      s0/a0  s1/a1  s2/a2  s3/a3  s4/a4  s5/pad
        windows ->  obs [s0 s1], act [a0 a1], next [s1 s2]
                    obs [s2 s3], act [a2 a3], next [s3 s4]     (a4 -> s5 is left out)

    Frames (real configs) and latents (dream) alike; for dream data
    ``action_key='action_scaled'`` reads the actions scaled to [-1, 1].
    """
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    shift = length if shift is None else shift
    if shift < 1:
        raise ValueError(f"shift must be >= 1, got {shift}")
    steps_spec = _steps_spec(episodes, "world_model_windows")
    if action_key not in steps_spec:
        raise ValueError(f"action_key {action_key!r} is not a step field; the steps hold {sorted(steps_spec)}")
    obs_shape = steps_spec[schema.OBSERVATION].shape.as_list()
    act_shape = steps_spec[action_key].shape.as_list()

    def to_window(steps: dict) -> dict:
        observation = tf.ensure_shape(steps[schema.OBSERVATION], [length + 1] + obs_shape)
        action = tf.ensure_shape(steps[action_key], [length + 1] + act_shape)
        return {WINDOW_OBSERVATION: observation[:-1],
                WINDOW_ACTION: action[:-1],
                WINDOW_NEXT_OBSERVATION: observation[1:]}

    def episode_windows(episode: dict) -> tf.data.Dataset:
        steps = episode[schema.STEPS].map(
            lambda step: {schema.OBSERVATION: step[schema.OBSERVATION], action_key: step[action_key]})
        batched = rlds.transformations.batch(steps, size=length + 1, shift=shift, drop_remainder=True)
        return batched.map(to_window)

    return episodes.flat_map(episode_windows)


def preference_pairs(examples: tf.data.Dataset, *, labelled_only: bool = True) -> tf.data.Dataset:
    """Preference examples as flat pairs of clips with their label and a loss weight.

    Each element is ``{'left_observation': (20, D), 'left_action': (20, 3),
    'right_observation', 'right_action', 'label': (), 'weight': ()}`` in the dataset's
    dtypes (float64 for the release). `label` is P(left preferred). Skipped queries
    carry no label (``has_label`` false, label NaN): with ``labelled_only`` (default)
    they are dropped; without it they are kept with label 0.0 and weight 0.0, so a
    weighted loss ignores them while batches keep their size. Labelled examples have
    weight 1.0.

        examples:  q0 label 1.0 | q1 skipped (NaN) | q2 label 0.5
        preference_pairs(examples)                       -> q0 (1.0, w 1), q2 (0.5, w 1)
        preference_pairs(examples, labelled_only=False)  -> q0 (1.0, w 1), q1 (0.0, w 0), q2 (0.5, w 1)
    """
    spec = examples.element_spec
    missing = [k for k in (schema.LEFT, schema.RIGHT, schema.LABEL, schema.HAS_LABEL)
               if not isinstance(spec, dict) or k not in spec]
    if missing:
        raise ValueError(f"preference_pairs reads preference examples; missing fields {missing}")

    def clip(segment: tf.data.Dataset, field: str) -> tf.Tensor:
        # The clip is a nested dataset of SEGMENT_STEPS steps: one batch holds it all; a
        # clip of another length fails here rather than being cut or padded.
        values = segment.map(lambda step: step[field]).batch(schema.SEGMENT_STEPS).get_single_element()
        return tf.ensure_shape(values, [schema.SEGMENT_STEPS] + segment.element_spec[field].shape.as_list())

    def to_pair(example: dict) -> dict:
        has_label = example[schema.HAS_LABEL]
        label = example[schema.LABEL]
        return {PAIR_LEFT_OBSERVATION: clip(example[schema.LEFT], schema.OBSERVATION),
                PAIR_LEFT_ACTION: clip(example[schema.LEFT], schema.ACTION),
                PAIR_RIGHT_OBSERVATION: clip(example[schema.RIGHT], schema.OBSERVATION),
                PAIR_RIGHT_ACTION: clip(example[schema.RIGHT], schema.ACTION),
                PAIR_LABEL: tf.where(has_label, label, tf.zeros_like(label)),
                PAIR_WEIGHT: tf.cast(has_label, label.dtype)}

    if labelled_only:
        examples = examples.filter(lambda example: example[schema.HAS_LABEL])
    return examples.map(to_pair)


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
