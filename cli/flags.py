"""Options shared by commands: the model and objective flags of `tfvae train`, which `tfvae bench` takes too.

Each name is a click decorator; applying it to several commands gives each its own option. Defaults come
from `Config()`, help texts are written once here.
"""

from __future__ import annotations

import click
from click.core import ParameterSource

from tfvae.config import ARCHITECTURE_NAMES, FLOW_CONTEXT_NAMES, OBJECTIVE_NAMES, POSTERIOR_NAMES, PRIOR_NAMES, Config
from tfvae.presets import PRESETS

_DEFAULTS = Config()

PRESET = click.option(
    "--preset", type=click.Choice(tuple(PRESETS)), default="classic", show_default=True,
    help="A named set of options (see BENCHMARKS.md); options given explicitly override it.")
LATENT_DIM = click.option("--latent-dim", type=int, default=_DEFAULTS.latent_dim, show_default=True,
                          help="D, the dimension of z (with --latent-layers 2: of z2, the top layer).")
LATENT_LAYERS = click.option(
    "--latent-layers", type=click.IntRange(1, 2), default=_DEFAULTS.latent_layers, show_default=True,
    help="Stochastic layers: 1, p(x|z) p(z); 2, the hierarchical VAE p(x|z1, z2) p(z1|z2) p(z2) with "
         "q(z1|x, z2) q(z2|x) (--prior is then p(z2)'s).")
LATENT_DIM_1 = click.option("--latent-dim-1", type=int, default=None,
                            help="--latent-layers 2: D1, the dimension of z1.  [default: --latent-dim]")
HIDDEN_UNITS = click.option("--hidden-units", type=int, default=_DEFAULTS.hidden_units, show_default=True,
                            help="Width of each hidden layer.")
HIDDEN_LAYERS = click.option("--hidden-layers", type=int, default=_DEFAULTS.hidden_layers, show_default=True,
                             help="Dense hidden layers in the encoder and in the decoder.")
ARCHITECTURE = click.option(
    "--architecture", type=click.Choice(ARCHITECTURE_NAMES), default=_DEFAULTS.architecture, show_default=True,
    help="mlp: dense layers; conv: stride-2 convolutions down, transposed convolutions up.")
FILTERS = click.option("--filters", type=int, default=_DEFAULTS.filters, show_default=True,
                       help="conv: channels of the first convolution, doubled at each level.")
POSTERIOR = click.option(
    "--posterior", type=click.Choice(POSTERIOR_NAMES), default=_DEFAULTS.posterior, show_default=True,
    help="q(z|x): gaussian, a diagonal Gaussian; iaf, an inverse autoregressive flow on top of it.")
FLOW_STEPS = click.option("--flow-steps", type=int, default=_DEFAULTS.flow_steps, show_default=True,
                          help="iaf: autoregressive steps of the flow.")
FLOW_CONTEXT = click.option(
    "--flow-context", type=click.Choice(FLOW_CONTEXT_NAMES), default=_DEFAULTS.flow_context, show_default=True,
    help="iaf: what conditions each step: features, the encoder's last hidden layer; params, its output "
         "(loc and raw scale).")
FLOW_HIDDEN_UNITS = click.option(
    "--flow-hidden-units", type=int, default=None,
    help="iaf: width of each step's autoregressive network.  [default: --hidden-units]")
PRIOR = click.option(
    "--prior", type=click.Choice(PRIOR_NAMES), default=_DEFAULTS.prior, show_default=True,
    help="p(z): normal, N(0, I); mog, a learned mixture of Gaussians; vamp, the VampPrior "
         "(a mixture of the posterior at learned pseudo-inputs).")
PRIOR_COMPONENTS = click.option("--prior-components", type=int, default=_DEFAULTS.prior_components,
                                show_default=True, help="mog, vamp: mixture components (pseudo-inputs for vamp).")
OBJECTIVE = click.option(
    "--objective", type=click.Choice(OBJECTIVE_NAMES), default=_DEFAULTS.objective, show_default=True,
    help="elbo: the evidence lower bound; iwae: the importance-weighted bound with --train-samples K.")
TRAIN_SAMPLES = click.option("--train-samples", type=int, default=_DEFAULTS.train_samples, show_default=True,
                             help="K, samples of z per image in the objective.")
BATCH_SIZE = click.option("--batch-size", type=int, default=_DEFAULTS.batch_size, show_default=True,
                          help="Global batch size.")

# The flags that define the model and its training step, in `tfvae train`'s order.
MODEL_OPTIONS = (PRESET, LATENT_DIM, LATENT_LAYERS, LATENT_DIM_1, HIDDEN_UNITS, HIDDEN_LAYERS, ARCHITECTURE, FILTERS, POSTERIOR, FLOW_STEPS,
                 FLOW_CONTEXT, FLOW_HIDDEN_UNITS, PRIOR, PRIOR_COMPONENTS, OBJECTIVE, TRAIN_SAMPLES, BATCH_SIZE)
MODEL_FIELDS = ("latent_dim", "latent_layers", "latent_dim_1", "hidden_units", "hidden_layers", "architecture", "filters", "posterior", "flow_steps",
                "flow_context", "flow_hidden_units", "prior", "prior_components", "objective", "train_samples", "batch_size")


def model_options(command):
    """Adds MODEL_OPTIONS to a click command (decorators apply bottom-up, so in reverse)."""
    for option in reversed(MODEL_OPTIONS):
        command = option(command)
    return command


def command_line(ctx: click.Context, leave_out=()) -> list:
    """The words of the command as the user gave it: the command path and each option that came from the command
    line (not from a default or the environment), except `leave_out` (parameter names)."""
    words = ctx.command_path.split()
    for param in ctx.command.params:
        if param.name in leave_out or ctx.get_parameter_source(param.name) != ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[param.name]
        long_names = [o for o in param.opts if o.startswith("--")] or param.opts
        if getattr(param, "is_flag", False):
            if value:
                words.append(long_names[0])
            elif param.secondary_opts:
                words.append(param.secondary_opts[0])
        elif getattr(param, "multiple", False):
            for item in value:
                words += [long_names[0], str(item)]
        elif isinstance(value, (tuple, list)):  # a comma-separated list parsed by a callback (--sections a,b)
            words += [long_names[0], ",".join(map(str, value))]
        else:
            words += [long_names[0], str(value)]
    return words

