"""`dropj encode`: the real episodes of a built config as latent episodes, written as a TFDS directory.

    D/dropj_encoded/ENV/1.0.0/      one shard per encoded episode (`recording_store.ShardStore`)

Episodes stream one at a time from the source (`BuiltDataset.episodes`), so memory stays about one
episode whatever the dataset's size; the VAE runs on batches of frames, the LSTM step by step
(`dropj.models.encode_episode`). Each episode's metadata names its source episode and the SHA-256 of
both checkpoints. `dropj train mdnrnn --dataset dropj_encoded/ENV` trains on the result, as the paper did.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from dropj.converters import episodes as episodes_lib
from dropj.converters import kinds, rollouts
from dropj.converters.recording_store import VERSION, ShardStore
from dropj_datasets import schema
from dropj_datasets.schema import DataError, EncodedSpec


def encoded_dir(data_dir: str | os.PathLike, env: str) -> Path:
    return Path(data_dir) / schema.ENCODED_DATASET / env / VERSION


class EncodedStore(ShardStore):
    """An open `dropj_encoded` directory; `append` one latent episode at a time."""

    DATASET = schema.ENCODED_DATASET
    ITEM = "episode"
    WRITER, ONE = "encoding", "encoder"


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
    from dropj.converters.built import BuiltDataset

    source = BuiltDataset.open(dataset, data_dir)
    if source.spec.kind not in ("episodes", "recordings") or source.spec.is_dream:
        raise DataError(f"{dataset}: holds {'latent' if source.spec.is_dream else source.spec.kind} episodes; "
                        "encode reads frames (a real config or a recording)")
    env = source.spec.env
    encoder = make_encoder(env)
    digests = {field: sha256(path) for field, path in checkpoints.items()}
    spec = schema.ENCODED[env.name]
    directory = encoded_dir(out or data_dir or ".", env.name)
    store = EncodedStore(directory, spec, holder=f"dropj encode {dataset}", log=log)
    try:
        if store.count:
            raise DataError(f"{directory}: already holds {store.count} encoded episodes; encode into another "
                            "--out (one directory per source and checkpoints)")
        from tqdm.auto import tqdm

        for index, ep, meta in tqdm(source.episodes(), total=source.count, desc="encode", unit="episode",
                                    disable=None if progress else True):
            states = encoder(ep.observations, ep.actions)
            store.append(encoded_example(spec, ep, states, {
                schema.EPISODE_INDEX: store.count, schema.SOURCE_DATASET: dataset,
                schema.SOURCE_FILE: meta.get(schema.SOURCE_FILE, b"").decode() if isinstance(
                    meta.get(schema.SOURCE_FILE, b""), bytes) else "",
                f"source_{schema.EPISODE_INDEX}": index, **digests}))
        log(f"encoded {store.count} episodes of {dataset} into {directory}")
    finally:
        store.close()
    return directory


def _no_legacy_files(built: Any) -> list:
    raise DataError(f"{built.directory}: encoded episodes have no release file to export (the release encoded "
                    "its real episodes only in memory)")


CONVERTER = kinds.Converter(kinds.written_by("dropj encode"), _no_legacy_files, rollouts.summarise)
