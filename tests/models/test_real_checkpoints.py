"""The 18 real preference reward checkpoints of the release (read via DROPJ_REAL_DATA, never copied into
the repo): they load on the CPU into `PreferenceRewardEnsemble` and reproduce DATA_FORMATS.md 7.3's
reference outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import factory
import torch

from dropj.converters.store import legacy_pickle
from dropj.models import PreferenceRewardEnsemble, load_preference_members, save_preference_members

REAL_DATA = factory.real_data()
pytestmark = pytest.mark.skipif(
    REAL_DATA is None,
    reason="DROPJ_REAL_DATA is not set (point it at the real release files, e.g. /work/shared/real-data)")

NOTES = [f"GUI_s20_{variant}_resp{resp}" for variant in ("just", "nojusteq", "nojustnoeq") for resp in (400, 500)]
KEYS = {"0.weight": (256, 547), "0.bias": (256,), "2.weight": (256, 256), "2.bias": (256,),
        "4.weight": (256, 256), "4.bias": (256,), "6.weight": (1, 256), "6.bias": (1,)}

# DATA_FORMATS.md 7.3: member 0 of GUI_s20_just_resp500 on the 15 states of
# default_init_obses_ep600enc_15.pkl with the scaled action [0, 0, 0].
REFERENCE = np.array([
    -0.24760623, +0.03370856, -0.24649344, +0.30552205, +0.14135693, +0.03720142, +0.14767136, +0.01122679,
    -0.07237685, -0.23391542, -0.24196641, -0.32177767, -0.25406292, +0.13461277, -0.20602103,
], dtype=np.float64)


def _models_dir() -> Path:
    return Path(REAL_DATA) / "carracing" / "pref_reward_models"


def _inputs() -> torch.Tensor:
    path = Path(REAL_DATA) / "carracing" / "default_init_obses_ep600enc_15.pkl"
    with open(path, "rb") as f:
        states = legacy_pickle.load(f, str(path))
    assert len(states) == 15 and all(s.shape == (544,) and s.dtype == np.float64 for s in states)
    x = np.stack(states).astype(np.float32)
    return torch.from_numpy(np.concatenate([x, np.zeros((15, 3), np.float32)], axis=1))


@pytest.mark.parametrize("note", NOTES)
def test_real_members_load_on_cpu(note):
    model = load_preference_members(_models_dir(), note)
    assert isinstance(model, PreferenceRewardEnsemble) and model.config.input_dim == 547
    for m in range(3):
        state = model.member(m).state_dict()
        assert {k: tuple(v.shape) for k, v in state.items()} == KEYS
        assert all(v.device.type == "cpu" and v.dtype == torch.float32 and bool(v.isfinite().all())
                   for v in state.values())
    x = _inputs()
    with torch.no_grad():
        members = torch.stack([model.member(m)(x).squeeze(-1) for m in range(3)])
        torch.testing.assert_close(model(x), members.mean(0), rtol=0, atol=0)
    assert float(members.abs().max()) < 1
    # the three members were trained separately: they differ
    assert not torch.equal(members[0], members[1]) and not torch.equal(members[1], members[2])


def test_member_0_reproduces_the_reference_vector():
    model = load_preference_members(_models_dir(), "GUI_s20_just_resp500")
    with torch.no_grad():
        got = model.member(0)(_inputs()).squeeze(-1).double().numpy()
    error = np.abs(got - REFERENCE).max()
    assert error < 1e-6, f"max abs error {error:.3g} vs DATA_FORMATS.md 7.3"


def test_real_members_survive_save_and_load_bit_for_bit(tmp_path):
    model = load_preference_members(_models_dir(), "GUI_s20_just_resp500")
    save_preference_members(model, tmp_path, "GUI_s20_just_resp500")
    again = load_preference_members(tmp_path, "GUI_s20_just_resp500")
    for m in range(3):
        original = model.member(m).state_dict()
        for k, v in again.member(m).state_dict().items():
            assert torch.equal(v, original[k]), k
    x = _inputs()
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
        assert torch.equal(again.member(0)(x), model.member(0)(x))
