"""The schema drives the builders and the docs; these tests catch drift."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rlds
import tensorflow_datasets as tfds

from factory import REPO
import dropj_datasets
from dropj_datasets import builder as builder_lib
from dropj_datasets import schema

ALL_CONFIGS = [(d, c) for d, cs in schema.DATASETS.items() for c in cs]


def test_step_keys_are_the_rlds_keys():
    assert schema.OBSERVATION == rlds.rlds_types.OBSERVATION
    assert schema.ACTION == rlds.rlds_types.ACTION
    assert schema.REWARD == rlds.rlds_types.REWARD
    assert schema.DISCOUNT == rlds.rlds_types.DISCOUNT
    assert schema.IS_FIRST == rlds.rlds_types.IS_FIRST
    assert schema.IS_LAST == rlds.rlds_types.IS_LAST
    assert schema.IS_TERMINAL == rlds.rlds_types.IS_TERMINAL
    assert schema.STEPS == rlds.rlds_types.STEPS


def test_docs_schema_md_is_generated_from_the_schema():
    committed = (REPO / "docs" / "schema.md").read_text()
    assert committed == schema.markdown(), "docs/schema.md is stale: run `make docs`"


def _leaves(feature, prefix=""):
    if isinstance(feature, tfds.features.FeaturesDict):
        for key, sub in feature.items():
            yield from _leaves(sub, f"{prefix}{key}/")
    elif isinstance(feature, tfds.features.Sequence):  # tfds Dataset is a Sequence too
        yield from _leaves(feature.feature, prefix)
    else:
        yield prefix.rstrip("/"), feature


@pytest.mark.parametrize("dataset,config", ALL_CONFIGS)
def test_builder_features_are_exactly_the_schema_fields(dataset, config, tmp_path):
    spec = schema.spec_for(dataset, config)
    info = tfds.builder(f"{dataset}/{config}", data_dir=str(tmp_path)).info
    fields = spec.fields()  # every kind: full '/'-paths
    features = dict(_leaves(info.features))
    # groups whose fields the schema declares with the sequence length first (an RLDS step's are per step)
    per_item = {group for group, _ in schema.KINDS[spec.kind].sequences} - {schema.STEPS}
    assert sorted(features) == sorted(f.name for f in fields)
    for field in fields:
        feature = features[field.name]
        nested = bool(per_item & set(field.name.split("/")))
        shape = field.shape[1:] if nested else field.shape
        assert tuple(feature.shape) == shape, field.name
        expected = field.np_dtype
        assert np.dtype(feature.np_dtype) == expected, field.name
        if field.dtype == "float64":  # must not be narrowed by tf.train.Example's FloatList
            assert feature._encoding == tfds.features.Encoding.BYTES, field.name


def test_configs_are_the_public_names():
    assert [c.name for c in dropj_datasets.DropjCarracing.BUILDER_CONFIGS] == [
        "real", "dream", "preferences_drop", "preferences_drope", "preferences_dropj", "queries", "request", "dros"]
    assert [c.name for c in dropj_datasets.DropjObstCarracing.BUILDER_CONFIGS] == [
        "chuckc_real", "chuckccar_real", "chuckc_dream", "chuckccar_dream", "chuckc_queries", "chuckccar_queries",
        "chuckc_preferences", "chuckccar_preferences"]
    assert tfds.builder_cls("dropj_carracing").default_builder_config.name == "real"
    assert dropj_datasets.DropjObstCarracing.BUILDER_CONFIGS[0].name == "chuckc_real"


def test_latent_sizes_match_the_release():
    assert schema.CARRACING.latent_dim == 544
    assert schema.CHUCKC.latent_dim == schema.CHUCKCCAR.latent_dim == 2112


def test_scaled_keyboard_actions_match_the_spec():
    keyboard = np.array([[-1, 0, 0], [0, 1, 0.8], [1, 0, 0]], dtype=np.float64)
    scaled = schema.scale_action(keyboard)
    np.testing.assert_array_equal(scaled[:, 0], [-1, 0, 1])
    np.testing.assert_array_equal(scaled[:, 1], [-1, 1, -1])
    assert scaled[1, 2] == 0.6000000000000001 and scaled[0, 2] == -1


def test_write_buffer_patch_targets_a_real_tfds_attribute():
    from tensorflow_datasets.core import shuffle

    assert isinstance(shuffle.MAX_MEM_BUFFER_SIZE, int)
    before = shuffle.MAX_MEM_BUFFER_SIZE
    with builder_lib._bounded_write_buffer():
        assert shuffle.MAX_MEM_BUFFER_SIZE == builder_lib.WRITE_BUFFER_BYTES
    assert shuffle.MAX_MEM_BUFFER_SIZE == before


def _run_elsewhere(code: str, cwd: Path) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def test_importing_the_datasets_does_not_import_tensorflow(tmp_path):
    out = _run_elsewhere("import sys, dropj_datasets, dropj_datasets.schema; print('tensorflow' in sys.modules)",
                         tmp_path)
    assert out == "False"


def test_no_generic_top_level_names_are_installed(tmp_path):
    code = ("import importlib.util as u; "
            "print([n for n in ('models', 'loaders', 'converters') if u.find_spec(n)]); "
            "import dropj.converters, dropj.models, dropj.loaders; print('ok')")
    assert _run_elsewhere(code, tmp_path).splitlines() == ["[]", "ok"]


def test_a_features_change_without_a_new_version_is_caught():
    builder = dropj_datasets.DropjCarracing
    [problem] = builder.version_problems({str(builder.VERSION): "0" * 64})
    assert problem.startswith("the features of dropj_carracing changed: bump VERSION")
    [problem] = builder.version_problems({})
    assert problem.startswith(f"record the features fingerprint of {builder.VERSION}")

    class Unlogged(builder, skip_registration=True):
        VERSION = tfds.core.Version("9.0.0")

    assert any("RELEASE_NOTES has no entry for 9.0.0" in p for p in Unlogged.version_problems({}))


def test_one_line_says_an_unexpected_error_in_one_bounded_line():
    assert schema.one_line(OSError("disk full\nmore detail")) == "OSError: disk full"
    assert schema.one_line(ValueError("x" * 1000), 50) == "ValueError: " + "x" * 50
    assert schema.one_line(RuntimeError()) == "RuntimeError"
    assert schema.one_line(KeyError("k"), typed=False) == "'k'"
    assert schema.one_line(RuntimeError(""), typed=False) == "RuntimeError"
