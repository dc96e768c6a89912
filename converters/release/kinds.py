"""What every kind's converter provides, and how a spec finds its converter.

The schema declares each kind of data once (`schema.KINDS`): its layout and
the `module:attribute` of its `Converter`. Builders, export, verify and the
demo ask `converter(spec)` and never test which kind a spec is.

    from dropj.converters.release import kinds
    metadata, examples = kinds.converter(spec).prepare(spec, manual_dir, builder_config)
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

from dropj.converters.store import legacy_pickle, shards
from dropj.converters.release.sources import SourceRef
from dropj_datasets import schema
from dropj_datasets.schema import DataError

Examples = Iterator[tuple[int, dict]]

# With shuffling disabled TFDS sorts examples by key into 1000 buckets by the
# key's position in [0, 2**128) and holds one whole bucket in memory while
# writing it. Keys spread over that range keep each bucket to a few episodes
# (and keep the source order); small keys would put every episode in bucket 0.
MAX_ITEMS = 2**14
KEY_STRIDE = 2**128 // MAX_ITEMS


def example_key(index: int, file: str = "<source>") -> int:
    """The TFDS key of the item at `index` of a source file: source order, spread over TFDS's buckets."""
    if not 0 <= index < MAX_ITEMS:
        raise DataError(f"{file}: item {index} is beyond the {MAX_ITEMS:,} items one file may hold "
                        "(the release's largest has 800)")
    return index * KEY_STRIDE


def read_protocol(ref: SourceRef) -> int:
    """The pickle protocol of a release file (kept, so that export writes the same bytes' worth)."""
    with ref.open() as f:
        return legacy_pickle.pickle_protocol(f.read(2))


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


def _default_limits(spec: Any) -> legacy_pickle.Limits:
    return legacy_pickle.DEFAULT_LIMITS


@dataclasses.dataclass(frozen=True)
class Converter:
    """How one kind moves between the release's files and RLDS.

    prepare(spec, manual_dir, builder_config) -> (dataset metadata, (key, example) generator):
        release files -> examples, for the builder; examples are produced lazily.
    legacy_files(built) -> [LegacyFile]: a built dataset -> the release files it reproduces.
    summarise(spec, examples) -> one line about decoded examples (`BuiltDataset.examples()`).
    reader_limits(spec): the safe reader's budgets for this kind's list items.
    complete_sources: verify reports a source file of the config that the dataset does not hold.
    prepare_beam(spec, manual_dir, builder_config) -> (dataset metadata, beam.PTransform of (key, example)):
        `prepare` on Apache Beam, for the kinds whose files are large; None: built the same way either way.
    """

    prepare: Callable[[Any, str, Any], tuple[dict, Examples]]
    legacy_files: Callable[[Any], list[LegacyFile]]  # given a `roundtrip.built.BuiltDataset`
    summarise: Callable[[Any, Iterable[dict]], str]
    reader_limits: Callable[[Any], legacy_pickle.Limits] = _default_limits
    complete_sources: bool = False
    prepare_beam: Optional[Callable[[Any, str, Any], tuple[dict, Any]]] = None


def written_by(command: str) -> Callable[[Any, str, Any], tuple[dict, Examples]]:
    """The `prepare` of a kind our own tools write (recordings, annotations, encodings): none, said clearly."""
    def prepare(spec: Any, manual_dir: str, config: Any) -> tuple[dict, Examples]:
        raise DataError(f"{spec.config}: written by `{command}`, not built from release files")
    return prepare


def converter(spec: Any) -> Converter:
    """The converter the schema's registry names for the spec's kind."""
    return _resolve(schema.KINDS[spec.kind].converter)


def store(spec: Any) -> Any:
    """The store (a `store.shards.ShardStore` subclass) the registry names for a kind our tools write."""
    if not schema.KINDS[spec.kind].store:
        raise DataError(f"{spec.config}: a {spec.kind} config is built from release files, not kept in a store")
    return _resolve(schema.KINDS[spec.kind].store)


def repair(directory: str | os.PathLike, rescued: Sequence[str | os.PathLike] = (),
           log: Callable[[str], None] = print) -> str:
    """`store.shards.repair` of any directory our tools write (a recording, annotations, latents): its store
    is the one the registry names for its kind, imported here, so the caller needs to know none of them."""
    _, spec = shards.written_dataset(Path(directory))
    store(spec)  # defining the store class registers it in `shards.STORES`
    return shards.repair(directory, rescued, log)


def _resolve(reference: str) -> Any:
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


def not_empty(examples: Examples, sources_text: str) -> Examples:
    """TFDS cannot write a split without examples: say which file is empty instead of failing an assert."""
    count = 0
    for item in examples:
        count += 1
        yield item
    if not count:
        raise DataError(f"{sources_text or 'the source'}: holds nothing to build (an empty list or dict); "
                        "a dataset needs at least one item")


def prepare(spec: Any, manual_dir: str, config: Any, beam: bool = False) -> tuple[dict, Any]:
    """What a builder needs for one config: (dataset metadata, the (key, example) generator).

    With `beam`, a kind that can be built on Apache Beam gives a `beam.PTransform` instead.
    """
    kind = converter(spec)
    if beam and kind.prepare_beam is not None:
        return kind.prepare_beam(spec, manual_dir, config)
    metadata, examples = kind.prepare(spec, manual_dir, config)
    return metadata, not_empty(examples, ", ".join(map(str, metadata.get("source_files", {}).values())))


def can_build_on_beam(spec: Any) -> bool:
    return converter(spec).prepare_beam is not None
