"""Fixtures shared by all tfvae tests."""

import os

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds; deselect with -m 'not slow'")


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
