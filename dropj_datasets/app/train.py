"""`dropj train`: a built dataset, the model for it and the training loop, tied together.

    from dropj_datasets.app.train import train_from_dataset
    history = train_from_dataset('reward', D, out_dir='runs/reward', steps=100)

`MODELS` is the one table of the models `dropj train` trains: the CLI's choices, help and checks and
`train_from_dataset` all read it. The data comes from `dropj.loaders.training_data`, the models and the
loop from `dropj.models`; this module only wires them, and imports them (and torch) only when a model
trains: the CLI reads `MODELS` at every start. A new model is its module in `dropj.models` (the model,
its `TrainConfig` and batch loss), its reader in `dropj.loaders.training_data`, and a row here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

from dropj.loaders.splits import DEFAULT_DATASETS, VALIDATION_EVERY
from dropj_datasets import schema

__all__ = ["train_from_dataset", "MODELS", "Trainable", "Parts"]


class Parts(NamedTuple):
    """What a model trains with, imported when it trains: its `dropj.models.train.TrainConfig` class, the
    model for an environment and a config, its batch loss, and its (train, validation) batches."""

    config: type
    model: Callable[[schema.EnvSpec, Any], Any]
    loss: Callable[[Any, Any], Any]
    data: Callable[[str | None, str, Any, str], tuple[Any, Any]]  # (data_dir, dataset, config, loader)


@dataclasses.dataclass(frozen=True)
class Trainable:
    """One model `dropj train` trains: `name` is its CLI choice; `dataset` the config it trains on when none
    is named (its reader's default, `dropj.loaders.splits.DEFAULT_DATASETS`); `trains_on` what a config's
    examples must be for it (`schema.content_of`), `where` which configs hold that (said when one does
    not fit); `parts` gives its `Parts`; `item` what one training item is (said when the held-out part of a
    dataset gives none, so there is no validation set)."""

    name: str
    dataset: str
    trains_on: str
    where: str
    parts: Callable[[], Parts]
    item: str = "item"


def _vae() -> Parts:
    from dropj.loaders.training_data import vae_data
    from dropj.models import ConvVAE
    from dropj.models import train as loop

    return Parts(loop.VAETrainConfig, lambda env, cfg: ConvVAE.for_env(env), loop.vae_batch_loss,
                 lambda data_dir, dataset, cfg, loader: vae_data(data_dir, dataset, batch_size=cfg.batch_size,
                                                                 seed=cfg.seed, loader=loader))


def _mdnrnn() -> Parts:
    from dropj.loaders.training_data import mdnrnn_data
    from dropj.models import MDNRNN
    from dropj.models import train as loop

    return Parts(loop.MDNRNNTrainConfig, lambda env, cfg: MDNRNN.for_env(env), loop.mdnrnn_batch_loss,
                 lambda data_dir, dataset, cfg, loader: mdnrnn_data(
                     data_dir, dataset, sequence_length=cfg.sequence_length, batch_size=cfg.batch_size,
                     seed=cfg.seed, loader=loader))


def _reward() -> Parts:
    from dropj.loaders.training_data import reward_data
    from dropj.models import PreferenceRewardEnsemble
    from dropj.models import train as loop

    return Parts(loop.RewardTrainConfig,
                 lambda env, cfg: PreferenceRewardEnsemble(env.latent_dim + 3, members=cfg.members),
                 loop.reward_batch_loss,
                 lambda data_dir, dataset, cfg, loader: reward_data(data_dir, dataset, batch_size=cfg.batch_size,
                                                                    seed=cfg.seed, loader=loader))


def _sparse() -> Parts:
    from dropj.loaders.training_data import sparse_data
    from dropj.models import SparseRewardEnsemble
    from dropj.models import train as loop

    return Parts(loop.SparseTrainConfig,
                 lambda env, cfg: SparseRewardEnsemble(env.latent_dim + 3, members=cfg.members),
                 loop.sparse_batch_loss,
                 lambda data_dir, dataset, cfg, loader: sparse_data(data_dir, dataset, batch_size=cfg.batch_size,
                                                                    seed=cfg.seed, loader=loader))


MODELS: dict[str, Trainable] = {model.name: model for model in (
    Trainable("vae", DEFAULT_DATASETS["vae"], schema.FRAMES,
              "a real config (e.g. dropj_carracing/real) or a recording", _vae, "frame"),
    Trainable("mdnrnn", DEFAULT_DATASETS["mdnrnn"], schema.LATENT_STATES,
              "a dream config (e.g. dropj_carracing/dream) or encoded episodes (dropj_encoded/carracing)", _mdnrnn,
              "window of --sequence_length transitions"),
    Trainable("reward", DEFAULT_DATASETS["reward"], schema.LABELLED_PAIRS,
              "a preferences config (e.g. dropj_carracing/preferences_dropj) or a `dropj annotate` directory "
              "(e.g. dropj_annotations/dropj)", _reward, "labelled pair"),
    Trainable("sparse", DEFAULT_DATASETS["sparse"], schema.LABELLED_STEPS,
              "a sketches config (dropj_carracing/request or dropj_carracing/dros)", _sparse, "labelled step"),
)}


def train_from_dataset(model: str, data_dir: str | None, *, dataset: str | None = None, out_dir: str,
                       steps: int | None = None, batch_size: int | None = None, lr: float | None = None,
                       seed: int = 0, num_workers: int | None = None, device: str | None = None, loader: str = "map",
                       progress: bool = True, log: Callable[[str], None] | None = None, **config: Any):
    """Train `model` (a name in `MODELS`) on a built dataset; returns the `History`.

    dataset: 'name/config' (default `MODELS[model].dataset`); the env, and so the model's size, is
    the dataset's. Unset steps / batch_size / lr keep the config class's defaults; further keywords go
    to the config (e.g. ``validate_every``, ``sequence_length``). num_workers: DataLoader workers for
    the training batches (None: `default_workers()`); device: a torch device (None: cuda when
    available); batches are pinned for a CUDA device. loader: 'map' (no TensorFlow) or 'tf.data'.
    """
    import torch

    from dropj.models import train as loop

    if model not in MODELS:
        raise ValueError(f"model must be one of {list(MODELS)}, got {model!r}")
    trainable = MODELS[model]
    dataset = dataset or trainable.dataset
    if "/" not in dataset:
        raise ValueError(f"dataset must be 'name/config', e.g. {trainable.dataset!r}; got {dataset!r}")
    from dropj.converters.store import dataset_dir

    spec = schema.spec_for(*dataset_dir.parse_name(dataset)[:2])  # NAME/CONFIG[:VERSION]
    if schema.content_of(spec) != trainable.trains_on:  # the model and the dataset's kind must match
        raise ValueError(f"{dataset}: the {model} model trains on {trainable.trains_on}: {trainable.where}")
    _check_built(dataset, data_dir)
    torch_device = checked_device(device)
    num_workers = default_workers() if num_workers is None else num_workers
    env = spec.env
    given = {"steps": steps, "batch_size": batch_size, "lr": lr}
    config.update({k: v for k, v in given.items() if v is not None})
    parts = trainable.parts()
    cfg = parts.config(env=env.name, out_dir=str(out_dir), seed=seed, progress=progress, device=str(torch_device),
                       **config)
    torch.manual_seed(cfg.seed)  # the initial weights
    network = parts.model(env, cfg)
    step = loop.start_step(network, cfg)  # an --out that cannot hold this run is refused before any reading
    if step == cfg.steps:
        return loop.finished(cfg, step, log)
    train, val = parts.data(data_dir, dataset, cfg, loader)
    if loader == "map":
        pin = torch_device.type == "cuda"
        batches, val_batches = train.loader(num_workers=num_workers, pin_memory=pin), val.loader(pin_memory=pin)
    else:
        batches, val_batches = train.loader(num_workers=num_workers), val.loader(num_workers=0)
    if log is not None:
        log(f"reading {dataset} {'without TensorFlow' if loader == 'map' else 'through tf.data'}, "
            f"{num_workers} worker{'s' * (num_workers != 1)}, on {torch_device}")
    held_out = ", ".join(str(i * VALIDATION_EVERY) for i in range(3))
    no_validation = f"the held-out part of {dataset} (stored elements {held_out}, ...) has no {trainable.item}"
    return loop.train(network, parts.loss, batches, val_batches, cfg, log=log, no_validation=no_validation)


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


def _check_built(dataset: str, data_dir: str | None) -> None:
    """The dataset must be built, and its directory pass the checks of untrusted input (docs/security.md)."""
    from dropj.converters.store import dataset_dir

    dataset_dir.locate(dataset, data_dir)
