"""Real episodes -> latent episodes: what the paper's MDN-RNN trained on (torch only).

    states = encode_episode(vae, rnn, frames, actions)     # (T+1, n_z + 2*rnn_size) float32, z|c|h

For each step t, ``z_t`` is the VAE posterior mean of frame t, and ``(c_t, h_t)`` is the LSTM state after
the inputs ``[z_0, a_0] … [z_{t-1}, a_{t-1}]`` from a zero state (DATA_FORMATS.md 0.2), so
``obs_t = [z_t | c_t | h_t]`` lines up with the dream configs' states. Actions are in env units, as the
MDN-RNN consumes them.
"""

from __future__ import annotations

import numpy as np
import torch

from .mdnrnn import MDNRNN
from .vae import ConvVAE, frames_to_tensor

__all__ = ["encode_episode"]


@torch.no_grad()
def encode_episode(vae: ConvVAE, rnn: MDNRNN, frames: np.ndarray, actions: np.ndarray,
                   batch_size: int = 256) -> np.ndarray:
    """frames: (T+1, H, W, 3) uint8; actions: (T, 3) env units -> (T+1, n_z + 2*rnn_size) float32."""
    if len(frames) != len(actions) + 1:
        raise ValueError(f"an episode of {len(actions)} transitions has {len(actions) + 1} frames, got {len(frames)}")
    if vae.config.n_z != rnn.config.n_z:
        raise ValueError(f"the VAE's n_z {vae.config.n_z} differs from the MDN-RNN's {rnn.config.n_z}")
    vae.eval()
    rnn.eval()
    device = next(vae.parameters()).device
    z = torch.cat([vae.encode(frames_to_tensor(frames[i:i + batch_size]).to(device))[0]
                   for i in range(0, len(frames), batch_size)])
    a = torch.as_tensor(np.asarray(actions, np.float32), device=device)
    state = rnn.zero_state(1)
    cells, hiddens = [state[0][0]], [state[1][0]]
    for t in range(len(actions)):  # the recurrence is sequential; each step is one small LSTMCell call
        state = rnn.cell(torch.cat([z[t], a[t]])[None], state)
        cells.append(state[0][0])
        hiddens.append(state[1][0])
    return torch.cat([z, torch.stack(cells), torch.stack(hiddens)], dim=-1).cpu().numpy().astype(np.float32)
