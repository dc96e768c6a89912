"""The one safe reader of DROPJ legacy pickles: a strict pickle VM of its own.

Every pickle of the release is read through this module; nothing else in the
suite unpickles untrusted bytes. It does not run Python's unpickler with a
filter: it is a small interpreter of exactly the pickle subset the release
files use (DATA_FORMATS.md 0.4), and it builds every object itself.

Guarantees, whatever the bytes (docs/security.md lists the tests of each):

* **Nothing runs.** Globals are resolved to inert markers from an allowlist
  (numpy's array, dtype and scalar reconstructors, `_codecs.encode`, `bytes`,
  `defaultdict`, `list`). A REDUCE is accepted only with the exact argument
  shapes the release files use (`_reconstruct(ndarray, (0,), b'b')`,
  `dtype('f8', False, True)`, `defaultdict(list)`, ...) and is then carried out
  by this module. numpy never sees attacker state: dtypes are made by name
  from a list of plain numeric and bool types and their pickled state must
  equal numpy's own state of that dtype (so no object fields, no forged
  flags); arrays are copied out of a byte string whose length was checked.
  Opcodes the release never uses (INST, OBJ, NEWOBJ, persistent ids, the
  extension registry, POP, DUP, sets, protocol 0/1 forms) are refused.
* **Bounded time and memory.** Every claimed length is checked against the
  bytes left in the file (or zip member) before anything is allocated, and
  against the data budget of the item being read. Objects per item, entries
  per container, nesting depth and live memo entries are capped (`Limits`).
  Dict keys must be `str`, whose hashes Python randomises, so no key can cost
  more than its length to insert. Containers cannot be shared or made
  cyclic (a memo reference to a list, dict or tuple is refused), so what the
  reader returns is a tree no larger than its budget.
* **Streaming, never silently wrong.** `iter_list` hands out the items of a
  top-level list one at a time and forgets them: an item is handed out when
  the next sibling is created, it is replaced on the stack by a placeholder
  that no opcode but the outer list's APPENDS may touch, and every memo entry
  made while it was read is dropped, except small immutable atoms. A later
  reference to anything of a finished item is refused; so is a memo index
  that is not the next one in sequence. At STOP, the number of items the
  outer list received by the pickle's own APPENDS semantics must equal the
  number handed out (`count_items` recounts independently with pickletools).

Supports pickle protocols 2 to 5 from any binary file object (a plain file or
a `zipfile` member stream).
"""

from __future__ import annotations

import collections
import dataclasses
import io
import math
import os
import pickle
import pickletools
import struct
import zipfile
from typing import Any, BinaryIO, Iterator, Optional

import numpy as np

from dropj_datasets.schema import DataError, describe

__all__ = ["UnsafePickleError", "Limits", "DEFAULT_LIMITS", "iter_list", "load", "loads", "pickle_protocol",
           "count_items", "stream_size"]


class UnsafePickleError(DataError):
    """The pickle asks for something the release files never need (a global, an opcode, a call): refused."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one item of a streamed list (or one whole `load`) may hold. Every cap is checked before allocating.

    The defaults hold every release file with room to spare: the largest item is one 128x128 episode of
    1000 steps, about 98 MB of frames and 10,000 objects.
    """

    max_bytes: int = 256 << 20  # data (arrays, bytes, str) created or referenced by one item
    max_objects: int = 2_000_000  # values pushed (created or referenced) while reading one item
    max_depth: int = 16  # nesting of lists, dicts and tuples
    max_container: int = 1 << 20  # entries of one list, dict or tuple
    max_memo: int = 1 << 20  # memo entries alive at once
    max_item_length: Optional[int] = None  # entries of each top-level item (an episode's steps)
    item_noun: str = "item"  # how errors name a top-level item ('episode')
    length_hint: str = ""  # what an error about max_item_length adds (how to raise it)

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_objects", "max_depth", "max_container", "max_memo"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"Limits.{name} must be a positive int, got {getattr(self, name)!r}")


DEFAULT_LIMITS = Limits()


# --- what globals may name ----------------------------------------------------------------------------

class _Global:
    """An allowed global, as an inert marker: only this module decides what calling it means."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"<global {self.name}>"


_RECONSTRUCT = _Global("numpy.core.multiarray._reconstruct")
_SCALAR = _Global("numpy.core.multiarray.scalar")
_FROMBUFFER = _Global("numpy.core.numeric._frombuffer")
_NDARRAY = _Global("numpy.ndarray")
_DTYPE = _Global("numpy.dtype")
_ENCODE = _Global("_codecs.encode")
_BYTES = _Global("builtins.bytes")
_DEFAULTDICT = _Global("collections.defaultdict")
_LIST = _Global("builtins.list")

_GLOBALS: dict[tuple[str, str], _Global] = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DTYPE,
    ("_codecs", "encode"): _ENCODE,
    ("builtins", "bytes"): _BYTES,  # protocol 2 writes b'' as bytes()
    ("builtins", "list"): _LIST,  # only as the factory of defaultdict(list)
    ("collections", "defaultdict"): _DEFAULTDICT,  # request_traj_opt_times_*.pkl
}
for _core in ("numpy.core", "numpy._core"):  # numpy 1 and numpy 2 module names
    _GLOBALS[(f"{_core}.multiarray", "_reconstruct")] = _RECONSTRUCT
    _GLOBALS[(f"{_core}.multiarray", "scalar")] = _SCALAR
    _GLOBALS[(f"{_core}.numeric", "_frombuffer")] = _FROMBUFFER

# The plain numeric and bool dtypes, by the code numpy's dtype.__reduce__ writes.
_DTYPE_CODES = frozenset(["b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8"])
_MAX_NDIM = 32
_MAX_LONG_BYTES = 64  # ints up to 512 bits; the release's are small
_BIG_PAYLOAD = 4096  # data strings this large are dropped from the memo once an array has consumed them
_ATOM_STR = 64  # str up to this length may be shared across items


class _Pending:
    """An array or dtype between its REDUCE and its BUILD: never handed out, never put in a container."""

    __slots__ = ("kind", "code", "keys")

    def __init__(self, kind: str, code: str = ""):
        self.kind, self.code = kind, code
        self.keys: list[int] = []  # memo entries that hold it, replaced by the result at BUILD

    def __repr__(self) -> str:
        return f"<unfinished {self.kind}>"


class _Outer:
    """The top-level list of a streamed file: it only ever receives items, which are handed out."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0  # items appended by the pickle's own APPEND/APPENDS semantics


class _Marker(str):
    """A stand-in that is not the data: `_DONE` on the stack for an item already handed out,
    `_CONSUMED` in the memo for data an array has taken over (so it is not held twice)."""

    __slots__ = ()


class _CallArgs(tuple):
    """A tuple holding a global (say `(numpy.ndarray, (0,), b'b')`): only ever the arguments of a REDUCE."""

    __slots__ = ()


_DONE = _Marker("<streamed item>")
_CONSUMED = _Marker("<consumed array data>")
_SPECIAL = (_Pending, _Marker, _Outer, _Global, _CallArgs)
_SPECIAL_TYPES = frozenset(_SPECIAL)
_CONTAINERS = (list, dict, tuple, collections.defaultdict)
_CONTAINER_TYPES = frozenset(_CONTAINERS)
_PAYLOAD_TYPES = frozenset((bytes, bytearray, str))


def _is_atom(value: Any) -> bool:
    """Immutable and small: may stay in the memo after the item that made it is gone."""
    if value is None or type(value) in (int, float, bool) or isinstance(value, (np.dtype, _Global)):
        return True
    if type(value) is str:
        return len(value) <= _ATOM_STR
    return type(value) is bytes and len(value) <= 8


def _payload(value: Any) -> int:
    """Data bytes a value holds (what a consumer copying it would allocate), for the budgets."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if type(value) in (bytes, bytearray, str):
        return len(value)
    return 0


class _Stop(Exception):
    pass


# --- the input --------------------------------------------------------------------------------------

class _Input:
    """Buffered reads that know how many bytes are left, so no claimed length is trusted.

    Frames (protocol 4+) group opcodes for buffering. An opcode and its argument lie
    within one frame, or outside every frame: CPython's C unpickler serves a read that
    crosses a frame's end from the file and drops the rest of the frame, so such a
    pickle means different things to different unpicklers, and it is refused.
    `fast_end` is where reads may go without any check (end of buffer, frame, file).
    """

    _CHUNK = 1 << 20

    def __init__(self, file: BinaryIO, size: int, name: str):
        self.file, self.size, self.name = file, size, name
        self.buf = b""
        self.off = 0
        self.base = 0  # file position of buf[0]
        self.frame_end: Optional[int] = None  # file position where the current FRAME ends
        self.fast_end = 0

    @property
    def position(self) -> int:
        return self.base + self.off

    def left(self) -> int:
        return self.size - self.position

    def limit(self) -> None:
        end = min(len(self.buf), self.size - self.base)
        if self.frame_end is not None:
            end = min(end, self.frame_end - self.base)
        self.fast_end = end

    def start_frame(self, length: int) -> None:
        self.frame_end = self.position + length
        self.limit()

    def _fill(self, need: int) -> None:
        rest = self.buf[self.off:]
        chunks = [rest]
        have = len(rest)
        self.base += self.off
        while have < need:
            chunk = self.file.read(max(self._CHUNK, need - have))
            if not chunk:
                break
            chunks.append(chunk)
            have += len(chunk)
        self.buf = b"".join(chunks)
        self.off = 0

    def byte(self) -> int:
        off = self.off
        if off < self.fast_end:
            self.off = off + 1
            return self.buf[off]
        return self._slow(1, opcode=True)[0]

    def take(self, n: int) -> bytes:
        off = self.off
        end = off + n
        if end <= self.fast_end:
            self.off = end
            return self.buf[off:end]
        return self._slow(n)

    def _slow(self, n: int, opcode: bool = False) -> bytes:
        here = self.base + self.off
        if self.frame_end is not None:
            if here >= self.frame_end:
                self.frame_end = None
            elif here + n > self.frame_end:
                raise DataError(f"{self.name}, byte {here}: a read of {n} bytes crosses the end of its frame at "
                                f"byte {self.frame_end} (corrupt pickle)")
        if n > self.size - here:
            if opcode or here >= self.size:
                raise DataError(f"{self.name}: the pickle ends before its STOP opcode (truncated file?)")
            raise DataError(f"{self.name}, byte {here}: the pickle claims {n} more bytes, but only "
                            f"{max(self.size - here, 0)} are left in the file (truncated or corrupt)")
        if self.off + n > len(self.buf):
            self._fill(n)
            if self.off + n > len(self.buf):
                raise DataError(f"{self.name}: the pickle ends before its STOP opcode (truncated file?)")
        data = self.buf[self.off:self.off + n]
        self.off += n
        self.limit()
        return data

    def line(self) -> bytes:
        """A newline-terminated argument (GLOBAL), at most 256 bytes, all within one frame."""
        start, frame_end = self.position, self.frame_end
        if frame_end is not None and start >= frame_end:
            frame_end = None
        self.frame_end = None  # checked for the whole line below
        self.limit()
        out = bytearray()
        while True:
            b = self.byte()
            if b == 10:
                break
            out.append(b)
            if len(out) > 256:
                raise DataError(f"{self.name}, byte {self.position}: a GLOBAL name longer than 256 bytes")
        if frame_end is not None and self.position > frame_end:
            raise DataError(f"{self.name}, byte {start}: a GLOBAL line crosses the end of its frame at byte "
                            f"{frame_end} (corrupt pickle)")
        self.frame_end = frame_end
        self.limit()
        return bytes(out)


def stream_size(file: BinaryIO) -> int:
    """The bytes left in `file`: a BytesIO, a regular file or a zip member."""
    if isinstance(file, io.BytesIO):  # getbuffer() would copy a BytesIO made from bytes
        here = file.tell()
        end = file.seek(0, io.SEEK_END)
        file.seek(here)
        return end - here
    if isinstance(file, zipfile.ZipExtFile):
        # The member's size from the central directory; ZipExtFile never returns more bytes. No public
        # attribute holds it (seeking to the end would inflate the member); Python 3.11 is pinned and
        # tests/test_pinned_internals.py fails if this attribute changes.
        return file._orig_file_size - file.tell()  # noqa: SLF001 - see tests/test_pinned_internals.py
    try:
        return os.fstat(file.fileno()).st_size - file.tell()
    except (AttributeError, OSError, io.UnsupportedOperation):
        raise TypeError("the size of this stream is unknown: pass size= (a zip member's file_size)") from None


# --- the VM -----------------------------------------------------------------------------------------

class _Reader:
    """The VM. `streaming`: the pickle must be a list, whose items are handed out one at a time."""

    def __init__(self, file: BinaryIO, name: str, size: Optional[int], limits: Limits, streaming: bool):
        self.name = name
        self.limits = limits
        self.input = _Input(file, stream_size(file) if size is None else size, name)
        self.streaming = streaming
        self.stack: list = []
        self.metastack: list[list] = []
        self.memo: dict[int, Any] = {}
        self.memo_len = 0  # memo indices come in sequence: this is the next one
        self.new_id: Optional[int] = None  # id of the container the last opcode created
        # streaming state
        self.outer: Optional[_Outer] = None
        self.batch: Optional[list] = None  # the stack frame of the outer list's MARK .. APPENDS
        self.item_opcode: Optional[int] = None  # EMPTY_LIST / EMPTY_DICT: what creates an item; -1: not a container
        self.ready: list = []  # finished items to hand out
        self.yielded = 0
        self.item_first_key = 0  # memo entries of the current item start here
        # per item (streaming) or per file (load)
        self.max_bytes = limits.max_bytes if streaming else max(limits.max_bytes, self.input.size)
        self.bytes_used = 0
        self.objects = 0
        self.depth: dict[int, int] = {}  # id -> nesting depth of the containers being built
        self.consumed: set[int] = set()  # ids of data strings a call or an array took over
        self.big: dict[int, list[int]] = {}  # id of a large memoised payload -> memo keys holding it
        self.dispatch = {ord(op.code): getattr(self, f"_op_{op.name}")
                         for op in pickletools.opcodes if hasattr(self, f"_op_{op.name}")}

    # -- errors ------------------------------------------------------------------------------------------
    def where(self) -> str:
        if self.outer is not None:
            return (f"{self.name}, {self.limits.item_noun} {self.yielded + len(self.ready)} "
                    f"(byte {self.input.position})")
        return f"{self.name}, byte {self.input.position}"

    def error(self, message: str) -> DataError:
        return DataError(f"{self.where()}: {message}")

    def unsafe(self, message: str) -> UnsafePickleError:
        return UnsafePickleError(f"{self.where()}: {message}; refused, nothing was executed")

    def not_streamable(self, what: str) -> DataError:
        return self.error(f"{what}; this file cannot be streamed")

    # -- budgets -------------------------------------------------------------------------------------------
    def charge(self, nbytes: int) -> None:
        """One more value of `nbytes` data bytes in the current item (or file)."""
        self.bytes_used += nbytes
        self.objects += 1
        if self.bytes_used > self.max_bytes or self.objects > self.limits.max_objects:
            per = self.limits.item_noun if self.outer is not None else "file"
            what = (f"more than {self.max_bytes:,} bytes of data" if self.bytes_used > self.max_bytes
                    else f"more than {self.limits.max_objects:,} values")
            raise self.error(f"holds {what}, the reader's limit per {per} (docs/security.md says how to raise it)")

    def claim(self, n: int) -> bytes:
        """A payload of claimed length n, read after checking it against the file and the budget."""
        if n > self.input.left():
            raise self.error(f"the pickle claims {n:,} bytes, but only {max(self.input.left(), 0):,} are left "
                             "in the file (truncated or corrupt)")
        self.charge(n)
        return self.input.take(n)

    def pop_n(self, n: int) -> list:
        if len(self.stack) < n:
            raise self.error("stack underflow (corrupt pickle)")
        items = self.stack[len(self.stack) - n:]
        del self.stack[len(self.stack) - n:]
        return items

    def pop_mark(self) -> list:
        if not self.metastack:
            raise self.error("an opcode needs a MARK that is not there (corrupt pickle)")
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def check_plain(self, values: Any, where: str, *, allow_globals: bool = False) -> None:
        """Values going into a container, a call or the result: no markers, unfinished or finished items."""
        for value in values:
            if type(value) in _SPECIAL_TYPES:
                if isinstance(value, _Global) and allow_globals:
                    continue
                if value is _DONE:
                    raise self.not_streamable("a finished item is used again")
                if isinstance(value, _Outer):
                    raise self.not_streamable("the top-level list is used inside itself")
                if isinstance(value, _Pending):
                    raise self.unsafe(f"an unfinished numpy {value.kind} is used in {where}")
                if isinstance(value, _Global):
                    raise self.unsafe(f"the global {value.name} is used as a value in {where}")
                raise self.unsafe(f"{value!r} is used as a value in {where}")

    # -- nesting -----------------------------------------------------------------------------------------------
    def set_depth(self, value: Any, depth: int) -> None:
        if depth > self.limits.max_depth:
            raise self.error(f"lists, dicts and tuples nested deeper than {self.limits.max_depth} levels")
        self.depth[id(value)] = depth

    def grow(self, container: Any, children: list) -> None:
        # Containers are never shared (a memo reference to one is refused), so a child is
        # complete when it is added and the depth computed here is final.
        depth, depths = 0, self.depth
        for child in children:
            if type(child) in _CONTAINER_TYPES:
                d = depths.get(id(child), 1)
                if d > depth:
                    depth = d
        if depth + 1 > depths.get(id(container), 1):
            self.set_depth(container, depth + 1)

    def at_item_level(self) -> bool:
        """The stack frame whose entries are the outer list's items."""
        if self.outer is None:
            return False
        return self.stack is self.batch or (not self.metastack and bool(self.stack) and self.stack[0] is self.outer)

    def check_length(self, container: Any, adding: int) -> None:
        if len(container) + adding > self.limits.max_container:
            raise self.error(f"a container of more than {self.limits.max_container:,} entries")
        limit = self.limits.max_item_length
        if limit is not None and len(container) + adding > limit and self.at_item_level() \
                and container is self.stack[-1]:
            raise self.error(f"more than {limit:,} entries" + (f"; {self.limits.length_hint}"
                                                                if self.limits.length_hint else ""))

    # -- framing and stop ---------------------------------------------------------------------------------------
    def _op_FRAME(self) -> None:
        # Frames group opcodes for buffering. One starts where the previous one ended (or outside any),
        # and every opcode stays within its frame (`_Input._slow`).
        (n,) = struct.unpack("<Q", self.input.take(8))
        here = self.input.position
        if self.input.frame_end is not None and here < self.input.frame_end:
            raise self.error("a frame begins before the previous one ended (corrupt pickle)")
        if n > self.input.left():
            raise self.error(f"a frame of {n:,} bytes, but only {self.input.left():,} are left (truncated)")
        self.input.start_frame(n)

    def _op_STOP(self) -> None:
        raise _Stop

    # -- scalars ---------------------------------------------------------------------------------------------
    def push_atom(self, value: Any) -> None:
        self.objects += 1
        if self.objects > self.limits.max_objects:
            self.charge(0)
        self.stack.append(value)

    def _op_NONE(self) -> None:
        self.push_atom(None)

    def _op_NEWTRUE(self) -> None:
        self.push_atom(True)

    def _op_NEWFALSE(self) -> None:
        self.push_atom(False)

    def _op_BININT(self) -> None:
        self.push_atom(struct.unpack("<i", self.input.take(4))[0])

    def _op_BININT1(self) -> None:
        self.push_atom(self.input.byte())

    def _op_BININT2(self) -> None:
        self.push_atom(struct.unpack("<H", self.input.take(2))[0])

    def long(self, n: int) -> None:
        if n > _MAX_LONG_BYTES:
            raise self.error(f"an integer of {n:,} bytes (at most {_MAX_LONG_BYTES} are accepted)")
        self.push_atom(int.from_bytes(self.input.take(n), "little", signed=True))

    def _op_LONG1(self) -> None:
        self.long(self.input.byte())

    def _op_LONG4(self) -> None:
        (n,) = struct.unpack("<i", self.input.take(4))
        if n < 0:
            raise self.error("LONG4 with a negative length (corrupt pickle)")
        self.long(n)

    def _op_BINFLOAT(self) -> None:
        self.push_atom(struct.unpack(">d", self.input.take(8))[0])

    def text(self, n: int) -> None:
        raw = self.claim(n)
        try:
            self.stack.append(raw.decode("utf-8", "surrogatepass"))
        except UnicodeDecodeError as exc:
            raise self.error(f"a string that is not valid UTF-8 ({exc.reason})") from None

    def _op_SHORT_BINUNICODE(self) -> None:
        self.text(self.input.byte())

    def _op_BINUNICODE(self) -> None:
        self.text(struct.unpack("<I", self.input.take(4))[0])

    def _op_BINUNICODE8(self) -> None:
        self.text(struct.unpack("<Q", self.input.take(8))[0])

    def _op_SHORT_BINBYTES(self) -> None:
        self.stack.append(self.claim(self.input.byte()))

    def _op_BINBYTES(self) -> None:
        self.stack.append(self.claim(struct.unpack("<I", self.input.take(4))[0]))

    def _op_BINBYTES8(self) -> None:
        self.stack.append(self.claim(struct.unpack("<Q", self.input.take(8))[0]))

    def _op_BYTEARRAY8(self) -> None:
        self.stack.append(bytearray(self.claim(struct.unpack("<Q", self.input.take(8))[0])))

    # -- containers ------------------------------------------------------------------------------------------
    def _op_MARK(self) -> None:
        if len(self.metastack) >= 4 * self.limits.max_depth:
            raise self.error(f"MARKs nested deeper than {4 * self.limits.max_depth} levels")
        self.metastack.append(self.stack)
        self.stack = []
        if self.outer is not None and self.batch is None and len(self.metastack) == 1 \
                and len(self.metastack[0]) == 1 and self.metastack[0][0] is self.outer:
            self.batch = self.stack  # a MARK right above the outer list: a batch of its items begins

    def _op_EMPTY_LIST(self) -> None:
        self.charge(0)
        if self.streaming and self.outer is None:
            if self.stack or self.metastack:
                raise self.error("expected a pickled list at the top level, but the pickle starts with "
                                 "something else")
            self.outer = _Outer()
            self.stack.append(self.outer)
            return
        value: list = []
        self.set_depth(value, 1)
        self.stack.append(value)
        self.new_id = id(value)

    def _op_EMPTY_DICT(self) -> None:
        self.charge(0)
        value: dict = {}
        self.set_depth(value, 1)
        self.stack.append(value)
        self.new_id = id(value)

    def _op_EMPTY_TUPLE(self) -> None:
        self.push_atom(())

    def tuple(self, items: list) -> None:
        depth, depths, call = 0, self.depth, False
        for item in items:
            kind = type(item)
            if kind in _CONTAINER_TYPES:
                d = depths.get(id(item), 1)
                if d > depth:
                    depth = d
            elif kind in _SPECIAL_TYPES:
                self.check_plain([item], "a tuple", allow_globals=True)
                call = True
        if len(items) > self.limits.max_container:
            raise self.error(f"a tuple of more than {self.limits.max_container:,} entries")
        self.charge(0)
        if call:
            self.stack.append(_CallArgs(items))  # only ever the arguments of a REDUCE
            return
        value = tuple(items)
        if depth >= self.limits.max_depth:
            self.set_depth(value, depth + 1)
        depths[id(value)] = depth + 1
        self.stack.append(value)

    def _op_TUPLE(self) -> None:
        self.tuple(self.pop_mark())

    def _op_TUPLE1(self) -> None:
        self.tuple(self.pop_n(1))

    def _op_TUPLE2(self) -> None:
        self.tuple(self.pop_n(2))

    def _op_TUPLE3(self) -> None:
        self.tuple(self.pop_n(3))

    def target(self, kinds: tuple, what: str) -> Any:
        """The container below an APPEND(S) or SETITEM(S): of `kinds`, never a marker."""
        if not self.stack:
            raise self.error(f"{what} with nothing below it (corrupt pickle)")
        target = self.stack[-1]
        if type(target) not in kinds:
            self.check_plain([target], what)
            raise self.error(f"{what} on a {type(target).__name__}")
        return target

    def append(self, items: list) -> None:
        if self.stack and self.outer is not None and self.stack[-1] is self.outer:
            # The outer list receives placeholders of the items handed out early, then finished items.
            early = 0
            while early < len(items) and items[early] is _DONE:
                early += 1
            self.check_plain(items[early:], "the top-level list")
            self.outer.count += len(items)
            self.ready.extend(items[early:])
            return
        target = self.target((list,), "APPEND")
        self.check_plain(items, "a list")
        self.check_length(target, len(items))
        target.extend(items)
        self.grow(target, items)

    def setitems(self, items: list) -> None:
        target = self.target((dict, collections.defaultdict), "SETITEM")
        if len(items) % 2:
            raise self.error("SETITEMS with an odd number of values (corrupt pickle)")
        self.check_plain(items, "a dict")
        keys, values = items[0::2], items[1::2]
        for key in keys:
            if type(key) is not str:
                raise self.error(f"a dict key of type {type(key).__name__} (release files use str keys only)")
        self.check_length(target, len(keys))
        for key, value in zip(keys, values):
            target[key] = value
        self.grow(target, values)

    # one item without a MARK, or a MARKed batch
    _op_APPEND = lambda self: self.append(self.pop_n(1))  # noqa: E731
    _op_APPENDS = lambda self: self.append(self.pop_mark())  # noqa: E731
    _op_SETITEM = lambda self: self.setitems(self.pop_n(2))  # noqa: E731
    _op_SETITEMS = lambda self: self.setitems(self.pop_mark())  # noqa: E731

    # -- memo --------------------------------------------------------------------------------------------------
    def put(self, key: int) -> None:
        if key != self.memo_len:
            raise self.error(f"memo index {key} out of sequence (expected {self.memo_len}; pickle numbers its "
                             "memo entries in order)")
        if not self.stack:
            raise self.error("a memo PUT on an empty stack (corrupt pickle)")
        value = self.stack[-1]
        kind = type(value)
        if kind in _SPECIAL_TYPES:
            if kind is _Marker:
                raise self.not_streamable("a finished item is memoised again")
            if kind is _Pending:
                value.keys.append(key)
        elif kind in _PAYLOAD_TYPES:
            if len(value) >= _BIG_PAYLOAD:
                self.big[id(value)] = [key]
        elif kind is tuple and self.big:  # call arguments or array state holding a payload
            for element in value:
                if id(element) in self.big:
                    self.big[id(element)].append(key)
        if len(self.memo) >= self.limits.max_memo:
            raise self.error(f"more than {self.limits.max_memo:,} memo entries alive at once")
        self.memo[key] = value
        self.memo_len += 1

    def _op_MEMOIZE(self) -> None:
        self.put(self.memo_len)

    def _op_BINPUT(self) -> None:
        self.put(self.input.byte())

    def _op_LONG_BINPUT(self) -> None:
        self.put(struct.unpack("<I", self.input.take(4))[0])

    def get(self, key: int) -> None:
        if key not in self.memo:
            if key < self.memo_len:
                raise self.not_streamable(f"refers to an object of an earlier, already streamed "
                                          f"{self.limits.item_noun} (memo {key})")
            raise self.error(f"memo index {key} was never defined (corrupt pickle)")
        value = self.memo[key]
        kind = type(value)
        if kind in _CONTAINER_TYPES and (kind is not tuple or value):
            raise self.error(f"refers again to a {type(value).__name__} (memo {key}); release files never share "
                             "lists, dicts or tuples, and this reader does not accept it")
        if kind in _SPECIAL_TYPES:
            if isinstance(value, _Outer):
                raise self.not_streamable("refers to the top-level list from inside it")
            if isinstance(value, _Pending):
                raise self.unsafe(f"refers to an unfinished numpy {value.kind} (memo {key})")
            if value is _CONSUMED:
                raise self.error(f"refers again to the data of an array (memo {key}); release files never do")
            if isinstance(value, _CallArgs):
                raise self.unsafe(f"refers again to the arguments of a call (memo {key})")
        self.charge(_payload(value) if kind in _PAYLOAD_TYPES or kind is np.ndarray else 0)
        self.stack.append(value)

    def _op_BINGET(self) -> None:
        self.get(self.input.byte())

    def _op_LONG_BINGET(self) -> None:
        self.get(struct.unpack("<I", self.input.take(4))[0])

    # -- globals and calls ------------------------------------------------------------------------------------
    def find(self, module: str, name: str) -> None:
        if module == "__builtin__":  # the Python 2 name protocol 2 writes
            module = "builtins"
        found = _GLOBALS.get((module, name))
        if found is None:
            raise self.unsafe(f"the pickle references global {module[:100]}.{name[:100]}, which DROPJ "
                              "files never need")
        self.push_atom(found)

    def _op_GLOBAL(self) -> None:
        try:
            module, name = self.input.line().decode("utf-8"), self.input.line().decode("utf-8")
        except UnicodeDecodeError:
            raise self.error("a GLOBAL name that is not UTF-8 (corrupt pickle)") from None
        self.find(module, name)

    def _op_STACK_GLOBAL(self) -> None:
        module, name = self.pop_n(2)
        if type(module) is not str or type(name) is not str:
            raise self.error("STACK_GLOBAL needs two strings (corrupt pickle)")
        self.find(module, name)

    def _op_REDUCE(self) -> None:
        func, args = self.pop_n(2)
        if not isinstance(func, _Global):
            raise self.unsafe(f"REDUCE calls a {type(func).__name__}, not an allowed global")
        if type(args) is _CallArgs:
            args = tuple(args)
        elif type(args) is not tuple:
            raise self.unsafe(f"REDUCE of {func.name} with arguments of type {type(args).__name__}")
        self.stack.append(self.call(func, args))

    def call(self, func: _Global, args: tuple) -> Any:
        """The calls release files make, each with its exact argument shapes; anything else is refused."""
        if func is _RECONSTRUCT:  # protocols 2-4: an empty array, then BUILD (1, shape, dtype, fortran, data)
            if (len(args) == 3 and args[0] is _NDARRAY and type(args[1]) is tuple and len(args[1]) == 1
                    and type(args[1][0]) is int and args[1][0] == 0 and type(args[2]) is bytes and args[2] == b"b"):
                return _Pending("array")
        elif func is _DTYPE:  # dtype('f8', False, True), then BUILD with numpy's own state of that dtype
            if len(args) == 3 and type(args[0]) is str and args[1] is False and args[2] is True:
                if args[0] not in _DTYPE_CODES:
                    raise self.unsafe(f"numpy dtype {describe(args[0])} (only the plain numeric and bool dtypes "
                                      f"{', '.join(sorted(_DTYPE_CODES))} are accepted)")
                return _Pending("dtype", args[0])
        elif func is _SCALAR:  # numpy scalars: scalar(dtype, data)
            if len(args) == 2 and isinstance(args[0], np.dtype) and type(args[1]) is bytes:
                dtype, data = args
                if len(data) != dtype.itemsize:
                    raise self.error(f"a numpy {dtype} scalar of {len(data)} bytes (expected {dtype.itemsize})")
                self.consumed.add(id(data))
                return np.frombuffer(data, dtype=dtype)[0]
        elif func is _FROMBUFFER:  # protocol 5 arrays: _frombuffer(buffer, dtype, shape, order)
            if (len(args) == 4 and type(args[0]) in (bytes, bytearray) and isinstance(args[1], np.dtype)
                    and type(args[3]) is str and args[3] in ("C", "F")):
                buffer, dtype, shape, order = args
                self.check_shape(shape, dtype, len(buffer))
                self.consume(buffer)
                return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)
        elif func is _ENCODE:  # protocol 2 bytes: _codecs.encode(latin1 text, 'latin1')
            if len(args) == 2 and type(args[0]) is str and type(args[1]) is str and args[1] in ("latin1", "latin-1"):
                try:
                    data = args[0].encode("latin1")
                except UnicodeEncodeError:
                    raise self.error("_codecs.encode of text that is not latin1 (corrupt pickle)") from None
                self.consume(args[0])
                self.charge(len(data))
                return data
        elif func is _BYTES:  # protocol 2 writes b'' as bytes()
            if not args:
                return b""
        elif func is _DEFAULTDICT:  # request_traj_opt_times_*.pkl
            if len(args) == 1 and args[0] is _LIST:
                value: dict = collections.defaultdict(list)
                self.set_depth(value, 1)
                return value
        shape = ", ".join(a.name if isinstance(a, _Global) else type(a).__name__ for a in args)
        raise self.unsafe(f"the call {func.name}({shape}) is not one release files make")

    def check_shape(self, shape: Any, dtype: np.dtype, nbytes: int) -> None:
        if (type(shape) is not tuple or len(shape) > _MAX_NDIM
                or not all(type(n) is int and n >= 0 for n in shape)):
            raise self.error(f"an array shape that is not a tuple of at most {_MAX_NDIM} ints >= 0")
        need = math.prod(shape) * dtype.itemsize
        if need != nbytes:
            raise self.error(f"an array of shape {list(shape)} and dtype {dtype} needs {need:,} bytes, "
                             f"got {nbytes:,}")

    def consume(self, data: Any) -> None:
        """An array took this payload over: its memo entry is dropped, so it is not held twice."""
        self.consumed.add(id(data))
        for key in self.big.pop(id(data), ()):
            self.memo[key] = _CONSUMED  # the payload itself, and the argument or state tuples holding it

    def _op_BUILD(self) -> None:
        target, state = self.pop_n(2)
        if not isinstance(target, _Pending):
            raise self.unsafe(f"BUILD on a {type(target).__name__} (only numpy arrays and dtypes carry state)")
        value = self.build_dtype(target, state) if target.kind == "dtype" else self.build_array(state)
        for key in target.keys:  # the memo now hands out the finished object
            self.memo[key] = value
        target.keys = []
        self.stack.append(value)

    def build_dtype(self, pending: _Pending, state: Any) -> np.dtype:
        """The dtype by name; its state must be exactly numpy's own for it (no fields, no forged flags)."""
        dtype = np.dtype(pending.code)
        if (type(state) is tuple and len(state) > 1 and type(state[1]) is str and state[1] in ("<", ">")
                and dtype.itemsize > 1):
            dtype = dtype.newbyteorder(state[1])
        expected = dtype.__reduce__()[2]
        if not (type(state) is tuple and len(state) == len(expected)
                and all(type(a) is type(b) and a == b for a, b in zip(state, expected))):
            raise self.unsafe(f"a numpy {pending.code} dtype with the state {describe(state)}, which is not "
                              f"numpy's own {expected}")
        return dtype

    def build_array(self, state: Any) -> np.ndarray:
        if not (type(state) is tuple and len(state) == 5 and type(state[0]) is int and state[0] == 1
                and isinstance(state[2], np.dtype) and type(state[3]) is bool and type(state[4]) is bytes):
            raise self.unsafe(f"a numpy array with the state {describe(state)} (release arrays have (1, shape, "
                              "dtype, fortran, data bytes) with a plain dtype)")
        _, shape, dtype, fortran, data = state
        self.check_shape(shape, dtype, len(data))
        self.consume(data)
        flat = np.frombuffer(data, dtype=dtype)
        array = flat.reshape(shape, order="F" if fortran else "C")
        # numpy's own __setstate__ hands out arrays in the machine's byte order, values unchanged.
        return array.copy(order="K") if dtype.isnative else array.astype(dtype.newbyteorder("="), order="K")

    # -- running -------------------------------------------------------------------------------------------------
    def refuse(self, op: int) -> DataError:
        found = pickletools.code2op.get(chr(op))
        if found is None:
            return self.error(f"unknown opcode {op:#04x} (corrupt pickle)")
        if found.name == "PROTO":
            return self.error("PROTO in the middle of the pickle (corrupt)")
        return self.unsafe(f"pickle opcode {found.name} is not allowed (release files never use it)")

    def start(self) -> None:
        head = self.input.take(2) if self.input.left() >= 2 else b""
        if len(head) < 2 or head[0] != pickle.PROTO[0] or not 2 <= head[1] <= 5:
            raise DataError(f"{self.name}: not a pickle of protocol 2 to 5 (starts with {head[:2]!r})")

    def step(self) -> None:
        op = self.input.byte()
        handler = self.dispatch.get(op)
        if handler is None:
            raise self.refuse(op)
        self.new_id = None
        handler()

    def run_whole(self) -> Any:
        self.start()
        try:
            for _ in self.loop():  # never yields: without a streamed list nothing is handed out
                pass
        except _Stop:
            pass
        if self.metastack or len(self.stack) != 1:
            raise self.error("the pickle stops with other values on its stack (corrupt or crafted)")
        self.check_plain(self.stack, "the result")
        return self.stack[0]

    def run_streaming(self) -> Iterator[Any]:
        self.start()
        try:
            while self.outer is None:
                self.step()
                if self.outer is None and (self.stack or self.metastack):
                    raise self.error("expected a pickled list at the top level, but the pickle starts with "
                                     "something else")
            yield from self.loop()
        except _Stop:
            pass
        if self.outer is None:
            raise self.error("expected a pickled list at the top level, but the pickle holds no list")
        if self.metastack or len(self.stack) != 1 or self.stack[0] is not self.outer:
            raise self.error("the pickle stops with other values on its stack (corrupt or crafted)")
        if self.ready:
            yield from self.hand_out()
        if self.outer.count != self.yielded:
            raise self.error(f"the list holds {self.outer.count} items by the pickle's own semantics, but "
                             f"{self.yielded} were read (crafted file)")

    def loop(self) -> Iterator[Any]:
        """The hot loop until STOP (`step`, inlined), handing out the items of a streamed list as they finish."""
        inp, dispatch = self.input, self.dispatch
        while True:
            off = inp.off
            if off < inp.fast_end:
                op = inp.buf[off]
                inp.off = off + 1
            else:
                op = inp.byte()
            handler = dispatch.get(op)
            if handler is None:
                raise self.refuse(op)
            self.new_id = None
            handler()
            if self.stack is self.batch:
                self.hand_out_finished()
            elif self.batch is not None and not self.metastack:
                self.batch = None  # the batch's APPENDS ran
            if self.ready:
                yield from self.hand_out()

    def hand_out_finished(self) -> None:
        """A container item is finished when the next sibling container is created beside it.

        The pickler writes an item whole (EMPTY_LIST/EMPTY_DICT, then its children
        in MARK .. APPENDS/SETITEMS batches) before it starts the next one. A
        child created by the same opcode directly beside its parent (a one-child
        container holding a container) looks like a sibling: the parent is then
        handed out early, and the opcode that would add the child to it finds the
        placeholder and fails loudly (`check_plain`), never silently.
        """
        stack = self.stack
        if self.item_opcode is None:
            if len(stack) == 1:
                kind = type(stack[0])
                self.item_opcode = {list: pickle.EMPTY_LIST[0], dict: pickle.EMPTY_DICT[0]}.get(kind, -1) \
                    if self.new_id == id(stack[0]) else -1
            return
        sibling = list if self.item_opcode == pickle.EMPTY_LIST[0] else dict if self.item_opcode >= 0 else None
        if (sibling is not None and self.new_id is not None and len(stack) >= 2 and self.new_id == id(stack[-1])
                and type(stack[-1]) is sibling and stack[-2] is not _DONE and (len(stack) == 2 or stack[-3] is _DONE)):
            self.ready.append(stack[-2])
            stack[-2] = _DONE

    def hand_out(self) -> Iterator[Any]:
        items, self.ready = self.ready, []
        self.end_item()
        for item in items:
            self.yielded += 1
            yield item

    def end_item(self) -> None:
        """Forgets everything of the finished item(s) but small immutable atoms, and resets the budgets."""
        memo, consumed = self.memo, self.consumed
        for key in range(self.item_first_key, self.memo_len):
            if key in memo:
                value = memo[key]
                if value is not self.outer and (not _is_atom(value) or id(value) in consumed):
                    del memo[key]
        self.item_first_key = self.memo_len
        consumed.clear()
        self.big.clear()
        self.depth = {id(v): self.depth[id(v)] for v in self.stack if id(v) in self.depth}
        self.bytes_used = 0
        self.objects = 0


def _wrap_errors(reader: _Reader, exc: BaseException) -> DataError:
    if isinstance(exc, DataError):
        return exc
    if isinstance(exc, (OSError, EOFError)):
        return DataError(f"{reader.name}: read error (truncated or corrupt?): {type(exc).__name__}: "
                         f"{describe(str(exc))}")
    if isinstance(exc, MemoryError):
        return DataError(f"{reader.name}: out of memory while reading (at byte {reader.input.position})")
    return DataError(f"{reader.where()}: corrupt pickle: {type(exc).__name__}: {describe(str(exc))}")


def iter_list(file: BinaryIO, name: str = "<pickle>", *, size: Optional[int] = None,
              limits: Limits = DEFAULT_LIMITS) -> Iterator[Any]:
    """Yields the items of a pickled top-level list one at a time.

    Memory stays bounded by about one item (`limits`), whatever the file size:
    finished items are released from the reader's stack and memo. `size` is
    the number of bytes in `file` (needed for zip members; found for plain
    files and BytesIO).

    >>> import io, pickle
    >>> list(iter_list(io.BytesIO(pickle.dumps([[1, 2], [3]], protocol=5))))
    [[1, 2], [3]]

    Raises:
      UnsafePickleError: the file asks for a global, call or opcode release files never use.
      DataError: the file is truncated, corrupt, not a list, or over a limit.
    """
    reader = _Reader(file, name, size, limits, streaming=True)
    try:
        yield from reader.run_streaming()
    except Exception as exc:  # noqa: BLE001 - everything becomes one DataError naming the file
        raise _wrap_errors(reader, exc) from None


def load(file: BinaryIO, name: str = "<pickle>", *, size: Optional[int] = None,
         limits: Limits = DEFAULT_LIMITS) -> Any:
    """Loads a whole (small) pickle with the same restrictions as `iter_list`.

    The data budget is the larger of `limits.max_bytes` and the file's size.
    """
    reader = _Reader(file, name, size, limits, streaming=False)
    try:
        return reader.run_whole()
    except Exception as exc:  # noqa: BLE001 - any failure on untrusted bytes is one DataError naming the file
        raise _wrap_errors(reader, exc) from None


def loads(data: bytes, name: str = "<pickle>", *, limits: Limits = DEFAULT_LIMITS) -> Any:
    """`load` from bytes."""
    return load(io.BytesIO(data), name, limits=limits)


def pickle_protocol(head: bytes) -> int:
    """The protocol of a pickle from its first bytes; 0 when it has no PROTO opcode (protocol 0 or 1)."""
    if len(head) >= 2 and head[0] == pickle.PROTO[0]:
        return head[1]
    return 0


def count_items(file: BinaryIO, name: str = "<pickle>") -> int:
    """The number of items of a pickled top-level list, by an independent parse (`pickletools`).

    A symbolic run of the opcodes: it tracks only which stack slots and memo
    entries are the top-level list, and counts what APPEND/APPENDS add to it.
    Run it on a file `iter_list` has read (whose lengths are then known to be
    sane); `dropj verify` compares the two counts.
    """
    outer = object()
    stack: list = []
    metastack: list = []
    memo: dict = {}
    count = 0
    first = True
    try:
        for op, arg, _ in pickletools.genops(file):
            code = op.name
            if code in ("PROTO", "FRAME"):
                continue
            if code == "STOP":
                break
            if code == "MARK":
                metastack.append(stack)
                stack = []
                continue
            if code in ("BINPUT", "LONG_BINPUT", "PUT"):
                memo[arg] = stack[-1]
                continue
            if code == "MEMOIZE":
                memo[len(memo)] = stack[-1]
                continue
            if code in ("BINGET", "LONG_BINGET", "GET"):
                stack.append(memo[arg])
                continue
            if code == "APPENDS":
                items, stack = stack, metastack.pop()
                if stack[-1] is outer:
                    count += len(items)
                continue
            if code == "APPEND":
                stack.pop()
                if stack[-1] is outer:
                    count += 1
                continue
            before = op.stack_before
            if pickletools.markobject in before:
                stack = metastack.pop()
                before = before[:before.index(pickletools.markobject)]
            del stack[len(stack) - len(before):]
            for _ in op.stack_after:
                stack.append(outer if first and code == "EMPTY_LIST" else None)
            first = False
    except Exception as exc:  # noqa: BLE001 - pickletools on untrusted bytes: one DataError naming the file
        raise DataError(f"{name}: the independent parse failed: {type(exc).__name__}: {describe(str(exc))}") from None
    return count
