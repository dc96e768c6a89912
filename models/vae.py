"""Convolutional VAE of the DROPJ world model (DATA_FORMATS.md 7.1, authors' `vae_model.py`).

Two architectures are used by the release:

* ``'L'`` (Car Racing, 84x84, ``ch1=24``, "sesquialterate"): 3,337,747 parameters.
* ``'res128'`` (Obstacle Car Racing, 128x128, ``ch1=64``, "quadruple"): 25,453,571 parameters.

Module and attribute names are the authors' (``enc_conv1..5``, ``fc_mu``, ``fc_log_var`` /
``fc_logvar``, ``dec_fc``, ``dec_deconv1..5``), so the released ``{'model_state': ...}``
checkpoints load with ``strict=True``. Note the log-variance head is spelled differently in the
two architectures; that is the authors' naming and it is part of the checkpoint format.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VAEConfig", "ConvVAE", "frames_to_tensor", "vae_loss"]

Arch = Literal["L", "res128"]

# Frame side (pixels) of each architecture; the input is 3 x side x side.
_FRAME_SIDE = {"L": 84, "res128": 128}
# Spatial side of the last encoder feature map (and of the decoder's first map).
_BOTTLENECK_SIDE = {"L": 2, "res128": 4}


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """Hyper-parameters of one `ConvVAE`.

    arch: ``'L'`` (84x84 input) or ``'res128'`` (128x128 input).
    n_z: latent size (32 for Car Racing, 64 for Obstacle).
    ch1: channels of the first conv layer; the encoder doubles it four times (24 or 64 in the release).
    kl_tolerance: free-bits floor per latent dimension used by `vae_loss` (0.5 CR, 2.0 Obst).
    """

    arch: Arch = "L"
    n_z: int = 32
    ch1: int = 24
    kl_tolerance: float = 0.5

    def __post_init__(self):
        problems = []
        if self.arch not in _FRAME_SIDE:
            problems.append(f"arch must be one of {sorted(_FRAME_SIDE)}, got {self.arch!r}")
        for name in ("n_z", "ch1"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                problems.append(f"{name} must be a positive int, got {value!r}")
        if not isinstance(self.kl_tolerance, (int, float)) or self.kl_tolerance < 0:
            problems.append(f"kl_tolerance must be a number >= 0, got {self.kl_tolerance!r}")
        if problems:
            raise ValueError("invalid VAEConfig: " + "; ".join(problems))

    @property
    def frame_side(self) -> int:
        return _FRAME_SIDE[self.arch]

    @property
    def flat_dim(self) -> int:
        """Size of the flattened encoder output: 16*ch1 channels x side x side (1536 / 16384)."""
        return 16 * self.ch1 * _BOTTLENECK_SIDE[self.arch] ** 2

    @classmethod
    def for_env(cls, env_spec: Any) -> VAEConfig:
        """The release's VAE for an env (`dropj_datasets.schema.CARRACING`, `CHUCKC`, `CHUCKCCAR`).

        Only ``frame_shape`` and ``n_z`` of the spec are read.
        """
        frame_shape = tuple(env_spec.frame_shape)
        if frame_shape == (84, 84, 3):
            return cls(arch="L", n_z=env_spec.n_z, ch1=24, kl_tolerance=0.5)
        if frame_shape == (128, 128, 3):
            return cls(arch="res128", n_z=env_spec.n_z, ch1=64, kl_tolerance=2.0)
        raise ValueError(f"no VAE architecture for frame shape {frame_shape} "
                         f"(env {getattr(env_spec, 'name', env_spec)!r}); expected (84, 84, 3) or (128, 128, 3)")


def frames_to_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """HWC uint8 frames -> NCHW float32 in [0, 1].

    frames: (N, H, W, 3) uint8 (numpy or torch), as stored in the data set.
    Returns: (N, 3, H, W) float32, ``frames / 255``.

    Example: ``frames_to_tensor(np.zeros((2, 84, 84, 3), np.uint8)).shape == (2, 3, 84, 84)``.
    Unlike the authors' ``squash_obs`` (which divides by 255 only when the batch maximum exceeds 1,
    so an all-dark batch would not be rescaled), this requires uint8 and always divides.
    """
    tensor = torch.as_tensor(frames)
    if tensor.dtype != torch.uint8:
        raise TypeError(f"frames must be uint8 (N, H, W, 3), got dtype {tensor.dtype}")
    if tensor.dim() != 4 or tensor.shape[-1] != 3:
        raise ValueError(f"frames must have shape (N, H, W, 3), got {tuple(tensor.shape)}")
    return tensor.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)


class ConvVAE(nn.Module):
    """Convolutional VAE.

    Encoder (ReLU after every conv), ``c = ch1``:

    * ``'L'``: 5 x Conv2d(k4, no padding), strides 2,2,2,1,1, channels 3->c->2c->4c->8c->16c,
      spatial 84->41->19->8->5->2; flatten (16c*2*2 = 1536) -> ``fc_mu``, ``fc_log_var``.
    * ``'res128'``: 5 x Conv2d(k4, s2, p1), same channels, spatial 128->64->32->16->8->4;
      flatten (16c*4*4 = 16384) -> ``fc_mu``, ``fc_logvar``.

    Decoder: ``dec_fc`` (n_z -> flat) -> reshape (16c, s, s) -> 5 ConvTranspose2d mirroring the
    encoder's channels 16c->8c->4c->2c->c->3 (ReLU between, sigmoid at the end, clamped to
    [1e-8, 1-1e-8] as in the authors' code):

    * ``'L'``: k4s1, k4s1, k5s2, k5s2, k4s2, spatial 2->5->8->19->41->84.
    * ``'res128'``: 5 x k4 s2 p1, spatial 4->8->...->128.
    """

    def __init__(self, config: VAEConfig):
        super().__init__()
        if not isinstance(config, VAEConfig):
            raise TypeError(f"config must be a VAEConfig, got {type(config).__name__}")
        self.config = config
        c = config.ch1
        chans = [3, c, 2 * c, 4 * c, 8 * c, 16 * c]
        if config.arch == "L":
            enc = [{"kernel_size": 4, "stride": s} for s in (2, 2, 2, 1, 1)]
            dec = [{"kernel_size": k, "stride": s} for k, s in ((4, 1), (4, 1), (5, 2), (5, 2), (4, 2))]
        else:
            enc = [{"kernel_size": 4, "stride": 2, "padding": 1}] * 5
            dec = [{"kernel_size": 4, "stride": 2, "padding": 1}] * 5
        for i, kw in enumerate(enc):
            setattr(self, f"enc_conv{i + 1}", nn.Conv2d(chans[i], chans[i + 1], **kw))
        self.fc_mu = nn.Linear(config.flat_dim, config.n_z)
        # The authors' attribute name differs between the two architectures (checkpoint keys).
        self._logvar_name = "fc_log_var" if config.arch == "L" else "fc_logvar"
        setattr(self, self._logvar_name, nn.Linear(config.flat_dim, config.n_z))
        self.dec_fc = nn.Linear(config.n_z, config.flat_dim)
        rev = chans[::-1]
        for i, kw in enumerate(dec):
            setattr(self, f"dec_deconv{i + 1}", nn.ConvTranspose2d(rev[i], rev[i + 1], **kw))

    @classmethod
    def for_env(cls, env_spec: Any) -> ConvVAE:
        """The release's VAE for ``schema.CARRACING`` ('L') or ``schema.CHUCKC``/``CHUCKCCAR`` ('res128')."""
        return cls(VAEConfig.for_env(env_spec))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        side = self.config.frame_side
        return (3, side, side)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (N, 3, H, W) float in [0, 1] -> (mu, logvar), each (N, n_z).

        ``mu`` is the latent `z` the release stores for real frames.
        """
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            shape = ", ".join(map(str, self.input_shape))
            raise ValueError(f"ConvVAE({self.config.arch!r}) expects input (N, {shape}), "
                             f"got {tuple(x.shape)}; use frames_to_tensor() for (N, H, W, 3) uint8 frames")
        h = x
        for i in range(1, 6):
            h = F.relu(getattr(self, f"enc_conv{i}")(h))
        h = h.reshape(h.size(0), -1)
        return self.fc_mu(h), getattr(self, self._logvar_name)(h)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """z = mu + exp(logvar / 2) * eps, eps ~ N(0, I). Shapes (N, n_z)."""
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        return mu + torch.exp(0.5 * logvar) * eps

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: (N, n_z) -> reconstruction (N, 3, H, W) in [1e-8, 1 - 1e-8]."""
        side = _BOTTLENECK_SIDE[self.config.arch]
        h = self.dec_fc(z).reshape(z.size(0), 16 * self.config.ch1, side, side)
        for i in range(1, 5):
            h = F.relu(getattr(self, f"dec_deconv{i}")(h))
        out = torch.sigmoid(self.dec_deconv5(h))
        return torch.clamp(out, min=1e-8, max=1 - 1e-8)

    def forward(self, x: torch.Tensor,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x: (N, 3, H, W) in [0, 1] -> (reconstruction (N, 3, H, W), mu (N, n_z), logvar (N, n_z)).

        The reconstruction decodes a reparameterised sample, so it is random (pass ``generator`` to
        make it reproducible); ``decode(encode(x)[0])`` is the deterministic reconstruction.
        """
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar, generator)), mu, logvar


def vae_loss(recon: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             kl_tolerance: float, n_z: int) -> torch.Tensor:
    """The authors' VAE training loss (``VAEModel.loss_function`` in training mode): MSE + free-bits KL.

    recon, x: (N, 3, H, W); mu, logvar: (N, n_z). Returns a scalar.

    Reduction (as the authors'):

    * ``MSE = mean_n sum_{c,h,w} (recon - x)^2``: summed over pixels and channels, averaged over
      the batch (not a per-pixel mean).
    * ``KL_n = -1/2 sum_j (1 + logvar_nj - mu_nj^2 - exp(logvar_nj))`` per sample, floored **per
      sample** at ``kl_tolerance * n_z`` (so a sample below the floor gets no KL gradient), then
      averaged over the batch: ``KL = mean_n max(KL_n, kl_tolerance * n_z)``.
    * ``loss = MSE + KL``.
    """
    if recon.shape != x.shape:
        raise ValueError(f"recon {tuple(recon.shape)} and x {tuple(x.shape)} differ in shape")
    if mu.shape != logvar.shape or mu.dim() != 2 or mu.shape[0] != x.shape[0]:
        raise ValueError(f"mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} must both be (N={x.shape[0]}, n_z)")
    if mu.shape[1] != n_z:
        raise ValueError(f"n_z={n_z} but mu has {mu.shape[1]} latent dimensions")
    mse = ((recon - x) ** 2).flatten(1).sum(dim=1).mean()
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)
    kl = torch.clamp(kl, min=float(kl_tolerance) * n_z).mean()
    return mse + kl
