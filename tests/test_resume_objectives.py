"""A killed IWAE + warm-up run resumes as if it had never stopped: real processes, a real SIGKILL."""

import signal
import sys

import numpy as np
import pytest

from test_distribute import EPOCHS, PARKED_TFVAE, TINY, run_tfvae, wait_for, weights
from tfvae.runs import read_history

pytestmark = pytest.mark.slow

# K = 3 samples, beta = 0, 1/3, 2/3 in epochs 1-3, then 1; the best validation epoch is kept.
OBJECTIVE = ["--objective", "iwae", "--train-samples", "3", "--warmup-epochs", "3", "--keep-best"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, synthetic_data_dir):
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    result = run_tfvae("train", *TINY, *EPOCHS, *OBJECTIVE, "--data-dir", synthetic_data_dir, "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    return run_dir


def test_a_killed_iwae_warmup_run_resumes_byte_identical(reference, synthetic_data_dir, tmp_path, start_child):
    history = (reference / "history.csv").read_text()
    assert history.splitlines()[0].endswith("train_objective,val_objective")
    run_dir, marker = tmp_path / "killed", tmp_path / "parked"
    args = ["train", *TINY, *EPOCHS, *OBJECTIVE, "--data-dir", synthetic_data_dir, "--run-dir", str(run_dir)]
    # Killed in the middle of the warm-up: halfway through epoch 3 of 3.
    process = start_child([sys.executable, "-c", PARKED_TFVAE, "mid-epoch", str(marker), *args])
    wait_for(marker.exists, process, "the child parked in epoch 3")
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
    resumed, uninterrupted = weights(run_dir), weights(reference)  # the best epoch's weights
    assert len(resumed) == len(uninterrupted)
    for resumed, uninterrupted in zip(resumed, uninterrupted):
        np.testing.assert_array_equal(resumed, uninterrupted)


# Two logical CPU devices must be configured before TensorFlow starts: a subprocess. 257 images in batches of 64
# leave a last batch of one image, so the second replica gets none: it must add 0 to the loss, not NaN.
IWAE_REPLICA_PARITY = """
import json, numpy as np, tensorflow as tf, tf_keras as tfk
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tfvae.config import Config
from tfvae.pipeline import make_training_dataset
from tfvae.distribute import make_strategy
from tfvae.models import build_vae

images = (np.random.default_rng(0).random((257, 28, 28, 1)) < 0.2).astype(np.uint8)
initial, results = None, {}
for name in ("default", "mirrored"):
    config = Config(latent_dim=2, hidden_units=16, batch_size=64, strategy=name, cpu_devices=2,
                    objective="iwae", train_samples=3)
    strategy = make_strategy(config)
    with strategy.scope():
        vae = build_vae(config)
        vae.compile(optimizer=tfk.optimizers.SGD(0.01))
    networks = vae.encoder.get_weights() + vae.decoder.get_weights()
    initial = initial or networks
    vae.encoder.set_weights(initial[: len(vae.encoder.get_weights())])
    vae.decoder.set_weights(initial[len(vae.encoder.get_weights()):])
    history = vae.fit(make_training_dataset(images, 64, seed=0, epochs=1), epochs=1, steps_per_epoch=5, verbose=0)
    results[name] = {"replicas": strategy.num_replicas_in_sync, "objective": history.history["objective"][0],
                     "weights": [w.tolist() for w in vae.encoder.get_weights() + vae.decoder.get_weights()]}
print(json.dumps(results))
"""


def test_iwae_on_two_replicas_matches_one_device_even_with_an_empty_replica():
    import json
    import os
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", IWAE_REPLICA_PARITY], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout.strip().splitlines()[-1])
    assert (results["default"]["replicas"], results["mirrored"]["replicas"]) == (1, 2)
    assert np.isfinite(results["mirrored"]["objective"])
    assert results["mirrored"]["objective"] == pytest.approx(results["default"]["objective"], rel=1e-5)
    assert len(results["mirrored"]["weights"]) == len(results["default"]["weights"])
    for a, b in zip(results["mirrored"]["weights"], results["default"]["weights"]):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-4, atol=1e-6)
