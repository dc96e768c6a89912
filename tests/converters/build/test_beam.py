"""Building on Apache Beam: every episode config, the same records byte for byte as the default build."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dropj_datasets import schema
from factory import REPO, build, dummy_data

beam = pytest.importorskip("apache_beam")

BEAM_OPTIONS = "runner=DirectRunner,direct_num_workers=2,direct_running_mode=multi_processing"
EPISODE_CONFIGS = [(dataset, config) for dataset, configs in schema.DATASETS.items()
                   for config, spec in configs.items() if spec.kind == "episodes"]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "NO_GCE_CHECK": "true"}


def _records(version_dir: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(version_dir.glob("*.tfrecord*"))}


def _splits(version_dir: Path) -> list:
    info = json.loads((version_dir / "dataset_info.json").read_text())
    return [(split["name"], split["shardLengths"], split["numBytes"]) for split in info["splits"]]


def _beam_build(name: str, manual_dir: Path, data_dir: Path) -> Path:
    import tensorflow_datasets as tfds
    from apache_beam.options.pipeline_options import PipelineOptions

    import dropj_datasets  # noqa: F401

    builder = tfds.builder(name, data_dir=str(data_dir))
    options = PipelineOptions([f"--{option}" for option in BEAM_OPTIONS.split(",")])
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(manual_dir), beam_options=options))
    return Path(builder.data_dir)


@pytest.mark.slow
def test_every_episode_config_builds_on_beam_as_by_default(tmp_path, subtests):
    assert len(EPISODE_CONFIGS) == 6
    for dataset, config in EPISODE_CONFIGS:
        with subtests.test(config=f"{dataset}/{config}"):
            name = f"{dataset}/{config}"
            default = Path(build(name, dummy_data(dataset), tmp_path / "default").data_dir)
            on_beam = _beam_build(name, dummy_data(dataset), tmp_path / "beam")
            assert _records(default) and _records(on_beam) == _records(default)
            assert _splits(on_beam) == _splits(default)
            assert (on_beam / "metadata.json").read_text() == (default / "metadata.json").read_text()


@pytest.mark.slow
def test_tfds_build_on_beam_says_so(tmp_path):
    """The documented command, run as a user would: the log names Beam and its runner."""
    command = [str(Path(sys.executable).parent / "tfds"), "build", str(REPO / "dropj_datasets" / "dropj_carracing"),
               "--config", "real", "--manual_dir", str(dummy_data("dropj_carracing")),
               "--data_dir", str(tmp_path), f"--beam_pipeline_options={BEAM_OPTIONS}"]
    done = subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "dropj_carracing/real/1.1.0: building on Apache Beam (DirectRunner)" in done.stderr
    assert "Running pipeline with" in done.stdout + done.stderr  # Beam's own line (TFDS logs to stdout)
    assert _records(tmp_path / "dropj_carracing" / "real" / "1.1.0")


@pytest.mark.slow
def test_small_kinds_build_the_default_way_when_beam_is_asked(tmp_path, capsys):
    version_dir = _beam_build("dropj_carracing/queries", dummy_data("dropj_carracing"), tmp_path)
    assert "dropj_carracing/queries/1.1.0: small release files, built without Beam" in capsys.readouterr().err
    assert _records(version_dir)
