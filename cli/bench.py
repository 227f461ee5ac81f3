"""`tfvae bench`: options -> a Config and each section's options -> tfvae.bench.run -> a markdown table, or JSON."""

from __future__ import annotations

import dataclasses
import json
import shlex

import click
from click.core import ParameterSource

# No TensorFlow: each section imports it in its own process.
from tfvae.bench import DEFAULT_SECTIONS, MODELS, SECTIONS, VARIANTS
from tfvae.cli import flags
from tfvae.errors import ConfigError


def default_of(section: str, name: str):
    """The library's default of a section's option, shown in --help."""
    return next(f.default for f in dataclasses.fields(SECTIONS[section].options) if f.name == name)


def _names(choices):
    """A callback for a comma-separated list of `choices`: a tuple, or a usage error naming the choices."""

    def parse(ctx, param, value):
        names = tuple(v.strip() for v in value.split(",") if v.strip())
        unknown = [n for n in names if n not in choices]
        if unknown or not names:
            raise click.BadParameter(f"{(unknown or [value])[0]!r} is not one of {', '.join(map(repr, choices))}.")
        return names

    return parse


def _numbers(value: str, kind, flag: str) -> tuple:
    """A comma-separated list of numbers of `kind`, or a usage error."""
    try:
        numbers = tuple(kind(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of {kind.__name__}s", param_hint=flag) from None
    if not numbers:
        raise click.BadParameter("give at least one", param_hint=flag)
    if kind is int and min(numbers) < 1:
        raise click.BadParameter(f"{flag} must be positive integers, got {value!r}", param_hint=flag)
    return numbers


# The options of the analyses (gaps, quality), which `tfvae analyze` takes too, and of the report.
REFINE_STEPS = click.option(
    "--refine-steps", type=click.IntRange(0), default=default_of("gaps", "refine_steps"), show_default=True,
    help="gaps (needs --run-dir): Adam steps on each image's own posterior, for the amortisation and "
         "approximation gaps (tfvae.analysis.gaps).")
THRESHOLDS = click.option(
    "--thresholds", default=",".join(map(str, default_of("quality", "thresholds"))), show_default=True,
    callback=lambda ctx, param, value: _numbers(value, float, "--thresholds"),
    help="quality (needs --run-dir): comma-separated test log p(x) levels, in nats (write --thresholds=-95,-90).")
GAP_EPOCHS = click.option(
    "--gap-epochs", default=",".join(map(str, default_of("quality", "gap_epochs"))), show_default=True,
    callback=lambda ctx, param, value: _numbers(value, int, "--gap-epochs"),
    help="quality: epochs whose gap log p(x) - ELBO is measured (on --eval-images, with -k), besides the "
         "run's model; interpolated in between.")
EVALUATION = click.option(
    "--evaluation", type=click.Path(dir_okay=False, exists=True), default=None,
    help="quality: the output of `tfvae evaluate --run-dir RUN --json` (all test images), which scales "
         "the gap measured on --eval-images to the full test set.")
DATA_DIR = click.option("--data-dir", type=click.Path(file_okay=False), envvar="TFVAE_DATA_DIR",
                        help="Local data laid out like shared/data [env: TFVAE_DATA_DIR].")
AS_JSON = click.option("--json", "as_json", is_flag=True, help="Print one JSON object (every figure) instead of the table.")
OUT = click.option("--out", type=click.Path(dir_okay=False), default=None,
                   help="Also write the JSON report here, after every section (atomically).")
VERBOSE = click.option("--verbose", is_flag=True, help="Show the sections' own stderr and progress.")


def quality_options(command):
    """Adds --thresholds, --gap-epochs and --evaluation (the quality analysis) to a click command."""
    for option in reversed((THRESHOLDS, GAP_EPOCHS, EVALUATION)):
        command = option(command)
    return command


def report_options(command):
    """Adds --data-dir, --json, --out and --verbose to a click command."""
    for option in reversed((DATA_DIR, AS_JSON, OUT, VERBOSE)):
        command = option(command)
    return command


# Analyses, not benchmarks: `tfvae analyze NAME` is their home; `tfvae bench --sections NAME` still runs them.
ANALYSES = ("gaps", "quality")


def measure(ctx, config, sections, *, run_dir, as_json, out, verbose, **options) -> None:
    """Each section's options from the flags, `tfvae.bench.run`, the report printed; exit 1 if a section failed."""
    from tfvae.bench import options_for, run, table

    try:
        chosen = options_for(sections, config=config, run_dir=run_dir, progress=verbose, **options)
    except ConfigError as e:
        raise click.UsageError(str(e)) from None
    results = run(config, chosen, run_dir=run_dir, command=shlex.join(flags.command_line(ctx)), out=out,
                  log=lambda line: click.echo(line, err=True), verbose=verbose)
    click.echo(json.dumps(results, indent=2) if as_json else table(results))
    if results["failed"]:
        ctx.exit(1)


@click.command()
@click.option("--run-dir", type=click.Path(file_okay=False), default=None,
              help="A trained run: its config is the model measured, its weights are evaluated. "
                   "Without it, the model flags below describe an untrained model (same FLOPs).")
@flags.model_options
@click.option("--models", default=None, callback=lambda ctx, param, value: value and _names(tuple(MODELS))(ctx, param, value),
              help=f"Comma-separated members of the model family, each measured (untrained) with every section, into "
                   f"one report: {', '.join(MODELS)} (BENCHMARKS.md). Model flags given explicitly apply to each.")
@click.option("--sections", default=",".join(DEFAULT_SECTIONS), show_default=True, callback=_names(tuple(SECTIONS)),
              help=f"Comma-separated, run in that order, each in its own process: {', '.join(SECTIONS)}.")
@click.option("--variants", default=",".join(default_of("train", "variants")), show_default=True,
              callback=_names(tuple(VARIANTS)), help="train: the levers measured, each in its own process.")
@click.option("--epochs", type=click.IntRange(1), default=default_of("train", "epochs"), show_default=True,
              help="train, strategies: epochs per variant (the first is not timed).")
@click.option("--limit", type=click.IntRange(1), default=None, help="train, profile: the first N training images only.")
@click.option("--eval-images", type=click.IntRange(1), default=default_of("evaluate", "eval_images"), show_default=True,
              help="evaluate, gaps, quality (its gaps): the first N test images.")
@click.option("--importance-samples", "-k", type=click.IntRange(1), default=default_of("evaluate", "importance_samples"),
              show_default=True, help="evaluate, gaps, quality (its gaps): K, samples of z per image.")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=default_of("matmul", "seconds"),
              show_default=True, help="matmul, conv: time per throughput measurement.")
@click.option("--export-dir", type=click.Path(file_okay=False), default=None,
              help="sample: an export written by `tfvae export` (needed by the sample section).")
@click.option("--edge-tfvae", type=click.Path(dir_okay=False), default=None,
              help="sample: the `tfvae` of an environment without TensorFlow, for the wall time of `tfvae sample`.")
@click.option("--runs", type=click.IntRange(1), default=default_of("sample", "runs"), show_default=True,
              help="sample: runs of `tfvae sample` (median).")
@click.option("--repeats", type=click.IntRange(1), default=default_of("sample", "repeats"), show_default=True,
              help="sample: decoder calls per latency (median).")
@REFINE_STEPS
@quality_options
@report_options
@click.pass_context
def bench(ctx, run_dir, preset, models, sections, as_json, out, verbose, **options):
    """Measure training, evaluation and sampling of a model against this machine's FLOP floors.

    FLOPs come from the built model's layers (tfvae.flops); the floor of a
    workload is its products' FLOPs over the throughput measured here at each
    product's shape (matmul, conv). Progress goes to stderr; a section that
    fails is reported and the exit code is 1.

    \b
      tfvae bench --sections matmul,train,evaluate --epochs 4
      tfvae bench --preset best --sections matmul,conv,train,evaluate --json
      tfvae bench --models classic,conv,best --variants spe16,bf16 --eval-images 1000 --out bench.json
      tfvae bench --run-dir runs/default40 --sections evaluate,matmul
      tfvae bench --sections sample --export-dir runs/default40/export --edge-tfvae edge/bin/tfvae
    """
    from tfvae.bench import models_table, options_for, run_models
    from tfvae.presets import expand_preset

    model = {k: options.pop(k) for k in flags.MODEL_FIELDS}
    given = [k for k in ("preset", *flags.MODEL_FIELDS) if ctx.get_parameter_source(k) != ParameterSource.DEFAULT]
    explicit = {k: v for k, v in model.items() if k in given}
    if models:
        if run_dir or "preset" in given:
            raise click.UsageError(f"--models names the models measured; drop {'--run-dir' if run_dir else '--preset'}")
        single = [s for s in sections if s in ("sample", "gaps", "quality")]
        if single:
            raise click.UsageError(f"the {single[0]} section measures one export or run; drop --models")
        try:
            plans = {}
            for name in models:
                config = expand_preset(name, **explicit)
                plans[name] = (config, options_for(sections, config=config, **options))
        except ConfigError as e:
            raise click.UsageError(str(e)) from None
        report = run_models(plans, command=shlex.join(flags.command_line(ctx)), out=out,
                            log=lambda line: click.echo(line, err=True), verbose=verbose)
        click.echo(json.dumps(report, indent=2) if as_json else models_table(report))
        ctx.exit(1 if report["failed"] else 0)
    if run_dir:
        if given:
            raise click.UsageError(f"--run-dir takes the model from the run; drop --{given[0].replace('_', '-')}")
        from tfvae.runs import open_run

        config = open_run(run_dir)
    else:
        config = expand_preset(preset, **explicit)
    for name in (s for s in sections if s in ANALYSES):
        click.echo(f"bench: {name} is an analysis of a trained run; its home is now `tfvae analyze {name}`", err=True)
    measure(ctx, config, sections, run_dir=run_dir, as_json=as_json, out=out, verbose=verbose, **options)
