"""The VAE: a Keras model made of TFP distribution layers.

    x --encoder--> params --q_z--> q(z|x) = N(loc, diag scale^2)  [+ rate = KL(q(z|x) || p(z)), added once]
      z ~ q(z|x) (reparameterised) --decoder--> logits --p_x_given_z--> prod Bernoulli(logits)

The model's output is the distribution p(x|z); the loss is the negative ELBO
in nats per image, distortion + rate, with

    distortion = -log p(x|z), one reparameterised z ~ q(z|x)
    rate       = KL(q(z|x) || N(0, I)), in closed form

Encoder and decoder networks are tensors in, tensors out (they are what gets
exported); the distributions live only in the TFP layers around them.
"""

from __future__ import annotations

import math

import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as tfk

from tfvae.config import IMAGE_SHAPE, Config

tfd = tfp.distributions
tfpl = tfp.layers

__all__ = [
    "ARCHITECTURES",
    "VAE",
    "KLDivergenceLoss",
    "build_vae",
    "posterior_params",
    "standard_normal_prior",
]

# Keeps the posterior scale away from 0, where log(scale) and the KL blow up.
_MIN_SCALE = 1e-5


def mlp_encoder(latent_dim: int, hidden_units: int, image_shape=IMAGE_SHAPE) -> tfk.Model:
    """x (B, 28, 28, 1) -> params (B, 2D): one hidden ReLU layer, then loc and raw scale."""
    return tfk.Sequential(
        [
            tfk.layers.InputLayer(image_shape),
            tfk.layers.Flatten(),
            tfk.layers.Dense(hidden_units, activation="relu"),
            # float32 even under mixed precision: these are distribution parameters.
            tfk.layers.Dense(2 * latent_dim, dtype="float32"),
        ],
        name="encoder",
    )


def mlp_decoder(latent_dim: int, hidden_units: int, image_shape=IMAGE_SHAPE) -> tfk.Model:
    """z (B, D) -> logits (B, 784): one hidden ReLU layer, then a logit per pixel."""
    return tfk.Sequential(
        [
            tfk.layers.InputLayer((latent_dim,)),
            tfk.layers.Dense(hidden_units, activation="relu"),
            tfk.layers.Dense(math.prod(image_shape), dtype="float32"),
        ],
        name="decoder",
    )


# name -> (encoder factory, decoder factory); each factory takes (latent_dim, hidden_units, image_shape).
ARCHITECTURES = {"mlp": (mlp_encoder, mlp_decoder)}


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


def standard_normal_prior(latent_dim: int, dtype=tf.float32) -> tfd.Distribution:
    """p(z) = N(0, I_D)."""
    return tfd.MultivariateNormalDiag(loc=tf.zeros([latent_dim], dtype=dtype))


def _make_posterior(params):
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
        self.add_loss(_batch_mean(rate))
        return q_z

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim}


class VAE(tfk.Model):
    """The textbook VAE with a Bernoulli decoder, trained on the negative ELBO.

    Calling the model on images x returns p(x|z) for one reparameterised
    z ~ q(z|x); the rate is in `model.losses`. Training with `fit` minimises
    distortion + rate and reports `elbo`, `rate` and `distortion` in nats per
    image.

    Args:
      latent_dim: D, the dimension of z.
      hidden_units: width of the hidden layers.
      architecture: a key of `ARCHITECTURES`.
      image_shape: shape of one image, (28, 28, 1).
      seed: seeds the posterior noise eps, drawn statelessly from (seed, training
        step, position in the global batch): a resumed run draws what an
        uninterrupted one would, and N replicas draw what one device would.

    Example:
    >>> vae = VAE(latent_dim=2, hidden_units=8)
    >>> p_x_given_z = vae(tf.zeros([3, 28, 28, 1]))
    >>> p_x_given_z.log_prob(tf.zeros([3, 28, 28, 1])).shape
    TensorShape([3])
    """

    def __init__(self, latent_dim=20, hidden_units=500, architecture="mlp", image_shape=IMAGE_SHAPE, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.latent_dim = latent_dim
        self.hidden_units = hidden_units
        self.architecture = architecture
        self.image_shape = tuple(image_shape)
        make_encoder, make_decoder = ARCHITECTURES[architecture]
        self.encoder = make_encoder(latent_dim, hidden_units, self.image_shape)
        self.decoder = make_decoder(latent_dim, hidden_units, self.image_shape)
        self.q_z = tfpl.DistributionLambda(_make_posterior, dtype="float32", name="q_z")
        self.rate_loss = KLDivergenceLoss(latent_dim, name="rate")
        self.p_x_given_z = tfpl.IndependentBernoulli(
            self.image_shape, convert_to_tensor_fn=tfd.Distribution.mean, dtype="float32", name="p_x_given_z"
        )
        self.elbo_tracker = tfk.metrics.Mean(name="elbo")
        self.rate_tracker = tfk.metrics.Mean(name="rate")
        self.distortion_tracker = tfk.metrics.Mean(name="distortion")

    def call(self, x, training=None):
        q_z = self.rate_loss(self.q_z(self.encoder(x, training=training)))  # q(z|x): batch (B,), event (D,)
        eps = self._posterior_noise(tf.shape(x)[0], training)  # (B, D) ~ N(0, I)
        z = q_z.mean() + q_z.stddev() * eps  # the reparameterisation trick: z ~ q(z|x), differentiable in phi
        logits = self.decoder(z, training=training)  # (B, 784)
        return self.p_x_given_z(logits)

    def _posterior_noise(self, batch_size, training):
        """eps for this replica's rows of the global batch, a pure function of (seed, step, position).

        Every replica draws the noise of the whole global batch, (global B, D),
        and keeps the rows of its own images, so that training on N replicas
        sees exactly the noise that training on one device would, however the
        global batch is split (the last one may give a replica fewer images, or none).
        """
        optimizer = getattr(self, "optimizer", None)
        step = tf.cast(optimizer.iterations, tf.int64) if optimizer is not None else tf.constant(0, tf.int64)
        seed = tf.random.experimental.stateless_fold_in(tf.constant([self.seed, 0], tf.int64), step)
        seed = tf.random.experimental.stateless_fold_in(seed, 1 if training else 0)
        offset, global_batch_size = _global_position(batch_size)
        eps = tf.random.stateless_normal([global_batch_size, self.latent_dim], seed=seed)
        return eps[offset : offset + batch_size]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None):
        """Negative ELBO per image, averaged over the global batch whatever its split across replicas.

        Gradients are summed over replicas, so a replica holding B_local of the
        B_global images contributes (its mean) * B_local / B_global: the sum over
        its images divided by the global batch size. A replica with no images
        contributes 0 (never NaN).
        """
        distortion = -y_pred.log_prob(tf.cast(y, tf.float32))  # (B,)
        rate = tf.add_n(self.losses)  # scalar: the batch mean, added by KLDivergenceLoss
        batch_size = tf.shape(distortion)[0]
        self.distortion_tracker.update_state(distortion)
        self.rate_tracker.update_state(rate, sample_weight=tf.cast(batch_size, tf.float32))
        self.elbo_tracker.update_state(-(distortion + rate))
        loss = _batch_mean(distortion) + rate
        if _replicas() > 1:
            _, global_batch_size = _global_position(batch_size)
            loss *= tf.cast(batch_size, tf.float32) / tf.cast(global_batch_size, tf.float32)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight):
        return {m.name: m.result() for m in self.metrics}

    @property
    def metrics(self):
        return [self.elbo_tracker, self.rate_tracker, self.distortion_tracker]

    def decode_logits(self, z):
        """z (N, D) -> logits (N, 28, 28, 1): a plain tensor function, no sampling."""
        logits = self.decoder(z, training=False)
        return tf.reshape(logits, [-1, *self.image_shape])

    def encode_params(self, x):
        """x (N, 28, 28, 1) -> loc (N, D), scale (N, D) of q(z|x)."""
        return posterior_params(self.encoder(x, training=False))

    def get_config(self):
        return {
            **super().get_config(),
            "latent_dim": self.latent_dim,
            "hidden_units": self.hidden_units,
            "architecture": self.architecture,
            "image_shape": list(self.image_shape),
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)


def _batch_mean(values):
    """The mean of (B,) `values`, and 0 for an empty batch (a replica left without images)."""
    return tf.math.divide_no_nan(tf.reduce_sum(values), tf.cast(tf.shape(values)[0], values.dtype))


def _replicas() -> int:
    context = tf.distribute.get_replica_context()
    return context.num_replicas_in_sync if context is not None else 1


def _global_position(batch_size):
    """(offset of this replica's first image in the global batch, global batch size).

    Replicas hold consecutive slices of the global batch, in replica order (how
    tf.distribute splits a batch, also when the last one is uneven); the
    slices' sizes are gathered from every replica. One device: (0, batch_size).
    """
    if _replicas() == 1:
        return 0, batch_size
    context = tf.distribute.get_replica_context()
    sizes = context.all_gather(tf.reshape(tf.cast(batch_size, tf.int32), [1]), axis=0)  # (replicas,)
    offset = tf.reduce_sum(sizes[: context.replica_id_in_sync_group])
    return offset, tf.reduce_sum(sizes)


def build_vae(config: Config) -> VAE:
    """The VAE of a run config, built (weights created) and ready to compile."""
    vae = VAE(
        latent_dim=config.latent_dim,
        hidden_units=config.hidden_units,
        architecture=config.architecture,
        image_shape=config.image_shape,
        seed=config.seed,
    )
    vae(tf.zeros([1, *config.image_shape]))  # creates the weights
    return vae
