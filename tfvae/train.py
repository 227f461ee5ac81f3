"""Training: `train_and_evaluate(config, run_dir)` fits the VAE and writes everything a run holds.

Example (a smoke run on local files):
    >>> from tfvae.config import Config
    >>> from tfvae.train import train_and_evaluate
    >>> summary = train_and_evaluate(Config(epochs=1, limit=2000), "runs/smoke")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time

import numpy as np
import tensorflow as tf
import tf_keras as tfk

from tfvae import plots
from tfvae.callbacks import EpochCheckpoint, HistoryCSV, SampleGrids, StopOnNonFinite
from tfvae.config import Config
from tfvae.data import load_splits, make_dataset
from tfvae.distribute import configure_devices, is_chief, make_strategy
from tfvae.errors import ConfigError, TrainingDiverged
from tfvae.io import atomic_write_text
from tfvae.models import build_vae
from tfvae.runs import BACKUP_DIR, CHECKPOINT_DIR, LOG_DIR, SUMMARY_FILE, prepare_run_dir, read_history

__all__ = ["train_and_evaluate", "make_datasets", "compile_vae", "SAMPLE_GRID_SIZE"]

SAMPLE_GRID_SIZE = 64  # fixed z for the before / halfway / after sample grids
RECONSTRUCTIONS = 10  # validation images shown in reconstructions.png


def make_datasets(config: Config, splits):
    """Training and validation pipelines for `config`, after checking the sizes make sense."""
    train_images = splits.train
    if config.limit is not None:
        if config.limit > len(train_images):
            raise ConfigError(f"--limit {config.limit} is larger than the {len(train_images)} training images")
        train_images = train_images[: config.limit]
    if config.batch_size > len(train_images):
        raise ConfigError(
            f"--batch-size {config.batch_size} is larger than the {len(train_images)} training images; "
            "use a smaller batch or more data"
        )
    train = make_dataset(
        train_images, config.batch_size, training=True, seed=config.seed, dynamic=splits.dynamic
    )
    validation = make_dataset(splits.validation, config.batch_size, training=False)
    return train, validation


def compile_vae(config: Config, strategy: tf.distribute.Strategy):
    """The run's VAE built under `strategy`, compiled with Adam."""
    with strategy.scope():
        vae = build_vae(config)
        vae.compile(
            optimizer=tfk.optimizers.Adam(learning_rate=config.learning_rate),
            jit_compile=config.jit_compile,
            steps_per_execution=config.steps_per_execution,
        )
    return vae


def train_and_evaluate(config: Config, run_dir: str, *, overwrite: bool = False, verbose="auto", log=print) -> dict:
    """Train the VAE of `config`, writing config, history, checkpoints, logs and plots to `run_dir`.

    An unfinished run with the same config is resumed from its last completed
    epoch; a finished run is refused unless `overwrite`.

    Args:
      config: the run's configuration.
      run_dir: where the run lives.
      overwrite: replace a finished (or differently configured) run in `run_dir`.
      verbose: Keras' progress display: "auto", 0, 1 or 2.
      log: where one-line status messages go.

    Returns:
      The final figures (also written to summary.json): ELBO, rate and
      distortion for train, validation and test, in nats per image.

    Raises:
      TfvaeError: bad options or data, an unusable run directory, or a loss that became NaN.
    """
    configure_devices(config)
    strategy = make_strategy(config)
    chief = is_chief(strategy)
    # Only the chief writes the run; other workers write into a scratch directory they delete.
    work_dir = run_dir if chief else tempfile.mkdtemp(prefix="tfvae-worker-")
    resume = prepare_run_dir(work_dir, config, overwrite=overwrite)
    tfk.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()

    splits = load_splits(config.dataset, config.data_dir, seed=config.seed)
    train_ds, validation_ds = make_datasets(config, splits)
    vae = compile_vae(config, strategy)

    if resume:
        log(f"resuming the unfinished run in {run_dir}")
    elif chief:
        log(f"training into {run_dir} (interrupted? run the same command with --run-dir {run_dir} to resume)")
    z_fixed = np.random.default_rng(config.seed).standard_normal((SAMPLE_GRID_SIZE, config.latent_dim))
    stop_on_non_finite = StopOnNonFinite()
    callbacks = [
        stop_on_non_finite,
        # Kept after the last epoch too, so a crash before summary.json resumes at the end, not at 0.
        tfk.callbacks.BackupAndRestore(os.path.join(work_dir, BACKUP_DIR), delete_checkpoint=False),
        EpochCheckpoint(work_dir),
        HistoryCSV(work_dir),
        SampleGrids(work_dir, z_fixed.astype(np.float32), config.epochs),
        tfk.callbacks.TensorBoard(os.path.join(work_dir, LOG_DIR), profile_batch=0),
    ]
    vae.fit(train_ds, epochs=config.epochs, validation_data=validation_ds, callbacks=callbacks, verbose=verbose)

    if stop_on_non_finite.bad_epoch is not None:
        # The backup holds the diverged weights; without it a rerun starts again from scratch.
        shutil.rmtree(os.path.join(work_dir, BACKUP_DIR), ignore_errors=True)
        raise TrainingDiverged(
            f"the loss became NaN or infinite in epoch {stop_on_non_finite.bad_epoch}; the last good checkpoint is kept "
            f"in {os.path.join(run_dir, CHECKPOINT_DIR)}; try a lower --learning-rate"
        )
    if not chief:
        shutil.rmtree(work_dir, ignore_errors=True)
        return {}
    return _finish(config, vae, splits, run_dir, log)


def _finish(config: Config, vae, splits, run_dir: str, log) -> dict:
    """Final plots and test figures; summary.json is written last and marks the run finished."""
    x = splits.validation[:RECONSTRUCTIONS].astype(np.float32)
    plots.plot_reconstructions(x, vae(x).mean().numpy(), os.path.join(run_dir, "reconstructions.png"))
    if config.latent_dim == 2:
        z = plots.manifold_latents(20)
        probs = tf.sigmoid(vae.decode_logits(z)).numpy()
        plots.save_image_grid(probs, os.path.join(run_dir, "manifold.png"), "latent manifold", columns=20)

    test_ds = make_dataset(splits.test, config.batch_size, training=False)
    test = vae.evaluate(test_ds, return_dict=True, verbose=0)
    history = read_history(run_dir)
    last = history[-1]
    summary = {
        "epochs": config.epochs,
        "train_elbo": last["train_elbo"],
        "val_elbo": last["val_elbo"],
        "test_elbo": float(test["elbo"]),
        "test_rate": float(test["rate"]),
        "test_distortion": float(test["distortion"]),
        "seconds_per_epoch": statistics.median(r["seconds"] for r in history),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_text(os.path.join(run_dir, SUMMARY_FILE), json.dumps(summary, indent=2) + "\n")
    log(
        f"done: ELBO train {summary['train_elbo']:.2f}, validation {summary['val_elbo']:.2f}, "
        f"test {summary['test_elbo']:.2f} nats per image; run in {run_dir}"
    )
    return summary
