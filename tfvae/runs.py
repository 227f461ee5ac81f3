"""Run directories: what a run holds, how it is created, refused, resumed and read back.

A run directory holds:

    config.json           the run's Config, read back by evaluate / export / resume
    history.csv           one row per completed epoch (HISTORY_COLUMNS); identical for equal seeds
    timing.csv            seconds per epoch (kept apart so that history.csv is reproducible)
    checkpoints/          after each epoch: weights, optimizer state and epoch (the last few kept);
                          evaluate / export restore the weights, a resumed train all of it;
                          with keep_best, checkpoints/best holds the best validation epoch's weights,
                          which evaluate / export use
    logs/                 TensorBoard
    summary.json          final train / validation / test figures, written last: the run is finished
    *.png                 elbo.png, samples_epoch_NNN.png, reconstructions.png, manifold.png (D = 2)
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import time

from tfvae.config import Config, load_config, save_config
from tfvae.errors import RunError
from tfvae.io import atomic_write_text

__all__ = [
    "CONFIG_FILE",
    "HISTORY_FILE",
    "TIMING_FILE",
    "SUMMARY_FILE",
    "CHECKPOINT_DIR",
    "HISTORY_COLUMNS",
    "default_run_dir",
    "prepare_run_dir",
    "open_run",
    "read_history",
    "write_history",
    "latest_checkpoint",
    "load_vae",
]

CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
TIMING_FILE = "timing.csv"
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoints"
BEST_DIR = "best"  # inside CHECKPOINT_DIR: the best validation epoch's weights (keep_best)
LOG_DIR = "logs"

# history.csv, in nats per image; elbo = -(rate + distortion).
HISTORY_COLUMNS = (
    "epoch",
    "train_elbo",
    "val_elbo",
    "train_rate",
    "val_rate",
    "train_distortion",
    "val_distortion",
)
# Objectives other than the plain ELBO (iwae, K > 1, warm-up) add their own value, train and validation.
OBJECTIVE_COLUMNS = ("train_objective", "val_objective")
TIMING_COLUMNS = ("epoch", "seconds")

# What `--overwrite` may delete: only what tfvae itself writes into a run directory.
_RUN_ENTRIES = (CONFIG_FILE, HISTORY_FILE, TIMING_FILE, SUMMARY_FILE, CHECKPOINT_DIR, LOG_DIR)


def default_run_dir(root: str = "runs") -> str:
    """A new, unused folder under `root`, named after the time: runs/20261124-071500."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, n = os.path.join(root, stamp), 1
    while os.path.exists(path):
        n += 1
        path = os.path.join(root, f"{stamp}-{n}")
    return path


def prepare_run_dir(run_dir: str, config: Config, overwrite: bool = False) -> bool:
    """Make `run_dir` ready for training `config`; return True when resuming an unfinished run.

    - a new or empty directory: created, config written;
    - an unfinished run with the same config: resumed (nothing deleted);
    - a finished run, or an unfinished one with another config: refused unless `overwrite`;
    - a non-empty directory that is not a tfvae run: always refused (nothing of the user's is deleted).

    Raises:
      RunError: with what was wrong and what to do.
    """
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise RunError(f"--run-dir {run_dir} is a file, not a directory")
    entries = os.listdir(run_dir) if os.path.isdir(run_dir) else []
    resume = False
    if entries:
        if CONFIG_FILE not in entries:
            raise RunError(f"{run_dir} is not empty and is not a tfvae run; choose a new or empty --run-dir")
        finished = SUMMARY_FILE in entries
        try:
            same_config = load_config(os.path.join(run_dir, CONFIG_FILE)) == config
        except Exception:  # an unreadable config is never "the same"
            same_config = False
        if overwrite:
            _clear_run(run_dir)
        elif finished:
            raise RunError(
                f"{run_dir} holds a finished run; pass --overwrite to replace it, or choose another --run-dir"
            )
        elif not same_config:
            raise RunError(
                f"{run_dir} holds an unfinished run with a different config; resume it with the same options, "
                "pass --overwrite to start afresh, or choose another --run-dir"
            )
        else:
            resume = True
    _check_writable(run_dir)
    if not resume:
        save_config(config, os.path.join(run_dir, CONFIG_FILE))
    return resume


def open_run(run_dir: str, require_checkpoint: bool = True) -> Config:
    """Check that `run_dir` is a tfvae run (with at least one epoch's checkpoint) and return its config."""
    if not os.path.isdir(run_dir):
        raise RunError(f"run directory {run_dir} does not exist")
    if not os.path.isfile(os.path.join(run_dir, CONFIG_FILE)):
        raise RunError(f"{run_dir} is not a tfvae run: it has no {CONFIG_FILE}")
    config = load_config(os.path.join(run_dir, CONFIG_FILE))
    if require_checkpoint and latest_checkpoint(run_dir) is None:
        raise RunError(f"{run_dir} has no checkpoint: the run never finished an epoch; train it first")
    return config


def load_vae(run_dir: str):
    """The trained model of a run: (config, VAE with the newest epoch's weights).

    Raises:
      RunError: not a run, no checkpoint yet, or a checkpoint that does not fit config.json.
    """
    config = open_run(run_dir)
    import tensorflow as tf

    from tfvae.models import build_vae

    vae = build_vae(config)
    path = (config.keep_best and best_checkpoint(run_dir)) or latest_checkpoint(run_dir)
    try:
        tf.train.Checkpoint(model=vae).read(path).assert_existing_objects_matched().expect_partial()
    except (ValueError, AssertionError, tf.errors.OpError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RunError(
            f"the checkpoint in {run_dir} does not match its config.json (was it edited?): {reason[:200]}"
        ) from None
    return config, vae


def latest_checkpoint(run_dir: str):
    """Path prefix of the newest epoch checkpoint in `run_dir`, or None."""
    import tensorflow as tf

    return tf.train.latest_checkpoint(os.path.join(run_dir, CHECKPOINT_DIR))


def best_checkpoint(run_dir: str):
    """Path prefix of the best-validation checkpoint (runs with keep_best), or None."""
    import tensorflow as tf

    return tf.train.latest_checkpoint(os.path.join(run_dir, CHECKPOINT_DIR, BEST_DIR))


def read_history(run_dir: str, name: str = HISTORY_FILE) -> list:
    """The rows of history.csv (or timing.csv) as dicts of floats, epoch as int; [] if there is none yet."""
    path = os.path.join(run_dir, name)
    if not os.path.isfile(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [
            {k: (int(v) if k == "epoch" else float(v)) for k, v in row.items() if v not in (None, "")}
            for row in csv.DictReader(f)
        ]


def write_history(run_dir: str, rows: list, name: str = HISTORY_FILE) -> None:
    """Rewrite history.csv (or timing.csv) atomically with `rows`: each epoch once, in order."""
    columns = HISTORY_COLUMNS if name == HISTORY_FILE else TIMING_COLUMNS
    if name == HISTORY_FILE and any("train_objective" in row for row in rows):
        columns += OBJECTIVE_COLUMNS
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in sorted(rows, key=lambda r: r["epoch"]):
        writer.writerow({k: (row[k] if k == "epoch" else f"{row[k]:.6f}") for k in columns if k in row})
    atomic_write_text(os.path.join(run_dir, name), out.getvalue())


def _clear_run(run_dir: str) -> None:
    for name in os.listdir(run_dir):
        path = os.path.join(run_dir, name)
        if name in _RUN_ENTRIES or name.endswith(".png"):
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def _check_writable(run_dir: str) -> None:
    """Fail now, not after hours of training, if `run_dir` cannot be written."""
    try:
        os.makedirs(run_dir, exist_ok=True)
        probe = os.path.join(run_dir, ".tfvae-write-test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise RunError(f"cannot write to run directory {run_dir}: {e.strerror or e}") from None
