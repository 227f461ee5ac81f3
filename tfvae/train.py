"""Training: `train_and_evaluate(config, run_dir)` fits the VAE and writes everything a run holds.

`train(**options)` is `tfvae train` from Python (and what the command calls): options and a preset -> Config ->
`train_and_evaluate`. The module itself is callable, `tfvae.train(epochs=1, ...)` (`tfvae.callable_module`).

Example (a smoke run on local files):
    >>> from tfvae.config import Config
    >>> from tfvae.train import train_and_evaluate
    >>> summary = train_and_evaluate(Config(epochs=1, limit=2000), "runs/smoke")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Callable, Optional

import numpy as np
import tensorflow as tf
import tf_keras as tfk

from tfvae import plots
from tfvae.callbacks import BestCheckpoint, HistoryCSV, KLWarmup, RaiseLostSignals, SampleGrids, StopOnNonFinite, TrainingCheckpoint
from tfvae.config import Config
from tfvae.callable_module import make_callable
from tfvae.datasets import DATA_DIR_ENV, canonical_dataset, config_splits, grey_levels, parse_image_size
from tfvae.pipeline import make_dataset, make_training_dataset, pixel_means, steps_per_epoch
from tfvae.distribute import agree, check_strategy, configure_devices, is_chief, is_multi_worker, make_strategy
from tfvae.errors import ConfigError, DataError, TfvaeError, TrainingDiverged
from tfvae.io import atomic_write_text
from tfvae.models import build_vae
from tfvae.models.networks import set_output_bias
from tfvae.presets import expand_preset, preset_values
from tfvae.runs import (
    BEST_DIR,
    default_run_dir,
    CHECKPOINT_DIR,
    LOG_DIR,
    SUMMARY_FILE,
    TIMING_FILE,
    RunPlan,
    checkpoint_epochs,
    checkpoint_path,
    ensure_run_dir,
    lock_run,
    plan_run,
    best_checkpoint,
    read_history,
)

__all__ = ["train", "OPTIONS", "train_and_evaluate", "training_images", "compile_vae", "training_checkpoint", "SAMPLE_GRID_SIZE"]

SAMPLE_GRID_SIZE = 64  # fixed z for the before / halfway / after sample grids
RECONSTRUCTIONS = 10  # validation images shown in reconstructions.png

# The options of `train` (and of `tfvae train`, with dashes): every Config field a user chooses. Not the
# fields the data decide (image_shape, data_fingerprint, classes), nor the file format's version.
OPTIONS = tuple(f.name for f in dataclasses.fields(Config)
                if f.name not in ("image_shape", "data_fingerprint", "classes", "version"))
_ARGUMENTS = ("preset", "run_dir", "overwrite", "verbose", "log", "resume_command")  # train's own keywords


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def train(
    *,
    preset: str = "classic",
    run_dir: Optional[str] = None,
    overwrite: bool = False,
    verbose="auto",
    log: Callable[[str], None] = _to_stderr,
    resume_command: Optional[Callable[[str], str]] = None,
    **options,
) -> str:
    """`tfvae train` from Python: train the VAE and write a run directory; returns its path.

    Takes every option of the command, with its default, under its Python name (`--latent-dim 2`:
    `latent_dim=2`; `--no-keep-best`: `keep_best=False`): the fields of `tfvae.config.Config` listed in
    `tfvae.train.OPTIONS`. Options given override the preset's values; the others keep the preset's, else
    the Config defaults. `tfvae train` calls this function, so the two train, resume and refuse alike.

    Args:
      preset: a name of `tfvae.presets.PRESETS` ("classic": the Config defaults; "best").
      run_dir: where the run is written; None: a new time-stamped folder under runs/. An unfinished run there
        is resumed; a finished one trains further when `epochs` is larger, and is refused otherwise.
      overwrite: replace the run in `run_dir` (its checkpoints, history, plots and export).
      verbose: Keras progress: "auto", 0 silent, 1 a bar, 2 a line per epoch.
      log: where the one-line status messages go; default stderr, as for the command.
      resume_command: run_dir -> the command that resumes this run, shown when training starts; default:
        this call, as Python.
      **options: epochs, latent_dim, hidden_units, architecture, prior, dataset, image_size (32, "64x48" or
        (H, W)), channels (1 or 3), limit, batch_size, learning_rate, seed, strategy, ... (`OPTIONS`);
        data_dir defaults to $TFVAE_DATA_DIR, as for the command.

    Returns:
      The run directory, as a str: config.json, history.csv, summary.json, checkpoints, plots
      (`tfvae.load_model(run_dir)` reads its model).

    Raises:
      ConfigError: an unknown option (close matches are named) or a value the Config refuses.
      TfvaeError: bad data, an unusable or busy run directory, or a loss that became NaN.

    Example:
    >>> import os, tempfile, numpy as np, tfvae
    >>> folder = tempfile.mkdtemp()
    >>> x = (np.random.default_rng(0).random((120, 8, 8)) < 0.3).astype("float32")
    >>> np.savez(os.path.join(folder, "dots.npz"), x_train=x)
    >>> run = tfvae.train(dataset="npz:" + os.path.join(folder, "dots.npz"), epochs=1, latent_dim=2,
    ...                   hidden_units=8, batch_size=32, run_dir=os.path.join(folder, "run"), verbose=0,
    ...                   log=lambda message: None)
    >>> sorted(name for name in os.listdir(run) if name.endswith((".csv", ".json")))
    ['config.json', 'history.csv', 'summary.json', 'timing.csv']
    >>> tfvae.train(epoch=2)
    Traceback (most recent call last):
    ...
    tfvae.errors.ConfigError: tfvae.train has no option 'epoch' (did you mean epochs?)
    """
    _check_option_names(options)
    explicit = dict(options)  # what the caller chose: shown in the resume command
    data_dir = options.pop("data_dir", None)
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or None  # as the command's envvar: recorded in config.json
    if options.get("image_size") is not None:  # 32, "32", "64x48" or (H, W) -> (H, W)
        try:
            options["image_size"] = parse_image_size(options["image_size"])
        except DataError as e:
            raise ConfigError(str(e)) from None
    config = expand_preset(preset, data_dir=None if data_dir is None else os.fspath(data_dir), **options)
    run_dir = os.fspath(run_dir) if run_dir else default_run_dir()  # "" too, as the command
    if resume_command is None:
        resume_command = _python_call(preset, explicit)
    train_and_evaluate(
        config,
        run_dir,
        overwrite=overwrite,
        verbose="auto" if verbose is None else verbose,
        log=log,
        resume_command=resume_command(run_dir),
        # On resume, fields neither given nor set by the preset may follow the run (tfvae.config.FOLLOW_RUN).
        defaulted=[name for name in OPTIONS
                   if name != "data_dir" and name not in options
                   and name not in preset_values(preset, options.get("condition", "none"))],
    )
    return run_dir


def _check_option_names(options: dict) -> None:
    """Refuse names that are no option, in one line, with the close matches of each."""
    unknown = [name for name in options if name not in OPTIONS]
    if not unknown:
        return
    described = []
    for name in unknown:
        spelled = str(name).replace("-", "_")  # latent-dim: the option itself, not its near namesakes too
        close = [spelled] if spelled in OPTIONS else difflib.get_close_matches(spelled, OPTIONS + _ARGUMENTS, n=3)
        described.append(f"{name!r}" + (f" (did you mean {' or '.join(close)}?)" if close else ""))
    message = f"tfvae.train has no option{'s' if len(unknown) > 1 else ''} {', '.join(described)}"
    if not all("did you mean" in d for d in described):
        message += "; the options are listed in tfvae.train.OPTIONS"
    raise ConfigError(message)


def _python_call(preset: str, explicit: dict) -> Callable[[str], str]:
    """run_dir -> the Python call that resumes the run: the options given, run_dir, never overwrite."""

    def call(run_dir: str) -> str:
        arguments = {**({"preset": preset} if preset != "classic" else {}), **explicit, "run_dir": run_dir}
        return f"tfvae.train({', '.join(f'{name}={value!r}' for name, value in arguments.items())})"

    return call


def training_images(config: Config, splits) -> np.ndarray:
    """The training images `config` asks for, after checking the sizes make sense."""
    images = splits.train
    if config.limit is not None:
        if config.limit > len(images):
            raise ConfigError(f"--limit {config.limit} is larger than the {len(images)} training images")
        images = images[: config.limit]
    if config.batch_size > len(images):
        raise ConfigError(
            f"--batch-size {config.batch_size} is larger than the {len(images)} training images; "
            "use a smaller batch or more data"
        )
    return images


def training_labels(config: Config, splits, images: np.ndarray):
    """The class labels (N,) int32 of the training images of a conditional run (None for an unconditional one).

    Raises:
      ConfigError: a class with no image among the first `--limit` training images.
    """
    if config.condition != "label":
        return None
    labels = splits.labels["train"][: len(images)]
    missing = [name for k, name in enumerate(config.classes) if not np.any(labels == k)]
    if missing:
        raise ConfigError(f"class {missing[0]!r} has no image among the {len(images)} training images"
                          + (" (--limit)" if config.limit is not None else "") + "; every class needs one")
    return labels


def compile_vae(config: Config, strategy: tf.distribute.Strategy):
    """The run's VAE built under `strategy`, compiled with Adam.

    Keras 2's legacy Adam updates each variable with TensorFlow's fused
    ResourceApplyAdam kernel; the newer one makes several elementwise passes
    over the 0.8M parameters per step, which on CPU cost more than all the
    matrix products of a step (BENCHMARKS.md). Same algorithm, same numbers to
    float round-off. Its slots are created at the first step, and a restored
    checkpoint fills them then.
    """
    with strategy.scope():
        vae = build_vae(config)
        vae.compile(
            optimizer=tfk.optimizers.legacy.Adam(learning_rate=config.learning_rate),
            jit_compile=config.jit_compile,
            steps_per_execution=config.steps_per_execution,
        )
        # Created here, under the strategy, not lazily inside a replica's step: it seeds the posterior noise.
        _ = vae.optimizer.iterations
    vae.binarize_inputs = False  # the pipeline binarizes (make_training_dataset); the model need not again
    return vae


def training_checkpoint(vae, epoch: tf.Variable) -> tf.train.Checkpoint:
    """Everything a resumed run needs: weights, optimizer state (with its step, which seeds the noise), epoch.

    The data position is the epoch: each epoch's batches are a function of (seed, epoch).
    """
    return tf.train.Checkpoint(model=vae, optimizer=vae.optimizer, epoch=epoch)


def train_and_evaluate(
    config: Config, run_dir: str, *, overwrite: bool = False, verbose="auto", log=print, resume_command: str = "",
    defaulted=(),
) -> dict:
    """Train the VAE of `config`, writing config, history, checkpoints, logs and plots to `run_dir`.

    Options and data are checked before anything is written. An unfinished
    run of the same model, data and optimisation is resumed from its newest
    readable checkpoint, and continues exactly as if it had never stopped: the
    data of each epoch and the posterior noise of each step are functions of
    the seed. A finished run trains further when `config.epochs` is larger, and
    is refused otherwise unless `overwrite`. One process at a time trains a
    run (a lock in `run_dir`); under a multi-worker strategy the chief decides
    and every worker acts on its decision, or stops with its error.

    Args:
      config: the run's configuration.
      run_dir: where the run lives.
      overwrite: replace the run in `run_dir` (its export too).
      verbose: Keras' progress display: "auto", 0, 1 or 2.
      log: where one-line status messages go.
      resume_command: the command that resumes this run, shown when training starts.
      defaulted: names of config fields left at their defaults (not chosen by the user); on resume, those
        of `tfvae.config.FOLLOW_RUN` take the run's own values (tfvae.runs.plan_run).

    Returns:
      The final figures (also written to summary.json): ELBO, rate and
      distortion for train, validation and test, in nats per image.

    Raises:
      TfvaeError: bad options or data, an unusable or busy run directory, or a loss that became NaN.
    """
    configure_devices(config)
    strategy = make_strategy(config)
    check_strategy(config, strategy)
    if config.data_dir is not None:
        config = config.replace(data_dir=os.path.abspath(config.data_dir))  # the same folder from any working directory
    if config.data_cache is not None:
        config = config.replace(data_cache=os.path.abspath(os.path.expanduser(config.data_cache)))
    config = config.replace(dataset=canonical_dataset(config.dataset))  # folder: and npz: paths made absolute
    chief = is_chief(strategy)
    with contextlib.ExitStack() as held:
        plan, splits, images = _prepare(config, run_dir, overwrite, strategy, chief, held, log, defaulted)
        # Only the chief writes the run; other workers write into a scratch directory they delete.
        work_dir = run_dir if chief else tempfile.mkdtemp(prefix="tfvae-worker-")
        try:
            return _train(plan, splits, images, strategy, chief, run_dir, work_dir, verbose, log, resume_command)
        finally:
            if not chief:
                shutil.rmtree(work_dir, ignore_errors=True)


# Words of `agree`: what each worker says after preparing.
_READY, _PLAN, _FAILED = 0, 1, 2


def _prepare(config, run_dir, overwrite, strategy, chief, held, log, defaulted=()):
    """Check options and data, then (chief) lock the run and decide: (RunPlan, splits, training images).

    Under a multi-worker strategy every worker checks its own options and data,
    then all of them exchange what they found: the chief's plan, or the first
    error, which every worker raises.
    """
    plan = error = None
    created = False
    try:
        if chief:
            created = ensure_run_dir(run_dir)  # an unwritable place fails before any data is read
            held.callback(lock_run(run_dir).release)
        splits = config_splits(config, config.data_dir, prepare=chief, log=log)
        # What the data turned out to be: the model's image shape, and the fingerprint a resumed run must match.
        config = config.replace(image_shape=splits.image_shape, data_fingerprint=splits.fingerprint,
                                classes=splits.classes if config.condition == "label" else None)
        images = training_images(config, splits)
        training_labels(config, splits, images)  # checked before anything is written
        if chief:
            plan = plan_run(run_dir, config, overwrite=overwrite, log=log, defaulted=defaulted)
    except TfvaeError as e:
        error = e
    if is_multi_worker(strategy):
        if error is not None:
            word = (_FAILED, 0, str(error))
        elif chief:
            word = (_PLAN, plan.epoch, plan.action)
        else:
            word = (_READY, 0, "")
        words = agree(strategy, *word)
        failures = [message for kind, _, message in words if kind == _FAILED]
        if failures and error is None:
            error = TfvaeError(f"{'a worker' if chief else 'the chief or another worker'} stopped: {failures[0]}")
        if error is None:
            (epoch, action), = {(number, message) for kind, number, message in words if kind == _PLAN}
            plan = RunPlan(config, epoch, action)
    if error is not None:
        held.close()  # releases the lock
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(run_dir)  # nothing was written: leave nothing behind
        raise error
    return plan, splits, images


def _train(plan, splits, images, strategy, chief, run_dir, work_dir, verbose, log, resume_command) -> dict:
    config = plan.config
    tfk.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    vae = compile_vae(config, strategy)

    # Resume: every worker restores the chief's checkpoint of the agreed epoch; each saves into its own work_dir.
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    checkpoint = training_checkpoint(vae, epoch)
    if plan.epoch:
        checkpoint.read(checkpoint_path(run_dir, plan.epoch)).assert_existing_objects_matched()
    first_epoch = int(epoch.numpy())
    if not plan.epoch and config.decoder_bias == "data":  # a new run: restored weights need no start
        set_output_bias(vae.decoder, pixel_means(images, dynamic=splits.dynamic, grey=splits.grey))
    if plan.action == "resume":
        log(f"resuming the unfinished run in {run_dir} after epoch {first_epoch}")
    elif chief and plan.action == "new":
        log(f"training into {run_dir}" + (f" (if interrupted, resume with: {resume_command})" if resume_command else ""))

    labels = {split: _labels(config, splits, split) for split in ("validation", "test")}
    training = dict(seed=config.seed, epochs=config.epochs, first_epoch=first_epoch, dynamic=splits.dynamic,
                    labels=training_labels(config, splits, images), grey=splits.grey)
    if is_multi_worker(strategy) and not isinstance(images, np.ndarray):
        # Rows on disk (--data-cache): each worker reads only its replicas' rows of every batch.
        def worker_share(context):
            local = strategy.num_replicas_in_sync // context.num_input_pipelines
            return make_training_dataset(images, config.batch_size, **training,
                                         replica_slices=(context.num_input_pipelines, context.input_pipeline_id, local))

        train_ds = strategy.distribute_datasets_from_function(worker_share)
    else:
        train_ds = make_training_dataset(images, config.batch_size, **training)
    validation_ds = make_dataset(splits.validation, config.batch_size, training=False, labels=labels["validation"],
                                 grey=splits.grey)
    grid_rng = np.random.default_rng(config.seed)
    z_fixed = grid_rng.standard_normal((SAMPLE_GRID_SIZE, vae.latent_dim))
    u_fixed = grid_rng.random(SAMPLE_GRID_SIZE)  # drawn after z: the N(0, I) grids keep their z
    stop_on_non_finite = StopOnNonFinite()
    # Order matters: history and plots are written before the checkpoint, so a kill between the two
    # makes the resumed run redo (and rewrite) that epoch rather than lose its row.
    callbacks = [
        stop_on_non_finite,
        KLWarmup(config.warmup_epochs),
        HistoryCSV(work_dir),
        (ClassSampleGrids if config.num_classes else SampleGrids)(work_dir, z_fixed.astype(np.float32), config.epochs,
                                                                  u_fixed),
        tfk.callbacks.TensorBoard(os.path.join(work_dir, LOG_DIR), profile_batch=0),
        TrainingCheckpoint(checkpoint, epoch, os.path.join(work_dir, CHECKPOINT_DIR), config.keep_checkpoints or None),
        RaiseLostSignals(),  # last: an epoch that has ended is kept before a lost Ctrl-C is raised again
    ]
    if config.keep_best:  # before TrainingCheckpoint: a kill between the two redoes the epoch
        callbacks.insert(-1, BestCheckpoint(os.path.join(work_dir, CHECKPOINT_DIR, BEST_DIR)))
    if first_epoch < config.epochs:
        vae.fit(
            train_ds,
            epochs=config.epochs,
            initial_epoch=first_epoch,
            steps_per_epoch=steps_per_epoch(len(images), config.batch_size),
            validation_data=validation_ds,
            callbacks=callbacks,
            verbose=verbose,
        )
    if not isinstance(images, np.ndarray):  # read from --data-cache: how much this worker read
        epochs_run = config.epochs - first_epoch
        log(f"read {images.rows_read:,} training images from the cache in {epochs_run} epoch"
            f"{'s' if epochs_run != 1 else ''} (of {len(images) * epochs_run:,}: this worker's share)")

    if stop_on_non_finite.bad_epoch is not None:
        kept = checkpoint_epochs(run_dir)
        raise TrainingDiverged(
            f"the loss became NaN or infinite in epoch {stop_on_non_finite.bad_epoch}; "
            + (f"the last good checkpoint is kept ({checkpoint_path(run_dir, kept[0])})" if kept
               else "no epoch finished with a finite loss")
            + "; try a lower --learning-rate"
        )
    if config.keep_best and best_checkpoint(work_dir):  # the run's model is the best validation epoch
        tf.train.Checkpoint(model=vae).read(best_checkpoint(work_dir)).expect_partial()
    # Every worker evaluates (under a multi-worker strategy evaluate is collective); only the chief writes.
    test = vae.evaluate(make_dataset(splits.test, config.batch_size, training=False, labels=labels["test"],
                                     grey=splits.grey),
                        return_dict=True, verbose=0)
    if not chief:
        return {}
    return _finish(config, vae, splits, test, run_dir, log)


def _finish(config: Config, vae, splits, test: dict, run_dir: str, log) -> dict:
    """Final plots and figures; summary.json is written last and marks the run finished."""
    x = np.asarray(splits.validation[:RECONSTRUCTIONS])
    x = grey_levels(x) if splits.grey else x.astype(np.float32)
    y = _labels(config, splits, "validation")
    plots.plot_reconstructions(x, vae.reconstruct(x, None if y is None else y[:RECONSTRUCTIONS]).numpy(),
                               os.path.join(run_dir, "reconstructions.png"))
    if vae.latent_dim == 2 and not config.num_classes:
        z = plots.manifold_latents(20)
        means = vae.decode_mean(z).numpy()  # (400, H, W, C)
        plots.save_image_grid(means, os.path.join(run_dir, "manifold.png"), "latent manifold", columns=20)

    history = read_history(run_dir)
    last = history[-1]
    summary = {
        "epochs": config.epochs,
        "train_elbo": last["train_elbo"],
        "val_elbo": last["val_elbo"],
        "test_elbo": float(test["elbo"]),
        "test_rate": float(test["rate"]),
        "test_distortion": float(test["distortion"]),
        # The rate's figures (history.csv, above): closed form, or one Monte Carlo sample per image.
        "rate_estimate": "closed_form" if config.closed_form_rate else "monte_carlo",
        "seconds_per_epoch": statistics.median(r["seconds"] for r in read_history(run_dir, TIMING_FILE)),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    atomic_write_text(os.path.join(run_dir, SUMMARY_FILE), json.dumps(summary, indent=2) + "\n")
    density = "" if config.likelihood == "bernoulli" else " (continuous-Bernoulli log-densities, not probabilities)"
    log(
        f"done: ELBO train {summary['train_elbo']:.2f}, validation {summary['val_elbo']:.2f}, "
        f"test {summary['test_elbo']:.2f} nats per image{density}; run in {run_dir}"
    )
    return summary


def _labels(config: Config, splits, split: str):
    """The labels (N,) of one split for a conditional run; None for an unconditional one."""
    return splits.labels[split] if config.condition == "label" else None


class ClassSampleGrids(SampleGrids):
    """`SampleGrids` of a conditional model: row i of the grid (8 images) is class i mod N, z ~ p(z|y) for the
    fixed noise (N(0, I): z itself; a per-class prior: loc_y + scale_y eps)."""

    def _save(self, epoch: int):
        n = int(self.z.shape[0])
        columns = math.isqrt(n) or 1
        labels = (np.arange(n) // columns) % self.model.classes  # (N,): one class per row of the grid
        _, loc, scale = (np.asarray(t) for t in self.model.prior_mixture(labels))
        z = tf.constant(loc + scale * self.z.numpy(), tf.float32)
        means = self.model.decode_mean(z, tf.constant(labels, tf.int32)).numpy()
        title = "before training" if epoch == 0 else f"after epoch {epoch}"
        plots.save_image_grid(means, os.path.join(self.run_dir, f"samples_epoch_{epoch:03d}.png"), title)


make_callable(__name__, "train")  # tfvae.train(...) calls train(...), before or after `import tfvae.train`
