"""One training loop for the three models, with their loss adapters (torch only, never TensorFlow).

    from dropj.models import ConvVAE
    from dropj.models.train import VAETrainConfig, train, vae_batch_loss

    config = VAETrainConfig(env='carracing', steps=1000, out_dir='runs/vae')
    history = train(ConvVAE(...), vae_batch_loss, train_batches, val_batches, config)

`train` pulls batches from any iterable of torch batches (a `DataLoader`, a list), starting it again
when it runs out, takes `config.steps` Adam steps, validates every `validate_every` steps and writes
into `out_dir`:

* ``checkpoint.pt``: ``{'model_state', 'optimizer_state'}`` (the authors' format, see `checkpoints`)
  plus ``'step'``, ``'rng_state'`` and ``'model'`` (the model's class name), every `checkpoint_every` steps
  and at the end. A run whose `out_dir` already holds one resumes from it: model, optimizer, step and
  torch's CPU RNG.
* ``losses.json``: ``{'step', 'train_loss', 'val_step', 'val_loss'}`` lists (kept across resumes) and
  ``'validation'``: false, with ``'no_validation'`` saying why, when there is no validation set.
* ``losses.png``: the train and validation curves, drawn with Pillow ("no validation set" when so).

An `out_dir` that cannot hold the run (a file, not writable, another model's run, other files) is one
`RunDirError` that says what to do, before any step (`start_step`).

Loss adapters take ``(model, batch)`` and return a scalar tensor; `dropj.loaders.training_data`
builds the batches each one expects from the built datasets.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dropj_datasets import schema

from .checkpoints import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint, state_dict_differences
from .mdnrnn import MDNRNN, mdn_nll
from .reward import PreferenceRewardEnsemble, SparseRewardEnsemble, preference_loss, reward_class_index
from .vae import ConvVAE, frames_to_tensor, vae_loss

__all__ = ["ENVS", "TrainConfig", "VAETrainConfig", "MDNRNNTrainConfig", "RewardTrainConfig", "SparseTrainConfig",
           "History", "train", "vae_batch_loss", "mdnrnn_batch_loss", "reward_batch_loss", "sparse_batch_loss",
           "draw_losses", "CHECKPOINT_FILE", "LOSSES_FILE", "PLOT_FILE", "RunDirError", "check_out_dir", "start_step",
           "finished"]

ENVS = tuple(schema.ENVS)  # 'carracing', 'chuckc', 'chuckccar'
CHECKPOINT_FILE = "checkpoint.pt"
LOSSES_FILE = "losses.json"
PLOT_FILE = "losses.png"
MODEL_KEY = "model"  # in checkpoint.pt beside the authors' keys: the class of the model the run trains
RUN_FILES = frozenset({CHECKPOINT_FILE, LOSSES_FILE, PLOT_FILE, CHECKPOINT_FILE + ".tmp"})
ANOTHER_OUT = "choose another --out or remove it"
MAX_NAME_CHARS = 80  # of a file or key name from the out directory, quoted in a refusal

LossFn = Callable[[nn.Module, Any], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What every training run needs.

    env: 'carracing' | 'chuckc' | 'chuckccar'; steps: total optimizer steps (a resumed run stops at the
    same total); lr: Adam learning rate; batch_size: for whoever builds the batches; validate_every,
    checkpoint_every: in steps (the last step always does both); out_dir: checkpoint, losses and plot;
    seed: seeds torch before the first step; device: None picks 'cuda' when available, else 'cpu';
    progress: show a tqdm bar.
    """

    env: str = "carracing"
    steps: int = 1000
    lr: float = 1e-3
    batch_size: int = 32
    validate_every: int = 100
    checkpoint_every: int = 500
    out_dir: str = "runs/train"
    seed: int = 0
    device: str | None = None
    progress: bool = True

    def __post_init__(self):
        problems = self._problems()
        if problems:
            raise ValueError(f"invalid {type(self).__name__}: " + "; ".join(problems))

    def _extra_positive_ints(self) -> tuple[str, ...]:
        """Fields a subclass adds that must be positive ints (checked after the common ones)."""
        return ()

    def _problems(self) -> list[str]:
        problems = []
        if self.env not in ENVS:
            problems.append(f"env must be one of {list(ENVS)}, got {self.env!r}")
        problems += self._not_positive_ints(("steps", "batch_size", "validate_every", "checkpoint_every"))
        if not isinstance(self.lr, (int, float)) or isinstance(self.lr, bool) or not 0 < self.lr < math.inf:
            problems.append(f"lr must be a positive finite number, got {self.lr!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            problems.append(f"seed must be an int >= 0, got {self.seed!r}")
        if not isinstance(self.out_dir, (str, os.PathLike)) or not str(self.out_dir):
            problems.append(f"out_dir must be a non-empty path, got {self.out_dir!r}")
        if self.device is not None and not isinstance(self.device, str):
            problems.append(f"device must be None or a string such as 'cpu', got {self.device!r}")
        return problems + self._not_positive_ints(self._extra_positive_ints())

    def _not_positive_ints(self, names: tuple[str, ...]) -> list[str]:
        return [f"{name} must be a positive int, got {getattr(self, name)!r}" for name in names
                if not isinstance(getattr(self, name), int) or isinstance(getattr(self, name), bool)
                or getattr(self, name) <= 0]


@dataclasses.dataclass(frozen=True)
class VAETrainConfig(TrainConfig):
    """`ConvVAE` on single frames. The kl_tolerance (0.5 CR, 2.0 Obstacle) is the model's own."""

    lr: float = 1e-4
    batch_size: int = 32


@dataclasses.dataclass(frozen=True)
class MDNRNNTrainConfig(TrainConfig):
    """`MDNRNN` on windows of `sequence_length` transitions of latent states."""

    lr: float = 1e-3
    batch_size: int = 16
    sequence_length: int = 32

    def _extra_positive_ints(self) -> tuple[str, ...]:
        return ("sequence_length",)


@dataclasses.dataclass(frozen=True)
class RewardTrainConfig(TrainConfig):
    """`PreferenceRewardEnsemble` (`members` nets) on labelled preference pairs of 20-step clips."""

    lr: float = 1e-4
    batch_size: int = 16
    members: int = 3

    def _extra_positive_ints(self) -> tuple[str, ...]:
        return ("members",)


@dataclasses.dataclass(frozen=True)
class SparseTrainConfig(TrainConfig):
    """`SparseRewardEnsemble` (`members` classifiers) on labelled steps of ReQueST / DROS sketches."""

    lr: float = 1e-3
    batch_size: int = 64
    members: int = 4

    def _extra_positive_ints(self) -> tuple[str, ...]:
        return ("members",)


class RunDirError(ValueError):
    """An out directory that cannot hold this run; the message names it and says what to do."""


@dataclasses.dataclass
class History:
    """Losses of a run (including the steps before a resume); ``start_step`` is where this call began;
    ``no_validation`` says why there is no validation set (None when there is one)."""

    step: list[int] = dataclasses.field(default_factory=list)
    train_loss: list[float] = dataclasses.field(default_factory=list)
    val_step: list[int] = dataclasses.field(default_factory=list)
    val_loss: list[float] = dataclasses.field(default_factory=list)
    start_step: int = 0
    no_validation: str | None = None

    def to_json(self) -> dict:
        data = {"step": self.step, "train_loss": self.train_loss, "val_step": self.val_step,
                "val_loss": self.val_loss, "validation": self.no_validation is None}
        if self.no_validation is not None:
            data["no_validation"] = self.no_validation
        return data

    @classmethod
    def read(cls, path: Path, up_to: int) -> History:
        """The losses of `path` for steps <= `up_to` (a checkpoint older than the losses drops the rest)."""
        if not path.is_file():
            return cls(start_step=up_to)
        try:
            data = json.loads(path.read_text())
            train = [(int(s), float(v)) for s, v in zip(data["step"], data["train_loss"]) if s <= up_to]
            val = [(int(s), float(v)) for s, v in zip(data["val_step"], data["val_loss"]) if s <= up_to]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            reason = f"no {exc.args[0]!r} list" if isinstance(exc, KeyError) else schema.one_line(exc, 60, typed=False)
            raise RunDirError(f"{path}: not a run's losses ({reason}); remove it (the run resumes without them) or "
                              "choose another --out") from None
        return cls([s for s, _ in train], [v for _, v in train], [s for s, _ in val], [v for _, v in val],
                   start_step=up_to)


# -- loss adapters: (model, batch) -> scalar ----------------------------------------------------------------


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def vae_batch_loss(model: ConvVAE, batch: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
    """batch: (N, H, W, 3) uint8 frames (or a dict with 'observation') -> `vae_loss` with the model's kl_tolerance."""
    frames = batch["observation"] if isinstance(batch, Mapping) else batch
    # uint8 crosses to the device (a quarter of the bytes of float32, asynchronously from pinned memory)
    x = frames_to_tensor(torch.as_tensor(frames).to(_device(model), non_blocking=True))
    recon, mu, logvar = model(x)
    return vae_loss(recon, x, mu, logvar, model.config.kl_tolerance, model.config.n_z)


def mdnrnn_batch_loss(model: MDNRNN, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """batch: windows ``{'observation', 'action', 'next_observation'}`` of latent states -> `mdn_nll`.

    observation, next_observation: (B, T, n_z + 2*rnn_size) ``z|c|h``; action: (B, T, 3) in env units.
    Inputs are ``[z_t, a_t]`` and targets ``z_{t+1}``, each z the first n_z features. The LSTM starts
    each window from zeros: the stored c|h are the release RNN's, not this model's.
    """
    n_z, device = model.config.n_z, _device(model)
    z = batch["observation"][..., :n_z].to(device, torch.float32, non_blocking=True)
    a = batch["action"].to(device, torch.float32, non_blocking=True)
    target = batch["next_observation"][..., :n_z].to(device, torch.float32, non_blocking=True)
    out = model(torch.cat([z, a], dim=-1))
    return mdn_nll(out.logmix, out.mean, out.logstd, target)


def reward_batch_loss(model: PreferenceRewardEnsemble, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """batch: preference pairs (`dropj.loaders.preference_pairs`) -> sum over members of `preference_loss`.

    Each step's input is ``concat(observation, action)`` (B, 20, 547 for Car Racing); the actions of
    the clips are already scaled to [-1, 1]. Every member is trained on the same batch, as the authors'.
    """
    device = _device(model)

    def segment(side: str) -> torch.Tensor:
        return torch.cat([batch[f"{side}_observation"], batch[f"{side}_action"]], dim=-1).to(
            device, torch.float32, non_blocking=True)

    r_left, r_right = model.member_rewards(segment("left")), model.member_rewards(segment("right"))
    label = batch["label"].to(device, torch.float32, non_blocking=True)
    return sum(preference_loss(r_left[m], r_right[m], label) for m in range(r_left.shape[0]))


def sparse_batch_loss(model: SparseRewardEnsemble, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """batch: labelled steps (`dropj.loaders.labelled_steps`) -> cross-entropy of the ensemble-mean logits.

    Each input is ``concat(observation, action)`` with the action in env units, as the authors'
    ``rew_func_input='sa'``; targets are the classes of the person's labels -1, 0, +10.
    """
    device = _device(model)
    x = torch.cat([batch["observation"], batch["action"]], dim=-1).to(device, torch.float32)
    return F.cross_entropy(model.mean_logits(x), reward_class_index(batch["reward"]).to(device))


# -- the loop -----------------------------------------------------------------------------------------------


def _forever(batches: Iterable) -> Iterator:
    """Batches without end: each pass starts the iterable again (with the next epoch where it has one)."""
    epoch = 0
    while True:
        source = getattr(batches, "dataset", batches)  # a DataLoader's TorchIterable
        if hasattr(source, "set_epoch"):
            source.set_epoch(epoch)
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            raise ValueError("the training batches are empty: no batch in a whole pass")
        epoch += 1


def _has_batches(batches: Iterable | None) -> bool:
    """Whether `batches` gives a batch: its length where it has one (a map-style DataLoader, a list), else
    by starting it (a DataLoader over an iterable dataset: tf.data's)."""
    if batches is None:
        return False
    try:
        return len(batches) > 0  # type: ignore[arg-type]
    except TypeError:
        return any(True for _ in batches)


def _validate(model: nn.Module, loss_fn: LossFn, val_batches: Iterable) -> float | None:
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in val_batches:
            total += float(loss_fn(model, batch))
            count += 1
    model.train(was_training)
    return total / count if count else None


def _save(model: nn.Module, optimizer: torch.optim.Optimizer, out_dir: Path, step: int) -> None:
    # Write beside and rename: a run killed while saving keeps its previous checkpoint whole.
    path = out_dir / CHECKPOINT_FILE
    tmp = path.with_name(path.name + ".tmp")
    save_checkpoint(model, optimizer, tmp, extra={"step": step, "rng_state": torch.get_rng_state(),
                                                  MODEL_KEY: type(model).__name__})
    os.replace(tmp, path)


def _resume_state(path: Path, saved: Mapping[str, Any]) -> tuple[int, torch.Tensor | None]:
    """The step and generator state a checkpoint of `_save` resumes from, each checked (the file is input:
    one `CheckpointError` naming it, never torch's own error at the first step)."""
    given = saved.get("step", 0)
    step = given.item() if isinstance(given, torch.Tensor) and given.numel() == 1 and \
        not given.is_floating_point() else given
    if type(step) is not int or not 0 <= step < 2**62:
        shown = f"a {tuple(given.shape)} tensor" if isinstance(given, torch.Tensor) else schema.describe(given)
        raise CheckpointError(f"{path}: 'step' must be a whole number >= 0, got {shown}")
    rng_state = saved.get("rng_state")
    if rng_state is not None:
        expected = torch.get_rng_state()
        if not isinstance(rng_state, torch.Tensor) or rng_state.dtype != expected.dtype or \
                rng_state.shape != expected.shape:
            raise CheckpointError(f"{path}: 'rng_state' must be a {tuple(expected.shape)} {expected.dtype} tensor "
                                  f"(torch.get_rng_state()), got {schema.describe(rng_state)}")
        try:  # its content too (a valid Mersenne Twister state, contiguous), on a generator of its own
            torch.Generator().set_state(rng_state)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: 'rng_state' is not a state torch's generator takes "
                                  f"({schema.one_line(exc, 120, typed=False)})") from None
    return step, rng_state


def _quoted(name: Any) -> str:
    text = str(name)
    return repr(text if len(text) <= MAX_NAME_CHARS else text[:MAX_NAME_CHARS] + "...")


def _misfit(state: Mapping, model: nn.Module) -> str | None:
    """How a checkpoint's model_state differs from `model`'s weights, in one short phrase (None: it fits)."""
    missing, unexpected, mismatched = state_dict_differences(state, model)
    if not (missing or unexpected or mismatched):
        return None
    if mismatched:
        more = len(missing) + len(unexpected) + len(mismatched) - 1
        return f"{mismatched[0]}" + (f", and {more} more difference{'s' * (more != 1)}" if more else "")
    if len(missing) == len(model.state_dict()):
        return f"none of its {len(state)} weights is one of this model's (its first: {_quoted(next(iter(state)))})"
    parts = [f"{len(missing)} of this model's weights missing (e.g. {_quoted(missing[0])})" if missing else "",
             f"{len(unexpected)} it does not have (e.g. {_quoted(unexpected[0])})" if unexpected else ""]
    return ", ".join(part for part in parts if part)


def check_out_dir(model: nn.Module, out_dir: str | os.PathLike) -> int:
    """The step of `model`'s run in `out_dir` (0 when there is none yet), or one `RunDirError` that says what
    to do: `out_dir` a file, not writable, holding other files and no checkpoint, or a checkpoint that is
    not a run of this model (another model's, by its recorded class, or weights that do not fit: another
    environment or size), or that cannot be read (`checkpoints`' checks of untrusted input)."""
    out = Path(out_dir)
    name = type(model).__name__
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out} is a file, not a run directory; choose another --out (a new directory, or an "
                          f"earlier run of {name}) or remove the file")
    if not out.exists():
        parent = next(p for p in out.absolute().parents if p.exists())
        if not parent.is_dir():
            raise RunDirError(f"{out}: {parent} is a file, so no directory can be made there; choose another --out")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise RunDirError(f"{out}: cannot create it, {parent} is not writable; choose another --out")
        return 0
    if not os.access(out, os.W_OK | os.X_OK):
        raise RunDirError(f"{out} is not writable; choose another --out")
    checkpoint = out / CHECKPOINT_FILE
    if not checkpoint.exists():
        other = next((p.name for p in out.iterdir() if p.name not in RUN_FILES), None)
        if other is not None:
            raise RunDirError(f"{out} holds other files (e.g. {_quoted(other)}) and no {CHECKPOINT_FILE}: it is not "
                              f"a training run; choose another --out (a new or empty directory)")
        return 0
    try:
        saved = read_checkpoint(checkpoint)
    except CheckpointError as exc:
        raise RunDirError(f"{exc}; {ANOTHER_OUT}") from None
    recorded = saved.get(MODEL_KEY)
    if isinstance(recorded, str) and recorded != name:
        raise RunDirError(f"{out} holds a run of {_quoted(recorded)[1:-1]} ({CHECKPOINT_FILE}), not of {name}; "
                          f"{ANOTHER_OUT}")
    state = saved.get("model_state")
    if not isinstance(state, Mapping) or not all(isinstance(key, str) for key in state):
        raise RunDirError(f"{checkpoint} is not a training run's checkpoint (no model_state of named weights); "
                          f"{ANOTHER_OUT}")
    misfit = _misfit(state, model)
    if misfit is not None:
        what = f"a run of {name} with other settings (environment or size)" if recorded == name else \
            f"a checkpoint that is not a run of this {name}"
        raise RunDirError(f"{out} holds {what} ({CHECKPOINT_FILE}: {misfit}); {ANOTHER_OUT}")
    try:
        return _resume_state(checkpoint, saved)[0]
    except CheckpointError as exc:
        raise RunDirError(f"{exc}; {ANOTHER_OUT}") from None


def start_step(model: nn.Module, config: TrainConfig) -> int:
    """The step a run of `model` under `config` starts from: 0, or its checkpoint's step to resume from
    (`check_out_dir`). A checkpoint already past ``config.steps`` is a `RunDirError`: nothing to do, and
    nothing is touched."""
    step = check_out_dir(model, config.out_dir)
    if step > config.steps:
        raise RunDirError(f"{config.out_dir} is at step {step} already, more than --steps {config.steps}: nothing "
                          f"to do; pass --steps above {step} to train on, or another --out for a new run")
    return step


def finished(config: TrainConfig, step: int, log: Callable[[str], None] | None = None) -> History:
    """A run already at ``config.steps``: says so and returns its `History`, touching nothing."""
    if log is not None:
        log(f"{config.out_dir} is at step {step} already, as --steps asks: nothing to do (pass --steps above "
            f"{step} to train on)")
    return History.read(Path(config.out_dir) / LOSSES_FILE, up_to=step)


def _write_losses(history: History, out_dir: Path) -> None:
    (out_dir / LOSSES_FILE).write_text(json.dumps(history.to_json(), indent=1))
    draw_losses(history, out_dir / PLOT_FILE)


def train(model: nn.Module, loss_fn: LossFn, batches: Iterable, val_batches: Iterable | None,
          config: TrainConfig, optimizer: torch.optim.Optimizer | None = None,
          log: Callable[[str], None] | None = None,
          no_validation: str = "the validation batches are empty") -> History:
    """Train `model` for ``config.steps`` steps in total; resumes from ``out_dir/checkpoint.pt`` if present.

    loss_fn(model, batch) -> scalar; batches: an iterable of batches, started again when exhausted;
    val_batches: iterated whole every `validate_every` steps and at the end (mean loss, no grad); when
    it is None or gives no batch, "no validation set: `no_validation`" is said once and recorded;
    optimizer: default ``Adam(model.parameters(), lr=config.lr)``. The model is moved to the device.
    Returns the `History` of every step so far (also in ``out_dir/losses.json``). An `out_dir` that cannot
    hold the run, or is already past ``config.steps``, is a `RunDirError` before any step (`start_step`).

    Resuming restores model, optimizer, step and torch's CPU RNG state; the batches start from the
    beginning of their iterable again (a shuffled loader gives its first epoch's order again).
    `log` hears where a run starts or resumes. Ctrl-C (KeyboardInterrupt) saves a checkpoint of the
    last finished step before it propagates, so the same call resumes from there.
    """
    from tqdm.auto import tqdm

    device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device)
    model.train()
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    out_dir = Path(config.out_dir)
    checkpoint = out_dir / CHECKPOINT_FILE
    step = start_step(model, config)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"{out_dir}: cannot create it ({exc.strerror}); choose another --out") from None
    torch.manual_seed(config.seed)
    if checkpoint.is_file():
        try:
            load_checkpoint(model, checkpoint, optimizer)
            saved = read_checkpoint(checkpoint)
            step, rng_state = _resume_state(checkpoint, saved)
        except CheckpointError as exc:
            raise RunDirError(f"{exc}; {ANOTHER_OUT}") from None
        if rng_state is not None:
            torch.set_rng_state(rng_state)
    if step == config.steps:
        return finished(config, step, log)
    history = History.read(out_dir / LOSSES_FILE, up_to=step)
    if log is not None:
        log(f"resuming from step {step}, training to {config.steps} ({checkpoint})" if step else
            f"training {type(model).__name__} for {config.steps} steps into {out_dir}")
    if not _has_batches(val_batches):
        history.no_validation = no_validation if val_batches is not None else "no validation batches were given"
        val_batches = None
        if log is not None:
            log(f"no validation set: {history.no_validation}; val_loss is not recorded")

    data = _forever(batches)
    bar = tqdm(total=config.steps, initial=step, desc=type(model).__name__, disable=not config.progress,
               dynamic_ncols=True)
    try:
        while step < config.steps:
            loss = loss_fn(model, next(data))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at step {step + 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            value = loss.item()
            history.step.append(step)
            history.train_loss.append(value)
            postfix = {"loss": f"{value:.4g}"}
            last = step == config.steps
            if val_batches is not None and (step % config.validate_every == 0 or last):
                val = _validate(model, loss_fn, val_batches)
                if val is not None:
                    history.val_step.append(step)
                    history.val_loss.append(val)
                    postfix["val"] = f"{val:.4g}"
            bar.set_postfix(postfix)
            bar.update(1)
            if step % config.checkpoint_every == 0 or last:
                _save(model, optimizer, out_dir, step)
                _write_losses(history, out_dir)
    except KeyboardInterrupt:
        bar.close()
        if step > history.start_step:  # the optimizer step of `step` is complete: keep it
            _save(model, optimizer, out_dir, step)
            _write_losses(history, out_dir)
            if log is not None:
                log(f"interrupted: checkpoint of step {step} saved to {checkpoint}; run the same command to resume")
        raise
    finally:
        bar.close()
    return history


TRAIN_COLOUR, VAL_COLOUR, NOTE_COLOUR = (31, 119, 180), (255, 127, 14), (96, 96, 96)


def draw_losses(history: History, path: str | os.PathLike, size: tuple[int, int] = (480, 300)) -> Path:
    """A small PNG of the train (blue) and validation (orange) losses against the step (Pillow only); a run
    without a validation set says "no validation set" (grey) where the validation legend would be."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=12)  # FreeType's; without it, Pillow's small bitmap font
    except (ImportError, ValueError, TypeError):
        font = ImageFont.load_default()
    width, height = size
    left, right, top, bottom = 56, 12, 22, 28
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    values = history.train_loss + history.val_loss
    steps = history.step + history.val_step
    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    if values:
        lo, hi = min(values), max(values)
        hi = hi if hi > lo else lo + 1.0
        s0, s1 = min(steps), max(steps)
        s1 = s1 if s1 > s0 else s0 + 1

        def xy(s: int, v: float) -> tuple[float, float]:
            return (left + (s - s0) / (s1 - s0) * (width - left - right),
                    height - bottom - (v - lo) / (hi - lo) * (height - top - bottom))

        for xs, ys, colour in ((history.step, history.train_loss, TRAIN_COLOUR),
                               (history.val_step, history.val_loss, VAL_COLOUR)):
            points = [xy(s, v) for s, v in zip(xs, ys)]
            if len(points) > 1:
                draw.line(points, fill=colour, width=2)
            for x, y in points if len(points) <= 1 or colour == VAL_COLOUR else ():
                draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        draw.text((4, top - 4), f"{hi:.4g}", fill="black", font=font)
        draw.text((4, height - bottom - 10), f"{lo:.4g}", fill="black", font=font)
        draw.text((left, height - bottom + 6), f"step {s0}", fill="black", font=font)
        last = f"step {s1}"
        draw.text((width - right - draw.textlength(last, font=font), height - bottom + 6), last, fill="black",
                  font=font)
    legend = [("train", TRAIN_COLOUR), ("validation", VAL_COLOUR) if history.no_validation is None else
              ("no validation set", NOTE_COLOUR)]
    x = left
    for text, colour in legend:
        draw.text((x, 4), text, fill=colour, font=font)
        x += draw.textlength(text, font=font) + 16
    path = Path(path)
    image.save(path)
    return path
