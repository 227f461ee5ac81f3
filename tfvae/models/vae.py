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

A conditional VAE (`classes` N > 0; Sohn et al. 2015) models p(x|y) for class labels y in 0..N-1:
q(z|x,y), p(x|z,y) and p(z|y). The label enters both networks as a one-hot vector made in the graph from
int32 labels (`tf.one_hot`, a builtin TFLite op; `networks.conditioned_input`); p(z|y) is N(0, I) for
`prior="normal"` or, for `prior="mog"`, component y of a learned mixture with one component per class.
"""

from __future__ import annotations

import inspect
import math
import os
import re
import threading

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras as tfk

from tfvae.config import IMAGE_SHAPE, Config
from tfvae.errors import ConfigError
from tfvae.models import ARCHITECTURES, FLOW_CONTEXTS, LIKELIHOODS, OBJECTIVES, POSTERIORS, PRIORS
from tfvae.models.posteriors import (KLDivergenceLoss, SampledRateLoss, features_context, make_posterior,
                                     posterior_params)
from tfvae.models import hierarchy
from tfvae.models.replicas import global_position, replicas

tfd = tfp.distributions
tfb = tfp.bijectors
tfpl = tfp.layers

__all__ = ["VAE", "build_vae", "DEFAULT_LEARNING_RATE"]

DEFAULT_LEARNING_RATE = 1e-3  # `vae.compile()` with no optimizer: Adam at this step size, as `tfvae train`
_SAMPLE_BATCH = 1024  # latents per decoder call in `sample`: bounds memory for large n


@tfk.utils.register_keras_serializable(package="tfvae")
class VAE(tfk.Model):
    """A VAE with a Bernoulli (or continuous-Bernoulli) decoder, trained on the ELBO or the IWAE bound.

    A Keras model like any other: `compile()`, `fit(x)` on a NumPy array of
    images in [0, 1] ((N, H, W) or (N, H, W, C)) or on a `tf.data.Dataset` of
    batched images or of `(images, anything)` pairs, `evaluate`, callbacks,
    `save("m.keras")` and `tf_keras.models.load_model("m.keras")`. A Bernoulli
    model binarizes grey values afresh at every training step (x ~ Bernoulli(pixel),
    a stateless draw from (seed, step)) and validation images with one fixed draw
    per batch position; binary images pass unchanged.

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
      encoder: your own Keras model from images (B, H, W, C) to the 2·D numbers of
        q(z|x), loc then raw scale (scale = softplus(raw) + 1e-5); None: `architecture`'s.
      decoder: your own Keras model from z (B, D) to the logits of an image,
        (B, H * W * C) or (B, H, W, C); None: `architecture`'s. Give both or neither;
        with them `architecture` is None and the size options are unused.
      classes: 0, an unconditional VAE of p(x); N > 0, a conditional VAE of p(x|y) on N classes: every
        call takes int labels in 0..N-1 beside the images or latents (`vae((x, labels))`, `fit(x, y)`,
        `decode(z, labels)`, `sample(n, labels=...)`); `prior` normal (p(z|y) = N(0, I)) or mog (one
        learned component per class; `prior_components` is then unused). Not with vamp or your own networks.
      class_names: the N class names in label order (strings), kept in the saved model (an export's
        manifest lists them); None: "0", ..., "N-1".

    Example:
    >>> vae = VAE(latent_dim=2, hidden_units=8)
    >>> p_x_given_z = vae(tf.zeros([3, 28, 28, 1]))
    >>> p_x_given_z.log_prob(tf.zeros([3, 28, 28, 1])).shape
    TensorShape([3])
    >>> vae.compile()
    >>> x = np.random.default_rng(0).random((32, 28, 28)).astype("float32")  # grey values: binarized per step
    >>> sorted(vae.fit(x, epochs=1, batch_size=16, verbose=0).history)
    ['distortion', 'elbo', 'rate']
    >>> vae.encode(x[:2]).sample().shape, vae.decode(tf.zeros([2, 2])).mean().shape
    (TensorShape([2, 2]), TensorShape([2, 28, 28, 1]))
    >>> bool(np.array_equal(vae.sample(4, seed=1), vae.sample(4, seed=1)))
    True
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
        encoder=None,
        decoder=None,
        classes=0,
        class_names=None,
        latent_layers=1,
        latent_dim_1=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        own_networks = encoder is not None or decoder is not None
        _check_classes(classes, prior, own_networks)
        if latent_layers == 2 and own_networks:
            raise ValueError("a two-layer VAE (latent_layers=2) builds its own networks (its decoder takes z2 and "
                             "the noise of z1); give your encoder and decoder to a one-layer VAE")
        _check_model_options(
            latent_layers=latent_layers, latent_dim_1=latent_dim_1,
            latent_dim=latent_dim, hidden_units=hidden_units, architecture=architecture if not own_networks else "mlp",
            image_shape=image_shape, seed=seed, hidden_layers=hidden_layers, filters=filters, objective=objective,
            train_samples=train_samples, warmup_epochs=warmup_epochs, posterior=posterior, flow_steps=flow_steps,
            flow_context=flow_context, flow_hidden_units=flow_hidden_units, prior=prior,
            prior_components=prior_components, likelihood=likelihood,
        )
        if own_networks:
            architecture = None  # the networks are the user's
        self.seed = seed
        # Two stochastic layers (tfvae.models.hierarchy): the model is a one-layer VAE over u = [z2, e1], and
        # `latent_dim` is the width of u, D2 + D1, what the decoder takes and prior.npz holds.
        self.latent_layers = int(latent_layers)
        self.latent_dim_1 = (latent_dim_1 or latent_dim) if self.latent_layers == 2 else None  # D1
        self.top_latent_dim = latent_dim  # D2 (one layer: D)
        self.latent_dim = latent_dim + (self.latent_dim_1 or 0)
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
        self.classes = int(classes)  # N, classes of a conditional model; 0: unconditional
        self.class_names = _class_names(class_names, self.classes)  # N strings, or None
        if own_networks:
            self.encoder, self.decoder = _own_networks(encoder, decoder, latent_dim, self.image_shape)
            if posterior == "iaf" and flow_context == "features":
                raise ValueError("with your own encoder, posterior='iaf' needs flow_context='params' (the "
                                 "'features' context reads the last hidden layer of tfvae's own encoders)")
        else:
            networks = ARCHITECTURES[architecture]
            sizes = dict(hidden_units=hidden_units, hidden_layers=hidden_layers, filters=filters)
            if self.classes:  # (left out otherwise: the unconditional factories are called as they always were)
                sizes["classes"] = self.classes
            self.encoder = networks.encoder(latent_dim, self.image_shape, **sizes)
            if self.latent_layers == 1:
                self.decoder = networks.decoder(latent_dim, self.image_shape, **sizes)
            else:
                body = networks.decoder(self.latent_dim, self.image_shape, **sizes)  # [z1, z2] -> logits
                self.decoder = hierarchy.TopDownDecoder(latent_dim, self.latent_dim_1, body, hidden_units)
                self.posterior_1 = hierarchy.bottom_posterior(latent_dim, self.latent_dim_1, hidden_units)
        self.q_z = tfpl.DistributionLambda(make_posterior, dtype="float32", name="q_z")
        flow = POSTERIORS[posterior]
        flow_sizes = dict(flow_steps=flow_steps, hidden_units=flow_hidden_units or hidden_units)
        self.flow = flow(latent_dim, **flow_sizes) if flow is not None else None
        self.prior = PRIORS[prior](
            latent_dim, components=self.classes or prior_components, image_shape=self.image_shape,
            posterior_params=self.encode_params if self.latent_layers == 1 else self._top_params,
            per_class=bool(self.classes),
        )
        if self.latent_layers == 2:  # p(u) = p(z2) N(e1; 0, I)
            self.prior = hierarchy.padded_prior(self.prior, self.latent_dim_1)
        # The rate: closed form for the textbook pair, else a one-sample estimate at the distortion's z.
        self.closed_form_rate = self.flow is None and not self.prior.learned and self.latent_layers == 1
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
        # Bernoulli models binarize their inputs in train_step / test_step (grey values become x ~ Bernoulli(pixel);
        # binary values pass unchanged). `tfvae train` turns it off: its pipeline binarizes per epoch already.
        self.binarize_inputs = True

    def call(self, x, training=None):
        """x: images (B, H, W, C); for a conditional model the pair (images, labels (B,) int)."""
        labels = None
        if self.classes:
            if not isinstance(x, (tuple, list)) or len(x) != 2:
                raise ValueError(f"this VAE is conditional on {self.classes} classes: call it on (images, labels)")
            x, labels = x
        params, context = self._encode(x, training, labels)  # (B, 2D), and the flow's context (B, C) or None
        q_z = self.q_z(params)  # the Gaussian N(loc, scale^2): batch (B,), event (D,)
        if self.closed_form_rate:
            q_z = self.rate_loss(q_z)
        eps = self._posterior_noise(tf.shape(x)[0], training)  # (B, D), or (K, B, D) ~ N(0, I)
        z, log_q = self._posterior_sample(q_z, context, eps)  # (B, D) and (B,), or K-first
        log_q_over_p = log_q - self._log_prior(z, labels)  # (B,) or (K, B)
        if not self.closed_form_rate:
            self.rate_loss(log_q_over_p if self.train_samples == 1 else log_q_over_p[0])
        self._latents.log_q_over_p = log_q_over_p
        if self.train_samples == 1:
            logits = self._decoder_logits(z, training, labels)  # (B, P)
        else:
            if labels is not None:  # the K samples of an image share its label: (K B,)
                labels = tf.tile(labels, [self.train_samples])
            logits = self._decoder_logits(tf.reshape(z, [-1, self.latent_dim]), training, labels)  # (K B, P)
            logits = tf.reshape(logits, [self.train_samples, -1, logits.shape[-1]])  # (K, B, P)
        return self.p_x_given_z(logits)

    def _one_hot(self, labels):
        """int labels (B,) -> one-hot (B, N) float32, made in the graph (tf.one_hot: a builtin TFLite op)."""
        return tf.one_hot(tf.cast(labels, tf.int32), self.classes, dtype=tf.float32)

    def _log_prior(self, z, labels=None):
        """log p(z) (or log p(z|y) for labels (B,)) of z (B, D) or (K, B, D) -> (B,) or (K, B).

        p(z|y) is N(0, I) for the normal prior, and component y of the mixture for a per-class one (mog).
        """
        if labels is None or not self.prior.learned:
            return self.prior.distribution().log_prob(z)
        _, loc, scale = self.prior.mixture()  # (N, D) each
        labels = tf.cast(labels, tf.int32)
        return tfd.MultivariateNormalDiag(tf.gather(loc, labels), tf.gather(scale, labels)).log_prob(z)

    def _decoder_logits(self, z, training=None, labels=None):
        """z (N, D) [, labels (N,)] -> logits (N, P), P = H * W * C (your own decoder may return (N, H, W, C))."""
        if labels is not None:
            z = tf.concat([z, self._one_hot(labels)], axis=-1)  # (N, D + N_classes)
        logits = self.decoder(z, training=training)
        if self.architecture is None:
            logits = tf.reshape(logits, [-1, math.prod(self.image_shape)])
        return logits

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

    def decode_logits(self, z, labels=None):
        """z (N, D) float32 [, labels (N,) int32 for a conditional model] -> logits (N, H, W, C): a plain tensor
        function, no sampling (what the exported decoder computes; the one-hot is made in the graph)."""
        labels = self._labels(labels, _rows(z))
        if labels is not None:
            z = tf.concat([z, self._one_hot(labels)], axis=-1)
        logits = self.decoder(z, training=False)
        return tf.reshape(logits, [-1, *self.image_shape])

    def _labels(self, labels, n, what="labels"):
        """Labels as the model takes them: None for an unconditional model, int32 (n,) for a conditional one.

        Raises a one-sentence ValueError for labels given to an unconditional model, none given to a
        conditional one, or (for NumPy values: tensors are checked by shape only) values outside 0..N-1.
        """
        if not self.classes:
            if labels is not None:
                raise ValueError(f"this VAE is unconditional (classes=0): it takes no {what}")
            return None
        if labels is None:
            raise ValueError(f"this VAE is conditional on {self.classes} classes: pass {what}, one class index in "
                             f"0..{self.classes - 1} per row")
        if tf.is_tensor(labels):
            labels = tf.cast(labels, tf.int32)
            return tf.broadcast_to(labels, [n]) if labels.shape.rank == 0 else labels
        values = np.asarray(labels)
        if values.dtype.kind not in "iu" or values.ndim > 1:
            raise ValueError(f"{what} must be integer class indices, an int or (N,), got {values.dtype} "
                             f"of shape {values.shape}")
        if values.size and (values.min() < 0 or values.max() >= self.classes):
            raise ValueError(f"{what} must lie in 0..{self.classes - 1} (the model's {self.classes} classes), "
                             f"got {int(values.min())} to {int(values.max())}")
        if values.ndim == 0:
            return tf.fill(tf.reshape(n, [1]), tf.constant(int(values), tf.int32))
        if not tf.is_tensor(n) and len(values) != int(n):
            raise ValueError(f"{what} must hold one label per row ({int(n)}), got {len(values)}")
        return tf.constant(values.astype(np.int32))

    # ------------------------------------------------------------------ the Python interface

    @property
    def xla_evaluation(self) -> bool:
        """Whether the evaluator compiles the likelihood with XLA (`Architecture.xla_evaluation`; False for your own networks)."""
        return self.architecture is not None and ARCHITECTURES[self.architecture].xla_evaluation

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "VAE":
        """The model of `tfvae train --preset NAME` (its model options only), with `overrides` applied.

        Raises:
          ConfigError: an unknown preset (the message lists the names).

        Example:
        >>> VAE.from_preset("best", prior_components=10, filters=4, hidden_units=16).architecture
        'conv'
        """
        from tfvae.presets import PRESETS, preset_values

        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
        values = preset_values(name, "label" if overrides.get("classes") else "none")  # a conditional best: mog
        options = {k: v for k, v in values.items() if k in _MODEL_OPTIONS}
        return cls(**{**options, **overrides})

    def compile(self, optimizer=None, **kwargs):
        """Configure training; with no optimizer, Adam at `DEFAULT_LEARNING_RATE`, as `tfvae train`.

        Any Keras optimizer (or its name) may be passed. The loss is the model's own
        negative objective, so `loss` is refused; `metrics` are reported beside elbo, rate and distortion.
        """
        if kwargs.get("loss") is not None:
            raise ValueError("a VAE's loss is its own objective (the negative ELBO or IWAE bound): compile it without loss=")
        if optimizer is None:
            # Keras 2's legacy Adam: TensorFlow's fused kernel, faster on CPU (tfvae.train.compile_vae).
            optimizer = tfk.optimizers.legacy.Adam(learning_rate=DEFAULT_LEARNING_RATE)
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        """Recompile a reloaded model as it was saved (its optimizer; the loss is always the model's own)."""
        self.compile(**tfk.saving.deserialize_keras_object(config))
        if isinstance(self.optimizer, tfk.optimizers.Optimizer) and self.built:  # (legacy ones create slots lazily)
            self.optimizer.build(self.trainable_variables)  # its slots exist before the saved ones are loaded

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
            validation_data=None, *args, **kwargs):
        """Train on images: a NumPy array (N, H, W) or (N, H, W, C) with values in [0, 1], or a `tf.data.Dataset`
        of batched images or of `(images, anything)` pairs. `y` is ignored (the images are their own target).

        A conditional model (`classes` N > 0) trains on images and their labels: `fit(x, y)` with y (N,) int
        class indices in 0..N-1, or a dataset of `(images, labels)` batches; `validation_data` likewise
        `(x_val, y_val)` or such a dataset.

        Everything else is `tf_keras.Model.fit`'s. Bad images raise ValueError before anything is traced.
        """
        if x is not None and not isinstance(x, (tf.data.Dataset, tf.distribute.DistributedDataset)):
            x = self.check_images(x, "x")
            y = self.check_labels(y, len(x), "y") if self.classes else None
        elif isinstance(x, tf.data.Dataset):
            self._check_dataset(x, "x")
        if validation_data is not None:
            validation_data = self._checked_validation(validation_data)
        return super().fit(x, y, batch_size, epochs, verbose, callbacks, validation_split, validation_data,
                           *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """Keras' evaluation (the one-sample ELBO, rate and distortion); for log p(x) see `tfvae.evaluate`."""
        if x is not None and not isinstance(x, (tf.data.Dataset, tf.distribute.DistributedDataset)):
            x = self.check_images(x, "x")
            y = self.check_labels(y, len(x), "y") if self.classes else None
        elif isinstance(x, tf.data.Dataset):
            self._check_dataset(x, "x")
        return super().evaluate(x, y, *args, **kwargs)

    def train_step(self, data):
        """One step of the objective on a batch of images (any second element of the batch is ignored; for a
        conditional model it is the batch's labels)."""
        x = self._batch_images(data, training=True)
        with tf.GradientTape() as tape:
            y_pred = self(self._model_input(x, data), training=True)
            loss = self.compute_loss(x, x, y_pred, None)
        self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
        return self.compute_metrics(x, x, y_pred, None)

    def test_step(self, data):
        x = self._batch_images(data, training=False)
        y_pred = self(self._model_input(x, data), training=False)
        self.compute_loss(x, x, y_pred, None)
        return self.compute_metrics(x, x, y_pred, None)

    def _model_input(self, x, data):
        """What `call` takes for a batch: the images, or (images, labels) for a conditional model."""
        if not self.classes:
            return x
        if not isinstance(data, (tuple, list)) or len(data) < 2:
            raise ValueError(f"this VAE is conditional on {self.classes} classes: train it on (images, labels)")
        return x, tf.reshape(tf.cast(data[1], tf.int32), [-1])

    def check_labels(self, labels, n: int, what: str = "labels") -> np.ndarray:
        """Labels as a conditional model trains on them: int32 (n,) in 0..N-1, or a one-sentence ValueError."""
        if labels is None:
            raise ValueError(f"this VAE is conditional on {self.classes} classes: pass {what}, the images' class "
                             f"indices (N,) in 0..{self.classes - 1}")
        values = np.asarray(labels)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.dtype.kind not in "iu" or values.ndim != 1:
            raise ValueError(f"{what} must be integer class indices (N,), got {values.dtype} of shape {values.shape}")
        if len(values) != n:
            raise ValueError(f"{what} holds {len(values)} labels for {n} images; give one label per image")
        if values.min() < 0 or values.max() >= self.classes:
            raise ValueError(f"{what} must lie in 0..{self.classes - 1} (the model's {self.classes} classes), "
                             f"got {int(values.min())} to {int(values.max())}")
        return values.astype(np.int32)

    def _batch_images(self, data, training):
        """A batch from fit / evaluate -> images (B, H, W, C) float32, binarized for a Bernoulli model."""
        x = data[0] if isinstance(data, (tuple, list)) else data
        x = tf.reshape(tf.cast(x, tf.float32), [-1, *self.image_shape])
        if not (self.binarize_inputs and LIKELIHOODS[self.likelihood].binary):
            return x
        if training:  # afresh at every step: a function of (seed, step, replica)
            optimizer = getattr(self, "optimizer", None)
            step = tf.cast(optimizer.iterations, tf.int64) if optimizer is not None else tf.constant(0, tf.int64)
        else:  # validation: the same draw for the same batch position at every epoch
            step = tf.cast(self._test_counter, tf.int64)
        seed = tf.random.experimental.stateless_fold_in(tf.constant([self.seed, 2 if training else 3], tf.int64), step)
        replica = tf.distribute.get_replica_context()
        if replica is not None:
            seed = tf.random.experimental.stateless_fold_in(seed, replica.replica_id_in_sync_group)
        return tf.cast(tf.random.stateless_uniform(tf.shape(x), seed=seed) < x, tf.float32)

    def encode(self, x, labels=None):
        """q(z|x) (q(z|x,y) with labels (N,) for a conditional model) for images x (N, H, W[, C]) in [0, 1]:
        a TFP distribution, batch (N,), event (D,).

        The Gaussian N(loc, diag scale^2); with `posterior="iaf"`, that Gaussian pushed through the flow
        (a `tfd.TransformedDistribution`: `sample` and `log_prob` of its samples are exact; `log_prob` of
        another z inverts the flow by fixed-point iteration, D passes per step).
        """
        x = self.check_images(x, "x") if not tf.is_tensor(x) else tf.reshape(tf.cast(x, tf.float32), [-1, *self.image_shape])
        params, context = self._encode(x, training=False, labels=self._labels(labels, _rows(x)))
        q_z = make_posterior(params)
        if self.latent_layers == 2:  # u = [z2, e1]: N(0, I) through the two layers' sampling
            loc, scale = q_z.mean(), q_z.stddev()
            base = tfd.MultivariateNormalDiag(tf.zeros(tf.stack([tf.shape(loc)[0], self.latent_dim])))
            return tfd.TransformedDistribution(base, hierarchy.HierarchyBijector(
                loc, scale, context, self.posterior_1, self.top_latent_dim), name="q_u")
        if self.flow is None:
            return q_z
        return tfd.TransformedDistribution(q_z, _FlowBijector(self.flow, context), name="q_z")

    def decode(self, z, labels=None):
        """p(x|z) (p(x|z,y) with labels (N,) for a conditional model) for latents z (N, D): a TFP distribution
        over images, batch (N,), event (H, W, C).

        `decode(z).mean()` is the picture (the Bernoulli means); `.log_prob(x)` the likelihood of images.
        """
        z = self._check_latents(z)
        return self.p_x_given_z(self._decoder_logits(z, training=False, labels=self._labels(labels, _rows(z))))

    def sample(self, n: int, seed: int = 0, temperature: float = 1.0, labels=None) -> np.ndarray:
        """n images drawn from the model: z ~ p(z) (the model's own prior, a mixture too), then E[x|z].

        z is drawn with `numpy.random.default_rng(seed)` exactly as `tfvae sample --seed` draws it, so an
        exported decoder shows the same images. Returns (n, H, W, C) float32 in [0, 1].

        A conditional model draws z ~ p(z|y), then E[x|z,y]: eps = default_rng(seed).standard_normal((n, D)),
        z = loc_y + temperature * scale_y * eps (N(0, I): z = temperature * eps; mog: component y).

        Args:
          n: how many images.
          seed: a non-negative integer; the same seed gives the same images.
          temperature: scales every component's scale (below 1: nearer the prior's modes).
          labels: conditional models only: an int (every image of that class), n ints, or None: the classes
            in turn, row i of class i mod N (n = N: one image per class).
        """
        from tfvae.mixture import Mixture

        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < math.inf:
            raise ValueError(f"temperature must be a positive number, got {temperature!r}")
        if self.classes:
            return self._sample_classes(int(n), seed, temperature, labels)
        self._labels(labels, n)  # refused: an unconditional model takes none
        prior = Mixture(*(np.asarray(t) for t in self.prior_mixture()))
        z = prior.sample(np.random.default_rng(seed), int(n), temperature)  # (n, D) float32
        means = [self.decode_mean(tf.constant(z[i : i + _SAMPLE_BATCH])).numpy() for i in range(0, n, _SAMPLE_BATCH)]
        return np.concatenate(means, axis=0)

    def _sample_classes(self, n: int, seed: int, temperature: float, labels) -> np.ndarray:
        """`sample` for a conditional model: z ~ p(z|y) for each row's label y, then E[x|z,y]."""
        from tfvae.mixture import Mixture

        if labels is None:
            labels = np.arange(n) % self.classes  # the classes in turn
        labels = np.broadcast_to(np.asarray(labels), (n,)) if np.ndim(labels) == 0 else labels
        labels = self._labels(labels, n).numpy()  # checked: (n,) int32 in 0..N-1
        # p(z|y): component y of a per-class prior, else N(0, I); the draws of an exported sampler's --label.
        prior = Mixture(*(np.asarray(t) for t in self.prior_mixture()), class_conditional=self.prior.learned)
        z = prior.sample_given(np.random.default_rng(seed), labels, temperature)  # (n, D) float32
        means = [self.decode_mean(tf.constant(z[i : i + _SAMPLE_BATCH]), tf.constant(labels[i : i + _SAMPLE_BATCH]))
                 .numpy() for i in range(0, n, _SAMPLE_BATCH)]
        return np.concatenate(means, axis=0)

    def save(self, filepath, overwrite=True, save_format=None, **kwargs):
        """Save configuration, weights and optimizer to a `.keras` file, atomically (a temporary file, then a rename).

        Reload with `tfvae.load_model(path)` or `tf_keras.models.load_model(path)`. For a SavedModel of the
        decoder and encoder (tensors in, tensors out) and TFLite files use `tfvae.export(vae, out)`.
        """
        path = os.fspath(filepath)
        if save_format not in (None, "keras") or not path.endswith(".keras"):
            raise ValueError(f"a tfvae.VAE saves to a .keras file (vae.save('model.keras')), not {path!r}; "
                             "for a SavedModel or TFLite files of its decoder use tfvae.export(vae, out_dir)")
        if os.path.exists(path) and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
        directory = os.path.dirname(os.path.abspath(path))
        temporary = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp.keras")
        try:
            super().save(temporary, overwrite=True, save_format="keras", **kwargs)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)

    def check_images(self, x, what="images") -> np.ndarray:
        """Images as the model takes them: float32 (N, H, W, C) in [0, 1], or a one-sentence ValueError."""
        try:
            x = np.asarray(x)
        except (ValueError, TypeError):
            raise ValueError(f"{what} must be an array of images, got {type(x).__name__}") from None
        expected = tuple(self.image_shape)
        if x.dtype.kind not in "biuf":
            raise ValueError(f"{what} must hold numbers in [0, 1], got dtype {x.dtype}")
        if x.ndim == len(expected) and expected[-1] == 1 and tuple(x.shape[1:]) == expected[:-1]:
            x = x[..., None]  # (N, H, W) grey images
        if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != expected or len(x) == 0:
            shape = "x".join(map(str, expected))
            raise ValueError(f"{what} must be a stack of {shape} images, (N, {', '.join(map(str, expected))})"
                             + (f" or (N, {expected[0]}, {expected[1]})" if expected[-1] == 1 else "")
                             + f", got shape {x.shape}")
        x = x.astype(np.float32, copy=False)
        if not np.isfinite(x).all():
            raise ValueError(f"{what} hold NaN or infinite values")
        low, high = float(x.min()), float(x.max())
        if low < 0 or high > 1:
            raise ValueError(f"{what} must hold values in [0, 1], got {low:g} to {high:g}"
                             + ("; divide 8-bit pixels by 255" if high <= 255 and low >= 0 else ""))
        return x

    def _check_dataset(self, dataset, what):
        spec = dataset.element_spec
        spec = spec[0] if isinstance(spec, (tuple, list)) else spec
        if self.classes and not (isinstance(dataset.element_spec, (tuple, list)) and len(dataset.element_spec) >= 2):
            raise ValueError(f"{what} must be a dataset of (images, labels) batches for this conditional VAE, "
                             f"got {dataset.element_spec}")
        if not isinstance(spec, tf.TensorSpec):
            raise ValueError(f"{what} must be a dataset of image batches or of (images, anything) pairs, got {spec}")
        shape, expected = spec.shape, tuple(self.image_shape)
        if shape.rank is not None and shape.rank <= len(expected) and tuple(shape.as_list()) in (expected, expected[:-1]):
            raise ValueError(f"{what} yields single images of shape {tuple(shape.as_list())}: batch it, e.g. dataset.batch(128)")
        tail = tuple(shape.as_list()[1:]) if shape.rank is not None else None
        if tail is not None and tail != expected and not (expected[-1] == 1 and tail == expected[:-1]):
            raise ValueError(f"{what} yields batches of shape {tuple(shape.as_list())}; this model takes images of "
                             f"shape {expected}")

    def _checked_validation(self, validation_data):
        if isinstance(validation_data, tf.data.Dataset):
            self._check_dataset(validation_data, "validation_data")
            return validation_data
        labels = None
        if isinstance(validation_data, tuple) and 1 <= len(validation_data) <= 3:  # (x_val, y_val[, weights])
            validation_data, labels = validation_data[0], (validation_data[1] if len(validation_data) > 1 else None)
        x = self.check_images(validation_data, "validation_data")
        if self.classes:
            return x, self.check_labels(labels, len(x), "validation_data's labels")
        return (x,)

    def _check_latents(self, z):
        if tf.is_tensor(z):
            if z.shape.rank != 2 or (z.shape[-1] is not None and z.shape[-1] != self.latent_dim):
                raise ValueError(f"z must have shape (N, {self.latent_dim}), got {tuple(z.shape)}")
            return tf.cast(z, tf.float32)
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must have shape (N, {self.latent_dim}) for this model (D = {self.latent_dim}), "
                             f"got {z.shape}")
        return tf.constant(z)

    def decode_mean(self, z, labels=None):
        """z (N, D) [, labels (N,)] -> E[x|z] (E[x|z,y]) (N, H, W, C), the likelihood's mean: what sample grids show."""
        return LIKELIHOODS[self.likelihood].mean(self.decode_logits(z, labels))

    def encode_params(self, x, labels=None):
        """x (N, H, W, C) [, labels (N,)] -> loc (N, D), scale (N, D) of q(z|x) (q(z|x,y))."""
        labels = self._labels(labels, _rows(x))
        if labels is not None:
            x = self._encoder_input(x, labels)
        if self.latent_layers == 2:  # q(z2|x), and q(e1|x, z2) at z2 = its mean: a proposal's centre and spread
            params, features = features_context(self.encoder, x, training=False)
            loc, scale = posterior_params(params)
            loc_1, scale_1 = hierarchy.bottom_params(self.posterior_1, features, loc)
            return tf.concat([loc, loc_1], axis=-1), tf.concat([scale, scale_1], axis=-1)
        return posterior_params(self.encoder(x, training=False))

    def _top_params(self, x):
        """x (N, H, W, C) -> loc, scale (N, D2) of q(z2|x), the top layer's posterior (a VampPrior's components)."""
        return posterior_params(self.encoder(x, training=False))

    @property
    def sampled_posterior(self) -> bool:
        """Whether q(z|x) is more than N(loc, scale^2) (a flow, or two layers): its samples and log q come from
        `encode_sample`, and `encode_params` only centres a proposal."""
        return self.flow is not None or self.latent_layers == 2

    def _encoder_input(self, x, labels):
        """images (B, H, W, C), labels (B,) -> the conditional encoder's input (`networks.conditioned_input`)."""
        from tfvae.models.networks import conditioned_input

        x = tf.reshape(tf.cast(x, tf.float32), [-1, *self.image_shape])  # (B, H, W, C)
        if len(self.encoder.input_shape) == 2:  # a dense encoder: [flatten(x), y]
            x = tf.reshape(x, [-1, math.prod(self.image_shape)])
        return conditioned_input(x, self._one_hot(labels))

    def encode_sample(self, x, eps, labels=None):
        """x (N, H, W, C), eps (N, D) or (K, N, D) ~ N(0, I) -> z ~ q(z|x) and log q(z|x), (N, D) and (N,) (or K-first).

        z is the posterior's sample for that noise: loc + scale * eps, pushed
        through the flow for --posterior iaf. This is what the `encode_sample`
        export signature computes. A conditional model takes labels (N,) (q(z|x,y)). A two-layer
        model gives u = [z2, e1] ~ q(u|x) and log q(u|x) (`tfvae.models.hierarchy`).
        """
        params, context = self._encode(x, training=False, labels=self._labels(labels, _rows(x)))
        return self._posterior_sample(make_posterior(params), context, eps)

    def _encode(self, x, training=None, labels=None):
        """x (B, H, W, C) [, labels (B,)] -> params (B, 2D) of N(loc, scale^2), and the flow's context (B, C)
        (None without a flow).

        Without a flow this is `encoder(x)`; with one, FLOW_CONTEXTS[flow_context]
        gives the same params and the context every step of the flow is conditioned on.
        """
        if labels is not None:
            x = self._encoder_input(x, labels)
        if self.latent_layers == 2:  # q(z2|x)'s params, and h, which q(z1|x, z2) reads
            return features_context(self.encoder, x, training=training)
        if self.flow is None:
            return self.encoder(x, training=training), None
        return FLOW_CONTEXTS[self.flow_context](self.encoder, x, training=training)

    def _posterior_sample(self, q_z, context, eps):
        """z ~ q(z|x) for the noise eps, and log q(z|x) of that z.

        z_0 = loc + scale * eps, the reparameterisation trick (differentiable in phi); with a flow,
        z = flow(z_0 | context) and log q(z|x) = log N(z_0; loc, scale^2) - log |det dz/dz_0|.
        """
        if self.latent_layers == 2:  # q(z2|x) then q(z1|x, z2): u = [z2, e1]
            return hierarchy.sample_posterior(q_z, context, eps, self.posterior_1, self.top_latent_dim)
        z = q_z.mean() + q_z.stddev() * eps
        log_q = q_z.log_prob(z)
        if self.flow is not None:
            z, log_det = self.flow(z, context)
            log_q -= log_det
        return z, log_q

    def prior_mixture(self, labels=None):
        """p(z) as mixture parameters: logits (K,), loc (K, D), scale (K, D) (N(0, I): one component).

        A conditional model with the per-class prior (mog) has K = N components, component k being p(z|y=k);
        with the normal prior, p(z|y) = N(0, I) for every y (one component). With labels (n,): p(z|y_i) for
        each row, logits (n,) = 0, loc and scale (n, D).
        """
        logits, loc, scale = self.prior.mixture()
        labels = None if labels is None else self._labels(labels, _rows(labels) if np.ndim(labels) else 1)
        if labels is None:
            return logits, loc, scale
        if not self.prior.learned:  # N(0, I) for every class
            loc, scale = tf.zeros_like(loc[:1]), tf.ones_like(scale[:1])
            labels = tf.zeros_like(labels)
        return tf.zeros(tf.shape(labels), tf.float32), tf.gather(loc, labels), tf.gather(scale, labels)

    def reconstruct(self, x, labels=None):
        """x (N, H, W, C) [, labels (N,)] -> the decoder's means for one z ~ q(z|x) per image (the first of K),
        (N, H, W, C)."""
        labels = self._labels(labels, _rows(x))
        means = self(x if labels is None else (x, labels)).mean()
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
            **({"classes": self.classes, "class_names": list(self.class_names)} if self.classes else {}),
            **({"latent_dim": self.top_latent_dim, "latent_layers": 2, "latent_dim_1": self.latent_dim_1}
               if self.latent_layers == 2 else {}),
            **({} if self.architecture is not None else {
                "architecture": None,
                "encoder": tfk.saving.serialize_keras_object(self.encoder),
                "decoder": tfk.saving.serialize_keras_object(self.decoder),
            }),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for name in ("encoder", "decoder"):
            if isinstance(config.get(name), dict):
                config[name] = tfk.saving.deserialize_keras_object(config[name], custom_objects=custom_objects)
        vae = cls(**config)
        vae(_zero_batch(vae))  # every weight exists before a saved file's weights are loaded
        return vae


# The model options of `tfvae train` that `VAE` takes (Config fields), for `from_preset`.
_MODEL_OPTIONS = tuple(
    name for name in inspect.signature(VAE.__init__).parameters
    if name not in ("self", "kwargs", "encoder", "decoder", "classes", "class_names")
)


def _zero_batch(vae):
    """One zero image (and label 0 for a conditional model): calling the model on it creates every weight."""
    x = tf.zeros([1, *vae.image_shape])
    return (x, tf.zeros([1], tf.int32)) if vae.classes else x


def _rows(t):
    """The number of rows of an array or tensor: an int when known, else a scalar tensor (in a traced graph)."""
    if tf.is_tensor(t):
        return t.shape[0] if t.shape.rank and t.shape[0] is not None else tf.shape(t)[0]
    return len(t)


def _class_names(names, classes: int):
    """The class names as a tuple of N strings ("0".."N-1" by default), None for an unconditional model."""
    if not classes:
        if names is not None:
            raise ValueError("class_names go with classes > 0 (a conditional VAE)")
        return None
    if names is None:
        return tuple(str(k) for k in range(classes))
    names = tuple(str(name) for name in names)
    if len(names) != classes:
        raise ValueError(f"class_names must name the {classes} classes, got {len(names)} names")
    return names


def _check_classes(classes, prior: str, own_networks: bool) -> None:
    """`classes`: 0 (unconditional) or N > 0 with a prior and networks that take labels; else one sentence."""
    if isinstance(classes, bool) or not isinstance(classes, (int, np.integer)) or classes < 0:
        raise ValueError(f"classes must be 0 (unconditional) or a positive number of classes, got {classes!r}")
    if classes and prior == "vamp":
        raise ValueError("a conditional VAE (classes > 0) takes prior='normal' or 'mog' (one component per "
                         "class), not 'vamp'")
    if classes and own_networks:
        raise ValueError("a conditional VAE (classes > 0) builds its own networks: your encoder and decoder "
                         "would not see the labels")


def _check_model_options(image_shape, **options) -> None:
    """Refuse a model option `Config` would refuse, in Python's words (`latent_dim`, not `--latent-dim`).

    Any number of channels is a model's (the data sources make 1 or 3; arrays from Python may hold others).
    """
    shape = tuple(image_shape) if isinstance(image_shape, (tuple, list)) else None
    if shape is None or len(shape) != 3 or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0
                                                   for n in shape):
        raise ConfigError(f"image_shape must be (H, W, C), three positive integers, got {image_shape!r}")
    try:
        Config(**options)
    except ConfigError as e:
        raise ConfigError(re.sub(r"--([a-z][a-z0-9-]*)", lambda m: m.group(1).replace("-", "_"), str(e))) from None


def _own_networks(encoder, decoder, latent_dim: int, image_shape):
    """Check the user's encoder and decoder on a zero batch: the encoder must give (B, 2D), the decoder H * W * C logits."""
    if encoder is None or decoder is None:
        raise ValueError("give both encoder= and decoder= (your own networks), or neither")
    for name, network in (("encoder", encoder), ("decoder", decoder)):
        if not isinstance(network, tfk.layers.Layer):
            raise ValueError(f"{name} must be a tf_keras model or layer, got {type(network).__name__} "
                             "(build it with tf_keras, the Keras 2 that TFP's layers work with)")
    params = encoder(tf.zeros([1, *image_shape]))
    if params.shape.rank != 2 or params.shape[-1] != 2 * latent_dim:
        raise ValueError(f"the encoder must map images (B, {', '.join(map(str, image_shape))}) to (B, {2 * latent_dim}) "
                         f"numbers (loc and raw scale of D = {latent_dim}), got {tuple(params.shape)}")
    logits = decoder(tf.zeros([1, latent_dim]))
    if math.prod(logits.shape[1:]) != math.prod(image_shape):
        raise ValueError(f"the decoder must map z (B, {latent_dim}) to the logits of a {'x'.join(map(str, image_shape))} "
                         f"image, (B, {math.prod(image_shape)}) or (B, {', '.join(map(str, image_shape))}), "
                         f"got {tuple(logits.shape)}")
    return encoder, decoder


class _FlowBijector(tfb.Bijector):
    """The IAF flow of a VAE at a fixed context, as a TFP bijector (z_0 -> z_T), for `VAE.encode`."""

    def __init__(self, flow, context):
        super().__init__(forward_min_event_ndims=1, is_constant_jacobian=False, validate_args=False, name="iaf")
        self._flow, self._context = flow, context

    def _forward(self, z):
        return self._flow(z, self._context)[0]

    def _forward_log_det_jacobian(self, z):
        return self._flow(z, self._context)[1]

    def _inverse(self, z):
        return self._flow.inverse(z, self._context)

    def _inverse_log_det_jacobian(self, z):
        return -self._forward_log_det_jacobian(self._inverse(z))


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
        classes=config.num_classes,
        class_names=config.classes if config.num_classes else None,
        latent_layers=config.latent_layers,
        latent_dim_1=config.latent_dim_1,
    )
    vae(_zero_batch(vae))  # creates the weights
    return vae
