"""One typed configuration for a tfvae run, saved as `config.json` beside it.

`train` writes the config; `evaluate`, `export` and a resumed `train` read it
back, so a run always knows how its model was built. Nothing is ever evaluated
as code: the JSON is parsed, every field is type-checked, and unknown fields or
an incompatible `version` are refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional

from tfvae.datasets.mnist import BUILTIN_DATASETS  # NumPy only
from tfvae.errors import ConfigError, DataError
from tfvae.models import (  # the registries (no TensorFlow)
    ARCHITECTURES, FLOW_CONTEXTS, LIKELIHOODS, OBJECTIVES, POSTERIORS, PRIORS,
)

__all__ = [
    "Config",
    "CONFIG_VERSION",
    "DATASETS",
    "ARCHITECTURE_NAMES",
    "OBJECTIVE_NAMES",
    "LIKELIHOOD_NAMES",
    "POSTERIOR_NAMES",
    "FLOW_CONTEXT_NAMES",
    "PRIOR_NAMES",
    "STRATEGIES",
    "CONDITIONS",
    "IMAGE_SHAPE",
    "EXECUTION_FIELDS",
    "load_config",
    "save_config",
]

# Bumped when a field changes meaning; runs written by another version are refused.
CONFIG_VERSION = 1

# The built-in datasets' image shape, 28x28 grey-scale; the default of `Config.image_shape`, which
# config.json files written before other shapes existed lack.
IMAGE_SHAPE = (28, 28, 1)

DATASETS = BUILTIN_DATASETS  # the built-in names; also tfds:, folder:, npz: (tfvae.datasets.SOURCES)
ARCHITECTURE_NAMES = tuple(ARCHITECTURES)  # mlp, conv
OBJECTIVE_NAMES = tuple(OBJECTIVES)  # elbo, iwae
LIKELIHOOD_NAMES = tuple(LIKELIHOODS)  # bernoulli, continuous_bernoulli
POSTERIOR_NAMES = tuple(POSTERIORS)  # gaussian, iaf
FLOW_CONTEXT_NAMES = tuple(FLOW_CONTEXTS)  # features, params
PRIOR_NAMES = tuple(PRIORS)  # normal, mog, vamp
DECODER_BIASES = ("zero", "data")  # the decoder output bias at initialisation: 0, or logit(training pixel means)
STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
# What the model is conditioned on: none, p(x) (the models of before); label, p(x|y) with q(z|x,y), p(x|z,y), p(z|y).
CONDITIONS = ("none", "label")
# The conditioning fields, left out of config.json at their defaults: an unconditional run's file is as before.
_CONDITION_DEFAULTS = {"condition": "none", "label_key": "label", "classes": None}


def _execution(default):
    """A field that says how a run is computed (devices, precision, where the files are), not what it is."""
    return dataclasses.field(default=default, metadata={"execution": True})


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that defines a run: the model, the data and the optimisation.

    Example:
    >>> from tfvae.config import Config
    >>> Config(epochs=1, latent_dim=2).latent_dim
    2
    """

    # --- model ---
    architecture: str = "mlp"  # encoder/decoder family, a key of tfvae.models.ARCHITECTURES
    latent_dim: int = 20  # D, the dimension of z (with two latent layers: of z2, the top one)
    # Stochastic layers: 1, the VAE p(x|z) p(z); 2, the hierarchical VAE p(x|z1, z2) p(z1|z2) p(z2) with
    # q(z1|x, z2) q(z2|x) (tfvae.models.hierarchy). Only a two-layer run's config.json has this and the next field.
    latent_layers: int = 1
    latent_dim_1: Optional[int] = None  # two layers: D1, the dimension of z1 (None: latent_dim)
    hidden_units: int = 500  # width of each hidden layer of the encoder and the decoder
    hidden_layers: int = 1  # dense hidden layers in the encoder and in the decoder (conv: after / before the convolutions)
    filters: int = 32  # conv: channels of the first convolution, doubled at each stride-2 level (unused by mlp)
    posterior: str = "gaussian"  # q(z|x), a key of tfvae.models.POSTERIORS: gaussian, or iaf (a flow on top of it)
    flow_steps: int = 2  # iaf: autoregressive steps (unused by gaussian)
    # iaf: what conditions every step, a key of tfvae.models.FLOW_CONTEXTS: features, the encoder's last hidden
    # layer h (Kingma et al. 2016), or params, its output (loc, raw scale), what flow runs written before this
    # field used: their config.json, without it, reads as params (unused by gaussian).
    flow_context: str = "features"
    # iaf: width of each step's autoregressive network (one MADE hidden layer); None: hidden_units, what runs written
    # before this field used (the IAF paper's widest flows: 1920).
    flow_hidden_units: Optional[int] = None
    prior: str = "normal"  # p(z), a key of tfvae.models.PRIORS: normal N(0, I), mog or vamp (learned mixtures)
    prior_components: int = 500  # mog, vamp: mixture components / pseudo-inputs (unused by normal)
    # The decoder's output bias at initialisation: data, the logit of the training images' pixel means, so that an
    # untrained decoder already draws the average image (a start, not a new model: BENCHMARKS.md, "Model
    # quality", note 9); or zero, the seed's start. Only a new run uses it: a resumed run keeps its own.
    decoder_bias: str = "data"

    # --- objective ---
    objective: str = "elbo"  # what training maximises, a key of tfvae.models.OBJECTIVES: elbo or iwae
    train_samples: int = 1  # K, samples of z per image in the objective (iwae: the bound's K; elbo: averaged)
    warmup_epochs: int = 0  # KL warm-up: the rate's weight rises linearly from 0 to 1 over this many epochs

    # --- data ---
    dataset: str = "binarized_mnist"  # one of DATASETS, or tfds:NAME[/CONFIG], folder:PATH, npz:PATH (paths absolute)
    image_key: str = "image"  # tfds: the feature that holds the images
    image_size: Optional[tuple] = None  # (H, W): every image resized with the area filter; None: as stored
    channels: Optional[int] = None  # 1 (grey) or 3 (RGB): every image converted; None: as stored
    image_shape: tuple = IMAGE_SHAPE  # (H, W, C) of the images the model sees, found in the data by `train`
    data_fingerprint: Optional[str] = None  # split sizes and sha256 of the images (None for the built-in datasets)
    likelihood: str = "bernoulli"  # p(x|z), a key of tfvae.models.LIKELIHOODS: bernoulli or continuous_bernoulli
    # Where the local files were read from (absolute); None: TFVAE_DATA_DIR, then TFDS. An execution
    # setting: a run resumed on another machine reads its data from wherever that machine keeps it.
    data_dir: Optional[str] = _execution(None)
    # A folder of the dataset prepared once into uint8 shards on disk (tfvae.datasets.cache), read a batch at a time;
    # None: the images are held in memory. An execution setting: the same images either way, the same numbers.
    data_cache: Optional[str] = _execution(None)
    limit: Optional[int] = None  # train on the first `limit` training images only (smoke runs)
    # none: an unconditional VAE of p(x); label: a conditional VAE of p(x|y) on the data's class labels (Sohn et al.
    # 2015), the label a one-hot input of the encoder and the decoder and, with --prior mog, a component of p(z|y).
    condition: str = "none"
    label_key: str = "label"  # tfds: the feature that holds the class labels (condition label)
    # The class names in label order (strings), found in the data by `train` like image_shape; None: unconditional.
    classes: Optional[tuple] = None

    # --- optimisation ---
    epochs: int = 40  # passes over the training set; may grow when a run is trained further
    batch_size: int = 128  # global batch size, split across replicas
    learning_rate: float = 1e-3  # Adam step size
    seed: int = 0  # seeds weights, shuffling, binarisation and the fixed z of the sample grids
    keep_best: bool = False  # the run's model is the epoch with the best validation objective, not the last

    # --- execution: how the run is computed, not what; free to change when a run resumes ---
    strategy: str = _execution("auto")  # tf.distribute strategy, one of STRATEGIES
    cpu_devices: int = _execution(1)  # split the CPU into this many logical devices (mirrored training without a GPU)
    mixed_precision: bool = _execution(False)  # mixed_float16 on GPU, mixed_bfloat16 on CPU; distributions stay float32
    jit_compile: bool = _execution(False)  # compile the train step with XLA (on CPU its compile time outweighs its gain)
    steps_per_execution: int = _execution(16)  # train steps per call into the graph: less Python per step, same numbers
    deterministic: bool = _execution(True)  # enable TF op determinism, so equal seeds give equal histories
    # Epoch checkpoints kept in checkpoints/, the newest; 0 keeps every epoch (for `tfvae bench --sections quality`).
    keep_checkpoints: int = _execution(3)

    version: int = CONFIG_VERSION  # format of this file

    def __post_init__(self):
        # JSON has lists, not tuples: normalise so that a config read back equals the one written.
        for name in ("image_size", "image_shape", "classes"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        if isinstance(self.image_size, str):  # "32" or "64x48", as on the command line
            from tfvae.datasets import parse_image_size

            try:
                object.__setattr__(self, "image_size", parse_image_size(self.image_size))
            except DataError as e:
                raise ConfigError(str(e)) from None
        for name in ("latent_dim", "hidden_units", "hidden_layers", "filters", "train_samples", "epochs", "batch_size",
                     "cpu_devices", "steps_per_execution", "flow_steps", "prior_components"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{_flag(name)} must be a positive integer, got {value!r}")
        if isinstance(self.keep_checkpoints, bool) or not isinstance(self.keep_checkpoints, int) or self.keep_checkpoints < 0:
            raise ConfigError(f"--keep-checkpoints must be a non-negative integer (0: every epoch), got {self.keep_checkpoints!r}")
        for name in ("limit", "flow_hidden_units", "latent_dim_1"):  # None: not set
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{_flag(name)} must be a positive integer, got {value!r}")
        if isinstance(self.learning_rate, bool) or not isinstance(self.learning_rate, (int, float)) or not self.learning_rate > 0:
            raise ConfigError(f"--learning-rate must be a positive number, got {self.learning_rate!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"--seed must be a non-negative integer, got {self.seed!r}")
        _check_dataset(self.dataset)
        _check_image_fields(self)
        _check_choice("likelihood", self.likelihood, LIKELIHOOD_NAMES)
        if isinstance(self.warmup_epochs, bool) or not isinstance(self.warmup_epochs, int) or self.warmup_epochs < 0:
            raise ConfigError(f"--warmup-epochs must be a non-negative integer, got {self.warmup_epochs!r}")
        _check_choice("architecture", self.architecture, tuple(ARCHITECTURES))
        _check_choice("objective", self.objective, tuple(OBJECTIVES))
        _check_choice("posterior", self.posterior, tuple(POSTERIORS))
        _check_choice("flow_context", self.flow_context, FLOW_CONTEXT_NAMES)
        _check_choice("prior", self.prior, tuple(PRIORS))
        _check_choice("decoder_bias", self.decoder_bias, DECODER_BIASES)
        _check_choice("strategy", self.strategy, STRATEGIES)
        _check_condition(self)
        _check_latent_layers(self)
        for name in ("keep_best", "mixed_precision", "jit_compile", "deterministic"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            raise ConfigError(f"data_dir must be a path or null, got {self.data_dir!r}")
        if self.data_cache is not None and (not isinstance(self.data_cache, str) or not self.data_cache):
            raise ConfigError(f"--data-cache must be a folder, got {self.data_cache!r}")
        if self.version != CONFIG_VERSION:
            raise ConfigError(
                f"config version {self.version!r} is not supported by this tfvae (expects {CONFIG_VERSION}); "
                "retrain with this version or install the tfvae that wrote the run"
            )

    @property
    def closed_form_rate(self) -> bool:
        """The rate is KL(N(loc, scale^2) || N(0, I)) in closed form; otherwise a Monte Carlo estimate."""
        return self.posterior == "gaussian" and self.prior == "normal" and self.latent_layers == 1

    def replace(self, **changes) -> "Config":
        """A copy with `changes` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    @property
    def num_classes(self) -> int:
        """N, the number of classes a conditional model takes; 0 for an unconditional one."""
        return len(self.classes) if self.condition == "label" and self.classes else 0

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict; the conditioning fields only when one differs from its default."""
        values = dataclasses.asdict(self)
        if all(values[name] == default for name, default in _CONDITION_DEFAULTS.items()):
            for name in _CONDITION_DEFAULTS:
                del values[name]
        if values["data_cache"] is None:  # a run in memory writes the config.json it always did
            del values["data_cache"]
        if values["latent_layers"] == 1:  # a one-layer run writes the config.json it always did
            del values["latent_layers"], values["latent_dim_1"]
        return values

    def run_differences(self, other: "Config") -> list:
        """The fields that define the run (model, data, optimisation) on which `other` differs, as
        "--flag old -> new" strings. Execution settings, `epochs` and `version` are not compared."""
        return [
            f"{_LABELS.get(name, _flag(name))} {getattr(self, name)!r} -> {getattr(other, name)!r}"
            for name in _RUN_FIELDS
            if getattr(self, name) != getattr(other, name)
        ]

    def execution_differences(self, other: "Config") -> list:
        """The execution settings on which `other` differs, as "--flag old -> new" strings."""
        return [
            f"{_flag(name)} {getattr(self, name)!r} -> {getattr(other, name)!r}"
            for name in EXECUTION_FIELDS
            if getattr(self, name) != getattr(other, name)
        ]

    @classmethod
    def from_dict(cls, values: dict) -> "Config":
        """Build a config from parsed JSON, refusing unknown or missing-version fields.

        A missing field takes its default, except `flow_context` for a flow posterior: a run written before
        the field existed conditioned its flow on the encoder's params, and its checkpoints hold that flow.
        """
        if not isinstance(values, dict):
            raise ConfigError("config.json must hold a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"config.json has unknown fields {unknown}; was it written by another tfvae version?")
        if "version" not in values:
            raise ConfigError("config.json has no 'version' field; it was not written by tfvae")
        values = {"decoder_bias": "zero", **values}  # runs written before the field existed started at zero
        if "flow_context" not in values and values.get("posterior") == "iaf":
            values = {**values, "flow_context": "params"}  # flows written before the field existed
        return cls(**values)


# How a run is computed: may change when a run resumes, on another machine or with other devices.
EXECUTION_FIELDS = tuple(f.name for f in dataclasses.fields(Config) if f.metadata.get("execution"))
# What a run is: a resumed run must agree on all of these. `epochs` may grow; `version` is checked on load;
# `decoder_bias` only starts a new run (a resumed one keeps its own: tfvae.runs.plan_run).
_RUN_FIELDS = tuple(
    f.name for f in dataclasses.fields(Config)
    if f.name not in EXECUTION_FIELDS + ("epochs", "version", "decoder_bias")
)


# Fields a resumed run left at the default takes from the run itself: `flow_context`, whose default changed after
# runs were written with the old one (features since the option came, params before); `keep_checkpoints`, so that
# resuming a run that keeps every epoch without the flag does not delete its epochs.
FOLLOW_RUN = ("flow_context", "keep_checkpoints")


def save_config(config: Config, path: str) -> None:
    """Write `config` as JSON to `path` atomically (a temporary file, then a rename)."""
    from tfvae.io import atomic_write_text

    atomic_write_text(path, json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")


def load_config(path: str) -> Config:
    """Read and validate a `config.json`, with one clear error for each way it can be wrong."""
    if not os.path.isfile(path):
        raise ConfigError(f"{path} is missing: this is not a tfvae run directory")
    try:
        with open(path, encoding="utf-8") as f:
            values = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} is not valid JSON ({e})") from None
    try:
        return Config.from_dict(values)
    except TypeError as e:
        raise ConfigError(f"{path}: {e}") from None
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


# Fields no option sets directly, named in words when a resumed run differs on them.
_LABELS = {"image_shape": "image shape", "data_fingerprint": "data (sizes and sha256)", "classes": "classes"}


def _check_dataset(dataset) -> None:
    from tfvae.datasets import parse_dataset  # NumPy only

    if not isinstance(dataset, str):
        raise ConfigError(f"--dataset must be a string, got {dataset!r}")
    try:
        parse_dataset(dataset)
    except DataError as e:
        raise ConfigError(str(e)) from None


def _check_image_fields(config) -> None:
    if not isinstance(config.image_key, str) or not config.image_key:
        raise ConfigError(f"--image-key must be a feature name, got {config.image_key!r}")
    if config.image_size is not None and not _positive_ints(config.image_size, 2):
        raise ConfigError(f"--image-size must be H or HxW with positive integers, got {config.image_size!r}")
    if config.channels is not None and config.channels not in (1, 3):
        raise ConfigError(f"--channels must be 1 or 3, got {config.channels!r}")
    if not _positive_ints(config.image_shape, 3) or config.image_shape[-1] not in (1, 3):
        raise ConfigError(f"image_shape must be [H, W, C] with C 1 or 3, got {config.image_shape!r}")
    if config.data_fingerprint is not None and not isinstance(config.data_fingerprint, str):
        raise ConfigError(f"data_fingerprint must be a string or null, got {config.data_fingerprint!r}")


def _check_condition(config) -> None:
    _check_choice("condition", config.condition, CONDITIONS)
    if not isinstance(config.label_key, str) or not config.label_key:
        raise ConfigError(f"--label-key must be a feature name, got {config.label_key!r}")
    classes = config.classes
    if classes is not None and (not isinstance(classes, tuple) or not classes
                                or not all(isinstance(c, str) for c in classes) or len(set(classes)) != len(classes)):
        raise ConfigError(f"classes must be a list of distinct class names (strings), or null, got {classes!r}")
    if config.condition == "none" and classes is not None:
        raise ConfigError("classes go with --condition label; an unconditional run has none")
    if config.condition == "label":
        if config.dataset == "binarized_mnist":
            raise ConfigError("binarized_mnist has no labels in its files, so --condition label cannot use it; "
                              "use --dataset mnist (the same digits, binarized afresh every epoch, with their labels)")
        if config.prior == "vamp":
            raise ConfigError("--condition label takes --prior normal or mog (one component per class), not vamp")


LATENT_LAYERS = (1, 2)


def _check_latent_layers(config) -> None:
    layers = config.latent_layers
    if isinstance(layers, bool) or layers not in LATENT_LAYERS:
        raise ConfigError(f"--latent-layers must be 1 or 2, got {layers!r}")
    if layers == 1:
        if config.latent_dim_1 is not None:
            raise ConfigError("--latent-dim-1 is the dimension of z1 of a two-layer model: give it with --latent-layers 2")
        return
    if config.posterior != "gaussian":
        raise ConfigError("--latent-layers 2 takes --posterior gaussian (its q(z1|x, z2) q(z2|x) is the hierarchy)")
    if config.condition != "none":
        raise ConfigError("--latent-layers 2 is for unconditional models; --condition label takes one latent layer")


def _positive_ints(values, length: int) -> bool:
    return (isinstance(values, tuple) and len(values) == length
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {_flag(name)} {value!r}; choose one of: {', '.join(choices)}")
