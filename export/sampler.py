"""Ancestral sampling from a tfvae decoder: z ~ p(z) from a seeded numpy generator, then p(x|z).

This is the on-device path: with a `.tflite` decoder it needs numpy, the LiteRT
interpreter and Pillow, and never imports TensorFlow or TFP (STYLE.md,
principle 10). SavedModel directories and run directories are read with
TensorFlow, imported only when such a path is given.

    z ~ p(z)                            (N, D)          the prior: N(0, I_D), or the mixture in prior.npz
                                                        beside the decoder (tfvae.mixture), seeded;
                                                        --temperature T scales every component's scale
    p = sigmoid(decoder(z))             (N, H, W, C)    the Bernoulli means
    x ~ Bernoulli(p)                    (N, H, W, C)    mode "bernoulli"; mode "mean" shows p itself
    E[x|z] = decoder(z)["mean"]         (N, H, W, C)    a continuous-Bernoulli decoder: mode "mean" shows its mean

Grids are grey (C = 1) or RGB (C = 3), of any image size.

A conditional decoder (`tfvae train --condition label`) also takes each image's label y: z ~ p(z|y) is
component y of a class-conditional prior.npz, else the prior itself, and p(x|z, y) decodes it. With a
label every image is of that class; without one the grid has one row per class.

Example:
>>> decoder = open_decoder("runs/x/export/decoder.tflite")  # doctest: +SKIP
>>> samples = sample(decoder, 64, seed=0, mode="bernoulli")  # doctest: +SKIP
>>> write_samples(samples, "samples.png", npy_path="samples.npy")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from tfvae import plots
from tfvae.errors import ConfigError, ModelFileError, TfvaeError
from tfvae.export import layout
from tfvae.io import atomic_path
from tfvae.mixture import Mixture, PriorFileError

__all__ = [
    "MODES",
    "LATENTS",
    "LabelError",
    "resolve_label",
    "RUNTIMES",
    "Samples",
    "open_decoder",
    "open_prior",
    "prior_latents",
    "interpolation_latents",
    "manifold_grid",
    "sample",
    "write_png",
    "write_samples",
]

MODES = ("mean", "bernoulli")  # show p(x|z)'s means, or draw x ~ Bernoulli(p)
LATENTS = ("prior", "interpolate", "manifold")  # where the z come from
_DECODE_BATCH = 1024  # latents per decoder call: bounds memory for large N
# What runs a .tflite decoder: LiteRT's interpreter, or TFLite for Microcontrollers' (tfvae.export.micro,
# pip install "tfvae[micro]"), which takes a batch-1 decoder of builtin ops such as decoder_full_int8.tflite.
RUNTIMES = ("litert", "micro")

# Files that make a directory a SavedModel, or a tfvae run.
_SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
_RUN_CONFIG = "config.json"


@dataclasses.dataclass(frozen=True)
class Samples:
    """What `sample` drew, in the order of the grid (row by row)."""

    z: np.ndarray  # (N, D) float32, the latents decoded
    probs: np.ndarray  # (N, H, W, C) float32, sigmoid(logits): the Bernoulli means p(x = 1 | z)
    images: np.ndarray  # (N, H, W, C) float32, what is shown: the mean E[x|z] (mean) or x in {0, 1} (bernoulli)
    columns: int  # images per row of the grid
    mode: str  # one of MODES
    latents: str  # one of LATENTS
    labels: np.ndarray | None = None  # (N,) int32 class of each image of a conditional decoder; None: unconditional


class LabelError(ConfigError):
    """A --label that the decoder cannot take (not one of its classes, or an unconditional decoder): a usage error."""


def resolve_label(value, decoder) -> int | None:
    """The class index of `value` (an index, or a class name from the export's manifest) for `decoder`; None stays None.

    Raises:
      LabelError: a label of an unconditional decoder, or one outside its classes, in one line.
    """
    if value is None:
        return None
    classes = getattr(decoder, "classes", None)
    if classes is None:
        raise LabelError(f"--label {value}: this decoder is not conditional (trained without --condition label); "
                         "leave --label out")
    text = str(value).strip()
    if text in classes:
        return classes.index(text)
    try:
        index = int(text)
    except ValueError:
        index = None
    if index is not None and 0 <= index and (not classes or index < len(classes)):
        return index
    shown = ", ".join(classes[:12]) + (", ..." if len(classes) > 12 else "")
    choices = f"an index from 0 to {len(classes) - 1} or a name ({shown})" if classes else "a non-negative index"
    raise LabelError(f"--label {value!r} is not a class of this decoder: choose {choices}")


def open_decoder(path: str, num_threads: int | None = None, runtime: str = "litert"):
    """The decoder at `path`: a `.tflite` file, a SavedModel directory or a run directory.

    Every decoder has `latent_dim`, `image_shape` and
    `decode(z) -> {"probs", "logits"}` on NumPy arrays. Only the `.tflite`
    path is free of TensorFlow.

    Args:
      path: a decoder.tflite (any TFLite file with a tfvae `decode`
        signature), a SavedModel directory written by `tfvae export`, or a
        tfvae run directory (its model: the best validation epoch with keep_best,
        else the newest checkpoint).
      num_threads: interpreter threads for a `.tflite` file; None lets LiteRT choose.
      runtime: "litert", or "micro": the `.tflite` file runs under the TFLM interpreter (one image per invoke).

    Raises:
      ModelFileError: the path is missing or is not a tfvae decoder; with "micro", a decoder TFLM cannot run.
      RunError: a run directory without a usable checkpoint.
      TfvaeError: "micro" without the tflite-micro package (how to install it).
    """
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown --runtime {runtime!r}; choose one of: {', '.join(RUNTIMES)}")
    if not os.path.exists(path):
        raise ModelFileError(f"--model {path} does not exist")
    if runtime == "micro":
        if not os.path.isfile(path):
            raise ModelFileError(
                f"--runtime micro runs a .tflite decoder file and {path} is a directory: pass "
                f"{os.path.join(path, layout.QUANTIZED_DECODER_FILES['full_int8'])} (tfvae export --quantize full_int8)"
            )
        from tfvae.export.micro import MicroDecoder

        return MicroDecoder(path)
    if os.path.isfile(path):
        from tfvae.export.litert import TFLiteDecoder

        return TFLiteDecoder(path, num_threads=num_threads)
    entries = set(os.listdir(path))
    if entries & set(_SAVED_MODEL_FILES):
        _require_tensorflow(path, "a SavedModel directory")
        from tfvae.export.savedmodel import SavedModelDecoder

        return SavedModelDecoder(path)
    if _RUN_CONFIG in entries:
        _require_tensorflow(path, "a run directory")
        from tfvae.export.savedmodel import KerasDecoder
        from tfvae.runs import load_vae

        config, vae = load_vae(path)
        vae.run_config = config  # a conditional run's class names (config.classes)
        return KerasDecoder(vae, source=path)
    if layout.SAVED_MODEL_DIR in entries or layout.DECODER_FILE in entries:
        raise ModelFileError(
            f"{path} is an export directory: pass {os.path.join(path, layout.DECODER_FILE)} "
            f"or {os.path.join(path, layout.SAVED_MODEL_DIR)}"
        )
    raise ModelFileError(f"{path} is neither a .tflite decoder, a SavedModel directory nor a tfvae run directory")


def _require_tensorflow(path: str, what: str) -> None:
    """One clear error on an edge install, where only .tflite decoders can be read."""
    try:
        import tensorflow  # noqa: F401  (imported next anyway, by the SavedModel or run reader)
    except ImportError:
        raise TfvaeError(
            f"{path} is {what}, which needs TensorFlow (pip install tfvae); "
            f"without it, pass a .tflite decoder such as export/{layout.DECODER_FILE}"
        ) from None


def open_prior(path: str, decoder) -> Mixture:
    """p(z) for the decoder at `path`: the `prior.npz` of its export, else N(0, I).

    A .tflite file or a SavedModel directory looks for prior.npz in the export
    directory that holds it; a run directory asks its model. An export without
    prior.npz (written before tfvae exported priors) samples from N(0, I).

    Raises:
      ModelFileError: a prior.npz that cannot be used (missing arrays, wrong
        shapes, a non-positive scale, pickled objects, another D), one line.
    """
    vae = getattr(decoder, "vae", None)
    if vae is not None:  # a run directory's Keras model (with TensorFlow, which the run needs anyway)
        from tfvae.export.savedmodel import prior_of

        return prior_of(vae)
    directory = os.path.dirname(os.path.abspath(path))
    prior_path = os.path.join(directory, layout.PRIOR_FILE)
    if not os.path.isfile(prior_path):
        return Mixture.standard_normal(decoder.latent_dim)
    try:
        prior = Mixture.load(prior_path, latent_dim=decoder.latent_dim)
    except PriorFileError as e:
        raise ModelFileError(str(e)) from None
    classes = getattr(decoder, "classes", None)
    if prior.class_conditional and classes and prior.components != len(classes):
        raise ModelFileError(f"{prior_path} has {prior.components} class components; the decoder has "
                             f"{len(classes)} classes")
    return prior


def prior_latents(rng: np.random.Generator, n: int, latent_dim: int, prior: Mixture | None = None,
                  temperature: float = 1.0) -> np.ndarray:
    """z ~ p(z) (N(0, I_D) unless `prior` is given), each scale times `temperature`: (n, D) float32."""
    return (prior or Mixture.standard_normal(latent_dim)).sample(rng, n, temperature)


def interpolation_latents(rng: np.random.Generator, n: int, latent_dim: int, prior: Mixture | None = None,
                          temperature: float = 1.0) -> np.ndarray:
    """n points on the straight line from z_0 to z_1, both drawn from p(z): (n, D) float32, z_0 first."""
    z_0, z_1 = (prior or Mixture.standard_normal(latent_dim)).sample(rng, 2, temperature, dtype=np.float64)
    t = np.linspace(0.0, 1.0, n)[:, None]  # (n, 1)
    return ((1.0 - t) * z_0 + t * z_1).astype(np.float32)


def manifold_grid(n: int, latent_dim: int) -> np.ndarray:
    """The sqrt(n) x sqrt(n) grid of z at the normal's percent-point function (Kingma & Welling, Fig. 4b).

    Raises:
      ConfigError: the latent space is not 2-D, or n is not a square.
    """
    if latent_dim != 2:
        raise ConfigError(f"--manifold needs a decoder with a 2-D latent space; this one has D = {latent_dim}")
    side = math.isqrt(n)
    if side * side != n:
        raise ConfigError(f"--manifold draws a square grid: --n must be a square number (e.g. {side * side} or {(side + 1) ** 2}), got {n}")
    return plots.manifold_latents(side)


def sample(decoder, n: int = 64, *, seed: int = 0, mode: str = "mean", latents: str = "prior",
           prior: Mixture | None = None, temperature: float = 1.0, channels: int | None = None,
           label: int | None = None) -> Samples:
    """Decode n latents and return the grid's images; the same seed gives the same output.

    A conditional decoder (`decoder.classes` not None) draws each image of class y from z ~ p(z|y): with
    `label`, n images of that class; without, one row per class of ceil(n / classes) images each.

    Args:
      decoder: anything `open_decoder` returns.
      n: how many images.
      seed: seeds the numpy generator that draws z, then x ~ Bernoulli(p).
      mode: "mean" shows p(x|z)'s means; "bernoulli" draws x ~ Bernoulli(p).
      latents: "prior" draws z ~ p(z); "interpolate" walks a straight line
        between two such z; "manifold" decodes the percent-point grid of a
        2-D latent space (of N(0, I)).
      prior: p(z) as a `Mixture` (see `open_prior`); None is N(0, I).
      temperature: scales every component's scale (1: the prior itself; below 1: nearer its modes).
      channels: None, or the channels (1 grey, 3 RGB) the caller expects; refused unless the decoder's.
      label: a conditional decoder's class index (`resolve_label`); None: one row per class.

    Raises:
      ConfigError: a bad n, mode or latents, --manifold without a 2-D latent space, --mode bernoulli
        with a continuous-Bernoulli decoder, or `channels` other than the decoder's.
      LabelError: a label for an unconditional decoder or outside the classes; --manifold of a conditional
        decoder without a label.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"--n must be a positive integer, got {n!r}")
    if mode not in MODES:
        raise ConfigError(f"unknown --mode {mode!r}; choose one of: {', '.join(MODES)}")
    if latents not in LATENTS:
        raise ConfigError(f"unknown latents {latents!r}; choose one of: {', '.join(LATENTS)}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < math.inf:
        raise ConfigError(f"--temperature must be a positive number, got {temperature!r}")
    height, width, model_channels = decoder.image_shape
    if channels is not None and channels != model_channels:
        raise ConfigError(
            f"--channels {channels}: the decoder was exported for {model_channels}-channel images "
            f"({height}x{width}x{model_channels}); leave --channels out or pass {model_channels}"
        )
    continuous = getattr(decoder, "likelihood", "bernoulli") != "bernoulli"
    if continuous and mode == "bernoulli":
        raise ConfigError("--mode bernoulli draws binary pixels, but this decoder is a continuous Bernoulli "
                          "on grey levels: use --mode mean, which shows its mean E[x|z]")
    rng = np.random.default_rng(seed)  # draws z first, then (mode "bernoulli") the pixels
    classes = getattr(decoder, "classes", None)
    if classes is not None:
        z, labels, columns = _conditional_latents(rng, classes, n, decoder.latent_dim, latents, prior, temperature,
                                                  label)
        n = len(z)
    elif label is not None:
        raise LabelError(f"--label {label}: this decoder is not conditional (trained without --condition label); "
                         "leave --label out")
    else:
        z, columns = _latents(rng, n, decoder.latent_dim, latents, prior, temperature)
        labels = None

    def decode(rows):  # one call of at most _DECODE_BATCH rows
        return decoder.decode(z[rows]) if labels is None else decoder.decode(z[rows], labels[rows])

    outputs = [decode(slice(i, i + _DECODE_BATCH)) for i in range(0, n, _DECODE_BATCH)]
    probs = np.concatenate([o[layout.PROBS] for o in outputs], axis=0)
    if mode == "bernoulli":
        images = (rng.random(probs.shape) < probs).astype(np.float32)  # x ~ Bernoulli(p), pixel by pixel
    elif continuous:
        images = np.concatenate([o[layout.MEAN] for o in outputs], axis=0)  # E[x|z], computed in the decoder
    else:
        images = probs
    return Samples(z=z, probs=probs, images=images, columns=columns, mode=mode, latents=latents, labels=labels)


def _latents(rng, n: int, latent_dim: int, latents: str, prior: Mixture | None, temperature: float) -> tuple:
    """(z (n, D), columns of the grid) of an unconditional decoder."""
    if latents == "manifold":
        return manifold_grid(n, latent_dim), math.isqrt(n)
    if latents == "interpolate":
        return interpolation_latents(rng, n, latent_dim, prior, temperature), math.ceil(math.sqrt(n))
    return prior_latents(rng, n, latent_dim, prior, temperature), math.ceil(math.sqrt(n))


def _conditional_latents(rng, classes, n: int, latent_dim: int, latents: str, prior: Mixture | None,
                         temperature: float, label: int | None) -> tuple:
    """(z (M, D), labels (M,) int32, columns) of a conditional decoder, z ~ p(z|y) for each image's label y.

    With `label`: M = n images of that class, laid out as an unconditional grid. Without: one row per class,
    ceil(n / classes) images each (interpolations: each row a line between two z ~ p(z|y) of its class).
    """
    prior = prior or Mixture.standard_normal(latent_dim)
    if label is not None:
        if classes and not 0 <= label < len(classes):
            raise LabelError(f"--label {label} is not a class of this decoder: choose 0 to {len(classes) - 1}")
        labels = np.full(n, label, dtype=np.int32)
        if latents == "manifold":
            return manifold_grid(n, latent_dim), labels, math.isqrt(n)
        if latents == "interpolate":
            ends = prior.sample_given(rng, labels[:2], temperature, dtype=np.float64)  # z_0, z_1 ~ p(z|y)
            t = np.linspace(0.0, 1.0, n)[:, None]  # (n, 1)
            return ((1.0 - t) * ends[0] + t * ends[-1]).astype(np.float32), labels, math.ceil(math.sqrt(n))
        return prior.sample_given(rng, labels, temperature), labels, math.ceil(math.sqrt(n))
    if not classes:
        raise LabelError("this conditional decoder's classes are unknown (no manifest.json beside it): pass --label")
    if latents == "manifold":
        raise LabelError("--manifold of a conditional decoder shows one class: add --label (an index or a class name)")
    per_class = math.ceil(n / len(classes))
    labels = np.repeat(np.arange(len(classes), dtype=np.int32), per_class)  # row k: class k
    if latents == "interpolate":
        ends = prior.sample_given(rng, np.repeat(np.arange(len(classes)), 2), temperature, dtype=np.float64)
        t = np.linspace(0.0, 1.0, per_class)[None, :, None]  # (1, per_class, 1)
        z = (1.0 - t) * ends[0::2, None] + t * ends[1::2, None]  # (classes, per_class, D)
        return z.reshape(-1, latent_dim).astype(np.float32), labels, per_class
    return prior.sample_given(rng, labels, temperature), labels, per_class


def write_png(images: np.ndarray, path: str, columns: int | None = None) -> None:
    """A grid of (N, H, W[, 1]) grey or (N, H, W, 3) RGB images in [0, 1] as an 8-bit PNG (1 = white), written atomically."""
    from PIL import Image

    canvas = plots.tile(images, columns)  # (rows * H, columns * W[, 3]) in [0, 1]
    pixels = np.round(np.clip(canvas, 0.0, 1.0) * 255.0).astype(np.uint8)
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")  # uint8 (H, W) is grey, mode "L"; (H, W, 3) is "RGB"


def write_samples(samples: Samples, png_path: str, npy_path: str | None = None) -> None:
    """The PNG grid of `samples.images`, and with `npy_path` the raw (N, H, W, C) float32 array."""
    write_png(samples.images, png_path, samples.columns)
    if npy_path:
        with atomic_path(npy_path, suffix=".npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, samples.images)
