"""docs/pipeline.md's command block runs as written, on the embedded sample."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import factory


@pytest.mark.slow
def test_the_pipeline_doc_runs(tmp_path):
    doc = (factory.REPO / "docs" / "pipeline.md").read_text()
    [block] = re.findall(r"```bash\n(.*?)```", doc, re.S)
    script = block.replace("make venv && . .venv/bin/activate\n", "")
    env = {**os.environ, "D": str(tmp_path / "d"), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=factory.REPO, env=env, capture_output=True,
                          text=True, timeout=1200)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    assert "labelled pairs; mean soft" in done.stdout and "rule" in done.stdout
    assert (tmp_path / "d" / "runs" / "reward" / "eval.json").exists()
    assert (tmp_path / "d" / "dropj_encoded" / "carracing" / "1.0.0" / "dataset_info.json").exists()
