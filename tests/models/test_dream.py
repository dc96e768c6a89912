"""`DropjDream-v0`: the world model's dynamics, checked against an independent computation of one step."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import dropj_datasets.envs  # noqa: F401  (registers the ids)
import factory
from dropj.models.dream import DropjDream


@pytest.fixture(scope="module")
def checkpoints(world_model):
    return world_model


def _make(checkpoints, **kwargs):
    return gym.make("DropjDream-v0", env="carracing", mdnrnn=str(checkpoints / "rnn.pt"),
                    vae=str(checkpoints / "vae.pt"), **kwargs)


def test_one_step_equals_an_independent_computation(checkpoints):
    env = _make(checkpoints,
                init_states=str(factory.dummy_data("dropj_carracing") / "extracted" / "default_init_obs.pkl"))
    obs, info = env.reset(seed=11)
    core: DropjDream = env.unwrapped
    assert info["initial_state"].dtype == np.float64 and np.array_equal(obs, info["initial_state"].astype(np.float32))
    action = np.array([-1.0, 1.0, 0.0])
    nxt, reward, terminated, truncated, step_info = env.step(action)
    assert (reward, terminated, truncated, step_info) == (0, False, False, {})

    # The LSTM written out in numpy, then the mixture, with the same random stream (multinomial, then normal).
    rnn = core.rnn
    n_z, n = rnn.config.n_z, rnn.config.rnn_size
    z, c, h = obs[:n_z].astype(np.float64), obs[n_z:n_z + n].astype(np.float64), obs[n_z + n:].astype(np.float64)
    cell = rnn.lstm_cell
    gates = (cell.weight_ih.detach().double().numpy() @ np.concatenate([z, action]) +
             cell.weight_hh.detach().double().numpy() @ h + (cell.bias_ih + cell.bias_hh).detach().double().numpy())
    def sig(v):
        return 1 / (1 + np.exp(-v))

    c_next = sig(gates[n:2 * n]) * c + sig(gates[:n]) * np.tanh(gates[2 * n:3 * n])
    h_next = sig(gates[3 * n:]) * np.tanh(c_next)
    out = (rnn.output_w.weight.detach().double().numpy() @ h_next + rnn.output_w.bias.detach().double().numpy())
    k = rnn.config.n_mixtures
    out = out.reshape(n_z, 3 * k)
    logmix, mean, logstd = out[:, :k], out[:, k:2 * k], out[:, 2 * k:]
    probs = np.exp(logmix - logmix.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    generator = torch.Generator().manual_seed(11)
    chosen = torch.multinomial(torch.as_tensor(probs, dtype=torch.float32), 1, generator=generator)[:, 0].numpy()
    noise = torch.randn(n_z, generator=generator).double().numpy()
    z_next = mean[np.arange(n_z), chosen] + np.exp(logstd[np.arange(n_z), chosen]) * noise * math.sqrt(1.0)
    np.testing.assert_allclose(nxt, np.concatenate([z_next, c_next, h_next]), atol=1e-4)
    frame = core.render() if core.render_mode else None
    assert frame is None
    env.close()


def test_episodes_last_1000_steps_start_from_the_files_states_and_render_the_decode(checkpoints):
    states = np.random.default_rng(0).standard_normal((3, 544))
    env = _make(checkpoints, init_states=states, render_mode="rgb_array")
    starts = []
    for episode in range(4):
        obs, info = env.reset(seed=5) if episode == 0 else env.reset()
        starts.append(info["initial_state"])
        if episode == 0:
            frame = env.render()
            assert frame.shape == (84, 84, 3) and frame.dtype == np.uint8
            steps, truncated = 0, False
            while not truncated:
                obs, reward, terminated, truncated, _ = env.step(np.array([0.0, 1.0, 0.0]))
                assert reward == 0 and not terminated and obs.dtype == np.float32
                steps += 1
            assert steps == 1000
    assert [np.array_equal(s, states[i % 3]) for i, s in enumerate(starts)] == [True] * 4  # cycled per episode
    env.close()


def test_the_same_seed_dreams_the_same(checkpoints):
    def run():
        env = _make(checkpoints)
        env.reset(seed=3)
        out = [env.step(np.array([1.0, 0.0, 0.8]))[0] for _ in range(5)]
        env.close()
        return np.stack(out)
    assert np.array_equal(run(), run())


def test_gymnasium_finds_nothing_wrong(checkpoints):
    env = DropjDream(mdnrnn=str(checkpoints / "rnn.pt"), vae=str(checkpoints / "vae.pt"), render_mode="rgb_array")
    check_env(env, skip_render_check=True)
    with pytest.raises(ValueError, match="needs a VAE"):
        DropjDream(render_mode="rgb_array")
