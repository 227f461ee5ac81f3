"""`tfvae train`: options -> tfvae.train.train (preset + options -> Config -> train_and_evaluate)."""

from __future__ import annotations

import shlex

import click
from click.core import ParameterSource

from tfvae.cli import flags
from tfvae.config import CONDITIONS, DATASETS, DECODER_BIASES, LIKELIHOOD_NAMES, STRATEGIES, Config

_DEFAULTS = Config()


def _dataset(ctx, param, value):
    """A built-in name or PREFIX:ARGUMENT of a known source, else a usage error (exit 2) listing the choices."""
    from tfvae.datasets import SOURCES, parse_dataset
    from tfvae.errors import DataError

    try:
        parse_dataset(value)
    except DataError:
        choices = [*DATASETS, *(f"{prefix}:..." for prefix in SOURCES)]
        raise click.BadParameter(f"{value!r} is not one of {', '.join(map(repr, choices))}.") from None
    return value


@click.command()
@flags.PRESET
@click.option("--epochs", type=int, default=_DEFAULTS.epochs, show_default=True,
              help="Passes over the training set; a larger value trains a finished run further.")
@flags.LATENT_DIM
@flags.LATENT_LAYERS
@flags.LATENT_DIM_1
@flags.HIDDEN_UNITS
@flags.HIDDEN_LAYERS
@flags.ARCHITECTURE
@flags.FILTERS
@flags.POSTERIOR
@flags.FLOW_STEPS
@flags.FLOW_CONTEXT
@flags.FLOW_HIDDEN_UNITS
@flags.PRIOR
@flags.PRIOR_COMPONENTS
@click.option("--decoder-bias", type=click.Choice(DECODER_BIASES), default=_DEFAULTS.decoder_bias, show_default=True,
              help="The decoder's output bias at the start of a new run: data, the logit of the training pixel "
                   "means (an untrained decoder draws the average image); zero, the seed's start.")
@flags.OBJECTIVE
@flags.TRAIN_SAMPLES
@click.option("--warmup-epochs", type=int, default=_DEFAULTS.warmup_epochs, show_default=True,
              help="KL warm-up: the rate's weight rises linearly from 0 to 1 over N epochs.")
@click.option("--keep-best/--no-keep-best", default=_DEFAULTS.keep_best, show_default=True,
              help="The run's model is the epoch with the best validation objective, not the last.")
@flags.BATCH_SIZE
@click.option("--learning-rate", type=float, default=_DEFAULTS.learning_rate, show_default=True, help="Adam step size.")
@click.option(
    "--dataset",
    default=_DEFAULTS.dataset,
    callback=_dataset,
    show_default=True,
    help=f"{DATASETS[0]}: Larochelle's static binarization; {', '.join(DATASETS[1:])}: binarized afresh every epoch; "
         "tfds:NAME[/CONFIG]: a TensorFlow Datasets image dataset; folder:PATH: PNG / JPEG / BMP / GIF files "
         "(PATH/train, valid, test if present); npz:PATH: arrays x_train [, x_valid, x_test].",
)
@click.option("--image-key", default=_DEFAULTS.image_key, show_default=True,
              help="tfds: the feature that holds the images.")
@click.option("--condition", type=click.Choice(CONDITIONS), default=_DEFAULTS.condition, show_default=True,
              help="none: a VAE of p(x); label: a conditional VAE of p(x|y) on the data's class labels (mnist, "
                   "fashion_mnist, tfds:, folder:PATH/CLASS/..., npz: y_train / y_valid / y_test).")
@click.option("--label-key", default=_DEFAULTS.label_key, show_default=True,
              help="tfds with --condition label: the feature that holds the class labels.")
@click.option("--image-size", metavar="H[xW]", default=None,
              help="Resize every image (area filter) [default: as stored; every image must share one size].")
@click.option("--channels", type=click.Choice(["1", "3"]), default=None,
              help="Convert every image to grey (1) or RGB (3) [default: as stored; every image must share one mode].")
@click.option("--likelihood", type=click.Choice(LIKELIHOOD_NAMES), default=_DEFAULTS.likelihood, show_default=True,
              help="bernoulli: pixels binarized (per epoch for training); continuous_bernoulli: a density on the "
                   "grey levels themselves.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    envvar="TFVAE_DATA_DIR",
    help="Local data laid out like shared/data [env: TFVAE_DATA_DIR]; without it, tensorflow-datasets downloads.",
)
@click.option("--data-cache", type=click.Path(file_okay=False), default=None,
              help="Prepare the dataset once into uint8 shards in this folder and train from them, a batch read "
                   "at a time: memory no longer grows with the data (tfds:, folder:, npz:; the same numbers).")
@click.option("--limit", type=int, default=None, help="Train on the first N training images only (smoke runs).")
@click.option("--seed", type=int, default=_DEFAULTS.seed, show_default=True, help="Seeds weights, shuffling and sampling.")
@click.option("--run-dir", type=click.Path(), default=None, help="Where the run is written [default: a new folder under runs/].")
@click.option("--overwrite", is_flag=True,
              help="Replace the run in --run-dir (its checkpoints, history, plots and export).")
@click.option("--strategy", type=click.Choice(STRATEGIES), default=_DEFAULTS.strategy, show_default=True,
              help="tf.distribute strategy (auto: multi_worker with TF_CONFIG, mirrored with several devices).")
@click.option("--cpu-devices", type=int, default=_DEFAULTS.cpu_devices, show_default=True,
              help="Split the CPU into N logical devices (mirrored training without a GPU).")
@click.option("--mixed-precision", is_flag=True, help="mixed_float16 on GPU, mixed_bfloat16 on CPU.")
@click.option("--jit-compile/--no-jit-compile", default=_DEFAULTS.jit_compile, show_default=True,
              help="Compile the train step with XLA.")
@click.option("--steps-per-execution", type=int, default=_DEFAULTS.steps_per_execution, show_default=True,
              help="Train steps per call into the compiled graph.")
@click.option("--deterministic/--no-deterministic", default=_DEFAULTS.deterministic, show_default=True,
              help="TF op determinism: equal seeds give equal histories.")
@click.option("--keep-checkpoints", type=int, default=_DEFAULTS.keep_checkpoints, show_default=True,
              help="Epoch checkpoints kept, the newest; 0 keeps every epoch (for time to quality: tfvae bench "
                   "--sections quality).")
@click.option("--verbose", type=click.IntRange(0, 2), default=None, help="Keras progress: 0 silent, 1 bar, 2 a line per epoch.")
@click.pass_context
def train(ctx, preset, run_dir, overwrite, verbose, data_dir, **options):
    """Train the VAE on binarized MNIST, or on your own images, and write a run directory.

    The run holds config.json, history.csv (ELBO, rate and distortion per epoch),
    checkpoints, TensorBoard logs, elbo.png, sample grids before / halfway / after
    training, reconstructions.png and, with --latent-dim 2, manifold.png.

    An interrupted run resumes from its last completed epoch when trained again
    with the same --run-dir (the command is printed when training starts); the
    device and precision options may change on resume, the model, data and
    optimisation options may not. One process at a time trains a run.
    """
    from tfvae.cli.main import RESUME_COMMAND
    from tfvae.train import train as train_run

    given = {k: v for k, v in options.items() if ctx.get_parameter_source(k) != ParameterSource.DEFAULT}
    if given.get("channels") is not None:
        given["channels"] = int(given["channels"])

    def resume(run_dir: str) -> str:
        """Named where Ctrl-C or SIGTERM is reported (tfvae.cli.main), and when training starts."""
        ctx.meta[RESUME_COMMAND] = resume_command(ctx, run_dir)
        return ctx.meta[RESUME_COMMAND]

    train_run(
        preset=preset,
        run_dir=run_dir,
        overwrite=overwrite,
        verbose="auto" if verbose is None else verbose,
        log=lambda message: click.echo(message, err=True),
        resume_command=resume,
        data_dir=data_dir,
        **given,
    )


def resume_command(ctx: click.Context, run_dir: str) -> str:
    """The command that resumes this run: the options given on the command line, --run-dir, never --overwrite.

    Options that came from defaults or the environment (TFVAE_DATA_DIR) are
    left out: they come back the same way.
    """
    words = flags.command_line(ctx, leave_out=("run_dir", "overwrite"))
    return shlex.join(words + ["--run-dir", run_dir])
