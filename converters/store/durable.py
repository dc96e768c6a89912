"""A file is written whole or not at all, and survives a power loss once it is there.

Every file `dropj` writes outside TFDS's own writers (exports, manifests,
rescue files, the recorder's shards and metadata) goes through here.
"""

from __future__ import annotations

import glob
import hashlib
import os
import secrets
from pathlib import Path
from typing import Any, BinaryIO, Callable

from dropj_datasets.schema import DataError

PARTIAL_SUFFIX = ".dropj-partial"


class _Hashing:
    """A write-only file that hashes what goes through it."""

    def __init__(self, f: BinaryIO):
        self.f, self.digest = f, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.f.write(data)


def write_atomically(path: Path, write: Callable[[BinaryIO], Any], *, force: bool = False) -> tuple[Any, Any]:
    """A complete file or none. Returns (what `write` returned, the SHA-256 of the bytes).

    The bytes go to a temporary file created exclusively in the target's folder (O_EXCL and
    O_NOFOLLOW: a planted file or symlink is never followed), are flushed to disk, and the file is
    renamed over the target, whose folder is then flushed too. Any failure (disk full included)
    removes the temporary file. Temporary files of earlier, killed writes of the same name are removed.
    """
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(path) and not force:
        raise DataError(f"{path}: already exists; it is not replaced")
    for stale in folder.glob(f".{glob.escape(path.name)}.*{PARTIAL_SUFFIX}"):  # left by a killed export
        stale.unlink(missing_ok=True)
    temp = folder / f".{path.name}.{secrets.token_hex(6)}{PARTIAL_SUFFIX}"
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            with os.fdopen(fd, "wb", buffering=1 << 20) as raw:
                f = _Hashing(raw)
                result = write(f)
                raw.flush()
                os.fsync(raw.fileno())
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        fsync_directory(folder)
    except OSError as exc:
        raise naming(exc, path) from None
    return result, f.digest


def naming(exc: OSError, path: Path) -> OSError:
    """`exc` with the file it concerns: a full disk's `[Errno 28] No space left on device` says which file.

    An error that names a file already (the folder, say) is kept as it is."""
    if exc.filename is not None or exc.errno is None:
        return exc
    named = type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))
    named.__traceback__ = exc.__traceback__
    return named


def fsync_directory(folder: Path) -> None:
    """Makes a rename in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- one writer at a time -------------------------------------------------------------------------------

_HELD: set[int] = set()  # lock descriptors this process holds


def _close_in_child() -> None:
    # A forked child (the build's reader process) shares the lock's open file description: it
    # would keep the lock after this process died. Children never need it.
    for fd in list(_HELD):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_child)


class Busy(Exception):
    """Someone holds the lock; the message is what they wrote into the lock file."""


def take_lock(path: Path, holder: str) -> int:
    """An exclusive `flock` on `path`, with `holder` written into it; returns the descriptor (close it to release).

    Raises `Busy` (naming the holder) when another process has it.
    """
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        who = os.pread(fd, 300, 0).decode("utf-8", "replace").strip() or "another process"
        os.close(fd)
        raise Busy(who) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, holder.encode(), 0)
    _HELD.add(fd)
    return fd


def take_output_lock(path: Path, command: str, refused: Callable[[str], str]) -> int:
    """The lock of one command's output (`take_lock`, naming this process and `command`). Another run holding
    it is one DataError, `refused(holder)`: the commands that write an output like a build (`dropj encode`,
    `dropj make-queries`) say which output, who writes it, and what to do, and the CLI prints it as one line."""
    try:
        return take_lock(path, f"pid {os.getpid()}, {command}")
    except Busy as busy:
        raise DataError(refused(str(busy))) from None


def release_lock(fd: int) -> None:
    _HELD.discard(fd)
    os.close(fd)
