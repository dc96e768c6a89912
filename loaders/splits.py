"""What both readers of `training_data` share: which dataset each model trains on by default, and the split
into train and validation (every `VALIDATION_EVERY`-th stored element validates; see `training_data`)."""

from __future__ import annotations

import re

import numpy as np

VALIDATION_EVERY = 10
DEFAULT_DATASETS = {"vae": "dropj_carracing/real", "mdnrnn": "dropj_carracing/dream",
                    "reward": "dropj_carracing/preferences_dropj", "sparse": "dropj_carracing/dros"}


def held_out(count: int, every: int = VALIDATION_EVERY) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) indices of `count` stored elements: every `every`-th validates."""
    indices = np.arange(count)
    validation = indices % every == 0
    return indices[~validation], indices[validation]


_SPLIT = re.compile(r"^(?P<name>[\w-]+)(?:\[(?P<start>[^:\]]*):(?P<stop>[^:\]]*)\])?$")
_BOUND = re.compile(r"^(?P<value>-?\d+(?:\.\d+)?)(?P<percent>%)?$")


def read_slice(split: str, count: int, splits: tuple[str, ...] = ("train",)) -> tuple[str, int, int]:
    """TFDS's split slicing (`split='train[:10%]'`, `'train[2:5]'`, `'train[-3:]'`): (split name, first
    record, one past the last) of a split of `count` records, as `tfds.load` reads them: a percentage is
    rounded to the closest record (TFDS's default rounding, Python's `round`), a negative bound counts from
    the end, and a bound beyond the split is refused as TFDS refuses it. `all` is every split (here: one).
    Not taken: sums of slices ('train[:5]+train[9:]'), shard units, 'pct1_dropremainder'."""
    match = _SPLIT.match(split.replace(" ", ""))
    if match is None:
        raise ValueError(f"split {split!r}: expected NAME or NAME[START:STOP], e.g. 'train', 'train[:10%]', "
                         "'train[2:5]'")
    name = splits[0] if match["name"] == "all" and len(splits) == 1 and match["start"] is None else match["name"]
    if name not in splits:
        raise ValueError(f"no split {name!r}; DROPJ datasets have {', '.join(map(repr, splits))}")
    bounds, units = [], set()
    for text, default in ((match["start"], 0), (match["stop"], count)):
        if not text:
            bounds.append(None if text is None else default)
            continue
        bound = _BOUND.match(text)
        if bound is None or (bound["percent"] is None and "." in bound["value"]):
            raise ValueError(f"split {split!r}: a bound is a whole number or a percentage, got {text!r}")
        units.add(bool(bound["percent"]))
        value = float(bound["value"])
        bounds.append(int(round(value * count / 100.0)) if bound["percent"] else int(value))
    if match["start"] is None:
        return name, 0, count
    if len(units) > 1:  # TFDS takes the first bound's unit for both
        raise ValueError(f"split {split!r}: give both bounds as whole numbers or both as percentages")
    start, stop = bounds
    if abs(start) > count or abs(stop) > count:
        raise ValueError(f"split {split!r}: beyond the {count} records of {name!r}")
    start, stop = start % count if start < 0 else start, stop + count if stop < 0 else stop
    return name, start, max(start, stop)
