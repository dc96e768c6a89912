"""Issue 22: the TF-free reader's own inputs are untrusted too: its index, its shards, its frames, its JSON.

Each attack here is what a dataset folder someone shared (or a second user of a shared folder) can hold:
a FIFO where the index or a shard goes, a record that claims millions of steps, a frame whose header
claims 10^12 pixels, JSON with wrong types, huge integers, deep nesting, bytes that are not UTF-8. Every
entry point (`dataset_dir.check`, `EpisodeSource`, `BuiltDataset.open`) answers one `DataError` naming the
file, in bounded time and memory, or reads the data.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from dropj_datasets import schema
from dropj_datasets.schema import DataError
from factory import build, dummy_data
from factory import legacy as legacy_factory
from dropj.loaders.episode_source import EpisodeSource

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
STEPS_VARIABLE = "DROPJ_MAX_EPISODE_STEPS"
CHILD_TIMEOUT_S = 120  # a hang is a failure, never a hung suite


@pytest.fixture(scope="module")
def real_dir(tmp_path_factory) -> Path:
    return Path(build("dropj_carracing/real", dummy_data("dropj_carracing"),
                      tmp_path_factory.mktemp("data")).data_dir)


def _copy(real_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy without an index, its shards last written a minute ago (so an index may be kept)."""
    target = tmp_path / "copy" / real_dir.name
    shutil.copytree(real_dir, target, ignore=shutil.ignore_patterns("dropj_index"))
    shard = next(target.glob("*.tfrecord-*"))
    past = shard.stat().st_mtime_ns - 60 * 10 ** 9
    os.utime(shard, ns=(past, past))
    return target, shard


def _child(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Python `code` in a fresh interpreter; a hang fails the test after CHILD_TIMEOUT_S."""
    try:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env or ENV,
                              timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the reader hung (killed after {CHILD_TIMEOUT_S} s)")


# -- FIFOs where the reader's files go -------------------------------------------------------------------

def test_an_index_that_is_a_fifo_is_never_waited_on_and_removing_it_as_told_keeps_the_index(real_dir, tmp_path):
    directory, _ = _copy(real_dir, tmp_path)
    (directory / "dropj_index").mkdir()
    index_file = directory / "dropj_index" / "train.idx"
    os.mkfifo(index_file)
    code = ("import logging, sys\nlogging.basicConfig(level=logging.WARNING, stream=sys.stdout)\n"
            "from dropj.loaders import EpisodeSource\n"
            f"source = EpisodeSource({str(directory)!r})\n"
            "print('PATH', source.index.path, source.steps(1, 0, 2)['observation'].shape)\n")
    done = _child(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "PATH None (2, 84, 84, 3)" in done.stdout  # read, the index in memory
    assert f"{index_file}: a FIFO, not a regular file" in done.stdout
    assert index_file.is_fifo()  # not ours to replace
    assert f"remove {index_file} to keep the index there" in done.stdout
    index_file.unlink()  # as the message says
    assert EpisodeSource(directory).index.path == index_file and index_file.is_file()


def test_an_index_that_is_a_directory_is_left_alone_and_the_index_kept_in_memory(real_dir, tmp_path, caplog):
    directory, _ = _copy(real_dir, tmp_path)
    index_file = directory / "dropj_index" / "train.idx"
    index_file.mkdir(parents=True)  # os.fdopen refused it with IsADirectoryError before the check
    source = EpisodeSource(directory)
    assert source.index.path is None and source.steps(1, 0, 2)["observation"].shape == (2, 84, 84, 3)
    assert f"{index_file}: a directory, not a regular file" in caplog.text and index_file.is_dir()


def test_a_shard_swapped_for_a_fifo_after_the_check_is_refused_not_waited_on(real_dir, tmp_path):
    directory, shard = _copy(real_dir, tmp_path)
    for what in ("index", "record"):
        code = ("import os\nfrom dropj.loaders import EpisodeSource\nfrom dropj_datasets.schema import DataError\n"
                f"source = EpisodeSource({str(directory)!r}, index_dir={str(tmp_path / what)!r})\n"
                + ("source.index\n" if what == "record" else "")
                + f"os.rename({str(shard)!r}, {str(shard)!r} + '.away')\nos.mkfifo({str(shard)!r})\n"
                "try:\n    source[0]\nexcept DataError as exc:\n    print('REFUSED', exc)\n")
        done = _child(code)
        os.unlink(shard)
        os.rename(f"{shard}.away", shard)
        assert done.returncode == 0, done.stderr[-2000:]
        assert f"REFUSED {shard}: a FIFO, not a regular file" in done.stdout, what


def test_dataset_info_swapped_for_a_fifo_during_the_check_is_refused_not_waited_on(real_dir, tmp_path):
    directory, _ = _copy(real_dir, tmp_path)
    info = directory / "dataset_info.json"
    code = ("import os\nfrom dropj.converters.store import dataset_dir\nfrom dropj_datasets.schema import DataError\n"
            "real_features = dataset_dir.expected_features\n"
            "def swapping(*args):\n"  # called inside the check, after dataset_info.json was read
            f"    if not os.path.exists({str(info)!r} + '.away'):\n"
            f"        os.rename({str(info)!r}, {str(info)!r} + '.away')\n        os.mkfifo({str(info)!r})\n"
            "    return real_features(*args)\n"
            "dataset_dir.expected_features = swapping\n"
            "from dropj.loaders import EpisodeSource\n"
            f"try:\n    print('READ', len(EpisodeSource({str(directory)!r})))\n"
            "except DataError as exc:\n    print('REFUSED', exc)\n")
    done = _child(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "READ 3" in done.stdout or f"REFUSED {info}: a FIFO" in done.stdout, done.stdout


# -- a record that claims millions of steps -----------------------------------------------------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _example(features: dict[str, bytes]) -> bytes:
    """A tf.train.Example from {key: serialised Feature}, written by hand (no TensorFlow)."""
    return _field(1, b"".join(_field(1, _field(1, key.encode()) + _field(2, feature))
                              for key, feature in features.items()))


def _tfrecord(records: list[bytes]) -> bytes:
    from dropj.loaders.tfrecord_wire import _masked_crc32c

    out = bytearray()
    for record in records:
        head = struct.pack("<Q", len(record))
        out += head + struct.pack("<I", _masked_crc32c(head)) + record + struct.pack("<I", _masked_crc32c(record))
    return bytes(out)


def _with_one_shard(directory: Path, shard: Path, records: list[bytes]) -> None:
    shard.write_bytes(_tfrecord(records))
    past = shard.stat().st_mtime_ns - 60 * 10 ** 9
    os.utime(shard, ns=(past, past))
    info = json.loads((directory / "dataset_info.json").read_text())
    info["splits"][0]["shardLengths"] = [str(len(records))]
    (directory / "dataset_info.json").write_text(json.dumps(info))


def _claiming(steps: int, packed: bool = True, lists: bool = False) -> bytes:
    """A record of the `real` config claiming `steps` steps: 1 byte per is_first (2 when `packed` is False:
    one Int64List entry per value, as proto2 writes it), 2 per empty frame and action; `lists`: with the
    number-list step fields too."""
    empty_items = _field(1, b"\x0a\x00" * steps)  # a BytesList of empty strings
    is_first = _field(1, b"\x00" * steps) if packed else b"\x08\x00" * steps
    numbers = {f"steps/{name}": _field(3, _field(1, b"\x00" * steps))
               for name in ("reward", "is_last", "is_terminal")} if lists else {}
    floats = {"steps/discount": _field(2, _field(1, b"\x00" * 4 * steps))} if lists else {}
    return _example({"steps/is_first": _field(3, is_first), "steps/observation": empty_items,
                     "steps/action": empty_items, **numbers, **floats})


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "unpacked"])
def test_a_record_claiming_five_million_steps_is_refused_in_memory_bounded_by_the_shard(real_dir, tmp_path,
                                                                                       packed):
    """It drove the index pass to 2.10 GiB (90x the shard), then a MemoryError asking for 98.6 GiB; unpacked,
    counting the steps alone took 20x the record and 14 s (every entry's span kept, then gathered)."""
    directory, shard = _copy(real_dir, tmp_path)
    _with_one_shard(directory, shard, [_claiming(5_000_000, packed)])
    size = shard.stat().st_size
    assert (24e6 < size < 26e6) if packed else (29e6 < size < 31e6)
    code = ("import resource, sys\nfrom dropj.loaders import EpisodeSource\n"
            "from dropj_datasets.schema import DataError\n"
            f"source = EpisodeSource({str(directory)!r}, progress=False)\n"
            "import numpy, tqdm.auto  # what the pass imports, before measuring\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
            "with open('/proc/self/statm') as f:\n    mapped = int(f.read().split()[0]) * resource.getpagesize()\n"
            # an unbounded pass fails at once instead of swapping the machine
            "resource.setrlimit(resource.RLIMIT_AS, (mapped + (1 << 30), resource.RLIM_INFINITY))\n"
            "import time\nstarted = time.perf_counter()\n"
            "try:\n    source.index\n    print('INDEXED')\nexcept DataError as exc:\n    print('REFUSED', exc)\n"
            "print('TIME', time.perf_counter() - started)\n"
            "print('GROWTH', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before)\n")
    done = _child(code)
    assert done.returncode == 0, done.stderr[-2000:]
    refused = next(line for line in done.stdout.splitlines() if line.startswith(("REFUSED", "INDEXED")))
    # packed, the one run is counted whole; unpacked, counting stops at the cap, and the message gives the
    # most the list's bytes can hold: 1,002 entries counted, then 2 bytes below 0x80 for each of the rest
    told = "5,000,000 steps" if packed else "at least 1,002 steps (up to 9,998,998: counted only to the cap)"
    assert refused == (f"REFUSED {shard}: record 0: field 'steps/is_first': {told}, more than the 1,001 an "
                       f"episode may have (1,000 transitions); set {STEPS_VARIABLE}="
                       f"{4999999 if packed else 9998997} to read it")
    growth = int(done.stdout.split("GROWTH ")[1].split()[0])
    assert growth < 2 * size, f"the index pass grew by {growth:,} bytes for a shard of {size:,}"
    seconds = float(done.stdout.split("TIME ")[1].split()[0])
    assert seconds < 2, f"the index pass took {seconds:.1f} s to refuse it"


def test_an_unpacked_step_list_past_the_cap_is_refused_at_the_cap_and_its_message_works_when_followed(
        real_dir, tmp_path, monkeypatch):
    """Counted only to the cap, its length is not known: the value the message gives is the most its bytes
    can hold, so setting it reads the episode."""
    directory, shard = _copy(real_dir, tmp_path)
    _with_one_shard(directory, shard, [_claiming(1500, packed=False, lists=True)])
    with pytest.raises(DataError) as info:
        EpisodeSource(directory, index_dir=tmp_path / "i1").index
    message = str(info.value)
    assert message.startswith(f"{shard}: record 0: field 'steps/is_first': at least 1,002 steps (up to 1,998:")
    _follow(message, monkeypatch)
    source = EpisodeSource(directory, index_dir=tmp_path / "i2")
    assert source.episode_lengths().tolist() == [1500]
    window = source.steps(0, 1490, 1500, fields=["is_first", "reward"])
    assert window["is_first"].tolist() == [False] * 10 and window["reward"].tolist() == [0] * 10


def test_the_step_cap_message_works_when_followed(tmp_path, monkeypatch):
    """An episode longer than the cap: refused by name; set the variable as the message says, and it reads."""
    real = schema.spec_for("dropj_carracing", "real")
    legacy_factory.make_real_source(tmp_path / "m", real, lengths=(1, 1200))
    monkeypatch.setenv(STEPS_VARIABLE, "1200")  # the build reads it with its own cap, raised the same way
    directory = Path(build("dropj_carracing/real", tmp_path / "m", tmp_path / "d").data_dir)
    shard = next(directory.glob("*.tfrecord-*"))
    monkeypatch.delenv(STEPS_VARIABLE)
    with pytest.raises(DataError) as info:
        EpisodeSource(directory, index_dir=tmp_path / "i1").index
    message = str(info.value)
    assert message.startswith(f"{shard}: record 1: field 'steps/is_first': 1,201 steps, more than the 1,001")
    _follow(message, monkeypatch)
    source = EpisodeSource(directory, index_dir=tmp_path / "i2")
    assert source.episode_lengths().tolist() == [2, 1201]
    assert source.steps(1, 1195, 1201)["observation"].shape == (6, 84, 84, 3)
    assert source[1]["steps"]["action"].shape == (1201, 3)


INT64S = [0, 1, -1, 127, 128, 300, 2 ** 62, -(2 ** 63), 2 ** 63 - 1]
FLOATS = [0.5, -2.0, float("inf"), 1e-30, 0.0]


def _int64s(values: list[int], packed: bool) -> bytes:
    """An Int64List's payload: one packed run, or one entry per value (negatives as 10-byte varints)."""
    varints = [_varint(v & 0xFFFFFFFFFFFFFFFF) for v in values]
    return _field(1, b"".join(varints)) if packed else b"".join(b"\x08" + v for v in varints)


def _floats(values: list[float], packed: bool) -> bytes:
    """A FloatList's payload: one packed run, or one fixed32 entry per value."""
    data = [struct.pack("<f", v) for v in values]
    return _field(1, b"".join(data)) if packed else b"".join(b"\x0d" + v for v in data)


def test_unpacked_and_mixed_lists_decode_and_count_as_packed_ones():
    """Proto2 writes one entry per value; a list may also mix packed runs, single values and other fields."""
    from dropj.loaders.tfrecord_wire import count_values, feature_values, parse_example

    unknown = _varint(2 << 3 | 0) + _varint(7)  # a field an Int64List or FloatList does not have: skipped
    mixed_ints = _int64s(INT64S[:3], True) + unknown + _int64s(INT64S[3:5], False) + _int64s([], True) \
        + _int64s(INT64S[5:], True)
    mixed_floats = _floats(FLOATS[:2], False) + _floats(FLOATS[2:4], True) + unknown + _floats(FLOATS[4:], False)
    cases = {"packed": (_int64s(INT64S, True), _floats(FLOATS, True)),
             "unpacked": (_int64s(INT64S, False), _floats(FLOATS, False)), "mixed": (mixed_ints, mixed_floats)}
    for form, (ints, floats) in cases.items():
        parsed = parse_example(_example({"i": _field(3, ints), "f": _field(2, floats)}))
        assert parsed["i"].dtype == np.int64 and parsed["i"].tolist() == INT64S, form
        assert parsed["f"].dtype == np.float32 and parsed["f"].tolist() == np.float32(FLOATS).tolist(), form
        assert count_values(_field(3, ints), limit=len(INT64S)) == ("int64", len(INT64S)), form
        assert count_values(_field(2, floats), limit=len(FLOATS)) == ("float", len(FLOATS)), form
        assert feature_values(_field(3, ints), limit=len(INT64S)).tolist() == INT64S, form


def test_a_list_past_its_limit_stops_there_counting_or_decoding_whatever_its_form():
    """Counted per entry, refused at the first one past the limit: no span of the rest kept, no byte gathered
    (a 25 MB unpacked list took 14 s and 20x its size before the count was compared with the cap)."""
    import time

    from dropj.loaders.tfrecord_wire import TooMany, count_values, feature_values

    steps = 12_500_000
    for form, feature in (("packed", _field(3, _int64s([0] * steps, True))),
                          ("unpacked", _field(3, b"\x08\x00" * steps)),
                          ("unpacked floats", _field(2, b"\x0d\x00\x00\x00\x00" * (steps // 2)))):
        for read in (count_values, feature_values):
            started = time.perf_counter()
            with pytest.raises(TooMany, match="^more than 1,001 values$") as info:
                read(feature, limit=1001)
            assert time.perf_counter() - started < 1, (form, read.__name__)
            assert info.value.counted == (steps if form == "packed" else 1002), (form, read.__name__)
            holds = {"packed": steps, "unpacked": 2 * steps - 1002,
                     "unpacked floats": 1002 + (steps // 2 - 1002) * 5 // 4}  # what the rest's bytes can hold
            assert info.value.most == holds[form], (form, read.__name__)


def test_fields_a_message_does_not_use_cost_no_memory_per_field():
    """Unknown fields are skipped as protobuf allows; each was a Python tuple in a list before (100 bytes
    each: a 2 MB Feature of a million of them took over 100 MB to count)."""
    import tracemalloc

    from dropj.loaders.tfrecord_wire import count_values, feature_values

    junk = b"\x22\x00" * 1_000_000  # field 4, empty: no field of a Feature
    feature = junk + _field(3, _int64s([1, 2], True))
    tracemalloc.start()
    try:
        assert count_values(feature, limit=2) == ("int64", 2)
        assert feature_values(feature, limit=2).tolist() == [1, 2]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < len(feature), f"{peak:,} bytes to read a Feature of {len(feature):,}"


def test_a_number_list_step_field_longer_than_the_episode_is_refused_before_it_is_decoded(real_dir, tmp_path):
    """The index keeps only where the list lies; reading steps stops it at the episode's values."""
    directory, shard = _copy(real_dir, tmp_path)
    empty_items = _field(1, b"\x0a\x00" * 2)
    bools = _field(3, _field(1, b"\x00" * 2))
    record = _example({"steps/is_first": bools, "steps/is_last": bools, "steps/is_terminal": bools,
                       "steps/observation": empty_items, "steps/action": empty_items,
                       "steps/discount": _field(2, _floats([1.0, 1.0], True)),
                       "steps/reward": _field(3, b"\x08\x00" * 3_000_000)})  # an unpacked Int64List
    _with_one_shard(directory, shard, [record])
    source = EpisodeSource(directory)
    assert source.episode_lengths().tolist() == [2]
    assert source.steps(0, 0, 2, fields=["discount"])["discount"].tolist() == [1.0, 1.0]
    with pytest.raises(DataError, match=rf"^{shard}: record 0: field 'steps/reward': more than 2 values for 2 "
                                        "steps$"):
        source.steps(0, 0, 2, fields=["reward"])


def test_a_bytes_field_with_more_items_than_steps_is_refused_without_reading_them_all(real_dir, tmp_path):
    directory, shard = _copy(real_dir, tmp_path)
    record = _example({"steps/is_first": _field(3, _field(1, b"\x01\x00")),
                       "steps/observation": _field(1, b"\x0a\x00" * 3_000_000),
                       "steps/action": _field(1, b"\x0a\x00" * 2)})
    _with_one_shard(directory, shard, [record])
    with pytest.raises(DataError, match=rf"^{shard}: record 0: field 'steps/observation': more than 2 values "
                                        "for 2 steps$"):
        EpisodeSource(directory).index


# -- frames ------------------------------------------------------------------------------------------------

def test_a_frame_claiming_a_million_by_a_million_pixels_is_a_data_error(real_dir, tmp_path):
    directory, shard = _copy(real_dir, tmp_path)
    source = EpisodeSource(directory)
    _, offset, length, _ = (int(v) for v in source.index.records[1])
    data = bytearray(shard.read_bytes())
    at = offset + bytes(data[offset:offset + length]).index(b"IHDR")
    ihdr = struct.pack(">II", 10 ** 6, 10 ** 6) + bytes(data[at + 12:at + 17])
    data[at + 4:at + 17] = ihdr
    data[at + 17:at + 21] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    shard.write_bytes(bytes(data))
    for read in (lambda s: s[1], lambda s: s.steps(1, 0, 2)):
        with pytest.raises(DataError, match=rf"^{shard}: record 1: field 'steps/observation'.*"
                                            r"1000000x1000000, expected PNG 84x84"):
            read(EpisodeSource(directory))


def test_the_codecs_own_decoder_refuses_a_png_bomb_with_a_data_error():
    from dropj_datasets import codec

    frame = codec.encode_png(np.random.default_rng(0).integers(0, 255, (8, 8, 3), np.uint8))
    ihdr = struct.pack(">II", 10 ** 6, 10 ** 6) + frame[24:29]
    bomb = frame[:16] + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + frame[33:]
    with pytest.raises(DataError, match="1000000x1000000"):
        codec.decode_png(bomb)
    with pytest.raises(DataError, match="not a readable PNG"):
        codec.decode_png(b"GIF89a" + frame[6:])


# -- the JSON files, fuzzed ----------------------------------------------------------------------------------

DEEP = "[" * 5000 + "]" * 5000  # deeper than Python's recursion limit
NESTED = "[" * 900 + "]" * 900  # parses, then recurses in any recursive walk
VALUES = ["99999999999999999999", 99999999999999999999, -1, 1.5, "NaN", None, True, [], {}, "x" * 70,
          "DEEP", "NESTED", "BIGINT"]


def _dumps(value) -> str:
    text = json.dumps(value)  # NaN, huge and deep values are spliced in as text
    return (text.replace('"NaN"', "NaN").replace('"DEEP"', DEEP).replace('"NESTED"', NESTED)
            .replace('"BIGINT"', "9" * 4000))


def _paths(value, prefix=()):
    """Every path to a value in a JSON document, as key/index tuples (lists: their first item)."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list) and value:
        yield from _paths(value[0], (*prefix, 0))


def _replaced(document, path, value):
    if not path:
        return value
    copy = json.loads(json.dumps(document))
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return copy


def _entry_points(directory: Path) -> None:
    """Every way in: the check, EpisodeSource (opened, counted, read), BuiltDataset (opened, counted)."""
    from dropj.converters.store import dataset_dir
    from dropj.converters.roundtrip.built import BuiltDataset

    dataset_dir.check(directory)
    source = EpisodeSource(directory, progress=False)
    if len(source):  # an empty split is a dataset too
        source[0], source.steps(0, 0, 1)
    built = BuiltDataset.open(str(directory))
    built.count, built.metadata()


@pytest.mark.parametrize("name", ["dataset_info.json", "features.json", "metadata.json"])
def test_every_entry_point_answers_malformed_json_with_one_data_error(real_dir, tmp_path, name):
    directory, _ = _copy(real_dir, tmp_path)
    path = directory / name
    pristine = path.read_bytes()
    document = json.loads(pristine)
    cases = [(f"{'/'.join(map(str, where)) or '(whole file)'} = {str(value)[:20]}",
              _dumps(_replaced(document, where, value)).encode()) for where in _paths(document) for value in VALUES]
    cases += [("not UTF-8", pristine.replace(b'"', b'"\xff', 1)), ("UTF-16", pristine.decode().encode("utf-16")),
              ("a duplicate key", b'{"splits": [], ' + pristine[1:]), ("empty", b""), ("truncated", pristine[:-2])]
    refused = read = 0
    for what, data in cases:
        path.write_bytes(data)
        try:
            _entry_points(directory)
            read += 1
        except DataError as exc:
            assert len(str(exc).splitlines()) == 1, (what, str(exc)[:300])
            assert str(directory) in str(exc) or "dropj_carracing" in str(exc), (what, str(exc)[:300])
            refused += 1
        except Exception as exc:  # noqa: BLE001 (the point: anything else is the bug)
            pytest.fail(f"{name}: {what}: {type(exc).__name__}: {str(exc)[:300]}")
        finally:
            shutil.rmtree(directory / "dropj_index", ignore_errors=True)
    assert refused > len(cases) // 4 and read > 0  # both ways taken: the checks are neither blind nor blanket


def test_shard_lengths_beyond_any_shard_are_one_data_error_everywhere(real_dir, tmp_path):
    """`shardLengths: ["99999999999999999999"]` raised OverflowError (EpisodeSource) and ParseError (TFDS)."""
    from dropj.converters.store import dataset_dir
    from dropj.converters.roundtrip.built import BuiltDataset

    directory, shard = _copy(real_dir, tmp_path)
    info_path = directory / "dataset_info.json"
    info = json.loads(info_path.read_text())
    for count in ("99999999999999999999", "9999999999", str(shard.stat().st_size)):
        info["splits"][0]["shardLengths"] = [count]
        info_path.write_text(json.dumps(info))
        for enter in (dataset_dir.check, EpisodeSource, lambda d: BuiltDataset.open(str(d))):
            with pytest.raises(DataError, match=rf"{info_path}: shard 0 .*claims {int(count):,} records"):
                enter(directory)


# -- what one record's decoding makes --------------------------------------------------------------------

def test_decoding_a_record_refuses_a_long_sequence_and_a_wrong_count_before_making_anything(real_dir):
    """`src[i]` of any kind (queries and preferences have no index): a sequence past the step cap, or a field
    with more byte strings than its shape, is refused before an array or a byte string is made of it."""
    from dropj.loaders.episode_source import decode_example
    from dropj.loaders.tfrecord_wire import ByteItems, Corrupt, index_example

    source = EpisodeSource(real_dir)
    record = source.raw(0)
    spec = source.spec
    first = next(f for f in spec.fields() if f.name.startswith(f"{schema.STEPS}/"))
    assert first.encoding == "png"  # the sequence's length is told by its frames
    many = ByteItems(np.zeros(2000, np.int64), np.zeros(2000, np.int64))
    with pytest.raises(Corrupt, match=rf"^field '{first.name}': 2,000 steps, more than the 1,001 a sequence may have$"):
        decode_example({**index_example(record), first.name: many}, spec, record, max_steps=1001)
    class Unmade(ByteItems):
        def items(self, *args, **kwargs):
            raise AssertionError("byte strings made before their count was checked")

    scalar = f"{schema.EPISODE_METADATA}/source_file"
    millions = Unmade(np.zeros(10 ** 6, np.int64), np.zeros(10 ** 6, np.int64))
    with pytest.raises(Corrupt, match=rf"^field '{scalar}': 1,000,000 byte strings, expected 1$"):
        decode_example({**index_example(record), scalar: millions}, spec, record, 1001)
    decoded = decode_example(index_example(record), spec, record, 1001)
    assert decoded[schema.STEPS]["observation"].shape[1:] == (84, 84, 3)


def _follow(message: str, monkeypatch) -> None:
    """Does what a step-cap refusal says: `set VARIABLE=VALUE to read it`."""
    variable, _, value = message.rpartition("set ")[2].partition(" to read it")[0].partition("=")
    assert variable == STEPS_VARIABLE, message
    monkeypatch.setenv(variable, value)
