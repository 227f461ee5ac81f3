"""Trained models shipped inside the package: sample, evaluate and demo without training first.

    tfvae sample --pretrained classic --out s.png       on a device: the int8 TFLite decoder and prior.npz, no TensorFlow
    tfvae.load_model("pretrained:classic")               the Keras model, for evaluation, fine-tuning and export
    tfvae evaluate --pretrained classic                   the test figures its manifest states
    tfvae export --pretrained classic --web --out DIR     the browser demo in one command

Each model is a folder `tfvae/pretrained/NAME/`:

    manifest.json        the command that trained it (seed included), the commit, its test figures (ELBO, log p(x)
                         at K = 5000 with its standard error), how its files were made, and the sha256 of each file
    model.json           the Keras model's configuration (`tfvae.VAE.get_config()`)
    weights.npz          its weights, stored as float16 (half the size; the figures are those of the stored model)
    decoder_int8.tflite  the decoder with int8 weights, exported from the stored model, for `tfvae sample`
    prior.npz            p(z) as a mixture (tfvae.mixture), beside the decoder as every export has it

This module imports no TensorFlow: the on-device path reads the decoder's path and checks the files.
`python -m tfvae.pretrained.build` (TensorFlow) makes a folder from a trained run (BENCHMARKS.md says how).

Example:
>>> sorted(NAMES)
['best', 'classic', 'conditional']
>>> os.path.basename(decoder_path("classic"))
'decoder_int8.tflite'
"""

from __future__ import annotations

import json
import os

from tfvae.errors import ModelFileError

__all__ = ["NAMES", "PREFIX", "MANIFEST_FILE", "DECODER_FILE", "model_dir", "manifest", "decoder_path",
           "check_files", "load_vae", "parse"]

# the shipped models: `tfvae train --preset NAME --seed 0`; conditional: `--preset best --condition label --dataset mnist`
# (BENCHMARKS.md, "Pretrained models")
NAMES = ("classic", "best", "conditional")
PREFIX = "pretrained:"  # tfvae.load_model("pretrained:best")
MANIFEST_FILE = "manifest.json"
MODEL_CONFIG_FILE = "model.json"
WEIGHTS_FILE = "weights.npz"
DECODER_FILE = "decoder_int8.tflite"
PRIOR_FILE = "prior.npz"  # tfvae.export.layout.PRIOR_FILE: open_prior finds it beside the decoder

_HERE = os.path.dirname(os.path.abspath(__file__))


def parse(name_or_path: str):
    """'pretrained:best' -> 'best'; anything else -> None."""
    if isinstance(name_or_path, str) and name_or_path.startswith(PREFIX):
        return name_or_path[len(PREFIX):]
    return None


def model_dir(name: str) -> str:
    """The folder of shipped model `name`.

    Raises:
      ModelFileError: no such model (the message lists the names), or its files are missing from this install.
    """
    if name not in NAMES:
        raise ModelFileError(f"no pretrained model {name!r}; choose one of: {', '.join(NAMES)}")
    directory = os.path.join(_HERE, name)
    if not os.path.isfile(os.path.join(directory, MANIFEST_FILE)):
        raise ModelFileError(f"the pretrained model {name!r} is missing from this install ({directory}); reinstall tfvae")
    return directory


def manifest(name: str) -> dict:
    """The manifest of shipped model `name` (its command, commit, test figures and file digests)."""
    with open(os.path.join(model_dir(name), MANIFEST_FILE), encoding="utf-8") as f:
        return json.load(f)


def decoder_path(name: str) -> str:
    """The TFLite decoder of shipped model `name` (prior.npz beside it): what `tfvae sample --pretrained` runs."""
    return os.path.join(model_dir(name), DECODER_FILE)


def check_files(name: str) -> None:
    """Check every file of shipped model `name` against the sha256 in its manifest.

    Raises:
      ModelFileError: a file is missing or its bytes are not the ones the manifest names.
    """
    from tfvae.io import file_sha256

    directory = model_dir(name)
    for file, entry in manifest(name)["files"].items():
        path = os.path.join(directory, file)
        if not os.path.isfile(path):
            raise ModelFileError(f"the pretrained model {name!r} lacks {file}; reinstall tfvae")
        if file_sha256(path) != entry["sha256"]:
            raise ModelFileError(f"{path} is damaged (its sha256 is not the manifest's); reinstall tfvae")


def load_vae(name: str):
    """The Keras model of shipped model `name` (TensorFlow): `tfvae.VAE` with the stored weights (float16 -> float32).

    Its `run_config` is the `Config` of the run that trained it, so evaluate and export treat it as that run's model.
    """
    import numpy as np

    from tfvae.config import Config
    from tfvae.models.vae import VAE

    check_files(name)
    directory = model_dir(name)
    with open(os.path.join(directory, MODEL_CONFIG_FILE), encoding="utf-8") as f:
        vae = VAE.from_config(json.load(f))
    with np.load(os.path.join(directory, WEIGHTS_FILE), allow_pickle=False) as stored:
        names = [w.name for w in vae.weights]
        if sorted(stored.files) != sorted(f"w{i}" for i in range(len(names))):
            raise ModelFileError(f"{WEIGHTS_FILE} of the pretrained model {name!r} does not fit its model.json")
        vae.set_weights([stored[f"w{i}"].astype(np.float32) for i in range(len(names))])
    vae.run_config = Config.from_dict(manifest(name)["config"])
    return vae
