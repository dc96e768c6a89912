"""The `queries` config (segments + videos as released) and the ReQueST / DROS sketch configs."""

from __future__ import annotations

import collections
import copy
import pickle
from pathlib import Path

import numpy as np
import pytest

import factory
import tensorflow_datasets as tfds

from factory import REPO
import dropj_datasets  # noqa: F401
from factory import legacy as legacy_factory
from dropj.converters.release import episodes as episodes_lib
from dropj.converters.roundtrip import export, verify
from dropj_datasets import schema
from dropj_datasets.schema import DataError

CR = "dropj_carracing"


def _build(config, manual, data_dir):
    return factory.build(f"{CR}/{config}", manual, data_dir)


def _queries_source(manual: Path, n: int = 4, videos: bool = True) -> tuple[dict, dict]:
    rng = np.random.default_rng(3)
    data = legacy_factory.query_segments(n, seed=4, order=[2, 0, 1, 3][:n])  # data.pkl's key order is kept
    legacy_factory.write_pickle(manual / "queries_s20" / "data.pkl", data, 4)
    mp4s = {name: bytes(rng.integers(0, 256, 300 + 7 * i, dtype=np.uint8)) for i, name in enumerate(data)}
    if videos:
        legacy_factory.write_zip(manual / "videos.zip", {f"queries_s20/{name}": b for name, b in mp4s.items()})
    return data, mp4s


def test_queries_keep_segments_and_video_bytes_exactly(tmp_path):
    data, mp4s = _queries_source(tmp_path / "m")
    builder = _build("queries", tmp_path / "m", tmp_path / "d")
    examples = list(tfds.as_numpy(builder.as_dataset(split="train")))
    assert [e["query_id"].decode() for e in examples] == list(data)
    first = examples[0]
    assert first["query_index"] == 2 and first["video"] == mp4s["2.mp4"]
    left = np.stack([step["observation"] for step in first["left"]])
    np.testing.assert_array_equal(left, data["2.mp4"]["segment1"][:, :544])

    reports = verify.verify(f"{CR}/queries", tmp_path / "m", data_dir=str(tmp_path / "d"), log=lambda s: None)
    assert [(r.name, r.episodes, r.ok) for r in reports] == [("queries_s20/data.pkl", 1, True),
                                                             ("queries_s20/*.mp4", 4, True)]
    written = export.export(f"{CR}/queries", tmp_path / "out", data_dir=str(tmp_path / "d"), log=lambda s: None)
    exported = pickle.loads((tmp_path / "out" / "queries_s20" / "data.pkl").read_bytes())
    assert episodes_lib.compare(data, exported) == [] and list(exported) == list(data)
    assert {p.name: p.read_bytes() for p in written if p.suffix == ".mp4"} == mp4s


def test_a_query_without_its_video_is_named(tmp_path):
    _queries_source(tmp_path / "m", videos=False)
    with pytest.raises(DataError, match=r"missing queries_s20/2.mp4, queries_s20/0.mp4"):
        _build("queries", tmp_path / "m", tmp_path / "d")


@pytest.mark.parametrize("config", ["request", "dros"])
def test_sample_sketches_round_trip_with_their_time_files(tmp_path, config):
    spec = schema.spec_for(CR, config)
    manual = REPO / "dropj_datasets" / CR / "dummy_data"
    builder = _build(config, manual, tmp_path / "d")
    reports = verify.verify(f"{CR}/{config}", manual, data_dir=str(tmp_path / "d"), log=lambda s: None)
    # ReQueST's companion files, present in the sample, come back too, each exactly
    assert [r.name for r in reports] == [spec.sketches_file, spec.times_file, *spec.companion_files]
    assert all(r.ok for r in reports), [r.mismatches for r in reports]

    out = {p.name: p for p in export.export(f"{CR}/{config}", tmp_path / "out", data_dir=str(tmp_path / "d"),
                                                 log=lambda s: None)}
    sketches = pickle.loads(out[spec.sketches_file].read_bytes())
    first = sketches[0][0]
    assert first[0].dtype == np.dtype(spec.dtype) and type(first[2]) is np.float64 and first[4:] == (None, None)
    times = pickle.loads(out[spec.times_file].read_bytes())
    if config == "request":
        assert isinstance(times, collections.defaultdict) and times.default_factory is list
        for name in spec.companion_files:  # byte for byte: protocol, types and every value
            assert out[name].read_bytes() == (manual / "feedback" / name).read_bytes(), name

    for ep in tfds.as_numpy(builder.as_dataset(split="train")):
        steps = list(ep["steps"])
        assert steps[0]["is_first"] and steps[-1]["is_last"] and not any(s["is_terminal"] for s in steps)
        assert set(float(s["reward"]) for s in steps) <= {-1.0, 0.0, 10.0}
        if config == "request":
            assert ep["episode_metadata"]["feedback_session"] == ep["episode_metadata"]["sketch_index"] // 15


def test_a_skipped_step_keeps_its_own_next_observation(tmp_path):
    spec = schema.spec_for(CR, "request")
    rng = np.random.default_rng(0)
    states = [rng.standard_normal(544).astype(np.float32) for _ in range(5)]
    step = lambda k: (states[k], np.zeros(3, np.float32), np.float64(0.0), states[k + 1], None, None)  # noqa: E731
    sketch = [step(0), step(2), step(3)]  # the person skipped step 1
    legacy_factory.write_pickle(tmp_path / "m" / spec.sketches_file, [copy.deepcopy(sketch)], 5)
    legacy_factory.write_pickle(tmp_path / "m" / spec.times_file, collections.defaultdict(list, max_rew=[1.5]), 5)
    builder = _build("request", tmp_path / "m", tmp_path / "d")
    [ep] = tfds.as_numpy(builder.as_dataset(split="train"))
    steps = list(ep["steps"])
    np.testing.assert_array_equal(steps[0]["next_observation"], states[1])
    np.testing.assert_array_equal(steps[1]["observation"], states[2])


def test_a_python_float_reward_in_a_sketch_is_named(tmp_path):
    spec = schema.spec_for(CR, "dros")
    s = np.zeros(544)
    sketches = [[(s, np.zeros(3), np.float64(0.0), s, None, None)],
                [(s, np.zeros(3), np.float64(10.0), s, None, None), (s, np.zeros(3), 10.0, s, None, None)]]
    legacy_factory.write_pickle(tmp_path / "m" / spec.sketches_file, [copy.deepcopy(x) for x in sketches], 5)
    legacy_factory.write_pickle(tmp_path / "m" / spec.times_file, [[1.0], [2.0, 3.0]], 5)
    with pytest.raises(DataError, match=r"episode 1, step 1, field 'r': expected numpy.float64, got float"):
        _build("dros", tmp_path / "m", tmp_path / "d")


def test_companion_values_round_trip_exactly_and_forged_metadata_is_refused():
    import collections as c

    from dropj.converters.release.sketches import tree_from_metadata, tree_to_metadata
    from dropj_datasets.schema import DataError

    value = {"n_queries": [15, 30], "perf": [0.1, float("nan"), -0.0], "t": (1, "a", None, True),
             "arr": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.float64(2.5), "big": 2**70,
             "dd": c.defaultdict(list, {"k": [1.5]})}
    back = tree_from_metadata(tree_to_metadata(value, "x"), "x")
    assert back.keys() == value.keys() and type(back["t"]) is tuple and type(back["dd"]) is c.defaultdict
    assert back["n_queries"] == [15, 30] and back["big"] == 2**70 and back["t"] == (1, "a", None, True)
    assert np.isnan(back["perf"][1]) and str(back["perf"][2]) == "-0.0"
    assert back["arr"].dtype == np.float32 and np.array_equal(back["arr"], value["arr"])
    assert type(back["s"]) is np.float64 and back["s"] == 2.5
    for forged in ({"t": "ndarray", "dtype": "|O", "shape": [1], "v": ""}, {"t": "os.system", "v": "x"},
                   {"t": "ndarray", "dtype": "<f8", "shape": [10**9], "v": "AAAA"}, {"t": "float", "v": "zz"},
                   {"t": "dict", "v": [[1, {"t": "int", "v": "1"}]]}, [1, 2]):
        with pytest.raises(DataError, match="x"):
            tree_from_metadata(forged, "x")
    with pytest.raises(DataError, match="is not a value a companion file may hold"):
        tree_to_metadata({"f": object()}, "x")
