"""Fixtures shared by all tfvae tests."""

import os

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds; deselect with -m 'not slow'")
    config.addinivalue_line("markers", "browser: drives headless Chromium (tests/test_web.py); deselect with -m 'not browser'")


@pytest.fixture(scope="session")
def data_dir():
    """The real data directory named by $TFVAE_DATA_DIR (laid out like shared/data); skips the test if unset."""
    path = os.environ.get("TFVAE_DATA_DIR")
    if not path:
        pytest.skip("TFVAE_DATA_DIR is not set")
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        pytest.fail(f"TFVAE_DATA_DIR={path} is not a directory")
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, data_dir):
    """A finished two-epoch run of a tiny model (D = 2) on 256 real images: (config, run_dir, summary).

    Shared by the tests that read a run; tests that change it must copy it first.
    """
    from tfvae.config import Config
    from tfvae.train import train_and_evaluate

    config = Config(epochs=2, limit=256, latent_dim=2, hidden_units=16, batch_size=64, data_dir=data_dir)
    run_dir = str(tmp_path_factory.mktemp("tiny") / "run")
    summary = train_and_evaluate(config, run_dir, verbose=0, log=lambda message: None)
    return config, run_dir, summary


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_run):
    """A copy of `tiny_run`'s directory for one test module, which may write into it (exports do)."""
    import shutil

    path = str(tmp_path_factory.mktemp("run") / "run")
    shutil.copytree(tiny_run[1], path)
    return path
