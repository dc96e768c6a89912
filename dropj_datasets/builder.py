"""The shared TFDS builder of the DROPJ episode datasets.

Each dataset package declares only its name; its configs, features, manual
download instructions and generator all come from `schema.DATASETS`.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import glob
import os
import re
import shutil
import socket
import sys
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import tensorflow_datasets as tfds

from dropj_datasets import register_builders, schema
from dropj_datasets.features import (  # noqa: F401 - re-exported
    HOMEPAGE, LICENSE, REDISTRIBUTION, card, features, features_fingerprint, without_docs)

# Bounded memory while writing: TFDS keeps serialized examples in memory up to
# this many bytes before spilling to its temporary buckets (1 GB by default).
WRITE_BUFFER_BYTES = 32 << 20


def _quiet_interpreter_exit() -> None:
    """TensorFlow 2.15: every `tf.function` still alive when Python exits (a dataset left in a script's globals,
    as in `ds = tfds.load(...)`) prints "Exception ignored in ... AtomicFunction.__del__ ... TypeError" once
    Python has cleared TensorFlow's module globals. Run at exit (`atexit`, before that clearing), this makes
    the finaliser drop that one error while the interpreter is finalizing; at any other time it runs and raises
    as TensorFlow's own. Nothing is imported: where TensorFlow was never loaded there is nothing to do
    (tests/test_pinned_internals.py pins the attribute)."""
    atomic_function = sys.modules.get("tensorflow.python.eager.polymorphic_function.atomic_function")
    if atomic_function is None:
        return
    original = atomic_function.AtomicFunction.__del__
    if getattr(original, "dropj_quiet_exit", False):
        return

    def __del__(self, original=original, finalizing=sys.is_finalizing):  # defaults: they outlive module globals
        try:
            original(self)
        except TypeError:
            if not finalizing():
                raise

    __del__.dropj_quiet_exit = True
    atomic_function.AtomicFunction.__del__ = __del__


atexit.register(_quiet_interpreter_exit)


def manual_instructions(dataset: str) -> str:
    lines = [
        "Download the DROPJ release (DOI 10.5258/SOTON/D3749, CC BY 4.0) and put its .zip archives, or the",
        "extracted .pkl files, anywhere under the manual directory (`--manual_dir`). Files are found by name",
        "(with their release folder where the name alone is ambiguous), read in place and never extracted.",
        "Each config needs:",
    ]
    lines += [f"  {config}: {spec.needs()}" for config, spec in schema.DATASETS[dataset].items()]
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
    """A kind with builder-config parameters (`Kind.config_parameters`) gets a `PreferenceConfig` holding them."""
    parameters = {key: getattr(spec, key) for key in schema.KINDS[spec.kind].config_parameters}
    if parameters:
        return PreferenceConfig(name=name, description=spec.description, **parameters)
    return tfds.core.BuilderConfig(name=name, description=spec.description)


class DropjBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of `dropj_carracing` and `dropj_obst_carracing`."""

    DATASET = ""  # key of schema.DATASETS; each dataset package sets it, its VERSION and RELEASE_NOTES

    @classmethod
    def version_problems(cls, fingerprints: Mapping[str, str]) -> list[str]:
        """What is wrong with the version, given the features fingerprint recorded for each version
        (the test beside each builder): the newest release note must be VERSION, and the features may
        change only with a new VERSION."""
        problems = []
        if max(map(tfds.core.Version, cls.RELEASE_NOTES)) != cls.VERSION:
            problems.append(f"RELEASE_NOTES has no entry for {cls.VERSION} (or a newer one)")
        if str(cls.VERSION) not in fingerprints:
            problems.append(f"record the features fingerprint of {cls.VERSION} in the test beside the builder: "
                            f"{features_fingerprint(cls.DATASET)}")
        elif features_fingerprint(cls.DATASET) != fingerprints[str(cls.VERSION)]:
            problems.append(f"the features of {cls.DATASET} changed: bump VERSION, say what changed in "
                            f"RELEASE_NOTES, and record the new fingerprint {features_fingerprint(cls.DATASET)}")
        return problems

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
        # Not `dataset_info_from_configs`: its README.md would replace every config's own description.
        package = Path(__file__).parent / self.DATASET
        return tfds.core.DatasetInfo(
            builder=self,
            description=card(self.spec, (package / "README.md").read_text()),
            features=features(self.spec),
            homepage=HOMEPAGE,
            citation=(package / "CITATIONS.bib").read_text(),
            redistribution_info={"license": f"{LICENSE}. {REDISTRIBUTION}"},  # TFDS's one licence field
            disable_shuffling=True,  # keep source order: export/verify stream against the source
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        from dropj.converters.release import kinds  # the writer side: imported only when building

        beam = getattr(self, "_beam", None)
        if beam is not None:
            if kinds.can_build_on_beam(self.spec):
                print(f"{self.info.full_name}: building on Apache Beam ({beam})", file=sys.stderr)
            else:
                print(f"{self.info.full_name}: small release files, built without Beam", file=sys.stderr)
        metadata, examples = kinds.prepare(self.spec, dl_manager.manual_dir, self.builder_config,
                                           beam=beam is not None)
        self.info.metadata.update(metadata)
        counted = getattr(self, "on_example", None)  # `dropj build`'s progress: told of each example made
        if counted is not None and beam is None:
            examples = _counted(examples, counted)
        return {"train": examples}

    def _generate_examples(self):  # `prepare` hands TFDS the generator directly
        raise NotImplementedError

    def _download_and_prepare(self, *args, **kwargs):
        with _bounded_write_buffer(), columnar_datasets(self.info.features):
            return super()._download_and_prepare(*args, **kwargs)

    def download_and_prepare(self, *args, **kwargs):
        """TFDS's build, made safe to interrupt and durable (docs/build_and_load.md, "Interrupted builds").

        One build of a config at a time (a lock file beside the version folders); the leftovers of
        earlier killed builds of this config are removed first, and said so; every file is flushed
        to disk before TFDS renames the finished folder into place.
        """
        self._beam = _beam_runner(kwargs.get("download_config"))
        if self.is_prepared():
            return super().download_and_prepare(*args, **kwargs)
        config_dir = Path(self.data_dir).parent
        config_dir.mkdir(parents=True, exist_ok=True)
        with build_lock(config_dir, self.info.full_name):
            remove_leftovers(Path(self.data_dir))
            with _durable_incomplete_dir():
                return super().download_and_prepare(*args, **kwargs)


def _counted(examples: Any, tell: Any) -> Any:
    for example in examples:
        yield example
        tell()


# --- encoding episodes a column at a time ------------------------------------------------------------


def _columns(feature: tfds.features.FeatureConnector, value: Any, lengths: set) -> Any:
    """What TFDS's per-step encoding of a sequence gives, a whole column at a time; None where unsure.

    `tfds.features.Dataset.encode_example` splits a dict of columns into one
    dict per step, encodes each value alone and lists them again: 9 calls per
    step of a Car Racing episode, half of what TFDS's thread does in a build.
    Here a Tensor column stays one array (BYTES-encoded ones become each
    row's bytes, as TFDS makes them) and an image column of encoded bytes
    stays the list; the serializer turns both into the same proto.
    """
    if isinstance(feature, tfds.features.FeaturesDict):
        if not isinstance(value, dict) or set(value) != set(feature.keys()):
            return None
        encoded = {}
        for key, sub_feature in feature.items():
            encoded[key] = _columns(sub_feature, value[key], lengths)
            if encoded[key] is None:
                return None
        return encoded
    if type(feature) in (tfds.features.Tensor, tfds.features.Scalar):  # pinned tfds 4.9.4 attributes
        if (not isinstance(value, np.ndarray) or feature._dynamic_shape or value.ndim < 1  # noqa: SLF001
                or value.dtype != feature._serialized_dtype  # noqa: SLF001
                or value.shape[1:] != tuple(feature._serialized_shape)):  # noqa: SLF001
            return None
        lengths.add(len(value))
        if feature._encoding == tfds.features.Encoding.NONE:  # noqa: SLF001
            return value
        if feature._encoding == tfds.features.Encoding.BYTES:  # noqa: SLF001
            return [row.tobytes() for row in value]
        return None
    if type(feature) is tfds.features.Image and isinstance(value, list) and all(type(v) is bytes for v in value):
        lengths.add(len(value))
        return list(value)
    return None


def _encode_dataset(feature: tfds.features.Dataset, per_step: Any, value: Any) -> Any:
    lengths: set = set()
    encoded = _columns(feature.feature, value, lengths) if isinstance(value, dict) else None
    if encoded is None or len(lengths) != 1 or 0 in lengths:
        return per_step(value)  # TFDS's own way, and its own errors
    return encoded


@contextlib.contextmanager
def columnar_datasets(features: tfds.features.FeaturesDict):
    """During our build, each top-level `tfds.features.Dataset` encodes a dict of columns a column at a time
    (`_columns`). The records are the same bytes (tests/converters/build/test_build_pipeline.py compares them for every
    config); the class and `features.json` are untouched."""
    patched = [feature for feature in features.values() if isinstance(feature, tfds.features.Dataset)]
    for feature in patched:
        feature.encode_example = functools.partial(_encode_dataset, feature, feature.encode_example)
    try:
        yield
    finally:
        for feature in patched:
            del feature.encode_example


def _beam_runner(download_config: Any) -> Optional[str]:
    """The Beam runner a build asks for (`tfds build --beam_pipeline_options=...`), or None: no Beam."""
    if download_config is None or not (download_config.beam_options or download_config.beam_runner):
        return None
    if download_config.beam_runner is not None:
        return type(download_config.beam_runner).__name__
    from apache_beam.options.pipeline_options import StandardOptions  # the options imply it is installed

    runner = download_config.beam_options.view_as(StandardOptions).runner
    return str(runner or "DirectRunner")


@contextlib.contextmanager
def _bounded_write_buffer():
    from tensorflow_datasets.core import shuffle  # pinned tfds 4.9.4: tests/test_pinned_internals.py

    previous = shuffle.MAX_MEM_BUFFER_SIZE
    shuffle.MAX_MEM_BUFFER_SIZE = WRITE_BUFFER_BYTES
    try:
        yield
    finally:
        shuffle.MAX_MEM_BUFFER_SIZE = previous


# --- interrupted builds ------------------------------------------------------------------------------

LOCK_FILE = ".dropj-build.lock"
_INCOMPLETE = re.compile(r"\.incomplete\.[A-Z0-9]{6}$")  # TFDS's own name for a build in progress


@contextlib.contextmanager
def build_lock(config_dir: Path, what: str):
    """An exclusive lock per config folder; a second build of the same config is refused, naming the first."""
    from dropj.converters.store import durable

    try:
        fd = durable.take_lock(config_dir / LOCK_FILE, f"pid {os.getpid()} on {socket.gethostname()}")
    except durable.Busy as busy:
        raise schema.DataError(f"{what}: another build of it is running ({busy}); wait for it to end") from None
    try:
        yield
    finally:
        durable.release_lock(fd)


def remove_leftovers(version_dir: Path) -> list[Path]:
    """Removes `VERSION.incomplete.XXXXXX` folders of killed builds of this config (TFDS's naming only)."""
    removed = []
    for candidate in sorted(version_dir.parent.glob(glob.escape(version_dir.name) + ".incomplete.*")):
        if _INCOMPLETE.search(candidate.name[len(version_dir.name):]) and candidate.is_dir() \
                and not candidate.is_symlink():
            shutil.rmtree(candidate)
            removed.append(candidate)
            print(f"removed {candidate}: the unfinished output of an earlier build that was killed", file=sys.stderr)
    return removed


def _fsync_tree(root: Path) -> None:
    from dropj.converters.store.durable import fsync_directory, fsync_file

    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            fsync_file(Path(dirpath) / name)
        fsync_directory(Path(dirpath))


@contextlib.contextmanager
def _durable_incomplete_dir():
    """TFDS's `incomplete_dir`, with every file flushed to disk before the rename, and the rename after.

    Replaced only during our build (tfds 4.9.4 is pinned: tests/test_pinned_internals.py).
    """
    from tensorflow_datasets.core import utils

    original = utils.incomplete_dir

    @contextlib.contextmanager
    def durable(dirname):
        with original(dirname) as tmp_dir:
            yield tmp_dir
            _fsync_tree(Path(tmp_dir))
        from dropj.converters.store.durable import fsync_directory

        fsync_directory(Path(dirname).parent)

    utils.incomplete_dir = durable
    try:
        yield
    finally:
        utils.incomplete_dir = original


# Imported first (before TFDS was), this module finished TFDS's import itself: register the builders now.
register_builders()
