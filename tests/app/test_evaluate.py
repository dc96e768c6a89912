"""`dropj evaluate reward`: accuracy by DROPe's rule, the soft Bradley-Terry loss, per label; checked against
an independent numpy computation, and run on the release's 18 checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import factory
from dropj.models import PreferenceRewardEnsemble
from dropj.models.evaluate import evaluate_preferences, label_side, predicted_side
from dropj_datasets.app import evaluate

NOTES = [f"GUI_s20_{variant}_resp{resp}" for variant in ("just", "nojusteq", "nojustnoeq") for resp in (400, 500)]


def test_the_equal_margin_and_the_label_sides():
    p = torch.tensor([0.9, 0.651, 0.649, 0.5, 0.351, 0.349, 0.1], dtype=torch.float64)
    assert predicted_side(p).tolist() == [1.0, 1.0, 0.5, 0.5, 0.5, 0.0, 0.0]
    y = torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0], dtype=torch.float64)
    assert label_side(y).tolist() == [1.0, 1.0, 0.5, 0.0, 0.0]


def _numpy_member(state: dict, x: np.ndarray) -> np.ndarray:
    h = x
    for k in (0, 2, 4):
        h = h @ state[f"{k}.weight"].T.astype(np.float64) + state[f"{k}.bias"].astype(np.float64)
        h = np.where(h > 0, h, 0.01 * h)
    return np.tanh(h @ state["6.weight"].T.astype(np.float64) + state["6.bias"].astype(np.float64))[..., 0]


def test_metrics_equal_an_independent_computation():
    torch.manual_seed(1)
    model = PreferenceRewardEnsemble(11, members=3, hidden=16)
    rng = np.random.default_rng(0)
    left, right = rng.standard_normal((2, 40, 20, 11)).astype(np.float32)
    labels = rng.choice([0.0, 0.25, 0.5, 0.75, 1.0], size=40)
    result = evaluate_preferences(model, torch.as_tensor(left), torch.as_tensor(right), torch.as_tensor(labels),
                                  batch_size=7)
    states = [{k: v.numpy() for k, v in model.member(m).state_dict().items()} for m in range(3)]
    def returns(x):
        return np.mean([_numpy_member(s, x.astype(np.float64)).sum(axis=1) for s in states], axis=0)

    d = returns(left) - returns(right)
    p = 1 / (1 + np.exp(-d))
    loss = -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    predicted = np.where(np.abs(2 * p - 1) <= 0.3, 0.5, np.where(p > 0.5, 1.0, 0.0))
    wanted = np.where(labels > 0.5, 1.0, np.where(labels < 0.5, 0.0, 0.5))
    assert result.count == 40
    assert result.accuracy == pytest.approx(np.mean(predicted == wanted), abs=1e-12)
    assert result.mean_loss == pytest.approx(loss.mean(), rel=1e-5)
    for label, row in result.per_label.items():
        mask = labels == label
        assert row.count == mask.sum() and row.mean_p_left == pytest.approx(p[mask].mean(), rel=1e-5)


@pytest.fixture(scope="module")
def preferences_dir(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    factory.build("dropj_carracing/preferences_dropj", factory.dummy_data("dropj_carracing"), data)
    return data


@pytest.mark.parametrize("note", NOTES)
def test_runs_on_every_published_checkpoint(real_data, preferences_dir, tmp_path, note):
    out = tmp_path / "eval.json"
    report = evaluate.evaluate_reward(str(real_data / "carracing" / "pref_reward_models"),
                                      "dropj_carracing/preferences_dropj", note=note, data_dir=str(preferences_dir),
                                      responses="0:", out=str(out), log=lambda line: None)
    assert json.loads(out.read_text()) == report
    assert report["count"] == 8 and 0.0 <= report["accuracy"] <= 1.0 and report["mean_loss"] > 0
    assert sum(row["count"] for row in report["per_label"].values()) == 8


def test_a_response_range_selects_by_index(preferences_dir):
    torch.manual_seed(0)
    left, right, labels = evaluate.pairs("dropj_carracing/preferences_dropj", str(preferences_dir), (0, 5))
    all_left, _, all_labels = evaluate.pairs("dropj_carracing/preferences_dropj", str(preferences_dir), (0, None))
    assert left.shape[1:] == (20, 547) and len(labels) < len(all_labels)
    assert torch.equal(left, all_left[:len(labels)])
    with pytest.raises(ValueError, match="START:STOP"):
        evaluate.parse_range("5")
