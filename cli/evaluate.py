"""`tfvae evaluate`: options -> tfvae.evaluate.evaluate_run -> the figures, as text or one JSON object."""

from __future__ import annotations

import json
import math

import click

# Literal defaults, so that `tfvae evaluate -h` does not import TensorFlow; tests check they match the library.
DEFAULT_SPLIT = "test"
DEFAULT_IMPORTANCE_SAMPLES = 5000
DEFAULT_ESTIMATOR = "importance"


@click.command()
@click.option("--run-dir", type=click.Path(), required=True, help="A run written by `tfvae train`.")
@click.option("--split", default=DEFAULT_SPLIT, show_default=True, help="test, validation or train.")
@click.option("--importance-samples", "-k", type=int, default=DEFAULT_IMPORTANCE_SAMPLES, show_default=True,
              help="K, samples of z per image (with --target-se, the most).")
@click.option("--target-se", type=float, default=None,
              help="Stop sampling a batch once the K error of its mean log p(x), sqrt(bias^2 + s.e.^2), is this "
                   "many nats or less (not the spread across images, which K does not reduce) [default: all K].")
@click.option("--estimator", default=DEFAULT_ESTIMATOR, show_default=True,
              help="importance: z ~ q(z|x), the IWAE bound; prior: z ~ p(z), naive Monte Carlo (biased low at practical K).")
@click.option("--limit", type=int, default=None, help="Evaluate the first N images of the split only.")
@click.option("--batch-size", type=int, default=None, help="Images per batch [default: chosen from K].")
@click.option("--data-dir", type=click.Path(file_okay=False), envvar="TFVAE_DATA_DIR",
              help="Local data laid out like shared/data [env: TFVAE_DATA_DIR; default: the run's].")
@click.option("--seed", type=int, default=0, show_default=True, help="Fixes the samples of z.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def evaluate(run_dir, split, importance_samples, estimator, limit, batch_size, data_dir, seed, target_se, as_json):
    """Estimate log p(x) by importance sampling, beside the ELBO, rate and distortion.

    All figures are in nats per image, averaged over the split; log p(x) comes
    with its standard error across images and, apart, the error from finite K
    (its bias and standard error). A progress bar goes to stderr.
    """
    from tfvae.evaluate import evaluate_run

    evaluation = evaluate_run(
        run_dir,
        split=split,
        importance_samples=importance_samples,
        estimator=estimator,
        limit=limit,
        batch_size=batch_size,
        data_dir=data_dir,
        seed=seed,
        progress=True,
        target_se=target_se,
    )
    click.echo(json.dumps(evaluation.to_dict()) if as_json else describe(evaluation))


def describe(evaluation) -> str:
    """The figures of an `Evaluation` as a few aligned lines of text."""
    e = evaluation
    how = "importance sampling, z ~ q(z|x)" if e.estimator == "importance" else "prior sampling, z ~ p(z)"
    stderr = f"{e.log_likelihood_stderr:.2f}" if math.isfinite(e.log_likelihood_stderr) else "n/a (one image)"
    samples = f"K = {e.importance_samples}" if e.target_se is None else (
        f"K = {e.importance_samples} at most, {e.importance_samples_used:.0f} used on average")
    target = "" if e.target_se is None else f", target {e.target_se:g}" + (
        "" if math.hypot(e.sampling_bias, e.sampling_stderr) <= e.target_se else " not reached at this K")
    density = [] if e.likelihood == "bernoulli" else [
        f"  p(x|z): {e.meaning}; not comparable with a Bernoulli model's log p(x)"
    ]
    return "\n".join([
        f"{e.split} split, {e.examples} images, nats per image:",
        f"  log p(x)  {e.log_likelihood:9.2f} ± {stderr}  ({how}, {samples})",
        f"  K error   bias ≈ {e.sampling_bias:.2g}, s.e. {e.sampling_stderr:.2g}  (z sampling{target}; "
        "the ± above is the spread across images)",
        f"  ELBO      {e.elbo:9.2f}  (rate {e.rate:.2f}"
        + (", a Monte Carlo estimate" if e.rate_estimate == "monte_carlo" else "")
        + f", distortion {e.distortion:.2f})",
        f"  log p(x) - ELBO  {e.log_likelihood - e.elbo:.2f}",
        *density,
        f"  {e.seconds:.1f} s, {e.images_per_second:.1f} images/s",
    ])
