"""Readers of the built DROPJ RLDS datasets, installed as ``dropj.loaders``.

    from dropj.loaders import TorchIterable, preference_pairs, vae_frames, world_model_windows
    from dropj.loaders import video     # query videos (PyAV only)

`rlds_loaders` turns built episodes into what each model consumes (tf.data pipelines
through `rlds.transformations`) and feeds them to PyTorch. Its names are resolved on
first use, so ``import dropj.loaders`` (or ``dropj.loaders.video``) does not import
TensorFlow.
"""

from __future__ import annotations

import importlib

_RLDS_LOADERS = (
    "vae_frames", "world_model_windows", "preference_pairs",
    "TorchIterable", "TfdsShards", "hide_gpus_from_tensorflow", "shard_seed", "to_torch",
)

__all__ = list(_RLDS_LOADERS)


def __getattr__(name: str):
    if name in _RLDS_LOADERS:
        return getattr(importlib.import_module(".rlds_loaders", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_RLDS_LOADERS))
