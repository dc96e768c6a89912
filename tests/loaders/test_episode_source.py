"""`EpisodeSource`: random access to built datasets without TensorFlow, with exactly `tfds.load`'s values."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dropj_datasets import schema
from dropj_datasets.schema import DataError
from factory import build, dummy_data
from factory.compare import assert_same, tfds_examples
from dropj.loaders.episode_source import EpisodeSource
from dropj.loaders.tfrecord_wire import _masked_crc32c, parse_example

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.fixture(scope="module")
def real_dir(tmp_path_factory) -> Path:
    return Path(build("dropj_carracing/real", dummy_data("dropj_carracing"),
                      tmp_path_factory.mktemp("data")).data_dir)


@pytest.mark.slow
def test_an_episode_is_what_tfds_load_gives(real_dir):
    source = EpisodeSource(real_dir)
    theirs = tfds_examples(real_dir)
    assert len(source) == len(theirs) == 3
    for i, example in enumerate(theirs):
        assert_same(source[i], example)
    assert source[-1]["episode_metadata"]["episode_index"] == 2


def test_by_name_and_data_dir(real_dir):
    data_dir = real_dir.parents[2]
    source = EpisodeSource("dropj_carracing/real", data_dir=data_dir)
    assert source.directory == real_dir and len(source) == 3


@pytest.mark.slow
def test_every_config_of_every_kind_is_what_tfds_load_gives(tmp_path, subtests):
    for dataset, configs in schema.DATASETS.items():
        for config in configs:
            with subtests.test(config=f"{dataset}/{config}"):
                directory = Path(build(f"{dataset}/{config}", dummy_data(dataset), tmp_path).data_dir)
                source = EpisodeSource(directory)
                theirs = tfds_examples(directory)
                assert len(source) == len(theirs) > 0
                for i, example in enumerate(theirs):
                    assert_same(source[i], example, f"{dataset}/{config}[{i}]")


def test_reading_imports_no_tensorflow(real_dir):
    code = ("import sys\nfrom dropj.loaders import EpisodeSource\n"
            f"source = EpisodeSource({str(real_dir)!r})\nepisode = source[1]\n"
            "print(episode['steps']['observation'].shape)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'torch', 'rlds', 'reverb')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    shape, modules = done.stdout.splitlines()
    assert shape.startswith("(") and shape.endswith(", 84, 84, 3)") and modules == "[]"


def _copy(real_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    import shutil

    target = tmp_path / "copy" / real_dir.name
    shutil.copytree(real_dir, target, ignore=shutil.ignore_patterns("dropj_index"))  # the shards, not an index
    return target, next(target.glob("*.tfrecord-*"))


def test_a_truncated_shard_is_one_error_naming_it(real_dir, tmp_path):
    directory, shard = _copy(real_dir, tmp_path)
    data = shard.read_bytes()
    shard.write_bytes(data[:len(data) - 100])
    with pytest.raises(DataError, match=rf"{shard.name}: record 2: claims [\d,]+ bytes"):
        EpisodeSource(directory)[0]


def test_a_damaged_length_is_caught_by_its_checksum(real_dir, tmp_path):
    directory, shard = _copy(real_dir, tmp_path)
    data = bytearray(shard.read_bytes())
    data[3] ^= 0x40
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match=rf"{shard.name}: record 0: the length's checksum does not match"):
        EpisodeSource(directory).index


def test_a_damaged_record_names_the_record_and_field(real_dir, tmp_path):
    directory, shard = _copy(real_dir, tmp_path)
    source = EpisodeSource(directory)
    _, offset, length, _ = source.index.records[1]
    data = bytearray(shard.read_bytes())
    payload = bytes(data[offset:offset + length])
    at = payload.index(b"\x89PNG")  # the first frame's bytes
    data[offset + at + 1:offset + at + 4] = b"XXX"
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match=rf"{shard.name}: record 1: field 'steps/observation'"):
        EpisodeSource(directory)[1]


def test_a_shard_with_other_records_than_listed_is_refused(real_dir, tmp_path):
    directory, shard = _copy(real_dir, tmp_path)
    data = shard.read_bytes()
    length = struct.unpack("<Q", data[:8])[0]
    shard.write_bytes(data[16 + length:])  # the first record gone, cleanly
    with pytest.raises(DataError, match=rf"{shard.name}: 2 records, dataset_info.json says 3"):
        EpisodeSource(directory)[0]


def test_indexes_are_checked(real_dir):
    source = EpisodeSource(real_dir)
    with pytest.raises(IndexError):
        source[3]
    with pytest.raises(TypeError):
        source["0"]


def test_frames_are_decoded_by_the_codec_their_field_names(monkeypatch):
    """A new frame codec is one entry of `codec.CODECS` and a field naming it: nothing in loaders/ changes."""
    from types import SimpleNamespace

    from dropj.loaders import episode_index
    from dropj.loaders.episode_source import decode_example
    from dropj.loaders.tfrecord_wire import Corrupt
    from dropj_datasets import codec

    def size(data: bytes) -> tuple[int, int]:  # a header of (width, height), then the RGB bytes
        if len(data) < 8:
            raise DataError("a frame without its header")
        return struct.unpack_from(">II", data)

    def decode(data: bytes) -> np.ndarray:
        width, height = size(data)
        return np.frombuffer(data, np.uint8, offset=8).reshape(height, width, 3)

    def encode(frame: np.ndarray) -> bytes:
        return struct.pack(">II", frame.shape[1], frame.shape[0]) + frame.tobytes()

    monkeypatch.setitem(codec.CODECS, "raw-rgb", codec.FrameCodec("raw-rgb", encode, decode, "png", size))
    field = schema.Field(f"{schema.STEPS}/{schema.OBSERVATION}", (2, 3, 3), "uint8", "", "", "frames", "raw-rgb")
    spec = SimpleNamespace(kind=schema.DATASETS["dropj_carracing"]["real"].kind, fields=lambda: (field,))
    frames = np.random.default_rng(0).integers(0, 256, (4, 2, 3, 3), np.uint8)
    assert episode_index.step_fields(spec) == ((field.name,), ())  # one byte string a step, as PNG frames
    decoded = decode_example({field.name: [encode(frame) for frame in frames]}, spec)
    assert np.array_equal(decoded[schema.STEPS][schema.OBSERVATION], frames)
    # the codec's header is checked against the schema before its decoder runs
    with pytest.raises(Corrupt, match=r"^field 'steps/observation': an image of RAW-RGB 2x3, expected RAW-RGB 3x2$"):
        decode_example({field.name: [encode(frame.transpose(1, 0, 2)) for frame in frames]}, spec)


@pytest.mark.slow
def test_the_wire_format_parser_on_tensorflows_own_examples():
    """Lists packed and unpacked, negative and 10-byte varints, empty lists, as TensorFlow serialises them."""
    import tensorflow as tf

    example = tf.train.Example(features=tf.train.Features(feature={
        "i": tf.train.Feature(int64_list=tf.train.Int64List(value=[0, 1, -1, 2 ** 62, -(2 ** 63), 300])),
        "f": tf.train.Feature(float_list=tf.train.FloatList(value=[0.5, -2.0, float("inf")])),
        "b": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"", b"\x00\xff", b"x" * 300])),
        "e": tf.train.Feature(int64_list=tf.train.Int64List(value=[])),
    }))
    parsed = parse_example(example.SerializeToString())
    assert parsed["i"].tolist() == [0, 1, -1, 2 ** 62, -(2 ** 63), 300]
    assert parsed["f"].tolist() == [0.5, -2.0, float("inf")]
    assert parsed["b"] == [b"", b"\x00\xff", b"x" * 300]
    assert parsed["e"].tolist() == []


def test_the_record_checksum_is_tensorflows():
    import tensorflow as tf

    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"dropj-crc-{os.getpid()}.tfrecord"
    try:
        with tf.io.TFRecordWriter(str(path)) as writer:
            writer.write(b"hello")
        data = path.read_bytes()
        assert struct.unpack("<I", data[8:12])[0] == _masked_crc32c(data[:8])
    finally:
        path.unlink(missing_ok=True)


def test_damaged_records_give_data_errors_only(real_dir, tmp_path):
    """Random byte flips anywhere in a record: each read decodes, or fails with one DataError naming it."""
    directory, shard = _copy(real_dir, tmp_path)
    source = EpisodeSource(directory)
    _, offset, length, _ = source.index.records[0]
    pristine = shard.read_bytes()
    rng = np.random.default_rng(7)
    outcomes = {"decoded": 0, "refused": 0}
    for _ in range(int(os.environ.get("DROPJ_FUZZ_ROUNDS", "60"))):
        data = bytearray(pristine)
        for position in rng.integers(offset, offset + length, size=int(rng.integers(1, 4))):
            data[position] ^= int(rng.integers(1, 256))
        shard.write_bytes(bytes(data))
        try:
            EpisodeSource(directory)[0]
            outcomes["decoded"] += 1
        except DataError as error:
            assert f"{shard.name}: record 0" in str(error)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 0


# -- the index kept beside the data ----------------------------------------------------------------------


def _settled_copy(real_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy whose shards were last written a minute ago: its index may be kept on disk."""
    directory, shard = _copy(real_dir, tmp_path)
    past = shard.stat().st_mtime_ns - 60 * 10 ** 9
    os.utime(shard, ns=(past, past))
    return directory, shard


def _steps_of(source: EpisodeSource) -> list:
    return [source.steps(i, 1, 6) for i in range(len(source))]


def test_the_index_is_kept_beside_the_data_and_read_again(real_dir, tmp_path, monkeypatch):
    from dropj.loaders import episode_index

    directory, _ = _settled_copy(real_dir, tmp_path)
    first = EpisodeSource(directory)
    expected = _steps_of(first)
    index_file = directory / "dropj_index" / "train.idx"
    assert first.index.path == index_file and index_file.is_file()
    assert sorted(p.name for p in index_file.parent.iterdir()) == ["train.idx"]  # no partial file left

    def no_pass(*args, **kwargs):
        raise AssertionError("the index was made again")

    monkeypatch.setattr(episode_index, "build", no_pass)
    again = EpisodeSource(directory)
    assert isinstance(again.index.items.base, np.memmap)  # mapped from the file, not read into memory
    for ours, theirs in zip(_steps_of(again), expected):
        _same_steps(ours, theirs)
    assert again.episode_lengths().tolist() == first.episode_lengths().tolist()


def _same_steps(ours: dict, theirs: dict) -> None:
    assert set(ours) == set(theirs)
    for key in ours:
        assert ours[key].dtype == theirs[key].dtype and np.array_equal(ours[key], theirs[key]), key


def test_a_changed_shard_makes_the_index_stale(real_dir, tmp_path, caplog):
    directory, shard = _settled_copy(real_dir, tmp_path)
    EpisodeSource(directory).index
    index_file = directory / "dropj_index" / "train.idx"
    before = index_file.read_bytes()
    data = shard.read_bytes()
    length = struct.unpack("<Q", data[:8])[0]
    shard.write_bytes(data[16 + length:])  # the first record gone: two records where dataset_info says three
    with pytest.raises(DataError, match=rf"{shard.name}: 2 records, dataset_info.json says 3"):
        EpisodeSource(directory).index
    shard.write_bytes(data)  # the same bytes again, a new mtime: indexed again, not trusted
    past = shard.stat().st_mtime_ns - 60 * 10 ** 9
    os.utime(shard, ns=(past, past))
    with caplog.at_level("INFO", logger="dropj.loaders"):
        source = EpisodeSource(directory)
        source.index
    assert "the shards changed since it was made; indexing again" in caplog.text
    assert index_file.read_bytes() != before  # the header holds the new mtime
    assert source.num_steps(0) > 0


def test_a_shard_written_just_now_is_indexed_in_memory_only(real_dir, tmp_path):
    directory, shard = _copy(real_dir, tmp_path)
    os.utime(shard)  # now
    source = EpisodeSource(directory)
    assert source.index.path is None and not (directory / "dropj_index").exists()


def test_a_folder_that_cannot_be_written_keeps_the_index_in_memory(real_dir, tmp_path, caplog):
    directory, _ = _settled_copy(real_dir, tmp_path)
    (directory / "dropj_index").write_text("a file where the index folder goes")
    with caplog.at_level("WARNING", logger="dropj.loaders"):
        source = EpisodeSource(directory)
        assert source.index.path is None
    assert "the index cannot be kept" in caplog.text and "index_dir=" in caplog.text
    assert source.steps(1, 0, 2)["observation"].shape == (2, 84, 84, 3)
    elsewhere = tmp_path / "my-index"
    kept = EpisodeSource(directory, index_dir=elsewhere)
    assert kept.index.path == elsewhere / "train.idx" and kept.index.path.is_file()


def test_the_index_is_never_written_through_a_symlink(real_dir, tmp_path):
    directory, _ = _settled_copy(real_dir, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (directory / "dropj_index").symlink_to(outside)
    source = EpisodeSource(directory)
    assert source.index.path is None and list(outside.iterdir()) == []
    (directory / "dropj_index").unlink()
    (directory / "dropj_index").mkdir()
    (directory / "dropj_index" / "train.idx").symlink_to(outside / "planted")
    source = EpisodeSource(directory)
    assert source.index.path is None and list(outside.iterdir()) == []


def test_a_damaged_index_is_made_again_or_refused_never_trusted_past_its_records(real_dir, tmp_path):
    """Random byte flips in the index file: every read gives the data, or one DataError; never another
    exception, never a read outside the record (the spans are checked against the records)."""
    directory, _ = _settled_copy(real_dir, tmp_path)
    expected = _steps_of(EpisodeSource(directory))
    index_file = directory / "dropj_index" / "train.idx"
    pristine = index_file.read_bytes()
    rng = np.random.default_rng(21)
    outcomes = {"same": 0, "refused": 0, "made again": 0}
    for _ in range(int(os.environ.get("DROPJ_FUZZ_ROUNDS", "60"))):
        data = bytearray(pristine)
        for position in rng.integers(0, len(data), size=int(rng.integers(1, 3))):
            data[position] ^= int(rng.integers(1, 256))
        index_file.write_bytes(bytes(data))
        source = EpisodeSource(directory)
        try:
            got = _steps_of(source)
        except DataError:
            outcomes["refused"] += 1
            continue
        if index_file.read_bytes() == pristine:
            outcomes["made again"] += 1
        else:
            outcomes["same"] += 1  # a flip the checks let through still points inside its own record
        assert all(set(g) == set(e) for g, e in zip(got, expected))
    assert outcomes["made again"] > 0


def test_a_spawned_worker_maps_the_same_index(real_dir, tmp_path):
    import pickle

    directory, _ = _settled_copy(real_dir, tmp_path)
    source = EpisodeSource(directory)
    source.steps(0, 0, 1)
    state = pickle.dumps(source)
    assert len(state) < 10_000  # names and counts, not the index
    code = ("import pickle, sys\nfrom dropj.loaders import episode_index\n"
            "episode_index.build = None  # a worker must not make the index again\n"
            "source = pickle.loads(sys.stdin.buffer.read())\n"
            "print(source.steps(2, 3, 5)['action'].tolist(), type(source.index.items.base).__name__)\n")
    done = subprocess.run([sys.executable, "-c", code], input=state, capture_output=True, env=ENV, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    actions, kind = done.stdout.decode().rsplit(" ", 1)
    assert actions == str(source.steps(2, 3, 5)["action"].tolist()) and kind.strip() == "memmap"
