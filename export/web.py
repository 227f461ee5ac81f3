"""`write_site`: OUT/web, a static page that samples from the decoder in the browser with LiteRT.js.

The page is plain files: the HTML, two ES modules and a style sheet from
`web_assets/`, the vendored LiteRT.js runtime (`tfvae.export.litertjs`), the
decoders and `tfvae.json`, which tells the page the latent dimension, the
batch, the prior and the decoders. Any static file server serves it (no
special headers), and it fetches nothing from anywhere else.

LiteRT.js refuses an input whose batch dimension is dynamic, so the web
decoders are converted afresh from the Keras model with the batch fixed at
`layout.WEB_BATCH` (the page's 8 x 8 grid); the page pads the interpolation
strip and the manifold to it. The LiteRT interpreter in Python resizes such a
model to any batch, so `tfvae sample --model OUT/web/decoder.tflite` runs it too.

    web/decoder.tflite        decode: z (64, D) -> probs, logits (64, 28, 28, 1), float32
    web/decoder_int8.tflite   the same with dynamic-range int8 weights
    web/tfvae.json            {"latent_dim", "batch", "prior", "models", "default_model", "grid", "manifold", ...}

A conditional model's page (`tfvae train --condition label`) has a class picker: its web decoders also
take label (64,) int32, tfvae.json lists "classes" (names, by index) and "condition": "label", and the
whole grid is of the class picked (`?label=7` in the address). z comes from p(z|y): component y of a
class-conditional prior ("class_conditional": true in "prior"), else the prior itself.

The page samples the exported prior: "prior" in tfvae.json is read from the
export's prior.npz (one source of truth with `tfvae sample`), N(0, I) as
{"family": "normal", "loc": 0.0, "scale": 1.0} and a learned prior (mog, or a
VampPrior as the mixture of the posteriors at its pseudo-inputs) as
{"family": "mixture", "logits" (K,), "loc" (K, D), "scale" (K, D)}, each value
the shortest decimal that reads back as the same float32.

Example:
>>> entry, parity = write_site("OUT", vae, config, z, probs, "int8", print)  # doctest: +SKIP
>>> entry["models"]["int8"]["inputs"]  # doctest: +SKIP
{'z': [64, 20]}
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from statistics import NormalDist

import numpy as np

from tfvae import __version__
from tfvae.errors import ConfigError, InstallError, ModelFileError
from tfvae.export import layout, litertjs
from tfvae.export.litert import TFLiteDecoder
from tfvae.io import file_sha256
from tfvae.mixture import Mixture, PriorFileError

__all__ = [
    "DEFAULT_WEB_MODEL",
    "GRID_COLUMNS",
    "INTERPOLATION_STEPS",
    "MANIFOLD_SIDE",
    "MANIFOLD_EPS",
    "PAGE_CONFIG_VERSION",
    "parse_web_model",
    "check_web_decoder",
    "page_prior",
    "manifold_prior_mass",
    "write_site",
]

DEFAULT_WEB_MODEL = "float32"  # the decoder the page starts with; the other is one click away
GRID_COLUMNS = 8  # the grid is WEB_BATCH = 64 samples, 8 x 8
INTERPOLATION_STEPS = 10  # images in the strip between two samples
MANIFOLD_SIDE = 20  # with D = 2: the 20 x 20 grid of manifold.png (tfvae.plots.manifold_latents)
MANIFOLD_EPS = 0.05  # its probabilities run from eps to 1 - eps
PAGE_CONFIG_VERSION = 1  # format of tfvae.json

_DESCRIPTIONS = {
    "float32": "float32 weights",
    "int8": "int8 dynamic-range weights, float32 activations",
}


def parse_web_model(web: bool, web_model: str | None) -> str | None:
    """The decoder the page starts with, or None when no page is written.

    Raises:
      ConfigError: `web_model` without `web`, or a name not in layout.WEB_MODELS.
    """
    if web_model is not None and not web:
        raise ConfigError("--web-model chooses the decoder the web page starts with: add --web")
    if not web:
        return None
    web_model = web_model or DEFAULT_WEB_MODEL
    if web_model not in layout.WEB_MODELS:
        raise ConfigError(f"unknown --web-model {web_model!r}; choose one of: {', '.join(layout.WEB_MODELS)}")
    return web_model


def check_web_decoder(path: str, batch: int, latent_dim: int) -> dict:
    """Refuse unless `path` is a tfvae decoder taking exactly `batch` latents of size `latent_dim`; return its shapes.

    Returns:
      {"inputs": {"z": [batch, D]}, "outputs": {"logits": [batch, 28, 28, 1], "probs": [...]}}, read from the file;
      a conditional decoder's inputs also have "label": [batch].

    Raises:
      ModelFileError: not a tfvae decoder (an encoder, say), another D, or a batch that is not fixed at `batch`.
    """
    from ai_edge_litert.interpreter import Interpreter

    TFLiteDecoder(path)  # the signature, names, dtypes and image shape, with the sampler's messages
    runner = Interpreter(model_path=path).get_signature_runner(layout.DECODE)

    def shapes(details):
        return {name: [int(n) for n in details[name]["shape_signature"]] for name in sorted(details)}

    found = {"inputs": shapes(runner.get_input_details()), "outputs": shapes(runner.get_output_details())}
    if found["inputs"][layout.Z] != [batch, latent_dim]:
        raise ModelFileError(
            f"{path} is not a web decoder: input 'z' has shape {found['inputs'][layout.Z]}, expected "
            f"[{batch}, {latent_dim}] (LiteRT.js needs a fixed batch)"
        )
    if found["inputs"].get(layout.LABEL, [batch]) != [batch]:
        raise ModelFileError(f"{path} is not a web decoder: input 'label' has shape "
                             f"{found['inputs'][layout.LABEL]}, expected [{batch}] (LiteRT.js needs a fixed batch)")
    return found


def _copy_assets(site: str) -> None:
    """The page and the vendored runtime into `site`, after checking the runtime against litertjs.json."""
    try:
        expected = litertjs.runtime_info()["files"]
    except (OSError, ValueError) as e:
        raise InstallError(f"the LiteRT.js runtime of this tfvae install is unreadable ({e}); reinstall tfvae") from None
    for relative, sha256 in expected.items():
        path = os.path.join(litertjs.RUNTIME_DIR, relative)
        if not os.path.isfile(path) or file_sha256(path) != sha256:
            raise InstallError(f"the LiteRT.js runtime of this tfvae install is damaged or incomplete ({path}); reinstall tfvae")
    for name in layout.WEB_PAGE_FILES:
        shutil.copyfile(os.path.join(litertjs.ASSETS_DIR, name), os.path.join(site, name))
    # copyfile, not copy2: the files get the mode a plain open() gives, not the install's.
    shutil.copytree(litertjs.RUNTIME_DIR, os.path.join(site, layout.WEB_RUNTIME_DIR), copy_function=shutil.copyfile,
                    ignore=shutil.ignore_patterns("__pycache__"))


def _float32_values(array) -> list:
    """A nested list of the shortest decimals that read back as the same float32 (str of a numpy float32)."""
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 0:
        return float(str(array[()]))
    return [_float32_values(row) for row in array]


def page_prior(prior: Mixture, trained: str) -> dict:
    """tfvae.json's "prior": N(0, I) as today's pages read it, any other prior as its mixture arrays.

    Args:
      prior: the export's prior.npz, read with `Mixture.load`.
      trained: the run's `--prior` (normal, mog, vamp), shown by the page.
    """
    if prior.is_standard_normal:
        # No parameters to ship: p(z) = N(0, I_D), written out so that the page can refuse another.
        return {"family": "normal", "loc": 0.0, "scale": 1.0}
    entry = {
        "family": "mixture",  # p(z) = sum_k softmax(logits)_k N(loc_k, diag scale_k^2)
        "trained": trained,
        "components": prior.components,
        "logits": _float32_values(prior.logits),  # (K,)
        "loc": _float32_values(prior.loc),  # (K, D)
        "scale": _float32_values(prior.scale),  # (K, D)
    }
    if prior.class_conditional:  # component k is p(z|y = k): the page draws from the component of its label
        entry["class_conditional"] = True
    return entry


def manifold_prior_mass(prior: Mixture, eps: float = MANIFOLD_EPS) -> float:
    """P(z in the manifold's square) under `prior` (D = 2): the square spans N(0, 1)'s eps to 1 - eps quantiles.

    The manifold is drawn on N(0, I)'s quantiles (as manifold.png); for a learned
    prior the page says how much of the prior's mass that square holds.
    """
    low, high = NormalDist().inv_cdf(eps), NormalDist().inv_cdf(1 - eps)
    cdf = np.vectorize(NormalDist().cdf)
    inside = cdf((high - prior.loc) / prior.scale) - cdf((low - prior.loc) / prior.scale)  # (K, 2)
    return float(np.exp(prior.log_weights()) @ np.prod(inside, axis=1))


def _page_config(config, prior: Mixture, default_model: str, runtime: dict) -> dict:
    """tfvae.json: everything the page reads, and nothing it does not (no paths from this machine)."""
    manifold = None
    if config.latent_dim == 2:
        manifold = {"side": MANIFOLD_SIDE, "eps": MANIFOLD_EPS}
        if not prior.is_standard_normal:
            manifold["prior_mass"] = round(manifold_prior_mass(prior), 4)
    classes = tuple(getattr(config, "classes", None) or ())
    conditional = {"condition": layout.CONDITION_LABEL, "classes": list(classes)} if classes else {}
    layers = getattr(config, "latent_layers", None)  # (D2, D1) of a two-layer model: z = [z2, e1]
    hierarchy = {"latent_layers": {"z2": layers[0], "z1": layers[1]}} if layers else {}
    return {
        "version": PAGE_CONFIG_VERSION,
        "tfvae_version": __version__,
        "latent_dim": config.latent_dim,
        "image_shape": list(config.image_shape),
        "batch": layout.WEB_BATCH,
        **conditional,  # a conditional model only: the page shows its class picker
        **hierarchy,  # a two-layer model only: each z is z2 then the noise of z1
        "prior": page_prior(prior, config.prior),
        "models": {
            name: {"file": file, "description": _DESCRIPTIONS[name]} for name, file in layout.WEB_MODEL_FILES.items()
        },
        "default_model": default_model,
        "grid": {"columns": GRID_COLUMNS},
        "interpolation": {"steps": INTERPOLATION_STEPS},
        "manifold": manifold,
        "runtime": {"package": litertjs.CORE, "version": runtime[litertjs.CORE]["version"], "accelerator": "wasm"},
    }


def write_site(directory, vae, config, z, reference_probs, default_model, log, labels=None) -> tuple:
    """Write DIRECTORY/web: the page, the runtime, fixed-batch float32 and int8 decoders, and tfvae.json.

    Args:
      directory: the export being written (the staging directory), which already holds prior.npz.
      vae: the run's Keras model.
      config: the run's config.
      z: (n, D) float32 latents on which each web decoder is compared with the Keras model.
      reference_probs: (n, 28, 28, 1) the Keras model's Bernoulli means at `z` (and `labels`).
      default_model: the decoder the page starts with, one of layout.WEB_MODELS.
      log: where one-line progress messages go.
      labels: a conditional model's (n,) int32 labels of `z`; None for an unconditional one.

    Returns:
      (the manifest's "web" entry, {"web/<file>": {"max_abs_diff_probs"}} for the manifest's parity).
    """
    from tfvae.export import exporter  # exporter imports this module: resolved at call time
    from tfvae.export.savedmodel import save_signatures

    if default_model not in layout.WEB_MODELS:
        raise ConfigError(f"unknown --web-model {default_model!r}; choose one of: {', '.join(layout.WEB_MODELS)}")
    site = os.path.join(directory, layout.WEB_DIR)
    os.makedirs(site)
    _copy_assets(site)
    runtime = litertjs.runtime_info()["packages"]

    models, parity = {}, {}
    with tempfile.TemporaryDirectory(prefix="tfvae-web-") as scratch:
        saved_model_dir = os.path.join(scratch, layout.SAVED_MODEL_DIR)
        save_signatures(vae, saved_model_dir, batch_size=layout.WEB_BATCH)
        for name, file in layout.WEB_MODEL_FILES.items():
            path = os.path.join(site, file)
            with open(path, "wb") as f:
                f.write(exporter.convert_signature(saved_model_dir, layout.DECODE, name))
            shapes = check_web_decoder(path, layout.WEB_BATCH, config.latent_dim)
            # The interpreter resizes to len(z).
            probs = TFLiteDecoder(path).decode(z, *(() if labels is None else (labels,)))[layout.PROBS]
            relative = f"{layout.WEB_DIR}/{file}"
            parity[relative] = {"max_abs_diff_probs": float(np.max(np.abs(probs - reference_probs)))}
            models[name] = {"file": relative, "quantization": name, **shapes}
            log(f"wrote {relative} ({os.path.getsize(path):,} bytes, batch {layout.WEB_BATCH}, "
                f"max |probs - Keras| {parity[relative]['max_abs_diff_probs']:.2e})")

    try:  # the page samples what `tfvae sample` samples: the export's own prior.npz
        prior = Mixture.load(os.path.join(directory, layout.PRIOR_FILE), latent_dim=config.latent_dim)
    except PriorFileError as e:
        raise ModelFileError(str(e)) from None
    page_config = _page_config(config, prior, default_model, runtime)
    path = os.path.join(site, layout.WEB_CONFIG_FILE)
    with open(path, "w", encoding="utf-8") as f:
        f.write(_json_text(page_config) + "\n")
    log(f"wrote {layout.WEB_DIR}/ (the page, LiteRT.js {page_config['runtime']['version']}, starting with "
        f"{default_model}; prior {config.prior}, {prior.components} component(s) in {layout.WEB_CONFIG_FILE}, "
        f"{os.path.getsize(path):,} bytes)")
    entry = {
        "directory": layout.WEB_DIR,
        "batch": layout.WEB_BATCH,
        "default_model": default_model,
        "models": models,
        "runtime": {name: package["version"] for name, package in runtime.items()} | {"accelerator": "wasm"},
        "page_config": f"{layout.WEB_DIR}/{layout.WEB_CONFIG_FILE}",
    }
    return entry, parity


def _json_text(value, indent: str = "") -> str:
    """JSON indented by two spaces, as json.dumps(indent=2), but a list of numbers on one line.

    A VampPrior of 500 components in D = 32 is 32,000 numbers: one row of loc
    or scale per line keeps tfvae.json readable and about 400 KB, not 1 MB of
    one-number lines.
    """
    inner = indent + "  "
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(key)}: {_json_text(item, inner)}" for key, item in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        return "[\n" + ",\n".join(inner + _json_text(item, inner) for item in value) + "\n" + indent + "]"
    return json.dumps(value)
