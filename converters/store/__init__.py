"""The ground floor: bytes on disk, both ways.

In: `files.open_regular` (regular files only, never blocking), `legacy_pickle` (the restricted pickle VM every
untrusted pickle goes through), `dataset_dir` (a built dataset directory checked before anything reads it).
Out: `durable` (atomic writes, fsync, output locks), `shards` (the append-only shard store of the datasets our
tools write, one version per store, and its rescue and repair), `participants` (user ids: the release's integers,
text ids mapped onto them and kept beside what the tools write).

Imports only the define room (`dropj_datasets`): everything else in `dropj.converters` stands on it.
"""
