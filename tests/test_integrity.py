"""Run integrity: replicas compute what one device computes, resumes are exact, one writer per run, damage is survived.

Each test reproduces a way a run could be wrong or unsafe and checks the behaviour that replaces it.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from test_distribute import free_ports
from tfvae.cli.main import cli
from tfvae.config import Config, load_config
from tfvae.errors import RunError
from tfvae.io import FileLock, LockHeld, atomic_directory, recover_directory
from tfvae.runs import LOCK_FILE, ensure_run_dir, lock_run, plan_run, read_history

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def run_tfvae(*args, env=None, cwd=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "tfvae.cli.main", *args],
        capture_output=True, text=True, env={**ENV, **(env or {})}, cwd=cwd, timeout=timeout,
    )


def last_line(text):
    return [line for line in text.splitlines() if line.strip()][-1]


def copy_run(tiny_run, tmp_path, name="copy"):
    path = str(tmp_path / name)
    shutil.copytree(tiny_run[1], path)
    return path


def same_history(a, b, rel=0.0):
    """Histories (lists of dicts) of the same length whose rows agree to `rel`."""
    assert len(a) == len(b), f"{len(a)} rows against {len(b)}"
    for row_a, row_b in zip(a, b):
        assert row_a == pytest.approx(row_b, rel=rel, abs=0 if rel == 0 else 1e-6)


# --------------------------------------------------------------------------- replicas and uneven batches

# One process, three logical CPUs: the same tiny model trained on 1, 2 and 3 replicas, on datasets whose last
# global batch of 8 splits evenly, leaves a single image (so two replicas get none) or leaves three.
REPLICA_PARITY = textwrap.dedent(
    """
    import json, numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 3)
    import tf_keras
    tf_keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
    from tfvae.config import Config
    from tfvae.pipeline import make_dataset, make_training_dataset, steps_per_epoch
    from tfvae.train import compile_vae

    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    strategies = {
        1: tf.distribute.get_strategy(),
        2: tf.distribute.MirroredStrategy(devices[:2], cross_device_ops=tf.distribute.ReductionToOneDevice()),
        3: tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice()),
    }
    config = Config(latent_dim=2, hidden_units=16, batch_size=8, steps_per_execution=1)
    results, initial = {}, None
    for replicas, strategy in strategies.items():
        vae = compile_vae(config, strategy)  # one model per strategy: traced once, reset for each dataset
        initial = initial or vae.get_weights()
        for images in (64, 65, 75):
            x = (np.random.default_rng(images).random((images, 28, 28, 1)) < 0.3).astype(np.uint8)
            vae.set_weights(initial)
            for variable in vae.optimizer.variables():  # step 0 and empty Adam moments, as a new optimizer
                variable.assign(tf.zeros_like(variable))
            history = vae.fit(
                make_training_dataset(x, 8, seed=0, epochs=2), epochs=2, steps_per_epoch=steps_per_epoch(images, 8),
                validation_data=make_dataset(x[:13], 8, training=False), verbose=0,
            ).history
            results[f"{images}/{replicas}"] = {"history": history, "weights": [w.tolist() for w in vae.get_weights()]}
    print(json.dumps(results))
    """
)


@pytest.mark.slow
def test_one_two_and_three_replicas_agree_for_every_remainder():
    result = subprocess.run([sys.executable, "-c", REPLICA_PARITY], capture_output=True, text=True, env=ENV, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.strip().splitlines()[-1])
    for images in (64, 65, 75):
        one = results[f"{images}/1"]
        for replicas in (2, 3):
            other = results[f"{images}/{replicas}"]
            for key, values in one["history"].items():
                assert np.all(np.isfinite(other["history"][key])), (images, replicas, key)  # an empty replica: no NaN
                np.testing.assert_allclose(other["history"][key], values, rtol=1e-4, err_msg=f"{images}/{replicas} {key}")
            assert len(other["weights"]) == len(one["weights"])
            for a, b in zip(other["weights"], one["weights"]):
                np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-3, atol=1e-5)


@pytest.mark.slow
def test_the_issue_command_with_one_image_in_the_last_batch_trains_like_one_device(synthetic_data_dir, tmp_path):
    args = ["train", "--epochs", "2", "--limit", "1025", "--batch-size", "128", "--hidden-units", "16",
            "--verbose", "0", "--data-dir", synthetic_data_dir]
    mirrored = run_tfvae(*args, "--strategy", "mirrored", "--cpu-devices", "2", "--run-dir", str(tmp_path / "m"))
    assert mirrored.returncode == 0, mirrored.stderr
    single = run_tfvae(*args, "--run-dir", str(tmp_path / "s"))
    assert single.returncode == 0, single.stderr
    same_history(read_history(str(tmp_path / "m")), read_history(str(tmp_path / "s")), rel=1e-4)


# --------------------------------------------------------------------------- nothing written on bad input


@pytest.mark.slow
@pytest.mark.parametrize("bad", [["--data-dir", "no-such-data"], ["--limit", "1000000"]])
def test_bad_inputs_write_nothing_and_the_corrected_command_starts_afresh(bad, synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny = ["train", "--epochs", "1", "--limit", "64", "--batch-size", "32", "--latent-dim", "2",
            "--hidden-units", "8", "--verbose", "0", "--run-dir", "run"]
    result = CliRunner().invoke(cli, [*tiny, "--data-dir", synthetic_data_dir, *bad])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert not os.path.exists("run"), os.listdir("run")
    result = CliRunner().invoke(cli, [*tiny, "--data-dir", synthetic_data_dir])
    assert result.exit_code == 0, result.output
    assert len(read_history("run")) == 1


def test_a_run_that_never_completed_an_epoch_is_replaced_by_a_new_one(tmp_path):
    run_dir = str(tmp_path / "run")
    ensure_run_dir(run_dir)
    plan_run(run_dir, Config(latent_dim=2))
    with open(os.path.join(run_dir, "history.csv"), "w") as f:
        f.write("epoch,train_elbo\n1,-500\n")  # written before a crash, never checkpointed
    plan = plan_run(run_dir, Config(latent_dim=3), log=lambda message: None)
    assert (plan.action, plan.epoch) == ("new", 0)
    assert load_config(os.path.join(run_dir, "config.json")).latent_dim == 3
    assert not os.path.exists(os.path.join(run_dir, "history.csv"))


# --------------------------------------------------------------------------- resuming and re-running


def test_a_run_started_at_zero_bias_trains_further_with_the_default_and_keeps_its_record(tiny_run, tmp_path):
    """--decoder-bias only starts a new run: an old run (no field: zero) resumes with today's default command."""
    config, _, _ = tiny_run
    run_dir = copy_run(tiny_run, tmp_path)
    path = os.path.join(run_dir, "config.json")
    with open(path) as f:
        saved = json.load(f)
    del saved["decoder_bias"]  # as written before the option existed
    with open(path, "w") as f:
        json.dump(saved, f)
    plan = plan_run(run_dir, config.replace(epochs=3), log=lambda message: None)
    assert (plan.action, plan.epoch, plan.config.decoder_bias) == ("extend", 2, "zero")
    assert load_config(path).decoder_bias == "zero"


def test_an_iaf_run_from_before_flow_context_resumes_with_its_own_command(tiny_run, tmp_path):
    """Flow runs written before --flow-context conditioned on the encoder's params: the command that started one
    (no --flow-context, whose default is now features) resumes it as params; asking for features explicitly is
    another model, refused."""
    config, _, _ = tiny_run
    run_dir = copy_run(tiny_run, tmp_path)
    path = os.path.join(run_dir, "config.json")
    with open(path) as f:
        saved = json.load(f)
    saved["posterior"] = "iaf"  # plan_run compares configs; the weights are not read here
    saved.pop("flow_context", None)  # as written before the option existed
    with open(path, "w") as f:
        json.dump(saved, f)
    command = config.replace(epochs=3, posterior="iaf")
    assert command.flow_context == "features"
    with pytest.raises(RunError, match="--flow-context 'params' -> 'features'"):
        plan_run(run_dir, command, log=lambda message: None)  # chosen explicitly
    plan = plan_run(run_dir, command, log=lambda message: None, defaulted=("flow_context", "latent_dim"))
    assert (plan.action, plan.epoch, plan.config.flow_context) == ("extend", 2, "params")
    assert load_config(path).flow_context == "params"


def test_train_tells_which_fields_the_user_left_at_their_defaults(monkeypatch, tmp_path):
    """What `plan_run` may take from an older run: neither a flag given nor a preset's value."""
    import tfvae.train

    monkeypatch.chdir(tmp_path)
    seen = {}
    monkeypatch.setattr(tfvae.train, "train_and_evaluate", lambda config, run_dir, **kw: seen.update(kw))
    assert CliRunner().invoke(cli, ["train", "--posterior", "iaf", "--run-dir", "r"]).exit_code == 0
    assert "flow_context" in seen["defaulted"] and "posterior" not in seen["defaulted"]
    assert CliRunner().invoke(cli, ["train", "--flow-context", "params", "--run-dir", "r"]).exit_code == 0
    assert "flow_context" not in seen["defaulted"]
    assert CliRunner().invoke(cli, ["train", "--preset", "best", "--run-dir", "r"]).exit_code == 0
    assert "latent_dim" not in seen["defaulted"] and "hidden_units" in seen["defaulted"]


@pytest.mark.slow
def test_resume_elsewhere_with_other_devices_and_more_epochs_equals_one_straight_run(synthetic_data_dir, tmp_path):
    """Trained 1 epoch from one working directory with a relative --data-dir, then finished with more epochs from
    another directory, other execution settings and the data from the environment: the history of a straight run."""
    tiny = ["--limit", "256", "--batch-size", "64", "--latent-dim", "2", "--hidden-units", "16", "--verbose", "0"]
    first_cwd, second_cwd = tmp_path / "machine-a", tmp_path / "machine-b"
    first_cwd.mkdir(), second_cwd.mkdir()
    run_dir = str(tmp_path / "shared" / "run")
    relative = os.path.relpath(synthetic_data_dir, first_cwd)
    first = run_tfvae("train", *tiny, "--epochs", "1", "--data-dir", relative, "--run-dir", run_dir, cwd=first_cwd,
                      env={"TFVAE_DATA_DIR": ""})
    assert first.returncode == 0, first.stderr
    assert load_config(os.path.join(run_dir, "config.json")).data_dir == synthetic_data_dir  # absolute: means the same anywhere

    more = run_tfvae("train", *tiny, "--epochs", "3", "--steps-per-execution", "4", "--no-deterministic",
                     "--run-dir", run_dir, cwd=second_cwd, env={"TFVAE_DATA_DIR": synthetic_data_dir})
    assert more.returncode == 0, more.stderr
    assert ("resuming with other execution settings: --steps-per-execution 16 -> 4; --deterministic True -> False"
            in more.stderr)
    assert "training the finished run in" in more.stderr and "epochs 1 -> 3" in more.stderr

    straight = run_tfvae("train", *tiny, "--epochs", "3", "--run-dir", str(tmp_path / "straight"),
                         env={"TFVAE_DATA_DIR": synthetic_data_dir})
    assert straight.returncode == 0, straight.stderr
    same_history(read_history(run_dir), read_history(str(tmp_path / "straight")))


def test_a_run_of_another_model_is_refused_naming_what_differs(tiny_run):
    config, run_dir, _ = tiny_run
    with pytest.raises(RunError, match=r"holds another run \(--latent-dim 2 -> 3; --seed 0 -> 1\)"):
        plan_run(run_dir, config.replace(latent_dim=3, seed=1, epochs=9))


def test_fewer_epochs_than_completed_is_refused(tiny_run, tmp_path):
    config, _, _ = tiny_run
    run_dir = copy_run(tiny_run, tmp_path)
    os.remove(os.path.join(run_dir, "summary.json"))  # an unfinished run that has completed 2 epochs
    with pytest.raises(RunError, match="holds a run that has completed 2 epochs; pass --epochs larger than 2"):
        plan_run(run_dir, config.replace(epochs=1))


def test_the_resume_command_names_the_run_dir_and_the_options_given(tmp_path):
    from tfvae.cli.train import resume_command, train

    ctx = train.make_context("train", ["--epochs", "3", "--no-deterministic", "--overwrite", "--latent-dim", "2"])
    assert resume_command(ctx, "runs/20261130-070000") == (
        "train --epochs 3 --latent-dim 2 --no-deterministic --run-dir runs/20261130-070000"
    )


def test_the_default_run_dir_is_printed_with_the_command_that_resumes_it(synthetic_data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["train", "--epochs", "1", "--limit", "64", "--batch-size", "32",
                                      "--latent-dim", "2", "--hidden-units", "8", "--verbose", "0",
                                      "--data-dir", synthetic_data_dir], prog_name="tfvae")
    assert result.exit_code == 0, result.output
    (run,) = os.listdir("runs")
    assert (f"(if interrupted, resume with: tfvae train --epochs 1 --latent-dim 2 --hidden-units 8 --batch-size 32 "
            f"--data-dir {synthetic_data_dir} --limit 64 --verbose 0 --run-dir runs/{run})") in result.stderr


def test_overwrite_removes_the_old_runs_export(tiny_run, tmp_path):
    config, _, _ = tiny_run
    run_dir = copy_run(tiny_run, tmp_path)
    export = os.path.join(run_dir, "export")
    os.makedirs(export)
    with open(os.path.join(export, "manifest.json"), "w") as f:
        f.write("{}")
    messages = []
    plan = plan_run(run_dir, config, overwrite=True, log=messages.append)
    assert plan.action == "new" and not os.path.exists(export)
    assert messages == [f"removed the old export in {export}: it was made from the run that --overwrite replaces"]


def test_evaluation_splits_of_dynamic_datasets_do_not_depend_on_the_runs_seed(tmp_path, monkeypatch):
    from tfvae import datasets
    from tfvae.datasets import mnist
    from tfvae.evaluate import split_images

    sizes = {"train": 6, "validation": 3, "test": 4}
    monkeypatch.setattr(mnist, "SPLIT_SIZES", {name: dict(sizes) for name in datasets.SPLIT_SIZES})
    monkeypatch.setenv(datasets.CACHE_DIR_ENV, str(tmp_path / "cache"))
    rng = np.random.default_rng(1)
    root = tmp_path / "data" / "mnist"
    root.mkdir(parents=True)
    for name, n in (("train-images-idx3-ubyte", 9), ("t10k-images-idx3-ubyte", 4)):
        header = (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (n, 28, 28))
        (root / name).write_bytes(header + rng.integers(0, 256, (n, 28, 28), dtype=np.uint8).tobytes())
    for split in ("validation", "test", "train"):
        a = split_images(Config(dataset="mnist", seed=1), split, str(tmp_path / "data"))
        b = split_images(Config(dataset="mnist", seed=2), split, str(tmp_path / "data"))
        np.testing.assert_array_equal(a, b)
        assert set(np.unique(a)) <= {0, 1}


# --------------------------------------------------------------------------- one writer per run


def test_a_second_trainer_is_refused_at_once_naming_the_holder(tiny_run, tmp_path):
    run_dir = copy_run(tiny_run, tmp_path)
    with FileLock(os.path.join(run_dir, LOCK_FILE), "tfvae train"):
        result = CliRunner().invoke(cli, ["train", "--run-dir", run_dir, "--epochs", "3"])
    assert result.exit_code == 1
    assert last_line(result.stderr).startswith(f"Error: {run_dir} is being trained by another process (pid {os.getpid()} on ")
    assert last_line(result.stderr).endswith("tfvae train); wait for it to finish, or stop it and run this command again")


@pytest.mark.parametrize("command", ["evaluate", "export"])
def test_evaluate_and_export_refuse_a_run_being_trained(command, tiny_run, tmp_path):
    run_dir = copy_run(tiny_run, tmp_path)
    with FileLock(os.path.join(run_dir, LOCK_FILE), "tfvae train"):
        result = CliRunner().invoke(cli, [command, "--run-dir", run_dir])
    assert result.exit_code == 1
    assert f"Error: {run_dir} is being trained right now (pid {os.getpid()} " in last_line(result.stderr)


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    run_dir = str(tmp_path / "run")
    os.makedirs(run_dir)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from tfvae.runs import lock_run; lock_run(sys.argv[1]); "
         "print('locked', flush=True); time.sleep(600)", run_dir],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunError, match=f"pid {holder.pid} on "):
            lock_run(run_dir)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    lock_run(run_dir).release()  # the OS released the dead holder's lock


def test_a_lock_released_meanwhile_is_never_held_twice(tmp_path):
    path = str(tmp_path / LOCK_FILE)
    first = FileLock(path, "first").acquire()
    with pytest.raises(LockHeld, match="first"):
        FileLock(path, "second").acquire()
    first.release()
    assert not os.path.exists(path)
    with FileLock(path, "third"):
        with pytest.raises(LockHeld, match="third"):
            FileLock(path, "fourth").acquire()


# --------------------------------------------------------------------------- damaged checkpoints


def truncate_newest_checkpoint(run_dir):
    directory = os.path.join(run_dir, "checkpoints")
    (data,) = [n for n in os.listdir(directory) if n.startswith("epoch-2.data-")]
    with open(os.path.join(directory, data), "r+b") as f:
        f.truncate(1000)  # as a full disk would leave it
    return os.path.join(directory, data)


@pytest.mark.parametrize("command", ["evaluate", "export"])
def test_evaluate_and_export_name_a_damaged_checkpoint_and_fall_back(command, tiny_run, tmp_path):
    run_dir = copy_run(tiny_run, tmp_path)
    damaged = truncate_newest_checkpoint(run_dir)
    args = ["--limit", "20", "-k", "2"] if command == "evaluate" else ["--out", str(tmp_path / "export")]
    result = CliRunner().invoke(cli, [command, "--run-dir", run_dir, *args])
    assert result.exit_code == 0, result.output
    assert f"warning: checkpoint {damaged} is damaged (Read less bytes than requested); using epoch 1" in result.stderr
    assert "Traceback" not in result.output


def test_resume_falls_back_to_the_newest_readable_checkpoint_and_ends_as_if_nothing_happened(tiny_run, tmp_path):
    from tfvae.train import train_and_evaluate

    config, reference, _ = tiny_run
    run_dir = copy_run(tiny_run, tmp_path)
    os.remove(os.path.join(run_dir, "summary.json"))
    damaged = truncate_newest_checkpoint(run_dir)
    messages = []
    train_and_evaluate(config, run_dir, verbose=0, log=messages.append)
    assert f"warning: checkpoint {damaged} is damaged (Read less bytes than requested); resuming from epoch 1, " \
           "the newest readable one" in messages
    with open(os.path.join(run_dir, "history.csv")) as a, open(os.path.join(reference, "history.csv")) as b:
        assert a.read() == b.read()


def test_when_no_checkpoint_can_be_read_the_error_is_one_line(tiny_run, tmp_path):
    run_dir = copy_run(tiny_run, tmp_path)
    directory = os.path.join(run_dir, "checkpoints")
    for name in os.listdir(directory):
        if ".data-" in name:
            with open(os.path.join(directory, name), "r+b") as f:
                f.truncate(10)
    result = CliRunner().invoke(cli, ["evaluate", "--run-dir", run_dir])
    assert result.exit_code == 1
    assert last_line(result.stderr).startswith(f"Error: no checkpoint of {run_dir} can be read (newest: ")
    assert last_line(result.stderr).endswith("the run cannot be restored: train it again with --overwrite")


# --------------------------------------------------------------------------- multi-worker: the chief decides


@pytest.mark.slow
def test_workers_stop_with_the_chiefs_error_instead_of_hanging(tiny_run, synthetic_data_dir, tmp_path):
    run_dir = copy_run(tiny_run, tmp_path)  # finished after 2 epochs: training it to 2 epochs again is refused
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    args = [sys.executable, "-m", "tfvae.cli.main", "train", "--epochs", "2", "--limit", "256", "--batch-size", "64",
            "--latent-dim", "2", "--hidden-units", "16", "--verbose", "0", "--data-dir", synthetic_data_dir, "--run-dir", run_dir]
    workers = [
        subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         env={**ENV, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})})
        for i in range(2)
    ]
    try:
        errors = [w.communicate(timeout=240)[1] for w in workers]
    finally:
        for w in workers:
            w.kill()
    message = f"{run_dir} holds a finished run of 2 epochs; pass --epochs larger than 2 to train it further"
    assert [w.returncode for w in workers] == [1, 1], errors
    assert last_line(errors[0]).startswith(f"Error: {message}")
    assert last_line(errors[1]).startswith(f"Error: the chief or another worker stopped: {message}")


# --------------------------------------------------------------------------- atomic folders


def test_a_folder_is_replaced_in_one_step_and_the_old_one_is_gone(tmp_path):
    target = str(tmp_path / "export")
    for version in ("v1", "v2"):
        with atomic_directory(target) as staging:
            assert os.path.isdir(staging) and os.path.dirname(staging) == str(tmp_path)
            with open(os.path.join(staging, "model"), "w") as f:
                f.write(version)
    assert open(os.path.join(target, "model")).read() == "v2"
    assert os.listdir(tmp_path) == ["export"]


def test_a_failed_build_leaves_the_old_folder_and_no_staging(tmp_path):
    target = str(tmp_path / "export")
    with atomic_directory(target) as staging:
        open(os.path.join(staging, "model"), "w").write("v1")
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as staging:
            open(os.path.join(staging, "model"), "w").write("half")
            raise RuntimeError("killed")
    assert open(os.path.join(target, "model")).read() == "v1" and os.listdir(tmp_path) == ["export"]


def dead_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_leftovers_of_dead_processes_are_cleaned_and_a_retired_folder_restored(tmp_path):
    from tfvae.io import _host

    target = tmp_path / "export"
    pid = dead_pid()
    retired = tmp_path / f".export.old-{_host()}-{pid}-abc"  # a crash between the fallback's two renames
    staging = tmp_path / f".export.tmp-{_host()}-{pid}-def"  # a build that was killed
    alive = tmp_path / f".export.tmp-{_host()}-{os.getpid()}-ghi"  # a build still going on
    for folder in (retired, staging, alive):
        folder.mkdir()
    (retired / "model").write_text("old")
    recover_directory(str(target))
    assert (target / "model").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == sorted(["export", alive.name])


def test_without_an_atomic_exchange_the_fallback_still_publishes(tmp_path, monkeypatch):
    from tfvae import io

    monkeypatch.setattr(io, "_exchange", lambda a, b: False)
    target = str(tmp_path / "export")
    for version in ("v1", "v2"):
        with atomic_directory(target) as staging:
            open(os.path.join(staging, "model"), "w").write(version)
    assert open(os.path.join(target, "model")).read() == "v2" and os.listdir(tmp_path) == ["export"]


# --------------------------------------------------------------------------- signals


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowed KeyboardInterrupt
def test_a_ctrl_c_swallowed_by_a_finalizer_is_raised_again_after_the_next_graph_call():
    import weakref

    from tfvae import interrupts
    from tfvae.callbacks import RaiseLostSignals

    previous = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    interrupts.install()
    try:
        class Resource:
            pass

        resource = Resource()
        # The handler raises KeyboardInterrupt inside the weakref callback, where Python only prints it.
        ref = weakref.ref(resource, lambda _: signal.raise_signal(signal.SIGINT))
        del resource
        assert ref() is None  # the callback ran, and the KeyboardInterrupt did not reach this frame
        with pytest.raises(KeyboardInterrupt):
            RaiseLostSignals().on_train_batch_end(0)
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])
        interrupts._pending.clear()
