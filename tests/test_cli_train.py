"""`tfvae train` as a user runs it: exit codes, the files produced, one-line errors."""

import os

import pytest
from click.testing import CliRunner

from tfvae.cli.main import cli

TINY = ["--epochs", "1", "--limit", "128", "--latent-dim", "2", "--hidden-units", "8", "--batch-size", "64"]


def one_line_error(result):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr and "Traceback" not in result.output
    return lines[-1]


def test_help_explains_the_options():
    result = CliRunner().invoke(cli, ["train", "--help"])
    assert result.exit_code == 0
    for option in ("--epochs", "--latent-dim", "--data-dir", "--limit", "--run-dir", "--overwrite", "TFVAE_DATA_DIR"):
        assert option in result.output


def test_train_writes_a_run_and_refuses_to_overwrite_it(synthetic_data_dir, tmp_path, monkeypatch):
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli, ["train", *TINY, "--data-dir", synthetic_data_dir, "--run-dir", "r", "--verbose", "0"])
    assert result.exit_code == 0, result.output
    assert {"config.json", "history.csv", "summary.json", "elbo.png", "manifold.png"} <= set(os.listdir("r"))
    assert "ELBO train" in result.stderr

    again = runner.invoke(cli, ["train", *TINY, "--data-dir", synthetic_data_dir, "--run-dir", "r", "--verbose", "0"])
    assert again.exit_code == 1
    assert one_line_error(again) == (
        "Error: r holds a finished run of 1 epoch; pass --epochs larger than 1 to train it further, "
        "--overwrite to replace it, or choose another --run-dir"
    )


def test_default_run_dir_is_a_new_folder_under_runs(synthetic_data_dir, tmp_path, monkeypatch):
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli, ["train", *TINY, "--data-dir", synthetic_data_dir, "--verbose", "0"])
    assert result.exit_code == 0, result.output
    (run,) = os.listdir("runs")
    assert os.path.isfile(os.path.join("runs", run, "summary.json"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "Error: --epochs must be a positive integer, got 0"),
        (["--batch-size", "-5"], "Error: --batch-size must be a positive integer, got -5"),
        (["--latent-dim", "0"], "Error: --latent-dim must be a positive integer, got 0"),
        (["--limit", "999999"], "Error: --limit 999999 is larger than the 50000 training images"),
    ],
)
def test_bad_options_give_one_line_and_exit_1(synthetic_data_dir, tmp_path, monkeypatch, args, message):
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli, ["train", "--data-dir", synthetic_data_dir, "--run-dir", "r", *args])
    assert result.exit_code == 1
    assert one_line_error(result) == message


def test_unknown_choices_are_usage_errors():
    result = CliRunner().invoke(cli, ["train", "--dataset", "cifar10"])
    assert result.exit_code == 2 and "'cifar10' is not one of" in result.stderr


def test_missing_data_dir_is_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["train", "--data-dir", str(tmp_path / "nope"), "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert "does not exist" in one_line_error(result)
