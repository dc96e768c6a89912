"""Built RLDS datasets -> the release's legacy pickles (`dropj export`), and the
proof that nothing was lost (`dropj verify`).

`verify` streams each source file and the exported episodes side by side and
compares them exactly (`episodes.compare`): same nesting, Python types
(int rewards, float `done`), numpy dtypes and shapes, and every bit.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pickle
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Optional


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
    """A built config: its spec, its episodes in source order, its file metadata."""

    spec: schema.Spec
    builder: Any  # tfds.core.DatasetBuilder

    @classmethod
    def open(cls, dataset: str, data_dir: Optional[str] = None) -> "BuiltDataset":
        """`dataset` is 'name/config' (registered, under data_dir) or a built dataset directory."""
        import tensorflow_datasets as tfds

        import dropj_datasets  # noqa: F401  (registers the builders)

        if os.path.isdir(dataset):
            builder = tfds.builder_from_directory(dataset)
        else:
            builder = tfds.builder(dataset, data_dir=data_dir)
            if not builder.is_prepared():
                raise DataError(f"{dataset}: not built under {data_dir or 'the default data dir'} "
                                "(run `tfds build` first)")
        config = builder.builder_config
        if config is None:
            raise DataError(f"{dataset}: not a DROPJ dataset (no builder config)")
        preset = getattr(config, "preset", "") or (builder.info.metadata or {}).get("preset") or config.name
        return cls(schema.spec_for(builder.name, preset), builder)

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
        for example in tfds.as_numpy(ds):
            if not isinstance(spec, QuerySpec):  # queries keep data.pkl's key order, which has no index field
                index = int(example[schema.RESPONSE_INDEX] if isinstance(spec, FeedbackSpec) else
                            example[schema.EPISODE_METADATA][
                                schema.SKETCH_INDEX if isinstance(spec, SketchSpec) else schema.EPISODE_INDEX])
                if index != expected:
                    raise DataError(f"{self.builder.data_dir}: item {expected} expected next, found {index} "
                                    "(incomplete or reordered dataset)")
            expected += 1
            yield example

    def episodes(self) -> Iterator[tuple[int, episodes_lib.Episode, dict]]:
        """(episode_index, Episode, metadata) in the order of the source file."""
        for example in self.examples():
            meta = example[schema.EPISODE_METADATA]
            yield (int(meta[schema.EPISODE_INDEX]),
                   episodes_lib.from_rlds_steps(example[schema.STEPS], meta, self.spec), meta)

    def metadata(self) -> dict:
        return dict(self.builder.info.metadata or {})

    def initial_state_files(self) -> list[InitialStateFile]:
        files = self.metadata().get("initial_state_files", {})
        return [InitialStateFile.from_metadata(name, meta) for name, meta in files.items()]

    def _protocol(self, key: str) -> int:
        return int(self.metadata().get(key, pickle.DEFAULT_PROTOCOL))

    def episode_protocol(self) -> int:
        for _, _, meta in self.episodes():
            return int(meta[schema.PICKLE_PROTOCOL])
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
            [(times_name, times_meta)] = self.metadata()["times_file"].items()
            return [LegacyFile(spec.sketches_file, "list", self._protocol("sketches_pickle_protocol"),
                               lambda: (sketches.from_example(ex, spec) for ex in self.examples())),
                    LegacyFile(times_name, "pickle", int(times_meta["protocol"]),
                               lambda: sketches.times_from_metadata(times_meta))]
        if isinstance(spec, schema.RecordingSpec):  # `dropj record`: Dataset R's format, named like the release's
            count = self.builder.info.splits["train"].num_examples
            return [LegacyFile(spec.sources.episodes.format(n=count), "list", None, lambda: (
                episodes_lib.to_legacy(ep, spec) for _, ep, _ in self.episodes()))]
        built_from = self.metadata().get("source_files", {})
        out = []
        variants = [(spec.sources.episodes, False)] + ([(spec.sources.scaled, True)] if spec.is_dream else [])
        for name, scaled in variants:
            if name in built_from:
                out.append(LegacyFile(name, "list", None, lambda scaled=scaled: (
                    episodes_lib.to_legacy(ep, spec, scaled=scaled) for _, ep, _ in self.episodes())))
        for state_file in self.initial_state_files():
            out.append(LegacyFile(state_file.name, "pickle", state_file.protocol, state_file.to_legacy))
        return out

    def _queries(self) -> Iterator[tuple[str, dict, bytes]]:
        return (feedback.query_from_example(ex) for ex in self.examples())


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


def export(dataset: str, out_dir: str | os.PathLike, data_dir: Optional[str] = None,
           log: Callable[[str], None] = print) -> list[Path]:
    """Writes the release files of a built config into `out_dir` (release folders kept); returns their paths."""
    built = BuiltDataset.open(dataset, data_dir)
    out_dir = Path(out_dir)
    written = []
    for legacy in built.legacy_files():
        if legacy.kind == "raw":
            for name, data in legacy.content():
                path, _ = _write_atomically(out_dir / name, functools.partial(_write_bytes, data=data))
                written.append(path)
            log(f"wrote {legacy.name} under {out_dir}")
            continue
        protocol = built.episode_protocol() if legacy.protocol is None else legacy.protocol
        path, count = _write_atomically(out_dir / legacy.name,
                                        functools.partial(_write_pickle, legacy=legacy, protocol=protocol))
        log(f"wrote {path} (" + (f"{count} items, " if legacy.kind == "list" else "") + f"protocol {protocol})")
        written.append(path)
    return written


def _write_bytes(f: BinaryIO, data: bytes) -> None:
    f.write(data)


def _write_pickle(f: BinaryIO, legacy: LegacyFile, protocol: int) -> Optional[int]:
    """Writes one legacy pickle; returns the number of items of a list file."""
    if legacy.kind == "pickle":
        pickle.dump(legacy.content(), f, protocol=protocol)
        return None
    writer = ListPickleWriter(f, protocol)
    for item in legacy.content():
        writer.append(item)
    writer.close()
    return writer.count


def _write_atomically(path: Path, write: Callable[[BinaryIO], Any]) -> tuple[Path, Any]:
    """A complete file or none: written to NAME.partial, then renamed. Returns (path, what write returned)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as f:
        result = write(f)
    partial.replace(path)
    return path, result


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
           log: Callable[[str], None] = print) -> list[FileReport]:
    """Compares every source file of the config with the built dataset's export; reports per item."""
    built = BuiltDataset.open(dataset, data_dir)
    found = sources.index(manual_dir)
    reports = []
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
                _compare_streams(legacy_pickle.iter_list(f, str(ref), size=ref.size), legacy.content(), report, log)
            else:
                report.episodes = 1
                report.mismatches = episodes_lib.compare(legacy_pickle.load(f, str(ref), size=ref.size),
                                                         legacy.content())
                log(f"{legacy.name}: " + ("OK (exact)" if report.ok else "MISMATCH " + "; ".join(report.mismatches)))
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
        with refs[name].open() as f:
            same = f.read() == data
        report.episodes += 1
        if not same:
            report.mismatches.append(f"{name}: bytes differ")
        log(f"{name}: " + ("OK (identical bytes)" if same else "MISMATCH (bytes differ)"))
    return report


def _compare_streams(source: Iterable[Any], exported: Iterable[Any], report: FileReport,
                     log: Callable[[str], None]) -> None:
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
        index += 1
