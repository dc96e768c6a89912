"""Issue 9: one line per mistake from `dropj` (exit 2, a traceback only with --debug); `verify` exits 1 only
for a mismatch; `train` says where it resumes and keeps its progress on Ctrl-C."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow_datasets as tfds
import torch

import dropj_datasets  # noqa: F401
from factory import legacy as legacy_factory
from dropj_datasets import schema

REAL = schema.spec_for("dropj_carracing", "real")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", NO_GCE_CHECK="true")


def dropj(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dropj_datasets.cli", *map(str, args)], capture_output=True,
                          text=True, env=ENV, timeout=600)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    legacy_factory.make_real_source(root / "m", REAL, lengths=(12, 8, 8, 8))
    builder = tfds.builder("dropj_carracing/real", data_dir=str(root / "d"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root / "m")))
    return root


def _one_line(done: subprocess.CompletedProcess, command: str, *fragments: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-3000:]
    assert lines[0].startswith(f"dropj {command}: error: ") and "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("args,fragments", [
    (["--steps", "-5"], ["argument --steps: must be at least 1, got -5"]),
    (["--batch_size", "0"], ["argument --batch_size: must be at least 1, got 0"]),
    (["--lr", "nan"], ["argument --lr: must be a positive number"]),
    (["--checkpoint_every", "x"], ["argument --checkpoint_every: expected a whole number"]),
    (["--dataset", "dropj_carracing/raal"], ["did you mean 'dropj_carracing/real'?"]),
    (["--dataset", "dropj_carracing/dream"], ["the vae model trains on frames"]),
])
def test_train_mistakes_are_one_line(data, tmp_path, args, fragments):
    _one_line(dropj("train", "vae", "--data_dir", data / "d", "--out", tmp_path / "run", *args), "train", *fragments)


@pytest.mark.slow
def test_train_on_a_data_dir_not_built_is_one_line(tmp_path):
    _one_line(dropj("train", "vae", "--data_dir", tmp_path / "empty", "--out", tmp_path / "run"), "train",
              "dropj_carracing/real: not built under", "tfds build")


@pytest.mark.slow
def test_train_out_being_a_file_is_one_line(data, tmp_path):
    (tmp_path / "file").write_text("x")
    _one_line(dropj("train", "vae", "--data_dir", data / "d", "--out", tmp_path / "file", "--steps", "1"), "train",
              "is a file; --out must be a directory")


@pytest.mark.slow
def test_export_mistakes_are_one_line(data, tmp_path):
    (tmp_path / "file").write_text("x")
    _one_line(dropj("export", "dropj_carracing/real", "--data_dir", data / "d", "--out", tmp_path / "file"), "export",
              "is a file; --out must be a directory")
    _one_line(dropj("export", data / "d" / "dropj_carracing", "--out", tmp_path / "o"), "export",
              "is a dataset folder: pass a version folder")
    _one_line(dropj("export", data / "d" / "dropj_carracing" / "real", "--out", tmp_path / "o"), "export",
              "is a config folder: pass its version folder, e.g.")
    _one_line(dropj("export", "dropj_carracing/real", "--data_dir", tmp_path / "none", "--out", tmp_path / "o"),
              "export", "not built under")
    _one_line(dropj("export", "--out", tmp_path / "o"), "export", "the following arguments are required: dataset")


@pytest.mark.slow
def test_verify_exits_2_for_errors_and_1_only_for_a_mismatch(data, tmp_path):
    (tmp_path / "empty").mkdir()
    _one_line(dropj("verify", "dropj_carracing/real", "--data_dir", data / "d", "--manual_dir", tmp_path / "empty"),
              "verify", "no source file of dropj_carracing/real found")
    assert dropj("verify", "dropj_carracing/real", "--data_dir", data / "d", "--manual_dir", data / "m",
                 "-q").returncode == 0
    other = tmp_path / "other"
    legacy_factory.make_real_source(other, REAL, lengths=(12, 8, 8, 8), seed=5)
    done = dropj("verify", "dropj_carracing/real", "--data_dir", data / "d", "--manual_dir", other, "-q")
    assert done.returncode == 1 and "MISMATCH" in done.stdout


def test_debug_shows_the_traceback(tmp_path):
    done = dropj("--debug", "export", "dropj_carracing/real", "--data_dir", tmp_path / "none", "--out", tmp_path / "o")
    assert done.returncode != 0 and "Traceback" in done.stderr


@pytest.mark.slow
def test_train_says_where_it_resumes(data, tmp_path):
    first = dropj("train", "vae", "--data_dir", data / "d", "--out", tmp_path / "run", "--steps", "2",
                  "--batch_size", "4", "--validate_every", "1", "--checkpoint_every", "1")
    assert first.returncode == 0, first.stderr[-2000:]
    assert "training ConvVAE for 2 steps" in first.stdout
    again = dropj("train", "vae", "--data_dir", data / "d", "--out", tmp_path / "run", "--steps", "3",
                  "--batch_size", "4")
    assert again.returncode == 0 and f"resuming from step 2 of 3 ({tmp_path / 'run' / 'checkpoint.pt'})" in again.stdout


def test_ctrl_c_saves_a_checkpoint_and_the_run_resumes_from_it(tmp_path):
    from dropj.models import train as loop

    model = torch.nn.Linear(2, 1)
    batches = [torch.ones(4, 2)] * 10

    def loss_fn(m, batch, stop_at=[5]):  # noqa: B006 - a counter shared across calls
        stop_at[0] -= 1
        if stop_at[0] == 0:
            raise KeyboardInterrupt
        return m(batch).pow(2).mean()

    config = loop.TrainConfig(steps=8, out_dir=str(tmp_path), checkpoint_every=100, validate_every=100,
                              progress=False)
    lines: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        loop.train(model, loss_fn, batches, None, config, log=lines.append)
    assert any("interrupted: checkpoint of step 4 saved" in line for line in lines)
    lines.clear()
    history = loop.train(torch.nn.Linear(2, 1), lambda m, b: m(b).pow(2).mean(), batches, None, config,
                         log=lines.append)
    assert lines[0].startswith("resuming from step 4 of 8") and history.step[-1] == 8
