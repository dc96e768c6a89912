"""`DropjDream-v0`: driving inside the learned world model, as the authors' `DreamEnv` (DATA_FORMATS.md 2).

    import gymnasium as gym
    import dropj_datasets.envs  # registers the ids
    env = gym.make("DropjDream-v0", env="carracing", mdnrnn="rnn.pt", vae="vae.pt",
                   init_states="default_init_obs.pkl", render_mode="rgb_array")
    obs, info = env.reset(seed=0)        # obs: z|c|h float32; info["initial_state"]: the exact float64 state
    obs, reward, terminated, truncated, info = env.step(np.array([0.0, 1.0, 0.0]))   # env-unit action
    frame = env.render()                 # the VAE's decode of z, what a person drives by

Dynamics: ``(c, h) <- LSTMCell([z, a], (c, h))`` with the **unscaled** env-unit action, then for each
latent dimension a mixture component ``k ~ softmax(logmix / T)`` and ``z = mean_k + exp(logstd_k) ·
N(0, 1) · sqrt(T)`` (`MDNRNN.step`, temperature T = 1 by default). The reward is always 0, an episode
never terminates, and gymnasium's TimeLimit cuts it at 1000 steps, as every release dream episode.
Start states: the `init_states` file (a single state, `default_init_obs*.pkl`, or a list,
`default_init_obses*.pkl`, cycled one per episode in order, as the obstacle dreams were), else zeros.
"""

from __future__ import annotations

from typing import Any, Optional

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from dropj_datasets import schema

from .checkpoints import load_checkpoint
from .mdnrnn import MDNRNN
from .vae import ConvVAE

MAX_EPISODE_STEPS = 1000


def load_initial_states(path: str, env: schema.EnvSpec) -> np.ndarray:
    """(n, latent_dim) float64 start states from a `default_init_obs*.pkl` file, read by the safe reader."""
    from dropj.converters.store import legacy_pickle  # the one pickle reader (models import no writer otherwise)

    with open(path, "rb") as f:
        value = legacy_pickle.load(f, str(path))
    states = value if isinstance(value, list) else [value]
    shape = (env.latent_dim,)
    if not states or not all(isinstance(s, np.ndarray) and s.shape == shape and s.dtype == np.float64
                             for s in states):
        raise ValueError(f"{path}: expected ndarray float64{list(shape)} start states (one, or a list)")
    return np.stack(states)


class DropjDream(gym.Env):
    """The dream of one environment: latent observations, env-unit actions, reward 0."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(self, env: str = "carracing", mdnrnn: Any = None, vae: Any = None, init_states: Any = None,
                 temperature: float = 1.0, render_mode: Optional[str] = None):
        self.env_spec = schema.env_spec(env)
        self.rnn = mdnrnn if isinstance(mdnrnn, MDNRNN) else MDNRNN.for_env(self.env_spec)
        if isinstance(mdnrnn, (str, bytes)) or hasattr(mdnrnn, "__fspath__"):
            load_checkpoint(self.rnn, mdnrnn)
        self.vae = vae if isinstance(vae, ConvVAE) or vae is None else ConvVAE.for_env(self.env_spec)
        if vae is not None and not isinstance(vae, ConvVAE):
            load_checkpoint(self.vae, vae)
        if init_states is None:
            self.init_states = np.zeros((1, self.env_spec.latent_dim))
        elif isinstance(init_states, np.ndarray):
            self.init_states = np.atleast_2d(np.asarray(init_states, np.float64))
        else:
            self.init_states = load_initial_states(init_states, self.env_spec)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if render_mode and self.vae is None:
            raise ValueError("render_mode='rgb_array' needs a VAE to decode the frames")
        self.render_mode = render_mode
        d = self.env_spec.latent_dim
        self.observation_space = spaces.Box(-np.inf, np.inf, (d,), np.float32)
        self.action_space = spaces.Box(schema.ACTION_LOW, schema.ACTION_HIGH, (3,), np.float64)
        self.rnn.eval()
        if self.vae is not None:
            self.vae.eval()
        self.episodes = 0
        self._state: Optional[torch.Tensor] = None
        self._generator = torch.Generator()

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self._generator.manual_seed(int(seed))
            self.episodes = 0
        initial = self.init_states[self.episodes % len(self.init_states)]
        self.episodes += 1
        self._state = torch.as_tensor(initial, dtype=torch.float32)[None]
        return self._state[0].numpy().copy(), {"initial_state": initial.copy()}

    @torch.no_grad()
    def step(self, action: Any) -> tuple[np.ndarray, int, bool, bool, dict]:
        if self._state is None:
            raise RuntimeError("call reset() first")
        a = torch.as_tensor(np.asarray(action, np.float64), dtype=torch.float32).reshape(1, 3)
        z, state = self.rnn.split_latent(self._state)
        z_next, (c, h) = self.rnn.step(z, a, state, temperature=self.temperature, generator=self._generator)
        self._state = torch.cat([z_next, c, h], dim=-1)
        return self._state[0].numpy().copy(), 0, False, False, {}

    @torch.no_grad()
    def render(self) -> Optional[np.ndarray]:
        if self.render_mode != "rgb_array" or self._state is None:
            return None
        z = self._state[:, :self.env_spec.n_z]
        return (self.vae.decode(z)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
