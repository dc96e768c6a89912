"""Responses collected with `dropj annotate` (the data side): kept durably as RLDS-era TFDS examples in the
preferences schema, resumed after a restart, exported per annotator in the release's format, trainable."""

from __future__ import annotations

import errno
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

import factory
from factory.compare import assert_reads_like_tfds
from dropj.converters.feedback import annotations
from dropj.converters.store import shards
from dropj.converters.roundtrip.built import BuiltDataset
from dropj.converters.roundtrip.export import export
from dropj.converters.feedback.study import Study
from dropj.converters.roundtrip.verify import verify
from dropj_datasets import schema
from dropj_datasets.builder import features
from dropj_datasets.schema import DataError

Y, N = schema.A_YES, schema.A_NO
QUERIES = "dropj_carracing/queries"


@pytest.fixture(scope="module")
def queries_dir(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    factory.build(QUERIES, factory.dummy_data("dropj_carracing"), data)
    return data


def _open(queries_dir, out, method="dropj"):
    return annotations.Annotations(QUERIES, method, out, data_dir=str(queries_dir), log=lambda line: None)


def _answer(ann, user, study, answers, seconds):
    video = ann.next_query(user)
    entry = study.entry(video, answers, seconds=seconds, total_time=sum(seconds) + 0.25, repeat_count=1)
    return entry, ann.commit(user, entry, session=f"s{user}", start_time=1.7e9, user_agent="pytest")


def test_responses_land_in_the_preferences_schema_and_export_per_annotator(queries_dir, tmp_path):
    ann = _open(queries_dir, tmp_path / "out")
    study = Study(ann.spec)
    e0, _ = _answer(ann, 7, study, [(schema.Q_LEFT_SAFE, Y), (schema.Q_RIGHT_SAFE, N)], [2.0, 1.0])
    e1, _ = _answer(ann, 8, study, [(schema.Q_LEFT_SAFE, Y), (schema.Q_RIGHT_SAFE, Y), (schema.Q_PREFER, "Left")],
                    [1.5, 0.5, 0.25])
    skipped = study.skipped(ann.next_query(7), total_time=0.75, repeat_count=0)
    ann.commit(7, skipped, session="s7", start_time=1.7e9, user_agent="pytest")
    ann.close()

    directory = annotations.annotation_dir(tmp_path / "out", "dropj")
    assert assert_reads_like_tfds(directory) == 3  # the TF-free reader, on an annotations directory
    builder = tfds.builder_from_directory(str(directory))
    assert builder.info.features.to_json() == features(schema.ANNOTATIONS["dropj"]).to_json()
    examples = list(tfds.as_numpy(builder.as_dataset(split="train", shuffle_files=False)))
    assert [int(e[schema.ANNOTATOR][schema.USER_ID]) for e in examples] == [7, 8, 7]
    assert [float(e[schema.LABEL]) for e in examples[:2]] == [1.0, 0.75] and not examples[2][schema.HAS_LABEL]
    assert [e[schema.QUERY_ID].decode() for e in examples] == ["0.mp4", "0.mp4", "1.mp4"]
    assert examples[0][schema.ANNOTATION][schema.USER_AGENT] == b"pytest"

    written = export(str(directory), tmp_path / "legacy", log=lambda line: None)
    assert [p.name for p in written] == ["responses_user7_s20_q2_dropj.pkl", "responses_user8_s20_q1_dropj.pkl"]
    assert pickle.loads(written[0].read_bytes()) == [e0, skipped]
    assert pickle.loads(written[1].read_bytes()) == [e1]
    assert all(type(s) is float for _, _, s in pickle.loads(written[0].read_bytes())[0]["responses"])
    assert written[0].read_bytes()[:2] == b"\x80\x04"  # the GUIs' protocol
    [report, _] = verify(str(directory), tmp_path / "legacy", log=lambda line: None)
    assert report.ok and report.episodes == 2


def test_repair_rebuilds_an_annotation_directorys_list(queries_dir, tmp_path):
    ann = _open(queries_dir, tmp_path / "out")
    study = Study(ann.spec)
    for _ in range(2):
        _answer(ann, 1, study, [(schema.Q_LEFT_SAFE, N), (schema.Q_RIGHT_SAFE, N)], [1.0, 1.0])
    ann.close()
    directory = annotations.annotation_dir(tmp_path / "out", "dropj")
    (directory / "dataset_info.json").unlink()
    assert shards.repair(directory, log=lambda line: None) == f"{directory}: 2 responses listed in " \
        "dataset_info.json"
    assert len(list(BuiltDataset.open(str(directory)).examples())) == 2


def test_repair_finds_the_store_by_the_registry_without_its_module_imported(queries_dir, tmp_path):
    """`kinds.repair` (what `dropj repair-recording` runs) repairs an annotation directory in a process that
    never imported the annotation store; the shard store alone says which call finds it."""
    ann = _open(queries_dir, tmp_path / "out")
    _answer(ann, 1, Study(ann.spec), [(schema.Q_LEFT_SAFE, N), (schema.Q_RIGHT_SAFE, N)], [1.0, 1.0])
    ann.close()
    directory = annotations.annotation_dir(tmp_path / "out", "dropj")
    (directory / "dataset_info.json").unlink()
    code = ("import sys\nfrom dropj.converters.store import shards\nfrom dropj.converters.release import kinds\n"
            f"d = {str(directory)!r}\n"
            "assert 'dropj.converters.feedback.annotations' not in sys.modules\n"
            "try:\n    shards.repair(d, log=print)\nexcept shards.RecordingError as e:\n    print('refused:', e)\n"
            "print(kinds.repair(d, log=print))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    refused, repaired = done.stdout.strip().splitlines()[-2:]
    assert refused.startswith(f"refused: {directory}: the store of {schema.ANNOTATION_DATASET} is not loaded") \
        and "kinds.repair" in refused
    assert repaired == f"{directory}: 1 responses listed in dataset_info.json"


def test_a_restart_resumes_at_each_annotators_first_unanswered_query(queries_dir, tmp_path):
    ann = _open(queries_dir, tmp_path / "out")
    study = Study(ann.spec)
    for _ in range(3):
        _answer(ann, 1, study, [(schema.Q_LEFT_SAFE, N), (schema.Q_RIGHT_SAFE, N)], [1.0, 1.0])
    _answer(ann, 2, study, [(schema.Q_LEFT_SAFE, N), (schema.Q_RIGHT_SAFE, Y)], [1.0, 1.0])
    ann.close()
    again = _open(queries_dir, tmp_path / "out")
    assert (again.next_query(1), again.progress(1)) == ("3.mp4", (3, 10))
    assert (again.next_query(2), again.next_query(3)) == ("1.mp4", "0.mp4")
    again.close()


def test_a_second_server_on_the_same_directory_is_refused(queries_dir, tmp_path):
    ann = _open(queries_dir, tmp_path / "out")
    try:
        with pytest.raises(shards.RecordingError, match="another annotation server is writing here"):
            _open(queries_dir, tmp_path / "out")
    finally:
        ann.close()


def test_duplicate_unknown_and_unfinished_responses_store_nothing(queries_dir, tmp_path):
    ann = _open(queries_dir, tmp_path / "out")
    study = Study(ann.spec)
    entry, _ = _answer(ann, 1, study, [(schema.Q_LEFT_SAFE, N), (schema.Q_RIGHT_SAFE, N)], [1.0, 1.0])
    other = study.entry(entry["video"], [(schema.Q_LEFT_SAFE, Y), (schema.Q_RIGHT_SAFE, N)], seconds=[1.0, 1.0],
                        total_time=2.25, repeat_count=1)
    with pytest.raises(DataError, match=r"user 1 answered 0.mp4 already \(response 0\) with other answers"):
        ann.commit(1, other, session="s", start_time=0.0, user_agent="x")
    with pytest.raises(DataError, match="not one of the queries being annotated"):
        ann.commit(1, {**entry, "video": "99.mp4"}, session="s", start_time=0.0, user_agent="x")
    with pytest.raises(DataError, match="not finished"):
        study.entry("1.mp4", [(schema.Q_LEFT_SAFE, Y)], seconds=[1.0], total_time=1.0, repeat_count=0)
    forged = {**entry, "video": "2.mp4", "responses": [(schema.Q_RIGHT_SAFE, Y, 1.0)]}
    with pytest.raises(DataError, match="unexpected question"):
        ann.commit(1, forged, session="s", start_time=0.0, user_agent="x")
    assert ann.store.count == 1
    ann.close()


def test_a_retried_answer_is_stored_once_and_answers_with_its_index(queries_dir, tmp_path, monkeypatch):
    """On a disk with room for a shard but not its listing, `annotate` answered 500 without a message, the
    browser's retry stored the same (user, query) twice, and `dropj export` wrote the duplicate."""
    ann = _open(queries_dir, tmp_path / "out")
    study = Study(ann.spec)
    first, _ = _answer(ann, 1, study, [(schema.Q_LEFT_SAFE, N), (schema.Q_RIGHT_SAFE, N)], [1.0, 1.0])
    video = ann.next_query(1)
    entry = study.entry(video, [(schema.Q_LEFT_SAFE, Y), (schema.Q_RIGHT_SAFE, N)], seconds=[2.0, 1.0],
                        total_time=3.5, repeat_count=0)
    real = shards.write_atomically
    armed = [True]

    def full_disk(path, write, **kwargs):  # the listing of the next commit finds the disk full
        if armed and path.name == shards.DATASET_INFO:
            armed.pop()
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, write, **kwargs)

    monkeypatch.setattr(shards, "write_atomically", full_disk)
    directory = annotations.annotation_dir(tmp_path / "out", "dropj")
    with pytest.raises(shards.NotStored, match=rf"^{directory}/dataset_info.json: could not be written "
                                                        r"\(No space left on device\)"):
        ann.commit(1, entry, session="s1", start_time=1.7e9, user_agent="pytest")
    assert (ann.next_query(1), ann.store.count) == (video, 1)  # not stored, not marked answered
    assert ann.commit(1, entry, session="s1", start_time=1.7e9, user_agent="pytest") == 1  # the browser's retry
    assert ann.commit(1, entry, session="s1", start_time=1.7e9, user_agent="pytest") == 1  # a lost reply's retry
    with pytest.raises(DataError, match=rf"user 1 answered {video} already \(response 1\) with other answers"):
        ann.commit(1, {**entry, "total_time": 9.0}, session="s1", start_time=1.7e9, user_agent="pytest")
    assert ann.store.count == 2
    ann.close()
    again = _open(queries_dir, tmp_path / "out")  # after a restart, the stored answer is recognised as well
    assert again.commit(1, entry, session="s2", start_time=1.8e9, user_agent="other") == 1
    assert again.store.count == 2
    again.close()
    written = export(str(directory), tmp_path / "legacy", log=lambda line: None)
    assert pickle.loads(written[0].read_bytes()) == [first, entry]


def test_a_method_for_other_queries_is_refused(queries_dir, tmp_path):
    with pytest.raises(DataError, match="carracing queries cannot be answered with --method mjust"):
        _open(queries_dir, tmp_path / "out", "mjust")
    with pytest.raises(DataError, match="not a queries dataset"):
        annotations.Annotations("dropj_carracing/preferences_dropj", "dropj", tmp_path / "o",
                                data_dir=str(queries_dir))


_COMMIT_FOREVER = """
import sys, time
sys.path.insert(0, 'tests')
from dropj.converters.feedback import annotations
from dropj.converters.feedback.study import Study
from dropj_datasets import schema
ann = annotations.Annotations('dropj_carracing/queries', 'drope', sys.argv[2], data_dir=sys.argv[1],
                              log=lambda line: None)
study = Study(ann.spec)
user = 0
while True:
    video = ann.next_query(user)
    if video is None:
        user += 1
        continue
    entry = study.entry(video, [(schema.Q_PREFER, 'Left')], seconds=[0.5], total_time=0.75, repeat_count=0)
    index = ann.commit(user, entry, session='s', start_time=0.0, user_agent='kill test')
    print('committed', index, flush=True)
"""


@pytest.mark.slow
def test_a_sigkilled_server_loses_no_committed_response(queries_dir, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", _COMMIT_FOREVER, str(queries_dir), str(out)],
                            stdout=subprocess.PIPE, text=True, cwd=factory.REPO,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    committed = -1
    deadline = time.monotonic() + 120
    while committed < 12 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("committed"):
            committed = int(line.split()[1])
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert committed >= 12
    built = BuiltDataset.open(str(annotations.annotation_dir(out, "drope")))
    examples = list(built.examples())  # loads after the kill, every item in order
    assert len(examples) >= committed + 1  # every acknowledged response, and maybe the one being listed
    again = _open(queries_dir, out, "drope")
    assert again.store.count == len(examples)
    again.close()


@pytest.mark.slow
def test_a_reward_model_trains_on_collected_annotations(queries_dir, tmp_path):
    from dropj_datasets.app.train import train_from_dataset

    ann = _open(queries_dir, tmp_path / "out")
    study = Study(ann.spec)
    rng = np.random.default_rng(0)
    for user in (1, 2):
        while ann.next_query(user) is not None:
            left, right = str(rng.choice([Y, N])), str(rng.choice([Y, N]))
            answers = [(schema.Q_LEFT_SAFE, left), (schema.Q_RIGHT_SAFE, right)]
            if (left, right) == (Y, Y):
                answers.append((schema.Q_PREFER, str(rng.choice(["Left", "Right", "Equally"]))))
            _answer(ann, user, study, answers, [1.0] * len(answers))
    ann.close()
    history = train_from_dataset("reward", str(tmp_path / "out"), dataset="dropj_annotations/dropj",
                                 out_dir=str(tmp_path / "run"), steps=3, batch_size=4, progress=False,
                                 validate_every=3)
    assert len(history.train_loss) == 3 and all(np.isfinite(history.train_loss))
    assert (tmp_path / "run" / "checkpoint.pt").exists()
