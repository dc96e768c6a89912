"""Finding release files under a manual directory and opening them in place.

A release file is found by its exact base name anywhere below the directory,
either as a plain file or as a member of any `.zip` archive there (the
release's own archives included; Zip64 is handled by `zipfile`). Members are
streamed straight out of the archive: nothing is extracted to disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import lzma
import os
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator, Optional

from dropj_datasets.schema import DataError

_READ_BUFFER = 1 << 20


@dataclasses.dataclass(frozen=True)
class SourceRef:
    """Where one release file lives: a plain path, or a member of a zip archive."""

    name: str  # the release file name, e.g. 'raw_user_rollouts_res84_ep600.pkl'
    path: Path  # the file itself, or the archive holding it
    member: Optional[str] = None  # path inside the archive

    def ends_with(self, name: str) -> bool:
        """Whether the file's path ends with `name` ('data.pkl' or 'queries_s20/data.pkl')."""
        path = f"{self.path}/{self.member}" if self.member else str(self.path)
        return ("/" + path.replace(os.sep, "/")).endswith("/" + name)

    def __str__(self) -> str:
        return f"{self.path}!{self.member}" if self.member else str(self.path)

    @property
    def size(self) -> int:
        """Uncompressed size in bytes."""
        if self.member is None:
            return self.path.stat().st_size
        with zipfile.ZipFile(self.path) as archive:
            return archive.getinfo(self.member).file_size

    @contextlib.contextmanager
    def open(self) -> Iterator[BinaryIO]:
        """A binary stream of the file's bytes; archive members are decompressed on the fly."""
        try:
            if self.member is None:
                with open(self.path, "rb", buffering=_READ_BUFFER) as f:
                    yield f
                return
            with zipfile.ZipFile(self.path) as archive, archive.open(self.member) as f:
                yield f
        except (zipfile.BadZipFile, zlib.error, lzma.LZMAError) as exc:  # damaged compressed data too
            raise DataError(f"{self}: corrupt zip archive: {exc}") from exc
        except (EOFError, OSError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise DataError(f"{self}: file vanished while reading: {exc}") from exc
            raise DataError(f"{self}: read error (truncated or corrupt?): {type(exc).__name__}: {exc}") from exc


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for filename in sorted(filenames):
            yield Path(dirpath) / filename


def index(root: os.PathLike | str) -> dict[str, list[SourceRef]]:
    """Every candidate file below `root` by base name (plain files and zip members)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: manual directory does not exist")
    found: dict[str, list[SourceRef]] = {}
    for path in _walk(root):
        if path.suffix == ".zip":
            try:
                with zipfile.ZipFile(path) as archive:
                    members = [m for m in archive.infolist() if not m.is_dir()]
            except zipfile.BadZipFile as exc:
                raise DataError(f"{path}: corrupt zip archive: {exc}") from exc
            for member in members:
                name = member.filename.rsplit("/", 1)[-1]
                found.setdefault(name, []).append(SourceRef(name, path, member.filename))
        else:
            found.setdefault(path.name, []).append(SourceRef(path.name, path))
    return found


def locate(root: os.PathLike | str, names: tuple[str, ...], *, required: tuple[str, ...],
           found: Optional[dict[str, list[SourceRef]]] = None) -> dict[str, SourceRef]:
    """Resolves release file names to one source each.

    A name may carry its release folder (`queries_s20/data.pkl`) when the base
    name alone is ambiguous; it then matches paths ending that way.
    Raises a DataError listing every missing required file, or any name that
    exists twice (say as both a .pkl and inside a .zip) with different sizes.
    """
    found = index(root) if found is None else found
    result: dict[str, SourceRef] = {}
    problems = []
    missing = []
    for name in names:
        refs = [ref for ref in found.get(name.rsplit("/", 1)[-1], []) if ref.ends_with(name)]
        if not refs:
            if name in required:
                missing.append(name)
            continue
        sizes = {ref.size for ref in refs}
        if len(sizes) > 1:
            problems.append(f"{name} found {len(refs)} times with different sizes: " +
                            ", ".join(str(ref) for ref in refs))
            continue
        result[name] = refs[0]
    if missing:
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        problems.insert(0, "missing " + ", ".join(missing[:10]) + more)
    if problems:
        raise DataError(f"{root}: " + "; ".join(problems) +
                        " (place the release .pkl files or their .zip archives anywhere under this directory)")
    return result
