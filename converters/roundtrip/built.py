"""A built DROPJ dataset, opened safely and read in source order (what export and verify read).

The directory is untrusted: `BuiltDataset.open` checks it (`dataset_dir.check`)
before TFDS reads it; what each kind makes of the examples is its converter's
(`kinds.converter(spec).legacy_files`).
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path
from typing import Any, Iterator, Optional

from dropj.converters.store import dataset_dir
from dropj.converters.release import kinds
from dropj.converters.release import episodes as episodes_lib
from dropj.converters.release.kinds import LegacyFile
from dropj_datasets import schema
from dropj_datasets.schema import DataError


def _batched(example: dict, keys: tuple[str, ...]) -> dict:
    """Turns the nested step datasets of an example into tensors of all their steps."""
    return {key: value.batch(1 << 30).get_single_element() if key in keys else value
            for key, value in example.items()}



@dataclasses.dataclass
class BuiltDataset:
    """A built config: its spec, its episodes in source order, its file metadata.

    The directory is untrusted (someone may have shared it): `open` checks it
    with `dataset_dir.check` before TFDS reads it, and every value taken from
    its metadata is checked against the schema before it names a file.
    """

    spec: schema.Spec
    builder: Any  # tfds.core.DatasetBuilder
    directory: Path

    @classmethod
    def open(cls, dataset: str, data_dir: Optional[str] = None) -> "BuiltDataset":
        """`dataset` is 'name/config' (registered, under data_dir) or a built dataset directory."""
        import tensorflow_datasets as tfds

        import dropj_datasets  # noqa: F401  (registers the builders)

        directory = dataset_dir.locate(dataset, data_dir)
        if os.path.isdir(dataset):
            dataset_dir.check(directory)
            builder = tfds.builder_from_directory(str(directory))
        else:
            name = dataset.partition("/")[0]
            builder = tfds.builder(dataset, data_dir=str(directory.parents[2])) \
                if name not in schema.WRITTEN else tfds.builder_from_directory(str(directory))
            if not builder.is_prepared():
                raise DataError(f"{dataset}: not built under {directory.parents[2]} (run `tfds build` first)")
        config = builder.builder_config
        if config is None:
            raise DataError(f"{dataset}: not a DROPJ dataset (no builder config)")
        preset = getattr(config, "preset", "") or (builder.info.metadata or {}).get("preset") or config.name
        try:
            spec = schema.spec_for(builder.name, preset)
        except KeyError:
            raise DataError(f"{dataset}: {builder.name}/{str(preset)[:60]} is not a DROPJ config") from None
        return cls(spec, builder, directory)

    @property
    def count(self) -> int:
        """Items of the train split, from the dataset's own info."""
        return int(self.builder.info.splits["train"].num_examples)

    def examples(self) -> Iterator[dict]:
        """Decoded (numpy) examples in the order of the source file; nested datasets come whole."""
        import tensorflow as tf
        import tensorflow_datasets as tfds

        kind = schema.KINDS[self.spec.kind]
        nested = kind.datasets
        index_path = kind.index_field.split("/") if kind.index_field else []
        ds = self.builder.as_dataset(split="train", shuffle_files=False)
        ds = ds.map(lambda ex: _batched(ex, nested), num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=True).prefetch(2)
        expected = 0
        iterator = iter(tfds.as_numpy(ds))
        while True:
            try:
                example = next(iterator)
            except StopIteration:
                break
            except tf.errors.OpError as exc:
                raise DataError(self._damaged_shard(expected, exc)) from None
            if index_path:  # queries keep data.pkl's key order, which has no index field
                value = example
                for key in index_path:
                    value = value[key]
                if int(value) != expected:
                    raise DataError(f"{self.directory}: item {expected} expected next, found {int(value)} "
                                    "(incomplete or reordered dataset)")
            expected += 1
            yield example

    def _damaged_shard(self, item: int, exc: Exception) -> str:
        """Which shard TFDS could not read: each is read on its own to find it."""
        import tensorflow as tf

        message = str(getattr(exc, "message", exc)).split("\n")[0][:200]
        for shard in sorted(self.directory.glob("*.tfrecord-*")):
            try:
                for _ in tf.data.TFRecordDataset(str(shard)):
                    pass
            except tf.errors.OpError:
                return f"{shard}: damaged shard, cannot be read ({message}); rebuild or re-copy the dataset"
        return f"{self.directory}: item {item} cannot be decoded ({message})"

    def episodes(self) -> Iterator[tuple[int, episodes_lib.Episode, dict]]:
        """(episode_index, Episode, metadata) in the order of the source file."""
        for example in self.examples():
            meta = example[schema.EPISODE_METADATA]
            yield (int(meta[schema.EPISODE_INDEX]),
                   episodes_lib.from_rlds_steps(example[schema.STEPS], meta, self.spec), meta)

    def metadata(self) -> dict:
        return dict(self.builder.info.metadata or {})

    @property
    def metadata_file(self) -> str:
        """The dataset's metadata.json, named in errors about its values."""
        return str(self.directory / dataset_dir.METADATA)

    def protocol(self, key: str) -> int:
        """A pickle protocol kept in the metadata (checked: 2..5)."""
        return dataset_dir.checked_protocol(self.metadata().get(key, pickle.DEFAULT_PROTOCOL), self.metadata_file)

    def episode_protocol(self) -> int:
        for _, _, meta in self.episodes():
            return dataset_dir.checked_protocol(int(meta[schema.PICKLE_PROTOCOL]), f"{self.directory}, episode 0")
        return pickle.DEFAULT_PROTOCOL

    def legacy_files(self) -> list[LegacyFile]:
        """The release files this config holds everything of, ready to write or compare."""
        return kinds.converter(self.spec).legacy_files(self)
