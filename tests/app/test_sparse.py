"""Sparse reward models (ReQueST, DROS) trained from RLDS: the labelled steps, the loss, `dropj train sparse`."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_datasets as tfds
import torch

import factory
from dropj.converters.roundtrip.built import BuiltDataset
from dropj.loaders import labelled_steps
from dropj.models import REWARD_CLASSES, SparseRewardEnsemble, load_checkpoint
from dropj.models import train as loop
from dropj_datasets import schema
from dropj_datasets.app.train import train_from_dataset


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    for config in ("request", "dros"):
        factory.build(f"dropj_carracing/{config}", factory.dummy_data("dropj_carracing"), data)
    return data


@pytest.mark.parametrize("config", ["request", "dros"])
def test_labelled_steps_are_every_step_of_every_sketch(data_dir, config):
    built = BuiltDataset.open(f"dropj_carracing/{config}", str(data_dir))
    expected = [(s[schema.OBSERVATION][k], s[schema.ACTION][k], s[schema.REWARD][k])
                for s in (e[schema.STEPS] for e in built.examples()) for k in range(len(s[schema.REWARD]))]
    steps = list(tfds.as_numpy(labelled_steps(built.builder.as_dataset(split="train", shuffle_files=False))))
    assert len(steps) == len(expected)
    for step, (obs, action, reward) in zip(steps, expected):
        assert np.array_equal(step[schema.OBSERVATION], obs) and np.array_equal(step[schema.ACTION], action)
        assert step[schema.REWARD] == reward and step[schema.OBSERVATION].dtype == obs.dtype


def test_the_loss_is_the_cross_entropy_of_the_mean_logits():
    torch.manual_seed(0)
    model = SparseRewardEnsemble(547, members=4, n_layers=2, hidden=16)
    batch = {"observation": torch.randn(6, 544, dtype=torch.float64), "action": torch.rand(6, 3),
             "reward": torch.tensor([-1.0, 0.0, 10.0, 10.0, 0.0, -1.0], dtype=torch.float64)}
    x = torch.cat([batch["observation"].float(), batch["action"]], dim=-1)
    logits = torch.stack([net(x) for net in model.reward_networks]).mean(dim=0)  # the members' mean
    targets = [REWARD_CLASSES.index(r) for r in batch["reward"].tolist()]
    expected = -torch.log_softmax(logits, dim=-1)[torch.arange(6), targets].mean()
    assert torch.allclose(loop.sparse_batch_loss(model, batch), expected)


@pytest.mark.slow
def test_dropj_train_sparse_learns_and_writes_the_authors_format(data_dir, tmp_path):
    history = train_from_dataset("sparse", str(data_dir), dataset="dropj_carracing/request", out_dir=str(tmp_path),
                                 steps=30, batch_size=8, progress=False, validate_every=30)
    assert history.train_loss[-1] < history.train_loss[0]
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert {"model_state", "optimizer_state"} <= set(state)
    assert [k for k in state["model_state"] if k.startswith("reward_networks.0.")] == [
        f"reward_networks.0.{i}.{p}" for i in (0, 2, 4, 6, 8, 10) for p in ("weight", "bias")]
    load_checkpoint(SparseRewardEnsemble(547), tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="the sparse model trains on labelled steps"):
        train_from_dataset("sparse", str(data_dir), dataset="dropj_carracing/preferences_dropj", out_dir=str(tmp_path))
