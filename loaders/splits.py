"""What both readers of `training_data` share: which dataset each model trains on by default, and the split
into train and validation (every `VALIDATION_EVERY`-th stored element validates; see `training_data`)."""

from __future__ import annotations

import numpy as np

VALIDATION_EVERY = 10
DEFAULT_DATASETS = {"vae": "dropj_carracing/real", "mdnrnn": "dropj_carracing/dream",
                    "reward": "dropj_carracing/preferences_dropj", "sparse": "dropj_carracing/dros"}


def held_out(count: int, every: int = VALIDATION_EVERY) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices of `count` stored elements: every `every`-th validates."""
    indices = np.arange(count)
    validation = indices % every == 0
    return indices[~validation], indices[validation]
