"""Time to quality (`tfvae.analysis.quality`, `tfvae bench --sections quality`) and the epochs a run keeps for it."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tfvae.analysis.quality import crossings, estimate_log_likelihood


def test_the_estimate_interpolates_the_gap_scales_it_and_holds_it_outside_the_measured_epochs():
    elbo = {1: -120.0, 2: -110.0, 4: -100.0, 6: -99.0, 9: -98.0}
    gaps = {2: 8.0, 6: 4.0}  # measured at 2 and 6: 6.0 at 4 by interpolation; 8 before 2, 4 after 6
    estimates = estimate_log_likelihood(elbo, gaps, ratio=1.5)
    assert estimates == {1: -108.0, 2: -98.0, 4: -91.0, 6: -93.0, 9: -92.0}


def test_a_threshold_is_crossed_at_the_first_epoch_at_or_above_it_with_the_training_time_until_then():
    estimates = {1: -100.0, 2: -95.0, 3: -96.0, 4: -91.0}
    seconds = {1: 10.0, 2: 11.0, 3: 12.0, 4: 13.0, 5: 14.0}
    hits = crossings(estimates, seconds, [-95, -92, -90])
    assert hits["-95.0"] == {"epoch": 2, "log_likelihood": -95.0, "previous": -100.0, "training_seconds": 21.0}
    assert hits["-92.0"]["epoch"] == 4 and hits["-92.0"]["training_seconds"] == 46.0
    assert hits["-90.0"] is None


@pytest.fixture(scope="module")
def kept_run(tmp_path_factory, synthetic_data_dir):
    """A finished 4-epoch run that keeps every epoch and its best validation epoch: (config, run_dir)."""
    from tfvae.config import Config
    from tfvae.train import train_and_evaluate

    config = Config(epochs=4, limit=256, latent_dim=2, hidden_units=16, batch_size=64, keep_best=True,
                    keep_checkpoints=0, data_dir=synthetic_data_dir)
    run_dir = str(tmp_path_factory.mktemp("kept") / "run")
    train_and_evaluate(config, run_dir, verbose=0, log=lambda message: None)
    return config, run_dir


@pytest.mark.slow
def test_keep_checkpoints_0_keeps_every_epoch_and_the_default_the_newest_three(kept_run, tiny_run, synthetic_data_dir,
                                                                                tmp_path):
    from tfvae.errors import RunError
    from tfvae.analysis.quality import time_to_quality
    from tfvae.runs import checkpoint_epochs
    from tfvae.train import train_and_evaluate

    assert checkpoint_epochs(kept_run[1]) == [4, 3, 2, 1]
    config = tiny_run[0].replace(epochs=4)  # keep_checkpoints left at its default, 3
    train_and_evaluate(config, str(tmp_path / "three"), verbose=0, log=lambda message: None)
    assert checkpoint_epochs(str(tmp_path / "three")) == [4, 3, 2]
    with pytest.raises(RunError, match=r"kept 3 of its 4 epochs' checkpoints: .* --keep-checkpoints 0$"):
        time_to_quality(str(tmp_path / "three"))  # its first kept epoch is not when it first passed a level


@pytest.mark.slow
def test_a_run_that_keeps_every_epoch_resumed_without_the_flag_still_keeps_them(tiny_run, tmp_path):
    """Resuming with the default (3) would delete the epochs kept for time to quality."""
    from tfvae.config import load_config
    from tfvae.runs import checkpoint_epochs
    from tfvae.train import train_and_evaluate

    run_dir = str(tmp_path / "run")
    train_and_evaluate(tiny_run[0].replace(keep_checkpoints=0), run_dir, verbose=0, log=lambda message: None)
    train_and_evaluate(tiny_run[0].replace(epochs=5), run_dir, verbose=0, log=lambda message: None,
                       defaulted=("keep_checkpoints",))
    assert checkpoint_epochs(run_dir) == [5, 4, 3, 2, 1]
    assert load_config(f"{run_dir}/config.json").keep_checkpoints == 0


def test_the_run_model_epoch_is_the_best_validation_epoch_whose_weights_it_holds(kept_run):
    import tensorflow as tf

    from tfvae.analysis.quality import model_epoch
    from tfvae.runs import best_checkpoint, checkpoint_path

    config, run_dir = kept_run
    epoch = model_epoch(run_dir, config)
    best = tf.train.load_checkpoint(best_checkpoint(run_dir))
    kept = tf.train.load_checkpoint(checkpoint_path(run_dir, epoch))
    names = [n for n in best.get_variable_to_shape_map()
             if n.startswith("model/") and "optimizer" not in n.lower() and kept.has_tensor(n)]
    assert names and all(np.array_equal(best.get_tensor(n), kept.get_tensor(n)) for n in names)
    others = [e for e in range(1, 5) if e != epoch]
    assert not np.array_equal(best.get_tensor(names[0]),
                              tf.train.load_checkpoint(checkpoint_path(run_dir, others[0])).get_tensor(names[0]))


@pytest.mark.slow
def test_the_estimate_at_the_run_model_is_the_full_evaluation_it_was_scaled_to(kept_run, tmp_path):
    """r scales the first images' gap to the full set's: at the run's model the estimate is then the evaluation's
    log p(x), up to the noise of the 5-sample ELBO."""
    from tfvae.evaluate import evaluate_run
    from tfvae.analysis.quality import time_to_quality

    config, run_dir = kept_run
    full = evaluate_run(run_dir, importance_samples=50, progress=False)
    path = tmp_path / "evaluation.json"
    path.write_text(json.dumps(full.to_dict()))
    result = time_to_quality(run_dir, gap_images=20, importance_samples=50, gap_epochs=(1, 2, 9),
                             thresholds=(-1000.0, 0.0), evaluation=str(path))
    model = result["model_epoch"]
    assert sorted(result["elbo"], key=int) == ["1", "2", "3", "4"]
    assert sorted(result["gap"], key=int) == sorted({"1", "2", str(model)}, key=int)  # epoch 9 was never kept
    assert result["ratio_from"] == "evaluation" and result["ratio"] > 0
    assert result["log_likelihood"][str(model)] == pytest.approx(full.log_likelihood, abs=0.3)
    assert result["crossings"]["-1000.0"]["epoch"] == 1 and result["crossings"]["0.0"] is None
    unscaled = time_to_quality(run_dir, gap_images=20, importance_samples=50, gap_epochs=(1, 2))
    assert unscaled["ratio"] == 1.0 and unscaled["ratio_from"] == "none"


@pytest.mark.slow
def test_a_stopped_run_is_measured_at_its_newest_epoch_the_model_tfvae_evaluate_uses(tiny_run, tmp_path):
    """A run stopped before its last epoch (no summary.json) has a model: its newest checkpoint, as for evaluate."""
    from tfvae.evaluate import evaluate_run
    from tfvae.analysis.quality import time_to_quality
    from tfvae.runs import SUMMARY_FILE
    from tfvae.train import train_and_evaluate

    run_dir = tmp_path / "run"
    train_and_evaluate(tiny_run[0].replace(epochs=3, keep_checkpoints=0), str(run_dir), verbose=0,
                       log=lambda message: None)
    (run_dir / SUMMARY_FILE).unlink()  # what a run stopped after its third epoch (of more) leaves
    messages = []
    result = time_to_quality(str(run_dir), gap_images=8, importance_samples=20, gap_epochs=(1,),
                             thresholds=(-1000.0,), log=messages.append)
    assert result["model_epoch"] == 3 and result["finished"] is False
    assert any("was stopped after 3 of 3 epochs: its model is epoch 3" in m for m in messages)
    newest = evaluate_run(str(run_dir), importance_samples=20, limit=8, progress=False)
    assert result["gap"]["3"]["log_likelihood"] == pytest.approx(newest.log_likelihood, abs=1e-4)


def test_an_evaluation_of_a_subset_is_refused_in_one_line(kept_run, tmp_path):
    from tfvae.errors import ConfigError
    from tfvae.evaluate import evaluate_run
    from tfvae.analysis.quality import time_to_quality

    path = tmp_path / "subset.json"
    path.write_text(json.dumps(evaluate_run(kept_run[1], importance_samples=5, limit=10, progress=False).to_dict()))
    with pytest.raises(ConfigError, match="must evaluate all 10,000 test images"):
        time_to_quality(kept_run[1], gap_images=5, importance_samples=5, evaluation=str(path))


@pytest.mark.slow
def test_the_quality_section_reports_each_threshold(kept_run):
    from tfvae.bench import table
    from tfvae.cli.main import cli

    result = CliRunner().invoke(cli, ["bench", "--run-dir", kept_run[1], "--sections", "quality", "--eval-images", "8",
                                      "-k", "20", "--gap-epochs", "2", "--thresholds=-1000,0", "--json"])
    assert result.exit_code == 0, result.output
    assert "bench: quality is an analysis of a trained run; its home is now `tfvae analyze quality`" in result.stderr
    report = json.loads(result.stdout)
    assert report["quality"]["crossings"]["-1000.0"]["epoch"] == 1
    text = table(report)
    assert "quality: first epoch at or above -1000.0 nats" in text and "not reached" in text


@pytest.mark.parametrize("args, words", [
    (["--sections", "quality"], "the quality section needs --run-dir"),
    (["--sections", "quality", "--run-dir", ".", "--thresholds", "-95,x"], "--thresholds"),
    (["--sections", "quality", "--run-dir", ".", "--gap-epochs", "3,0"], "must be positive integers"),
    (["--models", "classic", "--sections", "quality"], "drop --models"),
])
def test_bad_quality_options_are_one_line_and_exit_2(args, words, tmp_path, monkeypatch):
    from tfvae.cli.main import cli

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["bench", *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("Error:") and words in lines[-1], result.stderr


@pytest.mark.parametrize("args, words", [
    (["quality"], "Missing option '--run-dir'"),
    (["quality", "--run-dir", ".", "--gap-epochs", "3,0"], "must be positive integers"),
    (["gaps", "--run-dir", ".", "--refine-steps", "-1"], "--refine-steps"),
])
def test_bad_analyze_options_are_one_line_and_exit_2(args, words, tmp_path, monkeypatch):
    from tfvae.cli.main import cli

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["analyze", *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and words in lines[0], result.stderr
