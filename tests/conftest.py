"""Shared fixtures. Plain helpers (paths, `build`) live in the fixture factory: `from factory import ...`.

Markers: `slow` marks the tests that take more than about 10 s each (real builds of whole configs,
subprocesses, real windows); `make test-fast` runs the rest.
"""

from __future__ import annotations

import os

import pytest

import factory

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter, in every worker


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than about 10 s; `make test-fast` leaves it out")


@pytest.fixture(scope="session")
def real_data():
    """The real release files ($DROPJ_REAL_DATA); the test is skipped when the variable is unset."""
    root = factory.real_data()
    if root is None:
        pytest.skip(f"{factory.REAL_DATA_VARIABLE} is not set (.ci/run points it at ../shared/real-data)")
    if not root.is_dir():
        pytest.fail(f"{factory.REAL_DATA_VARIABLE}={root} is not a directory")
    return root


@pytest.fixture
def browser():
    """Headless Chromium (Debian's chromium + chromium-driver, which `make sysdeps` installs), or a skip."""
    from factory import web

    if not (web.CHROMIUM and web.DRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (`make sysdeps` installs them)")
    driver = web.new_chromium()
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def world_model(tmp_path_factory):
    """A Car Racing world model with seeded random weights: `rnn.pt` and `vae.pt`, in the authors' format."""
    import torch

    from dropj.models import MDNRNN, ConvVAE, save_checkpoint
    from dropj_datasets import schema

    folder = tmp_path_factory.mktemp("world_model")
    torch.manual_seed(0)
    save_checkpoint(MDNRNN.for_env(schema.CARRACING), None, folder / "rnn.pt")
    save_checkpoint(ConvVAE.for_env(schema.CARRACING), None, folder / "vae.pt")
    return folder
