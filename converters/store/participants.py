"""Who a participant is, one way for every tool: the release's integer ids, and text ids mapped onto them.

    user = resolve('OUT', '31')     # 31: an integer id is itself (the release's annotators are 26 and 27)
    user = resolve('OUT', 'p07')    # 1000 the first time, the same ever after: kept in OUT/dropj_participants/ids.json

`dropj record --user` and `dropj annotate --user` take the same ids (`parse`): a whole number, or a text id (1 to
64 printable characters, not all digits). Where an integer is needed (an annotation's `user_id`, as the release's
responses have it), a text id is given the next free integer from `FIRST_MAPPED` on, above every id of the
release. The mapping is kept under the tools' `--out`, in `OUT/dropj_participants/ids.json` ({text: integer}),
written whole or not at all (`durable.write_atomically`) under a lock (`ids.json.lock`), so two tools starting at
once give one text id one integer. A recording keeps the text as the driver gave it (`user_id_text`); the file
says which integer that text id is once it has annotated.

The file is read as untrusted input: a regular file of at most `MAX_BYTES`, a JSON object of text ids to
integers in range, one integer per text id; anything else is one error naming the file, never overwritten.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Union

from dropj_datasets.schema import DataError

from . import durable
from .files import open_regular

FOLDER = "dropj_participants"
FILE = "ids.json"
FIRST_MAPPED = 1000  # the first integer a text id is given: above every id of the release (26, 27)
MAX_ID = 2**31 - 1
MAX_TEXT = 64
MAX_BYTES = 4 << 20
LOCK_WAIT_S = 10.0


def parse(given: Union[str, int]) -> Union[int, str]:
    """An id as a tool takes it: an int for a whole number (0..2**31-1), else a checked text id."""
    text = str(given).strip()
    if text.isdigit() and text.isascii():
        value = int(text)
        if value > MAX_ID:
            raise ValueError(f"a user id is at most {MAX_ID:,}, got {text[:20]}")
        return value
    if not 0 < len(text) <= MAX_TEXT or not text.isprintable() or text.startswith("-"):
        raise ValueError(f"a user id is a whole number or 1 to {MAX_TEXT} printable characters, got {text[:80]!r}")
    return text


def path(out: Union[str, os.PathLike]) -> Path:
    return Path(out) / FOLDER / FILE


def read(out: Union[str, os.PathLike]) -> dict[str, int]:
    """The mapping kept under `out` ({} when there is none), checked."""
    where = path(out)
    if not os.path.lexists(where):
        return {}
    if where.is_symlink():
        raise DataError(f"{where}: a symlink; the participants file is read in the folder itself")
    with open_regular(where, "participants file") as f:
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise DataError(f"{where}: larger than {MAX_BYTES:,} bytes; not a participants file dropj wrote")
    try:
        mapping = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise DataError(f"{where}: not a JSON object of text ids to integers; not a file dropj wrote") from None
    if not isinstance(mapping, dict) or not all(
            isinstance(k, str) and type(v) is int and FIRST_MAPPED <= v <= MAX_ID for k, v in mapping.items()):
        raise DataError(f"{where}: expected {{text id: integer from {FIRST_MAPPED}}}, got something else; "
                        "not a file dropj wrote")
    if len(set(mapping.values())) != len(mapping):
        raise DataError(f"{where}: two text ids share one integer; not a file dropj wrote")
    return mapping


def resolve(out: Union[str, os.PathLike], given: Union[str, int]) -> int:
    """The integer of a user id: itself when a whole number, else the one `out`'s mapping gives the text id
    (given the next free one, and kept, the first time)."""
    user = parse(given)
    if isinstance(user, int):
        return user
    known = read(out).get(user)
    if known is not None:
        return known
    where = path(out)
    where.parent.mkdir(parents=True, exist_ok=True)
    lock = _locked(where.with_name(FILE + ".lock"))
    try:
        mapping = read(out)  # again, under the lock: another tool may have just added it
        if user not in mapping:
            mapping[user] = max([FIRST_MAPPED - 1, *mapping.values()]) + 1
            body = json.dumps(mapping, indent=1, sort_keys=True).encode()
            durable.write_atomically(where, lambda f: f.write(body), force=True)
        return mapping[user]
    finally:
        durable.release_lock(lock)


def _locked(lock_path: Path) -> int:
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            return durable.take_lock(lock_path, f"pid {os.getpid()}, mapping a user id")
        except durable.Busy as busy:
            if time.monotonic() > deadline:
                raise DataError(f"{lock_path}: held by {busy} for over {LOCK_WAIT_S:g} s") from None
            time.sleep(0.05)


__all__ = ["FIRST_MAPPED", "parse", "path", "read", "resolve"]
