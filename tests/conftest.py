"""Fixtures shared by all tfvae tests.

Two kinds of data:

- `synthetic_data_dir`: written by the tests themselves, laid out like shared/data, with the
  full split sizes. Every test that only needs *some* data (training, evaluate, export,
  sample, the CLI, robustness) uses it, so those tests run the same everywhere.
- `data_dir`: the real files named by $TFVAE_DATA_DIR, for the tests that are about those
  files (marked `realdata`). Without the variable they are skipped, with the reason;
  under CI (the variable CI is set) they fail instead, so CI cannot pass with them skipped.

The whole session parses data into a temporary cache ($TFVAE_CACHE_DIR), never ~/.cache, and
runs without an ambient $TFVAE_DATA_DIR, so that no test reads real data without asking for it.
"""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

DATA_DIR_ENV = "TFVAE_DATA_DIR"  # tfvae.datasets.DATA_DIR_ENV, without importing tfvae here
CACHE_DIR_ENV = "TFVAE_CACHE_DIR"  # tfvae.datasets.CACHE_DIR_ENV
REAL_DATA_DIR = os.environ.get(DATA_DIR_ENV)  # read before the session removes it from the environment


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds; deselect with -m 'not slow'")
    config.addinivalue_line("markers", "browser: drives headless Chromium (tests/test_web.py); deselect with -m 'not browser'")
    config.addinivalue_line(
        "markers",
        f"realdata: reads the real data files at ${DATA_DIR_ENV} (the `data_dir` fixture); "
        "skipped without it, failed without it under CI",
    )


def pytest_collection_modifyitems(config, items):
    """Every test that reads the real files says so with @pytest.mark.realdata, so `-m realdata` selects them all."""
    unmarked = [item.nodeid for item in items
                if "data_dir" in getattr(item, "fixturenames", ()) and item.get_closest_marker("realdata") is None]
    if unmarked:
        raise pytest.UsageError("tests that use the data_dir fixture must be marked realdata: " + ", ".join(unmarked))


def running_under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session", autouse=True)
def hermetic_environment(tmp_path_factory):
    """A session-wide cache directory in tmp, and no ambient data directory (child processes inherit both)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_DIR_ENV, str(tmp_path_factory.mktemp("tfvae-cache")))
        patch.delenv(DATA_DIR_ENV, raising=False)
        yield


def reset_random_state():
    """Python's `random` (and, once tf_keras is imported, numpy's, TensorFlow's and tf_keras' own generator) at seed 0.

    tf_keras draws the seed of an unseeded initializer from Python's `random`, so
    `tf.random.set_seed` alone builds a different model in every process: a test with
    a tolerance would then pass or fail by chance. Once anything in the process has called
    `tf_keras.utils.set_random_seed` (an in-process `train` does), tf_keras draws those seeds
    from its own generator instead, whose state depends on the tests run before: that
    generator is reset too.
    """
    import random

    random.seed(0)
    keras = sys.modules.get("tf_keras")
    if keras is not None:
        keras.utils.set_random_seed(0)


@pytest.fixture(autouse=True)
def seeded_random_state():
    """Every test starts from the same random state, whatever ran before it in its process (`reset_random_state`)."""
    reset_random_state()
    yield


@pytest.fixture(scope="session")
def data_dir():
    """The real data directory named by $TFVAE_DATA_DIR (laid out like shared/data).

    Without it the test is skipped, with the reason, or fails when running under CI.
    """
    if not REAL_DATA_DIR:
        reason = (f"real-data test: {DATA_DIR_ENV} is not set; "
                  f"set {DATA_DIR_ENV}=../shared/data (a directory laid out like shared/data) to run it")
        if running_under_ci():
            pytest.fail(f"{reason} (CI is set: real-data tests must run in CI, not be skipped)", pytrace=False)
        pytest.skip(reason)
    path = os.path.abspath(REAL_DATA_DIR)
    if not os.path.isdir(path):
        pytest.fail(f"{DATA_DIR_ENV}={path} is not a directory", pytrace=False)
    return path


# --------------------------------------------------------------------------- synthetic data

PIXELS = 28 * 28
SYNTHETIC_SPLITS = {"train": ("train", 50_000), "validation": ("valid", 10_000), "test": ("test", 10_000)}  # the real sizes
SYNTHETIC_SEED = 20261130


def synthetic_digits(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 784) uint8 in {0, 1}: ten stroke "digits", each shifted by up to 3 pixels, with ~3% of pixels flipped.

    About 12% of the pixels are on (binarized MNIST: 13%). Structured enough that a VAE learns and its
    ELBO improves epoch after epoch; random enough that no two epochs are alike.
    """
    ys, xs = np.mgrid[0:28, 0:28]
    points = np.stack([ys.ravel(), xs.ravel()], axis=1).astype(np.float64)  # (784, 2)
    templates = []
    for _ in range(10):
        segments = rng.uniform(7, 20, (3, 2, 2))  # (3 strokes, 2 ends, (y, x))
        start, direction = segments[:, 0], segments[:, 1] - segments[:, 0]  # (3, 2) each
        t = ((points[:, None] - start) * direction).sum(-1) / (direction**2).sum(-1)  # (784, 3) projection
        nearest = start + np.clip(t, 0, 1)[..., None] * direction  # (784, 3, 2)
        distance = np.sqrt(((points[:, None] - nearest) ** 2).sum(-1)).min(-1)  # (784,)
        templates.append((distance <= 1.6).reshape(28, 28))
    shifts = range(-3, 4)
    variants = np.stack([np.roll(t, (dy, dx), axis=(0, 1)) for t in templates for dy in shifts for dx in shifts])
    images = variants.reshape(len(variants), PIXELS).astype(np.uint8)[rng.integers(len(variants), size=n)]  # (n, 784)
    images ^= (rng.integers(0, 256, (n, PIXELS), dtype=np.uint8) < 8).astype(np.uint8)  # flip 8/256 of the pixels
    return images


def amat_rows(bits: np.ndarray) -> np.ndarray:
    """(N, 784) bits -> (N, 1568) bytes of .amat text: each value, then a space (a newline after the last)."""
    rows = np.full((len(bits), 2 * PIXELS), ord(" "), dtype=np.uint8)
    rows[:, 0::2] = bits + ord("0")
    rows[:, -1] = ord("\n")
    return rows


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory):
    """A data directory laid out like shared/data, holding a synthetic binarized_mnist at the real split sizes.

    Uncompressed .amat (about 110 MB, written in about a second); the same seed gives the same files,
    so every training test of a session sees the same data.
    """
    root = tmp_path_factory.mktemp("synthetic-data")
    os.makedirs(root / "binarized_mnist")
    rng = np.random.default_rng(SYNTHETIC_SEED)
    for name, rows in SYNTHETIC_SPLITS.values():
        with open(root / "binarized_mnist" / f"binarized_mnist_{name}.amat", "wb") as f:
            f.write(amat_rows(synthetic_digits(rows, rng)).data)
    return str(root)


# --------------------------------------------------------------------------- shared runs


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, synthetic_data_dir):
    """A finished two-epoch run of a tiny model (D = 2) on 256 synthetic images: (config, run_dir, summary).

    Shared by the tests that read a run; tests that change it must copy it first.
    """
    from tfvae.config import Config
    from tfvae.train import train_and_evaluate

    config = Config(epochs=2, limit=256, latent_dim=2, hidden_units=16, batch_size=64, data_dir=synthetic_data_dir)
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


# --------------------------------------------------------------------------- child processes


def default_signal_dispositions():
    """Runs in a child between fork and exec: SIGINT and SIGTERM back to their defaults.

    A non-interactive shell starts background jobs with SIGINT ignored, and an ignored signal stays
    ignored across fork and exec; Python then installs no KeyboardInterrupt handler and the child
    never sees a Ctrl-C. With the default disposition at exec, Python installs its handler as usual.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.fixture(scope="session")
def start_child():
    """Starts `command` (a list) as a child process that a test may signal, whatever shell started pytest.

    Returns a Popen with stderr piped as text and stdout discarded; `env` adds to the environment.
    """

    def start(command, env=None):
        return subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
            preexec_fn=default_signal_dispositions,
        )

    return start

