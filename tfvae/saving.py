"""`load_model`: a trained `tfvae.VAE` from a `.keras` file or a run directory.

    m.keras         written by `vae.save("m.keras")`: the model's configuration and weights
    pretrained:NAME a model shipped in the package (tfvae.pretrained: classic, best)
    RUN_DIR         written by `tfvae train`: its model (the best validation epoch with keep_best,
                    else the newest readable checkpoint), as `tfvae evaluate` and `tfvae export` use it

Example:
>>> import tfvae
>>> vae = tfvae.VAE(latent_dim=2, hidden_units=8)
>>> vae.save("/tmp/tfvae-doctest.keras")
>>> tfvae.load_model("/tmp/tfvae-doctest.keras").latent_dim
2
"""

from __future__ import annotations

import os
import zipfile

from tfvae.errors import ModelFileError

__all__ = ["load_model", "KERAS_SUFFIX"]

KERAS_SUFFIX = ".keras"  # the Keras v3 saving format: a zip of config.json, metadata.json and model.weights.h5
_RUN_CONFIG = "config.json"


def load_model(path: str):
    """The `tfvae.VAE` saved at `path`, ready to evaluate, sample, export or train further.

    Args:
      path: a `.keras` file written by `VAE.save`, a run directory written by
        `tfvae train` (its model: the best validation epoch with keep_best, else
        the newest readable checkpoint), or "pretrained:NAME", a model shipped in
        the package (`tfvae.pretrained.NAMES`).

    Returns:
      A built `tfvae.VAE`. A run directory's (and a shipped) model also carries the run's
      `Config` as `vae.run_config`.

    Raises:
      ModelFileError: the path is missing, or is neither a `.keras` tfvae model nor a run directory.
      RunError: a run directory without a usable checkpoint.

    Example:
    >>> import tfvae
    >>> tfvae.load_model("no/such/model.keras")
    Traceback (most recent call last):
    ...
    tfvae.errors.ModelFileError: no/such/model.keras does not exist
    """
    path = os.fspath(path)
    from tfvae import pretrained

    name = pretrained.parse(path)
    if name is not None:
        return pretrained.load_vae(name)
    if not os.path.exists(path):
        raise ModelFileError(f"{path} does not exist")
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, _RUN_CONFIG)):
            raise ModelFileError(f"{path} is a directory but not a tfvae run (it has no {_RUN_CONFIG}); "
                                 f"pass a run directory or a {KERAS_SUFFIX} file")
        from tfvae.runs import load_vae

        config, vae = load_vae(path)
        vae.run_config = config
        return vae
    if not path.endswith(KERAS_SUFFIX) or not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path} is not a {KERAS_SUFFIX} file written by vae.save(...) nor a run directory")
    import tf_keras as tfk

    from tfvae.models.vae import VAE

    try:
        vae = tfk.models.load_model(path, compile=True)
    except (ValueError, TypeError, KeyError, OSError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFileError(f"{path} cannot be read as a tfvae model: {reason[:200]}") from None
    if not isinstance(vae, VAE):
        raise ModelFileError(f"{path} holds a {type(vae).__name__}, not a tfvae.VAE")
    return vae
