"""p(z), the prior over the latent code: N(0, I), or a learned mixture of diagonal Gaussians.

    normal:  p(z) = N(0, I_D)
    mog:     p(z) = sum_k pi_k N(z; m_k, diag s_k^2),  pi = softmax(logits); logits, m, s learned
    vamp:    p(z) = (1/K) sum_k q(z | u_k),  the posterior at K learned pseudo-inputs u_k (Tomczak & Welling 2018)

Every prior is a Keras layer whose `mixture()` gives its parameters as tensors,
`logits (K,)`, `loc (K, D)`, `scale (K, D)` (N(0, I) is one component with loc 0
and scale 1), which is what an export writes to `prior.npz`. A VampPrior's
mixture is computed from the encoder at the moment it is asked for, so the
export carries the prior the model has at that moment. `distribution()` is the
same mixture as a TFP distribution, for log p(z) and for sampling.
"""

from __future__ import annotations

import math

import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as tfk

tfd = tfp.distributions

__all__ = ["standard_normal_prior", "StandardNormalPrior", "MixturePrior", "VampPrior", "mixture_distribution"]

# The learned scales are softplus(raw) + _MIN_SCALE; raw starts where the scale is 1.
_MIN_SCALE = 1e-5
_RAW_UNIT_SCALE = math.log(math.expm1(1.0 - _MIN_SCALE))
# VampPrior pseudo-inputs are sigmoid(raw); raw starts near sigmoid^-1(0.05), the paper's N(0.05, 0.01) start.
_PSEUDO_INPUT_LOGIT = math.log(0.05 / 0.95)
_PSEUDO_INPUT_SPREAD = 0.2


def standard_normal_prior(latent_dim: int, dtype=tf.float32) -> tfd.Distribution:
    """p(z) = N(0, I_D)."""
    return tfd.MultivariateNormalDiag(loc=tf.zeros([latent_dim], dtype=dtype))


def mixture_distribution(logits, loc, scale) -> tfd.Distribution:
    """sum_k softmax(logits)_k N(loc_k, diag scale_k^2): event (D,), from logits (K,), loc and scale (K, D)."""
    return tfd.MixtureSameFamily(
        mixture_distribution=tfd.Categorical(logits=logits),
        components_distribution=tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale),
    )


class StandardNormalPrior(tfk.layers.Layer):
    """N(0, I_D), with no weights: the textbook prior, and the closed-form KL's partner."""

    learned = False

    def __init__(self, latent_dim: int, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.latent_dim = latent_dim

    def distribution(self) -> tfd.Distribution:
        return standard_normal_prior(self.latent_dim)

    def mixture(self):
        """One component: logits (1,) = 0, loc (1, D) = 0, scale (1, D) = 1."""
        return tf.zeros([1]), tf.zeros([1, self.latent_dim]), tf.ones([1, self.latent_dim])

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim}


class MixturePrior(tfk.layers.Layer):
    """A mixture of K diagonal Gaussians with learned weights, means and scales.

    The means start as draws from N(0, I) (seeded by the model's weight
    initialisation), the scales at 1 and the weights equal: at the start it is
    a spread-out version of N(0, I).

    `per_class`: the prior of a conditional VAE, component k being p(z|y=k); the weights stay equal
    (not trained: p(z|y) does not use them).
    """

    learned = True

    def __init__(self, latent_dim: int, components: int, per_class: bool = False, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.latent_dim = latent_dim
        self.components = components
        self.per_class = per_class
        self.logits = self.add_weight("logits", shape=[components], initializer="zeros", trainable=not per_class)
        self.loc = self.add_weight("loc", shape=[components, latent_dim], initializer=tfk.initializers.RandomNormal())
        self.raw_scale = self.add_weight(
            "raw_scale", shape=[components, latent_dim], initializer=tfk.initializers.Constant(_RAW_UNIT_SCALE)
        )

    def mixture(self):
        return tf.convert_to_tensor(self.logits), tf.convert_to_tensor(self.loc), _positive(self.raw_scale)

    def distribution(self) -> tfd.Distribution:
        return mixture_distribution(*self.mixture())

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim, "components": self.components,
                **({"per_class": True} if self.per_class else {})}


class VampPrior(tfk.layers.Layer):
    """The VampPrior: (1/K) sum_k q(z | u_k), the encoder's posterior at K learned pseudo-inputs u_k.

    Args:
      latent_dim: D.
      components: K, the number of pseudo-inputs.
      image_shape: (H, W, C) of a pseudo-input (the data's shape).
      posterior_params: a function from pseudo-inputs (K, H, W, C) to the posterior's
        loc and scale (K, D) each: the model's own encoder, so that the prior
        follows it as it trains.
    """

    learned = True

    def __init__(self, latent_dim: int, components: int, image_shape, posterior_params=None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.latent_dim = latent_dim
        self.components = components
        self.image_shape = tuple(image_shape)
        self.posterior_params = posterior_params
        self.raw_pseudo_inputs = self.add_weight(
            "raw_pseudo_inputs",
            shape=[components, *self.image_shape],
            initializer=tfk.initializers.RandomNormal(_PSEUDO_INPUT_LOGIT, _PSEUDO_INPUT_SPREAD),
        )

    def pseudo_inputs(self):
        """u (K, H, W, C), in (0, 1) like the images."""
        return tf.sigmoid(self.raw_pseudo_inputs)

    def mixture(self):
        loc, scale = self.posterior_params(self.pseudo_inputs())
        return tf.zeros([self.components]), loc, scale

    def distribution(self) -> tfd.Distribution:
        return mixture_distribution(*self.mixture())

    def get_config(self):
        return {
            **super().get_config(),
            "latent_dim": self.latent_dim,
            "components": self.components,
            "image_shape": list(self.image_shape),
        }


def _positive(raw):
    """softplus(raw) + a floor, written as the posterior's (finite for any raw)."""
    return tf.maximum(raw, 0.0) + tf.math.log(1.0 + tf.exp(-tf.abs(raw))) + _MIN_SCALE



# --------------------------------------------------------------------------- the PRIORS table's factories


def normal(latent_dim: int, **_) -> StandardNormalPrior:
    return StandardNormalPrior(latent_dim, name="prior")


def mog(latent_dim: int, *, components: int, per_class: bool = False, **_) -> MixturePrior:
    return MixturePrior(latent_dim, components, per_class=per_class, name="prior")


def vamp(latent_dim: int, *, components: int, image_shape, posterior_params, **_) -> VampPrior:
    return VampPrior(latent_dim, components, image_shape, posterior_params, name="prior")
