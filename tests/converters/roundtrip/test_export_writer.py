"""`ListPickleWriter`: the export's item-by-item pickled list."""

from __future__ import annotations

import io
import pickle
import tracemalloc

import numpy as np
import pytest

from dropj.converters.store import legacy_pickle
from dropj.converters.release.episodes import compare
from dropj.converters.roundtrip.export import ListPickleWriter


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("count", [0, 1, 999, 1000, 1001, 2001])
def test_writes_a_list_that_loads_exactly(protocol, count):
    items = [(np.arange(3.0) + i, i, float(i), {"crash": True} if i % 2 else {}) for i in range(count)]
    buffer = io.BytesIO()
    writer = ListPickleWriter(buffer, protocol)
    for item in items:
        writer.append(item)
    writer.close()
    data = buffer.getvalue()
    assert data[1] == protocol and writer.count == count
    assert compare(items, pickle.loads(data)) == []
    assert compare(items, list(legacy_pickle.iter_list(io.BytesIO(data)))) == []


class _Discard:
    def write(self, data) -> int:
        return len(data)


def test_holds_one_item_not_the_list():
    item_bytes = 5_000_000
    tracemalloc.start()
    try:
        writer = ListPickleWriter(_Discard(), 5)
        for i in range(20):
            writer.append(np.full(item_bytes, i, np.uint8))
        writer.close()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * item_bytes  # 20 items would be 100 MB
