"""`Field`: one stored field (shape, dtype, units, range, meaning, encoding), and the tables of fields that
`docs/schema.md` shows."""

from __future__ import annotations

import dataclasses
import numpy as np

from .keys import EPISODE_METADATA, STEPS


@dataclasses.dataclass(frozen=True)
class Field:
    """One stored field: what it is, in which units and range, and how it is encoded."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name; 'str' for text
    units: str
    range: str
    doc: str
    # a frame codec's name ('png': `codec.CODECS`), 'bytes' (raw little-endian), 'tensor', 'raw' (bytes as is)
    encoding: str = "tensor"

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(object if self.dtype in ("str", "bytes") else self.dtype)



def episode_fields(steps: tuple[Field, ...], metadata: tuple[Field, ...]) -> tuple[Field, ...]:
    """An RLDS episode's fields under their full paths: `steps/...` and `episode_metadata/...`."""
    return tuple(dataclasses.replace(f, name=f"{STEPS}/{f.name}") for f in steps) + tuple(
        dataclasses.replace(f, name=f"{EPISODE_METADATA}/{f.name}") for f in metadata)


def field_table(fields: tuple[Field, ...]) -> list[str]:
    rows = ["| field | shape | dtype | encoding | units | range | meaning |", "|---|---|---|---|---|---|---|"]
    for f in fields:
        encoding = "text" if f.dtype == "str" else f.encoding
        rows.append(f"| `{f.name}` | {list(f.shape)} | {f.dtype} | {encoding} | {f.units} | {f.range} | {f.doc} |")
    return rows
