"""`export_model`: a VAE -> SavedModel, TFLite files and manifest.json, written all or nothing; `export_run`: a run's.

Everything is written into a staging directory beside OUT and published in one
step (`tfvae.io.atomic_directory`), so a crash never leaves half an export and
OUT always holds either the old export or the new one; an existing export is
replaced (with `overwrite`) only once the new one is complete.

    SavedModel      VAESignatures: decode z -> probs, logits; encode x -> loc, scale
    TFLite          converted from the SavedModel's signatures, builtin ops only (no Flex delegate)
    quantized       decoder_float16.tflite (float16 weights), decoder_int8.tflite (dynamic-range int8 weights)
                    decoder_full_int8.tflite (int8 weights and activations, batch 1: tfvae.export.quantize)
    micro/          with `micro`: decoder_full_int8.tflite as C for TFLite for Microcontrollers (tfvae.export.micro)
    manifest.json   shapes; each file's size and sha256; each file's parity with the Keras model on a
                    fixed batch of z; each TFLite decoder's change in ELBO and log p(x) on images, when given
    web/            with `web`: a static page that samples the exported prior and decoder in the browser (tfvae.export.web)

Example:
>>> manifest = export_run("runs/x", tflite=True, quantize=("float16", "int8"))  # doctest: +SKIP
>>> manifest["parity"]["decoder.tflite"]["max_abs_diff_probs"] < 1e-5  # doctest: +SKIP
True
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
import types
from typing import Optional

import numpy as np
import tensorflow as tf

from tfvae import __version__
from tfvae.errors import ConfigError, ModelFileError, RunError, WriteError
from tfvae.export import layout
from tfvae.export.layout import DEFAULT_EVAL_IMAGES, DEFAULT_IMPORTANCE_SAMPLES, EVAL_SPLIT, EVAL_SUBSET_SEED
from tfvae.export.litert import TFLiteDecoder, TFLiteEncoder
from tfvae.export.convert import convert
from tfvae.export.quantize import convert_full_int8, describe_full_int8
from tfvae.export.savedmodel import KerasDecoder, SavedModelDecoder, class_names, prior_of, save_signatures
from tfvae.export.web import parse_web_model, write_site
from tfvae.io import atomic_directory, atomic_write_text, file_sha256
from tfvae.mixture import Mixture
from tfvae.models import LIKELIHOODS
from tfvae.runs import load_vae

__all__ = [
    "DEFAULT_EVAL_IMAGES",
    "DEFAULT_IMPORTANCE_SAMPLES",
    "PARITY_LATENTS",
    "parse_quantize",
    "convert_signature",
    "export_model",
    "export_file",
    "export_run",
]

PARITY_LATENTS = 64  # z ~ N(0, I) in the fixed parity batch, one sample grid
PARITY_SEED = 0  # seeds that batch: every export of every model is checked on the same z for a given D
PYTHON_SOURCE = "python"  # manifest "source" of a model handed over in memory


def parse_quantize(value) -> tuple:
    """'none,float16,int8' (a string or a sequence of names) -> the quantized decoders to write, e.g. ('float16', 'int8').

    Raises:
      ConfigError: an unknown name.
    """
    names = value.split(",") if isinstance(value, str) else list(value or ())
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n != "none" and n not in layout.QUANTIZATIONS]
    if unknown:
        raise ConfigError(
            f"unknown --quantize {', '.join(unknown)}; choose from: none, {', '.join(layout.QUANTIZATIONS)}"
        )
    return tuple(q for q in layout.QUANTIZATIONS if q in names)


def convert_signature(saved_model_dir: str, key, quantization: str = "float32") -> bytes:
    """The TFLite flatbuffer of one signature (or several) of a SavedModel; builtin ops only.

    Each signature keeps its key and its input and output names, and the batch
    dimension stays dynamic (-1 in `shape_signature`).

    Args:
      saved_model_dir: a SavedModel written by `save_signatures`.
      key: "decode" or "encode", or a list of keys (["encode", "encode_sample"]).
      quantization: "float32"; "float16" (weights stored as float16); or
        "int8" (dynamic-range: int8 weights, float activations, no
        representative dataset needed).
    """
    keys = [key] if isinstance(key, str) else list(key)
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=keys)
    # Builtin ops only: the plain LiteRT interpreter has no Flex (Select TF ops) delegate.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantization != "float32":
        raise ConfigError(f"unknown quantization {quantization!r}")
    return convert(converter)  # an op outside the builtins: one line naming it and its layer


def export_model(
    vae,
    out: str,
    *,
    tflite: bool = False,
    quantize=(),
    overwrite: bool = False,
    web: bool = False,
    web_model: Optional[str] = None,
    micro: bool = False,
    images=None,
    labels=None,
    images_name: str = "given",
    eval_images: Optional[int] = None,
    importance_samples: int = DEFAULT_IMPORTANCE_SAMPLES,
    source: Optional[str] = None,
    log=print,
) -> dict:
    """Export a VAE; return the manifest (also written to OUT/manifest.json).

    Args:
      vae: a built `tfvae.VAE`. One loaded from a run directory (`tfvae.load_model`) carries
        `vae.run_config`, and its manifest names the run (`run_dir`).
      out: the export directory.
      tflite: also write decoder.tflite and encoder.tflite.
      quantize: quantized decoders to write too, a subset of ("float16", "int8", "full_int8"); needs `tflite`.
      overwrite: replace an existing export in `out` (only once the new one is complete).
      web: also write OUT/web, a static page that samples from the decoder in the browser.
      web_model: the decoder that page starts with, one of layout.WEB_MODELS; None: float32. Needs `web`.
      micro: also write OUT/micro, decoder_full_int8.tflite as C for TFLite for Microcontrollers (tfvae.export.micro);
        needs "full_int8" in `quantize`.
      images: (N, H, W, C) images in [0, 1] (binary for a Bernoulli model) on which each quantized decoder's
        change in ELBO and log p(x) is measured; None: the manifest says the cost was not measured.
      labels: a conditional model's labels of `images` (N,) int, for the cost in log p(x|y); without them a
        conditional model's cost is not measured (the manifest says so).
      images_name: what `images` are, for the manifest ("binarized_mnist test").
      eval_images: measure on this many of `images`, drawn at random with a fixed seed; None: all of them.
      importance_samples: K, samples of z per image for the log-likelihood estimate.
      source: where `vae` came from (a .keras file, a run directory), for the manifest; None: "python".
      log: where one-line progress messages go.

    Raises:
      TfvaeError: bad options, an existing export without `overwrite`, a non-export directory at `out`.
      ValueError: `images` that do not fit the model.

    Example:
    >>> import tfvae  # doctest: +SKIP
    >>> manifest = export_model(tfvae.VAE(latent_dim=2, hidden_units=8), "/tmp/out", tflite=True)  # doctest: +SKIP
    >>> manifest["source"]  # doctest: +SKIP
    'python'
    """
    what = _checked_options(tflite, quantize, web, web_model, eval_images, importance_samples, source, micro)
    _check_target(out, overwrite)  # before any slow work
    _check_writable(out)
    conditional = bool(class_names(vae))
    if conditional and what.micro:  # before the conversions: TFLM cannot run the label's one-hot
        raise ConfigError("--micro is not available for a conditional decoder: TFLM has no ONE_HOT, the op that "
                          "encodes its label; export without --micro (decoder_full_int8.tflite runs under LiteRT)")
    if what.web_model and (vae.image_shape[-1] != 1 or vae.likelihood != "bernoulli"):
        whose = "this run's" if getattr(vae, "run_config", None) is not None else "this model's"
        raise ConfigError(
            f"--web draws grey Bernoulli decoders only; {whose} images are "
            f"{'x'.join(map(str, vae.image_shape))} with a {vae.likelihood} likelihood: export without --web"
        )
    subset = None
    if what.quantize and eval_images == 0:
        what = dataclasses.replace(what, skipped="skipped on request (--measure-images 0, or eval_images=0 from Python)")
    elif what.quantize and conditional and images is not None and labels is None:
        what = dataclasses.replace(what, skipped=_CONDITIONAL_COST)
    elif what.quantize and images is not None:  # images that do not fit fail now, not after the conversions
        from tfvae.evaluate import model_images

        images = model_images(vae, images)
        if conditional:  # labels that do not fit fail now too, in the model's words
            labels = vae.check_labels(labels, len(images), "labels")
        subset = _eval_subset(images, eval_images, images_name, log, labels if conditional else None)

    with atomic_directory(out) as staging:
        manifest = _write_export(staging, vae, what, subset, log)
        _check_target(out, overwrite)  # again: something may have appeared at `out` meanwhile
    log(f"exported {source or 'the model'} to {out}")
    if what.web_model:
        log(f"serve the page with: python -m http.server -d {os.path.join(out, layout.WEB_DIR)} 8000")
    return manifest


def export_run(
    run_dir: str,
    out: str | None = None,
    *,
    tflite: bool = False,
    quantize=(),
    overwrite: bool = False,
    web: bool = False,
    web_model: str | None = None,
    micro: bool = False,
    data_dir: str | None = None,
    eval_images: int = DEFAULT_EVAL_IMAGES,
    importance_samples: int = DEFAULT_IMPORTANCE_SAMPLES,
    log=print,
) -> dict:
    """`export_model` for the model of `run_dir` (its best validation epoch with keep_best, else its newest
    checkpoint), the quantization cost measured on `eval_images` of the run's test images; return the manifest.

    Args:
      run_dir: a run written by `tfvae train` (at least one epoch).
      out: the export directory; None: RUN_DIR/export.
      tflite, quantize, overwrite, web, web_model, micro, importance_samples, log: as `export_model`'s.
      data_dir: where the test images are, for the quantization cost; None: the run's config,
        then $TFVAE_DATA_DIR, then TFDS.
      eval_images: this many test images, drawn at random with a fixed seed, measure the quantization cost.

    Raises:
      TfvaeError: bad options, a run without a checkpoint, an existing export
        without `overwrite`, a non-export directory at `out`, or missing data.
    """
    out = out or os.path.join(run_dir, layout.DEFAULT_EXPORT_DIR)
    options = dict(tflite=tflite, quantize=quantize, overwrite=overwrite, web=web, web_model=web_model,
                   micro=micro, importance_samples=importance_samples)
    # Options and the target first: a typo should not cost loading a model and a dataset.
    what = _checked_options(tflite, quantize, web, web_model, eval_images, importance_samples, run_dir, micro)
    _check_target(out, overwrite)
    _check_writable(out)
    config, vae = load_vae(run_dir, log=log)
    vae.run_config = config
    images = labels = None
    if what.quantize and eval_images != 0:  # missing data fails now, not after the conversions
        from tfvae.datasets.splits import split_data

        images, labels = split_data(config, EVAL_SPLIT, data_dir)  # labels: a conditional run's, else None
    return export_model(vae, out, images=images, labels=labels, images_name=f"{config.dataset} {EVAL_SPLIT}",
                        eval_images=eval_images, source=run_dir, log=log, **options)


def export_file(
    path: str,
    out: str,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    image_key: str = "image",
    image_size=None,
    channels: int | None = None,
    eval_images: int = DEFAULT_EVAL_IMAGES,
    log=print,
    **options,
) -> dict:
    """`export_model` for a saved model (a `.keras` file, or a run directory), the quantization cost measured on
    `eval_images` of the test images of `dataset` (read as `tfvae train` reads it); return the manifest.

    Args:
      path: a `.keras` file written by `vae.save` (or a run directory).
      out: the export directory.
      dataset: the images of the quantization cost; None: not measured (the manifest says so).
      data_dir, image_key, image_size, channels: how to read `dataset` (`tfvae.evaluate.dataset_images`).
      eval_images: this many of its test images, drawn at random with a fixed seed.
      log: where one-line progress messages go.
      **options: `export_model`'s tflite, quantize, overwrite, web, web_model, importance_samples.

    Raises:
      TfvaeError: bad options, a path that is not a model, an existing export without `overwrite`,
        missing data, or data that does not fit the model.
    """
    what = _checked_options(options.get("tflite", False), options.get("quantize", ()), options.get("web", False),
                            options.get("web_model"), eval_images,
                            options.get("importance_samples", DEFAULT_IMPORTANCE_SAMPLES), path,
                            options.get("micro", False))
    _check_target(out, options.get("overwrite", False))  # before any slow work
    _check_writable(out)
    from tfvae.datasets.splits import dataset_images
    from tfvae.saving import load_model

    vae = load_model(path)
    images = None
    if what.quantize and dataset is not None and eval_images != 0:
        images = dataset_images(dataset, EVAL_SPLIT, data_dir, likelihood=vae.likelihood, image_key=image_key,
                                image_size=image_size, channels=channels)
    return export_model(vae, out, images=images, images_name=f"{dataset} {EVAL_SPLIT}", eval_images=eval_images,
                        source=path, log=log, **options)


# --------------------------------------------------------------------------- the export's contents

# Why a conditional model's quantization cost is not measured from images without labels: it is in log p(x|y).
_CONDITIONAL_COST = ("not measured: a conditional model's cost is in log p(x|y), on labelled images, and the "
                     "images came without labels (tfvae.export(..., images=..., labels=...), or a run directory)")


@dataclasses.dataclass(frozen=True)
class _Export:
    """What an export writes, its options checked."""

    tflite: bool  # decoder.tflite and encoder.tflite
    quantize: tuple  # quantized decoders, a subset of layout.QUANTIZATIONS (needs tflite)
    web_model: Optional[str]  # the decoder the web page starts with; None: no page
    importance_samples: int  # K for the quantization cost
    source: Optional[str]  # where the model came from (a path); None: handed over in Python
    micro: bool = False  # OUT/micro: decoder_full_int8.tflite as C, its arena measured with TFLM
    skipped: Optional[str] = None  # why the quantization cost is not measured although images could be (the user asked)


def _checked_options(tflite, quantize, web, web_model, eval_images, importance_samples, source,
                     micro=False) -> _Export:
    """The options as an `_Export`, or a ConfigError naming the first bad one."""
    quantize = parse_quantize(quantize)
    if quantize and not tflite:
        raise ConfigError("--quantize writes quantized TFLite decoders: add --tflite")
    web_model = parse_web_model(web, web_model)  # None: no page
    if eval_images is not None and (isinstance(eval_images, bool) or not isinstance(eval_images, int) or eval_images < 0):
        raise ConfigError(f"--measure-images must be a non-negative integer (0: not measured), got {eval_images!r}")
    if isinstance(importance_samples, bool) or not isinstance(importance_samples, int) or importance_samples < 1:
        raise ConfigError(f"--importance-samples must be a positive integer, got {importance_samples!r}")
    if micro and "full_int8" not in quantize:
        raise ConfigError("--micro embeds decoder_full_int8.tflite, the decoder TFLM runs: add --tflite --quantize full_int8")
    if micro:
        from tfvae.export.micro import require_tflm

        require_tflm()
    return _Export(bool(tflite), quantize, web_model, importance_samples, source, bool(micro))


def _write_export(directory, vae, what: _Export, images, log) -> dict:
    """Write the SavedModel, the TFLite files, OUT/web (unless `what.web_model` is None) and manifest.json;
    return the manifest. `images`: None, or (subset (n, H, W, C), its description) for the quantization cost."""
    from_run = (getattr(vae, "run_config", None) is not None and what.source is not None
                and not what.source.startswith("pretrained:"))
    reference_model = ("the Keras model of the run: its best validation epoch with keep_best, else its newest "
                       "checkpoint") if from_run else "the Keras model exported"
    saved_model_dir = os.path.join(directory, layout.SAVED_MODEL_DIR)
    save_signatures(vae, saved_model_dir)
    encoder_keys = [layout.ENCODE] + ([layout.ENCODE_SAMPLE] if vae.sampled_posterior else [])
    log(f"wrote {layout.SAVED_MODEL_DIR}/ (signatures {layout.DECODE}, {', '.join(encoder_keys)})")
    classes = class_names(vae)  # () unless conditional
    prior = prior_of(vae)
    _write_bytes(os.path.join(directory, layout.PRIOR_FILE), prior.to_npz_bytes())
    log(f"wrote {layout.PRIOR_FILE} ({vae.prior_name}: {prior.components} component(s), D = {prior.latent_dim}"
        f"{', one per class: component k is p(z|y = k)' if prior.class_conditional else ''})")

    keras = KerasDecoder(vae, source=what.source or PYTHON_SOURCE)
    rng = np.random.default_rng(PARITY_SEED)
    z = rng.standard_normal((PARITY_LATENTS, vae.latent_dim)).astype(np.float32)  # (64, D)
    # A conditional model's parity batch cycles through its classes: row i has label i mod N.
    labels = (np.arange(PARITY_LATENTS) % len(classes)).astype(np.int32) if classes else None  # (64,)
    with_labels = () if labels is None else (labels,)  # the decoders' and encoders' extra argument
    reference = keras.decode(z, *with_labels)  # probs, logits [, mean], each (64, H, W, C)
    probs = reference[layout.PROBS]
    x = (rng.random(probs.shape) < probs).astype(np.float32)  # x ~ Bernoulli(probs): images the encoder can fit
    loc, scale = keras.encode(x, *with_labels)  # (64, D) each

    def probs_parity(decoder):
        outputs = decoder.decode(z, *with_labels)
        parity = {"max_abs_diff_probs": float(np.max(np.abs(outputs[layout.PROBS] - probs)))}
        if layout.MEAN in reference:  # a continuous Bernoulli: the mean the sampler shows
            parity["max_abs_diff_mean"] = float(np.max(np.abs(outputs[layout.MEAN] - reference[layout.MEAN])))
        return parity

    parity = {
        "batch": {
            "latents": PARITY_LATENTS,
            "seed": PARITY_SEED,
            "z": "z ~ N(0, I) from numpy.random.default_rng(seed); encoder input x ~ Bernoulli(probs) of the Keras model",
            "reference": reference_model,
        },
        layout.SAVED_MODEL_DIR: probs_parity(SavedModelDecoder(saved_model_dir)),
    }
    if classes:
        parity["batch"]["labels"] = f"row i has label i mod {len(classes)}, for the decoders and the encoder"

    decoders = {}  # file name -> (quantization, TFLiteDecoder)
    if what.tflite:
        for quantization, name in [("float32", layout.DECODER_FILE)] + [
            (q, layout.QUANTIZED_DECODER_FILES[q]) for q in what.quantize
        ]:
            path = os.path.join(directory, name)
            if quantization == "full_int8":  # batch 1, calibrated on z ~ p(z) (or p(z|y)): tfvae.export.quantize
                _write_bytes(path, convert_full_int8(vae, prior))
            else:
                _write_bytes(path, convert_signature(saved_model_dir, layout.DECODE, quantization))
            decoders[name] = (quantization, TFLiteDecoder(path))  # loads in the plain interpreter, or fails here
            parity[name] = probs_parity(decoders[name][1])
            if quantization == "full_int8":
                full = decoders[name][1].decode(z, *with_labels)[layout.PROBS]
                parity[name]["mean_abs_diff_probs"] = float(np.mean(np.abs(full - probs)))
            log(f"wrote {name} ({os.path.getsize(path):,} bytes, max |probs - Keras| {parity[name]['max_abs_diff_probs']:.2e})")
        path = os.path.join(directory, layout.ENCODER_FILE)
        _write_bytes(path, convert_signature(saved_model_dir, encoder_keys if vae.sampled_posterior else layout.ENCODE))
        tflite_encoder = TFLiteEncoder(path)
        tflite_loc, tflite_scale = tflite_encoder.encode(x, *with_labels)
        parity[layout.ENCODER_FILE] = {
            "max_abs_diff_loc": float(np.max(np.abs(tflite_loc - loc))),
            "max_abs_diff_scale": float(np.max(np.abs(tflite_scale - scale))),
        }
        if vae.sampled_posterior:
            tflite_z, tflite_log_q = tflite_encoder.encode_sample(x, z, *with_labels)  # the parity latents as the noise
            keras_z, keras_log_q = (t.numpy() for t in vae.encode_sample(tf.constant(x), tf.constant(z),
                                                                         *(tf.constant(a) for a in with_labels)))
            parity[layout.ENCODER_FILE]["max_abs_diff_z"] = float(np.max(np.abs(tflite_z - keras_z)))
            parity[layout.ENCODER_FILE]["max_abs_diff_log_q"] = float(np.max(np.abs(tflite_log_q - keras_log_q)))
        log(f"wrote {layout.ENCODER_FILE} ({os.path.getsize(path):,} bytes)")
    if what.micro:
        micro_entry = _write_micro(directory, decoders[layout.QUANTIZED_DECODER_FILES["full_int8"]][1], z, probs, log)
    if what.web_model:
        # write_site reads latent_dim, image_shape and the prior's family from a run's config: the model has them.
        shape = types.SimpleNamespace(latent_dim=vae.latent_dim, image_shape=tuple(vae.image_shape),
                                      prior=vae.prior_name, classes=classes,
                                      latent_layers=_latent_layers(vae))
        web_entry, web_parity = write_site(directory, vae, shape, z, probs, what.web_model, log, labels=labels)
        parity.update(web_parity)

    manifest = {
        "version": layout.MANIFEST_VERSION,
        "tfvae_version": __version__,
        "source": _source_name(what.source),
    }
    if from_run:
        manifest["run_dir"] = os.path.abspath(what.source)
    manifest.update({
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "latent_dim": vae.latent_dim,
        "image_shape": list(vae.image_shape),
        "likelihood": vae.likelihood,
        "signatures": _signature_shapes(vae.latent_dim, vae.image_shape, vae.sampled_posterior, vae.likelihood,
                                        conditional=bool(classes)),
        "prior": {
            "family": vae.prior_name,
            "components": prior.components,
            "file": layout.PRIOR_FILE,
            "arrays": "logits (K,), loc (K, D), scale (K, D): p(z) = sum_k softmax(logits)_k N(loc_k, diag scale_k^2)",
        },
        "posterior": vae.posterior,
        "files": {},
        "parity": parity,
    })
    if getattr(vae, "latent_layers", 1) == 2:  # only a two-layer export has this key
        top = vae.top_latent_dim
        manifest["latent_layers"] = {
            "layers": 2,
            "z2": top,
            "z1": vae.latent_dim_1,
            "decoder_input": f"z (N, {vae.latent_dim}) = [z2 (its first {top} numbers), e1 (the other "
                             f"{vae.latent_dim_1}), the noise of z1]; the decoder computes z1 = m(z2) + s(z2) e1, "
                             "p(z1|z2)'s reparameterised sample, so no random op is in the graph",
            "prior": f"{layout.PRIOR_FILE} holds p(z) = p(z2) N(e1; 0, I): every component padded with "
                     f"loc 0 and scale 1 after the first {top} numbers",
        }
    if classes:  # only a conditional export has these keys: an unconditional manifest is as it was
        manifest["condition"] = layout.CONDITION_LABEL
        manifest["classes"] = list(classes)
        manifest["prior"]["class_conditional"] = prior.class_conditional
        manifest["prior"]["given_label"] = (
            "p(z|y) is component y (prior.npz holds class_conditional = 1)" if prior.class_conditional
            else "p(z|y) = p(z) for every label y")
    if what.web_model:
        manifest["web"] = web_entry
    if "full_int8" in what.quantize:
        manifest["full_int8"] = describe_full_int8(os.path.join(directory, layout.QUANTIZED_DECODER_FILES["full_int8"]))
    if what.micro:
        manifest["micro"] = micro_entry
    if what.quantize:
        if images is None:
            manifest["quantization"] = _not_measured(decoders, what.skipped)
            log(f"quantization cost not measured: {what.skipped or 'no images were given'}")
        else:
            manifest["quantization"] = _quantization_cost(keras, decoders, images, what.importance_samples,
                                                          reference_model, log)
    manifest["files"] = _file_digests(directory)
    manifest_path = os.path.join(directory, layout.MANIFEST_FILE)
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")
    return manifest


def _write_micro(directory, litert_decoder, z, probs, log) -> dict:
    """OUT/micro for the full-int8 decoder (tfvae.export.micro), with TFLM's parity against LiteRT and Keras."""
    from tfvae.export import micro

    path = litert_decoder.path
    try:
        arena = micro.measure_arena(path)
    except ModelFileError as e:  # e.g. a continuous Bernoulli's mean: an op TFLM lacks; named without the staging path
        raise ModelFileError(f"--micro: {str(e).replace(path, os.path.basename(path))}") from None
    micro_decoder = micro.MicroDecoder(path, arena_size=arena)
    entry = micro.write_micro(path, os.path.join(directory, layout.MICRO_DIR), arena, micro.model_ops(path), micro_decoder)
    tflm = micro_decoder.decode(z)[layout.PROBS]  # the parity batch, one invoke per z
    entry["parity"] = {
        "max_abs_diff_probs_litert": float(np.max(np.abs(tflm - litert_decoder.decode(z)[layout.PROBS]))),
        "max_abs_diff_probs": float(np.max(np.abs(tflm - probs))),
        "mean_abs_diff_probs": float(np.mean(np.abs(tflm - probs))),
        "reference": "TFLM against LiteRT on the same file, and against the Keras model, on the parity batch",
    }
    log(f"wrote {layout.MICRO_DIR}/ ({entry['model_bytes']:,}-byte model, TFLM arena {arena:,} bytes, "
        f"ops {', '.join(entry['ops'])}; max |probs TFLM - LiteRT| {entry['parity']['max_abs_diff_probs_litert']:.2e})")
    return entry


def _latent_layers(vae):
    """(D2, D1) of a two-layer model (its decoder takes [z2, e1]), None for one layer."""
    return (vae.top_latent_dim, vae.latent_dim_1) if getattr(vae, "latent_layers", 1) == 2 else None


def _signature_shapes(latent_dim: int, image_shape, flow: bool = False, likelihood: str = "bernoulli",
                      conditional: bool = False) -> dict:
    """The signatures' tensor shapes, with None (JSON null) for the dynamic batch dimension."""
    z, image = [None, latent_dim], [None, *image_shape]
    decoded = {layout.PROBS: image, layout.LOGITS: image}
    if likelihood != "bernoulli":
        decoded[layout.MEAN] = image
    label = {layout.LABEL: [None]} if conditional else {}  # (N,) int32
    shapes = {
        layout.DECODE: {"inputs": {layout.Z: z, **label}, "outputs": decoded},
        layout.ENCODE: {"inputs": {layout.X: image, **label}, "outputs": {layout.LOC: z, layout.SCALE: z}},
    }
    if flow:
        shapes[layout.ENCODE_SAMPLE] = {
            "inputs": {layout.X: image, layout.EPS: z, **label}, "outputs": {layout.Z: z, layout.LOG_Q: [None]}
        }
    return shapes


@dataclasses.dataclass(frozen=True)
class _CostImages:
    """The images the quantization cost is measured on, and what the manifest says about them."""

    images: np.ndarray  # (n, H, W, C) float32
    of: int  # how many images they were drawn from
    name: str  # what those images are ("binarized_mnist test")
    labels: Optional[np.ndarray] = None  # (n,) int32 of a conditional model: the cost is in log p(x|y)


def _eval_subset(images: np.ndarray, eval_images: Optional[int], name: str, log=print, labels=None) -> _CostImages:
    """`eval_images` of `images` (N, H, W, C) drawn at random (seed EVAL_SUBSET_SEED), or all of them with None.

    At random, not the first n: the test files are not shuffled, and their
    first few hundred images score many nats below the split's mean. A default
    never refuses a user's data: asked for more images than there are, it measures on all of them, and says so.
    """
    if eval_images is not None and eval_images > len(images):
        log(f"measuring the quantization cost on all {len(images)} {name} images (--measure-images {eval_images} "
            "asked for more than there are)")
        eval_images = None
    if eval_images is None or eval_images == len(images):
        return _CostImages(images, len(images), name, labels)
    chosen = np.sort(np.random.default_rng(EVAL_SUBSET_SEED).choice(len(images), eval_images, replace=False))
    return _CostImages(images[chosen], len(images), name, None if labels is None else labels[chosen])


def _not_measured(decoders, why: Optional[str] = None) -> dict:
    """The manifest's "quantization" when no images were given: which decoders were written, no figures."""
    return {
        "measured": False,
        "why": why or ("no images were given to measure the change in ELBO and log p(x) on "
                      "(tfvae.export(..., images=...), or tfvae export --dataset NAME)"),
        "decoders": {name: {"quantization": quantization} for name, (quantization, _) in decoders.items()},
    }


def _quantization_cost(keras, decoders, images: _CostImages, importance_samples, reference_model, log) -> dict:
    """ELBO and log p(x) of each TFLite decoder against the Keras model, on the same images and the same z.

    Every evaluation uses the float32 Keras encoder and the same seed, so each
    image sees the same z_k for every decoder (a paired comparison): the
    changes are the decoder's alone, not Monte Carlo noise.
    """
    from tfvae.evaluate import evaluate_images

    vae = keras.vae
    seed = int(vae.seed)  # a run's config.seed
    subset = images.images
    prior = None if vae.prior_name == "normal" else Mixture(*(np.asarray(t) for t in vae.prior_mixture()))
    sample_posterior = None
    if vae.sampled_posterior:  # the Keras flow (or two layers), over (B, C, D) noise

        def sample_posterior(x, eps, *labels):  # labels (B,): a conditional model's
            z, log_q = vae.encode_sample(tf.constant(x), tf.constant(np.transpose(eps, (1, 0, 2))),
                                         *(tf.constant(y) for y in labels))
            return np.transpose(z.numpy(), (1, 0, 2)), log_q.numpy().T

    def evaluate(decode_logits):
        return evaluate_images(
            keras.encode,
            decode_logits,
            subset,
            importance_samples=importance_samples,
            seed=seed,
            split=images.name,
            prior=prior,
            sample_posterior=sample_posterior,
            likelihood=vae.likelihood,
            labels=images.labels,  # a conditional model: every figure is given y, log p(x|y)
        )

    reference = evaluate(keras.decode_logits)
    log_p = "log p(x)" if images.labels is None else "log p(x|y)"
    log(
        f"reference (Keras float32) on {len(subset)} {images.name} images, K = {importance_samples}: "
        f"ELBO {reference.elbo:.3f}, {log_p} {reference.log_likelihood:.3f}"
    )
    results = {}
    for name, (quantization, decoder) in decoders.items():
        evaluation = evaluate(decoder.decode_logits)
        results[name] = {
            "quantization": quantization,
            "elbo": evaluation.elbo,
            "log_likelihood": evaluation.log_likelihood,
            "elbo_change": evaluation.elbo - reference.elbo,
            "log_likelihood_change": evaluation.log_likelihood - reference.log_likelihood,
            # The changes are paired (the same images, the same z): their standard error is that of the
            # per-image differences, far below either figure's own spread across images.
            "elbo_change_stderr": _paired_stderr(evaluation.per_image_elbo, reference.per_image_elbo),
            "log_likelihood_change_stderr": _paired_stderr(
                evaluation.per_image_log_likelihood, reference.per_image_log_likelihood),
        }
        stderr = results[name]["log_likelihood_change_stderr"]  # None for a single image
        log(
            f"{name}: ELBO change {results[name]['elbo_change']:+.4f}, {log_p} change "
            f"{results[name]['log_likelihood_change']:+.4f}" + ("" if stderr is None else f" ± {stderr:.4f}")
            + " nats per image"
        )
    if len(subset) < images.of:
        subset_text = (f"measured on a subset: {len(subset)} of the {images.of} {images.name} images, drawn at "
                       f"random (seed {EVAL_SUBSET_SEED}), K = {importance_samples} importance samples per image; "
                       "not the full test set")
    else:
        subset_text = f"measured on all {len(subset)} {images.name} images, K = {importance_samples} importance samples per image"
    return {
        "measured": True,
        "subset": subset_text,
        "images_from": images.name,  # "binarized_mnist test" for a run or a --dataset; "given" from Python
        "images": len(subset),
        "split_images": images.of,
        "subset_seed": EVAL_SUBSET_SEED,
        "importance_samples": importance_samples,
        "seed": seed,
        "units": "nats per image; change = decoder - reference",
        "likelihood": vae.likelihood,
        "meaning": LIKELIHOODS[vae.likelihood].description,
        "reference": {
            "model": f"Keras float32 ({reference_model})",
            "elbo": reference.elbo,
            "log_likelihood": reference.log_likelihood,
            "log_likelihood_stderr": reference.log_likelihood_stderr,
        },
        "decoders": results,
        # A conditional model: log_likelihood is log p(x|y), each image scored given its own label.
        **({"condition": layout.CONDITION_LABEL} if images.labels is not None else {}),
    }


# --------------------------------------------------------------------------- files


def _write_bytes(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _file_digests(directory: str) -> dict:
    """{relative path: {"bytes", "sha256"}} for every file under `directory`, sorted."""
    digests = {}
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            relative = os.path.relpath(path, directory).replace(os.sep, "/")
            digests[relative] = {"bytes": os.path.getsize(path), "sha256": file_sha256(path)}
    return dict(sorted(digests.items()))


def _check_writable(out: str) -> None:
    """One line naming `out` if the export cannot be written there, before any slow work; creates nothing.

    The probe goes to the nearest folder that exists on the way to `out`, which is where the
    export's parent folders and its temporary directory would be made.
    """
    existing = os.path.dirname(os.path.abspath(out))
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise WriteError(f"cannot write to --out {out}: {existing} is a file")
    try:
        tempfile.TemporaryDirectory(prefix=".tfvae-probe-", dir=existing).cleanup()
    except OSError as e:
        raise WriteError(f"cannot write to --out {out}: {e.strerror or e}") from None


def _check_target(out: str, overwrite: bool) -> None:
    """Refuse an `out` that is a file, a directory that is not a tfvae export, or an export without `overwrite`."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise RunError(f"--out {out} is a file, not a directory")
    if not os.path.isdir(out) or not os.listdir(out):
        return
    if not os.path.isfile(os.path.join(out, layout.MANIFEST_FILE)):
        raise RunError(f"{out} is not empty and is not a tfvae export; choose a new or empty --out")
    if not overwrite:
        raise RunError(f"{out} already holds an export; pass --overwrite to replace it, or choose another --out")


def _paired_stderr(values, reference) -> Optional[float]:
    """The standard error of mean(values - reference) over images (paired); None for a single image."""
    differences = np.asarray(values, np.float64) - np.asarray(reference, np.float64)
    if len(differences) < 2:
        return None
    return float(np.std(differences, ddof=1) / math.sqrt(len(differences)))


def _source_name(source: Optional[str]) -> str:
    """What the manifest names as the model's source: an absolute path, "pretrained:NAME", or "python"."""
    if not source:
        return PYTHON_SOURCE
    return source if source.startswith("pretrained:") else os.path.abspath(source)
