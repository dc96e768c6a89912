"""Finding release files under a manual directory and opening them in place.

A release file is found by its exact base name anywhere below the directory,
either as a plain file or as a member of any `.zip` archive there (the
release's own archives included; Zip64 is handled by `zipfile`). Members are
streamed straight out of the archive: nothing is extracted to disk.

Untrusted input rules (docs/security.md):

* Only regular files are opened, after following symlinks. A FIFO, socket
  or device under a release name (or named `*.zip`) is refused by name; it is
  opened with O_NONBLOCK and checked with fstat, so even a file swapped for
  a FIFO after the directory was listed cannot make a read hang.
* Each archive's central directory is parsed once per process (`_Archives`),
  however many members are looked up; member sizes are taken from it once.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import lzma
import os
import stat
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator, Optional

from dropj.converters.store.files import kind_of, open_regular
from dropj_datasets.schema import DataError

_OPEN_ARCHIVES = 16  # archives kept open per process


class _Archives:
    """Open zip archives of this process, by path: each central directory is parsed once.

    Keyed by process id as well: the build's reader process is forked, and a
    descriptor shared with the parent would share its file offset.
    """

    def __init__(self) -> None:
        self._open: collections.OrderedDict[tuple[int, str], zipfile.ZipFile] = collections.OrderedDict()

    def get(self, path: Path) -> zipfile.ZipFile:
        key = (os.getpid(), str(path))
        archive = self._open.get(key)
        if archive is not None:
            self._open.move_to_end(key)
            return archive
        f = open_regular(path, "zip archive")
        try:
            archive = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as exc:
            f.close()
            raise DataError(f"{path}: corrupt zip archive: {exc}") from None
        self._open[key] = archive
        while len(self._open) > _OPEN_ARCHIVES:  # open members keep their archive's file alive
            _, oldest = self._open.popitem(last=False)
            oldest.close()
        return archive

    def forget(self, path: Path) -> None:
        archive = self._open.pop((os.getpid(), str(path)), None)
        if archive is not None:
            archive.close()


_ARCHIVES = _Archives()


@dataclasses.dataclass(frozen=True)
class SourceRef:
    """Where one release file lives: a plain path, or a member of a zip archive."""

    name: str  # the release file name, e.g. 'raw_user_rollouts_res84_ep600.pkl'
    path: Path  # the file itself, or the archive holding it
    member: Optional[str] = None  # path inside the archive
    known_size: Optional[int] = None  # uncompressed size, as found when indexing

    def ends_with(self, name: str) -> bool:
        """Whether the file's path ends with `name` ('data.pkl' or 'queries_s20/data.pkl')."""
        path = f"{self.path}/{self.member}" if self.member else str(self.path)
        return ("/" + path.replace(os.sep, "/")).endswith("/" + name)

    def __str__(self) -> str:
        return f"{self.path}!{self.member}" if self.member else str(self.path)

    @property
    def size(self) -> int:
        """Uncompressed size in bytes (a zip member never yields more than this)."""
        if self.known_size is not None:
            return self.known_size
        if self.member is None:
            with open_regular(self.path) as f:
                return os.fstat(f.fileno()).st_size
        return self._info().file_size

    def _info(self) -> zipfile.ZipInfo:
        try:
            return _ARCHIVES.get(self.path).getinfo(self.member)
        except KeyError:
            raise DataError(f"{self}: no such member in the archive") from None

    @contextlib.contextmanager
    def open(self) -> Iterator[BinaryIO]:
        """A binary stream of the file's bytes; archive members are decompressed on the fly."""
        try:
            if self.member is None:
                with open_regular(self.path) as f:
                    yield f
                return
            info = self._info()
            with _ARCHIVES.get(self.path).open(info) as f:
                yield f
        except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, NotImplementedError) as exc:
            raise DataError(f"{self}: corrupt zip archive: {exc}") from exc
        except (EOFError, OSError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise DataError(f"{self}: file vanished while reading: {exc}") from exc
            raise DataError(f"{self}: read error (truncated or corrupt?): {type(exc).__name__}: {exc}") from exc

    def read_bytes(self, limit: int) -> bytes:
        """The whole file, refused before reading when it is larger than `limit` bytes."""
        if self.size > limit:
            raise DataError(f"{self}: {self.size:,} bytes, more than the {limit:,} accepted for this file")
        with self.open() as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise DataError(f"{self}: more than {limit:,} bytes")
        return data


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for filename in sorted(filenames):
            yield Path(dirpath) / filename


def _key(name: str) -> str:
    """Lookup key: the base name with its parent folder, when it has one ('queries_s20/0.mp4')."""
    return "/".join(name.replace(os.sep, "/").rsplit("/", 2)[-2:])


class Index(dict):
    """Every candidate file below a manual directory: base name -> refs, plus 'folder/name' -> refs."""

    def __init__(self) -> None:
        super().__init__()
        self.by_folder: dict[str, list[SourceRef]] = {}
        self.irregular: dict[str, str] = {}  # base name -> why it cannot be read

    def add(self, ref: SourceRef) -> None:
        self.setdefault(ref.name, []).append(ref)
        full = f"{ref.path}/{ref.member}" if ref.member else str(ref.path)
        self.by_folder.setdefault(_key(full), []).append(ref)

    def candidates(self, name: str) -> list[SourceRef]:
        refs = self.by_folder.get(_key(name), []) if "/" in name else self.get(name, [])
        return [ref for ref in refs if ref.ends_with(name)]


def index(root: os.PathLike | str) -> Index:
    """Every candidate file below `root` by base name (plain files and zip members)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: manual directory does not exist")
    found = Index()
    for path in _walk(root):
        try:
            st = os.stat(path)  # follows symlinks
        except OSError as exc:
            found.irregular[path.name] = f"{path}: cannot be read ({exc.strerror})"
            continue
        if not stat.S_ISREG(st.st_mode):
            why = f"{path}: {kind_of(st.st_mode)}, not a regular file; only regular files are read"
            if path.suffix == ".zip":
                raise DataError(why)
            found.irregular[path.name] = why
            continue
        if path.suffix == ".zip":
            archive = _ARCHIVES.get(path)
            for member in archive.infolist():
                if not member.is_dir():
                    name = member.filename.rsplit("/", 1)[-1]
                    found.add(SourceRef(name, path, member.filename, member.file_size))
        else:
            found.add(SourceRef(path.name, path, None, st.st_size))
    return found


def locate(root: os.PathLike | str, names: tuple[str, ...], *, required: tuple[str, ...],
           found: Optional[Index] = None) -> dict[str, SourceRef]:
    """Resolves release file names to one source each.

    A name may carry its release folder (`queries_s20/data.pkl`) when the base
    name alone is ambiguous; it then matches paths ending that way.
    Raises a DataError listing every missing required file, any name that
    exists twice (say as both a .pkl and inside a .zip) with different sizes,
    and any that is not a regular file.
    """
    found = index(root) if found is None else found
    result: dict[str, SourceRef] = {}
    problems = []
    missing = []
    for name in names:
        refs = found.candidates(name)
        if not refs:
            base = name.rsplit("/", 1)[-1]
            if base in found.irregular:
                problems.append(found.irregular[base])
            elif name in required:
                missing.append(name)
            continue
        sizes = {ref.size for ref in refs}
        if len(sizes) > 1:
            problems.append(f"{name} found {len(refs)} times with different sizes: " +
                            ", ".join(str(ref) for ref in refs[:5]))
            continue
        result[name] = refs[0]
    if missing:
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        problems.insert(0, "missing " + ", ".join(missing[:10]) + more)
    if problems:
        raise DataError(f"{root}: " + "; ".join(problems[:10]) +
                        " (place the release .pkl files or their .zip archives anywhere under this directory)")
    return result
