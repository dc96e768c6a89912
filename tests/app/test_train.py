"""dropj.models.train and dropj.loaders.training_data on the built sample: each loss falls, runs resume
exactly, the outputs are written, `dropj train` works end to end, and the loop stays TensorFlow-free. Issue 25:
a run without a validation set says so once, in losses.json and on its plot; every refusal of an --out is one
line that says what to do, and doing it works; resuming says where it is and where it goes."""

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
from dropj.models import ConvVAE, MDNRNN, PreferenceRewardEnsemble, read_checkpoint, save_checkpoint
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
                     "val_step": history.val_step, "val_loss": history.val_loss, "validation": True}
    with Image.open(tmp_path / "losses.png") as image:
        assert image.format == "PNG" and image.size == (480, 300)
        assert _pixels(image, loop.VAL_COLOUR) > 0 and _grey(image, LEGEND) == 0
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


# --- issue 25: training says what it does -------------------------------------------------------------------------


LEGEND = (56, 0, 480, 18)  # the plot's legend row, right of the y axis's labels


def _pixels(image: Image.Image, colour: tuple[int, int, int]) -> int:
    """How many pixels of `image` are exactly `colour` (the curves are drawn without antialiasing)."""
    return sum(1 for pixel in image.convert("RGB").getdata() if pixel == colour)


def _grey(image: Image.Image, box: tuple[int, int, int, int]) -> int:
    """How many pixels within `box` are grey (the note's antialiased text; the legends are blue and orange)."""
    return sum(1 for r, g, b in image.convert("RGB").crop(box).getdata() if r == g == b < 200)


def dropj(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dropj_datasets.app", *map(str, args)], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def _refused(done: subprocess.CompletedProcess, *fragments: str) -> str:
    """The one line of a refusal (exit 2, no traceback, no key dump), checked for `fragments`."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, (done.returncode, done.stderr[-3000:])
    line = lines[0]
    assert line.startswith("dropj train: error: ") and "unexpected" not in line and len(line) < 300, line
    for fragment in fragments:
        assert fragment in line, line
    return line


def _reward_run(data_dir: str, out: Path, steps: int) -> None:
    from dropj_datasets.app.train import train_from_dataset

    train_from_dataset("reward", data_dir, dataset="dropj_carracing/preferences_dropj", out_dir=str(out), steps=steps,
                       batch_size=2, num_workers=0, progress=False)


def test_a_run_without_a_validation_set_says_so_once_on_its_plot_and_in_its_losses(data_dir, tmp_path):
    """The sample's preferences_dropj holds out example 0, a skipped query: no labelled pair validates. Before,
    val_loss was an empty list without a word, and the plot's legend named a line that was not there."""
    from dropj_datasets.app.train import train_from_dataset

    _, validation = training_data.reward_data(data_dir)
    assert len(validation.dataset) == 0  # the case itself: the held-out part has no labelled pair
    lines: list[str] = []
    history = train_from_dataset("reward", data_dir, dataset="dropj_carracing/preferences_dropj",
                                 out_dir=str(tmp_path / "run"), steps=3, batch_size=2, validate_every=1,
                                 num_workers=0, progress=False, log=lines.append)
    said = [line for line in lines if "validation" in line]
    assert said == ["no validation set: the held-out part of dropj_carracing/preferences_dropj (stored elements 0, "
                    "10, 20, ...) has no labelled pair; val_loss is not recorded"], lines
    saved = json.loads((tmp_path / "run" / "losses.json").read_text())
    assert saved["validation"] is False and saved["val_loss"] == [] and saved["step"] == [1, 2, 3]
    assert saved["no_validation"] == history.no_validation and "has no labelled pair" in saved["no_validation"]
    with Image.open(tmp_path / "run" / "losses.png") as image:
        assert _pixels(image, loop.VAL_COLOUR) == 0  # no validation legend, no validation line
        assert _grey(image, LEGEND) > 20  # "no validation set", in the legend's row
        assert _pixels(image, loop.TRAIN_COLOUR) > 100


def test_the_loop_says_no_validation_set_for_empty_or_absent_batches(tmp_path):
    for val_batches, why in (([], "the validation batches are empty"), (None, "no validation batches were given")):
        lines: list[str] = []
        config = loop.TrainConfig(steps=2, out_dir=str(tmp_path / str(why[:2])), progress=False, device="cpu")
        history = loop.train(torch.nn.Linear(2, 1), lambda m, b: m(b).pow(2).mean(), [torch.ones(3, 2)],
                             val_batches, config, log=lines.append)
        assert lines[1:] == [f"no validation set: {why}; val_loss is not recorded"] and history.no_validation == why


@pytest.mark.slow
def test_training_into_another_models_run_is_one_line_and_its_advice_works(data_dir, tmp_path):
    """It printed one 1,300-character line of state-dict keys."""
    _reward_run(data_dir, tmp_path / "reward", 1)
    vae = ("train", "vae", "dropj_carracing/real", "--data_dir", data_dir, "--steps", "1", "--batch_size", "4",
           "--num_workers", "0")
    line = _refused(dropj(*vae, "--out", tmp_path / "reward"),
                    f"{tmp_path / 'reward'} holds a run of PreferenceRewardEnsemble (checkpoint.pt), not of ConvVAE; "
                    "choose another --out or remove it")
    assert "missing keys" not in line and "members." not in line
    assert read_checkpoint(tmp_path / "reward" / "checkpoint.pt")["model"] == "PreferenceRewardEnsemble"  # untouched
    assert dropj(*vae, "--out", tmp_path / "vae").returncode == 0  # another --out
    import shutil

    shutil.rmtree(tmp_path / "reward")  # or remove it
    done = dropj(*vae, "--out", tmp_path / "reward")
    assert done.returncode == 0 and read_checkpoint(tmp_path / "reward" / "checkpoint.pt")["model"] == "ConvVAE"


def test_a_checkpoint_of_other_weights_is_refused_in_one_short_line(tmp_path):
    """Runs written before the model's name was recorded, and runs of the same model with other settings."""
    reward = PreferenceRewardEnsemble(schema.CARRACING.latent_dim + 3)
    save_checkpoint(reward, None, tmp_path / "old" / "checkpoint.pt", extra={"step": 3})  # no 'model' key
    with pytest.raises(loop.RunDirError, match=r"holds a checkpoint that is not a run of this ConvVAE \(checkpoint.pt: "
                                               r"none of its 24 weights is one of this model's \(its first: "
                                               r"'members.0.0.weight'\)\); choose another --out or remove it$"):
        loop.check_out_dir(ConvVAE.for_env(schema.CARRACING), tmp_path / "old")
    save_checkpoint(reward, None, tmp_path / "cr" / "checkpoint.pt",
                    extra={"step": 3, "model": "PreferenceRewardEnsemble"})
    obstacle = PreferenceRewardEnsemble(schema.CHUCKC.latent_dim + 3)
    with pytest.raises(loop.RunDirError) as refused:
        loop.check_out_dir(obstacle, tmp_path / "cr")
    assert str(refused.value) == (
        f"{tmp_path / 'cr'} holds a run of PreferenceRewardEnsemble with other settings (environment or size) "
        f"(checkpoint.pt: members.0.0.weight: expected shape (256, {schema.CHUCKC.latent_dim + 3}), got (256, 547), "
        "and 2 more differences); choose another --out or remove it")
    assert loop.check_out_dir(reward, tmp_path / "cr") == 3 and loop.check_out_dir(obstacle, tmp_path / "new") == 0


@pytest.mark.slow
def test_every_refusal_of_an_out_says_what_to_do_and_doing_it_works(data_dir, tmp_path):
    reward = ("train", "reward", "dropj_carracing/preferences_dropj", "--data_dir", data_dir, "--steps", "1",
              "--batch_size", "2", "--num_workers", "0")
    (tmp_path / "file").write_text("x")
    _refused(dropj(*reward, "--out", tmp_path / "file"), "is a file, not a run directory; choose another --out")
    _refused(dropj(*reward, "--out", tmp_path / "file" / "run"),
             f"{tmp_path / 'file'} is a file, so no directory can be made there; choose another --out")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("x")
    _refused(dropj(*reward, "--out", tmp_path / "notes"),
             "holds other files (e.g. 'todo.txt') and no checkpoint.pt: it is not a training run; choose another "
             "--out (a new or empty directory)")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "x" and len(list((tmp_path / "notes").iterdir())) == 1
    (tmp_path / "empty").mkdir()
    assert dropj(*reward, "--out", tmp_path / "empty").returncode == 0  # an empty directory, as the advice says
    (tmp_path / "empty" / "losses.json").write_text("{not json")
    _refused(dropj(*reward, "--out", tmp_path / "empty", "--steps", "2"),
             f"{tmp_path / 'empty' / 'losses.json'}: not a run's losses (", "); remove it (the run resumes without "
             "them) or choose another --out")
    (tmp_path / "empty" / "losses.json").unlink()
    done = dropj(*reward, "--out", tmp_path / "empty", "--steps", "2")
    assert done.returncode == 0 and json.loads((tmp_path / "empty" / "losses.json").read_text())["step"] == [2]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_out_that_cannot_be_written_is_refused_before_any_step(tmp_path):
    (tmp_path / "locked").mkdir(mode=0o500)
    model = torch.nn.Linear(2, 1)
    for out, said in ((tmp_path / "locked", "is not writable; choose another --out"),
                      (tmp_path / "locked" / "run", "cannot create it, ")):
        with pytest.raises(loop.RunDirError, match=said):
            loop.check_out_dir(model, out)


@pytest.mark.slow
def test_resume_messages_say_where_the_run_is_and_where_it_goes(data_dir, tmp_path):
    """`--steps` below the checkpoint printed "resuming from step 200 of 10"."""
    out = tmp_path / "run"
    _reward_run(data_dir, out, 2)
    before = {name: (out / name).read_bytes() for name in ("checkpoint.pt", "losses.json", "losses.png")}
    reward = ("train", "reward", "dropj_carracing/preferences_dropj", "--data_dir", data_dir, "--out", out,
              "--batch_size", "2", "--num_workers", "0")
    _refused(dropj(*reward, "--steps", "1"),
             f"{out} is at step 2 already, more than --steps 1: nothing to do; pass --steps above 2 to train on, or "
             "another --out for a new run")
    same = dropj(*reward, "--steps", "2")
    assert same.returncode == 0 and same.stdout.splitlines() == [
        f"{out} is at step 2 already, as --steps asks: nothing to do (pass --steps above 2 to train on)"], same.stdout
    assert before == {name: (out / name).read_bytes() for name in before}  # both left the run as it was
    more = dropj(*reward, "--steps", "3")
    assert more.returncode == 0, more.stderr[-2000:]
    assert f"resuming from step 2, training to 3 ({out / 'checkpoint.pt'})" in more.stdout.splitlines()
    assert read_checkpoint(out / "checkpoint.pt")["step"] == 3
