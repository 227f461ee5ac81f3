"""Training under tf.distribute, killed and resumed, and reproducible: real processes, real signals.

Logical CPU devices must be configured before TensorFlow starts, so the
multi-device and multi-process checks run `tfvae` in subprocesses.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tfvae.runs import read_history

pytestmark = pytest.mark.slow

# 2048 images in batches of 32: 64 steps an epoch, long enough to be killed in the middle of one.
TINY = ["--limit", "2048", "--batch-size", "32", "--latent-dim", "2", "--hidden-units", "32", "--verbose", "0"]
EPOCHS = ["--epochs", "4"]


def tfvae_command(*args):
    return [sys.executable, "-m", "tfvae.cli.main", *args]


def run_tfvae(*args, env=None, timeout=300):
    return subprocess.run(
        tfvae_command(*args),
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
        timeout=timeout,
    )


def wait_for(condition, process, what, timeout=600):
    """Polls until `condition()` holds; fails if the child ends first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process.poll() is not None:
            pytest.fail(f"the child ended (exit {process.returncode}) before {what}: {process.stderr.read()}")
        time.sleep(0.02)
    process.kill()
    pytest.fail(f"no {what} within {timeout} s")


def wait_for_rows(run_dir, rows, process, timeout=600):
    wait_for(lambda: len(read_history(str(run_dir))) >= rows, process, f"{rows} history rows", timeout)


def checkpointed_epoch(run_dir):
    """The epoch of the newest checkpoint that `checkpoints/checkpoint` names, or 0 (read without TensorFlow)."""
    path = os.path.join(run_dir, "checkpoints", "checkpoint")
    if not os.path.isfile(path):
        return 0
    with open(path, encoding="utf-8") as f:
        match = re.search(r'^model_checkpoint_path: "(?:.*/)?epoch-(\d+)"$', f.read(), re.M)
    return int(match.group(1)) if match else 0


def weights(run_dir):
    from tfvae.runs import load_vae

    return load_vae(str(run_dir))[1].get_weights()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, synthetic_data_dir):
    """An uninterrupted single-device run: the numbers every other run must reproduce."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    result = run_tfvae("train", *TINY, *EPOCHS, "--data-dir", synthetic_data_dir, "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    return run_dir


def test_same_seed_gives_an_identical_history_file(reference, synthetic_data_dir, tmp_path):
    result = run_tfvae("train", *TINY, *EPOCHS, "--data-dir", synthetic_data_dir, "--run-dir", str(tmp_path / "again"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "again" / "history.csv").read_text() == (reference / "history.csv").read_text()


# `tfvae ARGS`, parked at a chosen point of epoch 3: it writes MARKER, then waits to be killed.
# "mid-epoch": after 32 of the epoch's 64 steps; "before-checkpoint": the epoch's history row is written, its
# checkpoint is not (the callbacks write history first), so the resumed run must drop that row and redo the epoch.
PARKED_TFVAE = textwrap.dedent(
    """
    import sys, threading
    import tfvae.train
    from tfvae.cli.main import cli

    where, marker, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    EPOCH = 2  # 0-based: the third epoch

    def park():
        open(marker, "w").close()
        threading.Event().wait()  # until killed

    class Parking(tfvae.train.TrainingCheckpoint):  # the last callback of an epoch
        def on_epoch_begin(self, epoch, logs=None):
            self.current_epoch = epoch

        def on_train_batch_end(self, batch, logs=None):  # batch: the last step of each call into the graph
            if where == "mid-epoch" and self.current_epoch == EPOCH and batch >= 31:
                park()

        def on_epoch_end(self, epoch, logs=None):
            if where == "before-checkpoint" and epoch == EPOCH:
                park()
            super().on_epoch_end(epoch, logs)

    tfvae.train.TrainingCheckpoint = Parking
    cli(args, prog_name="tfvae")
    """
)


@pytest.mark.parametrize("where, rows", [("mid-epoch", 2), ("before-checkpoint", 3)])
def test_a_killed_run_resumes_as_if_it_had_never_stopped(reference, synthetic_data_dir, tmp_path, start_child, where, rows):
    run_dir, marker = tmp_path / "killed", tmp_path / "parked"
    args = ["train", *TINY, *EPOCHS, "--data-dir", synthetic_data_dir, "--run-dir", str(run_dir)]
    process = start_child([sys.executable, "-c", PARKED_TFVAE, where, str(marker), *args])
    wait_for(marker.exists, process, f"the child parked in epoch 3 ({where})")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    # What the kill left behind, and what the resumed run must cope with.
    assert [row["epoch"] for row in read_history(str(run_dir))] == list(range(1, rows + 1))
    assert checkpointed_epoch(run_dir) == 2 and not (run_dir / "summary.json").exists()
    timing = read_history(str(run_dir), "timing.csv")[:2]

    result = run_tfvae(*args)
    assert result.returncode == 0, result.stderr
    assert "resuming the unfinished run" in result.stderr
    assert read_history(str(run_dir), "timing.csv")[:2] == timing, "epochs 1 and 2 were trained again"
    # Each epoch exactly once, with the numbers of the run that never stopped.
    assert (run_dir / "history.csv").read_text() == (reference / "history.csv").read_text()
    for name in ("samples_epoch_000.png", "samples_epoch_002.png", "samples_epoch_004.png", "elbo.png", "manifold.png"):
        assert (run_dir / name).is_file(), name
    resumed, uninterrupted = weights(run_dir), weights(reference)
    assert len(resumed) == len(uninterrupted)
    for a, b in zip(resumed, uninterrupted):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_exit_conventionally_and_resume(reference, synthetic_data_dir, tmp_path, start_child,
                                                           signum, code):
    # start_child resets SIGINT to its default in the child: a shell's background job inherits it ignored.
    run_dir = tmp_path / "signalled"
    args = ["train", *TINY, *EPOCHS, "--data-dir", synthetic_data_dir, "--run-dir", str(run_dir)]
    process = start_child(tfvae_command(*args))
    wait_for_rows(run_dir, 1, process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert "to resume, run:" in stderr and "--run-dir" in stderr and "Traceback" not in stderr
    result = run_tfvae(*args)
    assert result.returncode == 0, result.stderr
    assert (run_dir / "history.csv").read_text() == (reference / "history.csv").read_text()


def test_mirrored_on_two_cpu_devices_matches_one_device(reference, synthetic_data_dir, tmp_path):
    result = run_tfvae(
        "train", *TINY, *EPOCHS, "--data-dir", synthetic_data_dir, "--run-dir", str(tmp_path / "mirrored"),
        "--strategy", "mirrored", "--cpu-devices", "2",
    )
    assert result.returncode == 0, result.stderr
    mirrored, single = read_history(str(tmp_path / "mirrored")), read_history(str(reference))
    assert len(mirrored) == len(single) == 4
    for a, b in zip(mirrored, single):
        assert a == pytest.approx(b, rel=1e-4)
    mirrored, single = weights(tmp_path / "mirrored"), weights(reference)
    assert len(mirrored) == len(single)
    for a, b in zip(mirrored, single):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


# SGD, unlike Adam, is not invariant to the scale of the gradient: a loss averaged per replica
# instead of over the global batch would double the step and fail this comparison.
SGD_PARITY = textwrap.dedent(
    """
    import json, numpy as np, tensorflow as tf, tf_keras as tfk
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tfvae.config import Config
    from tfvae.pipeline import make_training_dataset
    from tfvae.distribute import make_strategy
    from tfvae.models import build_vae

    images = (np.random.default_rng(0).random((256, 28, 28, 1)) < 0.2).astype(np.uint8)
    initial = None
    results = {}
    for name in ("default", "mirrored"):
        config = Config(latent_dim=2, hidden_units=16, batch_size=64, strategy=name, cpu_devices=2)
        strategy = make_strategy(config)
        with strategy.scope():
            vae = build_vae(config)
            vae.compile(optimizer=tfk.optimizers.SGD(0.01))
        initial = initial or vae.get_weights()
        vae.set_weights(initial)
        data = make_training_dataset(images, 64, seed=0, epochs=1)
        history = vae.fit(data, epochs=1, steps_per_epoch=4, verbose=0).history
        results[name] = {"replicas": strategy.num_replicas_in_sync, "elbo": history["elbo"][0],
                         "weights": [w.tolist() for w in vae.get_weights()]}
    print(json.dumps(results))
    """
)


def test_loss_is_averaged_over_the_global_batch_not_per_replica():
    result = subprocess.run(
        [sys.executable, "-c", SGD_PARITY], capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout.strip().splitlines()[-1])
    assert (results["default"]["replicas"], results["mirrored"]["replicas"]) == (1, 2)
    assert results["mirrored"]["elbo"] == pytest.approx(results["default"]["elbo"], rel=1e-5)
    assert len(results["mirrored"]["weights"]) == len(results["default"]["weights"])
    for a, b in zip(results["mirrored"]["weights"], results["default"]["weights"]):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-4, atol=1e-6)


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_train_together_and_only_the_chief_writes(reference, synthetic_data_dir, tmp_path, start_child):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    run_dir = tmp_path / "multi"
    args = ["train", *TINY, *EPOCHS, "--data-dir", synthetic_data_dir, "--run-dir", str(run_dir), "--strategy", "multi_worker"]
    workers = [
        start_child(tfvae_command(*args),
                    env={"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})})
        for i in range(2)
    ]
    try:
        outputs = [w.communicate(timeout=300)[1] for w in workers]
    finally:
        for w in workers:
            w.kill()
    assert [w.returncode for w in workers] == [0, 0], outputs
    assert "done: ELBO" in outputs[0] and "done: ELBO" not in outputs[1]  # the chief reports, the worker does not
    assert sorted(os.listdir(run_dir)) == sorted(os.listdir(reference))
    together, single = read_history(str(run_dir)), read_history(str(reference))
    assert len(together) == len(single) == 4
    for a, b in zip(together, single):
        assert a == pytest.approx(b, rel=1e-4)


def test_multi_worker_without_a_cluster_is_a_clear_error(synthetic_data_dir, tmp_path):
    result = run_tfvae("train", *TINY, "--data-dir", synthetic_data_dir, "--run-dir", str(tmp_path / "r"), "--strategy", "multi_worker",
                       env={"TF_CONFIG": ""})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("Error: --strategy multi_worker needs TF_CONFIG")


def test_xla_with_several_cpu_replicas_is_refused_up_front(synthetic_data_dir, tmp_path):
    result = run_tfvae("train", *TINY, "--data-dir", synthetic_data_dir, "--run-dir", str(tmp_path / "r"),
                       "--strategy", "mirrored", "--cpu-devices", "2", "--jit-compile")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: --jit-compile cannot run with 2 replicas on CPUs (XLA has no cross-device collectives on CPU); "
        "drop --jit-compile or train on GPUs"
    )
    assert not (tmp_path / "r").exists() or not os.listdir(tmp_path / "r")
