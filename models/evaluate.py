"""How well a preference reward model predicts human answers (the paper's evaluation, torch only).

    result = evaluate_preferences(model, left, right, labels)
    result.accuracy, result.mean_loss, result.per_label[0.75]

For each pair, the ensemble-mean returns ``R_i = sum_t r̂(s_t, a_t)`` of the left and right clips give
``p_left = σ(R_1 − R_2)`` and ``p_right = 1 − p_left``. The prediction is *equal* when
``|p_left − p_right| <= EQUAL_MARGIN`` (0.3, DROPe's rule in the authors' ``reward_model_pref.py``),
else the side with the larger probability. A label y > 0.5 means Left, y < 0.5 Right, 0.5 equal, so
DROPJ's 0.75 / 0.25 count as Left / Right. The loss is the soft Bradley–Terry loss of the same
ensemble-mean returns, ``−[y log p_left + (1 − y) log p_right]``.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from .reward import PreferenceRewardEnsemble

EQUAL_MARGIN = 0.3

__all__ = ["EQUAL_MARGIN", "LabelResult", "PreferenceEvaluation", "evaluate_preferences", "predicted_side",
           "label_side"]


def predicted_side(p_left: torch.Tensor, margin: float = EQUAL_MARGIN) -> torch.Tensor:
    """1.0 Left, 0.0 Right, 0.5 equal, from P(left preferred)."""
    side = torch.where(p_left > 0.5, 1.0, 0.0).to(p_left.dtype)
    return torch.where((2 * p_left - 1).abs() <= margin, torch.full_like(p_left, 0.5), side)


def label_side(labels: torch.Tensor) -> torch.Tensor:
    """1.0 Left (y > 0.5), 0.0 Right (y < 0.5), 0.5 equal."""
    return torch.where(labels > 0.5, 1.0, torch.where(labels < 0.5, 0.0, 0.5)).to(labels.dtype)


@dataclasses.dataclass(frozen=True)
class LabelResult:
    count: int
    accuracy: float
    mean_loss: float
    mean_p_left: float


@dataclasses.dataclass(frozen=True)
class PreferenceEvaluation:
    count: int
    accuracy: float
    mean_loss: float
    per_label: dict[float, LabelResult]

    def as_dict(self) -> dict:
        return {"count": self.count, "accuracy": self.accuracy, "mean_loss": self.mean_loss,
                "per_label": {f"{label:g}": dataclasses.asdict(r) for label, r in self.per_label.items()}}


@torch.no_grad()
def evaluate_preferences(model: PreferenceRewardEnsemble, left: torch.Tensor, right: torch.Tensor,
                         labels: torch.Tensor, *, margin: float = EQUAL_MARGIN,
                         batch_size: int = 256) -> PreferenceEvaluation:
    """left, right: (B, T, input_dim) rows [z|c|h, scaled action]; labels: (B,) P(left preferred)."""
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
    correct = (predicted_side(p_left, margin) == label_side(y)).double()
    per_label = {}
    for value in sorted(set(y.tolist())):
        mask = y == value
        per_label[value] = LabelResult(int(mask.sum()), float(correct[mask].mean()), float(loss[mask].mean()),
                                       float(p_left[mask].mean()))
    return PreferenceEvaluation(len(y), float(correct.mean()), float(loss.mean()), per_label)
