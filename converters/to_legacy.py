"""Built RLDS datasets -> the release's legacy pickles (`dropj export`), and the
proof that nothing was lost (`dropj verify`).

`verify` streams each source file and the exported episodes side by side and
compares them exactly (`episodes.compare`): same nesting, Python types
(int rewards, float `done`), numpy dtypes and shapes, and every bit.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pickle
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Optional

from dropj.converters import dataset_dir
from dropj.converters.durable import write_atomically
from dropj.converters import episodes as episodes_lib
from dropj.converters import feedback, legacy_pickle, sketches, sources
from dropj.converters.to_rlds import InitialStateFile
from dropj_datasets import schema
from dropj_datasets.schema import DataError, FeedbackSpec, QuerySpec, SketchSpec

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
        self._pickler = pickle._Pickler(file, protocol)
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


def _batched(example: dict, keys: tuple[str, ...]) -> dict:
    """Turns the nested step datasets of an example into tensors of all their steps."""
    return {key: value.batch(1 << 30).get_single_element() if key in keys else value
            for key, value in example.items()}


@dataclasses.dataclass
class BuiltDataset:
    """A built config: its spec, its episodes in source order, its file metadata.

    The directory is untrusted (someone may have shared it): `open` checks it
    with `dataset_dir.check` before TFDS reads it, and every value taken from
    its metadata is checked against the schema before it names a file.
    """

    spec: schema.Spec
    builder: Any  # tfds.core.DatasetBuilder
    directory: Path

    @classmethod
    def open(cls, dataset: str, data_dir: Optional[str] = None) -> "BuiltDataset":
        """`dataset` is 'name/config' (registered, under data_dir) or a built dataset directory."""
        import tensorflow_datasets as tfds

        import dropj_datasets  # noqa: F401  (registers the builders)

        if os.path.isdir(dataset):
            directory = Path(dataset)
            dataset_dir.check(directory)
            builder = tfds.builder_from_directory(str(directory))
        else:
            name, _, config = dataset.partition("/")
            try:
                schema.spec_for(name, config)
            except KeyError as exc:
                if os.path.exists(dataset):
                    raise DataError(f"{dataset}: not a directory") from None
                raise DataError(f"{dataset}: {exc.args[0]}") from None
            directory = dataset_dir.find_built(dataset, data_dir)
            builder = tfds.builder(dataset, data_dir=str(directory.parents[2])) \
                if name != schema.RECORDING_DATASET else tfds.builder_from_directory(str(directory))
            if not builder.is_prepared():
                raise DataError(f"{dataset}: not built under {directory.parents[2]} (run `tfds build` first)")
        config = builder.builder_config
        if config is None:
            raise DataError(f"{dataset}: not a DROPJ dataset (no builder config)")
        preset = getattr(config, "preset", "") or (builder.info.metadata or {}).get("preset") or config.name
        try:
            spec = schema.spec_for(builder.name, preset)
        except KeyError:
            raise DataError(f"{dataset}: {builder.name}/{str(preset)[:60]} is not a DROPJ config") from None
        return cls(spec, builder, directory)

    @property
    def count(self) -> int:
        """Items of the train split, from the dataset's own info."""
        return int(self.builder.info.splits["train"].num_examples)

    def examples(self) -> Iterator[dict]:
        """Decoded (numpy) examples in the order of the source file."""
        import tensorflow as tf
        import tensorflow_datasets as tfds

        spec = self.spec
        nested = (schema.LEFT, schema.RIGHT) if isinstance(spec, (FeedbackSpec, QuerySpec)) else (schema.STEPS,)
        ds = self.builder.as_dataset(split="train", shuffle_files=False)
        ds = ds.map(lambda ex: _batched(ex, nested), num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=True).prefetch(2)
        expected = 0
        iterator = iter(tfds.as_numpy(ds))
        while True:
            try:
                example = next(iterator)
            except StopIteration:
                break
            except tf.errors.OpError as exc:
                raise DataError(self._damaged_shard(expected, exc)) from None
            if not isinstance(spec, QuerySpec):  # queries keep data.pkl's key order, which has no index field
                index = int(example[schema.RESPONSE_INDEX] if isinstance(spec, FeedbackSpec) else
                            example[schema.EPISODE_METADATA][
                                schema.SKETCH_INDEX if isinstance(spec, SketchSpec) else schema.EPISODE_INDEX])
                if index != expected:
                    raise DataError(f"{self.directory}: item {expected} expected next, found {index} "
                                    "(incomplete or reordered dataset)")
            expected += 1
            yield example

    def _damaged_shard(self, item: int, exc: Exception) -> str:
        """Which shard TFDS could not read: each is read on its own to find it."""
        import tensorflow as tf

        message = str(getattr(exc, "message", exc)).split("\n")[0][:200]
        for shard in sorted(self.directory.glob("*.tfrecord-*")):
            try:
                for _ in tf.data.TFRecordDataset(str(shard)):
                    pass
            except tf.errors.OpError:
                return f"{shard}: damaged shard, cannot be read ({message}); rebuild or re-copy the dataset"
        return f"{self.directory}: item {item} cannot be decoded ({message})"

    def episodes(self) -> Iterator[tuple[int, episodes_lib.Episode, dict]]:
        """(episode_index, Episode, metadata) in the order of the source file."""
        for example in self.examples():
            meta = example[schema.EPISODE_METADATA]
            yield (int(meta[schema.EPISODE_INDEX]),
                   episodes_lib.from_rlds_steps(example[schema.STEPS], meta, self.spec), meta)

    def metadata(self) -> dict:
        return dict(self.builder.info.metadata or {})

    def _where(self) -> str:
        return str(self.directory / dataset_dir.METADATA)

    def initial_state_files(self) -> list[InitialStateFile]:
        files = self.metadata().get("initial_state_files", {})
        if not isinstance(files, dict):
            raise DataError(f"{self._where()}: initial_state_files is not a mapping")
        allowed = self.spec.sources.initial_states
        return [InitialStateFile.from_metadata(dataset_dir.checked_name(name, allowed, self._where()), meta,
                                               self.spec.env.latent_dim, self._where())
                for name, meta in files.items()]

    def _protocol(self, key: str) -> int:
        return dataset_dir.checked_protocol(self.metadata().get(key, pickle.DEFAULT_PROTOCOL), self._where())

    def episode_protocol(self) -> int:
        for _, _, meta in self.episodes():
            return dataset_dir.checked_protocol(int(meta[schema.PICKLE_PROTOCOL]), f"{self.directory}, episode 0")
        return pickle.DEFAULT_PROTOCOL

    def legacy_files(self) -> list["LegacyFile"]:
        """The release files this config holds everything of, ready to write or compare."""
        spec = self.spec
        if isinstance(spec, FeedbackSpec):
            return [LegacyFile(spec.responses_file, "list", self._protocol("responses_pickle_protocol"),
                               lambda: (feedback.from_example(ex, spec) for ex in self.examples()))]
        if isinstance(spec, QuerySpec):
            return [LegacyFile(spec.queries_file, "pickle", self._protocol("queries_pickle_protocol"),
                               lambda: {video: entry for video, entry, _ in self._queries()}),
                    LegacyFile(f"{spec.folder}/*.mp4", "raw", 0,
                               lambda: ((f"{spec.folder}/{video}", mp4) for video, _, mp4 in self._queries()))]
        if isinstance(spec, SketchSpec):
            times = self.metadata().get("times_file")
            if not isinstance(times, dict) or len(times) != 1:
                raise DataError(f"{self._where()}: times_file must hold exactly the file {spec.times_file}")
            [(times_name, times_meta)] = times.items()
            times_name = dataset_dir.checked_name(times_name, (spec.times_file,), self._where())
            protocol = dataset_dir.checked_protocol(times_meta.get("protocol") if isinstance(times_meta, dict)
                                                    else None, self._where())
            return [LegacyFile(spec.sketches_file, "list", self._protocol("sketches_pickle_protocol"),
                               lambda: (sketches.from_example(ex, spec) for ex in self.examples())),
                    LegacyFile(times_name, "pickle", protocol,
                               lambda: sketches.times_from_metadata(times_meta, self._where()))]
        if isinstance(spec, schema.RecordingSpec):  # `dropj record`: Dataset R's format, named like the release's
            return [LegacyFile(spec.sources.episodes.format(n=self.count), "list", None, lambda: (
                episodes_lib.to_legacy(ep, spec) for _, ep, _ in self.episodes()))]
        built_from = self.metadata().get("source_files", {})
        if not isinstance(built_from, dict):
            raise DataError(f"{self._where()}: source_files is not a mapping")
        out = []
        variants = [(spec.sources.episodes, False)] + ([(spec.sources.scaled, True)] if spec.is_dream else [])
        for name, scaled in variants:  # which action columns exist is this, never the values
            if name in built_from:
                out.append(LegacyFile(name, "list", None, lambda scaled=scaled: (
                    episodes_lib.to_legacy(ep, spec, scaled=scaled) for _, ep, _ in self.episodes())))
        for state_file in self.initial_state_files():
            out.append(LegacyFile(state_file.name, "pickle", state_file.protocol, state_file.to_legacy))
        return out

    def _queries(self) -> Iterator[tuple[str, dict, bytes]]:
        for example in self.examples():
            video, entry, mp4 = feedback.query_from_example(example)
            if not feedback.is_video_name(video):
                raise DataError(f"{self.directory}: query id {video[:60]!r} is not a video name like '17.mp4'")
            yield video, entry, mp4


@dataclasses.dataclass
class LegacyFile:
    """One release file a built config reproduces.

    kind 'list': `content()` streams the items of a pickled list; 'pickle': it
    returns the whole (small) pickled value; 'raw': it streams (release path,
    bytes) of files kept byte for byte (the query videos; `name` is a pattern).
    `protocol` None means: the episodes' recorded protocol.
    """

    name: str
    kind: str
    protocol: Optional[int]
    content: Callable[[], Any]


MANIFEST_PREFIX = "MANIFEST-"


def _manifest_name(built: "BuiltDataset") -> str:
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
    bar = _progress(progress, built.count * len([f for f in legacy_files if f.kind != "pickle"]), "export")
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
            log(f"wrote {path} (" + (f"{count} items, " if legacy.kind == "list" else "") + f"protocol {protocol})")
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


def _progress(enabled: bool, total: int, what: str) -> Any:
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


@dataclasses.dataclass
class FileReport:
    name: str
    source: str
    episodes: int = 0
    mismatches: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches


def verify(dataset: str, manual_dir: str | os.PathLike, data_dir: Optional[str] = None,
           log: Callable[[str], None] = print, progress: bool = False) -> list[FileReport]:
    """Compares every source file of the config with the built dataset's export; reports per item.

    Each list file is also recounted by an independent parse (`legacy_pickle.count_items`), so a
    source whose items the streaming reader would count differently from `pickle.load` shows up.
    """
    built = BuiltDataset.open(dataset, data_dir)
    found = sources.index(manual_dir)
    reports = []
    limits = episodes_lib.reader_limits(built.spec) if isinstance(built.spec, schema.DatasetSpec) \
        else legacy_pickle.DEFAULT_LIMITS
    for legacy in built.legacy_files():
        if legacy.kind == "raw":
            reports.append(_compare_raw(legacy, manual_dir, found, log))
            continue
        refs = sources.locate(manual_dir, (legacy.name,), required=(), found=found)
        if legacy.name not in refs:
            log(f"{legacy.name}: not under {manual_dir}, skipped")
            continue
        ref = refs[legacy.name]
        report = FileReport(legacy.name, str(ref))
        with ref.open() as f:
            if legacy.kind == "list":
                bar = _progress(progress, built.count, f"verify {legacy.name}")
                try:
                    _compare_streams(legacy_pickle.iter_list(f, str(ref), size=ref.size, limits=limits),
                                     legacy.content(), report, log, bar)
                finally:
                    bar.close()
            else:
                report.episodes = 1
                report.mismatches = episodes_lib.compare(legacy_pickle.load(f, str(ref), size=ref.size),
                                                         legacy.content())
                log(f"{legacy.name}: " + ("OK (exact)" if report.ok else "MISMATCH " + "; ".join(report.mismatches)))
        if legacy.kind == "list" and report.ok:
            with ref.open() as f:
                counted = legacy_pickle.count_items(f, str(ref))
            if counted != report.episodes:
                report.mismatches.append(f"an independent parse counts {counted} items, the reader "
                                         f"{report.episodes}")
        reports.append(report)
    if not isinstance(built.spec, (FeedbackSpec, QuerySpec, SketchSpec)):
        # An episode file present now but not when the dataset was built (say the scaled dream file).
        reproduced = {r.name for r in reports}
        for name, ref in sources.locate(manual_dir, built.spec.sources.all, required=(), found=found).items():
            if name not in reproduced:
                reports.append(FileReport(name, str(ref), mismatches=["present in the source but not in the dataset"]))
    return reports


def _compare_raw(legacy: LegacyFile, manual_dir: str | os.PathLike, found: dict,
                 log: Callable[[str], None]) -> FileReport:
    report = FileReport(legacy.name, str(manual_dir))
    for name, data in legacy.content():
        refs = sources.locate(manual_dir, (name,), required=(), found=found)
        if name not in refs:
            report.mismatches.append(f"{name}: in the dataset but not under {manual_dir}")
            continue
        same = refs[name].read_bytes(feedback.MAX_VIDEO_BYTES) == data
        report.episodes += 1
        if not same:
            report.mismatches.append(f"{name}: bytes differ")
        log(f"{name}: " + ("OK (identical bytes)" if same else "MISMATCH (bytes differ)"))
    return report


def _compare_streams(source: Iterable[Any], exported: Iterable[Any], report: FileReport,
                     log: Callable[[str], None], bar: Any = None) -> None:
    sentinel = object()
    source_it, exported_it = iter(source), iter(exported)
    index = 0
    while True:
        a, b = next(source_it, sentinel), next(exported_it, sentinel)
        if a is sentinel and b is sentinel:
            break
        if a is sentinel or b is sentinel:
            extra = "dataset" if a is sentinel else "source"
            report.mismatches.append(f"episode {index}: only in the {extra} (episode counts differ)")
            log(f"{report.name} episode {index}: MISMATCH only in the {extra}")
            break
        diffs = episodes_lib.compare(a, b, f"episode {index}")
        report.episodes += 1
        length = len(a) if hasattr(a, "__len__") else 1
        if diffs:
            report.mismatches += diffs
            log(f"{report.name} episode {index}: MISMATCH\n  " + "\n  ".join(diffs[:10]))
        else:
            log(f"{report.name} episode {index}: OK ({length} transitions, exact)")
        if bar is not None:
            bar.update(1)
        index += 1
