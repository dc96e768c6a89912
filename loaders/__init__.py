"""Readers of the built DROPJ RLDS datasets, installed as ``dropj.loaders``.

    from dropj.loaders import TorchIterable, preference_pairs, vae_frames, world_model_windows
    from dropj.loaders import video     # query videos (PyAV only)
    from dropj.loaders import EpisodeSource  # random access without TensorFlow (numpy, Pillow)
    from dropj.loaders import WindowDataset, VAEFrames, PreferencePairs, LabelledSteps  # map-style, on it
    from dropj.loaders import statistics     # what `dropj stats` shows, from the numbers only (no TensorFlow)

`transformations` holds the pure ``Dataset -> Dataset`` pipelines (through
`rlds.transformations`), `torch_bridge` hands any of them to PyTorch, and
`training_data` says what each model trains on. Names are resolved on first use, so
``import dropj.loaders`` (or ``dropj.loaders.video``) does not import TensorFlow.
"""

from __future__ import annotations

_NAMES = {
    "vae_frames": "transformations", "world_model_windows": "transformations", "preference_pairs": "transformations",
    "labelled_steps": "transformations",
    "TorchIterable": "torch_bridge", "TfdsShards": "torch_bridge", "hide_gpus_from_tensorflow": "torch_bridge",
    "shard_seed": "torch_bridge", "to_torch": "torch_bridge",
    "EpisodeSource": "episode_source",
    "WindowDataset": "map_datasets", "VAEFrames": "map_datasets", "PreferencePairs": "map_datasets",
    "LabelledSteps": "map_datasets",
}

__all__ = list(_NAMES)


def __getattr__(name: str):
    """A public name, imported from its module on first use (each import spelled out, so the architecture test
    sees it)."""
    where = _NAMES.get(name)
    if where == "transformations":
        from . import transformations as module
    elif where == "torch_bridge":
        from . import torch_bridge as module
    elif where == "episode_source":
        from . import episode_source as module
    elif where == "map_datasets":
        from . import map_datasets as module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(module, name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_NAMES))
