"""The TFDS features of every config, generated from the schema: what the builders declare, what our writers
(the recorder, the annotation and latent stores) write, and what a built directory's features.json must say;
and what every dataset's info says beside them (homepage, licence, a config's card).

The define room's one TFDS module besides the builders (`builder.py` and the dataset packages) and
`codec.feature()`; nothing here runs a converter. TFDS is imported inside the functions: importing TFDS registers
the builders (`dropj_datasets/__init__.py`), which import this module, so this module must be whole before TFDS
is first imported (a test imports it first in a fresh interpreter).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional

import numpy as np

from dropj_datasets import codec, schema
from dropj_datasets.schema import Field

if TYPE_CHECKING:  # annotations only
    import tensorflow_datasets as tfds

HOMEPAGE = "https://doi.org/10.5258/SOTON/D3749"
LICENSE = "CC-BY-4.0"
REDISTRIBUTION = (
    "The DROPJ data set is released under the Creative Commons Attribution 4.0 International licence "
    "(CC BY 4.0, https://creativecommons.org/licenses/by/4.0/) by the University of Southampton "
    "(DOI 10.5258/SOTON/D3749). Datasets built from it may be shared and adapted, also commercially, if the "
    "data set and its paper are credited (see the citation), a link to the licence is given and changes are "
    "indicated. Built datasets hold the release's content unchanged, in RLDS form.")


def card(spec: schema.Spec, package_readme: str) -> str:
    """The description of one config: its own summary, its environment and sources, then the dataset's README."""
    files = ", ".join(f"`{name}`" for name in spec.all_sources)
    fields = ", ".join(f"`{f.name}`" for f in spec.fields())
    return (f"{spec.description}.\n\nEnvironment: {spec.env.description}.\n\nBuilt from the release files "
            f"{files} (DOI 10.5258/SOTON/D3749); `dropj export` gives them back bit for bit. Fields: {fields}; "
            f"each field's shape, dtype, units and meaning is in its feature's doc (`info.features`).\n\n"
            f"About the dataset: {package_readme.strip()}")


def _feature(field: Field, shape: Optional[tuple] = None) -> tfds.features.FeatureConnector:
    import tensorflow_datasets as tfds

    shape = field.shape if shape is None else shape
    frame_codec = codec.for_field(field)
    if frame_codec is not None:
        return frame_codec.feature(shape, field.doc)
    if field.dtype == "str":
        return tfds.features.Text(doc=field.doc)
    if field.dtype == "bytes":
        return tfds.features.Tensor(shape=shape, dtype=np.object_, doc=field.doc)
    # float64 would be narrowed to float32 by tf.train.Example's FloatList:
    # raw bytes keep every bit.
    encoding = tfds.features.Encoding.BYTES if field.encoding == "bytes" else tfds.features.Encoding.NONE
    return tfds.features.Tensor(shape=shape, dtype=np.dtype(field.dtype), encoding=encoding, doc=field.doc)


def _nested(fields: tuple[Field, ...], sequences: Mapping[str, str]) -> tfds.features.FeaturesDict:
    """FeaturesDict from '/'-separated field names. A group named in `sequences` becomes that
    sequence feature (`schema.DATASET_SEQUENCE` or `schema.SEQUENCE`) of its fields' per-item shapes;
    a field of an RLDS `steps` group has its per-step shape already."""
    import tensorflow_datasets as tfds

    sequence_features = {schema.DATASET_SEQUENCE: tfds.features.Dataset, schema.SEQUENCE: tfds.features.Sequence}
    tree: dict = {}
    for field in fields:
        *parents, leaf = field.name.split("/")
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = field

    def build(name: str, node: dict) -> tfds.features.FeatureConnector:
        if name in sequences:
            per_item = (lambda f: f.shape) if name == schema.STEPS else (lambda f: f.shape[1:])
            return sequence_features[sequences[name]](
                {k: build(k, v) if isinstance(v, dict) else _feature(v, per_item(v)) for k, v in node.items()})
        return tfds.features.FeaturesDict(
            {k: build(k, v) if isinstance(v, dict) else _feature(v) for k, v in node.items()})

    return build("", tree)


def features(spec: schema.Spec) -> tfds.features.FeaturesDict:
    """The TFDS features of one config, generated from the schema."""
    return _nested(spec.fields(), dict(schema.KINDS[spec.kind].sequences))


def without_docs(value: object) -> object:
    """A features.json dict without its feature docs (`description`): what must match between versions."""
    if isinstance(value, dict):
        return {k: without_docs(v) for k, v in value.items() if k != "description"}
    if isinstance(value, list):
        return [without_docs(v) for v in value]
    return value


def features_fingerprint(dataset: str) -> str:
    """SHA-256 of the features of every config of `dataset`, docs left out: what one VERSION promises."""
    import hashlib
    import json

    from google.protobuf import json_format

    content = {config: without_docs(json_format.MessageToDict(features(spec).to_proto()))
               for config, spec in schema.DATASETS[dataset].items()}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def rlds_config(spec: schema.RecordingSpec) -> Any:
    """The RLDS DatasetConfig of a recording, with every feature generated from the schema."""
    import tensorflow_datasets as tfds

    feats = features(spec)
    steps = dict(feats[schema.STEPS].feature.items())
    standard = {schema.OBSERVATION, schema.ACTION, schema.REWARD, schema.DISCOUNT, schema.IS_FIRST,
                schema.IS_LAST, schema.IS_TERMINAL}
    return tfds.rlds.rlds_base.DatasetConfig(
        name=spec.config,
        observation_info=steps[schema.OBSERVATION],
        action_info=steps[schema.ACTION],
        reward_info=steps[schema.REWARD],
        discount_info=steps[schema.DISCOUNT],
        step_metadata_info={k: v for k, v in steps.items() if k not in standard},
        episode_metadata_info={schema.EPISODE_METADATA: feats[schema.EPISODE_METADATA]},
        homepage=HOMEPAGE,
        overall_description=spec.description + ".",
    )


def recording_features(spec: schema.RecordingSpec, version: str = "1.0.0") -> Any:
    """The TFDS features a recording directory is written with (what its features.json must say; `version`
    only names the identity RLDS builds them in: the features do not depend on it)."""
    import tensorflow_datasets as tfds

    identity = tfds.core.DatasetIdentity(
        name=schema.RECORDING_DATASET, version=tfds.core.Version(version), data_dir="",
        module_name="", config_name=spec.config, config_description=spec.description)
    return tfds.rlds.rlds_base.build_info(rlds_config(spec), identity).features
