"""`dropj encode`: the real episodes of a built config as latent episodes, written as a TFDS directory.

    D/dropj_encoded/ENV/1.0.0/                    one shard per encoded episode (`store.shards.ShardStore`)
    D/dropj_encoded/ENV/1.0.0.dropj-incomplete/   the same while encoding: renamed to 1.0.0 when whole
    D/dropj_encoded/ENV/.1.0.0.lock               one `dropj encode` per output at a time

It writes like a build: every episode goes into the incomplete folder, which no reader takes for a
dataset (TFDS reads version folders only), and the folder is renamed into place once every episode is
in it, so a failure or a kill never leaves something that loads as a smaller, finished dataset. The
same command run again resumes after the episodes already there, once their metadata shows the same
source and checkpoints; otherwise it says what to remove.

Episodes stream one at a time from the source (`BuiltDataset.episodes`), so memory stays about one
episode whatever the dataset's size; the VAE runs on batches of frames, the LSTM step by step
(`dropj.models.encode_episode`). Each episode's metadata names its source episode and the SHA-256 of
both checkpoints. `dropj train mdnrnn --dataset dropj_encoded/ENV` trains on the result, as the paper did.
"""

from __future__ import annotations

import hashlib
import os
import shlex
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from dropj.converters.store import durable
from dropj.converters.release import kinds, rollouts
from dropj.converters.release import episodes as episodes_lib
from dropj.converters.store.shards import ShardStore, shards_on_disk
from dropj_datasets import schema
from dropj_datasets.schema import DataError, EncodedSpec

VERSION = "1.0.0"  # this store's layout (each store has its own)


INCOMPLETE_SUFFIX = ".dropj-incomplete"


def encoded_dir(data_dir: str | os.PathLike, env: str) -> Path:
    return Path(data_dir) / schema.ENCODED_DATASET / env / VERSION


def incomplete_dir(directory: Path) -> Path:
    """Where the episodes of `directory` are written until every one is there."""
    return directory.with_name(directory.name + INCOMPLETE_SUFFIX)


def output_lock(directory: Path) -> Path:
    """The lock file of one output of `dropj encode`, beside its version folder."""
    return directory.with_name(f".{directory.name}.lock")


class EncodedStore(ShardStore):
    """An open `dropj_encoded` directory; `append` one latent episode at a time."""

    DATASET = schema.ENCODED_DATASET
    VERSION = VERSION
    ITEM = "episode"
    WRITER, ONE = "encoding", "encoder"
    INDEX_FIELD = (schema.EPISODE_METADATA, schema.EPISODE_INDEX)


def sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def encoded_example(spec: EncodedSpec, ep: Any, states: np.ndarray, metadata: dict) -> dict:
    """The TFDS example of one encoded episode: the source's columns, the latent states as observations."""
    latent = episodes_lib.Episode(
        observations=states, actions=ep.actions,
        actions_scaled=schema.scale_action(ep.actions) if np.isfinite(ep.actions).all() else ep.actions_scaled,
        rewards=ep.rewards, info=ep.info, final_done=ep.final_done)
    return {schema.STEPS: episodes_lib.to_rlds_steps(latent, spec),
            schema.EPISODE_METADATA: {**metadata, schema.FINAL_DONE: np.float64(ep.final_done)}}


Encoder = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (frames (T+1,H,W,3), actions (T,3)) -> states (T+1,D)


def encode(dataset: str, make_encoder: Callable[[schema.EnvSpec], Encoder], checkpoints: dict[str, str], *,
           data_dir: Optional[str] = None, out: Optional[str] = None, log: Callable[[str], None] = print,
           progress: bool = False) -> Path:
    """Encodes every episode of a built real config (or recording) into OUT/dropj_encoded/ENV/1.0.0.

    `make_encoder(env)` gives the function from an episode's frames and actions to its latent states (the
    app wires `dropj.models.encode_episode` with the checkpoints); `checkpoints` maps the metadata's
    digest fields (`schema.VAE_SHA256`, `schema.MDNRNN_SHA256`) to the files they digest.
    """
    from dropj.converters.roundtrip.built import BuiltDataset

    source = BuiltDataset.open(dataset, data_dir)
    if schema.content_of(source.spec) != schema.FRAMES:
        latent = getattr(source.spec, "is_dream", False)
        raise DataError(f"{dataset}: holds {'latent' if latent else source.spec.kind} episodes; "
                        "encode reads frames (a real config or a recording)")
    env = source.spec.env
    encoder = make_encoder(env)
    digests = {field: sha256(path) for field, path in checkpoints.items()}
    spec = schema.ENCODED[env.name]
    directory = encoded_dir(out or data_dir or ".", env.name)
    directory.parent.mkdir(parents=True, exist_ok=True)
    lock = durable.take_output_lock(output_lock(directory), f"dropj encode {dataset}", lambda holder: (
        f"{directory}: another dropj encode is writing it ({holder}); wait for it to end, or choose another --out"))
    try:
        if directory.exists():
            raise DataError(f"{directory}: already holds {len(shards_on_disk(directory, EncodedStore.DATASET))} "
                            "encoded episodes; encode into another --out (one directory per source and checkpoints)")
        building = incomplete_dir(directory)
        store = EncodedStore(building, spec, holder=f"dropj encode {dataset}", log=log)
        try:
            done = _resumable(store, dataset, digests, source.count)
            from tqdm.auto import tqdm

            for position, (index, ep, meta) in enumerate(tqdm(source.episodes(), total=source.count,
                                                              desc="encode", unit="episode",
                                                              disable=None if progress else True)):
                if position < done:  # encoded by the run this one resumes
                    continue
                states = encoder(ep.observations, ep.actions)
                store.append(encoded_example(spec, ep, states, {
                    schema.EPISODE_INDEX: store.count, schema.SOURCE_DATASET: dataset,
                    schema.SOURCE_FILE: meta.get(schema.SOURCE_FILE, b"").decode() if isinstance(
                        meta.get(schema.SOURCE_FILE, b""), bytes) else "",
                    f"source_{schema.EPISODE_INDEX}": index, **digests}))
        except Exception:
            log(f"{store.count} of {source.count} episodes are in {building}, which is not a dataset yet: "
                "run the same command again to resume")
            raise
        finally:
            store.close()
        if store.count != source.count:
            raise DataError(f"{dataset}: gave {store.count} episodes, its info says {source.count}; {building} "
                            "is left unfinished")
        os.rename(building, directory)  # every shard and the list are on disk: now it is a dataset
        durable.fsync_directory(directory.parent)
        log(f"encoded {schema.counted(store.count, 'episode')} of {dataset} into {directory}")
    finally:
        durable.release_lock(lock)
    return directory


def _resumable(store: EncodedStore, dataset: str, digests: dict[str, str], total: int) -> int:
    """How many episodes an unfinished encoding already holds, once they are of the same source and
    checkpoints (their first episode's metadata says so); otherwise a DataError saying what to remove."""
    if not store.count:
        return 0
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(str(store.directory))
    [first] = tfds.as_numpy(builder.as_dataset(split="train[:1]", shuffle_files=False))
    meta = first[schema.EPISODE_METADATA]
    theirs = {field: meta[field].decode() for field in (schema.SOURCE_DATASET, *digests)}
    if theirs != {schema.SOURCE_DATASET: dataset, **digests} or store.count > total:
        raise DataError(f"{store.directory}: an unfinished encoding of {theirs[schema.SOURCE_DATASET]} with other "
                        f"checkpoints (or another source) is here; to start again, remove it: "
                        f"`rm -r {shlex.quote(str(store.directory))}`")
    store.log(f"{store.directory}: resuming after the {store.count} of {total} episodes already encoded")
    return store.count


def _no_legacy_files(built: Any) -> list:
    raise DataError(f"{built.directory}: encoded episodes have no release file to export (the release encoded "
                    "its real episodes only in memory)")


CONVERTER = kinds.Converter(kinds.written_by("dropj encode"), _no_legacy_files, rollouts.summarise)
