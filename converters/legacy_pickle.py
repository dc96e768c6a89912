"""The one safe reader of DROPJ legacy pickles.

Every pickle of the release is read through this module; nothing else in the
suite calls `pickle.load` on untrusted bytes.

Two guarantees:

* **Safety.** Pickles are untrusted input. Only the globals that the release
  files legitimately need (numpy array/dtype/scalar reconstruction, `bytes`
  under protocol 2, `OrderedDict`/`defaultdict` containers) are resolved; any
  other global, and every opcode that could run foreign code (INST, OBJ,
  persistent ids, the copyreg extension registry), is refused with
  `UnsafePickleError` *before* anything is called. BUILD is only allowed on
  numpy arrays and dtypes, NEWOBJ only on the allowed container classes.

* **Bounded memory.** `iter_list(f)` streams the items of a top-level list
  one at a time. A pickler's memo keeps a reference to every object it saw, so
  a naive incremental reader would still hold every finished episode. When an
  item is complete this reader drops it from the stack and evicts from the
  memo every entry created while it was built, except small immutable atoms
  (strings, numbers, dtypes, classes) that later items may legitimately refer
  to (numpy's dtype singletons and interned dict keys are shared across
  episodes). A later reference to an evicted object is reported clearly
  instead of resolving to the wrong value.

Supports pickle protocols 2 to 5 from any binary file object (a plain file or
a `zipfile` member stream).
"""

from __future__ import annotations

import _codecs
import collections
import functools
import io
import pickle
import struct
from typing import Any, BinaryIO, Callable, Iterator

import numpy as np

from dropj_datasets.schema import DataError

__all__ = ["UnsafePickleError", "iter_list", "load", "loads", "pickle_protocol"]


class UnsafePickleError(DataError):
    """The pickle asks for something that could run code: refused unexecuted."""


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Protocol 2 stores `bytes` as `_codecs.encode(str, 'latin1')`. Only that
    # codec is allowed: other codec names would import arbitrary `encodings`.
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise UnsafePickleError(
            f"_codecs.encode with codec {encoding!r} is not allowed (only 'latin1')"
        )
    return _codecs.encode(text, "latin1")


def _empty_bytes(*args: Any) -> bytes:
    if args:
        raise UnsafePickleError("bytes(...) with arguments is not allowed (only bytes())")
    return b""


@functools.lru_cache(maxsize=None)
def _numpy_global(name: str) -> Any:
    """The numpy reconstruction helpers, whichever numpy wrote the file."""
    from numpy.core import multiarray, numeric  # numpy 1.x location

    return {
        "_reconstruct": multiarray._reconstruct,
        "scalar": multiarray.scalar,
        "_frombuffer": numeric._frombuffer,
    }[name]


# (module, name) -> object. numpy 2 writes `numpy._core`, numpy 1 `numpy.core`.
_ALLOWED_GLOBALS: dict[tuple[str, str], Callable[[], Any]] = {}
for _mod in ("numpy.core", "numpy._core"):
    _ALLOWED_GLOBALS[(f"{_mod}.multiarray", "_reconstruct")] = lambda: _numpy_global("_reconstruct")
    _ALLOWED_GLOBALS[(f"{_mod}.multiarray", "scalar")] = lambda: _numpy_global("scalar")
    _ALLOWED_GLOBALS[(f"{_mod}.numeric", "_frombuffer")] = lambda: _numpy_global("_frombuffer")
_ALLOWED_GLOBALS.update({
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: _latin1_encode,
    ("collections", "OrderedDict"): lambda: collections.OrderedDict,
    ("collections", "defaultdict"): lambda: collections.defaultdict,
    ("builtins", "list"): lambda: list,  # the default factory of defaultdict(list)
    ("builtins", "bytes"): lambda: _empty_bytes,  # protocol 2 writes b'' as bytes()
})
_NEWOBJ_CLASSES = (collections.OrderedDict, collections.defaultdict)


@functools.lru_cache(maxsize=1)
def _allowed_callables() -> frozenset[int]:
    return frozenset(id(factory()) for factory in _ALLOWED_GLOBALS.values())


# Memo entries of these types survive the eviction of a finished item.
_ATOM_TYPES = (int, float, bool, type(None), np.dtype, type)
_SMALL_BYTES = 8  # numpy's shared b'b'; not the per-array raw data (24 bytes for an action)
_SMALL_STR = 1024


class _Done:
    """Stands on the stack in place of an item already handed to the caller."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<streamed item>"


_DONE = _Done()


def _is_atom(obj: Any) -> bool:
    if isinstance(obj, str):  # protocol 2 stores array data as (big) latin1 strings
        return len(obj) <= _SMALL_STR
    if isinstance(obj, _ATOM_TYPES) or callable(obj) and not isinstance(obj, np.ndarray):
        return True
    return isinstance(obj, bytes) and len(obj) <= _SMALL_BYTES


_CONTAINER_OPCODES = frozenset((pickle.EMPTY_LIST[0], pickle.EMPTY_DICT[0]))


def _refuse(opname: str) -> Callable[[Any], None]:
    def load(self: "_SafeUnpickler") -> None:
        raise UnsafePickleError(
            f"{self.name}: pickle opcode {opname} is not allowed "
            "(it can run code); the file was not executed"
        )

    return load


class _SafeUnpickler(pickle._Unpickler):  # the pure-Python VM, so it can be stepped
    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file: BinaryIO, name: str):
        super().__init__(file, encoding="latin1")
        self.name = name
        self._next_memo = 0
        self._evicted: list[tuple[int, int]] = []
        self._data_strings: set[int] = set()  # ids of protocol-2 latin1 payloads of the current item

    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":  # Python 2 name, written by protocols < 3
            module = "builtins"
        factory = _ALLOWED_GLOBALS.get((module, name))
        if factory is None:
            raise UnsafePickleError(
                f"{self.name}: the pickle references global {module}.{name}, which DROPJ "
                "files never need; refused without executing anything"
            )
        return factory()

    # --- restricted opcodes ---------------------------------------------------
    def load_reduce(self) -> None:
        func = self.stack[-2]
        if id(func) not in _allowed_callables():
            raise UnsafePickleError(f"{self.name}: REDUCE on {func!r} is not allowed")
        if func is _latin1_encode and self.stack[-1]:
            # Protocol 2 array data: a str that must not outlive its item as an "atom".
            self._data_strings.add(id(self.stack[-1][0]))
        try:
            super().load_reduce()
        except UnsafePickleError as exc:
            raise UnsafePickleError(f"{self.name}: {exc}") from None

    def load_build(self) -> None:
        inst = self.stack[-2]
        if inst is _DONE:
            raise self._not_streamable()
        if not isinstance(inst, (np.ndarray, np.dtype)):
            raise UnsafePickleError(
                f"{self.name}: BUILD on a {type(inst).__name__} is not allowed "
                "(only numpy arrays and dtypes carry state)"
            )
        super().load_build()

    def load_newobj(self) -> None:
        if self.stack[-2] not in _NEWOBJ_CLASSES:
            raise UnsafePickleError(f"{self.name}: NEWOBJ of {self.stack[-2]!r} is not allowed")
        super().load_newobj()

    def load_newobj_ex(self) -> None:
        if self.stack[-3] not in _NEWOBJ_CLASSES:
            raise UnsafePickleError(f"{self.name}: NEWOBJ_EX of {self.stack[-3]!r} is not allowed")
        super().load_newobj_ex()

    # The memo index of MEMOIZE is the count of memoised objects so far, which
    # is no longer len(memo) once finished items are evicted.
    def load_memoize(self) -> None:
        self.memo[self._next_memo] = self.stack[-1]
        self._next_memo += 1

    def load_binput(self) -> None:
        index = self.read(1)[0]
        self.memo[index] = self.stack[-1]
        self._next_memo = index + 1

    def load_long_binput(self) -> None:
        (index,) = struct.unpack("<I", self.read(4))
        self.memo[index] = self.stack[-1]
        self._next_memo = index + 1

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.MEMOIZE[0]] = load_memoize
    dispatch[pickle.BINPUT[0]] = load_binput
    dispatch[pickle.LONG_BINPUT[0]] = load_long_binput
    for _op in ("INST", "OBJ", "PERSID", "BINPERSID", "EXT1", "EXT2", "EXT4"):
        dispatch[getattr(pickle, _op)[0]] = _refuse(_op)

    # --- the stepping loop ----------------------------------------------------
    def _start(self) -> None:
        self._unframer = pickle._Unframer(self._file_read, self._file_readline)
        self.read = self._unframer.read
        self.readinto = self._unframer.readinto
        self.readline = self._unframer.readline
        self.metastack = []
        self.stack = []
        self.append = self.stack.append
        self.proto = 0

    def _check_protocol(self) -> None:
        """The release's pickles are protocols 2 to 5, which all open with PROTO."""
        head = self.read(2)
        if len(head) < 2 or head[0] != pickle.PROTO[0] or not 2 <= head[1] <= pickle.HIGHEST_PROTOCOL:
            raise DataError(f"{self.name}: not a pickle of protocol 2 to {pickle.HIGHEST_PROTOCOL} "
                            f"(starts with {head!r})")
        self.proto = head[1]

    def _step(self) -> bytes:
        """Executes one opcode and returns it; the end of the data before STOP is a DataError."""
        key = self.read(1)
        if not key:
            raise DataError(f"{self.name}: the pickle ends before its STOP opcode (truncated file?)")
        self.dispatch[key[0]](self)
        return key

    def _not_streamable(self) -> DataError:
        return DataError(f"{self.name}: this pickle adds to an item after a sibling was created beside it; "
                         "it cannot be streamed")

    def _memo_lookup_error(self, exc: Exception) -> DataError:
        text = str(exc)
        for lo, hi in self._evicted:
            for token in text.replace(",", " ").split():
                if token.isdigit() and lo <= int(token) < hi:
                    return DataError(
                        f"{self.name}: an item refers to an object of an earlier, already "
                        f"streamed item (memo {token}); this file shares objects across "
                        "items and cannot be streamed"
                    )
        return DataError(f"{self.name}: corrupt pickle: {text}")

    def _finish_item(self, position: int, first_memo: int) -> Any:
        """Takes the finished item off the stack and evicts its memo entries."""
        item = self.stack[position]
        self.stack[position] = _DONE
        self._evict(first_memo)
        return item

    def _evict(self, first_memo: int) -> None:
        """Drops the memo entries created since `first_memo`, but for small shared atoms."""
        memo = self.memo
        for key in [k for k in memo if k >= first_memo]:
            if not _is_atom(memo[key]) or id(memo[key]) in self._data_strings:
                del memo[key]
        self._data_strings.clear()
        if self._next_memo > first_memo:
            self._evicted.append((first_memo, self._next_memo))

    def iter_list(self) -> Iterator[Any]:
        self._start()
        try:
            yield from self._iter_list()
        except DataError:
            raise
        except (pickle.UnpicklingError, KeyError) as exc:
            raise self._memo_lookup_error(exc) from exc
        except (EOFError, ValueError, TypeError, IndexError, AttributeError, UnicodeDecodeError, struct.error,
                MemoryError) as exc:
            if "_Done" in str(exc):
                raise self._not_streamable() from exc
            raise DataError(f"{self.name}: corrupt or truncated pickle: {type(exc).__name__}: {exc}") from exc

    def _check_placeholders(self, done: int) -> None:
        # Placeholders sit at stack[0:done]; an opcode that consumed one (say
        # TUPLE2 taking a finished "item" that was really a tuple element)
        # leaves something else at stack[done - 1].
        if done and (len(self.stack) < done or self.stack[done - 1] is not _DONE):
            raise self._not_streamable()

    def _iter_list(self) -> Iterator[Any]:
        self._check_protocol()
        # Run up to the first object: it must be the top-level list.
        while not self.stack:
            if self._step() == pickle.STOP:
                raise DataError(f"{self.name}: empty pickle")
        outer = self.stack[0]
        if not isinstance(outer, list):
            raise DataError(f"{self.name}: expected a pickled list at the top level, but the pickle starts "
                            f"with something else (a {type(outer).__name__})")
        # When is an item finished? The pickler writes a container item as
        # EMPTY_LIST/EMPTY_DICT, MEMOIZE, then its children in MARK..APPENDS /
        # SETITEMS batches (or one child then APPEND/SETITEM). So an item is
        # finished (a) when it is about to be appended to the outer list, or
        # (b) when the next sibling container is created beside it in the same
        # top-level batch. Rule (b) recognises a sibling by the opcode that
        # created the first item. A child created by that same opcode directly
        # beside its parent (a one-child container holding a container) would
        # be mistaken for a sibling; the parent then turns out to be finished
        # already, and the next change to it hits the placeholder `_DONE` and
        # fails loudly (`_not_streamable`), never silently.
        first_memo = self._next_memo
        done = 0  # placeholders at the bottom of the current batch's stack
        item_opcode = None
        appends, append, stop = pickle.APPENDS[0], pickle.APPEND[0], pickle.STOP[0]
        read, dispatch = self.read, self.dispatch
        while True:  # the hot loop: one pass per opcode, so plain opcodes take the short path
            key = read(1)
            if not key:
                raise DataError(f"{self.name}: the pickle ends before its STOP opcode (truncated file?)")
            op = key[0]
            if op != item_opcode and op != appends and op != append and op != stop and item_opcode is not None:
                dispatch[op](self)
                continue
            metastack = self.metastack
            in_top_batch = len(metastack) == 1 and metastack[0][-1] is outer
            if op == appends and in_top_batch or op == append and not metastack and len(self.stack) == 2:
                self._check_placeholders(done)
                pending = [i for i, item in enumerate(self.stack) if item is not _DONE]
                if op == append:
                    pending = pending[-1:]  # stack is [outer, item]
                for position in pending:  # several when items were not containers
                    item = self.stack[position]
                    self.stack[position] = _DONE
                    yield item
                if pending:
                    self._evict(first_memo)
                    first_memo = self._next_memo
                if op == appends:  # the outer list only ever receives placeholders
                    done = 0
                    self.stack = metastack.pop()
                    self.append = self.stack.append
                else:
                    self.stack.pop()
                continue
            if op == stop:
                dispatch[op](self)  # raises pickle._Stop
            length_before = len(self.stack)
            if item_opcode is None:
                if not (in_top_batch and length_before == 0):
                    dispatch[op](self)
                    continue
                # Rule (b) only for container items; other items (say bare
                # arrays) are handed out at the batch's APPENDS instead.
                item_opcode = op if op in _CONTAINER_OPCODES else -1
            dispatch[op](self)
            if (in_top_batch and len(self.metastack) == 1 and len(self.stack) == length_before + 1
                    and length_before >= 1 and self.stack[-2] is not _DONE
                    # the candidate must be the only unfinished entry: anything
                    # else below it means an item is still being built
                    and (length_before == 1 or self.stack[-3] is _DONE)):
                self._check_placeholders(done)
                yield self._finish_item(len(self.stack) - 2, first_memo)
                done += 1
                first_memo = self._next_memo

    def load_whole(self) -> Any:
        self._start()
        try:
            self._check_protocol()
            while True:
                self._step()
        except pickle._Stop as stop:
            return stop.value
        except DataError:
            raise
        except (pickle.UnpicklingError, KeyError, EOFError, ValueError, TypeError, IndexError, struct.error,
                MemoryError,
                AttributeError, UnicodeDecodeError) as exc:
            raise DataError(f"{self.name}: corrupt or truncated pickle: {type(exc).__name__}: {exc}") from exc


def iter_list(file: BinaryIO, name: str = "<pickle>") -> Iterator[Any]:
    """Yields the items of a pickled top-level list one at a time.

    Memory stays bounded by about one item, whatever the file size: finished
    items are released from the unpickler's stack and memo.

    >>> import io, pickle
    >>> list(iter_list(io.BytesIO(pickle.dumps([[1, 2], [3]], protocol=5))))
    [[1, 2], [3]]

    Raises:
      UnsafePickleError: the file asks for a global or opcode that could run code.
      DataError: the file is truncated, corrupt or not a list.
    """
    unpickler = _SafeUnpickler(file, name)
    try:
        yield from unpickler.iter_list()
    except pickle._Stop:
        return


def load(file: BinaryIO, name: str = "<pickle>") -> Any:
    """Loads a whole (small) pickle with the same restrictions as `iter_list`."""
    return _SafeUnpickler(file, name).load_whole()


def pickle_protocol(head: bytes) -> int:
    """The protocol of a pickle from its first bytes; 0 when it has no PROTO opcode (protocol 0 or 1)."""
    if len(head) >= 2 and head[0] == pickle.PROTO[0]:
        return head[1]
    return 0


def loads(data: bytes, name: str = "<pickle>") -> Any:
    """`load` from bytes."""
    return load(io.BytesIO(data), name)
