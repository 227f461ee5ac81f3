"""Time to quality: the training time until a run's test log p(x) passes given thresholds, from its epochs.

A K = 5000 evaluation of all test images at every epoch would cost a full evaluation per epoch (38 minutes
for `best` on a 2-core CPU), so each epoch's log p(x) is estimated instead as

    log p(x)(e) ~= ELBO(e) + r * gap(e)

- ELBO(e): the ELBO over all test images at every kept epoch (`elbo_samples` samples of z per image: an
  unbiased estimate, cheap);
- gap(e): log p(x) - ELBO with K importance samples on the first `gap_images` test images, measured at
  `gap_epochs` and at the run's model (its last epoch, or its best validation epoch with keep_best),
  linearly interpolated in between (held constant outside);
- r: the full test set's gap over the subset's at the run's model, from an evaluation of the run's model on
  all test images (`tfvae evaluate --json`); 1 when the subset is the whole test set or no evaluation is given.
  The first test images need not be typical: the subset gives the gap, never the level.

The training time until epoch e is the sum of timing.csv's seconds up to e. A run keeps every epoch's
checkpoint when trained with `--keep-checkpoints 0`; `tfvae analyze quality --run-dir RUN` runs this.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Optional, Sequence

import numpy as np

from tfvae.errors import ConfigError, RunError

__all__ = ["estimate_log_likelihood", "crossings", "training_seconds", "model_epoch", "time_to_quality",
           "DEFAULT_THRESHOLDS", "DEFAULT_GAP_EPOCHS"]

DEFAULT_THRESHOLDS = (-95.0, -90.0, -87.0)  # nats, BENCHMARKS.md's time-to-quality table
DEFAULT_GAP_EPOCHS = (3, 8, 15, 25)  # the gap moves fastest early on


def estimate_log_likelihood(elbo: dict, gaps: dict, ratio: float = 1.0) -> dict:
    """{epoch: ELBO(e) + ratio * gap(e)} for every epoch of `elbo`, gap(e) interpolated linearly between the
    epochs of `gaps` ({epoch: log p(x) - ELBO}) and held constant outside them.

    >>> estimate_log_likelihood({1: -100.0, 2: -95.0, 3: -93.0}, {1: 6.0, 3: 4.0}, ratio=1.5)
    {1: -91.0, 2: -87.5, 3: -87.0}
    """
    if not gaps:
        raise ValueError("no gap measured")
    known = sorted(gaps)
    return {e: elbo[e] + ratio * float(np.interp(e, known, [gaps[k] for k in known])) for e in sorted(elbo)}


def crossings(estimates: dict, seconds: dict, thresholds: Sequence[float]) -> dict:
    """For each threshold (keyed by its text, e.g. "-90.0"), the first epoch whose estimate is at or above it:
    {"epoch", "log_likelihood", "previous" (the epoch before's estimate, or None), "training_seconds" (timing.csv's
    seconds summed over epochs 1..epoch)}; None if no epoch reaches it.

    >>> crossings({1: -96.0, 2: -94.0}, {1: 10.0, 2: 12.0}, [-95, -90])["-95.0"]["training_seconds"]
    22.0
    """
    result = {}
    for threshold in thresholds:
        epoch = next((e for e in sorted(estimates) if estimates[e] >= threshold), None)
        result[str(float(threshold))] = None if epoch is None else {
            "epoch": epoch,
            "log_likelihood": estimates[epoch],
            "previous": estimates.get(epoch - 1),
            "training_seconds": training_seconds(seconds, epoch),
        }
    return result


def training_seconds(seconds: dict, epoch: int) -> float:
    """The training time until `epoch` ended: timing.csv's seconds ({epoch: seconds}) summed over epochs 1..epoch."""
    return float(sum(s for e, s in seconds.items() if e <= epoch))


def model_epoch(run_dir: str, config) -> int:
    """The epoch whose weights are the run's model (`tfvae evaluate`'s): the best validation epoch with
    keep_best, else the newest checkpoint's."""
    import tensorflow as tf

    from tfvae.runs import best_checkpoint, checkpoint_epochs

    path = best_checkpoint(run_dir) if config.keep_best else None
    if path is not None:
        return int(tf.train.load_checkpoint(path).get_tensor("best_epoch/.ATTRIBUTES/VARIABLE_VALUE"))
    return checkpoint_epochs(run_dir)[0]


def time_to_quality(
    run_dir: str,
    *,
    gap_images: int = 200,
    importance_samples: int = 5000,
    gap_epochs: Sequence[int] = DEFAULT_GAP_EPOCHS,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    evaluation: Optional[str] = None,
    elbo_samples: int = 5,
    data_dir: Optional[str] = None,
    progress: bool = False,
    log=None,
) -> dict:
    """Estimate test log p(x) at every kept epoch of a finished (or stopped) run, and when it passes `thresholds`.

    Args:
      run_dir: a finished or stopped run that kept every epoch's checkpoint (`tfvae train --keep-checkpoints 0`).
      gap_images: the first N test images, on which the gap is measured.
      importance_samples: K of the gap's log p(x).
      gap_epochs: the epochs whose gap is measured, besides the run's model (those not kept are skipped).
      thresholds: in nats.
      evaluation: the JSON of `tfvae evaluate --json` for the run's model on all test images (for r).
      elbo_samples: samples of z per image for each epoch's ELBO.
      data_dir: where the data is (None: the run's, then $TFVAE_DATA_DIR, then TFDS).
      progress: progress bars on stderr.
      log: called with a line per measurement.

    Returns:
      {"model_epoch", "finished", "ratio", "gap_images", "importance_samples", "elbo" {epoch: ELBO},
      "gap" {epoch: {log_likelihood, elbo, gap}}, "log_likelihood" {epoch: estimate}, "crossings" (see `crossings`),
      "seconds"}; epochs as strings.

    Raises:
      TfvaeError: a run with no epoch or still training, an epoch's checkpoint missing, too few images, an
        evaluation that is not of this run's test set.
    """
    import tensorflow as tf

    from tfvae.datasets.splits import split_images
    from tfvae.evaluate import evaluate_vae
    from tfvae.models import build_vae
    from tfvae.runs import SUMMARY_FILE, TIMING_FILE, checkpoint_epochs, checkpoint_path, open_run, read_history

    log = log or (lambda message: None)
    config = open_run(run_dir)
    finished = os.path.isfile(os.path.join(run_dir, SUMMARY_FILE))  # a stopped run's model is its newest epoch
    images = split_images(config, "test", data_dir)
    if gap_images > len(images):
        raise ConfigError(f"--eval-images {gap_images} is larger than the {len(images)} test images")
    full = _full_gap(evaluation, len(images)) if evaluation else None
    epochs = sorted(checkpoint_epochs(run_dir))
    if epochs != list(range(1, epochs[-1] + 1)):  # a crossing found among the last few epochs would be wrong
        raise RunError(f"{run_dir} kept {len(epochs)} of its {epochs[-1]} epochs' checkpoints: time to quality needs "
                       "every epoch; train the run with --keep-checkpoints 0")
    model = model_epoch(run_dir, config)
    if not finished:
        log(f"quality: {run_dir} was stopped after {epochs[-1]} of {config.epochs} epochs: its model is epoch {model}, "
            "as for tfvae evaluate")
    seconds = {int(row["epoch"]): row["seconds"] for row in read_history(run_dir, TIMING_FILE)}
    vae = build_vae(config)
    start = time.perf_counter()

    gaps, elbo = {}, {}
    for epoch in epochs:  # every kept epoch holds its weights; the run's model's is the best checkpoint's too
        tf.train.Checkpoint(model=vae).read(checkpoint_path(run_dir, epoch)).expect_partial()
        elbo[epoch] = evaluate_vae(vae, images, importance_samples=elbo_samples, progress=progress).elbo
        log(f"quality: epoch {epoch}: ELBO {elbo[epoch]:.3f} on {len(images):,} test images")
        if epoch in gap_epochs or epoch == model:
            e = evaluate_vae(vae, images[:gap_images], importance_samples=importance_samples, progress=progress)
            gaps[epoch] = {"log_likelihood": e.log_likelihood, "elbo": e.elbo, "gap": e.log_likelihood - e.elbo}
            log(f"quality: epoch {epoch}: gap {gaps[epoch]['gap']:.3f} on the first {gap_images:,} test images "
                f"(K={importance_samples})")

    if gap_images == len(images):
        ratio, ratio_from = 1.0, "all test images"
    elif full is not None:
        ratio, ratio_from = full / gaps[model]["gap"], "evaluation"
    else:
        ratio, ratio_from = 1.0, "none"
    estimates = estimate_log_likelihood(elbo, {e: g["gap"] for e, g in gaps.items()}, ratio)
    return {
        "model_epoch": model,
        "finished": finished,  # False: the run was stopped before its last epoch, and its model is what it reached
        "ratio": ratio,
        "ratio_from": ratio_from,  # evaluation, all test images (the gap is the full set's), none (r = 1 assumed)
        "gap_images": gap_images,
        "importance_samples": importance_samples,
        "elbo_samples": elbo_samples,
        "test_images": len(images),
        "elbo": {str(e): v for e, v in elbo.items()},
        "gap": {str(e): g for e, g in gaps.items()},
        "log_likelihood": {str(e): v for e, v in estimates.items()},
        "training_seconds": {str(e): training_seconds(seconds, e) for e in estimates},
        "crossings": crossings(estimates, seconds, thresholds),
        "seconds": time.perf_counter() - start,
    }


def _full_gap(path: str, test_images: int) -> float:
    """log p(x) - ELBO of a `tfvae evaluate --json` file over all `test_images` test images."""
    try:
        with open(path, encoding="utf-8") as f:
            values = json.load(f)
        gap = float(values["log_likelihood"]) - float(values["elbo"])
        split, examples, estimator = values["split"], values["examples"], values["estimator"]
    except KeyError as e:
        raise ConfigError(f"--evaluation {path} is not the JSON of `tfvae evaluate --json` (no {e})") from None
    except (OSError, ValueError, TypeError) as e:
        raise ConfigError(f"--evaluation {path} is not the JSON of `tfvae evaluate --json` ({e})") from None
    if (split, examples, estimator) != ("test", test_images, "importance") or not math.isfinite(gap):
        raise ConfigError(f"--evaluation {path} must evaluate all {test_images:,} test images with importance "
                          f"sampling; it has {examples} {split} images ({estimator})")
    return gap
