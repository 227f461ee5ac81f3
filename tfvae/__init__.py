"""tfvae: a variational autoencoder for binarized MNIST, from training to an on-device decoder.

`import tfvae` stays light (no TensorFlow): the on-device sampler needs only
numpy and the LiteRT interpreter. The TensorFlow parts are imported from their
modules, `tfvae.models`, `tfvae.train`, `tfvae.evaluate`, when used.
"""

from tfvae.config import Config, load_config, save_config
from tfvae.errors import ConfigError, DataError, ModelFileError, RunError, TfvaeError
from tfvae.kl import kl_standard_normal

__version__ = "0.1.0"

__all__ = [
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
