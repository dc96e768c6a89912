"""Tests of `dropj.converters.release.sources`: finding release files as plain files or zip members."""

from __future__ import annotations

import copy
import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dropj.converters.store import legacy_pickle
from dropj.converters.release import sources
from dropj_datasets.schema import DataError

RAW = "raw_user_rollouts_res84_ep600.pkl"
DREAM = "dream_user_rollouts.pkl"
INIT = "default_init_obs.pkl"


def _episodes(seed: int = 0, n: int = 3, steps: int = 4) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        frames = rng.integers(0, 256, (steps + 1, 84, 84, 3), dtype=np.uint8)
        out.append([copy.deepcopy((frames[t], np.array([0.0, 1.0, 0.0]), 0, frames[t + 1],
                                   float(t == steps - 1), {})) for t in range(steps)])
    return out


def _pickle_bytes(seed: int = 0, protocol: int = 5, **kwargs) -> bytes:
    return pickle.dumps(_episodes(seed, **kwargs), protocol=protocol)


def _read_all(ref: sources.SourceRef, chunk: int = 65536) -> bytes:
    parts = []
    with ref.open() as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            parts.append(block)
    return b"".join(parts)


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def _assert_items_equal(got: list, want: list) -> None:
    assert len(got) == len(want)
    for episode_got, episode_want in zip(got, want):
        assert len(episode_got) == len(episode_want)
        for step_got, step_want in zip(episode_got, episode_want):
            for a, b in zip(step_got, step_want):
                assert type(a) is type(b)
                if isinstance(b, np.ndarray):
                    assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
                else:
                    assert a == b


def test_plain_file_found_by_name_in_nested_folder(tmp_path):
    data = _pickle_bytes()
    target = tmp_path / "release" / "carracing" / "deep" / RAW
    target.parent.mkdir(parents=True)
    target.write_bytes(data)
    (tmp_path / "release" / "other.pkl").write_bytes(b"x")

    found = sources.locate(tmp_path, (RAW, DREAM), required=(RAW,))
    assert set(found) == {RAW}  # optional DREAM absent: simply not returned
    ref = found[RAW]
    assert ref.name == RAW and ref.path == target and ref.member is None
    assert ref.size == len(data)
    assert _read_all(ref) == data
    assert str(ref) == str(target)


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_zip_member_found_by_base_name_and_streamed(tmp_path, compression):
    data = _pickle_bytes(seed=1)
    archive = tmp_path / "downloads" / "D3749.zip"
    archive.parent.mkdir()
    member = "DROPJ/data/carracing/" + RAW
    with zipfile.ZipFile(archive, "w", compression) as zf:
        zf.writestr("DROPJ/data/", b"")  # a directory entry, which must be ignored
        zf.writestr("DROPJ/README.txt", b"readme")
        zf.writestr(member, data)
    if compression == zipfile.ZIP_DEFLATED:
        assert zipfile.ZipFile(archive).getinfo(member).compress_size < len(data)
    before = _files_under(tmp_path)

    index = sources.index(tmp_path)
    assert "data" not in index and "" not in index
    found = sources.locate(tmp_path, (RAW,), required=(RAW,), found=index)
    ref = found[RAW]
    assert ref.path == archive and ref.member == member and ref.name == RAW
    assert str(ref) == f"{archive}!{member}"
    assert ref.size == len(data)
    assert _read_all(ref, chunk=1000) == data
    with ref.open() as f:
        _assert_items_equal(list(legacy_pickle.iter_list(f, str(ref))), pickle.loads(data))
    assert _files_under(tmp_path) == before, "nothing may be extracted to disk"


def test_zip64_member_read_through_iter_list(tmp_path):
    data = _pickle_bytes(seed=2, protocol=4)
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("carracing/" + DREAM, "w", force_zip64=True) as out:
            for start in range(0, len(data), 100_000):
                out.write(data[start:start + 100_000])
    info = zipfile.ZipFile(archive).getinfo("carracing/" + DREAM)
    assert info.extract_version >= zipfile.ZIP64_VERSION, "the archive must really use Zip64 records"
    local = archive.read_bytes()[info.header_offset:info.header_offset + 30]
    assert local[18:26] == b"\xff" * 8, "Zip64: the local header defers both sizes to the Zip64 extra field"

    ref = sources.locate(tmp_path, (DREAM,), required=(DREAM,))[DREAM]
    assert ref.member == "carracing/" + DREAM and ref.size == len(data)
    with ref.open() as f:
        got = list(legacy_pickle.iter_list(f, str(ref)))
    _assert_items_equal(got, pickle.loads(data))


def test_missing_required_file_is_named(tmp_path):
    (tmp_path / DREAM).write_bytes(_pickle_bytes())
    with pytest.raises(DataError) as info:
        sources.locate(tmp_path, (RAW, DREAM, INIT), required=(RAW, INIT))
    message = str(info.value)
    assert f"missing {RAW}, {INIT} " in message
    assert DREAM not in message


def test_missing_manual_dir(tmp_path):
    with pytest.raises(DataError) as info:
        sources.locate(tmp_path / "nope", (RAW,), required=(RAW,))
    assert "nope" in str(info.value)


def test_same_name_as_pkl_and_in_zip_with_different_sizes(tmp_path):
    (tmp_path / RAW).write_bytes(_pickle_bytes(seed=3, n=2))
    with zipfile.ZipFile(tmp_path / "release.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("data/" + RAW, _pickle_bytes(seed=3, n=3))
    with pytest.raises(DataError) as info:
        sources.locate(tmp_path, (RAW,), required=(RAW,))
    message = str(info.value)
    assert RAW in message and "different sizes" in message
    assert "release.zip" in message and str(tmp_path / RAW) in message


def test_same_name_as_pkl_and_in_zip_with_equal_sizes_is_accepted(tmp_path):
    data = _pickle_bytes(seed=4)
    (tmp_path / RAW).write_bytes(data)
    with zipfile.ZipFile(tmp_path / "release.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("data/" + RAW, data)
    ref = sources.locate(tmp_path, (RAW,), required=(RAW,))[RAW]
    assert _read_all(ref) == data


def test_corrupt_zip_is_named(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.zip").write_bytes(np.random.default_rng(5).bytes(4096))
    with pytest.raises(DataError) as info:
        sources.locate(tmp_path, (RAW,), required=())
    assert "x.zip" in str(info.value)


@pytest.mark.parametrize("keep", [0.9, 0.5, 0.1])
def test_truncated_zip_is_data_error_when_read(tmp_path, keep):
    data = _pickle_bytes(seed=6)
    archive = tmp_path / "x.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("carracing/" + RAW, data)
    ref = sources.locate(tmp_path, (RAW,), required=(RAW,))[RAW]
    with open(archive, "r+b") as f:
        f.truncate(int(archive.stat().st_size * keep))

    with pytest.raises(DataError) as info:
        with ref.open() as f:
            list(legacy_pickle.iter_list(f, str(ref)))
    assert "x.zip" in str(info.value)


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2,
                                         zipfile.ZIP_LZMA], ids=["stored", "deflated", "bzip2", "lzma"])
@pytest.mark.parametrize("where", [0.1, 0.5, 0.9])
def test_corrupt_zip_member_data_is_data_error(tmp_path, compression, where):
    """Damaged compressed bytes inside an intact archive: a DataError naming the file, whatever the codec."""
    data = _pickle_bytes(seed=7)
    archive = tmp_path / "x.zip"
    member = "carracing/" + RAW
    with zipfile.ZipFile(archive, "w", compression) as zf:
        zf.writestr(member, data)
    info = zipfile.ZipFile(archive).getinfo(member)
    raw = bytearray(archive.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)  # member data
    pos = start + int(info.compress_size * where)
    for i in range(pos, min(pos + 64, start + info.compress_size)):
        raw[i] ^= 0x5A
    archive.write_bytes(bytes(raw))
    ref = sources.SourceRef(RAW, archive, member)

    with pytest.raises(DataError) as exc_info:
        with ref.open() as f:
            list(legacy_pickle.iter_list(f, str(ref)))
    assert "x.zip" in str(exc_info.value)


def test_truncated_plain_pickle_is_data_error(tmp_path):
    data = _pickle_bytes(seed=8)
    path = tmp_path / RAW
    path.write_bytes(data[: len(data) * 2 // 3])
    ref = sources.locate(tmp_path, (RAW,), required=(RAW,))[RAW]
    with pytest.raises(DataError) as info:
        with ref.open() as f:
            list(legacy_pickle.iter_list(f, str(ref)))
    assert RAW in str(info.value)


def test_index_lists_plain_files_and_members(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / INIT).write_bytes(pickle.dumps(np.zeros(544), protocol=4))
    with zipfile.ZipFile(tmp_path / "a" / "r.zip", "w") as zf:
        zf.writestr("x/y/" + DREAM, b"1")
        zf.writestr(INIT, pickle.dumps(np.zeros(544), protocol=4))
    index = sources.index(tmp_path)
    assert sorted(index) == sorted([INIT, DREAM])  # archives are looked into, not listed themselves
    assert {(r.member is None) for r in index[INIT]} == {True, False}
    assert [r.member for r in index[DREAM]] == ["x/y/" + DREAM]
    # Both copies of INIT have the same size: locate accepts them and either decodes to the same array.
    ref = sources.locate(tmp_path, (INIT,), required=(INIT,), found=index)[INIT]
    with ref.open() as f:
        assert np.array_equal(legacy_pickle.load(f, str(ref)), np.zeros(544))


def test_open_plain_file_vanished(tmp_path):
    path = tmp_path / RAW
    path.write_bytes(b"x")
    ref = sources.SourceRef(RAW, path)
    os.remove(path)
    with pytest.raises(DataError) as info:
        with ref.open():
            pass
    assert RAW in str(info.value)


def test_streams_do_not_load_whole_member_into_memory(tmp_path):
    """The member stream is a file-like reader, not a bytes blob read up front."""
    data = _pickle_bytes(seed=9)
    with zipfile.ZipFile(tmp_path / "r.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(RAW, data)
    ref = sources.locate(tmp_path, (RAW,), required=(RAW,))[RAW]
    with ref.open() as f:
        assert not isinstance(f, (bytes, io.BytesIO))
        assert f.read(2) == data[:2]
