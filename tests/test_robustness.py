"""Every bad run directory or unwritable place gets one line and exit 1, before any work is spent."""

import json
import os
import re
import shutil

import pytest
from click.testing import CliRunner

from tfvae.cli.main import cli
from tfvae.config import Config
from tfvae.runs import ensure_run_dir, plan_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fails_with(args, message):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output + result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert message in line, line
    return line


def copy_of(run_dir, tmp_path):
    copy = str(tmp_path / "copy")
    shutil.copytree(run_dir, copy)
    return copy


def unwritable_dir(tmp_path):
    if os.geteuid() == 0:  # root writes through file modes; sysfs refuses even root
        return "/sys/tfvae-run"
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    return str(locked / "run")


def test_an_unwritable_run_dir_fails_before_any_data_is_read(tmp_path):
    # The data directory is bad too: the run directory must be the error, as it is checked first.
    fails_with(
        ["train", "--run-dir", unwritable_dir(tmp_path), "--data-dir", str(tmp_path / "no-data")],
        "cannot write to run directory",
    )


@pytest.mark.parametrize("command", ["evaluate", "export"])
def test_a_missing_run_dir(command, tmp_path):
    fails_with([command, "--run-dir", str(tmp_path / "nope")], "does not exist")


@pytest.mark.parametrize("command", ["evaluate", "export"])
def test_a_folder_that_is_not_a_run(command, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    fails_with([command, "--run-dir", str(tmp_path)], "is not a tfvae run")


@pytest.mark.parametrize("command", ["evaluate", "export"])
def test_a_run_that_never_finished_an_epoch(command, tmp_path):
    ensure_run_dir(str(tmp_path / "run"))
    plan_run(str(tmp_path / "run"), Config(latent_dim=2))
    fails_with([command, "--run-dir", str(tmp_path / "run")], "never finished an epoch")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: "{broken", "is not valid JSON"),
        (lambda c: json.dumps({**c, "version": 99}), "config version 99 is not supported"),
        (lambda c: json.dumps({**c, "output_dir": "/etc"}), "unknown fields ['output_dir']"),
        (lambda c: json.dumps({**c, "latent_dim": 3}), "does not match its config.json"),
        (lambda c: json.dumps({**c, "hidden_units": 17}), "does not match its config.json"),
    ],
)
@pytest.mark.parametrize("command", ["evaluate", "export"])
def test_a_damaged_or_edited_config(command, edit, message, tiny_run, tmp_path):
    run_dir = copy_of(tiny_run[1], tmp_path)
    path = os.path.join(run_dir, "config.json")
    with open(path) as f:
        config = json.load(f)
    with open(path, "w") as f:
        f.write(edit(config))
    fails_with([command, "--run-dir", run_dir], message)


def test_a_missing_config_json(tiny_run, tmp_path):
    run_dir = copy_of(tiny_run[1], tmp_path)
    os.remove(os.path.join(run_dir, "config.json"))
    fails_with(["evaluate", "--run-dir", run_dir], "is not a tfvae run")


def package_sources():
    for folder in ("tfvae", "cli", "export"):
        for name in sorted(os.listdir(os.path.join(ROOT, folder))):
            if name.endswith(".py"):
                path = os.path.join(ROOT, folder, name)
                with open(path, encoding="utf-8") as f:
                    yield path, f.read()


def test_nothing_is_ever_unpickled_or_evaluated():
    for path, source in package_sources():
        assert not re.search(r"^\s*(import pickle|from pickle)|\bpickle\.load|\beval\(|\bexec\(", source, re.M), path
        for call in re.findall(r"np\.load\([^)]*\)", source):
            assert "allow_pickle=False" in call, f"{path}: {call}"


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--dataset", "cifar10"], "Error: Invalid value for '--dataset': 'cifar10' is not one of"),
        (["train", "--epochs", "many"], "Error: Invalid value for '--epochs': 'many' is not a valid integer."),
        (["evaluate"], "Error: give exactly one of --run-dir (a run of tfvae train), --model (a .keras file) and "
                       "--pretrained NAME (a shipped model) (see 'tfvae evaluate --help')"),
        (["bogus"], "Error: No such command 'bogus'. (see 'tfvae --help')"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(args, message):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith(message), line


def test_an_unwritable_output_is_a_write_error_naming_it(tmp_path):
    from tfvae.errors import WriteError
    from tfvae.io import atomic_write_text

    target = os.path.join(unwritable_dir(tmp_path), "history.csv")
    with pytest.raises(WriteError, match=f"cannot write {re.escape(target)}"):
        atomic_write_text(target, "epoch\n")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    from tfvae.io import atomic_path

    target = tmp_path / "summary.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(str(target)) as tmp:
            with open(tmp, "w") as f:
                f.write("half of the new")
            raise RuntimeError("crash in the middle")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["summary.json"]


def manifest_holds(export_dir):
    """True if every file the manifest lists is present with its recorded size and sha256."""
    import hashlib

    with open(os.path.join(export_dir, "manifest.json")) as f:
        files = json.load(f)["files"]
    for name, entry in files.items():
        with open(os.path.join(export_dir, name), "rb") as f:
            data = f.read()
        if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            return False
    return True


# `tfvae ARGS`, parked in the middle of writing an export: the SavedModel and decoder.tflite are in the
# temporary directory and the encoder is being converted. It writes MARKER, then waits to be killed.
PARKED_EXPORT = """
import sys, threading
from tfvae.export import exporter
from tfvae.cli.main import cli

marker, args = sys.argv[1], sys.argv[2:]
convert = exporter.convert_signature

def parking_convert(saved_model_dir, key, *rest, **kwargs):
    if key == "encode":
        open(marker, "w").close()
        threading.Event().wait()  # until killed
    return convert(saved_model_dir, key, *rest, **kwargs)

exporter.convert_signature = parking_convert
cli(args, prog_name="tfvae")
"""


@pytest.mark.slow
def test_an_export_killed_in_the_middle_leaves_the_previous_export_intact(run_dir, tmp_path, start_child):
    import signal
    import subprocess
    import sys
    import time

    out, marker = str(tmp_path / "export"), tmp_path / "parked"
    args = ["export", "--run-dir", run_dir, "--out", out, "--tflite"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    assert subprocess.run([sys.executable, "-m", "tfvae.cli.main", *args], capture_output=True, env=env,
                          timeout=300).returncode == 0
    assert manifest_holds(out)
    before = {name: os.path.getmtime(os.path.join(out, name)) for name in os.listdir(out)}

    process = start_child([sys.executable, "-c", PARKED_EXPORT, str(marker), *args, "--overwrite"])
    deadline = time.monotonic() + 600  # a safety net only: a loaded machine can be slow
    while not marker.exists():  # the new export is half written
        assert process.poll() is None, f"the export ended before it parked: {process.stderr.read()}"
        assert time.monotonic() < deadline, "the export never parked"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)

    assert manifest_holds(out), "the previous export was damaged"
    assert {name: os.path.getmtime(os.path.join(out, name)) for name in os.listdir(out)} == before
