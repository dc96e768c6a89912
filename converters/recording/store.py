"""Where `dropj record` keeps its episodes: one append-only TFDS directory, written by us alone.

    OUT/dropj_recording/ENV/1.0.0/
        dataset_info.json  features.json  metadata.json     TFDS's metadata (replaced atomically)
        dropj_recording-train.tfrecord-00000 ...           one closed shard per episode
        .lock                                               who is recording here
        rescued/                                            episodes that could not be written

`RecordingStore` is the shard store (`store.shards`) of recordings, and the recorder's only storage code
(EnvLogger's own TFDS backend was removed upstream; moving to another format is a change of this file
and `store/shards.py`). The
layout is TFDS's own (`tfds.builder_from_directory` reads it), and the
guarantees are ours:

* **One writer.** An exclusive lock (`flock` on `.lock`) is held for the
  whole session; a second recorder is refused at once, with the holder named.
* **Nothing overwritten.** The next shard's index is the number of shards on
  disk, and a shard is written to a temporary file, flushed, and then
  hard-linked to its final name, which fails rather than replace a file.
* **Nothing half-listed.** `dataset_info.json` is rewritten after each
  shard, into a staging folder, flushed, and renamed over the old one: a
  reader sees the old list or the new one. A kill between a shard's link and
  its listing leaves one unlisted shard, numbered next: the next writer lists
  it once it reads whole. Any other disagreement between the list and the
  shards on disk is refused for appending; `repair` rebuilds the list.
* **Committed means committed, once.** `append` returns when the item is
  stored (shard and list on disk), or raises `NotStored` when nothing of it
  is there for the next open to see. A list that cannot be written after the
  shard was linked (a full disk) is resolved here, never by the caller: the
  shard is taken back out, or, if even that fails, it stays and counts as
  stored (the next list written, or the next open, lists it). So a caller
  that rescues an item it was told is not stored never doubles it.
* **Nothing lost silently.** An item that cannot be written is kept in a
  rescue file (`rescued/`, else this user's private `dropj-rescued-UID/` in
  the system's temporary folder, refused if someone else made it); the message
  gives the `dropj repair-recording` command that adds it back from where it
  is (`repair_command`). `repair` recognises a rescued item by its content
  (the serialized item, its index aside) and never adds one that is listed.
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
