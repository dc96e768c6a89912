"""Where `dropj record` keeps its episodes: one append-only TFDS directory, written by us alone.

    OUT/dropj_recording/ENV/1.0.0/
        dataset_info.json  features.json  metadata.json     TFDS's metadata (replaced atomically)
        dropj_recording-train.tfrecord-00000 ...           one closed shard per episode
        .lock                                               who is recording here
        rescued/                                            episodes that could not be written

`RecordingStore` is the shard store (`store/shards.py`) of recordings, and the recorder's only storage code
(EnvLogger's own TFDS backend was removed upstream; moving to another format is a change of this file and
`store/shards.py`). The layout is TFDS's own (`tfds.builder_from_directory` reads it); the guarantees (one
writer, nothing overwritten, nothing half-listed, committed means committed once, nothing lost silently) are
the shard store's, and its docstring says how each is kept.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dropj.converters.store.shards import (  # noqa: F401 - re-exported: the recorder's names for its store
    DATASET_INFO, LOCK, RESCUED, SPLIT, STAGING_PREFIX, NotStored, RecordingError, ShardStore, private_rescue_folder,
    repair, repair_command, shard_path, shards_on_disk, write_rescue)
from dropj_datasets import schema

VERSION = "1.0.0"


def recording_dir(data_dir: str | os.PathLike, env_name: str) -> Path:
    """Where `dropj record --out data_dir` writes: the usual TFDS layout name/config/version."""
    return Path(data_dir) / schema.RECORDING_DATASET / env_name / VERSION


class RecordingStore(ShardStore):
    """An open recording directory; `append` one finished episode at a time, then `close`."""

    DATASET = schema.RECORDING_DATASET
    VERSION = VERSION
    ITEM = "episode"
    WRITER, ONE = "recording", "recorder"
    INDEX_FIELD = (schema.EPISODE_METADATA, schema.EPISODE_INDEX)

    @property
    def episodes(self) -> int:
        return self.count

    def _make_features(self) -> Any:
        from dropj_datasets.features import recording_features

        return recording_features(self.spec, self.VERSION)

    def _make_info(self, identity: Any) -> Any:
        import tensorflow_datasets as tfds

        from dropj_datasets.features import rlds_config

        return tfds.rlds.rlds_base.build_info(rlds_config(self.spec), identity,
                                              {"dataset": self.DATASET, "config": self.spec.config})
