"""The build's pipeline for one release rollout file: a reader process, encoder processes, shared memory.

    reader process:     stream + unpickle (safe VM) + validate the next episodes,
                        writing each episode's frames into a free shared-memory slot
    encoder processes:  PNG of the frames waiting in a slot, a chunk per task
    the build's thread: TFDS encodes, serialises and writes the previous episode

Every stage but TFDS's runs in a process of its own, so none of them waits
for another's GIL: the safe unpickler and the palette search are Python and
numpy work that holds it. Frames never go through a pipe: the slots are an
anonymous shared mapping made before the processes fork, so a kill of the
build, even SIGKILL, leaves nothing behind (the kernel also kills the
helpers: `_die_with_parent`). The rest of an episode (actions, rewards,
flags) goes through a queue; encoded frames come back as bytes.

At most `depth + 3` episodes are in flight: `depth` queued, one being read,
one being encoded and one being written, whatever the size of the source.
Latent-state episodes (dream files) have no frames: the reader process alone.

Measured on 2 cores, a 2.1 GB Car Racing source: 7.9 to 8.2 s this way,
against 9.5 to 9.9 s with the frames pickled through the queue (35 ms per
episode in the reader alone) and encoded by threads of the build's process
(their GIL shared with TFDS); docs/benchmarks.md has today's figures.
"""

from __future__ import annotations

import dataclasses
import gc
import mmap
import multiprocessing
import multiprocessing.pool
import os
import queue
import signal
from typing import Any, Callable, Iterator, Optional

import numpy as np

from dropj_datasets import codec
from dropj_datasets.schema import DataError

Allocate = Callable[[tuple[int, ...], np.dtype], np.ndarray]
ReadEpisodes = Callable[[Allocate], Iterator[tuple[int, Any]]]  # (index, episode: `release.episodes.Episode`)

SLOT_BYTES_CAP = 64 << 20  # a longer episode's frames are pickled to the encoders instead
ENCODE_CHUNK = 128  # frames per encoder task
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel kills this process when the build's process ends, however it ends (SIGKILL too).

    Without it a helper stuck in one long step would outlive a killed build.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the queue timeouts below still notice an orphan
        pass
    if os.getppid() != parent:  # the parent ended before the signal was armed
        os._exit(1)


def _putter(out: Any, parent: int) -> Callable[[Any], None]:
    """`out.put` for a helper process: it waits while the queue is full, but not for a build that has gone."""
    def put(item: Any) -> None:
        while True:
            try:
                return out.put(item, timeout=1.0)
            except queue.Full:
                if os.getppid() != parent:  # the build was killed: do not linger as an orphan
                    os._exit(1)

    return put


def _received(results: Any, helper: Any, what: str) -> Iterator[Any]:
    """The items a helper process puts, until its None; its exception is raised here; its death is a
    DataError naming `what`."""
    while True:
        try:
            item = results.get(timeout=1.0)
        except queue.Empty:
            if not helper.is_alive():
                raise DataError(f"the {helper.name} process of {what} died (exit code {helper.exitcode})") from None
            continue
        if item is None:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


class FrameSlots:
    """Shared memory for the frames of the episodes in flight: `count` slots of `slot_bytes`.

    The reader takes a free slot, writes an episode's observations into it
    while it validates them, and sends the rest of the episode; encoders
    read the frames in place; the build frees the slot once they are encoded.
    """

    def __init__(self, context: Any, count: int, slot_bytes: int):
        self.slot_bytes = slot_bytes
        self._closed = False
        self._map = mmap.mmap(-1, count * slot_bytes)  # MAP_SHARED | MAP_ANONYMOUS: inherited by forks
        self._free = context.Queue()
        for slot in range(count):
            self._free.put(slot)

    def array(self, slot: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        count = int(np.prod(shape))
        return np.frombuffer(self._map, dtype=dtype, count=count, offset=slot * self.slot_bytes).reshape(shape)

    def take(self, parent: int) -> int:
        """A free slot (in the reader); waits for one, but not for a build that has gone."""
        while True:
            try:
                return self._free.get(timeout=1.0)
            except queue.Empty:
                if os.getppid() != parent:
                    os._exit(1)

    def release(self, slot: int) -> None:
        if not self._closed:  # the last episode is encoded after the reader has ended
            self._free.put(slot)

    def close(self) -> None:
        self._closed = True
        self._free.close()
        try:
            self._map.close()
        except BufferError:  # an array still refers to it: the mapping goes with the last one
            pass


@dataclasses.dataclass(frozen=True)
class InSlot:
    """Where an episode's observations wait in `FrameSlots`."""

    slot: int
    shape: tuple[int, ...]
    dtype: str


class _SlotAllocator:
    """`from_legacy`'s `allocate` in the reader: observations go into a free slot when they fit."""

    def __init__(self, slots: FrameSlots, parent: int):
        self._slots, self._parent = slots, parent
        self.taken: Optional[InSlot] = None

    def __call__(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        if int(np.prod(shape)) * dtype.itemsize > self._slots.slot_bytes:
            return np.empty(shape, dtype)
        slot = self._slots.take(self._parent)
        self.taken = InSlot(slot, tuple(shape), dtype.str)
        return self._slots.array(slot, shape, dtype)


def _read_worker(read: ReadEpisodes, out: Any, parent: int, slots: Optional[FrameSlots]) -> None:
    _die_with_parent(parent)
    # The safe reader makes some 25 objects per step and no cycles (it refuses a memo reference to a
    # container), so the collector's default generation-0 threshold (700) only costs time: 7 % of
    # the build on 2 cores. Collections still happen, 140 times less often.
    gc.set_threshold(100_000, 50, 100)
    put = _putter(out, parent)
    try:
        allocator = _SlotAllocator(slots, parent) if slots is not None else None
        for index, ep in read(allocator or np.empty):
            taken = None
            if allocator is not None:
                taken, allocator.taken = allocator.taken, None
                if taken is not None:
                    ep = dataclasses.replace(ep, observations=None)  # it waits in the slot
            put((index, ep, taken))
        put(None)
    except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
        put(exc)


# --- encoder processes -------------------------------------------------------------------------------

_SLOTS: Optional[FrameSlots] = None  # the slots, in an encoder process (set before the fork)


def _encoder_start(parent: int, slots: Optional[FrameSlots]) -> None:
    global _SLOTS
    _die_with_parent(parent)
    _SLOTS = slots


def _encode_task(codec_name: str, frames: Any, start: int, stop: int) -> list[bytes]:
    """In an encoder process: frames [start, stop) of an episode, waiting in a slot (`InSlot`) or sent."""
    if isinstance(frames, InSlot):
        frames = _SLOTS.array(frames.slot, frames.shape, np.dtype(frames.dtype))
    encode = codec.CODECS[codec_name].encode
    return [encode(frame) for frame in frames[start:stop]]


class EncodedFrames:
    """An episode's frames being encoded; `result()` waits for their bytes, in order, and frees the slot."""

    def __init__(self, tasks: list[multiprocessing.pool.AsyncResult], release: Callable[[], None]):
        self._tasks, self._release = tasks, release

    def result(self) -> list[bytes]:
        try:
            return [data for task in self._tasks for data in task.get()]
        finally:
            self._release()


class Pipeline:
    """Reads episodes in a reader process and encodes their frames in encoder processes; a context manager.

    `read(allocate)` yields (index, episode) and runs in the reader process;
    `frame_codec` is None when observations are not images (no encoders then).
    """

    def __init__(self, read: ReadEpisodes, frame_codec: Optional[codec.FrameCodec], slot_bytes: int,
                 what: str, depth: int = 2, encoders: Optional[int] = None):
        self._what = what
        self._codec = frame_codec
        # fork, not spawn: spawn re-runs the parent's __main__, which fails for `python -c`, notebooks
        # and stdin. The children touch only numpy, zlib, zipfile and the reader, none of the parent's
        # threads' state (TensorFlow's).
        context = multiprocessing.get_context("fork")
        self._results = context.Queue(maxsize=depth)
        self._slots = None
        if frame_codec is not None and slot_bytes <= SLOT_BYTES_CAP:
            self._slots = FrameSlots(context, depth + 3, slot_bytes)
        self._reader = context.Process(target=_read_worker, args=(read, self._results, os.getpid(), self._slots),
                                       name="dropj-reader", daemon=True)
        self._encoders = None
        # A child's garbage collector would write to every inherited object header, copying the
        # pages it shares with this process; frozen objects are left alone.
        gc.freeze()
        try:
            self._reader.start()
            if frame_codec is not None:
                self._encoders = context.Pool(encoders or codec.usable_cpus(), _encoder_start,
                                              (os.getpid(), self._slots))
        except BaseException:
            self.close()
            raise
        finally:
            gc.unfreeze()

    def episodes(self) -> Iterator[tuple[int, Any, Optional[EncodedFrames]]]:
        """(index, episode, its frames being encoded or None); `frames.result()` before the next-but-one."""
        for index, ep, taken in _received(self._results, self._reader, self._what):
            if self._encoders is None:
                yield index, ep, None
                continue
            if taken is not None:
                ep = dataclasses.replace(ep, observations=self._slots.array(taken.slot, taken.shape,
                                                                             np.dtype(taken.dtype)))
            count, tasks = len(ep.observations), []
            for start in range(0, count, ENCODE_CHUNK):
                stop = min(start + ENCODE_CHUNK, count)
                if taken is not None:
                    args = (self._codec.name, taken, start, stop)
                else:  # too long for a slot: the frames go to the encoder through a pipe
                    args = (self._codec.name, ep.observations[start:stop], 0, stop - start)
                tasks.append(self._encoders.apply_async(_encode_task, args))
            release = (lambda slot=taken.slot: self._slots.release(slot)) if taken is not None else _nothing
            yield index, ep, EncodedFrames(tasks, release)

    def close(self) -> None:
        if self._reader.is_alive():
            self._reader.terminate()
        if self._reader.pid is not None:
            self._reader.join()
        self._results.close()
        if self._encoders is not None:
            self._encoders.terminate()
            self._encoders.join()
        if self._slots is not None:
            self._slots.close()

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _nothing() -> None:
    pass


# --- a pipeline started from a process that must not fork ---------------------------------------------

def _fresh_worker(produce: Callable[[], Iterator[Any]], out: Any, parent: int) -> None:
    _die_with_parent(parent)
    put = _putter(out, parent)
    try:
        for item in produce():
            put(item)
        put(None)
    except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
        put(exc)


def in_fresh_process(produce: Callable[[], Iterator[Any]], what: str, depth: int = 2) -> Iterator[Any]:
    """The items of `produce()`, run in a new interpreter (spawned: fork and exec at once).

    For callers whose own process must not fork: a Beam worker talks to its
    runner over gRPC from several threads, and a child forked from it aborted
    now and then (SIGABRT, after gRPC's "skipping fork() handlers"). The new
    interpreter has no such threads, so `Pipeline` forks its reader and
    encoders from there. `produce` must be picklable (a module-level function
    or a `functools.partial` of one); items come back pickled through a queue.
    """
    context = multiprocessing.get_context("spawn")
    results = context.Queue(maxsize=depth)
    # Not a daemon: it starts the pipeline's own processes. It is ended below, and dies with this one.
    worker = context.Process(target=_fresh_worker, args=(produce, results, os.getpid()), name="dropj-build")
    worker.start()
    try:
        yield from _received(results, worker, what)
    finally:
        if worker.is_alive():
            worker.terminate()
        worker.join()
        results.close()
