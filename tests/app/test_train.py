"""dropj.models.train and dropj.loaders.training_data on the built sample: each loss falls, runs resume
exactly, the outputs are written, `dropj train` works end to end, and the loop stays TensorFlow-free."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow_datasets as tfds
import torch
from PIL import Image

from factory import dummy_data
import dropj_datasets  # noqa: F401  (registers the builders)
from dropj.loaders import training_data
from dropj.models import ConvVAE, MDNRNN, PreferenceRewardEnsemble, read_checkpoint
from dropj.models import train as loop
from dropj_datasets import schema

MANUAL = dummy_data("dropj_carracing")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("train_data")
    for config in ("real", "dream", "preferences_dropj", "dros"):
        builder = tfds.builder(f"dropj_carracing/{config}", data_dir=str(root))
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(MANUAL)))
    return str(root)


def _first_batch(iterable) -> dict | torch.Tensor:
    return next(iter(iterable.loader(num_workers=0)))


CASES = {
    "vae": (lambda: ConvVAE.for_env(schema.CARRACING), loop.vae_batch_loss, loop.VAETrainConfig,
            lambda d: training_data.vae_data(d, batch_size=4, shuffle_buffer=0)),
    "mdnrnn": (lambda: MDNRNN.for_env(schema.CARRACING), loop.mdnrnn_batch_loss, loop.MDNRNNTrainConfig,
               lambda d: training_data.mdnrnn_data(d, sequence_length=8, batch_size=2, shuffle_buffer=0)),
    "reward": (lambda: PreferenceRewardEnsemble(schema.CARRACING.latent_dim + 3), loop.reward_batch_loss,
               loop.RewardTrainConfig, lambda d: training_data.reward_data(d, batch_size=4, shuffle_buffer=0)),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(CASES))
def test_a_tiny_run_reduces_the_loss_and_writes_its_outputs(kind, data_dir, tmp_path):
    make_model, loss_fn, config_class, data = CASES[kind]
    train, _ = data(data_dir)
    batch = _first_batch(train)  # one real batch, fitted repeatedly: its loss must fall
    torch.manual_seed(0)
    config = config_class(steps=8, lr=1e-3, validate_every=1, checkpoint_every=4, out_dir=str(tmp_path),
                          progress=False, device="cpu")
    history = loop.train(make_model(), loss_fn, [batch], [batch], config)
    assert history.step == list(range(1, 9)) and len(history.val_loss) == 8
    assert history.val_loss[-1] < history.val_loss[0], history.val_loss
    saved = json.loads((tmp_path / "losses.json").read_text())
    assert saved == {"step": history.step, "train_loss": history.train_loss,
                     "val_step": history.val_step, "val_loss": history.val_loss}
    with Image.open(tmp_path / "losses.png") as image:
        assert image.format == "PNG" and image.size == (480, 300)
    assert read_checkpoint(tmp_path / "checkpoint.pt")["step"] == 8


@pytest.mark.parametrize("loader", ["map", "tf.data"])
def test_the_split_holds_out_every_tenth_episode(data_dir, loader):
    train, val = training_data.vae_data(data_dir, batch_size=100, shuffle_buffer=0, loader=loader)
    n_train, n_val = (sum(len(b) for b in d.loader()) for d in (train, val))
    episodes = tfds.builder("dropj_carracing/real", data_dir=data_dir).as_dataset(split="train")
    lengths = [int(ep[schema.STEPS].cardinality()) for ep in episodes]
    assert (n_val, n_train) == (lengths[0], sum(lengths[1:]))  # 3 episodes: index 0 validates


def test_held_out_takes_every_tenth_index():
    train, validation = training_data.held_out(23)
    assert validation.tolist() == [0, 10, 20] and len(train) == 20 and not set(train) & set(validation)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["vae", "mdnrnn", "reward", "sparse"])
def test_both_readers_give_the_same_batches(kind, data_dir):
    """The TF-free reader (the default) and the tf.data one, in stored order: batch for batch equal."""
    make = {"vae": training_data.vae_data, "reward": training_data.reward_data, "sparse": training_data.sparse_data,
            "mdnrnn": functools.partial(training_data.mdnrnn_data, sequence_length=8)}[kind]
    for side in (0, 1):  # train, then validation
        ours = list(make(data_dir, batch_size=3, shuffle_buffer=0)[side].loader())
        theirs = list(make(data_dir, batch_size=3, shuffle_buffer=0, loader="tf.data")[side].loader())
        assert len(ours) == len(theirs) and (len(ours) > 0 or side == 1)
        for a, b in zip(ours, theirs):
            a, b = (x if isinstance(x, dict) else {"frames": x} for x in (a, b))
            assert set(a) == set(b)
            for key in a:
                assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def test_a_shuffled_map_loader_gives_each_item_once_per_pass_in_a_seeded_order(data_dir):
    loader = training_data.vae_data(data_dir, batch_size=5, seed=3)[0].loader()
    passes = [torch.cat(list(loader)) for _ in range(2)]  # two passes of one loader, as the training loop
    again = torch.cat(list(training_data.vae_data(data_dir, batch_size=5, seed=3)[0].loader()))
    stored = torch.cat(list(training_data.vae_data(data_dir, batch_size=5, shuffle_buffer=0)[0].loader()))
    assert torch.equal(passes[0], again)  # the same seed, the same order
    assert not torch.equal(passes[0], passes[1]) and not torch.equal(passes[0], stored)  # a new order each pass

    def rows(frames: torch.Tensor) -> list:
        return sorted(frame.numpy().tobytes() for frame in frames)

    assert rows(passes[0]) == rows(passes[1]) == rows(stored)


@pytest.mark.slow
def test_dropj_train_reads_without_tensorflow_in_any_process(data_dir, tmp_path):
    code = f"""
import sys
from dropj_datasets.app.train import train_from_dataset
lines = []
history = train_from_dataset('vae', {data_dir!r}, out_dir={str(tmp_path / 'vae')!r}, steps=3, batch_size=4,
                             num_workers=2, progress=False, log=lines.append)
print(lines[-2])
print(history.step, sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'rlds', 'reverb')))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-3000:]
    said, result = done.stdout.splitlines()[-2:]
    assert said == "reading dropj_carracing/real without TensorFlow, 2 workers, on cpu"
    assert result == "[1, 2, 3] []"
    assert "terminate called" not in done.stderr and "Traceback" not in done.stderr


def test_a_device_that_cannot_be_used_is_one_clear_error(data_dir, tmp_path):
    from dropj_datasets.app.train import checked_device

    assert checked_device("cpu").type == "cpu"
    assert checked_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="not a torch device"):
        checked_device("gpu please")
    with pytest.raises(ValueError, match="dropj trains on cpu, cuda or mps"):
        checked_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"--device cuda: torch .* docs/install.md"):
            checked_device("cuda")
    cmd = [str(Path(sys.executable).parent / "dropj"), "train", "vae", "--data_dir", data_dir, "--out",
           str(tmp_path / "o"), "--device", "gpu please"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "not a torch device" in done.stderr and not (tmp_path / "o").exists()


def _pairs(n: int = 4) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    return [{"left_observation": torch.randn(n, 20, 544, generator=g), "left_action": torch.rand(n, 20, 3, generator=g),
             "right_observation": torch.randn(n, 20, 544, generator=g),
             "right_action": torch.rand(n, 20, 3, generator=g),
             "label": torch.tensor([1.0, 0.0, 0.5, 1.0][:n], dtype=torch.float64)}]


def _run(out: Path, steps: int) -> tuple[PreferenceRewardEnsemble, loop.History]:
    torch.manual_seed(0)
    model = PreferenceRewardEnsemble(547)
    config = loop.RewardTrainConfig(steps=steps, lr=1e-3, validate_every=2, checkpoint_every=2, out_dir=str(out),
                                    progress=False, device="cpu")
    return model, loop.train(model, loop.reward_batch_loss, _pairs(), _pairs(), config)


def test_resume_continues_at_the_saved_step_with_the_saved_state(tmp_path):
    straight, _ = _run(tmp_path / "straight", 6)
    first, _ = _run(tmp_path / "resumed", 3)
    saved = read_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    assert saved["step"] == 3
    # Nothing left to do: the fresh model is given exactly the saved state, at the saved step.
    again, history = _run(tmp_path / "resumed", 3)
    assert history.start_step == 3 and history.step == [1, 2, 3]
    for key, value in again.state_dict().items():
        assert torch.equal(value, saved["model_state"][key]) and torch.equal(value, first.state_dict()[key])
    # Continuing to 6 gives the same weights as 6 steps straight (model, Adam moments and step restored).
    resumed, history = _run(tmp_path / "resumed", 6)
    assert history.start_step == 3 and history.step == list(range(1, 7))
    assert json.loads((tmp_path / "resumed" / "losses.json").read_text())["val_step"] == [2, 3, 4, 6]
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)
    assert read_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["optimizer_state"]["state"][0]["step"] == 6


def test_configs_report_every_problem_at_once():
    with pytest.raises(ValueError, match=r"invalid RewardTrainConfig: env must be one of \['carracing', 'chuckc', "
                                         r"'chuckccar'\], got 'mars'; steps must be a positive int, got 0; "
                                         r"lr must be a positive finite number, got -1; members must be a "
                                         r"positive int, got 0"):
        loop.RewardTrainConfig(env="mars", steps=0, lr=-1, members=0)


@pytest.mark.slow
def test_cli_trains_the_reward_model_end_to_end(data_dir, tmp_path):
    out = tmp_path / "reward"
    cmd = [str(Path(sys.executable).parent / "dropj"), "train", "reward", "--data_dir", data_dir,
           "--dataset", "dropj_carracing/preferences_dropj", "--out", str(out), "--steps", "3",
           "--batch_size", "2", "--lr", "1e-3", "--seed", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "reward: steps 1-3, train loss" in done.stdout
    assert read_checkpoint(out / "checkpoint.pt")["step"] == 3
    assert json.loads((out / "losses.json").read_text())["step"] == [1, 2, 3]


def test_the_training_loop_does_not_import_tensorflow(tmp_path):
    code = ("import sys, dropj.models.train; "
            "bad = [m for m in ('tensorflow', 'tensorflow_datasets', 'rlds') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
