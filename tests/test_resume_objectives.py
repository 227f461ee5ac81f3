"""A killed IWAE + warm-up run resumes as if it had never stopped: real processes, a real SIGKILL."""

import signal
import time

import numpy as np
import pytest

from test_distribute import EPOCHS, TINY, run_tfvae, start_tfvae, wait_for_rows, weights
from tfvae.runs import read_history

pytestmark = pytest.mark.slow

# K = 3 samples, beta = 0, 1/3, 2/3 in epochs 1-3, then 1; the best validation epoch is kept.
OBJECTIVE = ["--objective", "iwae", "--train-samples", "3", "--warmup-epochs", "3", "--keep-best"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir):
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    result = run_tfvae("train", *TINY, *EPOCHS, *OBJECTIVE, "--data-dir", data_dir, "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    return run_dir


def test_a_killed_iwae_warmup_run_resumes_byte_identical(reference, data_dir, tmp_path):
    history = (reference / "history.csv").read_text()
    assert history.splitlines()[0].endswith("train_objective,val_objective")
    run_dir = tmp_path / "killed"
    args = ["train", *TINY, *EPOCHS, *OBJECTIVE, "--data-dir", data_dir, "--run-dir", str(run_dir)]
    process = start_tfvae(*args)
    wait_for_rows(run_dir, 2, process)  # killed in the middle of the warm-up (epoch 3 of 3)
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert len(read_history(str(run_dir))) < 4 and not (run_dir / "summary.json").exists(), "not interrupted"

    result = run_tfvae(*args)
    assert result.returncode == 0, result.stderr
    assert "resuming the unfinished run" in result.stderr
    assert (run_dir / "history.csv").read_text() == history
    import json

    resumed, uninterrupted = (json.loads((d / "summary.json").read_text()) for d in (run_dir, reference))
    assert resumed["test_elbo"] == uninterrupted["test_elbo"]  # the best epoch's weights, the same on both
    for resumed, uninterrupted in zip(weights(run_dir), weights(reference)):  # the best epoch's weights
        np.testing.assert_array_equal(resumed, uninterrupted)
