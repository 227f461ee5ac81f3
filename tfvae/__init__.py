"""tfvae: variational autoencoders in Keras and TensorFlow Probability, from training to an on-device decoder.

From Python (TensorFlow is imported at the first use of one of these names, never by `import tfvae`,
so the on-device sampler needs only numpy and the LiteRT interpreter):

    tfvae.VAE             the Keras model: fit on arrays or datasets, save to .keras, sample, encode, decode
    tfvae.load_model      a .keras file or a run directory -> tfvae.VAE
    tfvae.load_images     the images the command line trains on, as a float32 array (N, H, W, C)
    tfvae.train           `tfvae train` from Python: a run directory
    tfvae.evaluate        ELBO and importance-sampled log p(x) of a model on images
    tfvae.export          SavedModel, TFLite, quantized decoders and the web page of a model

Example:
>>> import numpy as np, tfvae
>>> x = (np.random.default_rng(0).random((64, 28, 28)) < 0.3).astype("float32")
>>> vae = tfvae.VAE(latent_dim=2, hidden_units=16)
>>> vae.compile()
>>> history = vae.fit(x, epochs=1, batch_size=32, verbose=0)
>>> sorted(history.history)
['distortion', 'elbo', 'rate']
>>> vae.sample(4, seed=0).shape
(4, 28, 28, 1)
"""

import importlib

from tfvae.config import Config, load_config, save_config
from tfvae.errors import ConfigError, DataError, ModelFileError, RunError, TfvaeError
from tfvae.kl import kl_standard_normal

__version__ = "0.1.0"

# name -> (module, attribute); attribute None: the module itself, which is callable (tfvae.callable_module).
_LAZY = {
    "VAE": ("tfvae.models.vae", "VAE"),
    "load_model": ("tfvae.saving", "load_model"),
    "load_images": ("tfvae.datasets", "load_images"),
    "train": ("tfvae.train", None),
    "evaluate": ("tfvae.evaluate", None),
    "export": ("tfvae.export", None),
}

__all__ = [
    "VAE",
    "load_model",
    "load_images",
    "train",
    "evaluate",
    "export",
    "Config",
    "ConfigError",
    "DataError",
    "ModelFileError",
    "RunError",
    "TfvaeError",
    "kl_standard_normal",
    "load_config",
    "save_config",
]


def __getattr__(name):
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = importlib.import_module(module)
        return value if attribute is None else getattr(value, attribute)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
