"""Training objectives, as losses: the negative objective averaged over the (global) batch.

Every objective is a function of the same terms, each per image:

    distortion_k = -log p(x|z_k)                       (K, B), z_k ~ q(z|x) reparameterised
    log_q_over_p_k = log q(z_k|x) - log p(z_k)         (K, B), the sampled rate
    rate = KL(q(z|x) || p(z))                          the closed form, averaged over the batch
    kl_weight = beta                                   the rate's weight, 1 after warm-up

    elbo:  -(mean_k distortion_k + beta rate)                     (K = 1: the textbook VAE)
    iwae:  log (1/K) sum_k w_k,  log w_k = -distortion_k - beta log_q_over_p_k  (Burda et al. 2016)

For iwae the closed-form rate is used as a control variate: tfvae computes

    log (1/K) sum_k w_k + beta (mean_k log_q_over_p_k - KL)

whose added term has mean zero (E_q[log q - log p] = KL), so the bound and its
gradient are unchanged in expectation, and with K = 1 the objective is exactly
the ELBO with its closed-form KL, on the same noise.

Warm-up (Sønderby et al. 2016): beta rises linearly from 0 to 1 over the first
N epochs, `kl_weight(epoch, N)`, constant within an epoch.
"""

from __future__ import annotations

import tensorflow as tf

from tfvae.models.replicas import batch_mean

__all__ = ["elbo_loss", "iwae_loss", "kl_weight"]


def elbo_loss(distortion, log_q_over_p, rate, kl_weight):
    """-(ELBO), averaged over the batch: distortion (averaged over K samples) + kl_weight * rate.

    Args:
      distortion: (B,) for one sample per image, or (K, B).
      log_q_over_p: unused (the rate is in closed form); None or (K, B).
      rate: scalar, the closed-form KL averaged over the batch.
      kl_weight: scalar weight of the rate (1 outside warm-up).
    """
    del log_q_over_p
    if distortion.shape.rank == 2:
        distortion = tf.reduce_mean(distortion, axis=0)  # (B,)
    return batch_mean(distortion) + kl_weight * rate


def iwae_loss(distortion, log_q_over_p, rate, kl_weight):
    """-(IWAE bound with K samples), averaged over the batch.

    Args:
      distortion: (K, B), -log p(x|z_k).
      log_q_over_p: (K, B), log q(z_k|x) - log p(z_k).
      rate: scalar, the closed-form KL averaged over the batch (the control variate's mean).
      kl_weight: scalar weight of the rate inside the log weights (1 outside warm-up).
    """
    # log w_k + beta mean_j log_q_over_p_j: the control variate's sample mean moved inside the log-sum-exp
    # (logsumexp(a + c) = logsumexp(a) + c), so that at K = 1 the sampled rate cancels exactly, not to round-off.
    centred = log_q_over_p - tf.reduce_mean(log_q_over_p, axis=0)  # (K, B); exactly 0 when K = 1
    log_w = -distortion - kl_weight * centred  # (K, B)
    samples = tf.cast(tf.shape(log_w)[0], log_w.dtype)
    bound = tf.reduce_logsumexp(log_w, axis=0) - tf.math.log(samples)  # (B,)
    return -batch_mean(bound) + kl_weight * rate  # ... - beta KL, the control variate's mean


def kl_weight(epoch: int, warmup_epochs: int) -> float:
    """beta for 0-based `epoch`: epoch / N during the first N epochs, then 1 (no warm-up: always 1).

    >>> [kl_weight(e, 4) for e in range(6)]
    [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """
    if warmup_epochs <= 0:
        return 1.0
    return min(1.0, epoch / warmup_epochs)
