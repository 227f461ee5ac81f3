"""train_and_evaluate on a tiny model and a few hundred synthetic images: what a run directory holds."""

import csv
import os

import pytest

from tfvae.config import Config, load_config
from tfvae.errors import ConfigError, RunError
from tfvae.runs import HISTORY_COLUMNS, load_vae, read_history
from tfvae.train import train_and_evaluate


def tiny(data_dir, **changes):
    values = dict(epochs=2, limit=256, latent_dim=2, hidden_units=16, batch_size=64, data_dir=data_dir)
    return Config(**{**values, **changes})  # the config of conftest's tiny_run, with changes


@pytest.fixture
def finished_run(tiny_run):
    return tiny_run


def test_a_run_writes_everything(finished_run):
    config, run_dir, summary = finished_run
    for name in [
        "config.json",
        "history.csv",
        "summary.json",
        "elbo.png",
        "samples_epoch_000.png",
        "samples_epoch_001.png",  # halfway through 2 epochs
        "samples_epoch_002.png",
        "reconstructions.png",
        "manifold.png",  # latent_dim == 2
    ]:
        assert os.path.isfile(os.path.join(run_dir, name)), name
    assert os.listdir(os.path.join(run_dir, "logs")), "TensorBoard logs"
    assert any(f.startswith("epoch-2") for f in os.listdir(os.path.join(run_dir, "checkpoints")))
    assert summary["test_elbo"] < 0


def test_history_has_one_row_per_epoch_in_nats(finished_run):
    _, run_dir, _ = finished_run
    with open(os.path.join(run_dir, "history.csv")) as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == HISTORY_COLUMNS
    rows = read_history(run_dir)
    assert [r["epoch"] for r in rows] == [1, 2]
    for row in rows:
        for split in ("train", "val"):
            assert row[f"{split}_elbo"] == pytest.approx(-(row[f"{split}_rate"] + row[f"{split}_distortion"]), abs=1e-3)
            assert -600 < row[f"{split}_elbo"] < -50  # binarized MNIST: between 784 ln 2 and a good model
    assert rows[1]["train_elbo"] > rows[0]["train_elbo"]  # it learns


def test_config_json_round_trips_and_restores_the_model(finished_run):
    config, run_dir, _ = finished_run
    assert load_config(os.path.join(run_dir, "config.json")) == config
    restored_config, vae = load_vae(run_dir)
    assert restored_config == config and vae.latent_dim == 2
    # The weights are those of the newest checkpoint, read back here by name: not a fresh initialisation.
    import numpy as np
    import tensorflow as tf

    checkpoints = os.path.join(run_dir, "checkpoints")
    assert tf.train.latest_checkpoint(checkpoints).endswith("epoch-2")
    reader = tf.train.load_checkpoint(checkpoints)
    saved = [reader.get_tensor(name) for name, _ in tf.train.list_variables(checkpoints)
             if name.startswith("model/") and "OPTIMIZER_SLOT" not in name]
    weights = [w.numpy() for w in vae.trainable_weights]
    assert len(weights) == 8  # kernel and bias of the four Dense layers
    for weight in weights:
        assert any(np.shape(t) == weight.shape and np.array_equal(t, weight) for t in saved), weight.shape


def test_a_finished_run_is_never_overwritten_silently(finished_run):
    config, run_dir, _ = finished_run
    before = open(os.path.join(run_dir, "history.csv")).read()
    with pytest.raises(RunError, match="holds a finished run of 2 epochs; pass --epochs larger than 2 to train it further, --overwrite"):
        train_and_evaluate(config, run_dir, verbose=0, log=lambda m: None)
    assert open(os.path.join(run_dir, "history.csv")).read() == before


@pytest.mark.slow
def test_overwrite_replaces_a_finished_run(synthetic_data_dir, tmp_path):
    run_dir = str(tmp_path / "run")
    train_and_evaluate(tiny(synthetic_data_dir, epochs=1), run_dir, verbose=0, log=lambda m: None)
    train_and_evaluate(tiny(synthetic_data_dir, epochs=1, seed=3), run_dir, overwrite=True, verbose=0, log=lambda m: None)
    assert load_config(os.path.join(run_dir, "config.json")).seed == 3
    assert len(read_history(run_dir)) == 1


def test_a_folder_that_is_not_a_run_is_refused_even_with_overwrite(synthetic_data_dir, tmp_path):
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(RunError, match="not a tfvae run"):
        train_and_evaluate(tiny(synthetic_data_dir), str(tmp_path), overwrite=True, verbose=0)
    assert (tmp_path / "thesis.tex").read_text() == "precious"


@pytest.mark.parametrize(
    "changes, message",
    [({"limit": 10**6}, "--limit 1000000 is larger than the 50000"), ({"limit": 32, "batch_size": 64}, "--batch-size 64 is larger")],
)
def test_sizes_that_cannot_work_are_refused(synthetic_data_dir, tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        train_and_evaluate(tiny(synthetic_data_dir, **changes), str(tmp_path / "run"), verbose=0)
