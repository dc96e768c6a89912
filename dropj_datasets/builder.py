"""The shared TFDS builder of the DROPJ episode datasets.

Each dataset package declares only its name; its configs, features, manual
download instructions and generator all come from `schema.DATASETS`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from dropj_datasets import schema
from dropj_datasets.schema import DatasetSpec, Field

HOMEPAGE = "https://doi.org/10.5258/SOTON/D3749"
# Bounded memory while writing: TFDS keeps serialized examples in memory up to
# this many bytes before spilling to its temporary buckets (1 GB by default).
WRITE_BUFFER_BYTES = 32 << 20


def _feature(field: Field) -> tfds.features.FeatureConnector:
    if field.encoding == "png":
        return tfds.features.Image(shape=field.shape, dtype=np.uint8, encoding_format="png", doc=field.doc)
    if field.dtype == "str":
        return tfds.features.Text(doc=field.doc)
    # float64 would be narrowed to float32 by tf.train.Example's FloatList:
    # raw bytes keep every bit.
    encoding = tfds.features.Encoding.BYTES if field.encoding == "bytes" else tfds.features.Encoding.NONE
    return tfds.features.Tensor(shape=field.shape, dtype=np.dtype(field.dtype), encoding=encoding, doc=field.doc)


def _nested(fields: tuple[Field, ...]) -> dict:
    out: dict = {}
    for field in fields:
        *parents, leaf = field.name.split("/")
        node = out
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = _feature(field)
    return out


def _as_features_dict(tree: dict) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict(
        {k: _as_features_dict(v) if isinstance(v, dict) else v for k, v in tree.items()})


def features(spec: DatasetSpec) -> tfds.features.FeaturesDict:
    """The TFDS features of one config, generated from the schema."""
    steps = _nested(spec.step_fields())
    steps_features = {k: _as_features_dict(v) if isinstance(v, dict) else v for k, v in steps.items()}
    return tfds.features.FeaturesDict({
        schema.STEPS: tfds.features.Dataset(steps_features),
        schema.EPISODE_METADATA: _as_features_dict(_nested(spec.metadata_fields())),
    })


def manual_instructions(dataset: str) -> str:
    lines = [
        "Download the DROPJ release (DOI 10.5258/SOTON/D3749, CC BY 4.0) and put its .zip archives, or the",
        "extracted .pkl files, anywhere under the manual directory (`--manual_dir`). Files are found by name,",
        "read in place and never extracted. Each config needs:",
    ]
    for config, spec in schema.DATASETS[dataset].items():
        needed = [spec.sources.episodes] if not spec.is_dream else [
            f"{spec.sources.episodes} and/or {spec.sources.scaled}"]
        optional = list(spec.sources.initial_states)
        lines.append(f"  {config}: " + ", ".join(needed) +
                     (f" (optional, provenance of step 0: {', '.join(optional)})" if optional else ""))
    return "\n".join(lines)


class DropjBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of `dropj_carracing` and `dropj_obst_carracing`."""

    DATASET = ""  # key of schema.DATASETS, set by each subclass
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release: lossless RLDS episodes of the DROPJ rollouts."}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.DATASET:
            cls.BUILDER_CONFIGS = [
                tfds.core.BuilderConfig(name=name, description=spec.description)
                for name, spec in schema.DATASETS[cls.DATASET].items()
            ]
            cls.MANUAL_DOWNLOAD_INSTRUCTIONS = manual_instructions(cls.DATASET)

    @property
    def spec(self) -> DatasetSpec:
        return schema.spec_for(self.DATASET, self.builder_config.name)

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

    def _download_and_prepare(self, *args, **kwargs):
        with _bounded_write_buffer():
            return super()._download_and_prepare(*args, **kwargs)


@contextlib.contextmanager
def _bounded_write_buffer():
    from tensorflow_datasets.core import shuffle  # pinned tfds 4.9.4; a test checks the attribute exists

    previous = shuffle.MAX_MEM_BUFFER_SIZE
    shuffle.MAX_MEM_BUFFER_SIZE = WRITE_BUFFER_BYTES
    try:
        yield
    finally:
        shuffle.MAX_MEM_BUFFER_SIZE = previous
