"""Tests of `dropj.converters.store.legacy_pickle`, the one safe reader of legacy pickles.

Covers exact round trips against `pickle.load` (protocols 2-5) on realistic
DROPJ structures (DATA_FORMATS.md §0.4, §1-§3, §5), the real shipped files
(through $DROPJ_REAL_DATA), the streaming memory bound of `iter_list`, hostile
pickles (proven not to run), and corrupt/truncated input.
"""

from __future__ import annotations

import collections
import copy
import gc
import glob
import io
import os
import pathlib
import pickle
import pickletools
import random
import shlex
import struct
import subprocess
import time
import tracemalloc
import weakref
from typing import Any, Callable

import numpy as np
import pytest

import factory

from factory import legacy as legacy_factory
from dropj.converters.store import legacy_pickle
from dropj.converters.store.legacy_pickle import UnsafePickleError
from dropj_datasets.schema import DataError

PROTOCOLS = (2, 3, 4, 5)
RES84 = (84, 84, 3)


# --------------------------------------------------------------------------------------------------
# Exact structural comparison
# --------------------------------------------------------------------------------------------------

def assert_same(got: Any, want: Any, path: str = "root", _pairs: dict | None = None) -> None:
    """Exact equality: same types, dtypes, shapes, bytes, key order and object-sharing pattern."""
    pairs = {} if _pairs is None else _pairs
    assert type(got) is type(want), f"{path}: type {type(got).__name__} != {type(want).__name__}"
    if isinstance(want, (list, tuple, dict, np.ndarray)):
        # The same sharing pattern: an object seen twice in `want` is the same object in `got`.
        key = ("w", id(want))
        if key in pairs:
            assert pairs[key] is got, f"{path}: object sharing differs from pickle.load"
            return
        assert ("g", id(got)) not in pairs, f"{path}: object shared in result but not in pickle.load"
        pairs[key] = got
        pairs[("g", id(got))] = want
    if isinstance(want, np.ndarray):
        assert got.dtype == want.dtype, f"{path}: dtype {got.dtype} != {want.dtype}"
        assert got.dtype.str == want.dtype.str, f"{path}: byte order {got.dtype.str} != {want.dtype.str}"
        assert got.shape == want.shape, f"{path}: shape {got.shape} != {want.shape}"
        assert got.flags.c_contiguous == want.flags.c_contiguous, f"{path}: C order differs"
        assert got.flags.f_contiguous == want.flags.f_contiguous, f"{path}: Fortran order differs"
        assert got.flags.writeable == want.flags.writeable, f"{path}: writeability differs"
        assert got.tobytes(order="A") == want.tobytes(order="A"), f"{path}: array bytes differ"
    elif isinstance(want, np.generic):
        assert got.dtype == want.dtype, f"{path}: scalar dtype {got.dtype} != {want.dtype}"
        assert got.tobytes() == want.tobytes(), f"{path}: scalar bytes differ"
    elif isinstance(want, dict):
        if isinstance(want, collections.defaultdict):
            assert got.default_factory is want.default_factory, f"{path}: default_factory differs"
        assert len(got) == len(want), f"{path}: {len(got)} keys != {len(want)}"
        for (gk, gv), (wk, wv) in zip(got.items(), want.items()):
            assert_same(gk, wk, f"{path}.key({wk!r})", pairs)
            assert_same(gv, wv, f"{path}[{wk!r}]", pairs)
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), f"{path}: length {len(got)} != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{path}[{i}]", pairs)
    elif isinstance(want, float):
        assert struct.pack("<d", got) == struct.pack("<d", want), f"{path}: {got!r} != {want!r}"
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


def test_assert_same_detects_differences():
    """The comparison helper itself must be able to fail."""
    a = np.zeros(3, np.float32)
    cases = [
        (np.zeros(3, np.float64), a),                      # dtype
        (np.zeros((3, 1), np.float32), a),                 # shape
        (np.ones(3, np.float32), a),                       # bytes
        ((a,), [a]),                                       # container type
        ({"b": 1, "a": 2}, {"a": 2, "b": 1}),              # key order
        (1.0, 1),                                          # int vs float
        (-0.0, 0.0),                                       # float bits
        (np.float32(1.0), np.float64(1.0)),                # scalar type
        ([a.copy(), a.copy()], [a, a]),                    # sharing pattern
        (np.asfortranarray(np.ones((2, 2))), np.ones((2, 2))),  # memory order
    ]
    for got, want in cases:
        with pytest.raises(AssertionError):
            assert_same(got, want)


# --------------------------------------------------------------------------------------------------
# Realistic episode builders (authors' deepcopy of every 6-tuple, DATA_FORMATS §0.4, §1.1, §2.1)
# --------------------------------------------------------------------------------------------------

def raw_episode(rng: np.random.Generator, steps: int, shape=RES84, infos: Callable[[int, int], dict] | None = None):
    """A list of `(prev_obs, action, reward, obs, done, info)` like `user_extract.py`."""
    frames = rng.integers(0, 256, (steps + 1, *shape), dtype=np.uint8)
    actions = [np.array([-1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.8]),
               np.array([0.0, 0.0, 0.0])]
    episode = []
    for t in range(steps):
        last = t == steps - 1
        if infos is not None:
            info = infos(t, steps)
        elif last:
            info = {"TimeLimit.truncated": False}
        else:
            info = [{}, {"crash": True}, {"succ": True}][t % 3]
        reward = {"crash": -1, "succ": 10}.get(next(iter(info), ""), 0)
        episode.append(copy.deepcopy((frames[t], actions[t % 4], reward, frames[t + 1], float(last), info)))
    return episode


def dream_episode(rng: np.random.Generator, steps: int, dim: int = 544):
    """Dream rollout: prev_obs float64 at step 0, float32 later; reward 0, done 0.0, info {} (§2.1)."""
    state = rng.standard_normal(dim).astype(np.float32).astype(np.float64)
    episode = []
    for t in range(steps):
        nxt = rng.standard_normal(dim).astype(np.float32)
        action = np.array([[-1.0, 0.0, 1.0][t % 3], 1.0, 0.0])
        episode.append(copy.deepcopy((state, action, 0, nxt, 0.0, {})))
        state = nxt
    return episode


def _datasets() -> dict[str, Callable[[], list]]:
    def realistic():
        rng = np.random.default_rng(1)
        return [
            raw_episode(rng, 3),
            raw_episode(rng, 1),  # a 1-transition episode
            raw_episode(rng, 4, infos=lambda t, n: {}),  # only empty info dicts
            raw_episode(rng, 2, infos=lambda t, n: {"crash": True, "TimeLimit.truncated": True} if t == n - 1
                        else {"succ": True}),
        ]

    def long_episode():
        # > 1000 transitions: the pickler batches APPENDS by 1000 inside the episode.
        rng = np.random.default_rng(2)
        return [raw_episode(rng, 2), raw_episode(rng, 1003, shape=(4, 4, 3)), raw_episode(rng, 2)]

    def many_episodes():
        # > 1000 top-level items: the outer list itself is written in several APPENDS batches.
        rng = np.random.default_rng(3)
        return [raw_episode(rng, 1 + i % 2, shape=(2, 2, 3)) for i in range(2003)]

    def dream():
        rng = np.random.default_rng(4)
        return [dream_episode(rng, 25), dream_episode(rng, 1), dream_episode(rng, 25, dim=2112)]

    def with_empty_episode():
        rng = np.random.default_rng(5)
        return [[], raw_episode(rng, 2), [], raw_episode(rng, 1)]

    return {
        "empty_outer_list": list,
        "single_episode": lambda: [raw_episode(np.random.default_rng(6), 5)],
        "single_one_step_episode": lambda: [raw_episode(np.random.default_rng(7), 1)],
        "realistic": realistic,
        "long_episode_over_1000": long_episode,
        "over_1000_episodes": many_episodes,
        "dream": dream,
        "with_empty_episode": with_empty_episode,
    }


DATASETS = _datasets()


@pytest.fixture(scope="module")
def pickled_datasets():
    cache: dict = {}

    def get(name: str, protocol: int) -> bytes:
        if (name, protocol) not in cache:
            cache[name, protocol] = pickle.dumps(DATASETS[name](), protocol=protocol)
        return cache[name, protocol]

    return get


def test_builders_match_spec():
    """Guards the fixtures: the synthetic data has the documented layout."""
    ep = raw_episode(np.random.default_rng(0), 3)
    prev, action, reward, obs, done, info = ep[0]
    assert prev.dtype == np.uint8 and prev.shape == RES84 and action.dtype == np.float64 and action.shape == (3,)
    assert type(reward) is int and type(done) is float and type(info) is dict
    assert ep[-1][4] == 1.0 and ep[-1][5] == {"TimeLimit.truncated": False}
    assert np.array_equal(ep[1][0], ep[0][3]) and ep[1][0] is not ep[0][3]  # deepcopy: stored twice
    dream = dream_episode(np.random.default_rng(0), 3)
    assert [step[0].dtype for step in dream] == [np.float64, np.float32, np.float32]
    assert all(step[3].dtype == np.float32 and step[5] == {} and step[2] == 0 for step in dream)
    long = pickle.dumps(DATASETS["long_episode_over_1000"](), protocol=4)
    appends = sum(op.name == "APPENDS" for op, _, _ in pickletools.genops(long))
    assert appends >= 2 + 3  # the long episode needs two batches


# --------------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_iter_list_round_trip(pickled_datasets, dataset, protocol):
    data = pickled_datasets(dataset, protocol)
    want = pickle.loads(data)
    got = list(legacy_pickle.iter_list(io.BytesIO(data), f"{dataset}.pkl"))
    assert_same(got, want)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("dataset", ["realistic", "dream", "long_episode_over_1000", "with_empty_episode"])
def test_load_round_trip(pickled_datasets, dataset, protocol):
    data = pickled_datasets(dataset, protocol)
    assert_same(legacy_pickle.load(io.BytesIO(data), f"{dataset}.pkl"), pickle.loads(data))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_iter_list_reads_a_real_file_object(tmp_path, protocol):
    data = DATASETS["realistic"]()
    path = tmp_path / "raw.pkl"
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=protocol)
    with open(path, "rb") as f:
        got = list(legacy_pickle.iter_list(f, str(path)))
    with open(path, "rb") as f:
        assert_same(got, pickle.load(f))


_responses = legacy_factory.responses


def _defaultdict_of_floats():
    d = collections.defaultdict(list)
    d["reward_loss"].extend([0.5, 0.25, float("inf")])
    d["acc"].append(1.0)
    d["empty"]  # noqa: B018 - creates an empty list entry
    return d


LOAD_OBJECTS: dict[str, Callable[[], Any]] = {
    "bare_ndarray_f64_544": lambda: np.random.default_rng(0).standard_normal(544),
    "bare_ndarray_u8_frame": lambda: np.random.default_rng(0).integers(0, 256, RES84, dtype=np.uint8),
    "ndarray_fortran_order": lambda: np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    "ndarray_0d": lambda: np.array(5.0),
    "ndarray_big_endian": lambda: np.arange(4, dtype=">f4"),
    "ndarray_bool": lambda: np.array([True, False]),
    "ndarray_zero_size": lambda: np.zeros((0, 3)),
    "list_of_ndarrays": lambda: [np.random.default_rng(i).standard_normal(544) for i in range(15)],
    "list_of_dicts_responses": _responses,
    "defaultdict_list_of_floats": _defaultdict_of_floats,
    "numpy_float64_scalar": lambda: np.float64(1.0),
    "numpy_scalars_in_list": lambda: [np.float64(1.0), np.float32(2.5), np.int64(-3), np.bool_(True), np.uint8(7)],
    "bytes_and_str": lambda: {"short": b"ab", "long": bytes(range(256)) * 3, "empty": b"", "text": "é" * 70},
    "scalars": lambda: [None, True, False, 0, -1, 2 ** 70, 1.5, float("nan"), "", (), (1,), (1, 2), (1, 2, 3)],
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("kind", sorted(LOAD_OBJECTS))
def test_load_matches_pickle(kind, protocol):
    data = pickle.dumps(LOAD_OBJECTS[kind](), protocol=protocol)
    assert_same(legacy_pickle.load(io.BytesIO(data), f"{kind}.pkl"), pickle.loads(data))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_loads_and_pickle_protocol(protocol):
    value = _responses()
    data = pickle.dumps(value, protocol=protocol)
    assert_same(legacy_pickle.loads(data, "r.pkl"), value)
    assert legacy_pickle.pickle_protocol(data[:2]) == protocol


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_iter_list_streams_responses(protocol):
    data = pickle.dumps(_responses() + _responses() + _responses(), protocol=protocol)  # distinct dicts
    assert_same(list(legacy_pickle.iter_list(io.BytesIO(data), "responses.pkl")), pickle.loads(data))


# `iter_list` has to guess where a top-level item ends (rule (b) in `_iter_list`). The DROPJ
# episode files (lists of lists of 6-tuples) and responses files (lists of 4-key dicts) split
# correctly (tests above). A generic list must either come out exactly as `pickle.load` gives
# it, or fail loudly with a DataError ("cannot be streamed"); never silently wrong. The real
# `default_init_obses_ep600enc_15.pkl` is a list of ndarrays.
ITER_LIST_BOUNDARY_CASES = {
    "tuples": lambda: [(1, 2), (3, 4)],
    "tuples_of_lists": lambda: [([1], [2]), ([3], [4])],
    "single_key_dict_of_dict": lambda: [{"a": {"b": 1}}, {"a": {"b": 2}}],
    "mixed_list_tuple_list": lambda: [[1], (2, 3), [4]],
    "list_of_ndarrays": lambda: [np.arange(3.0) + i for i in range(3)],
    "numpy_scalars": lambda: [np.float64(1.0), np.float64(2.0)],
}


@pytest.mark.parametrize("protocol", [2, 5])
@pytest.mark.parametrize("kind", sorted(ITER_LIST_BOUNDARY_CASES))
def test_iter_list_generic_lists_never_silently_wrong(kind, protocol):
    data = pickle.dumps(ITER_LIST_BOUNDARY_CASES[kind](), protocol=protocol)
    try:
        got = list(legacy_pickle.iter_list(io.BytesIO(data), f"{kind}.pkl"))
    except DataError as exc:
        assert "cannot be streamed" in str(exc), f"{kind}: unexpected error {exc}"
    else:
        assert_same(got, pickle.loads(data))


def _random_structure(rng: random.Random, depth: int) -> Any:
    kind = rng.randrange(8 if depth < 3 else 4)
    if kind == 0:
        return rng.randrange(-5, 300)
    if kind == 1:
        return rng.choice(["a", "bb", "key0", "key1"])
    if kind == 2:
        return np.arange(rng.randrange(0, 4), dtype=rng.choice(["f8", "f4", "u1"]))
    if kind == 3:
        return rng.random()
    if kind == 4:
        return [_random_structure(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    if kind == 5:
        return tuple(_random_structure(rng, depth + 1) for _ in range(rng.randrange(0, 5)))
    if kind == 6:
        return {rng.choice(["a", "b", 1]): _random_structure(rng, depth + 1) for _ in range(rng.randrange(0, 3))}
    return [_random_structure(rng, depth + 1)]


def test_iter_list_random_structures_never_silently_wrong():
    """Property: for any list, iter_list gives exactly pickle.load's items or raises DataError."""
    wrong = []
    for seed in range(1500):
        rng = random.Random(seed)
        value = [_random_structure(rng, 1) for _ in range(rng.randrange(1, 5))]
        protocol = rng.choice(PROTOCOLS)
        data = pickle.dumps(value, protocol=protocol)
        try:
            got = list(legacy_pickle.iter_list(io.BytesIO(data), "random.pkl"))
        except DataError:
            continue  # refusing to stream is allowed
        try:
            assert_same(got, pickle.loads(data))
        except AssertionError as exc:
            wrong.append(f"seed {seed}, protocol {protocol}: {value!r:.120} -> {exc}")
    assert not wrong, f"{len(wrong)} silently wrong streams, e.g.\n" + "\n".join(wrong[:5])


# --------------------------------------------------------------------------------------------------
# The real shipped files (DROPJ_REAL_DATA points at a folder holding carracing/...)
# --------------------------------------------------------------------------------------------------

def _real_data_dir() -> pathlib.Path:
    root = factory.real_data()
    if root is None:
        pytest.skip("DROPJ_REAL_DATA is not set (point it at a folder holding carracing/default_init_obs.pkl, "
                    "carracing/default_init_obses_ep600enc_15.pkl and carracing/responses_s20/*.pkl)")
    path = pathlib.Path(root)
    if not (path / "carracing").is_dir():
        pytest.fail(f"DROPJ_REAL_DATA={root} has no carracing/ folder")
    return path


REAL_FILES = {  # name -> expected protocol (DATA_FORMATS §0.4)
    "carracing/default_init_obs.pkl": 4,
    "carracing/default_init_obses_ep600enc_15.pkl": 5,
    "carracing/responses_s20/responses_user26_s20_q600_drop.pkl": 4,
    "carracing/responses_s20/responses_user27_s20_q600_drope.pkl": 4,
    "carracing/responses_s20/responses_user27_s20_q600_dropj.pkl": 4,
}


@pytest.mark.parametrize("relpath", sorted(REAL_FILES))
def test_real_file_load_matches_pickle(relpath):
    path = _real_data_dir() / relpath
    with open(path, "rb") as f:
        want = pickle.load(f)
    with open(path, "rb") as f:
        got = legacy_pickle.load(f, str(path))
    assert_same(got, want)
    with open(path, "rb") as f:
        assert legacy_pickle.pickle_protocol(f.read(2)) == REAL_FILES[relpath]
    if relpath.endswith("default_init_obs.pkl"):
        assert got.shape == (544,) and got.dtype == np.float64
    elif "default_init_obses" in relpath:
        assert len(got) == 15 and all(s.shape == (544,) and s.dtype == np.float64 for s in got)


def test_real_init_states_list_streamed():
    """The 15 initial states are a top-level list of ndarrays: iter_list must give the same."""
    path = _real_data_dir() / "carracing" / "default_init_obses_ep600enc_15.pkl"
    with open(path, "rb") as f:
        want = pickle.load(f)
    with open(path, "rb") as f:
        got = list(legacy_pickle.iter_list(f, str(path)))
    assert_same(got, want)


def test_real_responses_streamed():
    files = sorted(glob.glob(str(_real_data_dir() / "carracing" / "responses_s20" / "*.pkl")))
    assert len(files) == 3, files
    for path in files:
        with open(path, "rb") as f:
            want = pickle.load(f)
        with open(path, "rb") as f:
            got = list(legacy_pickle.iter_list(f, path))
        assert len(got) == 600
        assert_same(got, want)
        assert all(set(item) == {"video", "responses", "repeat_count", "total_time"} for item in got)


# --------------------------------------------------------------------------------------------------
# Streaming memory bound
# --------------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("protocol,steps", [(2, 100), (4, 300), (5, 300)])
def test_iter_list_memory_is_bounded(tmp_path, protocol, steps):
    n_episodes = 12
    rng = np.random.default_rng(protocol)
    path = tmp_path / "big.pkl"
    with open(path, "wb") as f:
        pickle.dump([raw_episode(rng, steps) for _ in range(n_episodes)], f, protocol=protocol)
    gc.collect()
    episode_bytes = steps * 2 * int(np.prod(RES84))

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        count = 0
        with open(path, "rb") as f:
            for episode in legacy_pickle.iter_list(f, path.name):
                assert len(episode) == steps and episode[0][0].shape == RES84
                count += 1
                del episode
        streamed_peak = tracemalloc.get_traced_memory()[1]

        gc.collect()
        tracemalloc.reset_peak()
        with open(path, "rb") as f:
            whole = pickle.load(f)
        whole_peak = tracemalloc.get_traced_memory()[1]
        del whole
    finally:
        tracemalloc.stop()

    assert count == n_episodes
    assert whole_peak > 10 * episode_bytes, "measurement sanity: pickle.load holds every episode"
    assert streamed_peak < 3 * episode_bytes, (
        f"protocol {protocol}: streaming peaked at {streamed_peak / 1e6:.1f} MB, "
        f"{streamed_peak / episode_bytes:.1f} episodes' worth (one episode = {episode_bytes / 1e6:.1f} MB)")


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_iter_list_frees_consumed_episodes(protocol):
    rng = np.random.default_rng(10 + protocol)
    data = pickle.dumps([raw_episode(rng, 4) for _ in range(5)], protocol=protocol)
    refs: list[weakref.ref] = []
    seen = 0
    for episode in legacy_pickle.iter_list(io.BytesIO(data), "eps.pkl"):
        gc.collect()
        alive = sum(ref() is not None for ref in refs)
        assert alive == 0, f"episode {seen}: {alive} arrays of earlier episodes are still alive"
        refs.extend(weakref.ref(step[k]) for step in episode for k in (0, 1, 3))
        seen += 1
        del episode
    assert seen == 5 and len(refs) == 5 * 4 * 3
    gc.collect()
    assert all(ref() is None for ref in refs)


# --------------------------------------------------------------------------------------------------
# Hostile pickles: refused, never executed
# --------------------------------------------------------------------------------------------------

class _Reduce:
    """Pickles as `func(*args)`, the classic pickle code-execution payload."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _sh_touch(marker: pathlib.Path) -> str:
    return f"touch {shlex.quote(str(marker))}"


def _py_touch(marker: pathlib.Path) -> str:
    return f"open({str(marker)!r}, 'w').close()"


def _binunicode(text: str) -> bytes:
    raw = text.encode("utf-8")
    return pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw


# Each payload: marker -> an object (pickled with the protocol under test) or raw opcodes pushing one
# value; the fragment its refusal message must contain; whether running it would create the marker.
REDUCE_PAYLOADS: dict[str, tuple[Callable[[pathlib.Path], Any], str]] = {
    "os.system": (lambda m: _Reduce(os.system, (_sh_touch(m),)), "system"),
    "builtins.eval": (lambda m: _Reduce(eval, (_py_touch(m),)), "eval"),
    "builtins.exec": (lambda m: _Reduce(exec, (_py_touch(m),)), "exec"),
    "subprocess.Popen": (lambda m: _Reduce(subprocess.Popen, (["touch", str(m)],)), "Popen"),
    # A bound method pickles as builtins.getattr(obj, name): getattr(Path(m), 'touch')().
    "builtins.getattr": (lambda m: _Reduce(pathlib.Path(m).touch, ()), "getattr"),
}

OPCODE_PAYLOADS: dict[str, tuple[Callable[[pathlib.Path], bytes], str, bool]] = {
    "GLOBAL_posix_system": (
        lambda m: pickle.GLOBAL + b"posix\nsystem\n" + _binunicode(_sh_touch(m)) + pickle.TUPLE1 + pickle.REDUCE,
        "posix.system", True),
    "getattr_import_chain": (  # getattr(__import__('os'), 'system')('touch m')
        lambda m: (pickle.GLOBAL + b"builtins\ngetattr\n" + pickle.MARK + pickle.GLOBAL + b"builtins\n__import__\n"
                   + _binunicode("os") + pickle.TUPLE1 + pickle.REDUCE + _binunicode("system") + pickle.TUPLE
                   + pickle.REDUCE + _binunicode(_sh_touch(m)) + pickle.TUPLE1 + pickle.REDUCE),
        "getattr", True),
    "INST_posix_system": (
        lambda m: pickle.MARK + _binunicode(_sh_touch(m)) + pickle.INST + b"posix\nsystem\n", "INST", True),
    "INST_allowed_class": (
        lambda m: pickle.MARK + pickle.INST + b"collections\nOrderedDict\n", "INST", False),
    "OBJ_posix_system": (
        lambda m: pickle.MARK + pickle.GLOBAL + b"posix\nsystem\n" + _binunicode(_sh_touch(m)) + pickle.OBJ,
        "posix.system", True),
    "OBJ_allowed_class": (
        lambda m: pickle.MARK + pickle.GLOBAL + b"collections\ndefaultdict\n" + pickle.OBJ, "OBJ", False),
    "BUILD_on_non_array": (
        lambda m: (pickle.GLOBAL + b"collections\ndefaultdict\n" + pickle.GLOBAL + b"builtins\nlist\n"
                   + pickle.TUPLE1 + pickle.REDUCE + pickle.EMPTY_DICT + _binunicode("x") + _binunicode("y")
                   + pickle.SETITEM + pickle.BUILD),
        "BUILD", False),
    "OrderedDict": (  # harmless, but no release file holds one: refused like any other global
        lambda m: pickle.GLOBAL + b"collections\nOrderedDict\n" + pickle.EMPTY_TUPLE + pickle.REDUCE,
        "collections.OrderedDict", False),
    "NEWOBJ_list": (
        lambda m: pickle.GLOBAL + b"builtins\nlist\n" + pickle.EMPTY_TUPLE + pickle.NEWOBJ, "NEWOBJ", False),
    "NEWOBJ_ndarray": (
        lambda m: (pickle.GLOBAL + b"numpy\nndarray\n" + pickle.BININT1 + b"\x02" + pickle.TUPLE1 + pickle.TUPLE1
                   + pickle.NEWOBJ), "NEWOBJ", False),
    "NEWOBJ_EX_list": (
        lambda m: (pickle.GLOBAL + b"builtins\nlist\n" + pickle.EMPTY_TUPLE + pickle.EMPTY_DICT + pickle.NEWOBJ_EX),
        "NEWOBJ_EX", False),
    "codecs_encode_rot13": (
        lambda m: (pickle.GLOBAL + b"_codecs\nencode\n" + _binunicode("abc") + _binunicode("rot13") + pickle.TUPLE2
                   + pickle.REDUCE), "codec", False),
    "codecs_encode_utf16": (
        lambda m: (pickle.GLOBAL + b"_codecs\nencode\n" + _binunicode("abc") + _binunicode("utf-16")
                   + pickle.TUPLE2 + pickle.REDUCE), "codec", False),
    "PERSID": (lambda m: pickle.PERSID + b"0\n", "PERSID", False),
    "BINPERSID": (lambda m: _binunicode("0") + pickle.BINPERSID, "BINPERSID", False),
    "EXT1": (lambda m: pickle.EXT1 + b"\x01", "EXT1", False),
    "EXT2": (lambda m: pickle.EXT2 + b"\x01\x00", "EXT2", False),
    "EXT4": (lambda m: pickle.EXT4 + b"\x01\x00\x00\x00", "EXT4", False),
}

PLACEHOLDER = "HOSTILE-PLACEHOLDER-7f3a"


def _unframed(data: bytes) -> bytes:
    """The same pickle without FRAME opcodes (frames are optional), so opcodes can be spliced in."""
    cuts = [pos for op, _, pos in pickletools.genops(data) if op.name == "FRAME"]
    out, last = [], 0
    for pos in cuts:
        out.append(data[last:pos])
        last = pos + 9
    out.append(data[last:])
    return b"".join(out)


def _splice(data: bytes, snippet: bytes) -> bytes:
    """Replaces the opcode pushing PLACEHOLDER by `snippet` (which pushes one value)."""
    data = _unframed(data)
    ops = list(pickletools.genops(data))
    hits = [i for i, (op, arg, _) in enumerate(ops) if arg == PLACEHOLDER]
    assert len(hits) == 1, "the placeholder string must be pickled exactly once"
    start, end = ops[hits[0]][2], ops[hits[0] + 1][2]
    return data[:start] + snippet + data[end:]


def _top_level(snippet: bytes, protocol: int = 2) -> bytes:
    return pickle.PROTO + bytes([protocol]) + snippet + pickle.STOP


def _episodes_with(hostile: Any) -> list:
    """Five raw episodes; episode 3, step 2 carries `hostile` as an info value."""
    rng = np.random.default_rng(99)
    episodes = [raw_episode(rng, 4, shape=(8, 8, 3)) for _ in range(5)]
    episodes[3][2] = episodes[3][2][:5] + ({"crash": True, "payload": hostile},)
    return episodes


def _hostile_pickles(marker: pathlib.Path, kind: str, protocol: int) -> dict[str, bytes]:
    """The payload as a top-level value, and nested deep inside episode 3 of a list."""
    if kind in REDUCE_PAYLOADS:
        obj = REDUCE_PAYLOADS[kind][0](marker)
        return {"top": pickle.dumps([obj], protocol=protocol),
                "nested": pickle.dumps(_episodes_with(obj), protocol=protocol)}
    snippet = OPCODE_PAYLOADS[kind][0](marker)
    top = _top_level(pickle.EMPTY_LIST + snippet + pickle.APPEND, protocol)
    nested = _splice(pickle.dumps(_episodes_with(PLACEHOLDER), protocol=protocol), snippet)
    return {"top": top, "nested": nested}


def _expected(kind: str) -> tuple[str, bool]:
    if kind in REDUCE_PAYLOADS:
        return REDUCE_PAYLOADS[kind][1], True
    return OPCODE_PAYLOADS[kind][1], OPCODE_PAYLOADS[kind][2]


ALL_HOSTILE = sorted(REDUCE_PAYLOADS) + sorted(OPCODE_PAYLOADS)
LIVE_HOSTILE = sorted(REDUCE_PAYLOADS) + sorted(k for k, v in OPCODE_PAYLOADS.items() if v[2])


@pytest.mark.parametrize("kind", LIVE_HOSTILE)
def test_hostile_payloads_are_live(tmp_path, kind):
    """Sanity: plain pickle.loads really runs each payload (so the refusal tests mean something)."""
    marker = tmp_path / "MARKER"
    value = pickle.loads(_hostile_pickles(marker, kind, 4)["top"])
    if isinstance(value, list) and value and isinstance(value[0], subprocess.Popen):
        value[0].wait()
    assert marker.exists(), f"{kind}: the payload did not run under pickle.loads"


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("where", ["top", "nested"])
@pytest.mark.parametrize("kind", ALL_HOSTILE)
def test_hostile_pickle_refused_by_load(tmp_path, kind, where, protocol):
    marker = tmp_path / "MARKER"
    data = _hostile_pickles(marker, kind, protocol)[where]
    fragment, _ = _expected(kind)
    with pytest.raises(UnsafePickleError) as info:
        legacy_pickle.load(io.BytesIO(data), "evil.pkl")
    if kind == "subprocess.Popen":
        time.sleep(0.1)  # a spawned process would need a moment to create the marker
    assert not marker.exists(), f"{kind}: the payload ran"
    assert fragment in str(info.value)
    assert isinstance(info.value, DataError)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("kind", ALL_HOSTILE)
def test_hostile_pickle_refused_by_iter_list(tmp_path, kind, protocol):
    marker = tmp_path / "MARKER"
    pickles = _hostile_pickles(marker, kind, protocol)
    fragment, _ = _expected(kind)

    with pytest.raises(UnsafePickleError) as info:
        list(legacy_pickle.iter_list(io.BytesIO(pickles["top"]), "evil.pkl"))
    assert fragment in str(info.value)

    # Nested in episode 3: episodes 0-2 stream normally, then the stream stops before running it.
    yielded = []
    with pytest.raises(UnsafePickleError) as info:
        for episode in legacy_pickle.iter_list(io.BytesIO(pickles["nested"]), "evil.pkl"):
            yielded.append(len(episode))
    assert yielded == [4, 4, 4]
    assert fragment in str(info.value)
    if kind == "subprocess.Popen":
        time.sleep(0.1)
    assert not marker.exists(), f"{kind}: the payload ran"


@pytest.mark.parametrize("how", ["load", "iter_list"])
@pytest.mark.parametrize("kind", ALL_HOSTILE)
def test_hostile_refusal_names_the_file(tmp_path, kind, how):
    """Like every DataError of the module, a refusal says which file it is about."""
    data = _hostile_pickles(tmp_path / "MARKER", kind, 4)["top"]
    with pytest.raises(UnsafePickleError) as info:
        _consume(data, "evil-file.pkl", how)
    assert "evil-file.pkl" in str(info.value), str(info.value)


def test_hand_written_payload_is_well_formed(tmp_path):
    """The hand-written GLOBAL posix.system pickle disassembles cleanly (valid opcodes)."""
    data = _top_level(OPCODE_PAYLOADS["GLOBAL_posix_system"][0](tmp_path / "M"))
    out = io.StringIO()
    pickletools.dis(data, out=out)
    assert "GLOBAL     'posix system'" in out.getvalue()
    assert not (tmp_path / "M").exists()


# --------------------------------------------------------------------------------------------------
# Bad input: truncated, corrupt, wrong shape
# --------------------------------------------------------------------------------------------------

def _consume(data: bytes, name: str, how: str) -> Any:
    if how == "load":
        return legacy_pickle.load(io.BytesIO(data), name)
    return list(legacy_pickle.iter_list(io.BytesIO(data), name))


@pytest.mark.parametrize("how", ["load", "iter_list"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_truncated_pickle_is_data_error(protocol, how):
    data = pickle.dumps(DATASETS["realistic"](), protocol=protocol)
    n = len(data)
    # 5 cuts inside the FRAME header of protocols 4-5; the others cut opcodes, arguments and array bytes.
    for cut in sorted({0, 1, 2, 3, 5, 7, 11, 20, 64, n // 3, n // 2, n - 100, n - 2, n - 1}):
        with pytest.raises(DataError) as info:
            _consume(data[:cut], "cut.pkl", how)
        assert "cut.pkl" in str(info.value), f"cut at {cut}: {info.value}"


@pytest.mark.parametrize("how", ["load", "iter_list"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_truncation_of_a_small_pickle_is_data_error(protocol, how):
    value = [[(np.zeros((2, 2, 3), np.uint8), np.array([0.0, 1.0, 0.0]), 0, np.ones((2, 2, 3), np.uint8), 0.0,
               {"crash": True})], _responses()[:2]]
    data = pickle.dumps(value, protocol=protocol)
    for cut in range(len(data)):
        try:
            _consume(data[:cut], "small.pkl", how)
        except DataError as exc:
            assert "small.pkl" in str(exc)
        except Exception as exc:  # noqa: BLE001 - the point is to report the wrong type
            pytest.fail(f"cut at {cut}/{len(data)}: {type(exc).__module__}.{type(exc).__name__}: {exc}")
        else:
            pytest.fail(f"cut at {cut}/{len(data)} was accepted")


@pytest.mark.parametrize("value", [{"a": 1}, np.zeros(3), 5, "text", (1, 2), None],
                         ids=["dict", "ndarray", "int", "str", "tuple", "None"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_iter_list_refuses_non_list_top_level(value, protocol):
    with pytest.raises(DataError) as info:
        list(legacy_pickle.iter_list(io.BytesIO(pickle.dumps(value, protocol=protocol)), "top.pkl"))
    assert "list" in str(info.value) and "top.pkl" in str(info.value)


@pytest.mark.parametrize("how", ["load", "iter_list"])
def test_random_garbage_is_data_error(how):
    failures = []
    for seed in range(300):
        rng = random.Random(seed)
        garbage = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
        if seed % 2:  # a valid header makes the VM go further into the garbage
            garbage = pickle.PROTO + bytes([2 + seed % 4]) + garbage
        try:
            _consume(garbage, "garbage.pkl", how)
        except DataError as exc:
            if "garbage.pkl" not in str(exc):
                failures.append((seed, "message lacks the file name", str(exc)))
        except Exception as exc:  # noqa: BLE001
            failures.append((seed, type(exc).__name__, str(exc)))
    assert not failures, failures[:5]


@pytest.mark.parametrize("how", ["load", "iter_list"])
def test_corrupt_huge_length_is_data_error(how):
    data = pickle.PROTO + b"\x05" + pickle.BYTEARRAY8 + struct.pack("<Q", 2 ** 62) + b"\x00" * 8
    with pytest.raises(DataError):
        _consume(data, "huge.pkl", how)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_objects_shared_across_items_cannot_be_streamed(protocol):
    rng = np.random.default_rng(20)
    episodes = [raw_episode(rng, 3, shape=(8, 8, 3)) for _ in range(4)]
    shared = episodes[0][1][0]
    episodes[2][0] = (shared,) + episodes[2][0][1:]
    data = pickle.dumps(episodes, protocol=protocol)

    # A whole load keeps the sharing ...
    loaded = legacy_pickle.load(io.BytesIO(data), "shared.pkl")
    assert loaded[2][0][0] is loaded[0][1][0]
    assert_same(loaded, pickle.loads(data))

    # ... but streaming cannot: episode 0 is gone when episode 2 refers to it.
    yielded = 0
    with pytest.raises(DataError) as info:
        for _ in legacy_pickle.iter_list(io.BytesIO(data), "shared.pkl"):
            yielded += 1
    assert yielded == 2
    assert "cannot be streamed" in str(info.value) and "shared.pkl" in str(info.value)


@pytest.mark.parametrize("protocol", [0, 1])
def test_protocols_before_2_are_refused_with_a_clear_error(protocol):
    data = pickle.dumps([[1, 2]], protocol=protocol)
    with pytest.raises(DataError, match=r"old.pkl: not a pickle of protocol 2 to 5"):
        legacy_pickle.load(io.BytesIO(data), "old.pkl")
    with pytest.raises(DataError, match=r"old.pkl: not a pickle of protocol 2 to 5"):
        list(legacy_pickle.iter_list(io.BytesIO(data), "old.pkl"))
