"""`dropj encode`: real episodes as latent episodes z|c|h, checked against an independent step-by-step computation."""

from __future__ import annotations

import errno
import hashlib
import re
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import factory
from factory.compare import assert_reads_like_tfds
from dropj_datasets.app import models_io
from dropj.converters.store import durable
from dropj.converters.derive import latents as encode_lib
from dropj.converters.roundtrip.built import BuiltDataset
from dropj.models import MDNRNN, ConvVAE, encode_episode, frames_to_tensor, save_checkpoint
from dropj_datasets import schema
from dropj_datasets.schema import DataError


def _models(seed=0):
    torch.manual_seed(seed)
    return ConvVAE.for_env(schema.CARRACING), MDNRNN.for_env(schema.CARRACING)


def _reference(vae, rnn, frames, actions) -> np.ndarray:
    """One frame and one LSTM step at a time, the LSTM written out in numpy (i, f, g, o gates)."""
    cell = rnn.lstm_cell
    w_ih, w_hh = cell.weight_ih.detach().double().numpy(), cell.weight_hh.detach().double().numpy()
    bias = (cell.bias_ih + cell.bias_hh).detach().double().numpy()
    def sigmoid(v):
        return 1 / (1 + np.exp(-v))

    n = rnn.config.rnn_size
    c, h = np.zeros(n), np.zeros(n)
    rows = []
    for t in range(len(frames)):
        with torch.no_grad():
            z = vae.encode(frames_to_tensor(frames[t:t + 1]))[0][0].double().numpy()
        rows.append(np.concatenate([z, c, h]))
        if t < len(actions):
            gates = w_ih @ np.concatenate([z, actions[t]]) + w_hh @ h + bias
            i, f, g, o = (sigmoid(gates[:n]), sigmoid(gates[n:2 * n]), np.tanh(gates[2 * n:3 * n]),
                          sigmoid(gates[3 * n:]))
            c = f * c + i * g
            h = o * np.tanh(c)
    return np.stack(rows)


def test_encode_episode_equals_a_step_by_step_computation():
    vae, rnn = _models()
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (13, 84, 84, 3), dtype=np.uint8)
    actions = np.stack([rng.choice([-1.0, 0.0, 1.0], 12), rng.choice([0.0, 1.0], 12), rng.choice([0.0, 0.8], 12)], 1)
    states = encode_episode(vae, rnn, frames, actions, batch_size=5)
    assert states.shape == (13, 544) and states.dtype == np.float32
    assert np.array_equal(states[0, 32:], np.zeros(512))  # (c_0, h_0) = 0
    np.testing.assert_allclose(states, _reference(vae, rnn, frames, actions), atol=2e-5)
    with pytest.raises(ValueError, match="12 transitions has 13 frames"):
        encode_episode(vae, rnn, frames[:5], actions)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    for config in ("real", "dream"):
        factory.build(f"dropj_carracing/{config}", factory.dummy_data("dropj_carracing"), data)
    vae, rnn = _models(1)
    save_checkpoint(vae, None, data / "vae.pt")
    save_checkpoint(rnn, None, data / "rnn.pt")
    return data, vae, rnn


@pytest.mark.slow
def test_dropj_encode_writes_one_latent_episode_per_source_episode(built, tmp_path):
    data, vae, rnn = built
    directory = models_io.encode("dropj_carracing/real", str(data / "vae.pt"), str(data / "rnn.pt"),
                              data_dir=str(data), out=str(tmp_path), log=lambda line: None)
    encoded = BuiltDataset.open(str(directory))
    source = BuiltDataset.open("dropj_carracing/real", str(data))
    assert assert_reads_like_tfds(Path(directory)) == 3  # the TF-free reader, on an encoded directory
    pairs = list(zip(source.episodes(), encoded.examples()))
    assert len(pairs) == source.count == encoded.count == 3
    for (index, ep, _), example in zip(source.episodes(), encoded.examples()):
        steps, meta = example[schema.STEPS], example[schema.EPISODE_METADATA]
        np.testing.assert_array_equal(steps[schema.OBSERVATION], encode_episode(vae, rnn, ep.observations, ep.actions))
        np.testing.assert_array_equal(steps[schema.ACTION][:-1], ep.actions)
        np.testing.assert_array_equal(steps[schema.ACTION_SCALED][:-1], schema.scale_action(ep.actions))
        np.testing.assert_array_equal(steps[schema.REWARD][:-1], ep.rewards)
        assert bool(steps[schema.IS_TERMINAL][-1]) == ep.is_terminal
        assert int(meta[f"source_{schema.EPISODE_INDEX}"]) == index
        assert meta[schema.VAE_SHA256].decode() == hashlib.sha256((data / "vae.pt").read_bytes()).hexdigest()
        assert meta[schema.SOURCE_DATASET] == b"dropj_carracing/real"
    with pytest.raises(DataError, match="already holds 3 encoded episodes"):
        models_io.encode("dropj_carracing/real", str(data / "vae.pt"), str(data / "rnn.pt"), data_dir=str(data),
                      out=str(tmp_path), log=lambda line: None)
    with pytest.raises(DataError, match="encode reads frames"):
        models_io.encode("dropj_carracing/dream", str(data / "vae.pt"), str(data / "rnn.pt"), data_dir=str(data),
                      out=str(tmp_path / "x"), log=lambda line: None)


@pytest.mark.slow
def test_the_mdnrnn_trains_on_encoded_episodes(built, tmp_path):
    from dropj_datasets.app.train import train_from_dataset

    data, _, _ = built
    models_io.encode("dropj_carracing/real", str(data / "vae.pt"), str(data / "rnn.pt"), data_dir=str(data),
                  out=str(tmp_path / "enc"), log=lambda line: None)
    history = train_from_dataset("mdnrnn", str(tmp_path / "enc"), dataset="dropj_encoded/carracing",
                                 out_dir=str(tmp_path / "run"), steps=3, batch_size=2, sequence_length=8,
                                 progress=False, validate_every=3)
    assert len(history.train_loss) == 3 and np.isfinite(history.train_loss).all()


def _failing_after(vae, rnn, good: int):
    """`make_encoder` whose encoder fails after `good` episodes (a full disk, say)."""
    calls = []

    def make(env):
        def encoder(frames, actions):
            calls.append(1)
            if len(calls) > good:
                raise OSError(errno.ENOSPC, "No space left on device")
            return encode_episode(vae, rnn, frames, actions)
        return encoder
    return make


@pytest.mark.slow
def test_an_interrupted_encode_is_marked_incomplete_and_the_rerun_resumes(built, tmp_path):
    """`dropj encode` that failed after 1 of 3 episodes left a directory that loaded as a complete 1-episode
    dataset, with no incomplete marker, and the rerun was refused."""
    data, vae, rnn = built
    checkpoints = {schema.VAE_SHA256: str(data / "vae.pt"), schema.MDNRNN_SHA256: str(data / "rnn.pt")}
    lines: list[str] = []
    with pytest.raises(OSError, match="No space left on device"):
        encode_lib.encode("dropj_carracing/real", _failing_after(vae, rnn, 1), checkpoints, data_dir=str(data),
                          out=str(tmp_path), log=lines.append)
    final = encode_lib.encoded_dir(tmp_path, "carracing")
    marker = encode_lib.incomplete_dir(final)
    assert not final.exists() and marker.is_dir()  # nothing loads as a finished dataset
    with pytest.raises(DataError):
        BuiltDataset.open("dropj_encoded/carracing", str(tmp_path))
    assert any(f"1 of 3 episodes are in {marker}" in line and "run the same command again to resume" in line
               for line in lines), lines
    directory = models_io.encode("dropj_carracing/real", str(data / "vae.pt"), str(data / "rnn.pt"),
                                 data_dir=str(data), out=str(tmp_path), log=lines.append)
    assert directory == final and not marker.exists()
    encoded = BuiltDataset.open(str(directory))
    source = BuiltDataset.open("dropj_carracing/real", str(data))
    assert encoded.count == 3
    for (index, ep, _), example in zip(source.episodes(), encoded.examples()):
        meta = example[schema.EPISODE_METADATA]
        assert int(meta[f"source_{schema.EPISODE_INDEX}"]) == index
        np.testing.assert_array_equal(example[schema.STEPS][schema.OBSERVATION],
                                      encode_episode(vae, rnn, ep.observations, ep.actions))
    assert [int(e[schema.EPISODE_METADATA][schema.EPISODE_INDEX]) for e in encoded.examples()] == [0, 1, 2]


@pytest.mark.slow
def test_an_unfinished_encode_with_other_checkpoints_says_what_to_remove_and_one_encode_per_output(built, tmp_path):
    data, vae, rnn = built
    checkpoints = {schema.VAE_SHA256: str(data / "vae.pt"), schema.MDNRNN_SHA256: str(data / "rnn.pt")}
    with pytest.raises(OSError):
        encode_lib.encode("dropj_carracing/real", _failing_after(vae, rnn, 1), checkpoints, data_dir=str(data),
                          out=str(tmp_path), log=lambda line: None)
    other = tmp_path / "other.pt"
    other.write_bytes((data / "vae.pt").read_bytes() + b"\0")  # another file: another digest
    with pytest.raises(DataError, match="other checkpoints") as refused:
        encode_lib.encode("dropj_carracing/real", _failing_after(vae, rnn, 9),
                          {**checkpoints, schema.VAE_SHA256: str(other)}, data_dir=str(data), out=str(tmp_path),
                          log=lambda line: None)
    [command] = re.findall(r"`([^`]+)`", str(refused.value))
    subprocess.run(shlex.split(command), check=True)  # what the message says to remove
    final = encode_lib.encoded_dir(tmp_path, "carracing")
    holder = durable.take_lock(encode_lib.output_lock(final), "pid 1 on elsewhere, dropj encode")
    try:
        with pytest.raises(DataError, match=r"another dropj encode is writing it \(pid 1 on elsewhere"):
            encode_lib.encode("dropj_carracing/real", _failing_after(vae, rnn, 9), checkpoints, data_dir=str(data),
                              out=str(tmp_path), log=lambda line: None)
    finally:
        durable.release_lock(holder)
    encode_lib.encode("dropj_carracing/real", _failing_after(vae, rnn, 9), checkpoints, data_dir=str(data),
                      out=str(tmp_path), log=lambda line: None)
    assert BuiltDataset.open(str(final)).count == 3
