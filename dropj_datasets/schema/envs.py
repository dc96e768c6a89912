"""The environments of the release (`EnvSpec`, `ENVS`): frame shapes, latent sizes, info keys, gym ids;
and the action conventions (DATA_FORMATS.md 0.1, 0.3)."""

from __future__ import annotations

import dataclasses
import numpy as np

from .keys import TIME_LIMIT_TRUNCATED


# --- action conventions (DATA_FORMATS.md 0.3) ---
ACTION_LOW = np.array([-1.0, 0.0, 0.0])
ACTION_HIGH = np.array([1.0, 1.0, 1.0])


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """One environment variant of the release (DATA_FORMATS.md 0.1)."""

    name: str
    frame_shape: tuple[int, int, int]
    n_z: int
    rnn_size: int
    info_keys: tuple[str, ...]  # the keys its info dicts may hold, in the env's order
    description: str
    gym_id: str  # our gymnasium environment (dropj_datasets.envs), registered on import
    mode: str  # the gym_id's `mode` argument ('' when it has none)
    n_mixtures: int  # Gaussian components of the release's MDN-RNN (dropj.py: 5; obst_dropj.py:144: 7)

    @property
    def make_kwargs(self) -> dict:
        """`gymnasium.make(env.gym_id, **env.make_kwargs)` builds this variant."""
        return {"mode": self.mode} if self.mode else {}

    @property
    def latent_dim(self) -> int:
        """z|c|h: VAE latent, LSTM cell state, LSTM hidden state."""
        return self.n_z + 2 * self.rnn_size


CARRACING_ID = "DropjCarRacing-v0"
OBST_CARRACING_ID = "DropjObstCarRacing-v0"

CARRACING = EnvSpec(
    "carracing", (84, 84, 3), 32, 256, ("crash", "succ", TIME_LIMIT_TRUNCATED),
    "Car Racing (gym 0.20 CarRacing-v0 with the DROPJ reward): 96x96 frames cropped to rows 0:84, "
    "resized to 84x84 and pure black replaced by white", CARRACING_ID, "", 5)
CHUCKC = EnvSpec(
    "chuckc", (128, 128, 3), 64, 1024,
    ("crash", "succ", "chuck_passed", "chuck", TIME_LIMIT_TRUNCATED),
    "Obstacle Car Racing, chuckholes only: 128x128 frames, no indicator bar", OBST_CARRACING_ID, "chuckc", 7)
CHUCKCCAR = EnvSpec(
    "chuckccar", (128, 128, 3), 64, 1024,
    ("crash", "succ", "chuck_passed", "car_passed", "chuck", "car", TIME_LIMIT_TRUNCATED),
    "Obstacle Car Racing, chuckholes and 11 scripted NPC cars: 128x128 frames, no indicator bar",
    OBST_CARRACING_ID, "chuckccar", 7)
# Every environment of the release, by name: the one table models, envs, recorder and CLI read.
ENVS: dict[str, EnvSpec] = {env.name: env for env in (CARRACING, CHUCKC, CHUCKCCAR)}


def env_spec(name: str) -> EnvSpec:
    """The environment called `name` ('carracing', 'chuckc', 'chuckccar'); a KeyError lists them."""
    try:
        return ENVS[name]
    except (KeyError, TypeError):
        raise KeyError(f"unknown environment {str(name)[:40]!r}; known: {', '.join(ENVS)}") from None



def scale_action(action: np.ndarray) -> np.ndarray:
    """Env units -> [-1, 1] exactly as the release's `_scaled` files (DATA_FORMATS.md 0.3)."""
    scaled = 2.0 * (action - ACTION_LOW) / (ACTION_HIGH - ACTION_LOW) - 1.0
    return np.clip(scaled, -1.0, 1.0)
