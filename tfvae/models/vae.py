"""The VAE: a Keras model made of TFP distribution layers around tensors-in, tensors-out networks.

    x --encoder--> params --q_z--> N(loc, diag scale^2)  [--flow | h--> q(z|x), with --posterior iaf]
      z_k ~ q(z|x), k = 1..K (reparameterised) --decoder--> logits --p_x_given_z--> prod Bernoulli(logits)
    p(z): the `prior` layer (N(0, I), a learned mixture, or the VampPrior)
    rate = KL(q(z|x) || p(z)), added once: closed form for gaussian + normal, else log q(z_1|x) - log p(z_1)

The model's output is the distribution p(x|z); the loss is the run's objective
(`tfvae.models.OBJECTIVES`: the ELBO, or the IWAE bound over K samples) as a
negative number of nats per image. Whatever the objective, the model reports
the one-sample ELBO beside it, with

    distortion = -log p(x|z_1), the first reparameterised sample
    rate       = KL(q(z|x) || p(z)): in closed form for the Gaussian posterior and the N(0, I) prior;
                 otherwise the Monte Carlo estimate log q(z_1|x) - log p(z_1), at the distortion's sample
    elbo       = -(rate + distortion)

Encoder and decoder networks are tensors in, tensors out (they are what gets
exported); the distributions live only in the TFP layers around them.
"""

from __future__ import annotations

import threading

import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as tfk

from tfvae.config import IMAGE_SHAPE, Config
from tfvae.models import ARCHITECTURES, FLOW_CONTEXTS, LIKELIHOODS, OBJECTIVES, POSTERIORS, PRIORS
from tfvae.models.posteriors import KLDivergenceLoss, SampledRateLoss, make_posterior, posterior_params
from tfvae.models.replicas import global_position, replicas

tfd = tfp.distributions
tfpl = tfp.layers

__all__ = ["VAE", "build_vae"]


class VAE(tfk.Model):
    """A VAE with a Bernoulli (or continuous-Bernoulli) decoder, trained on the ELBO or the IWAE bound.

    Calling the model on images x (B, H, W, C) returns p(x|z): for one sample
    per image (K = 1) a distribution with batch shape (B,), for K samples one
    with batch shape (K, B). The rate is in `model.losses`. Training with `fit`
    minimises the negative objective and reports `elbo`, `rate` and
    `distortion` (and `objective` when it is not the plain ELBO) in nats per image.

    Args:
      latent_dim: D, the dimension of z.
      hidden_units: width of the dense hidden layers.
      architecture: a key of `tfvae.models.ARCHITECTURES`.
      image_shape: shape of one image, (H, W, C).
      seed: seeds the posterior noise eps, drawn statelessly from (seed, training
        step, position in the global batch): a resumed run draws what an
        uninterrupted one would, and N replicas draw what one device would.
      hidden_layers: dense hidden layers in the encoder and in the decoder.
      filters: channels of the first convolution (conv architectures).
      objective: a key of `tfvae.models.OBJECTIVES`.
      train_samples: K, samples of z per image in the objective.
      warmup_epochs: epochs of KL warm-up (the weight itself is `kl_weight`, set by
        `tfvae.callbacks.KLWarmup`); only decides whether `objective` is reported.
      posterior: a key of `tfvae.models.POSTERIORS` (gaussian, iaf).
      flow_steps: steps of the iaf flow.
      flow_context: what conditions the flow's steps, a key of `tfvae.models.FLOW_CONTEXTS`
        (features, the encoder's last hidden layer; params, its output); unused without a flow.
      flow_hidden_units: width of each flow step's autoregressive network; None: `hidden_units`.
      prior: a key of `tfvae.models.PRIORS` (normal, mog, vamp).
      prior_components: components of a mog prior, pseudo-inputs of a vamp prior.
      likelihood: p(x|z), a key of `tfvae.models.LIKELIHOODS`.

    Example:
    >>> vae = VAE(latent_dim=2, hidden_units=8)
    >>> p_x_given_z = vae(tf.zeros([3, 28, 28, 1]))
    >>> p_x_given_z.log_prob(tf.zeros([3, 28, 28, 1])).shape
    TensorShape([3])
    """

    def __init__(
        self,
        latent_dim=20,
        hidden_units=500,
        architecture="mlp",
        image_shape=IMAGE_SHAPE,
        seed=0,
        hidden_layers=1,
        filters=32,
        objective="elbo",
        train_samples=1,
        warmup_epochs=0,
        posterior="gaussian",
        flow_steps=2,
        flow_context="features",
        flow_hidden_units=None,
        prior="normal",
        prior_components=500,
        likelihood="bernoulli",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.seed = seed
        self.latent_dim = latent_dim
        self.hidden_units = hidden_units
        self.architecture = architecture
        self.image_shape = tuple(image_shape)
        self.hidden_layers = hidden_layers
        self.filters = filters
        self.objective = objective
        self.train_samples = train_samples
        self.warmup_epochs = warmup_epochs
        self.posterior = posterior
        self.flow_steps = flow_steps
        self.flow_context = flow_context
        self.flow_hidden_units = flow_hidden_units
        self.prior_name = prior
        self.prior_components = prior_components
        self.likelihood = likelihood
        networks = ARCHITECTURES[architecture]
        sizes = dict(hidden_units=hidden_units, hidden_layers=hidden_layers, filters=filters)
        self.encoder = networks.encoder(latent_dim, self.image_shape, **sizes)
        self.decoder = networks.decoder(latent_dim, self.image_shape, **sizes)
        self.q_z = tfpl.DistributionLambda(make_posterior, dtype="float32", name="q_z")
        flow = POSTERIORS[posterior]
        flow_sizes = dict(flow_steps=flow_steps, hidden_units=flow_hidden_units or hidden_units)
        self.flow = flow(latent_dim, **flow_sizes) if flow is not None else None
        self.prior = PRIORS[prior](
            latent_dim, components=prior_components, image_shape=self.image_shape, posterior_params=self.encode_params
        )
        # The rate: closed form for the textbook pair, else a one-sample estimate at the distortion's z.
        self.closed_form_rate = self.flow is None and not self.prior.learned
        self.rate_loss = KLDivergenceLoss(latent_dim, name="rate") if self.closed_form_rate else SampledRateLoss(name="rate")
        self.p_x_given_z = LIKELIHOODS[likelihood].layer(self.image_shape)
        self.objective_loss = OBJECTIVES[objective]
        # beta, the rate's weight in the objective: 1 except during warm-up (set per epoch by a callback).
        self.kl_weight = tf.Variable(1.0, trainable=False, dtype=tf.float32, name="kl_weight")
        self.elbo_tracker = tfk.metrics.Mean(name="elbo")
        self.rate_tracker = tfk.metrics.Mean(name="rate")
        self.distortion_tracker = tfk.metrics.Mean(name="distortion")
        # The plain one-sample ELBO needs no second figure; anything else reports its own value too.
        self.objective_tracker = None
        if (objective, train_samples, warmup_epochs) != ("elbo", 1, 0):
            self.objective_tracker = tfk.metrics.Mean(name="objective")
        # log q(z_k|x) - log p(z_k) of the last call, per thread (tf.distribute runs a thread per replica).
        self._latents = threading.local()

    def call(self, x, training=None):
        params, context = self._encode(x, training)  # (B, 2D), and the flow's context (B, C) or None
        q_z = self.q_z(params)  # the Gaussian N(loc, scale^2): batch (B,), event (D,)
        if self.closed_form_rate:
            q_z = self.rate_loss(q_z)
        eps = self._posterior_noise(tf.shape(x)[0], training)  # (B, D), or (K, B, D) ~ N(0, I)
        z, log_q = self._posterior_sample(q_z, context, eps)  # (B, D) and (B,), or K-first
        log_q_over_p = log_q - self.prior.distribution().log_prob(z)  # (B,) or (K, B)
        if not self.closed_form_rate:
            self.rate_loss(log_q_over_p if self.train_samples == 1 else log_q_over_p[0])
        self._latents.log_q_over_p = log_q_over_p
        if self.train_samples == 1:
            logits = self.decoder(z, training=training)  # (B, P)
        else:
            logits = self.decoder(tf.reshape(z, [-1, self.latent_dim]), training=training)  # (K B, P)
            logits = tf.reshape(logits, [self.train_samples, -1, logits.shape[-1]])  # (K, B, P)
        return self.p_x_given_z(logits)

    def _posterior_noise(self, batch_size, training):
        """eps for this replica's rows of the global batch, a pure function of (seed, step, position).

        Every replica draws the noise of the whole global batch, (global B, K, D),
        and keeps the rows of its own images, so that training on N replicas
        sees exactly the noise that training on one device would, however the
        global batch is split (the last one may give a replica fewer images, or none).
        The K samples of an image are its row: K = 1 draws what the one-sample model does.

        Returns:
          (B, D) for K = 1, else (K, B, D).
        """
        optimizer = getattr(self, "optimizer", None)
        step = tf.cast(optimizer.iterations, tf.int64) if optimizer is not None else tf.constant(0, tf.int64)
        seed = tf.random.experimental.stateless_fold_in(tf.constant([self.seed, 0], tf.int64), step)
        seed = tf.random.experimental.stateless_fold_in(seed, 1 if training else 0)
        offset, global_batch_size = global_position(batch_size)
        if self.train_samples == 1:
            eps = tf.random.stateless_normal([global_batch_size, self.latent_dim], seed=seed)
            return eps[offset : offset + batch_size]
        eps = tf.random.stateless_normal([global_batch_size, self.train_samples, self.latent_dim], seed=seed)
        return tf.transpose(eps[offset : offset + batch_size], [1, 0, 2])  # (K, B, D)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None):
        """The negative objective per image, averaged over the global batch whatever its split across replicas.

        Gradients are summed over replicas, so a replica holding B_local of the
        B_global images contributes (its mean) * B_local / B_global: the sum over
        its images divided by the global batch size. A replica with no images
        contributes 0 (never NaN).
        """
        distortion = LIKELIHOODS[self.likelihood].distortion(y_pred, y)  # (B,), or (K, B)
        log_q_over_p = self._latents.log_q_over_p  # the same shape, from this thread's call
        if distortion.shape.rank == 1:  # one sample per image: the (K, B) layout with K = 1
            distortion, log_q_over_p = distortion[None], log_q_over_p[None]
        rate = tf.add_n(self.losses)  # scalar: the batch mean, added by KLDivergenceLoss
        first = distortion[0]  # (B,): the one-sample ELBO is reported whatever the objective
        batch_size = tf.shape(first)[0]
        self.distortion_tracker.update_state(first)
        self.rate_tracker.update_state(rate, sample_weight=tf.cast(batch_size, tf.float32))
        self.elbo_tracker.update_state(-(first + rate))
        loss = self.objective_loss(distortion, log_q_over_p, rate, self.kl_weight)
        if self.objective_tracker is not None:
            self.objective_tracker.update_state(-loss, sample_weight=tf.cast(batch_size, tf.float32))
        if replicas() > 1:
            _, global_batch_size = global_position(batch_size)
            loss *= tf.cast(batch_size, tf.float32) / tf.cast(global_batch_size, tf.float32)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight):
        return {m.name: m.result() for m in self.metrics}

    @property
    def metrics(self):
        trackers = [self.elbo_tracker, self.rate_tracker, self.distortion_tracker]
        return trackers + ([self.objective_tracker] if self.objective_tracker is not None else [])

    def decode_logits(self, z):
        """z (N, D) -> logits (N, H, W, C): a plain tensor function, no sampling."""
        logits = self.decoder(z, training=False)
        return tf.reshape(logits, [-1, *self.image_shape])

    def decode_mean(self, z):
        """z (N, D) -> E[x|z] (N, H, W, C), the likelihood's mean: what sample grids show."""
        return LIKELIHOODS[self.likelihood].mean(self.decode_logits(z))

    def encode_params(self, x):
        """x (N, H, W, C) -> loc (N, D), scale (N, D) of q(z|x)."""
        return posterior_params(self.encoder(x, training=False))

    def encode_sample(self, x, eps):
        """x (N, H, W, C), eps (N, D) or (K, N, D) ~ N(0, I) -> z ~ q(z|x) and log q(z|x), (N, D) and (N,) (or K-first).

        z is the posterior's sample for that noise: loc + scale * eps, pushed
        through the flow for --posterior iaf. This is what the `encode_sample`
        export signature computes.
        """
        params, context = self._encode(x, training=False)
        return self._posterior_sample(make_posterior(params), context, eps)

    def _encode(self, x, training=None):
        """x (B, H, W, C) -> params (B, 2D) of N(loc, scale^2), and the flow's context (B, C) (None without a flow).

        Without a flow this is `encoder(x)`; with one, FLOW_CONTEXTS[flow_context]
        gives the same params and the context every step of the flow is conditioned on.
        """
        if self.flow is None:
            return self.encoder(x, training=training), None
        return FLOW_CONTEXTS[self.flow_context](self.encoder, x, training=training)

    def _posterior_sample(self, q_z, context, eps):
        """z ~ q(z|x) for the noise eps, and log q(z|x) of that z.

        z_0 = loc + scale * eps, the reparameterisation trick (differentiable in phi); with a flow,
        z = flow(z_0 | context) and log q(z|x) = log N(z_0; loc, scale^2) - log |det dz/dz_0|.
        """
        z = q_z.mean() + q_z.stddev() * eps
        log_q = q_z.log_prob(z)
        if self.flow is not None:
            z, log_det = self.flow(z, context)
            log_q -= log_det
        return z, log_q

    def prior_mixture(self):
        """p(z) as mixture parameters: logits (K,), loc (K, D), scale (K, D) (N(0, I): one component)."""
        return self.prior.mixture()

    def reconstruct(self, x):
        """x (N, H, W, C) -> the decoder's means for one z ~ q(z|x) per image (the first of K), (N, H, W, C)."""
        means = self(x).mean()
        return means if self.train_samples == 1 else means[0]

    def get_config(self):
        return {
            **super().get_config(),
            "latent_dim": self.latent_dim,
            "hidden_units": self.hidden_units,
            "architecture": self.architecture,
            "image_shape": list(self.image_shape),
            "seed": self.seed,
            "hidden_layers": self.hidden_layers,
            "filters": self.filters,
            "objective": self.objective,
            "train_samples": self.train_samples,
            "warmup_epochs": self.warmup_epochs,
            "posterior": self.posterior,
            "flow_steps": self.flow_steps,
            "flow_context": self.flow_context,
            "flow_hidden_units": self.flow_hidden_units,
            "prior": self.prior_name,
            "prior_components": self.prior_components,
            "likelihood": self.likelihood,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)


def build_vae(config: Config) -> VAE:
    """The VAE of a run config, built (weights created) and ready to compile."""
    vae = VAE(
        latent_dim=config.latent_dim,
        hidden_units=config.hidden_units,
        architecture=config.architecture,
        image_shape=config.image_shape,
        seed=config.seed,
        hidden_layers=config.hidden_layers,
        filters=config.filters,
        objective=config.objective,
        train_samples=config.train_samples,
        warmup_epochs=config.warmup_epochs,
        posterior=config.posterior,
        flow_steps=config.flow_steps,
        flow_context=config.flow_context,
        flow_hidden_units=config.flow_hidden_units,
        prior=config.prior,
        prior_components=config.prior_components,
        likelihood=config.likelihood,
    )
    vae(tf.zeros([1, *config.image_shape]))  # creates the weights
    return vae
