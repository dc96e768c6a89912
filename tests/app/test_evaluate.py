"""`dropj evaluate reward`: accuracy by the authors' rule of each method (DROP: the larger predicted return;
DROPe, DROPJ: equal within 0.3) with the other rule beside it, the soft Bradley-Terry loss, per label; checked
against an independent numpy computation, and run on the release's 18 checkpoints and real responses."""

from __future__ import annotations

import json
import pickle
import re

import numpy as np
import pytest
import torch

import factory
from dropj.models import PreferenceRewardEnsemble, preference_member_path
from dropj.models.evaluate import (EQUAL_WITHIN, LARGER_RETURN, evaluate_preferences, label_side, larger_return_side,
                                   predicted_side, rule_for)
from dropj_datasets import schema
from dropj_datasets.app import evaluate
from factory import legacy as legacy_factory

NOTES = [f"GUI_s20_{variant}_resp{resp}" for variant in ("just", "nojusteq", "nojustnoeq") for resp in (400, 500)]


def test_the_equal_margin_and_the_label_sides():
    p = torch.tensor([0.9, 0.651, 0.649, 0.5, 0.351, 0.349, 0.1], dtype=torch.float64)
    assert predicted_side(p).tolist() == [1.0, 1.0, 0.5, 0.5, 0.5, 0.0, 0.0]
    y = torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0], dtype=torch.float64)
    assert label_side(y).tolist() == [1.0, 1.0, 0.5, 0.0, 0.0]
    d = torch.tensor([2.0, 1e-9, 0.0, -1e-9, -2.0], dtype=torch.float64)  # R_left - R_right; a tie is Left
    assert larger_return_side(d).tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]


def test_each_method_is_scored_by_the_authors_rule():
    assert rule_for("DROP") == LARGER_RETURN
    assert [rule_for(m) for m in ("DROPe", "DROPJ", "multi-justification", None)] == [EQUAL_WITHIN] * 4


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
    by_return = evaluate_preferences(model, torch.as_tensor(left), torch.as_tensor(right), torch.as_tensor(labels),
                                     rule=LARGER_RETURN)
    states = [{k: v.numpy() for k, v in model.member(m).state_dict().items()} for m in range(3)]
    def returns(x):
        return np.mean([_numpy_member(s, x.astype(np.float64)).sum(axis=1) for s in states], axis=0)

    d = returns(left) - returns(right)
    p = 1 / (1 + np.exp(-d))
    loss = -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    predicted = np.where(np.abs(2 * p - 1) <= 0.3, 0.5, np.where(p > 0.5, 1.0, 0.0))
    wanted = np.where(labels > 0.5, 1.0, np.where(labels < 0.5, 0.0, 0.5))
    strict = wanted != 0.5  # the larger return never predicts "equal": it scores strict preferences only
    larger = np.where(d >= 0, 1.0, 0.0)
    assert result.count == by_return.count == 40 and 0 < strict.sum() < 40
    assert result.rule == EQUAL_WITHIN and by_return.rule == LARGER_RETURN
    assert result.accuracy == pytest.approx(np.mean(predicted == wanted), abs=1e-12)
    assert by_return.accuracy == pytest.approx(np.mean(larger[strict] == wanted[strict]), abs=1e-12)
    assert result.rules == by_return.rules and result.rules[LARGER_RETURN].count == strict.sum()
    assert result.mean_loss == pytest.approx(loss.mean(), rel=1e-5)
    for label, row in result.per_label.items():
        mask = labels == label
        assert row.count == mask.sum() and row.mean_p_left == pytest.approx(p[mask].mean(), rel=1e-5)
        scored = row.by_rule[LARGER_RETURN]
        if label == 0.5:
            assert (scored.count, scored.accuracy, by_return.per_label[label].accuracy) == (0, None, None)
        else:
            assert scored.accuracy == pytest.approx(np.mean(larger[mask] == wanted[mask]), abs=1e-12)


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
    assert (report["method"], report["rule"]) == ("DROPJ", EQUAL_WITHIN) and "no accuracy for DROPJ" in \
        report["rule_source"]
    assert report["accuracy"] == report["rules"][EQUAL_WITHIN]["accuracy"]
    assert report["rules"][LARGER_RETURN]["count"] == 8 - report["per_label"]["0.5"]["count"]
    assert sum(row["count"] for row in report["per_label"].values()) == 8


def test_a_response_range_selects_by_index(preferences_dir):
    torch.manual_seed(0)
    left, right, labels, method = evaluate.pairs("dropj_carracing/preferences_dropj", str(preferences_dir), (0, 5))
    all_left, _, all_labels, _ = evaluate.pairs("dropj_carracing/preferences_dropj", str(preferences_dir),
                                                (0, None))
    assert method == "DROPJ"
    assert left.shape[1:] == (20, 547) and len(labels) < len(all_labels)
    assert torch.equal(left, all_left[:len(labels)])
    with pytest.raises(ValueError, match="START:STOP"):
        evaluate.parse_range("5")


# --- the authors' rule on the release's checkpoints and responses (issue 25) ---------------------------------------

PLAIN = {"preferences_drop": "nojustnoeq", "preferences_drope": "nojusteq"}  # the method's own checkpoints


@pytest.fixture(scope="module")
def real_plain(tmp_path_factory, real_data):
    """DROP and DROPe built from the real responses, with generated clips for the 600 queries (the release's
    data.pkl is not among the real files); returns (data dir, the data.pkl written)."""
    root = tmp_path_factory.mktemp("real_plain")
    queries = legacy_factory.query_segments(600, seed=7)
    legacy_factory.write_pickle(root / "m" / "queries_s20" / "data.pkl", queries, 4)
    for config in PLAIN:
        name = schema.spec_for("dropj_carracing", config).responses_file
        (root / "m" / "responses_s20").mkdir(exist_ok=True)
        (root / "m" / "responses_s20" / name).write_bytes(
            (real_data / "carracing" / "responses_s20" / name).read_bytes())
        factory.build(f"dropj_carracing/{config}", root / "m", root / "d")
    return root / "d", queries


def _independent_accuracies(real_data, queries: dict, config: str, note: str) -> tuple[float, float, int]:
    """(larger-return accuracy, equal-within-0.3 accuracy, strict pairs) of responses 500:600, from the release's
    pickles and state_dicts alone: labels by DATA_FORMATS.md 5.3, returns by a numpy forward pass."""
    spec = schema.spec_for("dropj_carracing", config)
    responses = pickle.loads((real_data / "carracing" / "responses_s20" / spec.responses_file).read_bytes())
    states = [{k: v.numpy() for k, v in torch.load(preference_member_path(
        real_data / "carracing" / "pref_reward_models", m, note), map_location="cpu", weights_only=True).items()}
        for m in range(3)]
    d, y = [], []
    for entry in responses[500:600]:
        if entry["responses"] == "Skipped":
            continue
        answer = entry["responses"][-1][1]
        y.append({"Left": 1.0, "Right": 0.0, "Equally": 0.5}[answer])
        pair = queries[entry["video"]]
        left, right = (np.asarray(pair[k], np.float32).astype(np.float64) for k in ("segment1", "segment2"))
        d.append(np.mean([_numpy_member(s, left).sum() - _numpy_member(s, right).sum() for s in states]))
    d, y = np.array(d), np.array(y)
    p = 1 / (1 + np.exp(-d))
    strict = y != 0.5
    larger = np.where(d >= 0, 1.0, 0.0)
    by_margin = np.where(np.abs(2 * p - 1) <= 0.3, 0.5, np.where(p > 0.5, 1.0, 0.0))
    return float(np.mean(larger[strict] == y[strict])), float(np.mean(by_margin == y)), int(strict.sum())


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(PLAIN))
def test_the_real_checkpoints_are_scored_by_their_methods_rule(real_data, real_plain, tmp_path, config):
    """DROP has no "Equally": scored by the 0.3 rule every pair predicted equal counted as wrong. Its accuracy is
    now the larger-return one, and DROPe's stays the 0.3 rule's; both equal an independent computation."""
    data_dir, queries = real_plain
    note = f"GUI_s20_{PLAIN[config]}_resp500"
    lines: list[str] = []
    report = evaluate.evaluate_reward(str(real_data / "carracing" / "pref_reward_models"), f"dropj_carracing/{config}",
                                      note=note, data_dir=str(data_dir), responses="500:600",
                                      out=str(tmp_path / "eval.json"), log=lines.append)
    larger, by_margin, strict = _independent_accuracies(real_data, queries, config, note)
    assert report["rules"][LARGER_RETURN] == {"count": strict, "accuracy": pytest.approx(larger, abs=1e-12)}
    assert report["rules"][EQUAL_WITHIN] == {"count": report["count"], "accuracy": pytest.approx(by_margin, abs=1e-12)}
    assert larger != by_margin
    if config == "preferences_drop":
        assert (report["method"], report["rule"], report["accuracy"]) == ("DROP", LARGER_RETURN, report["rules"][
            LARGER_RETURN]["accuracy"]) and strict == report["count"]
        assert "reward_model_pref.py:452-454" in lines[2] and lines[2].lstrip().startswith(f"{larger:.3f}")
    else:
        assert (report["method"], report["rule"], report["accuracy"]) == ("DROPe", EQUAL_WITHIN, report["rules"][
            EQUAL_WITHIN]["accuracy"]) and strict < report["count"]
        assert "reward_model_pref.py:446-451" in lines[2] and lines[2].lstrip().startswith(f"{by_margin:.3f}")
    assert json.loads((tmp_path / "eval.json").read_text()) == report


def test_an_out_that_cannot_be_the_json_is_refused_before_evaluating_and_the_advice_works(preferences_dir, tmp_path):
    """A directory failed after the whole evaluation, naming a hidden '.NAME.*.dropj-partial' file."""
    from dropj.models import save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(PreferenceRewardEnsemble(547), None, tmp_path / "run" / "checkpoint.pt")
    (tmp_path / "file").write_text("x")
    under_a_file = tmp_path / "file" / "eval.json"
    for out, said in ((tmp_path, f"{tmp_path} is a directory; --out names the JSON file to write, e.g. "
                                 f"{tmp_path / 'eval.json'}"),
                      (under_a_file, f"{under_a_file}: {tmp_path / 'file'} is a file, so nothing can be written "
                                     "there; choose another --out")):
        with pytest.raises(ValueError, match=f"^{re.escape(said)}$"):
            evaluate.evaluate_reward(str(tmp_path / "missing-run"), "dropj_carracing/preferences_dropj",
                                     data_dir=str(preferences_dir), out=str(out), log=lambda line: None)
    report = evaluate.evaluate_reward(str(tmp_path / "run"), "dropj_carracing/preferences_dropj",
                                      data_dir=str(preferences_dir), out=str(tmp_path / "eval.json"),
                                      log=lambda line: None)
    assert json.loads((tmp_path / "eval.json").read_text()) == report and report["method"] == "DROPJ"
