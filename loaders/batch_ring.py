"""Batches from DataLoader workers without a copy and without fresh shared memory each time.

    loader = RingLoader(dataset, batch_sampler, num_workers=2, multiprocessing_context='fork')
    for batch in loader: ...   # tensors that lie in a ring of shared buffers, reused

PyTorch sends a worker's batch to the main process in shared memory made
for that batch alone. Making it costs a page fault per 4 KiB page written:
on the machine of docs/benchmarks.md, 10 ms of kernel time for a 14 MB batch
of Car Racing windows, a quarter of a worker's time. Here the workers decode
into a ring of batch buffers in shared memory made once (`BatchRing`) and
send only the number of the buffer (`InRing`); the main process hands out
tensors that are views of it, and the buffer goes back to the ring when the
last tensor (or view of one) using it is freed: the storage of each tensor is
a numpy view made for that hand-out alone, and its finalizer returns the
buffer. A worker that finds no free buffer (the consumer holds on to many
batches) makes fresh shared memory as PyTorch does: never a wait.

A dataset read this way has ``batch_layout()`` ({name: (item shape, dtype)}),
``fill(indices, arrays)`` (decode the items into numpy rows) and
``assemble(tensors)`` (the batch from the buffers' tensors), as
`map_datasets.WindowDataset` and `VAEFrames` do.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.utils.data

FREE, TAKEN = 0, 1


def shared_tensor(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An empty tensor in shared memory whose pages are made when first written (PyTorch's own
    `default_collate` allocates its batches the same way)."""
    storage = torch.empty(0, dtype=dtype)._typed_storage()._new_shared(  # noqa: SLF001 - see tests/test_pinned_internals.py
        int(np.prod(shape)), device="cpu")
    return torch.empty(0, dtype=dtype).new(storage).resize_(*shape)


def torch_dtype(dtype: Any) -> torch.dtype:
    return torch.from_numpy(np.zeros(0, dtype)).dtype


@dataclasses.dataclass(frozen=True)
class InRing:
    """What a worker sends: the batch is rows [0, size) of buffer `slot`."""
    slot: int
    size: int


class BatchRing:
    """`count` buffers of `batch_size` items of each field of `layout`, shared by the main process and its
    workers, with a free / taken flag each; workers take a buffer under a lock, the main process gives
    it back when the batch's tensors are freed."""

    def __init__(self, layout: dict[str, tuple[tuple[int, ...], Any]], batch_size: int, count: int,
                 context: Any):
        self.buffers = {name: shared_tensor((count, batch_size, *shape), torch_dtype(dtype))
                        for name, (shape, dtype) in layout.items()}
        self.flags = shared_tensor((count,), torch.uint8)
        self.flags.zero_()
        self.lock = context.Lock()
        self._held: dict[int, int] = {}  # main process: slot -> tensors handed out and still alive
        self._held_lock = threading.Lock()

    def __getstate__(self) -> dict:
        return dict(self.__dict__, _held={}, _held_lock=None)

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _held_lock=threading.Lock())

    def take(self) -> Any:
        """(slot, {name: numpy rows of the buffer}) of a free buffer, now taken; or None."""
        with self.lock:
            free = torch.nonzero(self.flags == FREE)
            if not len(free):
                return None
            slot = int(free[0, 0])
            self.flags[slot] = TAKEN
        return slot, {name: buffer[slot].numpy() for name, buffer in self.buffers.items()}

    def hand_out(self, sent: InRing) -> dict[str, torch.Tensor]:
        """The tensors of a batch a worker sent, each on its own numpy view of the buffer; the buffer is
        free again once every one of them (and every view of them) is freed."""
        tensors = {}
        with self._held_lock:
            self._held[sent.slot] = len(self.buffers)
        for name, buffer in self.buffers.items():
            rows = buffer[sent.slot, :sent.size].numpy()[...]  # a new ndarray object: this hand-out's own
            weakref.finalize(rows, self._release, sent.slot)
            tensors[name] = torch.from_numpy(rows)
        return tensors

    def _release(self, slot: int) -> None:
        with self._held_lock:
            self._held[slot] -= 1
            if self._held[slot]:
                return
            del self._held[slot]
        self.flags[slot] = FREE


class _RingBatches(torch.utils.data.Dataset):
    """`self[indices]`: a batch decoded into a free buffer of the ring (its number sent), or into fresh
    shared memory when none is free."""

    def __init__(self, dataset: Any, ring: BatchRing):
        self.dataset, self.ring = dataset, ring

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices: list[int]) -> Any:
        taken = self.ring.take() if torch.utils.data.get_worker_info() is not None else None
        if taken is None:
            return self.dataset.batch(indices)
        slot, arrays = taken
        try:
            self.dataset.fill(indices, {name: array[:len(indices)] for name, array in arrays.items()})
        except BaseException:
            self.ring.flags[slot] = FREE
            raise
        return InRing(slot, len(indices))


class RingLoader(torch.utils.data.DataLoader):
    """A DataLoader of whole batches (`batch_sampler` gives each batch's indices) read through a
    `BatchRing` of `num_workers * prefetch_factor + spare` buffers."""

    def __init__(self, dataset: Any, batch_sampler: Any, *, num_workers: int, batch_size: int,
                 multiprocessing_context: str, pin_memory: bool = False, spare: int = 4, **kwargs: Any):
        context = multiprocessing.get_context(multiprocessing_context)
        count = num_workers * (kwargs.get("prefetch_factor") or 2) + spare
        self.ring = BatchRing(dataset.batch_layout(), batch_size, count, context)
        self.batch_dataset = dataset
        self.pin = pin_memory
        super().__init__(_RingBatches(dataset, self.ring), sampler=batch_sampler, batch_size=None,
                         num_workers=num_workers, multiprocessing_context=context, **kwargs)

    def __iter__(self) -> Iterator[Any]:
        for sent in super().__iter__():
            yield self._ready(sent)  # not kept in this frame: the consumer alone holds the batch

    def _ready(self, sent: Any) -> Any:
        from torch.utils.data._utils.pin_memory import pin_memory

        batch = self.batch_dataset.assemble(self.ring.hand_out(sent)) if isinstance(sent, InRing) else sent
        return pin_memory(batch) if self.pin else batch
