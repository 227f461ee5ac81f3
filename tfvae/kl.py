"""The closed-form KL divergence between a diagonal Gaussian and the standard normal."""

from __future__ import annotations

import sys

import numpy as np

__all__ = ["kl_standard_normal"]

# Below this |sigma - 1| the closed form cancels catastrophically, so a series is used instead.
_SERIES_RADIUS = 0.1
# Terms of the series: 0.1**18 is below float64 round-off of the leading term.
_SERIES_TERMS = 18


def kl_standard_normal(mu, sigma):
    """KL(N(mu, sigma^2) || N(0, 1)), per dimension, in nats.

    The closed form is (sigma^2 + mu^2 - 1) / 2 - log(sigma). Written that way
    it loses every digit when sigma is close to 1 (sigma^2 - 1 and 2 log sigma
    cancel), so it is evaluated as mu^2 / 2 + g(sigma - 1) with

        g(x) = x + x^2 / 2 - log1p(x) = x^2 - x^3/3 + x^4/4 - x^5/5 + ...

    using the series for |x| < 0.1 and the direct form elsewhere. Huge sigma
    and huge mu overflow only when the true value is beyond the dtype's range.

    Args:
      mu: the mean; a Python float, a NumPy array or a TensorFlow tensor.
      sigma: the standard deviation (> 0), broadcastable against `mu`.

    Returns:
      The elementwise KL, of the inputs' kind: a Python float for Python
      numbers, a NumPy array for arrays, a tensor for tensors.

    Example:
    >>> round(kl_standard_normal(1.0, 1.0), 12)
    0.5
    >>> f"{kl_standard_normal(0.0, 1.0 + 1e-10):.3g}"  # the naive form gives ~1e-17 of noise
    '1e-20'
    """
    tf = sys.modules.get("tensorflow")
    if tf is not None and (tf.is_tensor(mu) or tf.is_tensor(sigma)):
        sigma = tf.convert_to_tensor(sigma)
        mu = tf.cast(mu, sigma.dtype)
        return _kl(mu, sigma, tf.math.log, tf.where, tf.abs)
    scalar = np.isscalar(mu) and np.isscalar(sigma)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        mu, sigma = np.asarray(mu), np.asarray(sigma)
        dtype = np.result_type(mu, sigma, np.float32)
        kl = _kl(mu.astype(dtype), sigma.astype(dtype), np.log, np.where, np.abs)
    return float(kl) if scalar else kl


def _kl(mu, sigma, log, where, abs_):
    x = sigma - 1.0
    # Horner's rule for x^2 (1 - x/3 + x^2/4 - x^3/5 + ...): coefficient k is (-1)^k / (k + 2), k >= 1.
    series = 0.0 * x
    for k in range(_SERIES_TERMS, 0, -1):
        series = x * ((-1.0) ** k / (k + 2) + series)
    series = x * x * (1.0 + series)
    near_one = abs_(x) < _SERIES_RADIUS
    safe_sigma = where(near_one, 2.0 + 0.0 * sigma, sigma)  # keeps the unused branch finite
    direct = 0.5 * (safe_sigma * safe_sigma - 1.0) - log(safe_sigma)
    return 0.5 * mu * mu + where(near_one, series, direct)
