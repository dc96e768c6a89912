"""The TFDS builders on the embedded sample, with TFDS's own builder test case,
and `tfds build` run as a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tensorflow_datasets as tfds

import pytest

from factory import REPO, dummy_data
import dropj_datasets
from dropj.converters.roundtrip import verify
from dropj_datasets import schema



def _builder_case(builder: type, configs: list[str], examples: int) -> type:
    """TFDS's own builder test on the embedded sample (dummy_data is the manual dir)."""
    return type(f"{builder.name}_{configs[0]}_test", (tfds.testing.DatasetBuilderTestCase,), {
        "DATASET_CLASS": builder, "BUILDER_CONFIG_NAMES_TO_TEST": configs, "SPLITS": {"train": examples}})


CarRacing, Obst = dropj_datasets.DropjCarracing, dropj_datasets.DropjObstCarracing
CarRacingRealTest = _builder_case(CarRacing, ["real"], 3)
CarRacingDreamTest = _builder_case(CarRacing, ["dream"], 2)
CarRacingPreferencesTest = pytest.mark.slow(
    _builder_case(CarRacing, ["preferences_drop", "preferences_drope", "preferences_dropj"], 10))
CarRacingQueriesTest = _builder_case(CarRacing, ["queries"], 10)
CarRacingRequestTest = _builder_case(CarRacing, ["request"], 4)
CarRacingDrosTest = _builder_case(CarRacing, ["dros"], 3)
ObstRealTest = _builder_case(Obst, ["chuckc_real", "chuckccar_real"], 2)
ObstDreamTest = _builder_case(Obst, ["chuckc_dream", "chuckccar_dream"], 2)
ChuckcQueriesTest = _builder_case(Obst, ["chuckc_queries"], 4)
ChuckccarQueriesTest = _builder_case(Obst, ["chuckccar_queries"], 5)
ChuckcPreferencesTest = _builder_case(Obst, ["chuckc_preferences"], 4)
ChuckccarPreferencesTest = _builder_case(Obst, ["chuckccar_preferences"], 5)






@pytest.mark.slow
def test_tfds_build_cli_then_load_and_verify(tmp_path):
    """The documented command line, on the sample zip, then `tfds.load` and `dropj verify`."""
    manual = REPO / "dropj_datasets" / "dropj_carracing" / "dummy_data"
    tfds_cli = Path(sys.executable).with_name("tfds")
    subprocess.run([str(tfds_cli), "build", "dropj_datasets/dropj_carracing", "--config", "real",
                    "--manual_dir", str(manual), "--data_dir", str(tmp_path)],
                   cwd=REPO, check=True, capture_output=True)
    ds = tfds.load("dropj_carracing", data_dir=str(tmp_path), split="train")  # default config: real
    assert len(list(ds)) == 3
    proc = subprocess.run([sys.executable, "-m", "dropj_datasets.app", "verify", "dropj_carracing/real",
                           "--data_dir", str(tmp_path), "--manual_dir", str(manual)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{schema.spec_for('dropj_carracing', 'real').sources.episodes}: 3 items checked" in proc.stdout


@pytest.mark.slow
def test_tfds_build_by_name_with_imports(tmp_path):
    """`tfds build NAME --imports dropj_datasets`, the by-name form docs/build_and_load.md gives."""
    tfds_cli = Path(sys.executable).with_name("tfds")
    done = subprocess.run([str(tfds_cli), "build", "dropj_carracing", "--imports", "dropj_datasets", "--config", "dros",
                           "--manual_dir", str(dummy_data("dropj_carracing")), "--data_dir", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(list(tfds.load("dropj_carracing/dros", data_dir=str(tmp_path), split="train"))) == 3


@pytest.mark.slow
def test_every_sample_config_verifies_exactly(tmp_path):
    for dataset, configs in schema.DATASETS.items():
        manual = REPO / "dropj_datasets" / dataset / "dummy_data"
        for config, spec in configs.items():
            builder = tfds.builder(f"{dataset}/{config}", data_dir=str(tmp_path))
            builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
            reports = verify.verify(f"{dataset}/{config}", manual, data_dir=str(tmp_path), log=lambda s: None)
            if isinstance(spec, schema.FeedbackSpec):
                expected = {spec.responses_file}
            elif isinstance(spec, schema.QuerySpec):
                expected = {spec.queries_file, f"{spec.folder}/*.mp4"}
            else:
                expected = set(spec.all_sources)
            assert {r.name for r in reports} == expected, (dataset, config)
            assert all(r.ok and r.episodes for r in reports), [(r.name, r.mismatches) for r in reports]
