"""The TFDS builders on the embedded sample, with TFDS's own builder test case,
and `tfds build` run as a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tensorflow_datasets as tfds

import dropj_datasets
from dropj.converters import to_legacy
from dropj_datasets import schema

REPO = Path(__file__).resolve().parents[1]


class CarRacingRealTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = dropj_datasets.DropjCarracing
    BUILDER_CONFIG_NAMES_TO_TEST = ["real"]
    SPLITS = {"train": 3}


class CarRacingDreamTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = dropj_datasets.DropjCarracing
    BUILDER_CONFIG_NAMES_TO_TEST = ["dream"]
    SPLITS = {"train": 2}


class ObstRealTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = dropj_datasets.DropjObstCarracing
    BUILDER_CONFIG_NAMES_TO_TEST = ["chuckc_real", "chuckccar_real"]
    SPLITS = {"train": 2}


class ObstDreamTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = dropj_datasets.DropjObstCarracing
    BUILDER_CONFIG_NAMES_TO_TEST = ["chuckc_dream", "chuckccar_dream"]
    SPLITS = {"train": 2}


def test_tfds_build_cli_then_load_and_verify(tmp_path):
    """The documented command line, on the sample zip, then `tfds.load` and `dropj verify`."""
    manual = REPO / "dropj_datasets" / "dropj_carracing" / "dummy_data"
    tfds_cli = Path(sys.executable).with_name("tfds")
    subprocess.run([str(tfds_cli), "build", "dropj_datasets/dropj_carracing", "--config", "real",
                    "--manual_dir", str(manual), "--data_dir", str(tmp_path)],
                   cwd=REPO, check=True, capture_output=True)
    ds = tfds.load("dropj_carracing", data_dir=str(tmp_path), split="train")  # default config: real
    assert len(list(ds)) == 3
    proc = subprocess.run([sys.executable, "-m", "dropj.converters.cli", "verify", "dropj_carracing/real",
                           "--data_dir", str(tmp_path), "--manual_dir", str(manual)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{schema.spec_for('dropj_carracing', 'real').sources.episodes}: 3 items checked" in proc.stdout


def test_every_sample_config_verifies_exactly(tmp_path):
    for dataset, configs in schema.DATASETS.items():
        manual = REPO / "dropj_datasets" / dataset / "dummy_data"
        for config, spec in configs.items():
            builder = tfds.builder(f"{dataset}/{config}", data_dir=str(tmp_path))
            builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
            reports = to_legacy.verify(f"{dataset}/{config}", manual, data_dir=str(tmp_path), log=lambda s: None)
            if isinstance(spec, schema.FeedbackSpec):
                expected = {spec.responses_file}
            elif isinstance(spec, schema.QuerySpec):
                expected = {spec.queries_file, f"{spec.folder}/*.mp4"}
            else:
                expected = set(spec.all_sources)
            assert {r.name for r in reports} == expected, (dataset, config)
            assert all(r.ok and r.episodes for r in reports), [(r.name, r.mismatches) for r in reports]


class CarRacingQueriesTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = dropj_datasets.DropjCarracing
    BUILDER_CONFIG_NAMES_TO_TEST = ["queries"]
    SPLITS = {"train": 10}


class CarRacingRequestTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = dropj_datasets.DropjCarracing
    BUILDER_CONFIG_NAMES_TO_TEST = ["request"]
    SPLITS = {"train": 4}


class CarRacingDrosTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = dropj_datasets.DropjCarracing
    BUILDER_CONFIG_NAMES_TO_TEST = ["dros"]
    SPLITS = {"train": 3}


class CarRacingPreferencesTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = dropj_datasets.DropjCarracing
    BUILDER_CONFIG_NAMES_TO_TEST = ["preferences_drop", "preferences_drope", "preferences_dropj"]
    SPLITS = {"train": 10}


class ChuckcPreferencesTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = dropj_datasets.DropjObstCarracing
    BUILDER_CONFIG_NAMES_TO_TEST = ["chuckc_preferences"]
    SPLITS = {"train": 4}


class ChuckccarPreferencesTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = dropj_datasets.DropjObstCarracing
    BUILDER_CONFIG_NAMES_TO_TEST = ["chuckccar_preferences"]
    SPLITS = {"train": 5}
