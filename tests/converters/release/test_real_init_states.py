"""The real `default_init_obs*.pkl` release files (read via DROPJ_REAL_DATA, never
copied into the repo) through the reader, the dream builder and verify."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

import factory
import tensorflow_datasets as tfds

import dropj_datasets  # noqa: F401
from factory import legacy as legacy_factory
from dropj.converters.release import episodes as episodes_lib
from dropj.converters.roundtrip import export, verify
from dropj.converters.store import legacy_pickle
from dropj_datasets import schema

REAL_DATA = factory.real_data()
pytestmark = pytest.mark.skipif(REAL_DATA is None, reason="DROPJ_REAL_DATA is not set (.ci/run sets it)")
DREAM = schema.spec_for("dropj_carracing", "dream")


def _real(name: str) -> Path:
    return Path(REAL_DATA) / "carracing" / name


def test_real_initial_states_have_the_documented_quirks():
    with open(_real("default_init_obs.pkl"), "rb") as f:
        single = legacy_pickle.load(f, "default_init_obs.pkl")
    with open(_real("default_init_obses_ep600enc_15.pkl"), "rb") as f:
        many = legacy_pickle.load(f, "default_init_obses_ep600enc_15.pkl")
    assert single.dtype == np.float64 and single.shape == (544,)
    # float64 holding float32-exact values (np.zeros filled with float32 values)
    np.testing.assert_array_equal(single.astype(np.float32).astype(np.float64), single)
    assert len(many) == 15 and all(s.dtype == np.float64 and s.shape == (544,) for s in many)
    h = single[32 + 256:]
    assert np.all(np.abs(h) < 1)  # h = o * tanh(c)
    assert _real("default_init_obs.pkl").read_bytes()[1] == 4
    assert _real("default_init_obses_ep600enc_15.pkl").read_bytes()[1] == 5


def test_dream_build_keeps_the_real_initial_state_as_provenance(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    shutil.copy(_real("default_init_obs.pkl"), manual / "default_init_obs.pkl")  # a temp copy, outside the repo
    with open(_real("default_init_obs.pkl"), "rb") as f:
        state = pickle.load(f)
    rng = np.random.default_rng(0)
    plain, scaled = legacy_factory.dream_episodes(DREAM, [6, 4], state[None, :], rng)
    legacy_factory.write_pickle(manual / DREAM.sources.episodes, plain, 4)
    legacy_factory.write_pickle(manual / DREAM.sources.scaled, scaled, 4)

    builder = tfds.builder("dropj_carracing/dream", data_dir=str(tmp_path / "d"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    for ep in tfds.as_numpy(builder.as_dataset(split="train")):
        meta = ep["episode_metadata"]
        assert meta["initial_state_file"] == b"default_init_obs.pkl" and meta["initial_state_index"] == 0
        np.testing.assert_array_equal(meta["initial_state"], state)

    reports = verify.verify("dropj_carracing/dream", manual, data_dir=str(tmp_path / "d"), log=lambda s: None)
    assert {r.name for r in reports} == {DREAM.sources.episodes, DREAM.sources.scaled, "default_init_obs.pkl"}
    assert all(r.ok for r in reports), [r.mismatches for r in reports]

    out = export.export("dropj_carracing/dream", tmp_path / "out", data_dir=str(tmp_path / "d"), log=lambda s: None)
    exported = {p.name: p for p in out}
    again = pickle.loads(exported["default_init_obs.pkl"].read_bytes())
    assert episodes_lib.compare(state, again) == []
    assert exported["default_init_obs.pkl"].read_bytes()[1] == 4  # the source's protocol


def test_request_keeps_the_real_15_start_states_whole(tmp_path):
    """ReQueST's start states (`default_init_obses_ep600enc_15.pkl`, the real file) kept with `request` and
    given back exactly by export (verify compares every value, dtype and type)."""
    manual = tmp_path / "m"
    shutil.copytree(factory.dummy_data("dropj_carracing") / "feedback", manual)
    (manual / "default_init_obses_ep600enc_15.pkl").unlink()
    shutil.copy(_real("default_init_obses_ep600enc_15.pkl"), manual / "default_init_obses_ep600enc_15.pkl")
    factory.build("dropj_carracing/request", manual, tmp_path / "d")
    reports = verify.verify("dropj_carracing/request", manual, data_dir=str(tmp_path / "d"), log=lambda s: None)
    [kept] = [r for r in reports if r.name == "default_init_obses_ep600enc_15.pkl"]
    assert kept.ok and all(r.ok for r in reports)
    [path] = [p for p in export.export("dropj_carracing/request", tmp_path / "out", data_dir=str(tmp_path / "d"),
                                       log=lambda s: None) if p.name == "default_init_obses_ep600enc_15.pkl"]
    real = pickle.loads(_real("default_init_obses_ep600enc_15.pkl").read_bytes())
    ours = pickle.loads(path.read_bytes())
    assert len(ours) == 15 and all(a.dtype == np.float64 and np.array_equal(a, b) for a, b in zip(ours, real))
    assert path.read_bytes()[:2] == _real("default_init_obses_ep600enc_15.pkl").read_bytes()[:2]  # protocol 5
