"""MDN-RNN dynamics model of the DROPJ world model (DATA_FORMATS.md 0.2, 2, 7.2; authors' `dynamics_model.py`).

State order
-----------
Everywhere in this module an LSTM state is the pair **(c, h)**: cell state first, hidden state
second. That is the release's order (``initial_state`` is ``(c, h)``, and a latent state vector is
laid out ``z | c | h``), and it is the **opposite** of ``torch.nn.LSTMCell``, which takes and
returns ``(h, c)``. Only `MDNRNN.cell` talks to ``nn.LSTMCell``; it swaps the order there once.

Semantics (DATA_FORMATS.md 0.2): ``obs_t = [z_t, c_t, h_t]``; the dream step is
``(h_{t+1}, c_{t+1}) = LSTMCell([z_t, a_t], (h_t, c_t))``, ``z_{t+1} ~ MDN(h_{t+1})``. Actions fed to
the MDN-RNN are in env units (not scaled).

Parameter names are the authors' (``lstm_cell.*``, ``output_w.*``) so their checkpoints load strictly.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import torch
from torch import nn

from dropj_datasets import schema

__all__ = ["MDNRNNConfig", "MDNRNN", "MDNOutput", "LSTMState", "mdn_nll", "latent_state",
           "split_latent_state"]

LSTMState = tuple[torch.Tensor, torch.Tensor]  # (c, h), each (B, rnn_size)


@dataclasses.dataclass(frozen=True)
class MDNRNNConfig:
    """Hyper-parameters of one `MDNRNN`.

    n_z: VAE latent size; rnn_size: LSTM width; n_act: action size (3);
    n_mixtures: Gaussian components per latent dimension (K).
    """

    n_z: int = 32
    rnn_size: int = 256
    n_act: int = 3
    n_mixtures: int = 5

    def __post_init__(self):
        problems = [f"{name} must be a positive int, got {getattr(self, name)!r}"
                    for name in ("n_z", "rnn_size", "n_act", "n_mixtures")
                    if not isinstance(getattr(self, name), int) or isinstance(getattr(self, name), bool)
                    or getattr(self, name) <= 0]
        if problems:
            raise ValueError("invalid MDNRNNConfig: " + "; ".join(problems))

    @property
    def input_dim(self) -> int:
        """Size of one input row ``[z | a]``."""
        return self.n_z + self.n_act

    @property
    def latent_dim(self) -> int:
        """Size of a ``z | c | h`` latent state vector (544 / 2112)."""
        return self.n_z + 2 * self.rnn_size

    @classmethod
    def for_env(cls, env: str | schema.EnvSpec) -> MDNRNNConfig:
        """The release's MDN-RNN for an env (`schema.CARRACING`: K=5; `CHUCKC`, `CHUCKCCAR`: K=7), or its name."""
        if not isinstance(env, schema.EnvSpec):
            try:
                env = schema.env_spec(env)
            except KeyError as exc:
                raise ValueError(exc.args[0]) from None
        return cls(n_z=env.n_z, rnn_size=env.rnn_size, n_act=3, n_mixtures=env.n_mixtures)


class MDNOutput(NamedTuple):
    """Result of `MDNRNN.forward` over a (B, T, n_z + n_act) input.

    logmix, mean, logstd: (B, T, n_z, K) mixture parameters for ``z_{t+1}``; logmix is normalised
        (``logsumexp`` over K is 0). This is the authors' (B*T*n_z, K) layout viewed as (B, T, n_z, K).
    c_states, h_states: (B, T, rnn_size), the LSTM state after consuming input t.
    state: (c_T, h_T), each (B, rnn_size): the final state, ready to pass back in.
    """

    logmix: torch.Tensor
    mean: torch.Tensor
    logstd: torch.Tensor
    c_states: torch.Tensor
    h_states: torch.Tensor
    state: LSTMState


def latent_state(z: torch.Tensor, c: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The release's latent state vector ``[z | c | h]`` along the last axis.

    z: (..., n_z), c and h: (..., rnn_size) -> (..., n_z + 2 * rnn_size), e.g. (B, 544) for Car Racing.
    """
    return torch.cat([z, c, h], dim=-1)


def split_latent_state(obs: torch.Tensor, n_z: int, rnn_size: int) -> tuple[torch.Tensor, LSTMState]:
    """Inverse of `latent_state`: (..., n_z + 2*rnn_size) -> (z, (c, h))."""
    if obs.shape[-1] != n_z + 2 * rnn_size:
        raise ValueError(f"latent state has {obs.shape[-1]} features, expected n_z + 2*rnn_size = "
                         f"{n_z} + 2*{rnn_size} = {n_z + 2 * rnn_size}")
    z, c, h = torch.split(obs, [n_z, rnn_size, rnn_size], dim=-1)
    return z, (c, h)


def _log_normal(y: torch.Tensor, mean: torch.Tensor, logstd: torch.Tensor) -> torch.Tensor:
    return -0.5 * ((y - mean) / torch.exp(logstd)) ** 2 - logstd - 0.5 * math.log(2 * math.pi)


def mdn_nll(logmix: torch.Tensor, mean: torch.Tensor, logstd: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of ``target`` under a per-dimension Gaussian mixture.

    logmix, mean, logstd: (B, T, n_z, K), logmix normalised over K (as `MDNRNN.forward` returns it).
    target: (B, T, n_z), the next latents ``z_{t+1}``.
    Returns a scalar: ``-mean_{b,t,j} log sum_k exp(logmix + log N(target; mean, exp(logstd)))``,
    i.e. averaged over latent dimensions, time and batch (the authors' three nested means, which
    equal one global mean because every sequence has the same length; there is no masking).
    """
    if target.dim() != 3 or logmix.shape[:-1] != target.shape:
        raise ValueError(f"mixture parameters {tuple(logmix.shape)} must be target {tuple(target.shape)} + (K,)")
    if mean.shape != logmix.shape or logstd.shape != logmix.shape:
        raise ValueError(f"logmix {tuple(logmix.shape)}, mean {tuple(mean.shape)} and logstd "
                         f"{tuple(logstd.shape)} must have the same shape")
    v = torch.logsumexp(logmix + _log_normal(target.unsqueeze(-1), mean, logstd), dim=-1)
    return -v.mean()


class MDNRNN(nn.Module):
    """LSTMCell + mixture-density head.

    * ``lstm_cell = nn.LSTMCell(n_z + n_act, rnn_size)``
    * ``output_w = nn.Linear(rnn_size, n_z * K * 3)``: each h row becomes (n_z, 3K) split into
      ``[logmix (K) | mean (K) | logstd (K)]`` per latent dimension; logmix is normalised by logsumexp.

    Car Racing (n_z 32, rnn 256, K 5): 423,392 parameters. Obstacle (64, 1024, 7): 5,854,528.
    """

    def __init__(self, config: MDNRNNConfig):
        super().__init__()
        if not isinstance(config, MDNRNNConfig):
            raise TypeError(f"config must be an MDNRNNConfig, got {type(config).__name__}")
        self.config = config
        self.lstm_cell = nn.LSTMCell(config.input_dim, config.rnn_size)
        self.output_w = nn.Linear(config.rnn_size, config.n_z * config.n_mixtures * 3)

    @classmethod
    def for_env(cls, env_spec: Any) -> MDNRNN:
        return cls(MDNRNNConfig.for_env(env_spec))

    def zero_state(self, batch_size: int) -> LSTMState:
        """(c, h) zeros, each (batch_size, rnn_size): the state before the first step of an episode."""
        p = self.output_w.weight
        zeros = torch.zeros(batch_size, self.config.rnn_size, dtype=p.dtype, device=p.device)
        return zeros, zeros.clone()

    def cell(self, x: torch.Tensor, state: LSTMState) -> LSTMState:
        """One step: x (batch, input_dim), state (c, h) -> the next (c, h). The one place where the (c, h)
        convention meets torch's (h, c)."""
        c, h = state
        h_new, c_new = self.lstm_cell(x, (h, c))
        return c_new, h_new

    def mixture(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """h: (..., rnn_size) -> (logmix, mean, logstd), each (..., n_z, K), logmix normalised."""
        n_z, k = self.config.n_z, self.config.n_mixtures
        out = self.output_w(h).reshape(*h.shape[:-1], n_z, 3 * k)
        logmix, mean, logstd = torch.split(out, k, dim=-1)
        logmix = logmix - torch.logsumexp(logmix, dim=-1, keepdim=True)
        return logmix, mean, logstd

    def _check_state(self, state: LSTMState | None, batch_size: int) -> LSTMState:
        if state is None:
            return self.zero_state(batch_size)
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise ValueError("state must be a (c, h) pair")
        expected = (batch_size, self.config.rnn_size)
        for name, t in zip(("c", "h"), state):
            if tuple(t.shape) != expected:
                raise ValueError(f"state {name} has shape {tuple(t.shape)}, expected {expected}")
        return state[0], state[1]

    def forward(self, x: torch.Tensor, state: LSTMState | None = None) -> MDNOutput:
        """x: (B, T, n_z + n_act) rows ``[z_t | a_t]`` (env-unit actions); state: (c, h) or None (zeros).

        Returns an `MDNOutput` whose mixture at time t predicts ``z_{t+1}``. All sequences in the
        batch have length T (the release's episodes all have 1000 steps).
        """
        if x.dim() != 3 or x.shape[-1] != self.config.input_dim:
            raise ValueError(f"input must be (B, T, n_z + n_act = {self.config.input_dim}), got {tuple(x.shape)}")
        state = self._check_state(state, x.shape[0])
        cs, hs = [], []
        for t in range(x.shape[1]):
            state = self.cell(x[:, t], state)
            cs.append(state[0])
            hs.append(state[1])
        c_states = torch.stack(cs, dim=1) if cs else x.new_zeros(x.shape[0], 0, self.config.rnn_size)
        h_states = torch.stack(hs, dim=1) if hs else x.new_zeros(x.shape[0], 0, self.config.rnn_size)
        logmix, mean, logstd = self.mixture(h_states)
        return MDNOutput(logmix, mean, logstd, c_states, h_states, state)

    def step(self, z: torch.Tensor, a: torch.Tensor, state: LSTMState | None, temperature: float = 1.0,
             generator: torch.Generator | None = None, sample: bool = True) -> tuple[torch.Tensor, LSTMState]:
        """One dream step (DATA_FORMATS.md 2, "Dream dynamics"; the authors' ``next_obs``).

        z: (B, n_z); a: (B, n_act) in env units; state: (c, h), each (B, rnn_size), or None for zeros.
        Returns ``(z_next (B, n_z), (c_next, h_next))``; build the release's vector with
        ``latent_state(z_next, c_next, h_next)``.

        ``(c, h)`` are deterministic. With ``sample=True`` (the dream data), for each latent dimension
        j independently a component ``k ~ softmax(logmix_j / T)`` is drawn and
        ``z_j = mean_jk + exp(logstd_jk) * N(0, 1) * sqrt(T)``. With ``sample=False`` (ReQueST's
        trajectory optimiser, T = 0.1) ``z_j = sum_k softmax(logmix_j / T)_k * mean_jk``.
        Random draws use ``generator`` when given (the authors used the global RNG; bitwise equal
        samples to theirs are not a goal).
        """
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if z.dim() != 2 or z.shape[1] != self.config.n_z or a.shape != (z.shape[0], self.config.n_act):
            raise ValueError(f"z must be (B, {self.config.n_z}) and a (B, {self.config.n_act}), "
                             f"got {tuple(z.shape)} and {tuple(a.shape)}")
        state = self._check_state(state, z.shape[0])
        state = self.cell(torch.cat([z, a], dim=-1), state)
        logmix, mean, logstd = self.mixture(state[1])  # (B, n_z, K)
        probs = torch.softmax(logmix / temperature, dim=-1)
        if not sample:
            return (probs * mean).sum(dim=-1), state
        k = self.config.n_mixtures
        idx = torch.multinomial(probs.reshape(-1, k), 1, generator=generator).reshape(*probs.shape[:-1], 1)
        chosen_mean = mean.gather(-1, idx).squeeze(-1)
        chosen_logstd = logstd.gather(-1, idx).squeeze(-1)
        noise = torch.randn(chosen_mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return chosen_mean + torch.exp(chosen_logstd) * noise * math.sqrt(temperature), state

    def split_latent(self, obs: torch.Tensor) -> tuple[torch.Tensor, LSTMState]:
        """(..., n_z + 2*rnn_size) ``z|c|h`` -> (z, (c, h))."""
        return split_latent_state(obs, self.config.n_z, self.config.rnn_size)
