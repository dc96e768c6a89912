"""Issue 9, the reader as a strict gate: each attack on the old reader, refused now, in bounded time and memory.

The attacks themselves are `fuzzing.attacks()`; the fuzzer (test_fuzz_reader.py) shows that each one
crashes, hangs or exhausts a plain `pickle.load` restricted to the same globals.
"""

from __future__ import annotations

import copy
import io
import pickle
import struct
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

from factory import fuzzing
from dropj.converters.release import episodes as episodes_lib
from dropj.converters.store import legacy_pickle
from dropj.converters.release import sources
from dropj.converters.store.legacy_pickle import UnsafePickleError
from dropj_datasets import schema
from dropj_datasets.schema import DataError

ATTACKS = dict(fuzzing.attacks())
REAL = schema.spec_for("dropj_carracing", "real")


def _in_list(snippet: bytes) -> bytes:
    """A protocol 2 pickle of a list holding the value `snippet` pushes."""
    return pickle.PROTO + b"\x02" + pickle.EMPTY_LIST + snippet + pickle.APPEND + pickle.STOP


def _both(data: bytes, name: str = "attack.pkl", **kwargs) -> list[DataError]:
    """The errors of `load` and of `iter_list` (each must refuse)."""
    errors = []
    for read in (lambda f: legacy_pickle.load(f, name, **kwargs),
                 lambda f: list(legacy_pickle.iter_list(f, name, **kwargs))):
        with pytest.raises(DataError) as info:
            read(io.BytesIO(data))
        assert name in str(info.value) and len(str(info.value)) < 5000
        errors.append(info.value)
    return errors


def test_forged_object_dtype_is_refused_before_numpy_sees_it():
    """A V8 dtype declaring an object field with flags 1 made numpy DECREF an attacker's pointer."""
    for error in _both(ATTACKS["forged-object-dtype"]):
        assert isinstance(error, UnsafePickleError) and "numpy dtype 'V8'" in str(error)


@pytest.mark.parametrize("code", ["O8", "V8", "M8", "U4", "S3", "c16"])
def test_only_plain_numeric_and_bool_dtypes_are_accepted(code):
    data = _in_list(fuzzing._dtype(code, fuzzing._normal_state()))
    for error in _both(data):
        assert isinstance(error, UnsafePickleError) and "only the plain numeric and bool dtypes" in str(error)


@pytest.mark.parametrize("flags", [1, 16, 63])
def test_a_plain_dtype_with_a_forged_state_is_refused(flags):
    """The dtype's state must be numpy's own: flags and fields cannot be forged on an 'f8' either."""
    state = fuzzing._forged_state(pickle.NONE + pickle.NONE, flags)
    data = _in_list(fuzzing._dtype("f8", state))
    for error in _both(data):
        assert "which is not numpy's own" in str(error)


def test_every_plain_dtype_and_byte_order_round_trips_exactly():
    values = [(np.arange(6) % 3).astype(code).reshape(2, 3) for code in ("?", "i1", "<i2", ">i4", "i8", "u1", "u2",
                                                                           ">u4", "u8", "f2", "<f4", ">f8")]
    for protocol in (2, 4, 5):
        data = pickle.dumps(values, protocol=protocol)
        got = legacy_pickle.load(io.BytesIO(data), "dtypes.pkl")
        assert fuzzing.fingerprint(got) == fuzzing.fingerprint(pickle.loads(data))


@pytest.mark.parametrize("call", [
    ("builtins", "list"),  # list(numpy.ndarray((2**27,), 'u1')): 52 bytes, 6 GB
    ("builtins", "bytearray"),  # bytearray(2**40)
    ("numpy", "ndarray"),  # ndarray(shape): memory of any size
    ("collections", "OrderedDict"),  # harmless, but no release file holds one
])
def test_calls_outside_the_release_shapes_are_refused(call):
    module, name = call
    data = _in_list(fuzzing._global(module, name) + pickle.BININT + struct.pack("<i", 2**27) + pickle.TUPLE1
                    + pickle.REDUCE)
    for error in _both(data):
        assert isinstance(error, UnsafePickleError)


def test_list_of_a_huge_array_is_refused_in_bounded_memory():
    """The 52-byte pickle that cost 6 GB: refused with a 256 MiB address-space budget to spare."""
    code = ("import io, resource, sys; sys.path.insert(0, 'tests'); from factory import fuzzing\n"
            "from dropj.converters.store import legacy_pickle\n"
            "data = dict(fuzzing.attacks())['list-of-a-2**27-array']\n"
            "limit = fuzzing._address_space() + (256 << 20)\n"
            "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
            "try:\n    legacy_pickle.load(io.BytesIO(data), 'x.pkl')\n"
            "except legacy_pickle.UnsafePickleError as e:\n    print('refused', e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("refused"), done.stderr[-2000:]


def test_hash_bomb_key_is_refused_at_once():
    """A dict key that is a shared 2-fanout tuple nested 100 deep (hashing it costs 2**100)."""
    start = time.monotonic()
    for error in _both(ATTACKS["tuple-key-hash-bomb"]):
        assert "refers again to a tuple" in str(error)
    assert time.monotonic() - start < 5
    # Without sharing, a tuple key is still no key of a release file.
    unshared = _in_list(pickle.EMPTY_DICT + pickle.NONE + pickle.TUPLE1 + pickle.NONE + pickle.SETITEM)
    assert all("a dict key of type tuple" in str(e) for e in _both(unshared))


def test_deep_nesting_is_refused_and_the_message_stays_small():
    for error in _both(ATTACKS["nested-100000-tuples"]):
        assert "nested deeper than 16 levels" in str(error)


def test_memo_trick_cannot_make_the_build_drop_an_item():
    """EMPTY_LIST, POP, LONG_BINPUT, LONG_BINGET before the final APPENDS: pickle.load sees 3 items."""
    data = ATTACKS["memo-trick-third-item"]
    assert len(pickle.loads(data)) == 3
    for error in _both(data):
        assert "POP is not allowed" in str(error)
    # The independent parse counts what pickle.load sees.
    assert legacy_pickle.count_items(io.BytesIO(data)) == 3


def _put(key: int) -> bytes:
    return pickle.LONG_BINPUT + struct.pack("<I", key)


def _get(key: int) -> bytes:
    return pickle.LONG_BINGET + struct.pack("<I", key)


@pytest.mark.parametrize("snippet,message", [
    # a memo index that skips ahead after a new item
    (lambda: pickle.EMPTY_LIST + _put(7) + pickle.EMPTY_LIST, "memo index 7 out of sequence"),
    # a memo index that goes back would overwrite an earlier entry
    (lambda: _put(0), "out of sequence"),
    # a reference to the top-level list inside an item
    (lambda: _get(0), "refers to the top-level list"),
])
def test_placeholders_and_the_outer_list_cannot_be_handed_out_again(snippet, message):
    base = pickle.dumps([[1], [2]], protocol=2)
    at = base.rindex(pickle.APPENDS)
    data = base[:at] + snippet() + base[at:]
    errors = []
    with pytest.raises(DataError) as info:
        list(legacy_pickle.iter_list(io.BytesIO(data), "trick.pkl"))
    errors.append(str(info.value))
    assert message in errors[0]


def test_an_item_referenced_after_it_was_handed_out_is_refused():
    """A later item reusing an array of a handed-out item: the memo no longer holds it, and says why."""
    shared = np.zeros(2)
    data = pickle.dumps([[shared, np.ones(2)], [np.ones(3)], [shared]], protocol=4)
    with pytest.raises(DataError, match=r"refers to an object of an earlier, already streamed item \(memo \d+\); "
                                        "this file cannot be streamed"):
        list(legacy_pickle.iter_list(io.BytesIO(data), "x.pkl"))


def test_claimed_lengths_beyond_the_file_are_refused_before_allocating():
    for error in _both(ATTACKS["claimed-2**40-bytes"]):
        assert "claims 1,099,511,627,776 bytes, but only 10 are left" in str(error)


def test_zip_member_claiming_2_40_bytes_is_refused_at_once(tmp_path):
    """It was refused only after 6.5 GB: the member's size from the central directory bounds every claim."""
    archive = tmp_path / "release.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(REAL.sources.episodes, ATTACKS["claimed-2**40-bytes"] + b"\0" * 1000)
    [ref] = sources.locate(tmp_path, (REAL.sources.episodes,), required=()).values()
    with ref.open() as f:
        with pytest.raises(DataError, match=r"claims 1,099,511,627,776 bytes, but only 1,010 are left"):
            list(legacy_pickle.iter_list(f, str(ref), size=ref.size))


def test_an_episode_sharing_one_frame_100000_times_stops_at_the_time_limit():
    """One episode of 10**5 steps sharing one frame (a 2.2 MB file) cost 6.45 GB; now: the step cap."""
    frame, action = np.zeros((84, 84, 3), np.uint8), np.zeros(3)
    data = pickle.dumps([[(frame, action, 0, frame, 0.0, {}) for _ in range(100_000)]], protocol=5)
    assert len(data) < 3_000_000
    limits = episodes_lib.reader_limits(REAL)
    start = time.monotonic()
    with pytest.raises(DataError) as info:
        list(legacy_pickle.iter_list(io.BytesIO(data), "raw.pkl", limits=limits))
    message = str(info.value)
    assert message.startswith("raw.pkl, episode 0 (byte ")
    assert "more than 1,000 entries" in message and "DROPJ_MAX_EPISODE_STEPS" in message
    assert time.monotonic() - start < 10


def test_the_step_cap_is_raised_by_its_variable(monkeypatch):
    frame = np.zeros((2, 2, 3), np.uint8)
    data = pickle.dumps([[copy.deepcopy((frame, np.zeros(3), 0, frame, 0.0, {})) for _ in range(1500)]], protocol=5)
    with pytest.raises(DataError, match="more than 1,000 entries"):
        list(legacy_pickle.iter_list(io.BytesIO(data), "raw.pkl", limits=episodes_lib.reader_limits(REAL)))
    monkeypatch.setenv(episodes_lib.MAX_STEPS_VARIABLE, "2000")
    [episode] = legacy_pickle.iter_list(io.BytesIO(data), "raw.pkl", limits=episodes_lib.reader_limits(REAL))
    assert len(episode) == 1500
    monkeypatch.setenv(episodes_lib.MAX_STEPS_VARIABLE, "lots")
    with pytest.raises(DataError, match="DROPJ_MAX_EPISODE_STEPS='lots': expected a whole number"):
        episodes_lib.reader_limits(REAL)


def test_shared_arrays_count_against_the_budget_each_time():
    """References to one array inside an item are charged as a consumer copying them would allocate."""
    big = np.zeros(1 << 20, np.uint8)
    data = pickle.dumps([[big] * 300], protocol=5)  # 1 MB in the file, 300 MB for a consumer
    with pytest.raises(DataError, match=r"holds more than 268,435,456 bytes of data"):
        list(legacy_pickle.iter_list(io.BytesIO(data), "x.pkl"))


def test_objects_and_container_sizes_are_bounded():
    limits = legacy_pickle.Limits(max_objects=1000, max_container=100)
    with pytest.raises(DataError, match="more than 100 entries"):
        legacy_pickle.load(io.BytesIO(pickle.dumps(list(range(200)), protocol=4)), "x.pkl", limits=limits)
    with pytest.raises(DataError, match="more than 1,000 values"):
        legacy_pickle.load(io.BytesIO(pickle.dumps([[0] * 50 for _ in range(40)], protocol=4)), "x.pkl", limits=limits)


def test_error_messages_about_huge_or_deep_values_stay_bounded():
    """The repr of a shared or deep structure in a message cost 5 GB or a RecursionError."""
    from dropj.converters.release import preferences as feedback

    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    spec = schema.spec_for("dropj_carracing", "preferences_drop")
    entry = {"video": "0.mp4", "responses": [deep], "repeat_count": 0, "total_time": 1.0}
    with pytest.raises(DataError) as info:
        feedback.validate_response(entry, spec, file="r.pkl", index=0)
    assert len(str(info.value)) < 1000
    huge = "x" * 10_000_000
    entry = {"video": huge, "responses": "Skipped", "repeat_count": 0, "total_time": 1.0}
    with pytest.raises(DataError) as info:
        feedback.validate_response(entry, spec, file="r.pkl", index=0)
    assert len(str(info.value)) < 1000 and "10,000,000 long" in str(info.value)
    assert len(str(DataError("y" * 100_000))) < schema.MAX_MESSAGE + 100


def test_frames_are_honoured_as_cpython_reads_them():
    """An opcode crossing the end of its frame means different things to different unpicklers: refused."""
    data = pickle.dumps([1.5, 2.5], protocol=4)
    frame_at = data.index(pickle.FRAME)
    (length,) = struct.unpack("<Q", data[frame_at + 1:frame_at + 9])
    shorter = data[:frame_at + 1] + struct.pack("<Q", length - 3) + data[frame_at + 9:]
    with pytest.raises(DataError, match="crosses the end of its frame"):
        legacy_pickle.load(io.BytesIO(shorter), "x.pkl")


def test_memory_of_a_whole_release_episode_stays_near_its_size():
    """Sanity on the budgets: a real-sized 128x128 episode of 1000 steps is read (98 MB of frames)."""
    spec = schema.spec_for("dropj_obst_carracing", "chuckc_real")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (1001, 128, 128, 3), np.uint8)
    episode = [(frames[t].copy(), np.zeros(3), 0, frames[t + 1].copy(), float(t == 999), {}) for t in range(1000)]
    data = pickle.dumps([episode], protocol=5)
    del episode
    [got] = legacy_pickle.iter_list(io.BytesIO(data), "x.pkl", limits=episodes_lib.reader_limits(spec))
    assert len(got) == 1000 and np.array_equal(got[999][3], frames[1000])


def test_only_regular_files_are_opened(tmp_path):
    """A FIFO under a release name hung forever; now it is refused by name, at once."""
    import os

    fifo = tmp_path / REAL.sources.episodes
    os.mkfifo(fifo)
    start = time.monotonic()
    with pytest.raises(DataError, match=rf"{REAL.sources.episodes}: a FIFO, not a regular file"):
        sources.locate(tmp_path, (REAL.sources.episodes,), required=(REAL.sources.episodes,))
    with pytest.raises(DataError, match="a FIFO, not a regular file"):
        sources.open_regular(fifo)
    os.mkfifo(tmp_path / "release.zip")
    with pytest.raises(DataError, match="release.zip: a FIFO"):
        sources.index(tmp_path)
    assert time.monotonic() - start < 5
    with pytest.raises(DataError, match="a character device"):
        sources.open_regular("/dev/zero")


def test_a_zip_central_directory_is_parsed_once(tmp_path, monkeypatch):
    """A queries zip with 2x10^5 extra members took > 10 min: its central directory was parsed per lookup."""
    from dropj.converters.release import preferences as feedback

    spec = schema.spec_for("dropj_carracing", "queries")
    rng = np.random.default_rng(0)
    queries = {f"{i}.mp4": {"segment1": rng.standard_normal((20, 547)), "segment2": rng.standard_normal((20, 547))}
               for i in range(30)}
    with zipfile.ZipFile(tmp_path / "queries.zip", "w") as z:
        z.writestr("queries_s20/data.pkl", pickle.dumps(queries, protocol=4))
        for i in range(30):
            z.writestr(f"queries_s20/{i}.mp4", b"video %d" % i)
        for i in range(20_000):  # extra members: same base names in other folders, and others
            z.writestr(f"extra/{i // 30}/{i % 30}.mp4", b"")
    parses = []
    original = zipfile.ZipFile._RealGetContents

    def counting(self):
        parses.append(self.filename)
        return original(self)

    monkeypatch.setattr(zipfile.ZipFile, "_RealGetContents", counting)
    sources._ARCHIVES.forget(tmp_path / "queries.zip")
    _, examples = feedback.prepare_queries(spec, str(tmp_path))
    assert sum(1 for _ in examples) == 30
    assert len(parses) == 1, parses
