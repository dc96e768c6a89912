"""Built RLDS datasets -> the release's legacy pickles (`dropj export`), and the
proof that nothing was lost (`dropj verify`).

`verify` streams each source file and the exported episodes side by side and
compares them exactly (`episodes.compare`): same nesting, Python types
(int rewards, float `done`), numpy dtypes and shapes, and every bit.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Optional


from dropj.converters import episodes as episodes_lib
from dropj.converters import feedback, legacy_pickle, sources
from dropj.converters.to_rlds import InitialStateFile
from dropj_datasets import schema
from dropj_datasets.schema import DataError, DatasetSpec, FeedbackSpec

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

    spec: DatasetSpec | FeedbackSpec
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
        return cls(schema.spec_for(builder.name, getattr(config, "preset", "") or config.name), builder)

    def examples(self) -> Iterator[dict]:
        """Decoded (numpy) examples in the order of the source file."""
        import tensorflow as tf
        import tensorflow_datasets as tfds

        feedback_spec = isinstance(self.spec, FeedbackSpec)
        nested = (schema.LEFT, schema.RIGHT) if feedback_spec else (schema.STEPS,)
        ds = self.builder.as_dataset(split="train", shuffle_files=False)
        ds = ds.map(lambda ex: _batched(ex, nested), num_parallel_calls=tf.data.AUTOTUNE,
                    deterministic=True).prefetch(2)
        expected = 0
        for example in tfds.as_numpy(ds):
            index = int(example[schema.RESPONSE_INDEX] if feedback_spec
                        else example[schema.EPISODE_METADATA][schema.EPISODE_INDEX])
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

    def source_protocol(self) -> int:
        if isinstance(self.spec, FeedbackSpec):
            return int(self.metadata().get("responses_pickle_protocol", pickle.DEFAULT_PROTOCOL))
        for _, _, meta in self.episodes():
            return int(meta[schema.PICKLE_PROTOCOL])
        return pickle.DEFAULT_PROTOCOL

    def reproducible_files(self) -> tuple[str, ...]:
        """The release files this config holds everything of."""
        if isinstance(self.spec, FeedbackSpec):
            return (self.spec.responses_file,)
        return self.spec.sources.all

    def legacy_files(self) -> dict[str, Callable[[], Iterator[Any]]]:
        """Release file name -> a function streaming that file's items."""
        spec = self.spec
        if isinstance(spec, FeedbackSpec):
            return {spec.responses_file: lambda: (feedback.from_example(ex, spec) for ex in self.examples())}
        meta = self.metadata().get("source_files", {})
        out: dict[str, Callable[[], Iterator[Any]]] = {}
        variants = [(spec.sources.episodes, False)]
        if spec.is_dream:
            variants.append((spec.sources.scaled, True))
        for name, scaled in variants:
            if name in meta:
                out[name] = lambda scaled=scaled: (
                    episodes_lib.to_legacy(ep, spec, scaled=scaled) for _, ep, _ in self.episodes())
        return out


def export(dataset: str, out_dir: str | os.PathLike, data_dir: Optional[str] = None,
           log: Callable[[str], None] = print) -> list[Path]:
    """Writes the release pickles of a built config into `out_dir`; returns their paths."""
    built = BuiltDataset.open(dataset, data_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    protocol = None
    for name, items in built.legacy_files().items():
        protocol = protocol or built.source_protocol()
        path = out_dir / name
        partial = path.with_name(path.name + ".partial")
        with open(partial, "wb") as f:
            writer = ListPickleWriter(f, protocol)
            for episode in items():
                writer.append(episode)
            writer.close()
        partial.replace(path)  # a complete file or none
        log(f"wrote {path} ({writer.count} episodes, protocol {protocol})")
        written.append(path)
    for state_file in built.initial_state_files():
        path = out_dir / state_file.name
        with open(path.with_name(path.name + ".partial"), "wb") as f:
            pickle.dump(state_file.to_legacy(), f, protocol=state_file.protocol)
        path.with_name(path.name + ".partial").replace(path)
        log(f"wrote {path} (initial states, protocol {state_file.protocol})")
        written.append(path)
    return written


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
    """Streams every source file of the config against the built dataset; reports per episode."""
    built = BuiltDataset.open(dataset, data_dir)
    found = sources.locate(manual_dir, built.reproducible_files(), required=())
    reports = []
    for name, exported_items in built.legacy_files().items():
        if name not in found:
            log(f"{name}: not under {manual_dir}, skipped")
            continue
        ref = found[name]
        report = FileReport(name, str(ref))
        with ref.open() as f:
            _compare_streams(legacy_pickle.iter_list(f, str(ref)), exported_items(), report, log)
        reports.append(report)
    for state_file in built.initial_state_files():
        if state_file.name not in found:
            continue
        ref = found[state_file.name]
        with ref.open() as f:
            source = legacy_pickle.load(f, str(ref))
        report = FileReport(state_file.name, str(ref), episodes=1)
        report.mismatches = episodes_lib.compare(source, state_file.to_legacy())
        log(f"{state_file.name}: " + ("OK" if report.ok else "MISMATCH " + "; ".join(report.mismatches)))
        reports.append(report)
    missing = [name for name in found if name not in {r.name for r in reports}]
    for name in missing:
        reports.append(FileReport(name, str(found[name]), mismatches=["present in the source but not in the dataset"]))
    return reports


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
