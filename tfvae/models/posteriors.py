"""q(z|x): the encoder's parameters as a distribution, an optional flow on top of it, and the rate layers.

    gaussian:  q(z|x) = N(loc, diag scale^2)
    iaf:       N(loc, diag scale^2) pushed through T inverse autoregressive steps (`--flow-steps T`),
               each conditioned on a context computed from x (`--flow-context`, FLOW_CONTEXTS):
                 features: h (B, H), the encoder's last hidden features, the input of its final Dense
                           layer (Kingma et al. 2016); the default
                 params:   the encoder's output (B, 2D), loc and raw scale (runs written before the choice)

    rate = KL(q(z|x) || p(z)), added to the model's losses exactly once:
      in closed form for gaussian + the N(0, I) prior (KLDivergenceLoss), else
      as a one-sample Monte Carlo estimate at the distortion's z (SampledRateLoss)
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as tfk

from tfvae.models.priors import standard_normal_prior
from tfvae.models.replicas import batch_mean

tfd = tfp.distributions

__all__ = [
    "KLDivergenceLoss",
    "SampledRateLoss",
    "InverseAutoregressiveFlow",
    "posterior_params",
    "make_posterior",
    "features_context",
    "params_context",
]

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


# --------------------------------------------------------------------------- the flow's context (FLOW_CONTEXTS)


def features_context(encoder, x, training=None):
    """x (B, H, W, C) -> params (B, 2D), and h (B, H'), the input of the encoder's last layer, as the context.

    Every encoder is a Sequential whose last layer is the Dense map from h to
    the params (tfvae.models.networks). Its layers are called one by one, so
    the params are the numbers `encoder(x)` gives, with the same weights: a
    checkpoint does not know which context its flow was trained with.
    """
    *body, head = encoder.layers  # `layers` leaves out the InputLayer
    h = x
    for layer in body:
        h = layer(h, training=training)
    return head(h, training=training), h


def params_context(encoder, x, training=None):
    """x (B, H, W, C) -> params (B, 2D), and the params again as the context."""
    params = encoder(x, training=training)
    return params, params


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


# --------------------------------------------------------------------------- the flow posterior (IAF)

# Each step's log scale is 2 tanh(raw / 2): the identity at raw = 0, at most e^2 per step either way.
_LOG_SCALE_BOUND = 2.0


class MaskedDense(tfk.layers.Dense):
    """A dense layer whose kernel is multiplied by a fixed 0/1 mask (in, out): MADE's building block."""

    def __init__(self, units, mask, **kwargs):
        super().__init__(units, **kwargs)
        self.mask = np.asarray(mask, dtype=np.float32)

    def call(self, inputs):
        outputs = tf.tensordot(inputs, self.kernel * self.mask, axes=1)
        if self.use_bias:
            outputs += self.bias
        return self.activation(outputs) if self.activation is not None else outputs

    def get_config(self):
        return {**super().get_config(), "mask": self.mask.tolist()}


def made_masks(latent_dim: int, hidden_units: int):
    """MADE's masks (Germain et al. 2015) for one hidden layer, outputs depending on z_<i only.

    Inputs have degrees 1..D, hidden units cycle through 0..D-1 (degree 0: the
    context alone), output i has degree i: an input reaches a hidden unit of
    degree >= its own, a hidden unit reaches the outputs of higher degree.

    Returns:
      (D, H) and (H, D) masks.
    """
    inputs = np.arange(1, latent_dim + 1)
    hidden = np.arange(hidden_units) % latent_dim
    return (hidden[None, :] >= inputs[:, None]).astype(np.float32), (inputs[None, :] > hidden[:, None]).astype(np.float32)


class AutoregressiveStep(tfk.layers.Layer):
    """One IAF step: z -> z * exp(log_scale) + shift, with (shift, log_scale)_i from z_<i and the context.

    The output layer starts at zero, so a new step is exactly the identity:
    z unchanged and log-determinant 0.
    """

    def __init__(self, latent_dim: int, hidden_units: int, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.latent_dim = latent_dim
        self.hidden_units = hidden_units
        into_hidden, out_of_hidden = made_masks(latent_dim, hidden_units)
        self.hidden = MaskedDense(hidden_units, into_hidden, dtype="float32", name="hidden")
        self.context = tfk.layers.Dense(hidden_units, use_bias=False, dtype="float32", name="context")
        self.shift = MaskedDense(latent_dim, out_of_hidden, kernel_initializer="zeros", dtype="float32", name="shift")
        self.log_scale = MaskedDense(
            latent_dim, out_of_hidden, kernel_initializer="zeros", dtype="float32", name="log_scale"
        )

    def call(self, z, context):
        """z (..., B, D), context (B, C) -> z' (..., B, D), log |det dz'/dz| (..., B)."""
        hidden = tf.nn.relu(self.hidden(z) + self.context(context))
        log_scale = _LOG_SCALE_BOUND * tf.tanh(self.log_scale(hidden) / _LOG_SCALE_BOUND)
        return z * tf.exp(log_scale) + self.shift(hidden), tf.reduce_sum(log_scale, axis=-1)

    def inverse(self, z_out, context):
        """The z that `call` maps to z_out: D fixed-point passes, exact for an autoregressive map (z_i needs z_<i)."""
        z = tf.zeros_like(z_out)
        for _ in range(self.latent_dim):
            hidden = tf.nn.relu(self.hidden(z) + self.context(context))
            log_scale = _LOG_SCALE_BOUND * tf.tanh(self.log_scale(hidden) / _LOG_SCALE_BOUND)
            z = (z_out - self.shift(hidden)) * tf.exp(-log_scale)
        return z

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim, "hidden_units": self.hidden_units}


class InverseAutoregressiveFlow(tfk.layers.Layer):
    """q(z|x) as N(loc, diag scale^2) pushed through `steps` IAF steps (Kingma et al. 2016).

        z_0 = loc + scale * eps,   z_t = z_(t-1) * exp(a_t(z_(t-1), h)) + b_t(z_(t-1), h),   t = 1..T
        log q(z_T|x) = log N(z_0; loc, scale^2) - sum_t sum_i a_t,i

    The context h (B, C) is computed from x (FLOW_CONTEXTS: the encoder's last
    hidden features, or its output): every step is conditioned on x. The order of z is reversed between steps, so that each
    coordinate is transformed given the others at some step, and restored at
    the end: a new flow (every step the identity) is exactly the identity. Sampling and the
    density of the sample take one pass each, with no inverse.
    """

    def __init__(self, latent_dim: int, steps: int, hidden_units: int, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.latent_dim = latent_dim
        self.steps = [AutoregressiveStep(latent_dim, hidden_units, name=f"step_{t}") for t in range(steps)]
        self.hidden_units = hidden_units

    def call(self, z, context):
        """z_0 (..., B, D), context (B, C) -> z_T (..., B, D), sum of log-determinants (..., B)."""
        log_det = tf.zeros(tf.shape(z)[:-1], z.dtype)
        for t, step in enumerate(self.steps):
            if t > 0:
                z = tf.reverse(z, axis=[-1])
            z, step_log_det = step(z, context)
            log_det += step_log_det
        if len(self.steps) % 2 == 0:  # an odd number of reversals: back to the base's order
            z = tf.reverse(z, axis=[-1])
        return z, log_det

    def inverse(self, z, context):
        """z_T (..., B, D) -> z_0: the steps undone in reverse order (used for log q of a z the flow did not draw)."""
        if len(self.steps) % 2 == 0:
            z = tf.reverse(z, axis=[-1])
        for t in reversed(range(len(self.steps))):
            z = self.steps[t].inverse(z, context)
            if t > 0:
                z = tf.reverse(z, axis=[-1])
        return z

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim, "steps": len(self.steps),
                "hidden_units": self.hidden_units}


class SampledRateLoss(tfk.layers.Layer):
    """Adds the rate as a one-sample estimate, log q(z|x) - log p(z) at the distortion's z, averaged over the batch.

    For a flow posterior or a learned prior the KL has no closed form; its
    estimate uses the same z as the distortion, so that the reported ELBO is
    exactly log p(x|z) + log p(z) - log q(z|x) at that z. The input passes through.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, log_q_over_p):
        """log_q_over_p: (B,) at the first sample of z."""
        self.add_loss(batch_mean(log_q_over_p))
        return log_q_over_p


def iaf(latent_dim: int, *, flow_steps: int, hidden_units: int, **_) -> InverseAutoregressiveFlow:
    """The POSTERIORS table's factory for `iaf`."""
    return InverseAutoregressiveFlow(latent_dim, flow_steps, hidden_units, name="flow")
