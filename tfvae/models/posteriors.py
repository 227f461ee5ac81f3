"""q(z|x) = N(loc, diag scale^2): the encoder's parameters as a distribution, and the rate layer.

    rate = KL(q(z|x) || p(z)), in closed form, added to the model's losses exactly once
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as tfk

from tfvae.models.priors import standard_normal_prior
from tfvae.models.replicas import batch_mean

tfd = tfp.distributions

__all__ = ["KLDivergenceLoss", "posterior_params", "make_posterior"]

# Keeps the posterior scale away from 0, where log(scale) and the KL blow up.
_MIN_SCALE = 1e-5


def posterior_params(params):
    """Split encoder outputs (B, 2D) into loc (B, D) and a positive scale (B, D)."""
    loc, raw_scale = tf.split(params, 2, axis=-1)
    return loc, _softplus(raw_scale) + _MIN_SCALE


def _softplus(x):
    """log(1 + e^x), written so that it cannot overflow.

    tf.math.softplus is stable in TensorFlow, but the TFLite converter lowers it
    to log(exp(x) + 1), which overflows to inf for x > 88; this form converts to
    builtin ops that stay finite everywhere.
    """
    return tf.maximum(x, 0.0) + tf.math.log(1.0 + tf.exp(-tf.abs(x)))


def make_posterior(params):
    """Encoder outputs (B, 2D) -> q(z|x), batch (B,), event (D,)."""
    loc, scale = posterior_params(params)
    return tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale)


class KLDivergenceLoss(tfk.layers.Layer):
    """Adds the rate, KL(q(z|x) || N(0, I)) averaged over the batch, to the model's losses.

    TFP's `KLDivergenceAddLoss` sums the KL over the batch while Keras averages
    the reconstruction loss, and `KLDivergenceRegularizer` on a distribution
    layer puts the KL into `model.losses` twice (TFP issues 599, 1215). This
    layer adds it exactly once, in closed form, per image. The distribution
    passes through unchanged.

    Args:
      latent_dim: D, the dimension of z.

    Example:
    >>> layer = KLDivergenceLoss(latent_dim=2)
    >>> q_z = tfd.MultivariateNormalDiag(loc=[[1.0, 0.0]], scale_diag=[[1.0, 1.0]])
    >>> _ = layer(q_z)
    >>> float(layer.losses[0])
    0.5
    """

    def __init__(self, latent_dim: int, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.latent_dim = latent_dim

    def call(self, q_z):
        p_z = standard_normal_prior(self.latent_dim, dtype=q_z.dtype)
        rate = tfd.kl_divergence(q_z, p_z)  # (B,), analytic for two MVNDiag
        self.add_loss(batch_mean(rate))
        return q_z

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim}


