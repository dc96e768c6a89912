"""Safe reads of untrusted files: regular files only, opened without blocking, and the cap on an episode's
steps that every reader of episodes (the pickle reader, the TFRecord index) applies.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from dropj_datasets.schema import DataError

_READ_BUFFER = 1 << 20

# Every release episode ends at the environment's time limit (DATA_FORMATS.md 1.4, 2.1). A longer
# one is refused while it is read, before it can cost memory; this variable raises the cap.
MAX_STEPS_VARIABLE = "DROPJ_MAX_EPISODE_STEPS"
TIME_LIMIT = 1000


def max_episode_steps() -> int:
    """The cap on transitions per episode: the time limit, or `$DROPJ_MAX_EPISODE_STEPS`."""
    text = os.environ.get(MAX_STEPS_VARIABLE, "").strip()
    if not text:
        return TIME_LIMIT
    if not text.isdigit() or int(text) < 1:
        raise DataError(f"{MAX_STEPS_VARIABLE}={text[:40]!r}: expected a whole number of steps >= 1")
    return int(text)


def kind_of(mode: int) -> str:
    """What a file that is not a regular one is, for messages."""
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: os.PathLike | str, what: str = "file") -> BinaryIO:
    """Opens a regular file for reading; anything else (FIFO, device, socket) is refused by name.

    O_NONBLOCK keeps the open itself from blocking on a FIFO; fstat on the
    opened descriptor then decides, so the check and the read are of the
    same file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise DataError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot open the {what}: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise DataError(f"{path}: {kind_of(mode)}, not a regular file; only regular files are read")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=_READ_BUFFER)
    except BaseException:
        os.close(fd)
        raise
