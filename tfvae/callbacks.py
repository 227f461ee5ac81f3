"""Keras callbacks that write a run's history, checkpoints and sample grids as training goes."""

from __future__ import annotations

import math
import os
import time
from typing import Optional

import numpy as np
import tensorflow as tf
import tf_keras as tfk

from tfvae import interrupts, plots
from tfvae.mixture import Mixture
from tfvae.runs import CHECKPOINT_NAME, HISTORY_FILE, TIMING_FILE, read_history, write_history

__all__ = ["HistoryCSV", "TrainingCheckpoint", "SampleGrids", "StopOnNonFinite", "KLWarmup", "BestCheckpoint", "RaiseLostSignals"]


def _finite(logs) -> bool:
    return bool(logs) and all(math.isfinite(float(v)) for v in logs.values())


class HistoryCSV(tfk.callbacks.Callback):
    """Keeps history.csv, timing.csv and elbo.png: one row per completed epoch, each epoch exactly once.

    On a resumed run, rows past the restored epoch (written by the interrupted
    process after its last checkpoint) are dropped before training continues, so
    no epoch is lost or duplicated.
    """

    def __init__(self, run_dir: str):
        super().__init__()
        self.run_dir = run_dir
        self._rows = None  # {file name: rows}

    def on_epoch_begin(self, epoch, logs=None):
        if self._rows is None:  # first epoch of this process: `epoch` epochs are already done
            self._rows = {
                name: [r for r in read_history(self.run_dir, name) if r["epoch"] <= epoch]
                for name in (HISTORY_FILE, TIMING_FILE)
            }
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not _finite(logs):
            return
        row = {"epoch": epoch + 1}
        for key in ("elbo", "rate", "distortion") + (("objective",) if "objective" in logs else ()):
            row[f"train_{key}"] = float(logs[key])
            row[f"val_{key}"] = float(logs.get(f"val_{key}", float("nan")))
        timing = {"epoch": epoch + 1, "seconds": time.perf_counter() - self._started}
        for name, new in ((HISTORY_FILE, row), (TIMING_FILE, timing)):
            self._rows[name] = [r for r in self._rows[name] if r["epoch"] != epoch + 1] + [new]
            write_history(self.run_dir, self._rows[name], name)
        plots.plot_elbo(self._rows[HISTORY_FILE], os.path.join(self.run_dir, "elbo.png"))


class TrainingCheckpoint(tfk.callbacks.Callback):
    """After every finite epoch, saves the training state: checkpoints/epoch-N (the last few kept).

    Args:
      checkpoint: a `tf.train.Checkpoint` of the model, the optimizer and `epoch`.
      epoch: the variable holding the number of completed epochs.
      directory: where to save.
      max_to_keep: the newest epochs kept; None keeps every one.
    """

    def __init__(self, checkpoint: tf.train.Checkpoint, epoch: tf.Variable, directory: str,
                 max_to_keep: Optional[int] = 3):
        super().__init__()
        self.epoch = epoch
        self.manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=max_to_keep, checkpoint_name=CHECKPOINT_NAME)

    def on_epoch_end(self, epoch, logs=None):
        if _finite(logs):
            self.epoch.assign(epoch + 1)
            self.manager.save(checkpoint_number=epoch + 1)


class SampleGrids(tfk.callbacks.Callback):
    """Decoder means for a fixed set of z ~ p(z): before training, halfway and after.

    `z` is fixed noise eps ~ N(0, I). With N(0, I) it is the grid's z itself;
    with a learned prior it is mapped through the prior of the moment, z =
    loc_k + scale_k eps with k picked by the fixed uniforms `u`, so the grids
    show the prior as it is learned.

    Files: samples_epoch_000.png, samples_epoch_{epochs // 2:03d}.png, samples_epoch_{epochs:03d}.png.
    """

    def __init__(self, run_dir: str, z: np.ndarray, epochs: int, u: np.ndarray = None):
        super().__init__()
        self.run_dir = run_dir
        self.z = tf.constant(z)  # (N, D), fixed for the whole run
        self.u = u  # (N,) uniforms that pick a learned prior's components
        self.epochs_to_save = {0, epochs // 2, epochs}

    def _save(self, epoch: int):
        z = self.z
        if self.model.prior.learned:
            prior = Mixture(*(np.asarray(t) for t in self.model.prior_mixture()))
            z = tf.constant(prior.transform(self.z.numpy(), self.u), tf.float32)
        means = self.model.decode_mean(z).numpy()  # (N, H, W, C), the likelihood's mean
        title = "before training" if epoch == 0 else f"after epoch {epoch}"
        plots.save_image_grid(means, os.path.join(self.run_dir, f"samples_epoch_{epoch:03d}.png"), title)

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 0:
            self._save(0)

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 in self.epochs_to_save and _finite(logs):
            self._save(epoch + 1)


class StopOnNonFinite(tfk.callbacks.Callback):
    """Stops training after the first epoch whose ELBO is NaN or infinite, and remembers which.

    Checked per epoch, not per batch: a per-batch callback makes Keras copy the
    logs out of the graph after every step, which costs more than the check.
    The epoch's weights are not checkpointed (EpochCheckpoint skips non-finite epochs).
    """

    def __init__(self):
        super().__init__()
        self.bad_epoch = None  # 1-based epoch whose loss was not finite

    def on_epoch_end(self, epoch, logs=None):
        if self.bad_epoch is None and not _finite(logs):
            self.bad_epoch = epoch + 1
            self.model.stop_training = True


class KLWarmup(tfk.callbacks.Callback):
    """Sets the model's `kl_weight` (beta) for each epoch: rising linearly from 0 to 1 over the first N epochs.

    beta depends on the epoch only, so a resumed run continues the schedule
    exactly. Validation always uses beta = 1: the validation objective is the
    bound itself, comparable across epochs (and what `BestCheckpoint` watches).

    Args:
      warmup_epochs: N; 0 leaves beta at 1.
    """

    def __init__(self, warmup_epochs: int):
        super().__init__()
        self.warmup_epochs = warmup_epochs
        self._beta = 1.0

    def on_epoch_begin(self, epoch, logs=None):
        from tfvae.models.objectives import kl_weight

        self._beta = kl_weight(epoch, self.warmup_epochs)
        self.model.kl_weight.assign(self._beta)

    def on_test_begin(self, logs=None):
        self.model.kl_weight.assign(1.0)

    def on_test_end(self, logs=None):
        self.model.kl_weight.assign(self._beta)

    def on_train_end(self, logs=None):
        self.model.kl_weight.assign(1.0)


class BestCheckpoint(tfk.callbacks.Callback):
    """Keeps the weights of the epoch with the highest validation objective in checkpoints/best.

    The best value and its epoch are saved with the weights, so a resumed run
    compares against what the interrupted one had already seen.

    Args:
      directory: where to save (RUN/checkpoints/best).
      monitor: the validation figure to maximise: "val_objective" if the model
        reports one, else "val_elbo".
    """

    def __init__(self, directory: str):
        super().__init__()
        self.directory = directory
        self.best = tf.Variable(-math.inf, dtype=tf.float64, trainable=False, name="best")
        self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="best_epoch")
        self._manager = None

    def _checkpoint_manager(self):
        if self._manager is None:
            checkpoint = tf.train.Checkpoint(model=self.model, best=self.best, best_epoch=self.best_epoch)
            self._manager = tf.train.CheckpointManager(checkpoint, self.directory, max_to_keep=1, checkpoint_name="best")
            if self._manager.latest_checkpoint:  # a resumed run: only the record, not the weights
                tf.train.Checkpoint(best=self.best, best_epoch=self.best_epoch).read(
                    self._manager.latest_checkpoint
                ).expect_partial()
        return self._manager

    def on_train_begin(self, logs=None):
        self._checkpoint_manager()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        value = logs.get("val_objective", logs.get("val_elbo"))
        if value is None or not math.isfinite(float(value)) or float(value) <= float(self.best.numpy()):
            return
        self.best.assign(float(value))
        self.best_epoch.assign(epoch + 1)
        self._checkpoint_manager().save(checkpoint_number=epoch + 1)


class RaiseLostSignals(tfk.callbacks.Callback):
    """Raises a Ctrl-C or SIGTERM again after each graph call, in case Python swallowed its first raise.

    See `tfvae.interrupts`. With `_supports_tf_logs` Keras passes the logs as
    tensors and adds no device-to-host copy per batch: the check is a list lookup.
    """

    _supports_tf_logs = True

    def on_train_batch_end(self, batch, logs=None):
        interrupts.raise_pending()

    def on_test_batch_end(self, batch, logs=None):
        interrupts.raise_pending()

    def on_epoch_end(self, epoch, logs=None):
        interrupts.raise_pending()
