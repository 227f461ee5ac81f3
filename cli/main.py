"""The `tfvae` command: a thin shell over the library.

This file is intentionally kept short: each command parses options, builds a
config, calls one library function and prints the result. Known failures
(`TfvaeError`) become one line on stderr and exit code 1; `--debug` shows the
traceback instead. Ctrl-C and SIGTERM exit with 130 and 143.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile

import click

# TensorFlow's C++ start-up chatter hides the output users need; set before any TF import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfvae import __version__, interrupts  # noqa: E402  (light: no TensorFlow)
from tfvae.errors import TfvaeError  # noqa: E402

EXIT_ERROR = 1
EXIT_SIGINT = 128 + signal.SIGINT  # 130
EXIT_SIGTERM = 128 + signal.SIGTERM  # 143


# Commands that need TensorFlow (sample imports it only for SavedModels and runs, never for .tflite).
TENSORFLOW_COMMANDS = ("train", "evaluate", "export")


@contextlib.contextmanager
def _native_stderr_captured():
    """Send fd 2 to a temporary file for the duration; replay it if the block fails.

    TensorFlow 2.21 logs several lines (oneDNN, CUDA, CPU features) from C++
    before absl's logging is initialised, where no environment variable reaches.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow, TFP and tf_keras and initialise the devices without the start-up chatter."""
    try:
        with _native_stderr_captured():
            import tensorflow as tf
            import tensorflow_probability  # noqa: F401
            import tf_keras  # noqa: F401

            tf.config.list_physical_devices()
    except (OSError, ValueError):  # no real fd 2 (an embedding host): import normally
        import tensorflow  # noqa: F401


class TfvaeGroup(click.Group):
    """A click group that reports TfvaeError as one line, unless --debug."""

    def resolve_command(self, ctx, args):
        name, command, rest = super().resolve_command(ctx, args)
        if name in TENSORFLOW_COMMANDS and not {"-h", "--help"} & set(rest):
            import_tensorflow_quietly()
        return name, command, rest

    def invoke(self, ctx):
        debug = ctx.params.get("debug", False)
        interrupts.install()
        try:
            return super().invoke(ctx)
        except click.UsageError as e:  # a bad option of a command: one line, exit 2 as click does
            if debug:
                raise
            where = f"tfvae {e.ctx.info_name} --help" if e.ctx is not None and e.ctx is not ctx else "tfvae --help"
            click.echo(f"Error: {e.format_message()} (see '{where}')", err=True)
            ctx.exit(e.exit_code)
        except TfvaeError as e:
            if debug:
                raise
            click.echo(f"Error: {e}", err=True)
            ctx.exit(EXIT_ERROR)
        except OSError as e:  # the environment, not tfvae: permissions, a full disk, a vanished file
            if debug:
                raise
            where = f": {e.filename}" if e.filename else ""
            click.echo(f"Error: {e.strerror or e}{where} (--debug shows where)", err=True)
            ctx.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            click.echo(f"Interrupted{_after_interruption(ctx)}", err=True)
            ctx.exit(EXIT_SIGINT)
        except interrupts.Terminated:
            click.echo(f"Terminated{_after_interruption(ctx)}", err=True)
            ctx.exit(EXIT_SIGTERM)


# ctx.meta key under which a command names the exact command that resumes its work.
RESUME_COMMAND = "tfvae.resume_command"


def _after_interruption(ctx) -> str:
    resume = ctx.meta.get(RESUME_COMMAND)
    if resume:
        return f": partial work is kept; to resume, run: {resume}"
    return ": nothing was written (outputs are replaced only when complete)."


@click.group(cls=TfvaeGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tfvae")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
def cli(debug):
    """Train a variational autoencoder on binarized MNIST and take its decoder to the edge.

    \b
      tfvae train --epochs 40          train, writing a run directory under runs/
      tfvae evaluate --run-dir DIR     ELBO and importance-sampled log p(x)
      tfvae export --run-dir DIR --tflite
      tfvae sample --model DIR/export/decoder.tflite
      tfvae bench --sections matmul,train,evaluate   speed against this machine's FLOP floors
      tfvae analyze gaps --run-dir DIR   where a trained run's gap goes (also: analyze quality)

    Local data: --data-dir or TFVAE_DATA_DIR (a folder laid out like shared/data);
    otherwise tensorflow-datasets downloads it.
    """


# The command modules import nothing heavy: each loads TensorFlow (if at all) inside its function.
from tfvae.cli.analyze import analyze  # noqa: E402
from tfvae.cli.bench import bench  # noqa: E402
from tfvae.cli.evaluate import evaluate  # noqa: E402
from tfvae.cli.export import export  # noqa: E402
from tfvae.cli.sample import sample  # noqa: E402
from tfvae.cli.train import train  # noqa: E402

for _command in (train, evaluate, export, sample, bench, analyze):
    cli.add_command(_command)


def main():
    cli(prog_name="tfvae")


if __name__ == "__main__":
    main()
