"""The shared TFDS builder of the DROPJ episode datasets.

Each dataset package declares only its name; its configs, features, manual
download instructions and generator all come from `schema.DATASETS`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional

import numpy as np
import tensorflow_datasets as tfds

from dropj_datasets import schema
from dropj_datasets.schema import FeedbackSpec, Field, QuerySpec, SketchSpec

HOMEPAGE = "https://doi.org/10.5258/SOTON/D3749"
# Bounded memory while writing: TFDS keeps serialized examples in memory up to
# this many bytes before spilling to its temporary buckets (1 GB by default).
WRITE_BUFFER_BYTES = 32 << 20


def _feature(field: Field, shape: Optional[tuple] = None) -> tfds.features.FeatureConnector:
    shape = field.shape if shape is None else shape
    if field.encoding == "png":
        return tfds.features.Image(shape=shape, dtype=np.uint8, encoding_format="png", doc=field.doc)
    if field.dtype == "str":
        return tfds.features.Text(doc=field.doc)
    if field.dtype == "bytes":
        return tfds.features.Tensor(shape=shape, dtype=np.object_, doc=field.doc)
    # float64 would be narrowed to float32 by tf.train.Example's FloatList:
    # raw bytes keep every bit.
    encoding = tfds.features.Encoding.BYTES if field.encoding == "bytes" else tfds.features.Encoding.NONE
    return tfds.features.Tensor(shape=shape, dtype=np.dtype(field.dtype), encoding=encoding, doc=field.doc)


def _nested(fields: tuple[Field, ...], sequences: Mapping[str, Callable] = {}) -> tfds.features.FeaturesDict:
    """FeaturesDict from '/'-separated field names. A group named in `sequences`
    becomes that sequence feature (e.g. tfds Dataset) of its fields' per-item shapes."""
    tree: dict = {}
    for field in fields:
        *parents, leaf = field.name.split("/")
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = field

    def build(name: str, node: dict) -> tfds.features.FeatureConnector:
        if name in sequences:
            return sequences[name]({k: _feature(f, f.shape[1:]) for k, f in node.items()})
        return tfds.features.FeaturesDict(
            {k: build(k, v) if isinstance(v, dict) else _feature(v) for k, v in node.items()})

    return build("", tree)


def features(spec: schema.Spec) -> tfds.features.FeaturesDict:
    """The TFDS features of one config, generated from the schema."""
    if isinstance(spec, (FeedbackSpec, QuerySpec)):
        return _nested(spec.example_fields(), {schema.LEFT: tfds.features.Dataset,
                                               schema.RIGHT: tfds.features.Dataset,
                                               schema.ANSWERS: tfds.features.Sequence})
    return tfds.features.FeaturesDict({
        schema.STEPS: tfds.features.Dataset(dict(_nested(spec.step_fields()).items())),
        schema.EPISODE_METADATA: _nested(spec.metadata_fields()),
    })


def _needs(spec: schema.Spec) -> str:
    if isinstance(spec, FeedbackSpec):
        return f"{spec.queries_file} and {spec.responses_file}"
    if isinstance(spec, QuerySpec):
        return f"{spec.queries_file} and every video {spec.folder}/N.mp4 it names"
    if isinstance(spec, SketchSpec):
        return f"{spec.sketches_file} and {spec.times_file}"
    if spec.is_dream:
        return (f"{spec.sources.episodes} and/or {spec.sources.scaled} (optional, provenance of step 0: "
                f"{', '.join(spec.sources.initial_states)})")
    return spec.sources.episodes


def manual_instructions(dataset: str) -> str:
    lines = [
        "Download the DROPJ release (DOI 10.5258/SOTON/D3749, CC BY 4.0) and put its .zip archives, or the",
        "extracted .pkl files, anywhere under the manual directory (`--manual_dir`). Files are found by name",
        "(with their release folder where the name alone is ambiguous), read in place and never extracted.",
        "Each config needs:",
    ]
    lines += [f"  {config}: {_needs(spec)}" for config, spec in schema.DATASETS[dataset].items()]
    return "\n".join(lines)


@dataclasses.dataclass(eq=False)
class PreferenceConfig(tfds.core.BuilderConfig):
    """A preference config; the label-rule weights are parameters (DATA_FORMATS.md 5.3).

    Other weights make other labels, so a config with them needs its own name;
    `preset` names the config whose sources and questions it shares:

        config = PreferenceConfig(name='preferences_dropj_wdef08', preset='preferences_dropj', w_def=0.8)
        tfds.builder('dropj_carracing', config=config, data_dir=...)
    """

    preset: str = ""
    w_s: float = 1.0
    w_def: float = 0.75
    just_weights: tuple[tuple[str, float], ...] = ()


def _config(name: str, spec: schema.Spec) -> tfds.core.BuilderConfig:
    if isinstance(spec, FeedbackSpec):
        return PreferenceConfig(name=name, description=spec.description, w_s=spec.w_s, w_def=spec.w_def,
                                just_weights=spec.just_weights)
    return tfds.core.BuilderConfig(name=name, description=spec.description)


class DropjBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of `dropj_carracing` and `dropj_obst_carracing`."""

    DATASET = ""  # key of schema.DATASETS, set by each subclass
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release: lossless RLDS episodes of the DROPJ rollouts."}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.DATASET:
            cls.BUILDER_CONFIGS = [_config(name, spec) for name, spec in schema.DATASETS[cls.DATASET].items()]
            cls.MANUAL_DOWNLOAD_INSTRUCTIONS = manual_instructions(cls.DATASET)

    @property
    def spec(self) -> schema.Spec:
        config = self.builder_config
        return schema.spec_for(self.DATASET, getattr(config, "preset", "") or config.name)

    def _info(self) -> tfds.core.DatasetInfo:
        citation_file = Path(__file__).parent / self.DATASET / "CITATIONS.bib"
        return self.dataset_info_from_configs(
            features=features(self.spec),
            homepage=HOMEPAGE,
            citation=citation_file.read_text() if citation_file.exists() else None,
            disable_shuffling=True,  # keep source order: export/verify stream against the source
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        from dropj.converters import sources, to_rlds  # writer side: imported only when building

        spec = self.spec
        if isinstance(spec, FeedbackSpec):
            return self._feedback_split_generators(spec, dl_manager)
        if isinstance(spec, QuerySpec):
            return self._query_split_generators(spec, dl_manager)
        if isinstance(spec, SketchSpec):
            return self._sketch_split_generators(spec, dl_manager)
        names = spec.sources.all
        if spec.is_dream:
            found = sources.index(dl_manager.manual_dir)
            required = () if (spec.sources.episodes in found or spec.sources.scaled in found) else (
                spec.sources.episodes,)
            refs = sources.locate(dl_manager.manual_dir, names, required=required, found=found)
        else:
            refs = sources.locate(dl_manager.manual_dir, names, required=(spec.sources.episodes,))
        initial_states = [to_rlds.load_initial_states(refs[name], spec)
                          for name in spec.sources.initial_states if name in refs]
        self.info.metadata["source_files"] = {name: str(ref) for name, ref in refs.items()}
        self.info.metadata["initial_state_files"] = {f.name: f.to_metadata() for f in initial_states}
        return {"train": self._generate_examples(spec, refs, initial_states)}

    def _generate_examples(self, spec, refs, initial_states) -> Iterator:
        from dropj.converters import to_rlds

        yield from to_rlds.iter_examples(spec, refs, initial_states)

    def _feedback_split_generators(self, spec: FeedbackSpec, dl_manager: tfds.download.DownloadManager):
        from dropj.converters import feedback, sources, to_rlds

        refs = sources.locate(dl_manager.manual_dir, spec.all_sources, required=spec.all_sources)
        config = self.builder_config
        weights = feedback.LabelWeights(config.w_s, config.w_def, tuple(config.just_weights))
        self.info.metadata["source_files"] = {name: str(ref) for name, ref in refs.items()}
        self.info.metadata["label_weights"] = weights.to_metadata()
        self.info.metadata["preset"] = spec.config  # which schema config a custom-named one is
        self.info.metadata["responses_pickle_protocol"] = to_rlds.read_protocol(refs[spec.responses_file])
        return {"train": self._generate_preferences(spec, refs, weights)}

    def _generate_preferences(self, spec, refs, weights) -> Iterator:
        from dropj.converters import feedback, legacy_pickle, to_rlds

        queries_ref, responses_ref = refs[spec.queries_file], refs[spec.responses_file]
        with queries_ref.open() as f:
            queries = feedback.validate_queries(legacy_pickle.load(f, str(queries_ref)), spec.env, str(queries_ref))
        with responses_ref.open() as f:
            for index, example in feedback.iter_examples(spec, queries, legacy_pickle.iter_list(
                    f, str(responses_ref)), weights, str(responses_ref)):
                yield to_rlds.example_key(index), example

    def _query_split_generators(self, spec: QuerySpec, dl_manager: tfds.download.DownloadManager):
        from dropj.converters import feedback, legacy_pickle, sources, to_rlds

        found = sources.index(dl_manager.manual_dir)
        [queries_ref] = sources.locate(dl_manager.manual_dir, spec.all_sources, required=spec.all_sources,
                                       found=found).values()
        with queries_ref.open() as f:
            queries = feedback.validate_queries(legacy_pickle.load(f, str(queries_ref)), spec.env, str(queries_ref))
        names = tuple(f"{spec.folder}/{video}" for video in queries)
        videos = sources.locate(dl_manager.manual_dir, names, required=names, found=found)
        self.info.metadata["source_files"] = {spec.queries_file: str(queries_ref),
                                              "videos": f"{len(videos)} files beside it"}
        self.info.metadata["queries_pickle_protocol"] = to_rlds.read_protocol(queries_ref)
        return {"train": self._generate_queries(spec, queries, videos)}

    def _generate_queries(self, spec, queries, videos) -> Iterator:
        from dropj.converters import feedback, to_rlds

        def read(video: str) -> bytes:
            with videos[f"{spec.folder}/{video}"].open() as f:
                return f.read()

        lazy = _LazyVideos(read)
        for index, example in feedback.query_examples(spec, queries, lazy):
            yield to_rlds.example_key(index), example

    def _sketch_split_generators(self, spec: SketchSpec, dl_manager: tfds.download.DownloadManager):
        from dropj.converters import legacy_pickle, sketches, sources, to_rlds

        refs = sources.locate(dl_manager.manual_dir, spec.all_sources, required=spec.all_sources)
        times_ref = refs[spec.times_file]
        with times_ref.open() as f:
            times = legacy_pickle.load(f, str(times_ref))
        self.info.metadata["source_files"] = {name: str(ref) for name, ref in refs.items()}
        self.info.metadata["sketches_pickle_protocol"] = to_rlds.read_protocol(refs[spec.sketches_file])
        self.info.metadata["times_file"] = {spec.times_file: sketches.times_to_metadata(
            times, file=str(times_ref), protocol=to_rlds.read_protocol(times_ref))}
        return {"train": self._generate_sketches(spec, refs[spec.sketches_file])}

    def _generate_sketches(self, spec, ref) -> Iterator:
        from dropj.converters import legacy_pickle, sketches, to_rlds

        with ref.open() as f:
            for index, example in sketches.iter_examples(spec, legacy_pickle.iter_list(f, str(ref)), str(ref)):
                yield to_rlds.example_key(index), example

    def _download_and_prepare(self, *args, **kwargs):
        with _bounded_write_buffer():
            return super()._download_and_prepare(*args, **kwargs)


class _LazyVideos:
    """video name -> bytes, read from the source when asked (one video in memory at a time)."""

    def __init__(self, read: Callable[[str], bytes]):
        self._read = read

    def __getitem__(self, video: str) -> bytes:
        return self._read(video)


@contextlib.contextmanager
def _bounded_write_buffer():
    from tensorflow_datasets.core import shuffle  # pinned tfds 4.9.4; a test checks the attribute exists

    previous = shuffle.MAX_MEM_BUFFER_SIZE
    shuffle.MAX_MEM_BUFFER_SIZE = WRITE_BUFFER_BYTES
    try:
        yield
    finally:
        shuffle.MAX_MEM_BUFFER_SIZE = previous
