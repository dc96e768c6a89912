"""Preference configs: label rules, validation of responses, and the real response files."""

from __future__ import annotations

import collections
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

import factory
import tensorflow_datasets as tfds

import dropj_datasets
from factory import legacy as legacy_factory
from dropj.converters.release import episodes as episodes_lib
from dropj.converters.roundtrip import export, verify
from dropj.converters.release.preferences import LabelWeights, UnlabelableAnswer, label_for
from dropj_datasets import schema
from dropj_datasets.schema import DataError

CR = "dropj_carracing"
PREFER, LEFT_SAFE, RIGHT_SAFE = schema.Q_PREFER, schema.Q_LEFT_SAFE, schema.Q_RIGHT_SAFE


def _answers(*pairs):
    return [(q, a, 1.0) for q, a in pairs]


@pytest.mark.parametrize("method,answer,label", [
    ("DROP", "Left", 1.0), ("DROP", "Right", 0.0),
    ("DROPe", "Left", 1.0), ("DROPe", "Right", 0.0), ("DROPe", "Equally", 0.5),
])
def test_plain_preference_labels(method, answer, label):
    assert label_for(method, _answers((PREFER, answer)), LabelWeights()) == label


def test_equally_has_no_label_under_drop():
    with pytest.raises(UnlabelableAnswer, match="'Equally' has no label under DROP"):
        label_for("DROP", _answers((PREFER, "Equally")), LabelWeights())


@pytest.mark.parametrize("left,right,preference,label", [
    ("Yes", "No", None, 0.9), ("No", "Yes", None, 1 - 0.9), ("No", "No", None, 0.5),
    ("Yes", "Yes", "Left", 0.7), ("Yes", "Yes", "Right", 1 - 0.7), ("Yes", "Yes", "Equally", 0.5),
])
def test_dropj_labels_use_the_configured_weights(left, right, preference, label):
    pairs = [(LEFT_SAFE, left), (RIGHT_SAFE, right)] + ([(PREFER, preference)] if preference else [])
    assert label_for("DROPJ", _answers(*pairs), LabelWeights(w_s=0.9, w_def=0.7)) == pytest.approx(label, abs=0)


@pytest.mark.parametrize("justification,preference,label", [
    ("Grass", "Left", 0.95), ("Grass", "Right", 1 - 0.95), ("Default", "Left", 0.75), ("Chuckhole", "Equally", 0.5),
])
def test_multi_justification_labels(justification, preference, label):
    weights = LabelWeights(just_weights=(("Default", 0.75), ("Grass", 0.95), ("Chuckhole", 1.0)))
    answers = [(schema.Q_JUSTIFICATION, justification), (schema.Q_PREFERENCE, preference)]
    assert label_for("multi-justification", answers, weights) == label


def test_a_justification_without_weight_is_an_error_not_a_guess():
    with pytest.raises(UnlabelableAnswer, match="justification 'Car' has no weight"):
        label_for("multi-justification", [(schema.Q_JUSTIFICATION, "Car"), (schema.Q_PREFERENCE, "Left")],
                  LabelWeights(just_weights=(("Default", 1.0),)))


# --- building from files -------------------------------------------------------------------------------


def _responses(n: int) -> list:
    patterns = [[(LEFT_SAFE, "Yes"), (RIGHT_SAFE, "No")], [(LEFT_SAFE, "No"), (RIGHT_SAFE, "Yes")],
                [(LEFT_SAFE, "No"), (RIGHT_SAFE, "No")], [(LEFT_SAFE, "Yes"), (RIGHT_SAFE, "Yes"), (PREFER, "Left")],
                "Skipped"]
    out = []
    for i in range(n):
        pattern = patterns[i % len(patterns)]
        answers = pattern if pattern == "Skipped" else [(q, a, 1.5 + i) for q, a in pattern]
        out.append({"video": f"{i}.mp4", "responses": answers, "repeat_count": i % 3, "total_time": 2.0 + i})
    return out


def _write(manual: Path, queries, responses, responses_name="responses_user27_s20_q600_dropj.pkl"):
    legacy_factory.write_pickle(manual / "queries_s20" / "data.pkl", queries, 4)
    legacy_factory.write_pickle(manual / "responses_s20" / responses_name, responses, 4)


def _build(config, manual, data_dir, **kwargs):
    if kwargs:
        config = dropj_datasets.builder.PreferenceConfig(name=config + "_custom", preset=config, **kwargs)
    return factory.build(CR if kwargs else f"{CR}/{config}", manual, data_dir, config if kwargs else None)


def test_preference_examples_keep_the_response_exactly(tmp_path):
    queries, responses = legacy_factory.query_segments(6), _responses(6)
    _write(tmp_path / "m", queries, responses)
    builder = _build("preferences_dropj", tmp_path / "m", tmp_path / "d")
    examples = list(tfds.as_numpy(builder.as_dataset(split="train")))
    assert [e["query_id"].decode() for e in examples] == [r["video"] for r in responses]
    first, skipped = examples[0], examples[4]
    np.testing.assert_array_equal(np.stack(list(x["observation"] for x in first["left"])),
                                  queries["0.mp4"]["segment1"][:, :544])
    np.testing.assert_array_equal(np.stack(list(x["action"] for x in first["right"])),
                                  queries["0.mp4"]["segment2"][:, 544:])
    assert first["label"] == 1.0 and first["has_label"] and first["justification"] == b"Yes/No"
    assert [q.decode() for q in first["response"]["answers"]["question"]] == [LEFT_SAFE, RIGHT_SAFE]
    assert skipped["response"]["skipped"] and not skipped["has_label"] and np.isnan(skipped["label"])
    assert examples[3]["preference"] == b"Left" and examples[3]["label"] == 0.75

    [report] = verify.verify(f"{CR}/preferences_dropj", tmp_path / "m", data_dir=str(tmp_path / "d"),
                                log=lambda s: None)
    assert report.ok and report.episodes == 6


def test_label_weights_are_config_parameters_recorded_with_the_data(tmp_path):
    _write(tmp_path / "m", legacy_factory.query_segments(4), _responses(4))
    builder = _build("preferences_dropj", tmp_path / "m", tmp_path / "d", w_s=0.9, w_def=0.6)
    labels = [float(e["label"]) for e in tfds.as_numpy(builder.as_dataset(split="train"))]
    assert labels == [0.9, pytest.approx(0.1), 0.5, 0.6]
    assert builder.info.metadata["label_weights"]["w_def"] == 0.6
    # A custom-named config is exported and verified from its directory.
    [report] = verify.verify(str(builder.data_dir), tmp_path / "m", log=lambda s: None)
    assert report.ok and report.episodes == 4


@pytest.mark.parametrize("change,message", [
    (lambda r: r[2].update(video="99.mp4"), r"entry 2: video '99.mp4' has no segments in queries_s20/data.pkl"),
    (lambda r: r[3].update(video="1.mp4"), r"entry 3: video '1.mp4' was already answered in entry 1"),
    (lambda r: r.__setitem__(1, {**r[1], "responses": [(LEFT_SAFE, "Maybe", 1.0), (RIGHT_SAFE, "No", 1.0)]}),
     r"entry 1 \(video '1.mp4'\): answer 0: unknown answer 'Maybe' to 'Does the left car stay safe\?'"),
    (lambda r: r.__setitem__(0, {**r[0], "responses": [(LEFT_SAFE, "Yes", 1.0)]}),
     r"entry 0 \(video '0.mp4'\): field 'responses': expected answers to"),
    (lambda r: r[0].update(repeat_count=1.0), r"entry 0 \(video '0.mp4'\): field 'repeat_count'"),
])
def test_responses_that_disagree_with_the_queries_are_named(tmp_path, change, message):
    responses = _responses(5)
    change(responses)
    _write(tmp_path / "m", legacy_factory.query_segments(5), responses)
    with pytest.raises(DataError, match=message):
        _build("preferences_dropj", tmp_path / "m", tmp_path / "d")


def test_equally_in_a_drop_file_stops_the_build(tmp_path):
    responses = [{"video": "0.mp4", "responses": [(PREFER, "Equally", 1.0)], "repeat_count": 0, "total_time": 1.0}]
    _write(tmp_path / "m", legacy_factory.query_segments(1), responses, "responses_user26_s20_q600_drop.pkl")
    with pytest.raises(UnlabelableAnswer, match=r"entry 0 \(video '0.mp4'\): answer 'Equally' has no label under DROP"):
        _build("preferences_drop", tmp_path / "m", tmp_path / "d")


def test_obstacle_answers_without_seconds_round_trip(tmp_path):
    spec = schema.spec_for("dropj_obst_carracing", "chuckc_preferences")
    responses = [
        {"video": "0.mp4", "responses": [(schema.Q_JUSTIFICATION, "Grass"), (schema.Q_PREFERENCE, "Right")],
         "repeat_count": 1, "total_time": 3.25},
        {"video": "1.mp4", "responses": "Skipped", "repeat_count": 0, "total_time": 0.5},
    ]
    manual = tmp_path / "m"
    legacy_factory.write_pickle(manual / "queries_s20_chuckcobst" / "data.pkl",
                                legacy_factory.query_segments(2, 2115), 4)
    legacy_factory.write_pickle(manual / "responses_s20_chuckcobst" / spec.responses_file, responses, 4)
    # a Car Racing data.pkl beside it must not be taken for the obstacle one
    legacy_factory.write_pickle(manual / "queries_s20" / "data.pkl", legacy_factory.query_segments(2), 4)
    builder = tfds.builder("dropj_obst_carracing/chuckc_preferences", data_dir=str(tmp_path / "d"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    [first, _] = list(tfds.as_numpy(builder.as_dataset(split="train")))
    assert first["justification"] == b"Grass" and first["label"] == 0.0  # Right with w_Grass = 1.0
    assert np.isnan(first["response"]["answers"]["seconds"]).all()
    [path] = export.export("dropj_obst_carracing/chuckc_preferences", tmp_path / "out",
                              data_dir=str(tmp_path / "d"), log=lambda s: None)
    assert episodes_lib.compare(responses, pickle.loads(path.read_bytes())) == []


# --- the real response files ---------------------------------------------------------------------------

REAL_COUNTS = {  # DATA_FORMATS.md 5.3, the authors' sampling_gui on all 600 entries
    "preferences_drop": {0.0: 166, 1.0: 182},
    "preferences_drope": {0.0: 148, 0.5: 110, 1.0: 162},
    "preferences_dropj": {0.0: 117, 0.25: 27, 0.5: 119, 0.75: 28, 1.0: 124},
}


@pytest.fixture(scope="module")
def real_manual(tmp_path_factory, real_data):
    manual = tmp_path_factory.mktemp("real")
    # generated for the 600 ids
    legacy_factory.write_pickle(manual / "queries_s20" / "data.pkl", legacy_factory.query_segments(600), 4)
    (manual / "responses_s20").mkdir()
    for config in REAL_COUNTS:
        name = schema.spec_for(CR, config).responses_file
        shutil.copy(real_data / "carracing" / "responses_s20" / name, manual / "responses_s20" / name)
    return manual


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(REAL_COUNTS))
def test_real_responses_give_the_papers_label_counts_and_round_trip(real_manual, real_data, tmp_path, config):
    builder = _build(config, real_manual, tmp_path / "d")
    counts = collections.Counter(float(e["label"]) for e in tfds.as_numpy(builder.as_dataset(split="train"))
                                 if e["has_label"])
    assert dict(counts) == REAL_COUNTS[config]
    assert builder.info.splits["train"].num_examples == 600  # skipped queries are kept, flagged

    spec = schema.spec_for(CR, config)
    [path] = export.export(f"{CR}/{config}", tmp_path / "out", data_dir=str(tmp_path / "d"), log=lambda s: None)
    real = pickle.loads((real_data / "carracing" / "responses_s20" / spec.responses_file).read_bytes())
    assert episodes_lib.compare(real, pickle.loads(path.read_bytes())) == []
    assert path.read_bytes()[1] == 4
    [report] = verify.verify(f"{CR}/{config}", real_manual, data_dir=str(tmp_path / "d"), log=lambda s: None)
    assert report.ok and report.episodes == 600
