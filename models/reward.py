"""Reward models of DROPJ: the preference ensemble (DROP/DROPe/DROPJ, DATA_FORMATS.md 5.3 and 7.3) and the
sparse-label classifier ensemble of ReQueST and DROS (7.4).

Layer indices inside each member's ``nn.Sequential`` are the authors', so their state dicts load
strictly: preference members ``0, 2, 4, 6`` (Linear) with LeakyReLU/Tanh in between; sparse nets
``reward_networks.{m}.{0,2,4,6,8,10}`` (``0,3,...,15`` with dropout).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PreferenceRewardConfig", "PreferenceRewardEnsemble", "preference_loss",
           "SparseRewardConfig", "SparseRewardEnsemble", "REWARD_CLASSES", "reward_class_index"]

# The sparse model's classes in output order (target_mapping {-1: 0, 0: 1, 10: 2}): env reward values.
REWARD_CLASSES = (-1.0, 0.0, 10.0)


def _positive_ints(obj, names) -> list[str]:
    return [f"{n} must be a positive int, got {getattr(obj, n)!r}" for n in names
            if not isinstance(getattr(obj, n), int) or isinstance(getattr(obj, n), bool) or getattr(obj, n) <= 0]


@dataclasses.dataclass(frozen=True)
class PreferenceRewardConfig:
    """input_dim: ``[z|c|h, scaled action]`` width (547 CR, 2115 Obst); members: ensemble size;
    hidden: layer width; n_layers: hidden Linear layers (the authors' ``gen_net`` defaults 256 and 3)."""

    input_dim: int = 547
    members: int = 3
    hidden: int = 256
    n_layers: int = 3

    def __post_init__(self):
        problems = _positive_ints(self, ("input_dim", "members", "hidden", "n_layers"))
        if problems:
            raise ValueError("invalid PreferenceRewardConfig: " + "; ".join(problems))


class PreferenceRewardEnsemble(nn.Module):
    """Ensemble of per-step reward nets r̂_m: (..., input_dim) -> (..., 1) in (-1, 1).

    Each member (the authors' ``gen_net``) is, for ``n_layers=3``::

        Sequential(Linear(in, H), LeakyReLU(0.01), Linear(H, H), LeakyReLU(0.01),
                   Linear(H, H), LeakyReLU(0.01), Linear(H, 1), Tanh())

    with state-dict keys ``0.weight, 0.bias, 2.*, 4.*, 6.*``; 272,129 parameters for in=547.
    The input row is ``[z|c|h, action scaled to [-1, 1]]`` (DATA_FORMATS.md 0.3).
    """

    def __init__(self, input_dim: int = 547, members: int = 3, hidden: int = 256, n_layers: int = 3):
        super().__init__()
        self.config = PreferenceRewardConfig(input_dim, members, hidden, n_layers)
        self.members = nn.ModuleList(self._member_net() for _ in range(members))

    def _member_net(self) -> nn.Sequential:
        c = self.config
        layers: list[nn.Module] = []
        width = c.input_dim
        for _ in range(c.n_layers):
            layers += [nn.Linear(width, c.hidden), nn.LeakyReLU(0.01)]
            width = c.hidden
        layers += [nn.Linear(width, 1), nn.Tanh()]
        return nn.Sequential(*layers)

    def member(self, m: int) -> nn.Sequential:
        """The m-th member net: (..., input_dim) -> (..., 1). Its state_dict is the authors' file format."""
        if not 0 <= m < len(self.members):
            raise IndexError(f"member {m} out of range: the ensemble has {len(self.members)} members")
        return self.members[m]

    def member_rewards(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., input_dim) -> per-member rewards (M, ...)."""
        self._check(x)
        return torch.stack([net(x).squeeze(-1) for net in self.members], dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., input_dim) -> ensemble-mean reward (...,) (the authors' ``r_hat``).

        Only the trailing size-1 output axis is squeezed, so a batch of one stays (1,) (the
        authors' bare ``squeeze()`` would give a 0-d tensor there).
        """
        return self.member_rewards(x).mean(dim=0)

    def segment_returns(self, segments: torch.Tensor) -> torch.Tensor:
        """segments: (B, T, input_dim) -> per-member segment returns R (M, B) = sum over T of r̂_m."""
        if segments.dim() != 3:
            raise ValueError(f"segments must be (B, T, input_dim), got {tuple(segments.shape)}")
        return self.member_rewards(segments).sum(dim=-1)

    def _check(self, x: torch.Tensor) -> None:
        if x.shape[-1] != self.config.input_dim:
            raise ValueError(f"input has {x.shape[-1]} features, the model expects {self.config.input_dim} "
                             f"([z|c|h, scaled action])")


def preference_loss(r_left: torch.Tensor, r_right: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Soft Bradley-Terry loss of one ensemble member (DATA_FORMATS.md 5.3).

    r_left, r_right: per-step rewards r̂ of segment 1 (Left) and segment 2 (Right), (B, T) or
        (B, T, 1) (a member's raw output), T = 20 in the release.
    label: (B,) or (B, 1), y in [0, 1] = probability that the Left segment is preferred.
    Returns ``mean_b -[y log σ(R1 - R2) + (1 - y) log σ(R2 - R1)]`` with ``R_i = sum_t r̂``; this is
    ``BCEWithLogits(R1 - R2, y)`` (the authors' soft cross-entropy over ``softmax([R1, R2])``).
    The caller sums the per-member losses.
    """
    def returns(r: torch.Tensor, name: str) -> torch.Tensor:
        if r.dim() == 3 and r.shape[-1] == 1:
            r = r.squeeze(-1)
        if r.dim() != 2:
            raise ValueError(f"{name} must be per-step rewards (B, T) or (B, T, 1), got {tuple(r.shape)}")
        return r.sum(dim=1)

    r1, r2 = returns(r_left, "r_left"), returns(r_right, "r_right")
    if r1.shape != r2.shape:
        raise ValueError(f"r_left and r_right batch sizes differ: {tuple(r_left.shape)} vs {tuple(r_right.shape)}")
    y = label.reshape(-1).to(r1.dtype)
    if y.shape != r1.shape:
        raise ValueError(f"label {tuple(label.shape)} does not match a batch of {r1.shape[0]}")
    d = r1 - r2
    return -(y * F.logsigmoid(d) + (1 - y) * F.logsigmoid(-d)).mean()


@dataclasses.dataclass(frozen=True)
class SparseRewardConfig:
    """The authors' ``RewardModelSparse(n_rew_nets_in_ensemble=4, n_layers=5, layer_size=256,
    rew_func_input='sa', dropout_rate=None, residual=False)``; residual blocks are not supported."""

    input_dim: int = 547
    members: int = 4
    n_layers: int = 5
    hidden: int = 256
    dropout: float | None = None

    def __post_init__(self):
        problems = _positive_ints(self, ("input_dim", "members", "n_layers", "hidden"))
        if self.dropout is not None and not (isinstance(self.dropout, (int, float)) and 0 < self.dropout < 1):
            problems.append(f"dropout must be None or in (0, 1), got {self.dropout!r}")
        if problems:
            raise ValueError("invalid SparseRewardConfig: " + "; ".join(problems))


def reward_class_index(rewards: torch.Tensor) -> torch.Tensor:
    """Env rewards in {-1, 0, 10} -> class indices {0, 1, 2} (long), the sparse model's targets."""
    classes = torch.tensor(REWARD_CLASSES, dtype=torch.float64)
    matches = torch.as_tensor(rewards, dtype=torch.float64).unsqueeze(-1) == classes
    if not bool(matches.any(dim=-1).all()):
        bad = torch.as_tensor(rewards)[~matches.any(dim=-1)].unique().tolist()
        raise ValueError(f"rewards {bad} are not among the classes {REWARD_CLASSES}")
    return matches.to(torch.long).argmax(dim=-1)


class SparseRewardEnsemble(nn.Module):
    """Ensemble of reward classifiers over ``[z|c|h, action in env units]`` (ReQueST, DROS).

    ``reward_networks[m] = Sequential([Linear, ReLU] x n_layers, Linear(hidden, 3))`` (with dropout:
    ``[Linear, ReLU, Dropout] x n_layers``); logits over `REWARD_CLASSES` ``(-1, 0, 10)``.
    Input 547, 4 members, 5 layers of 256: 1,616,908 parameters.
    """

    def __init__(self, input_dim: int = 547, members: int = 4, n_layers: int = 5, hidden: int = 256,
                 dropout: float | None = None):
        super().__init__()
        self.config = SparseRewardConfig(input_dim, members, n_layers, hidden, dropout)
        self.reward_networks = nn.ModuleList(self._net() for _ in range(members))
        self.register_buffer("reward_values", torch.tensor(REWARD_CLASSES), persistent=False)

    def _net(self) -> nn.Sequential:
        c = self.config
        layers: list[nn.Module] = []
        width = c.input_dim
        for _ in range(c.n_layers):
            layers += [nn.Linear(width, c.hidden), nn.ReLU()]
            if c.dropout:
                layers.append(nn.Dropout(c.dropout))
            width = c.hidden
        layers.append(nn.Linear(width, len(REWARD_CLASSES)))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., input_dim) -> per-member logits (M, ..., 3)."""
        if x.shape[-1] != self.config.input_dim:
            raise ValueError(f"input has {x.shape[-1]} features, the model expects {self.config.input_dim} "
                             f"([z|c|h, action in env units])")
        return torch.stack([net(x) for net in self.reward_networks], dim=0)

    def mean_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(..., input_dim) -> ensemble-mean logits (..., 3) (used for the loss and the argmax)."""
        return self(x).mean(dim=0)

    def argmax_reward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., input_dim) -> reward value (...,) of the argmax class of the mean logits (``get_batch_reward``)."""
        return self.reward_values[self.mean_logits(x).argmax(dim=-1)]

    def expected_reward(self, x: torch.Tensor, order: str = "soft_av") -> torch.Tensor:
        """Differentiable reward (..., ) for trajectory optimisation (``get_batch_reward_opt``).

        ``'soft_av'`` (the authors' effective default): mean over members of ``softmax(logits_m) · classes``.
        ``'av_soft'``: ``softmax(mean_m logits_m) · classes``.
        """
        values = self.reward_values.to(x.dtype)
        if order == "soft_av":
            return (torch.softmax(self(x), dim=-1) * values).sum(dim=-1).mean(dim=0)
        if order == "av_soft":
            return (torch.softmax(self.mean_logits(x), dim=-1) * values).sum(dim=-1)
        raise ValueError(f"order must be 'soft_av' or 'av_soft', got {order!r}")
