"""Built RLDS datasets -> the release's legacy pickles (`dropj export`).

Nothing outside the output directory is written, whatever a dataset's
metadata says; every file is written atomically, and a manifest written last
marks a complete export.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional

from dropj.converters.store import dataset_dir
from dropj.converters.roundtrip.built import BuiltDataset
from dropj.converters.store.durable import write_atomically
from dropj.converters.release.kinds import LegacyFile
from dropj_datasets.schema import DataError, counted

_APPENDS_BATCH = 1000  # what the pickle module itself uses


class ListPickleWriter:
    """Writes a pickled list item by item, so memory holds one item, not the list.

    The pickler runs in "fast" mode (no memo): items share no objects, so the
    file loads to exactly the same values and types as the release's file,
    while nothing pins finished items in memory. Items go out in MARK ..
    APPENDS batches of 1000, as the pickle module writes them, but each item
    is written as soon as it is appended.
    """

    def __init__(self, file: BinaryIO, protocol: int):
        if not 2 <= protocol <= pickle.HIGHEST_PROTOCOL:
            raise ValueError(f"pickle protocol {protocol} not supported (2..{pickle.HIGHEST_PROTOCOL})")
        # The pure-Python pickler: the C one has no public way to write one item of a list at a time
        # (save, framing). Python 3.11 is pinned; tests/test_pinned_internals.py fails if it changes.
        self._pickler = pickle._Pickler(file, protocol)  # noqa: SLF001 - see tests/test_pinned_internals.py
        self._pickler.fast = True
        self._in_batch = 0
        self.count = 0
        self._pickler.write(pickle.PROTO + bytes([protocol]))
        if protocol >= 4:
            self._pickler.framer.start_framing()
        self._pickler.write(pickle.EMPTY_LIST)

    def append(self, item: Any) -> None:
        pickler = self._pickler
        if self._in_batch == 0:
            pickler.write(pickle.MARK)
        pickler.save(item)
        pickler.framer.commit_frame()
        self._in_batch += 1
        self.count += 1
        if self._in_batch == _APPENDS_BATCH:
            pickler.write(pickle.APPENDS)
            self._in_batch = 0

    def close(self) -> None:
        if self._in_batch:
            self._pickler.write(pickle.APPENDS)
        self._pickler.write(pickle.STOP)
        self._pickler.framer.end_framing()



MANIFEST_PREFIX = "MANIFEST-"


def _manifest_name(built: BuiltDataset) -> str:
    return f"{MANIFEST_PREFIX}{built.builder.name}-{built.builder.builder_config.name}.json"


def export(dataset: str, out_dir: str | os.PathLike, data_dir: Optional[str] = None, *, force: bool = False,
           log: Callable[[str], None] = print, progress: bool = False) -> list[Path]:
    """Writes the release files of a built config into `out_dir` (release folders kept); returns their paths.

    Nothing outside `out_dir` is written, whatever the dataset's metadata says; an existing file is
    replaced only with `force`. Each file is written to a temporary file created exclusively beside
    it, flushed to disk, then renamed; a failure removes the temporary file. A manifest
    (`MANIFEST-<dataset>-<config>.json`, with each file's size and SHA-256) is written last: an export
    without it is incomplete.
    """
    built = BuiltDataset.open(dataset, data_dir)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir}: is a file; --out must be a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    legacy_files = built.legacy_files()
    manifest = dataset_dir.resolve_under(out_dir, _manifest_name(built))
    targets = [dataset_dir.resolve_under(out_dir, f.name) for f in legacy_files if f.kind != "raw"]
    raw_folders = [dataset_dir.resolve_under(out_dir, f.name.rsplit("/", 1)[0]) for f in legacy_files
                   if f.kind == "raw"]
    existing = [p for p in targets if os.path.lexists(p)] + [p for folder in raw_folders if folder.is_dir()
                                                            for p in sorted(folder.glob("*.mp4"))]
    if existing and not force:
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        raise DataError(f"{', '.join(map(str, existing[:3]))}{more}: already exist; pass --force to replace them")
    if os.path.lexists(manifest):
        if not force:
            raise DataError(f"{manifest}: an earlier export is here; pass --force to replace it")
        manifest.unlink()  # first: until the new one is written last, the set is visibly incomplete
    written: list[Path] = []
    entries: list[dict] = []
    bar = progress_bar(progress, built.count * len([f for f in legacy_files if f.kind != "pickle"]), "export")
    try:
        for legacy in legacy_files:
            if legacy.kind == "raw":
                for name, data in legacy.content():
                    path = dataset_dir.resolve_under(out_dir, name)
                    _, digest = write_atomically(path, functools.partial(_write_bytes, data=data), force=force)
                    written.append(path)
                    entries.append(_entry(out_dir, path, digest))
                    bar.update(1)
                log(f"wrote {legacy.name} under {out_dir}")
                continue
            protocol = built.episode_protocol() if legacy.protocol is None else legacy.protocol
            path = dataset_dir.resolve_under(out_dir, legacy.name)
            count, digest = write_atomically(path, functools.partial(_write_pickle, legacy=legacy, protocol=protocol,
                                                                     bar=bar), force=force)
            log(f"wrote {path} (" + (f"{counted(count, 'item')}, " if legacy.kind == "list" else "")
                + f"protocol {protocol})")
            written.append(path)
            entries.append(_entry(out_dir, path, digest))
    finally:
        bar.close()
    body = json.dumps({"dataset": built.builder.name, "config": built.builder.builder_config.name,
                       "version": str(built.builder.version), "complete": True, "files": entries}, indent=1)
    write_atomically(manifest, functools.partial(_write_bytes, data=body.encode()), force=True)
    return written


def _entry(out_dir: Path, path: Path, digest: Any) -> dict:
    return {"name": str(path.relative_to(out_dir.resolve())), "bytes": path.stat().st_size,
            "sha256": digest.hexdigest()}


def progress_bar(enabled: bool, total: int, what: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total or None, desc=what, unit="item", disable=None if enabled else True, dynamic_ncols=True)


def _write_bytes(f: BinaryIO, data: bytes) -> None:
    f.write(data)


def _write_pickle(f: BinaryIO, legacy: LegacyFile, protocol: int, bar: Any = None) -> Optional[int]:
    """Writes one legacy pickle; returns the number of items of a list file."""
    if legacy.kind == "pickle":
        pickle.dump(legacy.content(), f, protocol=protocol)
        return None
    writer = ListPickleWriter(f, protocol)
    for item in legacy.content():
        writer.append(item)
        if bar is not None:
            bar.update(1)
    writer.close()
    return writer.count


