"""The inference gaps of a trained VAE (Cremer, Li & Duvenaud 2018): where its ELBO loses to log p(x).

    log p(x) - ELBO[q]  =  (log p(x) - ELBO[q*])  +  (ELBO[q*] - ELBO[q])
        total gap             approximation gap          amortisation gap

q is the posterior the encoder gives each image; q* is the best member of the same family for that image alone,
found by gradient ascent on the ELBO of the image's own Gaussian (loc, log scale), started from the encoder's.
With `--posterior iaf` the Gaussian is the flow's base and the flow (its weights and the encoder's context) is
kept: q* is then the best the flow can do from a refined base, an upper bound on its amortisation gap's share.

A richer posterior family can close only the approximation gap; the amortisation gap belongs to the encoder.
`tfvae analyze gaps --run-dir RUN` measures both on the first test images.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import tensorflow as tf
import tf_keras as tfk

from tfvae.models import LIKELIHOODS
from tfvae.models.posteriors import posterior_params

__all__ = ["Gaps", "elbo_estimates", "encoded", "inference_gaps", "log_p_over_q", "refine_posterior"]

ELBO_SAMPLES = 2000  # z per image for each reported ELBO; the same noise for q and q* (common random numbers)
_ELBO_CHUNK = 100  # of those, per decoder call
REFINE_SAMPLES = 64  # z per image per refinement step
REFINE_LEARNING_RATE = 5e-3  # Adam, on loc and log scale
BATCH_IMAGES = 250  # images refined together: memory grows with images x samples x pixels, not with --eval-images


@dataclasses.dataclass(frozen=True)
class Gaps:
    """Nats per image, averaged over `examples` images."""

    examples: int
    refine_steps: int
    elbo: float  # ELBO[q], the encoder's posterior, ELBO_SAMPLES samples per image
    refined_elbo: float  # ELBO[q*], each image's Gaussian (the flow's base) refined, the same samples
    log_likelihood: float  # the importance-sampled estimate of log p(x) (tfvae.evaluate, the encoder's q)
    log_likelihood_stderr: float  # across images
    importance_samples: int
    seconds: float  # refinement and the three estimates

    @property
    def total_gap(self) -> float:
        return self.log_likelihood - self.elbo

    @property
    def amortisation_gap(self) -> float:
        return self.refined_elbo - self.elbo

    @property
    def approximation_gap(self) -> float:
        return self.log_likelihood - self.refined_elbo

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "total_gap": self.total_gap,
                "amortisation_gap": self.amortisation_gap, "approximation_gap": self.approximation_gap}


def log_p_over_q(vae, likelihood, x, context):
    """(loc, log_scale, eps (S, N, D)) -> log p(x, z) - log q(z|x) (S, N), z from eps through N(loc, scale^2) [and
    the flow], for the images x (N, H, W, C). p(z) is built once here: a VampPrior's runs the encoder."""
    prior = vae.prior.distribution()

    def log_weights(loc, log_scale, eps):
        z = loc + tf.exp(log_scale) * eps
        log_q = tf.reduce_sum(-0.5 * tf.square(eps) - log_scale - 0.5 * math.log(2 * math.pi), axis=-1)
        if vae.flow is not None:
            z, log_det = vae.flow(z, context)
            log_q -= log_det
        samples, batch = tf.shape(eps)[0], tf.shape(eps)[1]
        logits = vae.decoder(tf.reshape(z, [samples * batch, vae.latent_dim]), training=False)
        logits = tf.reshape(logits, [samples, batch, -1])
        distortion = likelihood.distortion(vae.p_x_given_z(logits), x)  # -log p(x|z), (S, N)
        return prior.log_prob(z) - distortion - log_q

    return log_weights


def _images(images, likelihood) -> tf.Tensor:
    from tfvae.evaluate import _binary_images, _grey_images

    return tf.constant(_binary_images(images) if likelihood.binary else _grey_images(images))


def encoded(vae, x):
    """x -> the encoder's loc, log scale (N, D) and the flow's context (None without a flow)."""
    params, context = vae._encode(x, training=False)
    loc, scale = posterior_params(params)
    return loc, tf.math.log(scale), context


def elbo_estimates(log_weights, loc, log_scale, samples: int = ELBO_SAMPLES, seed: int = 0) -> np.ndarray:
    """ELBO per image (N,) of q = N(loc, exp(log_scale)^2) [and the flow], from `samples` z per image."""
    total = tf.zeros(tf.shape(loc)[:1])
    done = 0
    while done < samples:
        size = min(_ELBO_CHUNK, samples - done)
        eps = tf.random.stateless_normal([size, *loc.shape], seed=[seed, done])
        total += tf.reduce_sum(log_weights(loc, log_scale, eps), axis=0)
        done += size
    return (total / samples).numpy().astype(np.float64)


def refine_posterior(log_weights, loc, log_scale, steps: int, *, samples: int = REFINE_SAMPLES,
                     learning_rate: float = REFINE_LEARNING_RATE, seed: int = 1, progress=None):
    """Each image's (loc, log scale) after `steps` of Adam on its own ELBO, from the given ones: (N, D) twice."""
    loc, log_scale = tf.Variable(loc), tf.Variable(log_scale)
    optimizer = tfk.optimizers.Adam(learning_rate)

    @tf.function
    def step(i):
        eps = tf.random.stateless_normal([samples, *loc.shape], seed=tf.stack([tf.constant(seed), i]))
        with tf.GradientTape() as tape:
            loss = -tf.reduce_sum(tf.reduce_mean(log_weights(loc, log_scale, eps), 0))
        optimizer.apply_gradients(zip(tape.gradient(loss, [loc, log_scale]), [loc, log_scale]))

    for i in range(steps):
        step(tf.constant(i))
        if progress is not None:
            progress.update(1)
    return tf.convert_to_tensor(loc), tf.convert_to_tensor(log_scale)


def inference_gaps(config, vae, images, *, refine_steps: int, importance_samples: int = 5000,
                   progress: bool = True) -> Gaps:
    """The three estimates on `images` (N, H, W, C) for a VAE built from `config`."""
    from tfvae.errors import ConfigError
    from tfvae.evaluate import _progress_bar, evaluate_vae

    if getattr(vae, "latent_layers", 1) != 1:
        raise ConfigError("the inference gaps refine a one-layer posterior N(loc, scale^2); this model has two "
                          "latent layers")
    start = time.perf_counter()
    likelihood = LIKELIHOODS[config.likelihood]
    batches = range(0, len(images), BATCH_IMAGES)
    before, after = [], []
    bar = _progress_bar(refine_steps * len(batches), f"refining q of {len(images)} images", progress, unit="step")
    try:
        for first in batches:  # each image's refinement is its own: batches change only which noise it draws
            x = _images(images[first : first + BATCH_IMAGES], likelihood)
            loc, log_scale, context = encoded(vae, x)
            log_weights = log_p_over_q(vae, likelihood, x, context)
            before.append(elbo_estimates(log_weights, loc, log_scale))
            refined = refine_posterior(log_weights, loc, log_scale, refine_steps, progress=bar)
            after.append(elbo_estimates(log_weights, *refined))
    finally:
        if bar is not None:
            bar.close()
    before, after = np.concatenate(before), np.concatenate(after)
    evaluation = evaluate_vae(vae, images, importance_samples=importance_samples, progress=progress)
    return Gaps(
        examples=len(images),
        refine_steps=refine_steps,
        elbo=float(before.mean()),
        refined_elbo=float(after.mean()),
        log_likelihood=evaluation.log_likelihood,
        log_likelihood_stderr=evaluation.log_likelihood_stderr,
        importance_samples=importance_samples,
        seconds=time.perf_counter() - start,
    )

