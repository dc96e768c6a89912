"""The build's pipeline (converters/build/pipeline.py): reader and encoder processes, frames in shared memory."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from dropj.converters.build import pipeline
from factory import build, dummy_data

CONFIGS = [("dropj_carracing", "real"), ("dropj_obst_carracing", "chuckccar_real")]


def _records(data_dir: Path) -> dict[str, str]:
    """sha256 of every record file of a built dataset, by file name."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(data_dir.rglob("*.tfrecord*"))}


@pytest.mark.slow
@pytest.mark.parametrize("dataset,config", CONFIGS)
def test_builds_are_reproducible_and_the_long_episode_path_writes_the_same(tmp_path, monkeypatch, dataset, config):
    """Two builds write the same bytes (encoders in several processes, colours met in any order), and so
    does a build whose episodes are all too long for a shared-memory slot (frames piped to the encoders)."""
    name = f"{dataset}/{config}"
    first = _records(Path(build(name, dummy_data(dataset), tmp_path / "a").data_dir))
    second = _records(Path(build(name, dummy_data(dataset), tmp_path / "b").data_dir))
    monkeypatch.setattr(pipeline, "SLOT_BYTES_CAP", 1)
    piped = _records(Path(build(name, dummy_data(dataset), tmp_path / "c").data_dir))
    assert first and first == second == piped


def test_frame_slots_hand_frames_between_processes_in_place():
    import multiprocessing

    import numpy as np

    context = multiprocessing.get_context("fork")
    slots = pipeline.FrameSlots(context, 2, 1 << 16)
    try:
        a, b = slots.take(0), slots.take(0)
        assert {a, b} == {0, 1}
        frames = slots.array(a, (3, 4, 5, 3), np.dtype(np.uint8))
        frames[:] = 7
        child = context.Process(target=_fill, args=(slots, b))
        child.start()
        child.join(10)
        assert child.exitcode == 0
        assert (slots.array(b, (3, 4, 5, 3), np.dtype(np.uint8)) == 9).all()
        assert (slots.array(a, (3, 4, 5, 3), np.dtype(np.uint8)) == 7).all()  # the other slot untouched
        slots.release(a)
        assert slots.take(0) == a
    finally:
        slots.close()


def _fill(slots: pipeline.FrameSlots, slot: int) -> None:
    import numpy as np

    slots.array(slot, (3, 4, 5, 3), np.dtype(np.uint8))[:] = 9


@pytest.mark.slow
def test_column_encoding_serialises_every_config_exactly_as_tfds(subtests):
    """`builder.columnar_datasets` (a column at a time) against TFDS's own step-at-a-time encoding: the
    same serialised bytes for every example of every config of the embedded sample, and the column path
    really taken for every sequence."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core import example_serializer

    from dropj.converters.release import kinds
    from dropj_datasets import builder, schema

    for dataset, configs in schema.DATASETS.items():
        for config, spec in configs.items():
            with subtests.test(config=f"{dataset}/{config}"):
                tfds_builder = tfds.builder(f"{dataset}/{config}")
                features = builder.features(spec)
                serializer = example_serializer.ExampleSerializer(features.get_serialized_info())
                _, examples = kinds.prepare(spec, str(dummy_data(dataset)), tfds_builder.builder_config)
                count = 0
                for _, example in examples:
                    plain = serializer.serialize_example(features.encode_example(example))
                    sequences = [key for key, feature in features.items()
                                 if isinstance(feature, tfds.features.Dataset)]
                    assert sequences
                    for key in sequences:
                        assert builder._columns(features[key].feature, example[key], set()) is not None, key
                    with builder.columnar_datasets(features):
                        columns = serializer.serialize_example(features.encode_example(example))
                    assert columns == plain
                    count += 1
                assert count > 0


def test_column_encoding_leaves_odd_values_to_tfds_with_its_results_and_errors():
    import numpy as np
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core import example_serializer

    from dropj_datasets import builder

    features = tfds.features.FeaturesDict({"steps": tfds.features.Dataset({
        "reward": tfds.features.Scalar(np.int32), "action": tfds.features.Tensor(
            shape=(3,), dtype=np.float64, encoding=tfds.features.Encoding.BYTES)})})
    serializer = example_serializer.ExampleSerializer(features.get_serialized_info())
    good = {"steps": {"reward": np.arange(4, dtype=np.int32), "action": np.zeros((4, 3))}}
    with builder.columnar_datasets(features):
        encoded = features.encode_example(good)
    assert encoded["steps"]["action"] == [bytes(24)] * 4 and encoded["steps"]["reward"] is good["steps"]["reward"]
    assert "encode_example" not in vars(features["steps"])  # restored

    def outcome(steps: dict) -> tuple:
        try:
            return "ok", serializer.serialize_example(features.encode_example({"steps": steps}))
        except Exception as error:  # noqa: BLE001 - the error itself is compared
            return "error", type(error), str(error)

    for odd in ({"reward": np.arange(4, dtype=np.int64), "action": np.zeros((4, 3))},  # TFDS casts it
                {"reward": [1, 2, 3, 4], "action": np.zeros((4, 3))},  # a list
                {"reward": np.arange(3, dtype=np.int32), "action": np.zeros((4, 3))},  # lengths differ
                {"reward": np.arange(4, dtype=np.int32), "action": np.zeros((4, 2))},  # wrong shape
                {"reward": np.arange(4, dtype=np.int32)}):  # a field missing
        plain = outcome(odd)
        with builder.columnar_datasets(features):
            columns = outcome(odd)
        assert columns == plain, odd


def _dies(allocate):
    import os

    os._exit(3)
    yield  # a generator, as `read` is


def _dies_too():
    import os

    os._exit(4)
    yield


def test_a_helper_that_dies_is_one_error_naming_it():
    """A reader (forked) or a build interpreter (spawned) that dies without a word: one DataError, not a hang."""
    from dropj_datasets import codec
    from dropj_datasets.schema import DataError

    with pipeline.Pipeline(_dies, codec.PNG, 1 << 16, "the test config") as running:
        with pytest.raises(DataError, match=r"the dropj-reader process of the test config died \(exit code 3\)"):
            list(running.episodes())
    with pytest.raises(DataError, match=r"the dropj-build process of elsewhere died \(exit code 4\)"):
        list(pipeline.in_fresh_process(_dies_too, "elsewhere"))
