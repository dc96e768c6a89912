"""`dropj train`: a built dataset, the model for it and the training loop, tied together.

    from dropj_datasets.app.train import train_from_dataset
    history = train_from_dataset('reward', D, out_dir='runs/reward', steps=100)

The data comes from `dropj.loaders.training_data`, the models and the loop
from `dropj.models`; this module only wires them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from dropj.loaders.training_data import DEFAULT_DATASETS, KINDS, mdnrnn_data, reward_data, sparse_data, vae_data
from dropj_datasets import schema

__all__ = ["train_from_dataset", "DEFAULT_DATASETS", "KINDS"]


def train_from_dataset(kind: str, data_dir: str | None, *, dataset: str | None = None, out_dir: str,
                       steps: int | None = None, batch_size: int | None = None, lr: float | None = None,
                       seed: int = 0, num_workers: int | None = None, device: str | None = None, loader: str = "map",
                       progress: bool = True, log: Callable[[str], None] | None = None, **config: Any):
    """Train model `kind` ('vae' | 'mdnrnn' | 'reward' | 'sparse') on a built dataset; returns the `History`.

    dataset: 'name/config' (default `DEFAULT_DATASETS[kind]`); the env, and so the model's size, is
    the dataset's. Unset steps / batch_size / lr keep the config class's defaults; further keywords go
    to the config (e.g. ``validate_every``, ``sequence_length``). num_workers: DataLoader workers for
    the training batches (None: `default_workers()`); device: a torch device (None: cuda when
    available); batches are pinned for a CUDA device. loader: 'map' (no TensorFlow) or 'tf.data'.
    """
    import torch

    from dropj.models import ConvVAE, MDNRNN, PreferenceRewardEnsemble, SparseRewardEnsemble
    from dropj.models import train as loop

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    dataset = dataset or DEFAULT_DATASETS[kind]
    if "/" not in dataset:
        raise ValueError(f"dataset must be 'name/config', e.g. {DEFAULT_DATASETS[kind]!r}; got {dataset!r}")
    spec = schema.spec_for(*dataset.split("/", 1))
    _check_fits(kind, dataset, spec)
    _check_built(dataset, data_dir)
    torch_device = checked_device(device)
    num_workers = default_workers() if num_workers is None else num_workers
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise schema.DataError(f"{out_dir}: is a file; --out must be a directory")
    env = spec.env
    given = {"steps": steps, "batch_size": batch_size, "lr": lr}
    config.update({k: v for k, v in given.items() if v is not None})
    config_class = {"vae": loop.VAETrainConfig, "mdnrnn": loop.MDNRNNTrainConfig,
                    "reward": loop.RewardTrainConfig, "sparse": loop.SparseTrainConfig}[kind]
    cfg = config_class(env=env.name, out_dir=str(out_dir), seed=seed, progress=progress, device=str(torch_device),
                       **config)
    torch.manual_seed(cfg.seed)  # the initial weights
    if kind == "vae":
        model, loss_fn = ConvVAE.for_env(env), loop.vae_batch_loss
        train, val = vae_data(data_dir, dataset, batch_size=cfg.batch_size, seed=cfg.seed, loader=loader)
    elif kind == "mdnrnn":
        model, loss_fn = MDNRNN.for_env(env), loop.mdnrnn_batch_loss
        train, val = mdnrnn_data(data_dir, dataset, sequence_length=cfg.sequence_length,
                                 batch_size=cfg.batch_size, seed=cfg.seed, loader=loader)
    elif kind == "reward":
        model, loss_fn = PreferenceRewardEnsemble(env.latent_dim + 3, members=cfg.members), loop.reward_batch_loss
        train, val = reward_data(data_dir, dataset, batch_size=cfg.batch_size, seed=cfg.seed, loader=loader)
    else:
        model, loss_fn = SparseRewardEnsemble(env.latent_dim + 3, members=cfg.members), loop.sparse_batch_loss
        train, val = sparse_data(data_dir, dataset, batch_size=cfg.batch_size, seed=cfg.seed, loader=loader)
    if loader == "map":
        pin = torch_device.type == "cuda"
        batches, val_batches = train.loader(num_workers=num_workers, pin_memory=pin), val.loader(pin_memory=pin)
    else:
        batches, val_batches = train.loader(num_workers=num_workers), val.loader(num_workers=0)
    if log is not None:
        log(f"reading {dataset} {'without TensorFlow' if loader == 'map' else 'through tf.data'}, "
            f"{num_workers} worker{'s' * (num_workers != 1)}, on {torch_device}")
    return loop.train(model, loss_fn, batches, val_batches, cfg, log=log)


def default_workers() -> int:
    """DataLoader workers when none are asked for: one per usable CPU, at most 4 (docs/benchmarks.md,
    "Reading without TensorFlow": each worker adds throughput up to the cores)."""
    from dropj_datasets.codec import usable_cpus

    return min(4, usable_cpus())


def checked_device(device: str | None) -> Any:
    """The torch device to train on: `device`, or cuda when this torch can use it, else cpu. A device
    this machine or this torch build cannot use is one clear error."""
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {device!r}: not a torch device; use cpu, cuda, cuda:N or mps") from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}, no GPU visible"
            raise ValueError(f"--device {device}: torch {torch.__version__} is {build}; docs/install.md says how "
                             f"to install a CUDA build")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif chosen.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"--device {device}: MPS is not available here")
    elif chosen.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {device}: dropj trains on cpu, cuda or mps")
    return chosen


_TRAINS_ON = {"vae": "frames: a real config (e.g. dropj_carracing/real) or a recording",
              "mdnrnn": "latent states: a dream config (e.g. dropj_carracing/dream) or encoded episodes "
                        "(dropj_encoded/carracing)",
              "reward": "labelled preferences: a preferences config (e.g. dropj_carracing/preferences_dropj) or "
                        "a `dropj annotate` directory (e.g. dropj_annotations/dropj)",
              "sparse": "labelled steps: a sketches config (dropj_carracing/request or dropj_carracing/dros)"}


def _check_fits(kind: str, dataset: str, spec: Any) -> None:
    """The model and the dataset's kind must match; say which configs would."""
    frames = spec.kind in ("episodes", "recordings") and not spec.is_dream
    fits = {"vae": frames, "mdnrnn": spec.kind in ("episodes", "encoded") and spec.is_dream,
            "reward": spec.kind in ("preferences", "annotations"), "sparse": spec.kind == "sketches"}[kind]
    if not fits:
        raise ValueError(f"{dataset}: the {kind} model trains on {_TRAINS_ON[kind]}")


def _check_built(dataset: str, data_dir: str | None) -> None:
    """The dataset must be built, and its directory pass the checks of untrusted input (docs/security.md)."""
    from dropj.converters.store import dataset_dir

    dataset_dir.find_built(dataset, data_dir)
