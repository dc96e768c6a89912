"""The app's wiring of the models into the writers: `dropj encode` and `dropj make-queries` with checkpoints.

The writers (`dropj.converters.derive.latents`, `.make_queries`) take functions, so they never import a model;
these load the checkpoints for the data's environment and hand the functions over.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np

from dropj.converters.derive import latents as encode_lib
from dropj.converters.feedback import make_queries as make_queries_lib
from dropj_datasets import schema


def _vae(env: schema.EnvSpec, path: str):
    from dropj.models import ConvVAE, load_checkpoint

    vae = ConvVAE.for_env(env)
    load_checkpoint(vae, path)
    return vae.eval()


def decoder(vae_path: str) -> Callable[[schema.EnvSpec], Callable[[np.ndarray], np.ndarray]]:
    """env -> (rows (T, D + 3) -> the VAE's decodes of their z, (T, H, W, 3) uint8)."""
    def make(env: schema.EnvSpec):
        import torch

        vae = _vae(env, vae_path)

        def decode(rows: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                z = torch.as_tensor(np.asarray(rows)[:, :env.n_z], dtype=torch.float32)
                return (vae.decode(z).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        return decode
    return make


def encode(dataset: str, vae_path: str, mdnrnn_path: str, *, data_dir: Optional[str] = None,
           out: Optional[str] = None, log: Callable[[str], None] = print, progress: bool = False) -> Path:
    """`dropj encode`: the VAE mean and the MDN-RNN's LSTM (`dropj.models.encode_episode`) over each episode."""
    def make(env: schema.EnvSpec):
        from dropj.models import MDNRNN, encode_episode, load_checkpoint

        vae, rnn = _vae(env, vae_path), MDNRNN.for_env(env)
        load_checkpoint(rnn, mdnrnn_path)
        return lambda frames, actions: encode_episode(vae, rnn, frames, actions)

    return encode_lib.encode(dataset, make, {schema.VAE_SHA256: vae_path, schema.MDNRNN_SHA256: mdnrnn_path},
                             data_dir=data_dir, out=out, log=log, progress=progress)


def make_queries(dataset: str, vae_path: str, num_queries: int, out, *, data_dir: Optional[str] = None,
                 seed: int = 0, start_index: int = 0, log: Callable[[str], None] = print) -> Path:
    """`dropj make-queries` with the videos decoded by the VAE checkpoint."""
    return make_queries_lib.make_queries(dataset, decoder(vae_path), num_queries, out, data_dir=data_dir, seed=seed,
                                         start_index=start_index, log=log)
