"""Two stochastic layers: the hierarchical VAE (`--latent-layers 2`), written as a one-layer VAE in its noise.

The model (the HVAE of Tomczak & Welling 2018, after Burda et al. 2016):

    p(x, z1, z2) = p(x | z1, z2) p(z1 | z2) p(z2)        p(z2): the run's prior (normal, mog or vamp), D2 dims
                                                          p(z1|z2) = N(m_p(z2), diag s_p(z2)^2), D1 dims
    q(z1, z2 | x) = q(z1 | x, z2) q(z2 | x)               q(z2|x) = N(loc(x), diag scale(x)^2), the encoder's
                                                          q(z1|x,z2) = N(m_p + s_p m_q, diag (s_p s_q)^2)

q(z1|x,z2) is written relative to p(z1|z2) (the residual form of NVAE, Vahdat & Kautz 2020): m_q and s_q come
from a network of the encoder's last hidden features h(x) and z2. In the noise of z1,
e1 = (z1 - m_p(z2)) / s_p(z2), the model is a one-layer VAE over u = [z2, e1] (D2 + D1 numbers):

    p(u) = p(z2) N(e1; 0, I)                      a mixture when p(z2) is one: every component padded with N(0, I)
    q(u|x) = q(z2|x) N(e1; m_q(h, z2), diag s_q(h, z2)^2)
    p(x|u) = Bernoulli(f([m_p(z2) + s_p(z2) e1, z2]))     the decoder of u: `TopDownDecoder`

and p(x|u) p(u) / q(u|x) = p(x|z1,z2) p(z1|z2) p(z2) / (q(z1|x,z2) q(z2|x)) exactly: the Jacobian of z1 -> e1,
prod s_p(z2), cancels between p and q. So the ELBO, the IWAE bound and the importance-sampled log p(x)
are those of the two-layer model, and everything downstream of the one-layer VAE holds as it is:

    the exported decoder takes u = [z2, e1]: z2 from p(z2) and the noise of z1, no random op in the graph;
    prior.npz holds p(u), so `tfvae sample`, the web page and the evaluator draw u as they draw z;
    `encode_sample(x, eps)` gives u ~ q(u|x) and log q(u|x) for eps (N, D2 + D1), as a flow posterior does.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as tfk

from tfvae.models.posteriors import posterior_params
from tfvae.models.priors import StandardNormalPrior, mixture_distribution

tfd = tfp.distributions
tfb = tfp.bijectors

__all__ = ["TopDownDecoder", "NoisePaddedPrior", "bottom_posterior", "bottom_params", "padded_prior",
           "sample_posterior", "HierarchyBijector"]


class TopDownDecoder(tfk.Model):
    """u = [z2 (D2), e1 (D1)] (B, D2 + D1) -> logits (B, P): z1 = m_p(z2) + s_p(z2) e1, then `body([z1, z2])`.

    Tensors in, tensors out: what gets exported. `prior_1` is p(z1|z2)'s network (a ReLU layer of
    `hidden_units`, then m_p and the raw s_p); `body` is the architecture's decoder of D1 + D2 inputs.
    """

    def __init__(self, top_dim: int, bottom_dim: int, body: tfk.Model, hidden_units: int, **kwargs):
        kwargs.setdefault("dtype", "float32")  # z and z1 stay float32 under mixed precision; the body casts its own
        super().__init__(name="decoder", **kwargs)
        self.top_dim, self.bottom_dim = top_dim, bottom_dim
        self.prior_1 = tfk.Sequential(
            [
                tfk.layers.InputLayer((top_dim,)),
                tfk.layers.Dense(hidden_units, activation="relu"),
                tfk.layers.Dense(2 * bottom_dim, dtype="float32"),
            ],
            name="p_z1",
        )
        self.body = body

    def call(self, u, training=None):
        u = tf.cast(u, tf.float32)
        z2, e1 = u[:, : self.top_dim], u[:, self.top_dim :]
        loc, scale = posterior_params(self.prior_1(z2, training=training))  # p(z1|z2), (B, D1) each
        z1 = loc + scale * e1
        return self.body(tf.concat([z1, z2], axis=-1), training=training)


def bottom_posterior(top_dim: int, bottom_dim: int, hidden_units: int) -> tfk.Model:
    """[h, z2] (B, F + D2) -> the loc and raw scale of q(e1|x, z2) (B, 2 D1): a ReLU layer of `hidden_units`.

    h is the encoder's last hidden features, F = `hidden_units` wide in every architecture of tfvae.models."""
    return tfk.Sequential(
        [
            tfk.layers.InputLayer((hidden_units + top_dim,)),
            tfk.layers.Dense(hidden_units, activation="relu"),
            tfk.layers.Dense(2 * bottom_dim, dtype="float32"),
        ],
        name="q_z1",
    )


class NoisePaddedPrior(tfk.layers.Layer):
    """p(u) = p(z2) N(e1; 0, I): the learned prior of z2 (mog, vamp) with every component padded with N(0, I_D1).

    `mixture()` gives logits (K,), loc (K, D2 + D1) (zeros after D2), scale (K, D2 + D1) (ones after D2), the
    form every prior has, so prior.npz and every sampler carry p(u) unchanged.
    """

    learned = True

    def __init__(self, top: tfk.layers.Layer, bottom_dim: int, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.top = top
        self.bottom_dim = bottom_dim
        self.components = top.components
        self.latent_dim = top.latent_dim + bottom_dim

    def mixture(self):
        logits, loc, scale = self.top.mixture()
        components = tf.shape(loc)[0]
        loc = tf.concat([loc, tf.zeros([components, self.bottom_dim])], axis=-1)
        scale = tf.concat([scale, tf.ones([components, self.bottom_dim])], axis=-1)
        return logits, loc, scale

    def distribution(self) -> tfd.Distribution:
        return mixture_distribution(*self.mixture())


def padded_prior(top: tfk.layers.Layer, bottom_dim: int) -> tfk.layers.Layer:
    """p(u) from the prior of z2: N(0, I_{D2 + D1}) for the normal prior, else `NoisePaddedPrior`."""
    if not top.learned:
        return StandardNormalPrior(top.latent_dim + bottom_dim, name="prior")
    return NoisePaddedPrior(top, bottom_dim, name="padded_prior")


def bottom_params(posterior_1, h, z2):
    """loc, scale of q(e1|x, z2), each (..., D1), for h (B, F) and z2 (B, D2) or (K, B, D2) (h shared by the K)."""
    h = tf.cast(h, tf.float32)
    h = tf.broadcast_to(h, tf.concat([tf.shape(z2)[:-1], tf.shape(h)[-1:]], axis=0))
    inputs = tf.concat([h, z2], axis=-1)
    params = posterior_1(tf.reshape(inputs, [-1, inputs.shape[-1]]))  # (K B, 2 D1)
    return posterior_params(tf.reshape(params, tf.concat([tf.shape(z2)[:-1], tf.shape(params)[-1:]], axis=0)))


def sample_posterior(q_z2, features, eps, posterior_1, top_dim: int):
    """u ~ q(u|x) for the noise eps (..., D2 + D1) ~ N(0, I), and log q(u|x) (...,).

    z2 = loc + scale eps[:D2] (the reparameterisation trick); e1 = m_q + s_q eps[D2:], with
    (m_q, s_q) = posterior_1([h, z2]); log q(u|x) = log q(z2|x) + log N(e1; m_q, s_q^2).
    """
    eps2, eps1 = eps[..., :top_dim], eps[..., top_dim:]
    z2 = q_z2.mean() + q_z2.stddev() * eps2
    log_q = q_z2.log_prob(z2)
    loc, scale = bottom_params(posterior_1, features, z2)
    e1 = loc + scale * eps1
    log_q += tfd.MultivariateNormalDiag(loc, scale).log_prob(e1)
    return tf.concat([z2, e1], axis=-1), log_q


class HierarchyBijector(tfb.Bijector):
    """eps (B, D2 + D1) -> u ~ q(u|x) at fixed features h (B, F): `VAE.encode` of a two-layer model is
    N(0, I) pushed through it, a distribution whose `sample` and `log_prob` (of any u) are exact."""

    def __init__(self, loc, scale, features, posterior_1, top_dim: int):
        super().__init__(forward_min_event_ndims=1, is_constant_jacobian=False, validate_args=False, name="hierarchy")
        self._loc, self._scale, self._features = loc, scale, features
        self._posterior_1, self._top_dim = posterior_1, top_dim

    def _bottom(self, z2):
        return bottom_params(self._posterior_1, self._features, z2)

    def _forward(self, eps):
        z2 = self._loc + self._scale * eps[..., : self._top_dim]
        loc, scale = self._bottom(z2)
        return tf.concat([z2, loc + scale * eps[..., self._top_dim :]], axis=-1)

    def _inverse(self, u):
        z2, e1 = u[..., : self._top_dim], u[..., self._top_dim :]
        loc, scale = self._bottom(z2)
        return tf.concat([(z2 - self._loc) / self._scale, (e1 - loc) / scale], axis=-1)

    def _forward_log_det_jacobian(self, eps):
        z2 = self._loc + self._scale * eps[..., : self._top_dim]
        _, scale = self._bottom(z2)
        return tf.reduce_sum(tf.math.log(self._scale), axis=-1) + tf.reduce_sum(tf.math.log(scale), axis=-1)

    def _inverse_log_det_jacobian(self, u):
        return -self._forward_log_det_jacobian(self._inverse(u))
