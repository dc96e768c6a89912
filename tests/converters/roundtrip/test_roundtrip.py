"""Build -> load -> export -> verify, on synthetic sources covering every quirk of
DATA_FORMATS.md §1-§3, with the real TFDS, tf.data and rlds libraries."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import factory
import rlds
import tensorflow_datasets as tfds

import dropj_datasets  # noqa: F401
from factory import legacy as legacy_factory
from dropj.converters.release import episodes as episodes_lib
from dropj.converters.roundtrip import export, verify
from dropj_datasets import schema


def build(dataset: str, config: str, manual_dir, data_dir):
    return factory.build(f"{dataset}/{config}", manual_dir, data_dir)


def load_steps(builder) -> list[dict]:
    ds = builder.as_dataset(split="train")
    out = []
    for ep in tfds.as_numpy(ds.map(lambda e: {**e, "steps": e["steps"].batch(100000).get_single_element()})):
        out.append(ep)
    return out


REAL_CONFIGS = [("dropj_carracing", "real"), ("dropj_obst_carracing", "chuckc_real"),
                ("dropj_obst_carracing", "chuckccar_real")]


@pytest.mark.slow
@pytest.mark.parametrize("dataset,config", REAL_CONFIGS)
@pytest.mark.parametrize("protocol,in_zip", [(5, True), (4, False)])
def test_real_round_trip_is_exact(tmp_path, dataset, config, protocol, in_zip):
    spec = schema.spec_for(dataset, config)
    manual = tmp_path / "manual"
    source = legacy_factory.make_real_source(manual, spec, lengths=(6, 3, 1, 4), protocol=protocol, in_zip=in_zip)
    build(dataset, config, manual, tmp_path / "data")

    reports = verify.verify(f"{dataset}/{config}", manual, data_dir=str(tmp_path / "data"), log=lambda s: None)
    assert [r.name for r in reports] == [spec.sources.episodes]
    assert reports[0].ok, reports[0].mismatches
    assert reports[0].episodes == len(source)

    [path] = export.export(f"{dataset}/{config}", tmp_path / "out", data_dir=str(tmp_path / "data"),
                              log=lambda s: None)
    with open(path, "rb") as f:
        exported = pickle.load(f)
    assert episodes_lib.compare(source, exported) == []
    assert path.read_bytes()[1] == protocol
    # Python types exactly as the release: int rewards, float done, bool info values.
    first = exported[0][0]
    assert type(first[2]) is int and type(first[4]) is float and first[1].dtype == np.float64


def test_rlds_alignment_of_real_episodes(tmp_path):
    spec = schema.spec_for("dropj_carracing", "real")
    manual = tmp_path / "m"
    source = legacy_factory.make_real_source(manual, spec, lengths=(5, 3, 2, 4))
    builder = build("dropj_carracing", "real", manual, tmp_path / "d")
    episodes = load_steps(builder)
    assert len(episodes) == 4
    # endings: truncated, terminated, limit_and_oob (terminal: TimeLimit.truncated False), open
    expected_terminal = [False, True, True, False]
    for ep, src, terminal in zip(episodes, source, expected_terminal):
        steps = ep["steps"]
        n = len(src)
        assert len(steps["observation"]) == n + 1  # each frame once, plus s_T
        np.testing.assert_array_equal(steps["observation"][:n], np.stack([t[0] for t in src]))
        np.testing.assert_array_equal(steps["observation"][n], src[-1][3])
        np.testing.assert_array_equal(steps["action"][:n], np.stack([t[1] for t in src]))
        assert steps["reward"][:n].tolist() == [t[2] for t in src]
        assert steps["is_first"].tolist() == [True] + [False] * n
        assert steps["is_last"].tolist() == [False] * n + [True]
        assert steps["is_terminal"].tolist() == [False] * n + [terminal]
        assert steps["discount"].tolist() == [1.0] * n + [0.0 if terminal else 1.0]
        truncated = steps["info"]["time_limit_truncated"]
        assert truncated[-1] == schema.INFO_ABSENT  # padding step
        crash = [schema.INFO_TRUE if t[5].get("crash") else schema.INFO_ABSENT for t in src]
        assert steps["info"]["crash"][:n].tolist() == crash
        assert ep["episode_metadata"]["final_done"] == src[-1][4]


def test_real_library_transformations_on_built_data(tmp_path):
    spec = schema.spec_for("dropj_carracing", "real")
    manual = tmp_path / "m"
    source = legacy_factory.make_real_source(manual, spec, lengths=(5, 3, 2))
    builder = build("dropj_carracing", "real", manual, tmp_path / "d")
    ds = builder.as_dataset(split="train")
    lengths = [int(n) for n in tfds.as_numpy(ds.map(lambda e: rlds.transformations.episode_length(e["steps"])))]
    assert lengths == [len(ep) + 1 for ep in source]
    total_reward = rlds.transformations.sum_dataset(
        ds.flat_map(lambda e: e["steps"]), lambda step: step["reward"])
    assert int(total_reward) == sum(t[2] for ep in source for t in ep)


@pytest.mark.slow
@pytest.mark.parametrize("dataset,config", [("dropj_carracing", "dream"), ("dropj_obst_carracing", "chuckc_dream"),
                                            ("dropj_obst_carracing", "chuckccar_dream")])
def test_dream_round_trip_keeps_both_action_files_and_step0_float64(tmp_path, dataset, config):
    spec = schema.spec_for(dataset, config)
    manual = tmp_path / "m"
    made = legacy_factory.make_dream_source(manual, spec, lengths=(4, 3, 2), n_states=2)
    builder = build(dataset, config, manual, tmp_path / "d")

    reports = verify.verify(f"{dataset}/{config}", manual, data_dir=str(tmp_path / "d"), log=lambda s: None)
    names = {r.name for r in reports}
    assert {spec.sources.episodes, spec.sources.scaled} <= names
    assert set(spec.sources.initial_states) <= names  # provenance files round-trip too
    assert all(r.ok for r in reports), [r.mismatches for r in reports]

    episodes = load_steps(builder)
    for i, (ep, src, src_scaled) in enumerate(zip(episodes, made["plain"], made["scaled"])):
        meta, steps = ep["episode_metadata"], ep["steps"]
        assert steps["observation"].dtype == np.float32
        assert meta["initial_state"].dtype == np.float64
        np.testing.assert_array_equal(meta["initial_state"], src[0][0])
        np.testing.assert_array_equal(steps["action"][:-1], np.stack([t[1] for t in src]))
        np.testing.assert_array_equal(steps["action_scaled"][:-1], np.stack([t[1] for t in src_scaled]))
        assert not steps["is_terminal"].any()
        # The step-0 state is found in the initial-state file that holds it.
        if "obses" in spec.sources.initial_states[0]:
            assert meta["initial_state_file"].decode() == spec.sources.initial_states[0]
            assert meta["initial_state_index"] == i % 2
        else:
            assert meta["initial_state_index"] == (0 if i % 2 == 0 else -1)

    out = export.export(f"{dataset}/{config}", tmp_path / "out", data_dir=str(tmp_path / "d"), log=lambda s: None)
    exported = {p.name: pickle.loads(p.read_bytes()) for p in out}
    assert episodes_lib.compare(made["plain"], exported[spec.sources.episodes]) == []
    assert episodes_lib.compare(made["scaled"], exported[spec.sources.scaled]) == []
    step0, step1 = exported[spec.sources.episodes][0][0][0], exported[spec.sources.episodes][0][1][0]
    assert (step0.dtype, step1.dtype) == (np.float64, np.float32)


def test_dream_with_only_the_scaled_file(tmp_path):
    spec = schema.spec_for("dropj_carracing", "dream")
    manual = tmp_path / "m"
    made = legacy_factory.make_dream_source(manual, spec, with_plain=False, with_states=False)
    builder = build("dropj_carracing", "dream", manual, tmp_path / "d")
    [ep, *_] = load_steps(builder)
    assert np.isnan(ep["steps"]["action"]).all()
    np.testing.assert_array_equal(ep["steps"]["action_scaled"][:-1], np.stack([t[1] for t in made["scaled"][0]]))
    assert ep["episode_metadata"]["initial_state_index"] == -1
    reports = verify.verify("dropj_carracing/dream", manual, data_dir=str(tmp_path / "d"), log=lambda s: None)
    assert [r.name for r in reports] == [spec.sources.scaled] and reports[0].ok


def test_verify_reports_a_changed_source(tmp_path):
    spec = schema.spec_for("dropj_carracing", "real")
    manual = tmp_path / "m"
    source = legacy_factory.make_real_source(manual, spec, lengths=(4, 3))
    build("dropj_carracing", "real", manual, tmp_path / "d")
    # Change one bit of one action and the type of one done after the build.
    source[1][2] = (source[1][2][0], source[1][2][1] + np.array([0, 0, 1e-12]), *source[1][2][2:])
    source[0][0] = (*source[0][0][:4], 0, source[0][0][5])
    legacy_factory.write_pickle(manual / "nested" / spec.sources.episodes, source, 5)
    [report] = verify.verify("dropj_carracing/real", manual, data_dir=str(tmp_path / "d"), log=lambda s: None)
    assert not report.ok
    text = "\n".join(report.mismatches)
    assert "episode 1[2][1]: values differ" in text
    assert "episode 0[0][4]: type int != float" in text
