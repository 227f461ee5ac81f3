"""`tfvae evaluate`: options -> tfvae.evaluate (evaluate_run or evaluate_dataset) -> the figures, as text or JSON."""

from __future__ import annotations

import json
import math

import click

# No TensorFlow here (`tfvae evaluate -h` stays fast): tfvae.evaluate imports it only when a model runs.
from tfvae.evaluate import DEFAULT_CLASSIFICATION_SAMPLES, DEFAULT_IMPORTANCE_SAMPLES, ESTIMATORS, SPLITS
from tfvae.pretrained import NAMES as PRETRAINED_NAMES

# With --model, the images come from a dataset read as `tfvae train` reads it; a run reads its own.
DATASET_OPTIONS = (
    click.option("--dataset", default=None, metavar="NAME",
                 help="With --model: the images, as tfvae train reads them (binarized_mnist, mnist, fashion_mnist, "
                      "tfds:NAME[/CONFIG], folder:PATH, npz:PATH)."),
    click.option("--image-key", default="image", show_default=True, help="With --dataset tfds:...: the image feature."),
    click.option("--image-size", metavar="H[xW]", default=None,
                 help="With --dataset: resize every image (area filter), as tfvae train --image-size."),
    click.option("--channels", type=click.Choice(["1", "3"]), default=None,
                 help="With --dataset: convert to grey (1) or RGB (3), as tfvae train --channels."),
)


def dataset_options(command):
    """Adds DATASET_OPTIONS to a click command (decorators apply bottom-up, so in reverse)."""
    for option in reversed(DATASET_OPTIONS):
        command = option(command)
    return command


PRETRAINED_OPTION = click.option(
    "--pretrained", type=click.Choice(PRETRAINED_NAMES), default=None,
    help="Instead of --run-dir or --model: a model shipped in the package (its own dataset unless --dataset).")


def pretrained_source(pretrained, run_dir, model, dataset) -> tuple:
    """--pretrained NAME as --model pretrained:NAME --dataset (the dataset it was trained on): (model, dataset)."""
    if pretrained is None:
        return model, dataset
    if run_dir is not None or model is not None:
        raise click.UsageError("give exactly one of --run-dir (a run of tfvae train), --model (a .keras file) and "
                               "--pretrained NAME (a shipped model)")
    from tfvae.pretrained import PREFIX, manifest

    return PREFIX + pretrained, dataset or manifest(pretrained)["config"]["dataset"]


def check_model_source(run_dir, model, dataset, image_key, image_size, channels, dataset_needed: bool) -> None:
    """Exactly one of --run-dir and --model, and the dataset options only with --model; else a usage error (exit 2)."""
    if (run_dir is None) == (model is None):
        raise click.UsageError("give exactly one of --run-dir (a run of tfvae train), --model (a .keras file) and "
                               "--pretrained NAME (a shipped model)")
    dataset_given = dataset is not None or image_key != "image" or image_size is not None or channels is not None
    if run_dir is not None and dataset_given:
        raise click.UsageError("--dataset, --image-key, --image-size and --channels go with --model; "
                               "a run reads its own data")
    if model is not None and dataset is None and (dataset_needed or dataset_given):
        raise click.UsageError("--model needs --dataset NAME, the images to evaluate on")


@click.command()
@click.option("--run-dir", type=click.Path(), default=None, help="A run written by `tfvae train`.")
@click.option("--model", type=click.Path(), default=None,
              help="A .keras file written by vae.save(...) (or a run directory), instead of --run-dir; needs --dataset.")
@PRETRAINED_OPTION
@dataset_options
@click.option("--split", type=click.Choice(SPLITS), default="test", show_default=True, help="Which images.")
@click.option("--importance-samples", "-k", type=int, default=DEFAULT_IMPORTANCE_SAMPLES, show_default=True,
              help="K, samples of z per image (with --target-se, the most).")
@click.option("--target-se", type=float, default=None,
              help="Stop sampling a batch once the K error of its mean log p(x), sqrt(bias^2 + s.e.^2), is this "
                   "many nats or less (not the spread across images, which K does not reduce) [default: all K].")
@click.option("--estimator", type=click.Choice(ESTIMATORS), default=ESTIMATORS[0], show_default=True,
              help="importance: z ~ q(z|x), the IWAE bound; prior: z ~ p(z), naive Monte Carlo (biased low at practical K).")
@click.option("--limit", type=int, default=None, help="Evaluate the first N images of the split only.")
@click.option("--batch-size", type=int, default=None, help="Images per batch [default: chosen from K].")
@click.option("--data-dir", type=click.Path(file_okay=False), envvar="TFVAE_DATA_DIR",
              help="Local data laid out like shared/data [env: TFVAE_DATA_DIR; default: the run's].")
@click.option("--seed", type=int, default=0, show_default=True, help="Fixes the samples of z.")
@click.option("--classification-samples", type=click.IntRange(min=0), default=DEFAULT_CLASSIFICATION_SAMPLES,
              show_default=True,
              help="A conditional model: K per class of its own classification, argmax_y log p(x|y) (0: skip it).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def evaluate(run_dir, model, pretrained, dataset, image_key, image_size, channels, split, importance_samples, estimator, limit,
             batch_size, data_dir, seed, target_se, classification_samples, as_json):
    """Estimate log p(x) by importance sampling, beside the ELBO, rate and distortion.

    All figures are in nats per image, averaged over the split; log p(x) comes
    with its standard error across images and, apart, the error from finite K
    (its bias and standard error). A progress bar goes to stderr. A conditional
    model (tfvae train --condition label) is scored on log p(x|y), each image
    with its label, and classifies the images itself: argmax_y log p(x|y).

    \b
    tfvae evaluate --run-dir RUN                                a run, on its own data
    tfvae evaluate --model m.keras --dataset binarized_mnist    a saved model, on a dataset
    tfvae evaluate --pretrained best                            a shipped model, on its own test images
    """
    model, dataset = pretrained_source(pretrained, run_dir, model, dataset)
    check_model_source(run_dir, model, dataset, image_key, image_size, channels, dataset_needed=True)
    from tfvae.evaluate import evaluate_dataset, evaluate_run

    options = dict(split=split, importance_samples=importance_samples, estimator=estimator, limit=limit,
                   batch_size=batch_size, data_dir=data_dir, seed=seed, progress=True, target_se=target_se,
                   classification_samples=classification_samples)
    if run_dir is not None:
        evaluation = evaluate_run(run_dir, **options)
    else:
        evaluation = evaluate_dataset(model, dataset, image_key=image_key, image_size=image_size,
                                      channels=None if channels is None else int(channels), **options)
    click.echo(json.dumps(evaluation.to_dict()) if as_json else describe(evaluation))


def describe(evaluation) -> str:
    """The figures of an `Evaluation` as a few aligned lines of text."""
    e = evaluation
    given = "|y" if e.condition == "label" else ""  # a conditional model: every figure given the image's label
    how = (f"importance sampling, z ~ q(z|x{given and ',y'})" if e.estimator == "importance"
           else "prior sampling, z ~ p(z)")
    stderr = f"{e.log_likelihood_stderr:.2f}" if math.isfinite(e.log_likelihood_stderr) else "n/a (one image)"
    samples = f"K = {e.importance_samples}" if e.target_se is None else (
        f"K = {e.importance_samples} at most, {e.importance_samples_used:.0f} used on average")
    target = "" if e.target_se is None else f", target {e.target_se:g}" + (
        "" if math.hypot(e.sampling_bias, e.sampling_stderr) <= e.target_se else " not reached at this K")
    density = [] if e.likelihood == "bernoulli" else [
        f"  p(x|z): {e.meaning}; not comparable with a Bernoulli model's log p(x)"
    ]
    classification = [] if e.classification_accuracy is None else [
        f"  classification  {100 * e.classification_accuracy:.2f} % right  (the model's own: argmax_y log p(x|y), "
        f"K = {e.classification_samples} per class, p(y) uniform)"
    ]
    return "\n".join([
        f"{e.split} split, {e.examples} images, nats per image"
        + (" (a conditional model: log p(x|y), each image given its label)" if given else "") + ":",
        f"  log p(x{given})  {e.log_likelihood:9.2f} ± {stderr}  ({how}, {samples})",
        f"  K error   bias ≈ {e.sampling_bias:.2g}, s.e. {e.sampling_stderr:.2g}  (z sampling{target}; "
        "the ± above is the spread across images)",
        f"  ELBO      {e.elbo:9.2f}  (rate {e.rate:.2f}"
        + (", a Monte Carlo estimate" if e.rate_estimate == "monte_carlo" else "")
        + f", distortion {e.distortion:.2f})",
        f"  log p(x{given}) - ELBO  {e.log_likelihood - e.elbo:.2f}",
        *classification,
        *density,
        f"  {e.seconds:.1f} s, {e.images_per_second:.1f} images/s",
    ])
