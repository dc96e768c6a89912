"""The shard store: an append-only TFDS directory written by us alone, one closed shard per item.

    OUT/NAME/CONFIG/VERSION/
        dataset_info.json  features.json  metadata.json     TFDS's metadata (replaced atomically)
        NAME-train.tfrecord-00000 ...                      one closed shard per item
        .lock                                               who is writing here
        rescued/                                            items that could not be written

Every dataset our tools write keeps its items here: recordings (`recording.store`), annotations
(`feedback.annotations`) and latents (`derive.latents`), each a subclass with its own dataset name and
version, registered in `STORES` (which `repair` reads). The layout is TFDS's own
(`tfds.builder_from_directory` reads it), and the guarantees are ours:
* **One writer.** An exclusive lock (`flock` on `.lock`) is held for the
  whole session; a second writer is refused at once, with the holder named.
* **Nothing overwritten.** The next shard's index is the number of shards on
  disk, and a shard is written to a temporary file, flushed, and then
  hard-linked to its final name, which fails rather than replace a file.
* **Nothing half-listed.** `dataset_info.json` is rewritten after each
  shard, into a staging folder, flushed, and renamed over the old one: a
  reader sees the old list or the new one. A kill between a shard's link and
  its listing leaves one unlisted shard, numbered next: the next writer lists
  it once it reads whole. Any other disagreement between the list and the
  shards on disk is refused for appending; `repair` rebuilds the list.
* **Committed means committed, once.** `append` returns when the item is
  stored (shard and list on disk), or raises `NotStored` when nothing of it
  is there for the next open to see. A list that cannot be written after the
  shard was linked (a full disk) is resolved here, never by the caller: the
  shard is taken back out, or, if even that fails, it stays and counts as
  stored (the next list written, or the next open, lists it). So a caller
  that rescues an item it was told is not stored never doubles it.
* **Nothing lost silently.** An item that cannot be written is kept in a
  rescue file (`rescued/`, else this user's private `dropj-rescued-UID/` in
  the system's temporary folder, refused if someone else made it); the message
  gives the `dropj repair-recording` command that adds it back from where it
  is (`repair_command`). `repair` recognises a rescued item by its content
  (the serialized item, its index aside) and never adds one that is listed.
"""

from __future__ import annotations

import errno
import getpass
import hashlib
import os
import re
import secrets
import shlex
import shutil
import socket
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from dropj.converters.store import dataset_dir, durable, legacy_pickle
from dropj.converters.store.durable import PARTIAL_SUFFIX, fsync_directory, fsync_file, write_atomically
from dropj_datasets import schema

SPLIT = "train"
DATASET_INFO = "dataset_info.json"
LOCK = ".lock"
RESCUED = "rescued"
STAGING_PREFIX = ".metadata-"
RESCUE_FORMAT = "dropj-rescued-episode/1"
RESCUE_FOLDER_PREFIX = "dropj-rescued-"  # + the user's uid, in the system's temporary folder


class RecordingError(RuntimeError):
    """A store's directory cannot take this item (the message says why and what to do). Named for the
    recordings, the first store; every store raises it."""


class NotStored(RecordingError):
    """An item could not be written, and nothing of it is there for the next open to see (the message names
    the file and why: a full disk, say). The caller may keep it elsewhere (a rescue file) or try again."""


def shard_path(directory: Path, index: int, dataset: str) -> Path:
    return directory / dataset_dir.shard_name(dataset, dataset_dir.SHARD_INDEX_TEMPLATE, index, 0)


def shards_on_disk(directory: Path, dataset: str) -> list[int]:
    pattern = re.compile(rf"^{re.escape(dataset)}-{SPLIT}\.tfrecord-(\d{{5}})$")
    return sorted(int(m.group(1)) for p in directory.iterdir() if (m := pattern.match(p.name)))


STORES: dict[str, type["ShardStore"]] = {}  # dataset name -> its store class (`ShardStore.__init_subclass__`)


class ShardStore:
    """An open append-only dataset directory written by us alone: `append` one item at a time, then `close`.

    A subclass names its dataset, its version, what an item is, and how TFDS describes it (`_make_features`,
    `_make_info`). Defining one registers it in `STORES` by its dataset name, which `repair` looks up.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "DATASET" in cls.__dict__:  # a store of its own dataset (a subclass of a store is not another one)
            known = STORES.get(cls.DATASET)
            if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
                raise TypeError(f"{cls.__qualname__}: the dataset {cls.DATASET!r} already has a store, "
                                f"{known.__module__}.{known.__qualname__}")
            STORES[cls.DATASET] = cls

    DATASET = ""
    VERSION = ""  # each store's own: bumping one layout moves no other
    ITEM = "item"  # what one shard holds, for messages
    INDEX_FIELD: Optional[tuple[str, ...]] = None  # where an item holds its number in the directory, if it does
    WRITER, ONE = "writer", "writer"  # for messages: "another recording is writing here; one recorder per directory"

    def __init__(self, directory: Path, spec: Any, *, holder: str = "",
                 log: Callable[[str], None] = print, repairing: bool = False):
        """Opens `directory` for appending, holding its lock until `close`. With `repairing` (`repair`), the
        list is rebuilt from the shards on disk instead of being checked against them (`_rebuild`)."""
        self.directory = Path(directory)
        self.spec = spec
        self.log = log
        self.directory.mkdir(parents=True, exist_ok=True)
        self._appending = threading.Lock()  # several sessions of one process may share the store
        self._lock_fd: Optional[int] = _lock(self.directory, holder, self.WRITER, self.ONE)
        self._features = None
        self._info = None
        self.damaged: list[str] = []  # shard files `repairing` moved aside
        try:
            self._clear_leftovers()
            if repairing:
                self._rebuild()
                return
            self.shard_lengths, self.num_bytes = self._existing()
            adopted = self._adopt_unlisted()
            if adopted or not (self.directory / DATASET_INFO).exists():
                self._write_info()
        except BaseException:
            self.close()
            raise

    def _rebuild(self) -> None:
        """The list made again from the shards on disk: those that do not read whole are moved to `damaged/`
        (nothing is deleted), the others renumbered 0..n-1 in order where there are gaps."""
        lengths = []
        for index in shards_on_disk(self.directory, self.DATASET):
            path = shard_path(self.directory, index, self.DATASET)
            count = _records_in(path)
            if count is None:
                (self.directory / "damaged").mkdir(exist_ok=True)
                os.replace(path, self.directory / "damaged" / path.name)
                self.damaged.append(path.name)
                continue
            target = shard_path(self.directory, len(lengths), self.DATASET)
            if target != path:  # close a gap: link to the lower number, then drop the old name
                os.link(path, target)
                path.unlink()
            lengths.append(count)
        self.shard_lengths = lengths
        self.num_bytes = sum(shard_path(self.directory, i, self.DATASET).stat().st_size for i in range(len(lengths)))
        self._write_info()

    # -- opening --------------------------------------------------------------------------------------------
    def _clear_leftovers(self) -> None:
        for stale in self.directory.glob(STAGING_PREFIX + "*"):  # a kill during a metadata write
            shutil.rmtree(stale, ignore_errors=True)
        for stale in self.directory.glob("." + "*" + PARTIAL_SUFFIX):  # a kill during a shard write
            stale.unlink(missing_ok=True)
            self.log(f"removed {stale.name}: an {self.ITEM} a killed session was still writing")

    def _adopt_unlisted(self) -> bool:
        """Lists the one shard a kill left between its link and its listing (see `_existing`), once it reads
        whole; returns whether there was one."""
        if self._unlisted is None:
            return False
        path, self._unlisted = self._unlisted, None
        count = _records_in(path)
        if not count:
            raise RecordingError(f"{path}: not listed in {DATASET_INFO} and not readable whole; run `dropj "
                                 f"repair-recording {self.directory}` (it moves damaged shards aside)")
        self.shard_lengths.append(count)
        self.num_bytes += path.stat().st_size
        self.log(f"{self.directory}: listed {path.name}, an {self.ITEM} written whole just before the last session "
                 "was stopped")
        return True

    def _existing(self) -> tuple[list[int], int]:
        """The listed shards' lengths and bytes. A shard is linked into place before it is listed, so a kill
        between the two leaves exactly one more shard on disk than listed, numbered next: it is noted in
        `_unlisted`, for `_adopt_unlisted`. Any other disagreement is refused, naming `repair-recording`."""
        self._unlisted = None
        info_file = self.directory / DATASET_INFO
        on_disk = shards_on_disk(self.directory, self.DATASET)
        if not info_file.exists():
            if on_disk == [0]:
                self._unlisted = shard_path(self.directory, 0, self.DATASET)
                return [], 0
            if on_disk:
                raise RecordingError(f"{self.directory}: {len(on_disk)} {self.ITEM} shards but no {DATASET_INFO}; "
                                     f"run `dropj repair-recording {self.directory}`")
            return [], 0
        try:
            info = dataset_dir.read_json(info_file, dataset_dir.JSON_LIMITS[DATASET_INFO])
        except schema.DataError as exc:
            raise RecordingError(f"{info_file}: not readable JSON ({exc}); refusing to append to it; run "
                                 f"`dropj repair-recording {self.directory}`") from None
        name, config = (info.get("name"), info.get("configName")) if isinstance(info, dict) else (None, None)
        if (name, config) != (self.DATASET, self.spec.config):
            raise RecordingError(f"{self.directory}: holds {name}/{config}, expected {self.DATASET}/"
                                 f"{self.spec.config}; choose another --out")
        splits = info.get("splits") or [{}]
        lengths = [int(n) for n in splits[0].get("shardLengths", [])]
        if on_disk == list(range(len(lengths) + 1)):
            self._unlisted = shard_path(self.directory, len(lengths), self.DATASET)
        elif on_disk != list(range(len(lengths))):
            raise RecordingError(
                f"{self.directory}: {DATASET_INFO} lists {len(lengths)} {self.ITEM}s but the shards on disk are "
                f"{_ranges(on_disk)}; appending could overwrite or hide {self.ITEM}s. Run `dropj repair-recording "
                f"{self.directory}` to rebuild the list from the shards")
        return lengths, int(splits[0].get("numBytes", 0))

    # -- writing ----------------------------------------------------------------------------------------------
    @property
    def features(self) -> Any:
        if self._features is None:
            self._features = self._make_features()
        return self._features

    def _make_features(self) -> Any:
        """The features of the spec, as the builders make them (`dropj_datasets.features`)."""
        from dropj_datasets.features import features

        return features(self.spec)

    def _info_metadata(self) -> dict:
        """What the directory's metadata.json holds besides the dataset and config names."""
        return {}

    def _make_info(self, identity: Any) -> Any:
        """The TFDS DatasetInfo (splits aside) of the directory: the spec's card, features and licence."""
        import tensorflow_datasets as tfds

        from dropj_datasets import features

        return tfds.core.DatasetInfo(
            builder=identity, description=features.card(self.spec, self.spec.description + "."),
            features=self.features, homepage=features.HOMEPAGE,
            redistribution_info={"license": f"{features.LICENSE}. {features.REDISTRIBUTION}"}, disable_shuffling=True,
            metadata=tfds.core.MetadataDict({"dataset": self.DATASET, "config": self.spec.config,
                                             **self._info_metadata()}))

    @property
    def count(self) -> int:
        """Items listed in the directory."""
        return len(self.shard_lengths)

    def append(self, example: dict, index_field: Optional[tuple[str, ...]] = None) -> Path:
        """Writes one item as the next shard and lists it; returns the shard's path once both are on disk.

        Raises `NotStored` (naming the file) when the item could not be written: then nothing of it is
        there for the next open to see, so keeping it elsewhere cannot double it. Safe from several threads
        (the sessions of one `dropj record --web`): items are written one at a time, each in the next
        shard. `index_field` (the path to a field of `example`, e.g. (group, field)) is set to the item's
        number in the directory as it is written, so two sessions never give two items the same number."""
        with self._appending:
            if index_field is not None:
                example = _with_field(example, index_field, self.count)
            return self._append(example)

    def _append(self, example: dict) -> Path:
        import tensorflow as tf

        serialized = self.features.serialize_example(example)
        index = len(shards_on_disk(self.directory, self.DATASET))  # the files decide, never the list
        final = shard_path(self.directory, index, self.DATASET)
        temp = self.directory / f".{final.name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}"
        try:
            try:
                with tf.io.TFRecordWriter(str(temp)) as writer:
                    writer.write(serialized)
                fsync_file(temp)
                os.link(temp, final)  # fails if the name exists: a shard is never overwritten
            finally:
                temp.unlink(missing_ok=True)
        except (OSError, tf.errors.OpError) as exc:
            raise NotStored(f"{final}: could not be written ({_reason(exc)}); nothing of this {self.ITEM} was "
                            "stored") from None
        self._list(final)
        return final

    def _list(self, final: Path) -> None:
        """Lists the shard just linked at `final`, or takes it back out. Data can be lost or doubled here:
        the caller learns "stored" or `NotStored`, and the next open must agree with what it learnt.

        A list that fails to reach the disk (a full disk, an I/O error) leaves the old list in place,
        unless only the folder's flush failed after the new list was renamed in: the list on disk decides.
        Listed: stored. Not listed: the shard is unlinked (the next open sees nothing of it) and the caller
        gets `NotStored`. If even the unlink fails, the shard stays linked and counts as stored: the next
        list written lists it, and so does the next open (`_adopt_unlisted`) if none is.
        """
        size = final.stat().st_size
        self.shard_lengths.append(1)
        self.num_bytes += size
        try:
            fsync_directory(self.directory)
            self._write_info()
            return
        except Exception as exc:  # noqa: BLE001 - whatever failed, the store resolves it (a kill: `_existing`)
            problem = exc
        if self._listed() == len(self.shard_lengths):
            self.log(f"{self.directory / DATASET_INFO}: listed {final.name}, but flushing its folder failed "
                     f"({_reason(problem)}); a power loss now could still lose it")
            return
        self.shard_lengths.pop()
        self.num_bytes -= size
        try:
            final.unlink()
            fsync_directory(self.directory)
        except OSError as exc:
            if not final.exists():  # unlinked; only the flush failed: a power loss could bring it back unlisted,
                raise NotStored(    # and `repair` then recognises a rescue of it by its content
                    f"{self.directory / DATASET_INFO}: could not be written ({_reason(problem)}); the {self.ITEM} "
                    f"was taken back out of {final.name}, nothing of it is stored") from None
            self.shard_lengths.append(1)
            self.num_bytes += size
            self.log(f"{self.directory / DATASET_INFO}: could not be written ({_reason(problem)}), nor could "
                     f"{final.name} be taken back out ({_reason(exc)}); it stays, stored: the next list written "
                     "(or the next session) lists it")
            return
        raise NotStored(f"{self.directory / DATASET_INFO}: could not be written ({_reason(problem)}); the "
                        f"{self.ITEM} was taken back out of {final.name}, nothing of it is stored")

    def _listed(self) -> Optional[int]:
        """How many shards dataset_info.json on disk lists now; None if it does not read."""
        try:
            info = dataset_dir.read_json(self.directory / DATASET_INFO, dataset_dir.JSON_LIMITS[DATASET_INFO])
            return len(info["splits"][0]["shardLengths"])
        except (schema.DataError, OSError, KeyError, IndexError, TypeError):
            return None

    def _write_info(self) -> None:
        """TFDS's metadata files, dataset_info.json last, each written beside and renamed into place.

        The first write of a session writes them all (features.json, metadata.json, ...); after that only
        the shard list changes, so only dataset_info.json is replaced (about 3x faster per item).
        """
        import tensorflow_datasets as tfds

        if getattr(self, "_info", None) is None:
            identity = tfds.core.DatasetIdentity(
                name=self.DATASET, version=tfds.core.Version(self.VERSION), data_dir=str(self.directory),
                module_name="", config_name=self.spec.config, config_description=self.spec.description)
            self._info = self._make_info(identity)
            self._info_written = False
        info = self._info
        template = tfds.core.ShardedFileTemplate(
            data_dir=self.directory, template=dataset_dir.SHARD_INDEX_TEMPLATE,
            dataset_name=self.DATASET, split=SPLIT, filetype_suffix="tfrecord")
        info.set_splits(tfds.core.SplitDict([tfds.core.SplitInfo(
            name=SPLIT, shard_lengths=list(self.shard_lengths), num_bytes=self.num_bytes,
            filename_template=template)]))
        if self._info_written:
            write_atomically(self.directory / DATASET_INFO, lambda f: f.write(info.as_json.encode()), force=True)
            return
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.directory))
        try:
            info.write_to_directory(staging)
            for item in sorted(staging.iterdir(), key=lambda p: p.name == DATASET_INFO):
                fsync_file(item)
                os.replace(item, self.directory / item.name)
            fsync_directory(self.directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._info_written = True

    def rescue(self, example: dict, index: int, session: str) -> Path:
        """Keeps an item that could not be written: a pickle of the example, for `repair` to add back."""
        return write_rescue(self.directory, self.spec.config, self.ITEM, example, index, session)

    def identity(self, record: bytes) -> str:
        """What makes a serialized item the same item: the SHA-256 of its features, its own number
        (`INDEX_FIELD`) aside, which `append` sets as it writes."""
        import tensorflow as tf

        parsed = tf.train.Example.FromString(record)
        if self.INDEX_FIELD is not None:
            key = "/".join(self.INDEX_FIELD)
            if key in parsed.features.feature:
                del parsed.features.feature[key]
        return hashlib.sha256(parsed.SerializeToString(deterministic=True)).hexdigest()

    def close(self) -> None:
        if self._lock_fd is not None:
            durable.release_lock(self._lock_fd)
            self._lock_fd = None


def write_rescue(directory: Path, config: str, item: str, example: dict, index: int, session: str) -> Path:
    """A rescue file for an item of `directory` that could not be written (`repair` adds it back): in
    `directory/rescued/`, else this user's private folder in the system's temporary folder
    (`private_rescue_folder`; `repair_command` gives the command that reads it from there). Needs no lock,
    so a session whose server is gone keeps its finished episode this way too. The file names the
    directory it belongs to."""
    import pickle

    payload = pickle.dumps({"format": RESCUE_FORMAT, "config": config, "example": example,
                            "directory": str(Path(directory).resolve())}, protocol=5)
    name = f"{item}-{index}-{session or 'session'}-{secrets.token_hex(3)}.pkl"
    problems = []
    for folder in (Path(directory) / RESCUED, None):
        try:
            if folder is None:  # the fallback: made (or checked) only when it is needed
                folder = private_rescue_folder()
            else:
                folder.mkdir(parents=True, exist_ok=True)
            write_atomically(folder / name, lambda f: f.write(payload))
            return folder / name
        except OSError as exc:
            problems.append(f"{exc.filename or folder}: {exc.strerror or exc}")
    raise RecordingError("could not keep it in a rescue file either (" + "; ".join(problems) + ")")


def private_rescue_folder() -> Path:
    """`TMPDIR/dropj-rescued-UID`, this user's own folder for rescue files (mode 0700). The system's temporary
    folder is shared by every user: a folder there that is a symlink, not ours, or open to group or others
    was made by someone else, who could read the episodes rescued into it, lose them, or plant files that
    `repair-recording DIR FOLDER` would add; it is refused (an OSError naming it), never used."""
    folder = Path(tempfile.gettempdir()) / f"{RESCUE_FOLDER_PREFIX}{os.getuid()}"
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    try:  # never followed: a symlink by that name fails here (ELOOP)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise OSError(exc.errno, f"not a private folder of this user ({exc.strerror})", str(folder)) from None
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise OSError(errno.EACCES, f"not a private folder of this user (owner uid {info.st_uid}, mode "
                                    f"{stat.S_IMODE(info.st_mode):o})", str(folder))
    return folder


def repair_command(directory: str | os.PathLike, rescue: str | os.PathLike) -> str:
    """The command that adds the rescue file `rescue` back into `directory`: `repair` reads
    `directory/rescued/` by itself, and a file anywhere else when it is named."""
    command = f"dropj repair-recording {shlex.quote(str(directory))}"
    if Path(rescue).parent != Path(directory) / RESCUED:
        command += f" {shlex.quote(str(rescue))}"
    return command


def _with_field(example: dict, path: tuple[str, ...], value: Any) -> dict:
    """`example` with the field at `path` set to `value` (the dicts on the way copied, never changed)."""
    head, *rest = path
    return {**example, head: _with_field(example[head], tuple(rest), value) if rest else value}


def _reason(exc: BaseException) -> str:
    """Why a write failed, in a few words (the file is named by the message around it)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.rsplit("; ", 1)[-1][:200]  # TensorFlow's "PATH; No space left on device"


def _records_in(path: Path) -> Optional[int]:
    """How many records a shard holds, read whole (every length and CRC checked); None if it does not read."""
    import tensorflow as tf

    try:
        return sum(1 for _ in tf.data.TFRecordDataset(str(path)))
    except tf.errors.OpError:
        return None


def _ranges(indices: list[int]) -> str:
    if not indices:
        return "none"
    return f"{len(indices)} files, numbers {indices[0]}..{indices[-1]}" + (
        "" if indices == list(range(indices[0], indices[-1] + 1)) else " with gaps")


def _lock(directory: Path, holder: str, writer: str = "recording", one: str = "recorder") -> int:
    """The directory's exclusive lock: held until the store is closed (or the process ends)."""
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
    who = f"pid {os.getpid()} on {socket.gethostname()}, user {_user()}{', ' + holder if holder else ''}, " \
          f"since {started}"
    try:
        return durable.take_lock(directory / LOCK, who)
    except durable.Busy as busy:
        raise RecordingError(f"{directory}: another {writer} is writing here ({busy}); one {one} per "
                             "directory: wait for it to end, or choose another --out") from None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def repair(directory: str | os.PathLike, rescued: Sequence[str | os.PathLike] = (),
           log: Callable[[str], None] = print) -> str:
    """Rebuilds a recording's (or an annotation directory's) dataset_info.json from the shards on disk, and
    adds rescued items back: those in `directory/rescued/`, and the rescue files `rescued` names (files, or
    folders such as `TMPDIR/dropj-rescued-UID/`, where only this directory's are taken: the rescue files of
    other directories or configs there, and those that name no directory, are counted and left in place).

    Shards that cannot be read whole are moved to `damaged/` (nothing is deleted); the others are
    renumbered 0..n-1 in order if there are gaps. A rescued item already listed (the same content, its
    number aside: `ShardStore.identity`) is not added again; each rescue file taken is renamed
    `*.added` or `*.already-listed`, never deleted. Holds the directory's lock throughout.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise RecordingError(f"{directory}: no such directory")
    named = [Path(p) for p in rescued]
    for path in named:
        if not (path.is_dir() or path.is_file()):
            raise RecordingError(f"{path}: no such rescue file or folder")
    store_class, spec = _store_of(directory)
    store = store_class(directory, spec, holder="dropj repair-recording", log=log, repairing=True)
    dataset, damaged, lengths = store.DATASET, store.damaged, store.shard_lengths
    try:
        added = duplicates = others = 0
        files = _rescue_files(directory, named)
        listed = {store.identity(record) for i in range(len(lengths)) for record in
                  _records(shard_path(directory, i, dataset))} if files else set()
        for path, origin in files:
            example = _read_rescued(path, store.spec, directory, origin)
            if example is None:  # in a named folder: another directory's or config's, left there
                others += 1
                continue
            identity = store.identity(store.features.serialize_example(example))
            if identity in listed:  # stored already (its writer was told otherwise): never twice
                os.replace(path, path.with_name(path.name + ".already-listed"))
                duplicates += 1
                continue
            store.append(example, index_field=store.INDEX_FIELD)
            os.replace(path, path.with_name(path.name + ".added"))
            listed.add(identity)
            added += 1
        total = store.count
    finally:
        store.close()
    summary = f"{directory}: {total} {store.ITEM}s listed in {DATASET_INFO}"
    if added:
        summary += f", {added} of them rescued {store.ITEM}s added back"
    if duplicates:
        summary += f"; {duplicates} rescued {store.ITEM}s were already listed, not added again"
    if others:
        summary += f"; {others} rescue files of other directories or configs left where they are"
    if damaged:
        summary += f"; {len(damaged)} damaged shards moved to {directory / 'damaged'}"
    return summary


OWN, IN_FOLDER, NAMED = "own", "in a named folder", "named"  # where `repair` found a rescue file


def _rescue_files(directory: Path, named: list[Path]) -> list[tuple[Path, str]]:
    """(rescue file, where it was found: OWN, IN_FOLDER or NAMED) for `repair`: the directory's own rescued/
    first, each file once."""
    found: dict[Path, str] = {}
    for folder in [directory / RESCUED, *named]:
        if folder.is_dir():
            for path in sorted(folder.glob("*.pkl")):
                found.setdefault(path.resolve(), OWN if folder == directory / RESCUED else IN_FOLDER)
        elif folder.is_file():
            found[folder.resolve()] = NAMED
    return list(found.items())


def _records(path: Path) -> list[bytes]:
    import tensorflow as tf

    return [record.numpy() for record in tf.data.TFRecordDataset(str(path))]


def written_dataset(directory: Path) -> tuple[str, Any]:
    """The dataset name and spec of a version folder that one of our stores wrote (its dataset_info.json, else
    its path OUT/NAME/CONFIG/VERSION); a RecordingError for any other folder."""
    if not directory.is_dir():
        raise RecordingError(f"{directory}: no such directory")
    name = config = None
    info = directory / DATASET_INFO
    if info.exists():
        try:
            value = dataset_dir.read_json(info, dataset_dir.JSON_LIMITS[DATASET_INFO])
            name = value.get("name") if isinstance(value, dict) else None
            config = value.get("configName") if isinstance(value, dict) else None
        except schema.DataError:
            pass
    if config not in schema.WRITTEN.get(name, {}):
        name, config = directory.parent.parent.name, directory.parent.name
    if config not in schema.WRITTEN.get(name, {}):
        raise RecordingError(f"{directory}: not a recording's version folder (OUT/{schema.RECORDING_DATASET}/ENV/"
                             f"VERSION, ENV one of {sorted(schema.RECORDINGS)}) nor that of another dataset our "
                             f"tools write (OUT/NAME/CONFIG/VERSION, NAME one of {sorted(schema.WRITTEN)})")
    return name, schema.WRITTEN[name][config]


def _store_of(directory: Path) -> tuple[type[ShardStore], Any]:
    """The store class (`STORES`) and spec of a directory one of our stores wrote."""
    name, spec = written_dataset(directory)
    if name not in STORES:
        raise RecordingError(f"{directory}: the store of {name} is not loaded; repair it with "
                             f"`dropj repair-recording {shlex.quote(str(directory))}` (in Python: "
                             "dropj.converters.release.kinds.repair, which finds every store)")
    return STORES[name], spec


def _read_rescued(path: Path, spec: Any, directory: Path, origin: str) -> Optional[dict]:
    """The example of a rescue file for `directory`, or None for one of another directory or config found in a
    named folder (such a folder may hold the rescues of several recordings: they are left there).

    A file in the directory's own rescued/ is its own. A file from before rescue files named their directory
    is taken from there or when named on its own, never from a named folder, where whose it is cannot be
    told. Named on its own, a file of another directory or config is refused."""
    with open(path, "rb") as f:
        value = legacy_pickle.load(f, str(path))
    if not isinstance(value, dict) or value.get("format") != RESCUE_FORMAT or \
            not isinstance(value.get("config"), str) or not isinstance(value.get("example"), dict) or \
            not isinstance(value.get("directory", ""), str):
        raise RecordingError(f"{path}: not a rescue file of dropj (format {RESCUE_FORMAT})")
    ours = str(directory.resolve())
    if origin == IN_FOLDER:
        return value["example"] if (value["config"], value.get("directory")) == (spec.config, ours) else None
    if value["config"] != spec.config:
        raise RecordingError(f"{path}: not a rescued item of {spec.config} (one of "
                             f"{schema.describe(value['config'])})")
    if origin == NAMED and value.get("directory", ours) != ours:
        raise RecordingError(f"{path}: a rescued item of another directory "
                             f"({schema.describe(value['directory'], 300)}), not of {directory}")
    return value["example"]
