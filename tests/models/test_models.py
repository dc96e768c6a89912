"""dropj.models: architectures and state_dict layouts exactly as DATA_FORMATS.md 7, losses against
direct numpy computations, tiny training runs, checkpoint round trips and the no-TensorFlow rule."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dropj.models import (MDNRNN, REWARD_CLASSES, CheckpointError, ConvVAE, MDNRNNConfig, PreferenceRewardEnsemble,
                          SparseRewardEnsemble, VAEConfig, frames_to_tensor, latent_state, load_checkpoint,
                          load_preference_members, mdn_nll, preference_loss, reward_class_index, save_checkpoint,
                          save_preference_members, split_latent_state, vae_loss)
from dropj_datasets import schema


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _vae_keys(c: int, n_z: int, side: int, logvar: str, dec_kernels) -> dict[str, tuple[int, ...]]:
    chans = [3, c, 2 * c, 4 * c, 8 * c, 16 * c]
    flat = 16 * c * side * side
    out: dict[str, tuple[int, ...]] = {}
    for i in range(5):
        out[f"enc_conv{i + 1}.weight"] = (chans[i + 1], chans[i], 4, 4)
        out[f"enc_conv{i + 1}.bias"] = (chans[i + 1],)
    out.update({"fc_mu.weight": (n_z, flat), "fc_mu.bias": (n_z,), f"{logvar}.weight": (n_z, flat),
                f"{logvar}.bias": (n_z,), "dec_fc.weight": (flat, n_z), "dec_fc.bias": (flat,)})
    rev = chans[::-1]
    for i, k in enumerate(dec_kernels):  # ConvTranspose2d weight is (in, out, k, k)
        out[f"dec_deconv{i + 1}.weight"] = (rev[i], rev[i + 1], k, k)
        out[f"dec_deconv{i + 1}.bias"] = (rev[i + 1],)
    return out


# --------------------------------------------------------------------------- architectures (spec 7)

@pytest.mark.slow
def test_vae_carracing_architecture_is_exactly_the_release():
    vae = ConvVAE.for_env(schema.CARRACING)
    assert vae.config == VAEConfig(arch="L", n_z=32, ch1=24, kl_tolerance=0.5)
    assert n_params(vae) == 3_337_747
    assert len(vae.state_dict()) == 26
    assert shapes(vae) == _vae_keys(24, 32, 2, "fc_log_var", (4, 4, 5, 5, 4))
    assert shapes(vae)["fc_mu.weight"] == (32, 1536)


@pytest.mark.parametrize("env", [schema.CHUCKC, schema.CHUCKCCAR], ids=lambda e: e.name)
def test_vae_obstacle_architecture_is_exactly_the_release(env):
    vae = ConvVAE.for_env(env)
    assert vae.config == VAEConfig(arch="res128", n_z=64, ch1=64, kl_tolerance=2.0)
    assert n_params(vae) == 25_453_571
    assert len(vae.state_dict()) == 26
    assert shapes(vae) == _vae_keys(64, 64, 4, "fc_logvar", (4,) * 5)  # note fc_logvar, not fc_log_var
    assert shapes(vae)["fc_mu.weight"] == (64, 16384)


def test_vae_forward_shapes_and_spatial_sizes():
    vae = ConvVAE.for_env(schema.CARRACING)
    frames = np.random.default_rng(0).integers(0, 256, (2, 84, 84, 3), dtype=np.uint8)
    x = frames_to_tensor(frames)
    assert x.shape == (2, 3, 84, 84) and x.dtype == torch.float32
    np.testing.assert_array_equal(x[1, 2].numpy(), frames[1, :, :, 2] / np.float32(255))
    h, sides = x, []
    for i in range(1, 6):
        h = getattr(vae, f"enc_conv{i}")(h)
        sides.append(h.shape[-1])
    assert sides == [41, 19, 8, 5, 2]
    with torch.no_grad():
        recon, mu, logvar = vae(x)
    assert recon.shape == (2, 3, 84, 84) and mu.shape == logvar.shape == (2, 32)
    assert float(recon.min()) >= 1e-8 and float(recon.max()) <= 1 - 1e-8
    assert vae.decode(mu).shape == (2, 3, 84, 84)

    obst = ConvVAE.for_env(schema.CHUCKC)
    recon, mu, logvar = obst(torch.rand(1, 3, 128, 128))
    assert recon.shape == (1, 3, 128, 128) and mu.shape == logvar.shape == (1, 64)


def test_vae_input_validation():
    vae = ConvVAE.for_env(schema.CARRACING)
    with pytest.raises(ValueError, match=r"expects input \(N, 3, 84, 84\), got \(1, 3, 96, 96\)"):
        vae.encode(torch.rand(1, 3, 96, 96))
    with pytest.raises(TypeError, match="uint8"):
        frames_to_tensor(np.zeros((1, 84, 84, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        frames_to_tensor(np.zeros((84, 84, 3), np.uint8))


def test_configs_validate_in_post_init():
    with pytest.raises(ValueError,
                       match=r"arch must be one of \['L', 'res128'\], got 'XL'.*n_z must be a positive int"):
        VAEConfig(arch="XL", n_z=0)
    with pytest.raises(ValueError, match="n_mixtures must be a positive int, got 0"):
        MDNRNNConfig(n_mixtures=0)
    with pytest.raises(ValueError, match="input_dim must be a positive int"):
        PreferenceRewardEnsemble(input_dim=-1)
    with pytest.raises(ValueError, match="dropout must be None or in"):
        SparseRewardEnsemble(dropout=1.5)
    env = schema.EnvSpec("other", (96, 96, 3), 32, 256, (), "", "Other-v0", "", 5)
    with pytest.raises(ValueError, match=r"no VAE architecture for frame shape \(96, 96, 3\)"):
        ConvVAE.for_env(env)
    with pytest.raises(ValueError, match="unknown environment 'other'; known: carracing, chuckc, chuckccar"):
        MDNRNN.for_env("other")


@pytest.mark.parametrize("env, k, w_ih, w_hh, out_w, total", [
    (schema.CARRACING, 5, (1024, 35), (1024, 256), (480, 256), 423_392),
    (schema.CHUCKC, 7, (4096, 67), (4096, 1024), (1344, 1024), 5_854_528),
    (schema.CHUCKCCAR, 7, (4096, 67), (4096, 1024), (1344, 1024), 5_854_528),
], ids=["carracing", "chuckc", "chuckccar"])
def test_mdnrnn_architecture_is_exactly_the_release(env, k, w_ih, w_hh, out_w, total):
    rnn = MDNRNN.for_env(env)
    assert rnn.config.n_mixtures == k and rnn.config.latent_dim == env.latent_dim
    assert n_params(rnn) == total
    assert shapes(rnn) == {
        "lstm_cell.weight_ih": w_ih, "lstm_cell.weight_hh": w_hh,
        "lstm_cell.bias_ih": (w_ih[0],), "lstm_cell.bias_hh": (w_ih[0],),
        "output_w.weight": out_w, "output_w.bias": (out_w[0],),
    }


@pytest.mark.parametrize("input_dim, per_member", [(547, 272_129), (2115, 673_537)])
def test_preference_ensemble_architecture(input_dim, per_member):
    model = PreferenceRewardEnsemble(input_dim)
    assert len(model.members) == 3
    for m in range(3):
        member = model.member(m)
        assert n_params(member) == per_member
        assert shapes(member) == {
            "0.weight": (256, input_dim), "0.bias": (256,), "2.weight": (256, 256), "2.bias": (256,),
            "4.weight": (256, 256), "4.bias": (256,), "6.weight": (1, 256), "6.bias": (1,),
        }
        kinds = [type(layer).__name__ for layer in member]
        assert kinds == ["Linear", "LeakyReLU"] * 3 + ["Linear", "Tanh"]
        assert all(layer.negative_slope == 0.01 for layer in member if isinstance(layer, torch.nn.LeakyReLU))
    with pytest.raises(IndexError, match="member 3 out of range"):
        model.member(3)


def test_sparse_ensemble_architecture():
    model = SparseRewardEnsemble(547)
    assert n_params(model) == 1_616_908
    expected = {}
    for m in range(4):
        for idx in (0, 2, 4, 6, 8, 10):
            out_features, in_features = (3, 256) if idx == 10 else (256, 547 if idx == 0 else 256)
            expected[f"reward_networks.{m}.{idx}.weight"] = (out_features, in_features)
            expected[f"reward_networks.{m}.{idx}.bias"] = (out_features,)
    assert shapes(model) == expected
    dropped = SparseRewardEnsemble(547, dropout=0.3)
    assert sorted({int(k.split(".")[2]) for k in dropped.state_dict()}) == [0, 3, 6, 9, 12, 15]
    assert n_params(dropped) == 1_616_908


# --------------------------------------------------------------------------- VAE loss

def test_vae_loss_matches_numpy_with_per_sample_free_bits():
    g = torch.Generator().manual_seed(0)
    n, n_z, tol = 3, 4, 0.5
    recon = torch.rand(n, 3, 5, 5, generator=g, dtype=torch.float64)
    x = torch.rand(n, 3, 5, 5, generator=g, dtype=torch.float64)
    mu = torch.zeros(n, n_z, dtype=torch.float64)
    mu[0] = 3.0  # KL_0 = 0.5 * 4 * 9 = 18 > floor 2
    mu[1] = 0.1  # KL_1 = 0.02 < floor 2
    mu[2] = torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=torch.float64)
    logvar = torch.full((n, n_z), -0.3, dtype=torch.float64)
    mu.requires_grad_(True)
    loss = vae_loss(recon, x, mu, logvar, tol, n_z)

    r, xx, m, lv = recon.numpy(), x.numpy(), mu.detach().numpy(), logvar.numpy()
    mse = np.mean(np.sum((r - xx) ** 2, axis=(1, 2, 3)))
    kl = -0.5 * np.sum(1 + lv - m ** 2 - np.exp(lv), axis=1)
    expected = mse + np.mean(np.maximum(kl, tol * n_z))
    assert kl[1] < tol * n_z < kl[0]
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-12)

    loss.backward()
    # d/dmu of mean_n max(KL_n, floor) = mu / N above the floor, 0 below it.
    np.testing.assert_allclose(mu.grad[0].numpy(), m[0] / n)
    np.testing.assert_array_equal(mu.grad[1].numpy(), np.zeros(n_z))
    with pytest.raises(ValueError, match="n_z=5 but mu has 4"):
        vae_loss(recon, x, mu, logvar, tol, 5)


# --------------------------------------------------------------------------- MDN-RNN

def _numpy_mdn_nll(logmix, mean, logstd, target) -> float:
    b, t, n_z, k = logmix.shape
    total = 0.0
    for i in range(b):
        for j in range(t):
            for d in range(n_z):
                density = 0.0
                for c in range(k):
                    std = math.exp(logstd[i, j, d, c])
                    gauss = math.exp(-0.5 * ((target[i, j, d] - mean[i, j, d, c]) / std) ** 2)
                    density += math.exp(logmix[i, j, d, c]) * gauss / (std * math.sqrt(2 * math.pi))
                total += math.log(density)
    return -total / (b * t * n_z)


def test_mdnrnn_forward_layout_and_nll_against_numpy():
    torch.manual_seed(0)
    rnn = MDNRNN(MDNRNNConfig(n_z=4, rnn_size=8, n_mixtures=3))
    x = torch.randn(2, 5, 7)
    out = rnn(x)
    assert out.logmix.shape == out.mean.shape == out.logstd.shape == (2, 5, 4, 3)
    assert out.c_states.shape == out.h_states.shape == (2, 5, 8)
    torch.testing.assert_close(torch.logsumexp(out.logmix, dim=-1), torch.zeros(2, 5, 4), atol=1e-6, rtol=0)
    # layout: output_w(h) reshaped to (B*T*n_z, 3K) = [logmix | mean | logstd]
    raw = rnn.output_w(out.h_states).reshape(-1, 9)
    torch.testing.assert_close(out.mean.reshape(-1, 3), raw[:, 3:6])
    torch.testing.assert_close(out.logstd.reshape(-1, 3), raw[:, 6:9])
    torch.testing.assert_close(out.logmix.reshape(-1, 3), torch.log_softmax(raw[:, :3], dim=1))

    target = torch.randn(2, 5, 4)
    loss = mdn_nll(out.logmix, out.mean, out.logstd, target)
    expected = _numpy_mdn_nll(*(t.detach().double().numpy() for t in (out.logmix, out.mean, out.logstd, target)))
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in rnn.parameters())


def test_mdnrnn_state_order_is_c_then_h_and_sequences_resume():
    torch.manual_seed(1)
    rnn = MDNRNN(MDNRNNConfig(n_z=4, rnn_size=8, n_mixtures=3))
    x = torch.randn(3, 6, 7)
    full = rnn(x)
    c_T, h_T = full.state
    torch.testing.assert_close(c_T, full.c_states[:, -1])
    torch.testing.assert_close(h_T, full.h_states[:, -1])
    assert float(h_T.detach().abs().max()) < 1  # h = o * tanh(c)
    # torch's own LSTMCell takes and returns (h, c): check against it directly
    h1, c1 = rnn.lstm_cell(x[:, 0], (torch.zeros(3, 8), torch.zeros(3, 8)))
    torch.testing.assert_close(full.h_states[:, 0], h1)
    torch.testing.assert_close(full.c_states[:, 0], c1)
    # resuming from a (c, h) state gives the same result as one pass
    first = rnn(x[:, :2])
    rest = rnn(x[:, 2:], first.state)
    torch.testing.assert_close(rest.h_states, full.h_states[:, 2:])
    torch.testing.assert_close(rest.mean, full.mean[:, 2:])
    # step() advances the same state
    z, a = x[:, 2, :4], x[:, 2, 4:]
    _, (c, h) = rnn.step(z, a, first.state)
    torch.testing.assert_close(c, full.c_states[:, 2])
    torch.testing.assert_close(h, full.h_states[:, 2])
    with pytest.raises(ValueError, match=r"state c has shape \(2, 8\), expected \(3, 8\)"):
        rnn(x, (torch.zeros(2, 8), torch.zeros(3, 8)))


def test_latent_state_is_z_c_h():
    z, c, h = torch.full((2, 32), 1.0), torch.full((2, 256), 2.0), torch.full((2, 256), 3.0)
    obs = latent_state(z, c, h)
    assert obs.shape == (2, schema.CARRACING.latent_dim)
    assert obs[0, 31] == 1 and obs[0, 32] == 2 and obs[0, 32 + 255] == 2 and obs[0, 32 + 256] == 3
    z2, (c2, h2) = split_latent_state(obs, 32, 256)
    assert torch.equal(z2, z) and torch.equal(c2, c) and torch.equal(h2, h)
    assert torch.equal(MDNRNN.for_env(schema.CARRACING).split_latent(obs)[1][1], h)
    with pytest.raises(ValueError, match="expected n_z"):
        split_latent_state(obs[:, 1:], 32, 256)


def _crafted_rnn(probs, means, std):
    """An MDN-RNN whose mixture ignores its input: output_w = 0, bias = [log p | means | log std]."""
    k = len(probs)
    rnn = MDNRNN(MDNRNNConfig(n_z=2, rnn_size=4, n_mixtures=k))
    with torch.no_grad():
        rnn.output_w.weight.zero_()
        row = torch.cat([torch.log(torch.tensor(probs)), torch.tensor(means), torch.full((k,), math.log(std))])
        rnn.output_w.bias.copy_(row.repeat(2))
    return rnn


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_mdnrnn_step_samples_the_mixture_with_temperature(temperature):
    probs, means, std = [0.6, 0.3, 0.1], [0.0, 10.0, 20.0], 0.01
    rnn = _crafted_rnn(probs, means, std)
    n = 20000
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        z, _ = rnn.step(torch.zeros(n, 2), torch.zeros(n, 3), None, temperature=temperature, generator=g)
    comp = torch.round(z / 10).long()
    expected = np.array(probs) ** (1 / temperature)
    expected /= expected.sum()
    freq = np.bincount(comp.flatten().numpy(), minlength=3) / comp.numel()
    np.testing.assert_allclose(freq, expected, atol=0.015)
    noise = (z - 10 * comp).flatten()
    assert float(noise.std()) == pytest.approx(std * math.sqrt(temperature), rel=0.03)
    # reproducible with the same generator
    with torch.no_grad():
        again, _ = rnn.step(torch.zeros(n, 2), torch.zeros(n, 3), None, temperature=temperature,
                            generator=torch.Generator().manual_seed(0))
    assert torch.equal(z, again)
    # deterministic mixture mean (ReQueST, sample=False)
    with torch.no_grad():
        mean, _ = rnn.step(torch.zeros(1, 2), torch.zeros(1, 3), None, temperature=temperature, sample=False)
    assert float(mean[0, 0]) == pytest.approx(float(np.dot(expected, means)), rel=1e-5)


# --------------------------------------------------------------------------- reward models

def test_preference_forward_is_the_member_mean():
    torch.manual_seed(0)
    model = PreferenceRewardEnsemble(547)
    x = torch.randn(4, 20, 547)
    members = torch.stack([model.member(m)(x).squeeze(-1) for m in range(3)])
    torch.testing.assert_close(model(x), members.mean(0))
    assert model(x).shape == (4, 20) and model(x[0, :1]).shape == (1,)
    assert float(model(x).detach().abs().max()) < 1
    torch.testing.assert_close(model.segment_returns(x), members.sum(-1))
    with pytest.raises(ValueError, match="input has 544 features, the model expects 547"):
        model(x[..., :544])


def test_preference_loss_is_soft_bradley_terry():
    g = torch.Generator().manual_seed(0)
    r_left = torch.tanh(torch.randn(6, 20, 1, generator=g, dtype=torch.float64)).requires_grad_(True)
    r_right = torch.tanh(torch.randn(6, 20, 1, generator=g, dtype=torch.float64))
    label = torch.tensor([1.0, 0.0, 0.5, 0.75, 0.25, 1.0], dtype=torch.float64).reshape(6, 1)
    loss = preference_loss(r_left, r_right, label)

    d = r_left.detach().sum((1, 2)) - r_right.sum((1, 2))
    torch.testing.assert_close(loss, F.binary_cross_entropy_with_logits(d, label.reshape(-1)))
    # the authors' form: soft cross-entropy over softmax([R1, R2]) with target [y, 1 - y]
    logits = torch.stack([r_left.detach().sum((1, 2)), r_right.sum((1, 2))], dim=1)
    target = torch.cat([label, 1 - label], dim=1)
    torch.testing.assert_close(loss, -(target * torch.log_softmax(logits, 1)).sum(1).mean())
    # numpy
    dn = d.numpy()
    y = label.numpy().ravel()
    sig = 1 / (1 + np.exp(-dn))
    expected = np.mean(-(y * np.log(sig) + (1 - y) * np.log(1 - sig)))
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-12)
    loss.backward()
    assert r_left.grad is not None and float(r_left.grad.abs().sum()) > 0

    # by hand: R1 = 20 * 0.1 = 2, R2 = 20 * -0.05 = -1, y = 0.75
    hand = -(0.75 * math.log(1 / (1 + math.exp(-3))) + 0.25 * math.log(1 / (1 + math.exp(3))))
    got = preference_loss(torch.full((1, 20), 0.1, dtype=torch.float64),
                          torch.full((1, 20), -0.05, dtype=torch.float64), torch.tensor([0.75]))
    assert float(got) == pytest.approx(hand, rel=1e-12)
    with pytest.raises(ValueError, match=r"label \(5,\) does not match a batch of 6"):
        preference_loss(r_left, r_right, label[:5, 0])


def test_sparse_reward_helpers():
    torch.manual_seed(0)
    model = SparseRewardEnsemble(547)
    x = torch.randn(5, 547)
    logits = model(x)
    assert logits.shape == (4, 5, 3)
    mean = logits.mean(0)
    values = torch.tensor(REWARD_CLASSES)
    torch.testing.assert_close(model.argmax_reward(x), values[mean.argmax(-1)])
    torch.testing.assert_close(model.expected_reward(x), (logits.softmax(-1) * values).sum(-1).mean(0))
    torch.testing.assert_close(model.expected_reward(x, "av_soft"), (mean.softmax(-1) * values).sum(-1))
    assert torch.equal(reward_class_index(torch.tensor([10.0, -1.0, 0.0, 10.0])), torch.tensor([2, 0, 1, 2]))
    with pytest.raises(ValueError, match=r"rewards \[5.0\] are not among"):
        reward_class_index(torch.tensor([5.0, 0.0]))


# --------------------------------------------------------------------------- tiny training runs

def _train(params, loss_fn, steps, lr):
    opt = torch.optim.Adam(params, lr=lr)
    first = None
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn()
        first = float(loss.detach()) if first is None else first
        loss.backward()
        opt.step()
    with torch.no_grad():
        return first, float(loss_fn())


def test_tiny_training_reduces_every_loss():
    torch.manual_seed(0)
    # VAE (Car Racing architecture), fixed reparameterisation noise so the loss is comparable
    vae = ConvVAE.for_env(schema.CARRACING)
    x = torch.rand(4, 3, 84, 84)

    def vae_step():
        recon, mu, logvar = vae(x, generator=torch.Generator().manual_seed(0))
        return vae_loss(recon, x, mu, logvar, vae.config.kl_tolerance, vae.config.n_z)
    before, after = _train(vae.parameters(), vae_step, 8, 1e-3)
    assert after < before

    # MDN-RNN
    rnn = MDNRNN(MDNRNNConfig(n_z=8, rnn_size=16, n_mixtures=5))
    seq = torch.randn(4, 10, 8 + 3)
    target = torch.randn(4, 10, 8)

    def rnn_step():
        out = rnn(seq)
        return mdn_nll(out.logmix, out.mean, out.logstd, target)
    before, after = _train(rnn.parameters(), rnn_step, 20, 1e-2)
    assert after < before

    # preference ensemble: per-member losses summed (each member sees the same pairs here)
    pref = PreferenceRewardEnsemble(547)
    left, right = torch.randn(8, 20, 547), torch.randn(8, 20, 547)
    label = torch.tensor([1.0, 0.0, 0.5, 0.75, 0.25, 1.0, 0.0, 1.0])

    def pref_step():
        return sum(preference_loss(pref.member(m)(left), pref.member(m)(right), label) for m in range(3))
    before, after = _train(pref.parameters(), pref_step, 10, 3e-4)
    assert after < before

    # sparse classifier ensemble: cross-entropy of the mean logits (the authors' default loss)
    sparse = SparseRewardEnsemble(547)
    xs = torch.randn(16, 547)
    targets = reward_class_index(torch.tensor([-1.0, 0.0, 10.0, 0.0] * 4))

    def sparse_step():
        return F.cross_entropy(sparse.mean_logits(xs), targets)
    before, after = _train(sparse.parameters(), sparse_step, 10, 1e-3)
    assert after < before


# --------------------------------------------------------------------------- checkpoints

def _one_adam_step(model, loss_fn):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    opt.zero_grad()
    loss_fn().backward()
    opt.step()
    return opt


def _vae_case():
    x = torch.rand(2, 3, 84, 84)

    def run(m):
        mu = m.encode(x)[0]
        return torch.cat([mu.flatten(), m.decode(mu).flatten()])
    return lambda: ConvVAE.for_env(schema.CARRACING), run


def _mdnrnn_case():
    x = torch.randn(2, 3, 35)
    return lambda: MDNRNN.for_env(schema.CARRACING), lambda m: torch.cat([t.flatten() for t in m(x)[:5]])


def _sparse_case():
    x = torch.randn(3, 547)
    return lambda: SparseRewardEnsemble(547), lambda m: m(x).flatten()


@pytest.mark.parametrize("kind, case", [("vae", _vae_case), ("mdnrnn", _mdnrnn_case), ("sparse", _sparse_case)],
                         ids=["vae", "mdnrnn", "sparse"])
def test_model_state_checkpoint_round_trip(tmp_path, kind, case):
    torch.manual_seed(0)
    make, run = case()
    model = make()
    opt = _one_adam_step(model, lambda: run(model).square().mean())
    path = save_checkpoint(model, opt, tmp_path / f"{kind}.pt")
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"model_state", "optimizer_state"}
    assert set(raw["optimizer_state"]) == {"state", "param_groups"}

    fresh = make()
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    with torch.no_grad():
        assert not torch.equal(run(fresh), run(model))
    load_checkpoint(fresh, path, fresh_opt)
    with torch.no_grad():
        assert torch.equal(run(fresh), run(model))
    restored, original = fresh_opt.state_dict()["state"], opt.state_dict()["state"]
    assert restored.keys() == original.keys()
    for i in original:
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(restored[i][name], original[i][name])


def test_checkpoint_without_optimizer_keeps_both_keys(tmp_path):
    model = MDNRNN(MDNRNNConfig(n_z=2, rnn_size=4))
    path = save_checkpoint(model, None, tmp_path / "m.pt")
    assert set(torch.load(path, weights_only=True)) == {"model_state", "optimizer_state"}
    assert load_checkpoint(MDNRNN(MDNRNNConfig(n_z=2, rnn_size=4)), path)["state"] == {}


def test_checkpoint_errors_name_the_file_and_every_problem(tmp_path):
    cr = ConvVAE(VAEConfig(arch="L", n_z=8, ch1=4))
    path = save_checkpoint(cr, None, tmp_path / "enc.pt")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(ConvVAE(VAEConfig(arch="res128", n_z=8, ch1=4)), path)
    msg = str(err.value)
    assert str(path) in msg
    assert "missing keys ['fc_logvar.weight', 'fc_logvar.bias']" in msg
    assert "unexpected keys ['fc_log_var.weight', 'fc_log_var.bias']" in msg
    assert "fc_mu.weight: expected shape (8, 1024), got (8, 256)" in msg

    member_path = tmp_path / "reward_model_0_x.pt"
    torch.save(PreferenceRewardEnsemble(20).member(0).state_dict(), member_path)
    with pytest.raises(CheckpointError,
                       match="not a {'model_state', 'optimizer_state'} checkpoint.*load_preference_members"):
        load_checkpoint(cr, member_path)

    with pytest.raises(CheckpointError, match="missing member files .*reward_model_1_x.pt"):
        load_preference_members(tmp_path, "x")

    with pytest.raises(CheckpointError, match="checkpoint file not found"):
        load_checkpoint(cr, tmp_path / "absent.pt")

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pt: not a torch checkpoint"):
        load_checkpoint(cr, garbage)


class _Payload:  # any non-tensor class: weights_only loading must refuse to build it
    pass


def test_checkpoints_are_loaded_weights_only(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model_state": _Payload(), "optimizer_state": {}}, path)
    with pytest.raises(CheckpointError, match="evil.pt: cannot be read as a safe .*weights_only"):
        load_checkpoint(MDNRNN(MDNRNNConfig(n_z=2, rnn_size=4)), path)


def test_preference_members_round_trip(tmp_path):
    torch.manual_seed(0)
    model = PreferenceRewardEnsemble(547)
    paths = save_preference_members(model, tmp_path / "pref", "GUI_s20_test")
    assert [p.name for p in paths] == [f"reward_model_{m}_GUI_s20_test.pt" for m in range(3)]
    raw = torch.load(paths[1], weights_only=True)
    assert list(raw) == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias", "6.weight", "6.bias"]
    loaded = load_preference_members(tmp_path / "pref", "GUI_s20_test")
    x = torch.randn(7, 547)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
        assert all(torch.equal(loaded.member(m)(x), model.member(m)(x)) for m in range(3))

    # a member with the wrong shape: reported with its file name
    bad = PreferenceRewardEnsemble(2115)
    torch.save(bad.member(2).state_dict(), paths[2])
    with pytest.raises(CheckpointError, match=r"reward_model_2_GUI_s20_test.pt.*0.weight: expected shape \(256, 547\), "
                                              r"got \(256, 2115\)"):
        load_preference_members(tmp_path / "pref", "GUI_s20_test")


# --------------------------------------------------------------------------- import hygiene

def test_import_does_not_pull_in_tensorflow(tmp_path):
    code = ("import sys, dropj.models; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_datasets')); "
            "assert not bad, bad; print('ok')")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
