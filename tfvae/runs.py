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
import dataclasses
import io
import os
import re
import shutil
import sys
import time

from tfvae.config import FOLLOW_RUN, Config, load_config, save_config
from tfvae.errors import RunError
from tfvae.io import FileLock, LockHeld, atomic_write_text, lock_holder

__all__ = [
    "CONFIG_FILE",
    "HISTORY_FILE",
    "TIMING_FILE",
    "SUMMARY_FILE",
    "CHECKPOINT_DIR",
    "EXPORT_DIR",
    "LOCK_FILE",
    "HISTORY_COLUMNS",
    "RunPlan",
    "default_run_dir",
    "ensure_run_dir",
    "lock_run",
    "plan_run",
    "open_run",
    "read_history",
    "write_history",
    "checkpoint_path",
    "checkpoint_epochs",
    "latest_checkpoint",
    "newest_readable_checkpoint",
    "load_vae",
]

CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
TIMING_FILE = "timing.csv"
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_NAME = "epoch"  # checkpoints/epoch-N holds the state after N completed epochs
BEST_DIR = "best"  # inside CHECKPOINT_DIR: the best validation epoch's weights (keep_best)
LOG_DIR = "logs"
EXPORT_DIR = "export"  # where `tfvae export` writes by default (tfvae.export.layout.DEFAULT_EXPORT_DIR)
EXPORT_MANIFEST = "manifest.json"  # marks a folder as a tfvae export
LOCK_FILE = ".tfvae.lock"  # held by the one process training the run

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
_HIDDEN_PREFIX = ".tfvae"  # the lock and the write probe: not part of a run's contents


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """What `tfvae train` does with a run directory, decided once (by the chief) before training."""

    config: Config  # the config the run trains with, as saved in config.json
    epoch: int  # completed epochs to restore; 0 for a new run
    action: str  # "new", "resume" or "extend" (a finished run trained further)


def default_run_dir(root: str = "runs") -> str:
    """A new, unused folder under `root`, named after the time: runs/20261124-071500."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, n = os.path.join(root, stamp), 1
    while os.path.exists(path):
        n += 1
        path = os.path.join(root, f"{stamp}-{n}")
    return path


def ensure_run_dir(run_dir: str) -> bool:
    """Create `run_dir` if needed and check that it can be written; True if it was created.

    Called before any data is read, so that an unwritable place fails at once,
    not after hours of training.
    """
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise RunError(f"--run-dir {run_dir} is a file, not a directory")
    created = not os.path.exists(run_dir)
    try:
        os.makedirs(run_dir, exist_ok=True)
        probe = os.path.join(run_dir, _HIDDEN_PREFIX + "-write-test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise RunError(f"cannot write to run directory {run_dir}: {e.strerror or e}") from None
    return created


def lock_run(run_dir: str) -> FileLock:
    """The run's exclusive lock, held while training; a second trainer is refused with the holder's name."""
    lock = FileLock(os.path.join(run_dir, LOCK_FILE), "tfvae train")
    try:
        return lock.acquire()
    except LockHeld as e:
        raise RunError(f"{run_dir} is being trained by another process ({e.holder}); "
                       "wait for it to finish, or stop it and run this command again") from None
    except OSError as e:
        raise RunError(f"cannot lock run directory {run_dir}: {e.strerror or e}") from None


def plan_run(run_dir: str, config: Config, *, overwrite: bool = False, log=print, defaulted=()) -> RunPlan:
    """Decide what training `config` in `run_dir` means, and write config.json for it.

    - an empty directory, or a run that never completed an epoch: a new run;
    - an unfinished run of the same model, data and optimisation: resumed from
      its newest readable checkpoint (a damaged newer one is named in a warning);
      execution settings (devices, strategy, precision, data directory) may
      differ, and what changed is reported in one line;
    - a finished run and a larger `--epochs`: trained further;
    - with `overwrite`: whatever tfvae wrote there (and the run's export) is removed first.

    `defaulted` names the fields of `config` the user left at their defaults: on resume, those whose default
    changed between tfvae versions (`tfvae.config.FOLLOW_RUN`) take the run's own values, so that the command
    that started an older run still resumes it.

    The caller holds the run's lock. Nothing of the user's (a folder that is
    not a tfvae run) is ever deleted.

    Raises:
      RunError: a folder that is not a run, a different run without
        `overwrite`, a finished run without more epochs, or checkpoints that
        are all damaged.
    """
    entries = _run_entries(run_dir)
    if entries and CONFIG_FILE not in entries:
        raise RunError(f"{run_dir} is not empty and is not a tfvae run; choose a new or empty --run-dir")
    if entries and overwrite:
        _clear_run(run_dir, log)
        entries = []
    if not entries or not checkpoint_epochs(run_dir):  # nothing trained: whatever is there is replaced
        if entries:
            _clear_run(run_dir, log=lambda message: None)
        return _save_plan(run_dir, RunPlan(config, 0, "new"))

    try:
        saved = load_config(os.path.join(run_dir, CONFIG_FILE))
    except Exception as e:
        raise RunError(f"{run_dir} holds a run whose {e}; pass --overwrite to start afresh") from None
    config = config.replace(**{name: getattr(saved, name) for name in FOLLOW_RUN if name in defaulted})
    differences = saved.run_differences(config)
    if differences:
        raise RunError(
            f"{run_dir} holds another run ({'; '.join(differences)}); resume it with its own options, "
            "pass --overwrite to replace it, or choose another --run-dir"
        )
    epoch, _ = newest_readable_checkpoint(run_dir, log=log, resuming=True)
    finished = SUMMARY_FILE in entries
    if config.epochs < epoch or (finished and config.epochs == epoch):
        what = "a finished run of" if finished else "a run that has completed"
        raise RunError(
            f"{run_dir} holds {what} {epoch} epoch{'s' if epoch != 1 else ''}; "
            f"pass --epochs larger than {epoch} to train it further, "
            "--overwrite to replace it, or choose another --run-dir"
        )
    changed = saved.execution_differences(config)
    if changed:
        log(f"resuming with other execution settings: {'; '.join(changed)}")
    config = config.replace(decoder_bias=saved.decoder_bias)  # how the run started is part of its record
    plan = _save_plan(run_dir, RunPlan(config, epoch, "extend" if finished else "resume"))
    if finished:
        log(f"training the finished run in {run_dir} further: epochs {saved.epochs} -> {config.epochs}")
        os.remove(os.path.join(run_dir, SUMMARY_FILE))  # after config.json: a crash between leaves a resumable run
    return plan


def _save_plan(run_dir: str, plan: RunPlan) -> RunPlan:
    save_config(plan.config, os.path.join(run_dir, CONFIG_FILE))
    return plan


def open_run(run_dir: str, require_checkpoint: bool = True) -> Config:
    """Check that `run_dir` is a tfvae run that is not being trained (with at least one epoch) and return its config."""
    if not os.path.isdir(run_dir):
        raise RunError(f"run directory {run_dir} does not exist")
    if not os.path.isfile(os.path.join(run_dir, CONFIG_FILE)):
        raise RunError(f"{run_dir} is not a tfvae run: it has no {CONFIG_FILE}")
    holder = lock_holder(os.path.join(run_dir, LOCK_FILE))
    if holder is not None:
        raise RunError(f"{run_dir} is being trained right now ({holder}); its checkpoints are still being "
                       "written: try again when training has finished (or has been stopped)")
    config = load_config(os.path.join(run_dir, CONFIG_FILE))
    if require_checkpoint and not checkpoint_epochs(run_dir):
        raise RunError(f"{run_dir} has no checkpoint: the run never finished an epoch; train it first")
    return config


def load_vae(run_dir: str, log=None):
    """The trained model of a run: (config, VAE with the best validation epoch's weights with keep_best, else
    the newest readable epoch's).

    A damaged newest checkpoint (a full disk, a copy cut short) is named in a
    one-line warning on `log` (default: stderr) and the previous one is used.

    Raises:
      RunError: not a run, being trained, no checkpoint yet, every checkpoint
        damaged, or a checkpoint that does not fit config.json.
    """
    config = open_run(run_dir)
    import tensorflow as tf

    from tfvae.models import build_vae

    path = best_checkpoint(run_dir) if config.keep_best else None  # the run's model: its best validation epoch
    if path is not None and _unreadable(path) is not None:
        (log or _warn)(f"warning: the best-epoch checkpoint {_shard_name(path)} is damaged ({_unreadable(path)}); "
                       "using the newest epoch instead")
        path = None
    if path is None:
        _, path = newest_readable_checkpoint(run_dir, log=log or _warn)
    vae = build_vae(config)
    try:
        tf.train.Checkpoint(model=vae).read(path).assert_existing_objects_matched().expect_partial()
    except (ValueError, AssertionError, tf.errors.OpError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RunError(
            f"the checkpoint in {run_dir} does not match its config.json (was it edited?): {reason[:200]}"
        ) from None
    return config, vae


# --------------------------------------------------------------------------- checkpoints


def checkpoint_path(run_dir: str, epoch: int) -> str:
    """The path prefix of the checkpoint saved after `epoch` completed epochs."""
    return os.path.join(run_dir, CHECKPOINT_DIR, f"{CHECKPOINT_NAME}-{epoch}")


def checkpoint_epochs(run_dir: str) -> list:
    """Epochs that have a checkpoint in `run_dir` (readable or not), newest first.

    Read from the files themselves, not from TensorFlow's `checkpoint` index,
    which a crash or a full disk can leave stale or empty.
    """
    directory = os.path.join(run_dir, CHECKPOINT_DIR)
    if not os.path.isdir(directory):
        return []
    pattern = re.compile(re.escape(CHECKPOINT_NAME) + r"-(\d+)\.index$")
    return sorted((int(m.group(1)) for m in map(pattern.match, os.listdir(directory)) if m), reverse=True)


def latest_checkpoint(run_dir: str):
    """Path prefix of the newest checkpoint in `run_dir` (not checked for damage), or None."""
    epochs = checkpoint_epochs(run_dir)
    return checkpoint_path(run_dir, epochs[0]) if epochs else None


def newest_readable_checkpoint(run_dir: str, *, log=None, resuming: bool = False):
    """(epoch, path prefix) of the newest checkpoint whose every tensor can be read.

    A damaged checkpoint (truncated, missing a shard, garbage) is skipped with
    a one-line warning naming it and the epoch used instead.

    Raises:
      RunError: the run has checkpoints but none can be read.
    """
    log = log or _warn
    damaged = []
    for epoch in checkpoint_epochs(run_dir):
        path = checkpoint_path(run_dir, epoch)
        reason = _unreadable(path)
        if reason is None:
            if damaged:
                what = "resuming from" if resuming else "using"
                log(f"warning: checkpoint {damaged[0][0]} is damaged ({damaged[0][1]}); "
                    f"{what} epoch {epoch}, the newest readable one")
            return epoch, path
        damaged.append((_shard_name(path), reason))
    if not damaged:
        raise RunError(f"{run_dir} has no checkpoint: the run never finished an epoch; train it first")
    raise RunError(f"no checkpoint of {run_dir} can be read (newest: {damaged[0][0]}: {damaged[0][1]}); "
                   "the run cannot be restored: train it again with --overwrite")


def _unreadable(path: str):
    """None if every tensor of the checkpoint at `path` reads back, else a short reason."""
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(path)
        for name in reader.get_variable_to_dtype_map():
            reader.get_tensor(name)
    except Exception as e:  # truncation, a missing shard and garbage raise many types (IndexError, DataLossError, ...)
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return message[:120]
    return None


def _shard_name(path: str) -> str:
    """The data file of a checkpoint: what a user would inspect or delete."""
    directory = os.path.dirname(path)
    shards = sorted(n for n in os.listdir(directory) if n.startswith(os.path.basename(path) + ".data-"))
    return os.path.join(directory, shards[0]) if shards else path + ".index"


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


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


def _run_entries(run_dir: str) -> list:
    """What the directory holds, less tfvae's lock and write probe."""
    if not os.path.isdir(run_dir):
        return []
    return [name for name in os.listdir(run_dir) if not name.startswith(_HIDDEN_PREFIX)]


def _clear_run(run_dir: str, log) -> None:
    """Remove what tfvae wrote into `run_dir`: the run's files and plots, and the run's export."""
    from tfvae.io import recover_directory

    export = os.path.join(run_dir, EXPORT_DIR)
    recover_directory(export)  # an export interrupted between its two renames
    for name in os.listdir(run_dir):
        path = os.path.join(run_dir, name)
        if name in _RUN_ENTRIES or name.endswith(".png") or name.startswith(f".{EXPORT_DIR}."):
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    if os.path.isfile(os.path.join(export, EXPORT_MANIFEST)):
        shutil.rmtree(export)
        log(f"removed the old export in {export}: it was made from the run that --overwrite replaces")
