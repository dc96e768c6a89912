"""A differential fuzzer of `dropj.converters.store.legacy_pickle`, the safe reader.

Inputs are release-format pickles (episodes, dream episodes, responses,
initial states, data.pkl, time files, sketches; protocols 2 to 5) mutated by
byte flips, truncations, insertions of dangerous opcodes, globals and numpy
states from a dictionary, splices of opcode runs from other seeds, and
boundary values in integer arguments.

Each input runs twice, each time in a forked child with a memory and a time
limit, so that a crash or a hang is seen and attributed:

* the reader (`load` and `iter_list`): it must exit normally, and each mode
  must either refuse with a `DataError` whose message is bounded and names
  the file, or return a value;
* the oracle, `pickle.load` with a `find_class` restricted to the same
  globals: where the reader returned a value, the oracle must return the
  very same value (types, dtypes, bytes, object sharing). Where the oracle
  crashes, hangs or runs out of memory, the reader must have refused.

    (cd tests && python -m factory.fuzzing --inputs 2000 --seed 1)     # prints a JSON summary; exit 1 on any finding

The fast subset runs in `make test` (tests/loaders/test_fuzz_reader.py); the long run
is tests/benchmarks/fuzz_reader.py.
"""

from __future__ import annotations

import argparse
import base64
import collections
import copy
import dataclasses
import hashlib
import json
import os
import pickle
import pickletools
import random
import resource
import select
import signal
import struct
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # keeps the children's address space small
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from factory import legacy as legacy_factory  # noqa: E402
from dropj.converters.store import legacy_pickle  # noqa: E402
from dropj_datasets.schema import DataError, MAX_MESSAGE  # noqa: E402

NAME = "fuzz-input.pkl"
READER_SECONDS = 10.0
ORACLE_SECONDS = 3.0
READER_MEMORY = 768 << 20  # above the harness's own address space
ORACLE_MEMORY = 1 << 30


# --- seeds: release-format pickles (DATA_FORMATS.md 0.4, 1-6) ----------------------------------------------

def _real_episode(rng: np.random.Generator, steps: int, shape=(4, 4, 3)) -> list:
    frames = rng.integers(0, 256, (steps + 1, *shape), dtype=np.uint8)
    out = []
    for t in range(steps):
        last = t == steps - 1
        info = {"TimeLimit.truncated": True} if last else [{}, {"crash": True}, {"succ": True}][t % 3]
        reward = {"crash": -1, "succ": 10}.get(next(iter(info), ""), 0)
        action = np.array([[-1.0, 0.0, 1.0][t % 3], float(t % 2), [0.0, 0.8][t % 2]])
        out.append(copy.deepcopy((frames[t], action, reward, frames[t + 1], float(last), info)))
    return out


def _dream_episode(rng: np.random.Generator, steps: int, dim: int = 8) -> list:
    state = rng.standard_normal(dim).astype(np.float32).astype(np.float64)
    out = []
    for _ in range(steps):
        nxt = rng.standard_normal(dim).astype(np.float32)
        out.append(copy.deepcopy((state, np.array([0.0, 1.0, 0.0]), 0, nxt, 0.0, {})))
        state = nxt
    return out


def _times() -> collections.defaultdict:
    times: collections.defaultdict = collections.defaultdict(list)
    times["max_rew"].extend([193.5, 190.25])
    times["rew_uncertainty"].append(201.0)
    return times


def _sketch(rng: np.random.Generator, steps: int, dtype: str) -> list:
    states = rng.standard_normal((steps + 1, 8)).astype(dtype)
    return [(states[t].copy(), np.array([0.0, 1.0, 0.0], dtype), np.float64([-1.0, 0.0, 10.0][t % 3]),
             states[t + 1].copy(), None, None) for t in range(steps)]


def seed_values() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {
        "real": [_real_episode(rng, 3), _real_episode(rng, 1), _real_episode(rng, 2)],
        "dream": [_dream_episode(rng, 3), _dream_episode(rng, 2)],
        "responses": legacy_factory.responses(),
        "init_state": rng.standard_normal(8),
        "init_states": [rng.standard_normal(8) for _ in range(3)],
        "queries": {f"{i}.mp4": {"segment1": rng.standard_normal((2, 11)), "segment2": rng.standard_normal((2, 11))}
                    for i in range(2)},
        "times": _times(),
        "times_lists": [[1.5, 2.5], [], [0.25]],
        "request": [_sketch(rng, 2, "float32"), _sketch(rng, 1, "float32")],
        "dros": [_sketch(rng, 2, "float64")],
        "misc": [np.float64(2.5), np.bool_(True), np.int64(-3), b"", b"\x00\xff" * 9, np.asfortranarray(
            np.arange(6.0).reshape(2, 3)), np.array(5.0), np.arange(3, dtype=">f4"), np.zeros((0, 3), np.uint8),
                 np.array([True, False]), 2**70, -1.5, "é", None, (1, "a")],
    }


def seeds() -> list[tuple[str, bytes]]:
    out = []
    for name, value in seed_values().items():
        for protocol in (2, 3, 4, 5):
            out.append((f"{name}-p{protocol}", pickle.dumps(value, protocol=protocol)))
    return out


# --- the dictionary: dangerous opcodes, globals, numpy states, lengths -------------------------------------

def _unicode(text: str) -> bytes:
    raw = text.encode("utf-8")
    return pickle.SHORT_BINUNICODE + bytes([len(raw)]) + raw


def _global(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


_DTYPE = _global("numpy", "dtype")


def _dtype(code: str, state: bytes) -> bytes:
    return (_DTYPE + _unicode(code) + pickle.NEWFALSE + pickle.NEWTRUE + pickle.TUPLE3 + pickle.REDUCE + state
            + pickle.BUILD)


def _tuple_bomb(depth: int, first_key: int = 0) -> bytes:
    """A tuple of two references to the same tuple, `depth` levels deep (hashing it costs 2**depth)."""
    out = pickle.NONE
    for level in range(depth):
        key = struct.pack("<I", first_key + level)
        out += pickle.LONG_BINPUT + key + pickle.LONG_BINGET + key + pickle.TUPLE2
    return out


def _forged_state(fields: bytes, flags: int, elsize: int = 8) -> bytes:
    return (pickle.MARK + pickle.BININT1 + b"\x03" + _unicode("|") + pickle.NONE + fields + pickle.BININT1
            + bytes([elsize]) + pickle.BININT1 + b"\x01" + pickle.BININT1 + bytes([flags]) + pickle.TUPLE)


def dictionary() -> list[bytes]:
    ops = [bytes([ord(op.code)]) for op in pickletools.opcodes]
    lengths = [struct.pack("<I", n) for n in (0, 1, 255, 2**31 - 1, 2**32 - 1)] + \
        [struct.pack("<Q", n) for n in (2**40, 2**63 - 1)]
    normal_state = (pickle.MARK + pickle.BININT1 + b"\x03" + _unicode("<") + pickle.NONE * 3
                    + (pickle.BININT + struct.pack("<i", -1)) * 2 + pickle.BININT1 + b"\x00" + pickle.TUPLE)
    object_field = _unicode("f0") + pickle.TUPLE1 + pickle.EMPTY_DICT + _unicode("f0") + _dtype("O8", normal_state) \
        + pickle.BININT1 + b"\x00" + pickle.TUPLE2 + pickle.SETITEM
    snippets = [
        pickle.POP, pickle.DUP, pickle.POP_MARK, pickle.MARK, pickle.STOP, pickle.APPENDS, pickle.APPEND,
        pickle.SETITEM, pickle.SETITEMS, pickle.BUILD, pickle.REDUCE, pickle.NEWOBJ, pickle.MEMOIZE,
        pickle.EMPTY_LIST + pickle.POP, pickle.EMPTY_LIST + pickle.POP + pickle.LONG_BINPUT + b"\x00\x00\x00\x00"
        + pickle.LONG_BINGET + b"\x00\x00\x00\x00",
        pickle.BINGET + b"\x00", pickle.BINGET + b"\x01", pickle.BINPUT + b"\x00",
        pickle.LONG_BINGET + b"\x02\x00\x00\x00",
        pickle.EMPTY_DICT + _unicode("k") + pickle.NONE + pickle.SETITEM,
        pickle.INST + b"os\nsystem\n", pickle.OBJ, pickle.PERSID + b"0\n", pickle.BINPERSID, pickle.EXT1 + b"\x01",
        _global("os", "system"), _global("builtins", "eval"), _global("builtins", "list"),
        _global("builtins", "bytearray"), _global("builtins", "getattr"), _global("__builtin__", "bytes"),
        _global("numpy", "ndarray"), _global("numpy.core.multiarray", "_reconstruct"),
        _global("numpy.core.multiarray", "scalar"), _global("numpy.core.numeric", "_frombuffer"),
        _global("_codecs", "encode"), _global("collections", "defaultdict"), _global("collections", "OrderedDict"),
        _global("copyreg", "_reconstructor"), _global("numpy", "frombuffer"),
        # list(ndarray((2**27,), 'u1')) and bytearray(2**40)
        _global("builtins", "list") + _global("numpy", "ndarray") + pickle.BININT + struct.pack("<i", 2**27)
        + pickle.TUPLE1 + _unicode("u1") + pickle.TUPLE2 + pickle.REDUCE + pickle.TUPLE1 + pickle.REDUCE,
        _global("builtins", "bytearray") + pickle.LONG1 + b"\x06" + (2**40).to_bytes(6, "little") + pickle.TUPLE1
        + pickle.REDUCE,
        # numpy dtypes: the forged V8 with an object field and flags 1, object and void dtypes
        _dtype("V8", _forged_state(_unicode("f0") + pickle.TUPLE1 + pickle.EMPTY_DICT + _unicode("f0")
                                   + _dtype("O8", normal_state) + pickle.BININT1 + b"\x00" + pickle.TUPLE2
                                   + pickle.SETITEM, 1)),
        _dtype("V8", _forged_state(pickle.NONE + pickle.NONE, 63)),
        _dtype("O8", normal_state), _dtype("f8", normal_state), _dtype("u1", normal_state), object_field,
        _dtype("f8", _forged_state(pickle.NONE + pickle.NONE, 1)),
        _dtype("M8", normal_state), _dtype("U4", normal_state),
        # arrays and scalars with odd states and shapes
        pickle.MARK + pickle.BININT1 + b"\x01" + pickle.BININT + struct.pack("<i", 2**30) + pickle.TUPLE1
        + _dtype("u1", normal_state) + pickle.NEWFALSE + pickle.SHORT_BINBYTES + b"\x04abcd" + pickle.TUPLE,
        _global("numpy.core.multiarray", "scalar") + _dtype("f8", normal_state) + pickle.SHORT_BINBYTES + b"\x03abc"
        + pickle.TUPLE2 + pickle.REDUCE,
        # claimed lengths, frames and long ints
        pickle.BINBYTES8 + struct.pack("<Q", 2**40), pickle.BINUNICODE + struct.pack("<I", 2**31),
        pickle.FRAME + struct.pack("<Q", 2**60), pickle.LONG4 + struct.pack("<i", 2**31 - 1),
        pickle.LONG4 + struct.pack("<i", 100) + b"\x01" * 100, pickle.BYTEARRAY8 + struct.pack("<Q", 3) + b"abc",
        # shared and deep structures
        _tuple_bomb(18), pickle.EMPTY_DICT + _tuple_bomb(18) + pickle.NONE + pickle.SETITEM,
        pickle.MARK * 40, pickle.EMPTY_LIST + (pickle.EMPTY_LIST + pickle.APPEND) * 3,
        pickle.NONE + pickle.TUPLE1 * 40,
    ]
    return ops + lengths + snippets


# --- known attacks (docs/security.md): each crashes, hangs or exhausts plain pickle.load -----------------------

def _array(dtype: bytes, shape: tuple[int, ...], data: bytes) -> bytes:
    """`_reconstruct(ndarray, (0,), b'b')` then BUILD (1, shape, dtype, False, data): numpy's protocol 2-4 form."""
    dims = b"".join(pickle.BININT + struct.pack("<i", n) for n in shape)
    return (_global("numpy.core.multiarray", "_reconstruct") + _global("numpy", "ndarray") + pickle.BININT1 + b"\x00"
            + pickle.TUPLE1 + pickle.SHORT_BINBYTES + b"\x01b" + pickle.TUPLE3 + pickle.REDUCE
            + pickle.MARK + pickle.BININT1 + b"\x01" + pickle.MARK + dims + pickle.TUPLE + dtype + pickle.NEWFALSE
            + pickle.BINBYTES + struct.pack("<I", len(data)) + data + pickle.TUPLE + pickle.BUILD)


def _normal_state(order: str = "|") -> bytes:
    return (pickle.MARK + pickle.BININT1 + b"\x03" + _unicode(order) + pickle.NONE * 3
            + (pickle.BININT + struct.pack("<i", -1)) * 2 + pickle.BININT1 + b"\x00" + pickle.TUPLE)


def attacks() -> list[tuple[str, bytes]]:
    """The attacks of issue 9 on the old reader, as small pickles."""
    head, stop = pickle.PROTO + b"\x02", pickle.STOP
    object_dtype = _dtype("O8", _normal_state())
    fields = (_unicode("f0") + pickle.TUPLE1 + pickle.EMPTY_DICT + _unicode("f0") + object_dtype + pickle.BININT1
              + b"\x00" + pickle.TUPLE2 + pickle.SETITEM)
    forged = _dtype("V8", _forged_state(fields, 1))
    episode = pickle.EMPTY_LIST + _array(forged, (1,), b"\x41" * 8) + pickle.APPEND
    memo = pickle.dumps([[1], [2]], protocol=4)
    trick = (pickle.EMPTY_LIST + pickle.POP + pickle.LONG_BINPUT + struct.pack("<I", 1000)
             + pickle.LONG_BINGET + struct.pack("<I", 1000))
    at = memo.rindex(pickle.APPENDS)
    return [
        ("forged-object-dtype", head + pickle.EMPTY_LIST + episode + pickle.APPEND + stop),
        ("tuple-key-hash-bomb", head + pickle.EMPTY_LIST + pickle.EMPTY_DICT + _tuple_bomb(100) + pickle.NONE
         + pickle.SETITEM + pickle.APPEND + stop),
        ("list-of-a-2**27-array", head + _global("builtins", "list") + _global("numpy", "ndarray")
         + pickle.BININT + struct.pack("<i", 2**27) + pickle.TUPLE1 + _unicode("u1") + pickle.TUPLE2 + pickle.REDUCE
         + pickle.TUPLE1 + pickle.REDUCE + stop),
        ("memo-trick-third-item", memo[:at] + trick + memo[at:]),
        ("claimed-2**40-bytes", head + pickle.EMPTY_LIST + pickle.BINBYTES8 + struct.pack("<Q", 2**40) + b"x" * 8
         + pickle.APPEND + stop),
        ("nested-100000-tuples", head + pickle.EMPTY_LIST + pickle.NONE + pickle.TUPLE1 * 100_000 + pickle.APPEND
         + stop),
        ("bytearray-2**40", head + _global("builtins", "bytearray") + pickle.LONG1 + b"\x06"
         + (2**40).to_bytes(6, "little") + pickle.TUPLE1 + pickle.REDUCE + stop),
    ]


# --- mutations --------------------------------------------------------------------------------------------

def _boundaries(data: bytes) -> list[int]:
    try:
        return [pos for _, _, pos in pickletools.genops(data)]
    except Exception:  # noqa: BLE001 - a mutated pickle need not parse
        return list(range(2, len(data)))


def _payload_spans(data: bytes) -> list[tuple[int, int]]:
    """Where the data bytes of string, bytes and float arguments lie (flips there keep the pickle valid)."""
    ops = list(pickletools.genops(data))
    spans = []
    for (op, arg, _pos), (_, _, next_pos) in zip(ops, ops[1:]):
        if op.name == "GLOBAL" or not isinstance(arg, (bytes, bytearray, str, float)):
            continue
        size = 8 if isinstance(arg, float) else len(arg.encode("utf-8", "surrogatepass") if isinstance(arg, str)
                                                    else arg)
        spans.append((next_pos - size, next_pos))
    return spans


@dataclasses.dataclass
class Mutator:
    seeds: list[tuple[str, bytes]]
    words: list[bytes]

    def __post_init__(self) -> None:
        self.marks = {name: _boundaries(data) for name, data in self.seeds}
        self.payloads = {name: _payload_spans(data) for name, data in self.seeds}

    def make(self, index: int, seed: int) -> tuple[str, bytes]:
        rng = random.Random(seed * 1_000_003 + index)
        name, data = self.seeds[rng.randrange(len(self.seeds))]
        marks = self.marks[name]
        done = []
        gentle = rng.random() < 0.3  # data-only flips: the pickle stays valid, so the values are compared
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
            how = 8 if gentle else rng.randrange(9)
            if how == 8 and self.payloads[name]:  # flip bits inside data (arrays, strings, floats)
                start, end = rng.choice(self.payloads[name])
                if end > start and end <= len(data):
                    out = bytearray(data)
                    out[rng.randrange(start, end)] ^= 1 << rng.randrange(8)
                    data = bytes(out)
                done.append("payload")
                continue
            cut = rng.choice(marks) if marks else 2
            if how == 0 and data:  # byte flips
                out = bytearray(data)
                for _ in range(rng.randrange(1, 4)):
                    out[rng.randrange(len(out))] = rng.randrange(256)
                data, what = bytes(out), "flip"
            elif how == 1:  # truncation
                data, what = data[:rng.randrange(len(data) + 1)], "truncate"
            elif how in (2, 3):  # a dictionary word at an opcode boundary
                data, what = data[:cut] + rng.choice(self.words) + data[cut:], "insert"
            elif how == 4:  # a word in place of an opcode
                later = [m for m in marks if m > cut]
                end = later[0] if later else len(data)
                data, what = data[:cut] + rng.choice(self.words) + data[end:], "replace"
            elif how == 5:  # splice a run of opcodes from another seed
                other_name, other = self.seeds[rng.randrange(len(self.seeds))]
                other_marks = self.marks[other_name]
                if len(other_marks) > 2:
                    a, b = sorted(rng.sample(other_marks, 2))
                    data = data[:cut] + other[a:b] + data[cut:]
                what = "splice"
            elif how == 6:  # duplicate or delete a run of this seed's opcodes
                if len(marks) > 2:
                    a, b = sorted(rng.sample(marks, 2))
                    data = data[:b] + data[a:b] + data[b:] if rng.random() < 0.5 else data[:a] + data[b:]
                what = "run"
            else:  # a boundary value in the argument of an integer opcode
                spots = [p for p in marks if p + 1 < len(data) and data[p] in (pickle.BININT1[0], pickle.BINPUT[0],
                                                                                pickle.BINGET[0])]
                if spots:
                    p = rng.choice(spots)
                    data = data[:p + 1] + bytes([rng.choice((0, 1, 2, 127, 128, 255))]) + data[p + 2:]
                what = "argument"
            done.append(what)
        return f"{name}:{'+'.join(done)}", data


# --- fingerprints: exact equality, sharing included, without recursion ----------------------------------------

def fingerprint(value: Any, budget: int = 2_000_000) -> str:
    """A digest of a value's exact form: types, dtypes, shapes, flags, bytes, float bits, key order, sharing."""
    digest = hashlib.sha256()
    seen: dict[int, int] = {}
    keep: list = []  # keeps visited objects alive, so ids stay unique
    stack = [value]
    while stack:
        budget -= 1
        if budget < 0:
            raise MemoryError("fingerprint budget exhausted")
        obj = stack.pop()
        kind = type(obj)
        shareable = kind in (list, dict, collections.defaultdict, np.ndarray, bytearray) or (kind is tuple and obj)
        if shareable:
            if id(obj) in seen:
                digest.update(f"<ref {seen[id(obj)]}>".encode())
                continue
            seen[id(obj)] = len(seen)
            keep.append(obj)
        name = f"{kind.__module__}.{kind.__qualname__}"
        if kind is np.ndarray:
            flags = obj.flags
            digest.update(f"{name}|{obj.dtype.str}|{obj.dtype.kind}|{obj.shape}|{flags.c_contiguous}|"
                          f"{flags.f_contiguous}|{flags.writeable}|".encode())
            digest.update(obj.tobytes(order="A"))
        elif isinstance(obj, np.generic):
            digest.update(f"{name}|{obj.dtype.str}|".encode() + obj.tobytes())
        elif kind is float:
            digest.update(f"{name}|".encode() + struct.pack("<d", obj))
        elif kind in (list, tuple):
            digest.update(f"{name}|{len(obj)}[".encode())
            stack.append(_CLOSE)
            stack.extend(reversed(obj))
        elif kind in (dict, collections.defaultdict):
            factory = getattr(obj, "default_factory", None)
            digest.update(f"{name}|{getattr(factory, '__qualname__', factory)}|{len(obj)}{{".encode())
            stack.append(_CLOSE)
            for key, item in reversed(list(obj.items())):
                stack.append(item)
                stack.append(_Key(key))
        elif kind is _Key:
            digest.update(b"key:" + repr(obj.key).encode("utf-8", "backslashreplace"))
        elif obj is _CLOSE:
            digest.update(b"]")
        elif kind in (str, bytes, bytearray, int, bool, type(None)):
            digest.update(f"{name}|".encode() + repr(obj).encode("utf-8", "backslashreplace"))
        else:
            digest.update(f"{name}|<opaque>".encode())
    return digest.hexdigest()


_CLOSE = object()


@dataclasses.dataclass
class _Key:
    key: Any


# --- the two sides ------------------------------------------------------------------------------------------

class _Oracle(pickle.Unpickler):
    """`pickle.load` restricted to the reader's globals: as exploitable as it is, which is the point."""

    def find_class(self, module: str, name: str) -> Any:
        import _codecs

        from numpy.core import multiarray, numeric

        if module == "__builtin__":
            module = "builtins"
        allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                   ("_codecs", "encode"): _codecs.encode,
                   ("builtins", "bytes"): bytes, ("builtins", "list"): list,
                   ("collections", "defaultdict"): collections.defaultdict}
        for core in ("numpy.core", "numpy._core"):
            allowed[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct
            allowed[(f"{core}.multiarray", "scalar")] = multiarray.scalar
            allowed[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"global {module}.{name} not allowed")
        return allowed[(module, name)]


def _run_reader(data: bytes) -> dict:
    import io

    out = {}
    for mode in ("load", "iter"):
        try:
            if mode == "load":
                value = legacy_pickle.load(io.BytesIO(data), NAME)
            else:
                value = list(legacy_pickle.iter_list(io.BytesIO(data), NAME))
        except DataError as exc:
            message = str(exc)
            ok = len(message) <= MAX_MESSAGE + 100 and NAME in message
            out[mode] = ["refused" if ok else "bad-message", message[:300]]
        except Exception as exc:  # noqa: BLE001 - anything else is a finding
            out[mode] = ["exception", f"{type(exc).__name__}: {str(exc)[:300]}"]
        else:
            out[mode] = ["ok", fingerprint(value)]
    return out


def _consume(value: Any) -> None:
    stack, budget = [value], 1_000_000
    while stack and budget:
        budget -= 1
        obj = stack.pop()
        if isinstance(obj, np.ndarray):
            obj.copy()
        elif type(obj) in (list, tuple):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())


def _run_oracle(data: bytes) -> dict:
    import io

    try:
        value = _Oracle(io.BytesIO(data)).load()
        _consume(value)  # what a converter does next: copy the arrays
    except RecursionError:
        return {"oracle": ["exhausted", "RecursionError"]}
    except MemoryError:
        return {"oracle": ["exhausted", "MemoryError"]}
    except Exception as exc:  # noqa: BLE001
        return {"oracle": ["error", type(exc).__name__]}
    try:
        return {"oracle": ["ok", fingerprint(value), type(value).__name__]}
    except (MemoryError, RecursionError):
        return {"oracle": ["exhausted", "fingerprint"]}


# --- isolation: one forked child per run -------------------------------------------------------------------

def _address_space() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


@dataclasses.dataclass
class _Job:
    index: int
    side: str  # 'reader' or 'oracle'
    pid: int
    fd: int
    deadline: float
    chunks: list = dataclasses.field(default_factory=list)


def _spawn(index: int, side: str, data: bytes, base_memory: int) -> _Job:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: limits, work, one JSON line, exit
        try:
            os.close(read_fd)
            seconds = READER_SECONDS if side == "reader" else ORACLE_SECONDS
            memory = base_memory + (READER_MEMORY if side == "reader" else ORACLE_MEMORY)
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
            resource.setrlimit(resource.RLIMIT_CPU, (int(seconds) + 1, int(seconds) + 2))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            if side == "oracle":  # numpy's own complaints about what the oracle built are not ours
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)
            result = _run_reader(data) if side == "reader" else _run_oracle(data)
            payload = json.dumps(result).encode()
            view = memoryview(payload)
            while view:
                view = view[os.write(write_fd, view):]
        finally:
            os._exit(0)
    os.close(write_fd)
    seconds = READER_SECONDS if side == "reader" else ORACLE_SECONDS
    return _Job(index, side, pid, read_fd, time.monotonic() + seconds + 1.0)


def _finish(job: _Job, timed_out: bool) -> dict:
    if timed_out:
        os.kill(job.pid, signal.SIGKILL)
    _, status = os.waitpid(job.pid, 0)
    os.close(job.fd)
    if timed_out:
        return {"died": "timeout"}
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return {"died": "timeout" if sig in (signal.SIGXCPU, signal.SIGKILL) else f"signal {signal.Signals(sig).name}"}
    raw = b"".join(job.chunks)
    try:
        return json.loads(raw)
    except ValueError:
        return {"died": "no result (out of memory?)"}


@dataclasses.dataclass
class Summary:
    inputs: int = 0
    seconds: float = 0.0
    reader_refused: int = 0
    reader_accepted: int = 0
    oracle_crashes: int = 0  # the oracle died of a signal (numpy memory corruption)
    oracle_hangs: int = 0
    oracle_exhausted: int = 0  # out of memory, recursion
    crashes: int = 0  # the reader died, or raised something other than DataError
    hangs: int = 0  # the reader ran past its time limit
    bad_messages: int = 0
    differentials: int = 0  # the reader returned a value the oracle does not return
    findings: list = dataclasses.field(default_factory=list)

    @property
    def inputs_per_second(self) -> float:
        return self.inputs / self.seconds if self.seconds else 0.0

    @property
    def clean(self) -> bool:
        return not (self.crashes or self.hangs or self.bad_messages or self.differentials)

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["inputs_per_second"] = round(self.inputs_per_second, 1)
        out["clean"] = self.clean
        return out


def _judge(summary: Summary, label: str, data: bytes, reader: dict, oracle: Optional[dict]) -> None:
    def finding(kind: str, detail: str) -> None:
        if len(summary.findings) < 50:
            summary.findings.append({"kind": kind, "input": label, "detail": detail[:400],
                                     "bytes": base64.b64encode(data).decode()})

    if "died" in reader:
        if reader["died"] == "timeout":
            summary.hangs += 1
        else:
            summary.crashes += 1
        finding("reader " + reader["died"], "")
        return
    verdict = (oracle or {}).get("oracle")
    if oracle and "died" in oracle:
        if oracle["died"] == "timeout":
            summary.oracle_hangs += 1
        elif oracle["died"].startswith("signal"):
            summary.oracle_crashes += 1
        else:
            summary.oracle_exhausted += 1
    elif verdict and verdict[0] == "exhausted":
        summary.oracle_exhausted += 1
    accepted = False
    for mode in ("load", "iter"):
        state, detail = reader[mode]
        if state == "exception":
            summary.crashes += 1
            finding(f"reader {mode}: not a DataError", detail)
        elif state == "bad-message":
            summary.bad_messages += 1
            finding(f"reader {mode}: unbounded or unnamed message", detail)
        elif state == "ok":
            accepted = True
            if not verdict or verdict[0] != "ok" or verdict[1] != detail or (mode == "iter" and verdict[2] != "list"):
                summary.differentials += 1
                finding(f"reader {mode}: differential", f"reader {detail[:16]}, oracle {oracle}")
    if accepted:
        summary.reader_accepted += 1
    else:
        summary.reader_refused += 1


def run(inputs: int, seed: int = 0, jobs: int = 2, extra: Optional[list[tuple[str, bytes]]] = None,
        progress: Optional[Callable[[Summary], None]] = None) -> Summary:
    """Fuzzes `inputs` mutated inputs (plus `extra` fixed ones), `jobs` children at a time."""
    mutator = Mutator(seeds(), dictionary())
    fixed = list(extra or [])
    base = _address_space()
    summary = Summary()
    start = time.monotonic()
    pending: Iterator[tuple[int, str, bytes]] = iter(
        [(i, label, data) for i, (label, data) in enumerate(fixed)] +
        [(len(fixed) + i, *mutator.make(i, seed)) for i in range(inputs)])
    running: dict[int, _Job] = {}
    cases: dict[int, tuple[str, bytes, Optional[dict]]] = {}
    exhausted = False
    while running or not exhausted:
        while len(running) < jobs and not exhausted:
            try:
                index, label, data = next(pending)
            except StopIteration:
                exhausted = True
                break
            cases[index] = (label, data, None)
            job = _spawn(index, "reader", data, base)
            running[job.fd] = job
        if not running:
            break
        timeout = max(0.0, min(job.deadline for job in running.values()) - time.monotonic())
        ready, _, _ = select.select(list(running), [], [], timeout)
        now = time.monotonic()
        for fd in list(running):
            job = running[fd]
            if fd in ready:
                chunk = os.read(fd, 1 << 16)
                if chunk:
                    job.chunks.append(chunk)
                    continue
                result = _finish(job, timed_out=False)
            elif now >= job.deadline:
                result = _finish(job, timed_out=True)
            else:
                continue
            del running[fd]
            label, data, reader = cases[job.index]
            if job.side == "reader":
                states = [] if "died" in result else [result[m][0] for m in ("load", "iter")]
                if "ok" in states or "died" not in result:
                    cases[job.index] = (label, data, result)
                    nxt = _spawn(job.index, "oracle", data, base)
                    running[nxt.fd] = nxt
                    continue
                _judge(summary, label, data, result, None)
            else:
                _judge(summary, label, data, reader, result)
            del cases[job.index]
            summary.inputs += 1
            if progress and summary.inputs % 1000 == 0:
                summary.seconds = time.monotonic() - start
                progress(summary)
    summary.seconds = time.monotonic() - start
    return summary


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--findings", help="write each finding's input here, for replay")
    args = parser.parse_args(argv)
    summary = run(args.inputs, args.seed, args.jobs, extra=attacks())
    if args.findings and summary.findings:
        folder = Path(args.findings)
        folder.mkdir(parents=True, exist_ok=True)
        for i, item in enumerate(summary.findings):
            (folder / f"finding-{i}.pkl").write_bytes(base64.b64decode(item["bytes"]))
    report = summary.to_json()
    for item in report["findings"]:
        item.pop("bytes")
    print(json.dumps(report, indent=1))
    return 0 if summary.clean else 1


if __name__ == "__main__":
    sys.exit(main())
