"""gym 0.20's seeding, so that a seed gives the authors' track.

gymnasium seeds a `numpy.random.Generator`; gym 0.20 seeded a legacy
`numpy.random.RandomState` from a SHA-512 hash of the seed. Both CarRacing
track generators make the same sequence of `uniform` draws, so handing the
track generator a RandomState seeded the gym 0.20 way reproduces the track the
authors' environment built for the same seed (docs/recording.md says how this
was measured).

The gym 0.20 scheme, as facts: the seed (a non-negative int) is taken modulo
2**64, its decimal string is hashed with SHA-512, the first 8 digest bytes are
read as a little-endian unsigned integer, and that integer, split into 32-bit
words (least significant first), seeds `RandomState`.
"""

from __future__ import annotations

import hashlib
import os
from typing import Optional

import numpy as np

_SEED_BYTES = 8


def entropy_seed() -> int:
    """A fresh seed from the OS: 63 random bits, so that it fits the int64 a recording stores.

    (gym 0.20 drew 64 bits; every seed below 2**63 means the same track in both.)
    """
    return int.from_bytes(os.urandom(_SEED_BYTES), "little") >> 1


def legacy_random_state(seed: Optional[int]) -> tuple[np.random.RandomState, int]:
    """(RandomState, seed) as gym 0.20's `env.seed(seed)` made them; None draws a seed."""
    if seed is None:
        seed = entropy_seed()
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    seed = int(seed) % 2 ** (8 * _SEED_BYTES)
    digest = hashlib.sha512(str(seed).encode("utf8")).digest()
    hashed = int.from_bytes(digest[:_SEED_BYTES], "little")
    words = []
    while True:
        hashed, word = divmod(hashed, 2 ** 32)
        words.append(word)
        if hashed == 0:
            break
    return np.random.RandomState(words), seed
