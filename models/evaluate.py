"""How well a preference reward model predicts human answers (the paper's evaluation, torch only).

    result = evaluate_preferences(model, left, right, labels, rule=rule_for('DROP'))
    result.accuracy, result.rules[EQUAL_WITHIN].accuracy, result.mean_loss, result.per_label[0.75]

For each pair, the ensemble-mean returns ``R_i = sum_t r̂(s_t, a_t)`` of the left and right clips give
``d = R_1 − R_2`` and ``p_left = σ(d)``. Two rules turn them into a prediction, each the authors' for a
method (``reward_model_pref.py`` of ilkaza/DROPJ; docs/training.md):

* `LARGER_RETURN` (DROP, ``:452-454``): the clip with the larger return (``d >= 0``: Left), never
  "equal". Only pairs with a strict preference (y != 0.5) are scored: DROP had no "Equally" answer.
* `EQUAL_WITHIN` (DROPe, ``:446-451``; DATA_FORMATS.md 5.3): "equal" when ``|p_left − p_right| <=
  EQUAL_MARGIN`` (0.3), else the more probable side. Every pair is scored; y = 0.5 is "equal".

The authors' code computes no accuracy for DROPJ or the multi-justification runs (only a loss,
``:138-142``); `rule_for` gives them DROPe's. A label y > 0.5 is Left and y < 0.5 Right under both
rules, so DROPJ's 0.75 / 0.25 count as Left / Right. The loss is the soft Bradley–Terry loss of the same
ensemble-mean returns, ``−[y log p_left + (1 − y) log p_right]``, over every pair.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from .reward import PreferenceRewardEnsemble

EQUAL_MARGIN = 0.3
LARGER_RETURN = "larger_return"
EQUAL_WITHIN = "equal_within_margin"
RULES = (LARGER_RETURN, EQUAL_WITHIN)
# The rule of each feedback method (schema's FeedbackSpec.method) and where the authors' code has it.
AUTHORS_RULES = {"DROP": (LARGER_RETURN, "reward_model_pref.py:452-454"),
                 "DROPe": (EQUAL_WITHIN, "reward_model_pref.py:446-451; DATA_FORMATS.md 5.3")}

__all__ = ["EQUAL_MARGIN", "LARGER_RETURN", "EQUAL_WITHIN", "RULES", "AUTHORS_RULES", "rule_for", "rule_source",
           "describe_rule", "LabelResult", "RuleResult", "PreferenceEvaluation", "evaluate_preferences",
           "predicted_side", "larger_return_side", "label_side"]


def rule_for(method: str | None) -> str:
    """The accuracy rule of a feedback method: the authors' (`AUTHORS_RULES`), else DROPe's."""
    return AUTHORS_RULES.get(method, (EQUAL_WITHIN, ""))[0]


def rule_source(method: str | None) -> str:
    """Whose rule `rule_for(method)` is, and where it is written, in a few words."""
    if method in AUTHORS_RULES:
        return f"the authors' ({AUTHORS_RULES[method][1]})"
    return (f"DROPe's (the authors' code scores no accuracy for {method or 'this method'}, only its loss: "
            "reward_model_pref.py:138-142)")


def describe_rule(rule: str, margin: float = EQUAL_MARGIN) -> str:
    """'larger predicted return' or 'equal within 0.3'."""
    return "larger predicted return" if rule == LARGER_RETURN else f"equal within {margin:g}"


def predicted_side(p_left: torch.Tensor, margin: float = EQUAL_MARGIN) -> torch.Tensor:
    """`EQUAL_WITHIN`: 1.0 Left, 0.0 Right, 0.5 equal, from P(left preferred)."""
    side = torch.where(p_left > 0.5, 1.0, 0.0).to(p_left.dtype)
    return torch.where((2 * p_left - 1).abs() <= margin, torch.full_like(p_left, 0.5), side)


def larger_return_side(d: torch.Tensor) -> torch.Tensor:
    """`LARGER_RETURN`: 1.0 Left where R_left − R_right >= 0 (the authors' ``torch.max`` takes the first of a
    tie), else 0.0 Right."""
    return torch.where(d >= 0, 1.0, 0.0).to(d.dtype)


def label_side(labels: torch.Tensor) -> torch.Tensor:
    """1.0 Left (y > 0.5), 0.0 Right (y < 0.5), 0.5 equal."""
    return torch.where(labels > 0.5, 1.0, torch.where(labels < 0.5, 0.0, 0.5)).to(labels.dtype)


@dataclasses.dataclass(frozen=True)
class RuleResult:
    """Accuracy by one rule: `count` pairs scored (a rule may leave some out), None when it scores none."""

    count: int
    accuracy: float | None


@dataclasses.dataclass(frozen=True)
class LabelResult:
    """The pairs of one label: `accuracy` by the evaluation's rule, `by_rule` by each."""

    count: int
    accuracy: float | None
    mean_loss: float
    mean_p_left: float
    by_rule: dict[str, RuleResult]


@dataclasses.dataclass(frozen=True)
class PreferenceEvaluation:
    """`accuracy` is by `rule` (the method's); `rules` holds both rules' results, `count` every pair."""

    count: int
    rule: str
    margin: float
    accuracy: float | None
    mean_loss: float
    rules: dict[str, RuleResult]
    per_label: dict[float, LabelResult]

    def as_dict(self) -> dict:
        return {"count": self.count, "rule": self.rule, "margin": self.margin, "accuracy": self.accuracy,
                "mean_loss": self.mean_loss, "rules": {name: dataclasses.asdict(r) for name, r in self.rules.items()},
                "per_label": {f"{label:g}": dataclasses.asdict(r) for label, r in self.per_label.items()}}


def _scored(correct: torch.Tensor, scored: torch.Tensor) -> RuleResult:
    count = int(scored.sum())
    return RuleResult(count, float(correct[scored].mean()) if count else None)


@torch.no_grad()
def evaluate_preferences(model: PreferenceRewardEnsemble, left: torch.Tensor, right: torch.Tensor,
                         labels: torch.Tensor, *, rule: str = EQUAL_WITHIN, margin: float = EQUAL_MARGIN,
                         batch_size: int = 256) -> PreferenceEvaluation:
    """left, right: (B, T, input_dim) rows [z|c|h, scaled action]; labels: (B,) P(left preferred); rule: the
    one `accuracy` is by (`rule_for(method)`); both are computed."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {list(RULES)}, got {rule!r}")
    if left.shape != right.shape or left.dim() != 3 or labels.shape != left.shape[:1]:
        raise ValueError(f"expected left and right (B, T, D) and labels (B,), got {tuple(left.shape)}, "
                         f"{tuple(right.shape)}, {tuple(labels.shape)}")
    if not len(labels):
        raise ValueError("no labelled pairs to evaluate")
    model.eval()
    diffs = []
    for start in range(0, len(labels), batch_size):
        stop = start + batch_size
        r_left = model.segment_returns(left[start:stop].float()).mean(dim=0)
        r_right = model.segment_returns(right[start:stop].float()).mean(dim=0)
        diffs.append((r_left - r_right).double())
    d = torch.cat(diffs)
    y = labels.double()
    p_left = torch.sigmoid(d)
    loss = -(y * F.logsigmoid(d) + (1 - y) * F.logsigmoid(-d))
    wanted = label_side(y)
    correct = {LARGER_RETURN: (larger_return_side(d) == wanted).double(),
               EQUAL_WITHIN: (predicted_side(p_left, margin) == wanted).double()}
    scored = {LARGER_RETURN: wanted != 0.5, EQUAL_WITHIN: torch.ones_like(y, dtype=torch.bool)}
    per_label = {}
    for value in sorted(set(y.tolist())):
        mask = y == value
        by_rule = {name: _scored(correct[name], scored[name] & mask) for name in RULES}
        per_label[value] = LabelResult(int(mask.sum()), by_rule[rule].accuracy, float(loss[mask].mean()),
                                       float(p_left[mask].mean()), by_rule)
    rules = {name: _scored(correct[name], scored[name]) for name in RULES}
    return PreferenceEvaluation(len(y), rule, margin, rules[rule].accuracy, float(loss.mean()), rules, per_label)
