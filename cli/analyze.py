"""`tfvae analyze gaps|quality`: a trained run's inference gaps and time to quality (tfvae.analysis).

Each analysis runs in a process of its own through `tfvae.bench.run`, as the sections of `tfvae bench` do:
the same figures, the same table and JSON.
"""

from __future__ import annotations

import click

# No TensorFlow here: each analysis imports it in its own process.
from tfvae.cli.bench import REFINE_STEPS, default_of, measure, quality_options, report_options

RUN_DIR = click.option("--run-dir", type=click.Path(file_okay=False), required=True, help="The trained run.")
EVAL_IMAGES = click.option("--eval-images", type=click.IntRange(1), default=default_of("gaps", "eval_images"),
                           show_default=True, help="The first N test images (quality: those that measure the gap).")
IMPORTANCE_SAMPLES = click.option(
    "--importance-samples", "-k", type=click.IntRange(1), default=default_of("gaps", "importance_samples"),
    show_default=True, help="K, samples of z per image for log p(x).")


@click.group()
def analyze():
    """How good a trained run is, and where its gap goes: its inference gaps and its time to quality.

    \b
      tfvae analyze gaps --run-dir runs/default40 --eval-images 200 --refine-steps 1500
      tfvae analyze quality --run-dir runs/best --eval-images 200 --evaluation best-eval.json
    """


@analyze.command()
@RUN_DIR
@EVAL_IMAGES
@IMPORTANCE_SAMPLES
@REFINE_STEPS
@report_options
@click.pass_context
def gaps(ctx, run_dir, **options):
    """The gap between the run's ELBO and log p(x), split into amortisation and approximation gaps.

    Each test image's posterior is refined on its own (--refine-steps Adam steps): what refining gains is
    the encoder's (amortisation) gap; what remains is the posterior family's (approximation) gap.
    """
    _analyze(ctx, "gaps", run_dir, options)


@analyze.command()
@RUN_DIR
@EVAL_IMAGES
@IMPORTANCE_SAMPLES
@quality_options
@report_options
@click.pass_context
def quality(ctx, run_dir, **options):
    """The training time until the run's test log p(x) passed each of --thresholds, from every epoch it kept.

    Train the run with --keep-checkpoints 0; scale the gap measured on --eval-images with --evaluation,
    the output of `tfvae evaluate --run-dir RUN --json`.
    """
    _analyze(ctx, "quality", run_dir, options)


def _analyze(ctx, name: str, run_dir: str, options: dict) -> None:
    from tfvae.runs import open_run

    measure(ctx, open_run(run_dir), (name,), run_dir=run_dir, **options)
