"""The one fixture factory: every generator of release-format files and scripted drives.

* `legacy`: small synthetic release files for unit tests (noise frames, exact formats), and the
  deterministic file writers (pickles, zip archives) that everything here uses.
* `sample`: the embedded sample in `dropj_datasets/*/dummy_data/` (`make sample` in a clone), driven in
  our own environments.
* `drivers`: scripted keyboard-like drivers for the DROPJ environments.
* `query_video`: query videos in the release's format (1000x500 H.264, 20 frames at 2.5 fps).
* `window`: `dropj record`'s window under Xvfb, driven with xdotool; `web`: the web apps in subprocesses and
  headless Chromium; `compare`: built datasets against TFDS's own reading; `fuzzing`: the safe reader's
  differential fuzzer; `fixtures/`: reference runs recorded in gym 0.20.

Tooling, not product: nothing under `dropj_datasets/`, `converters/`, `loaders/` or `models/`
imports it (a test checks).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"  # reference frames recorded in gym 0.20
REAL_DATA_VARIABLE = "DROPJ_REAL_DATA"  # `.ci/run` points it at ../shared/real-data


def dummy_data(dataset: str) -> Path:
    """The committed sample of a dataset package: the manual directory its builder tests use."""
    return REPO / "dropj_datasets" / dataset / "dummy_data"


def real_data() -> Optional[Path]:
    """The real release files named by $DROPJ_REAL_DATA, or None when it is unset."""
    root = os.environ.get(REAL_DATA_VARIABLE)
    return Path(root) if root else None


def build(name: str, manual_dir: Any, data_dir: Any, config: Any = None) -> Any:
    """`tfds build` of 'dataset/config' (or 'dataset' with a BuilderConfig object) from `manual_dir`."""
    import tensorflow_datasets as tfds

    import dropj_datasets  # noqa: F401  (registers the builders)

    builder = tfds.builder(name, config=config, data_dir=str(data_dir)) if config is not None \
        else tfds.builder(name, data_dir=str(data_dir))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return builder
