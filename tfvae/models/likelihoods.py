"""p(x|z) given the decoder's logits: Bernoulli (binary pixels) or continuous Bernoulli (grey levels).

    bernoulli              x in {0, 1}:  p(x|l) = sigmoid(l)^x (1 - sigmoid(l))^(1-x)               a probability
    continuous_bernoulli   x in [0, 1]:  p(x|l) = C(l) sigmoid(l)^x (1 - sigmoid(l))^(1-x)          a density
                           C(l) = l / tanh(l / 2), the normaliser (Loaiza-Ganem & Cunningham 2019)

Each factor is per pixel and channel, the image (H, W, C) is the event. The means are plain tensor
functions of the logits (builtin TFLite ops, no TFP), so that an exported decoder can return them:

    E[x] = sigmoid(l)                                     Bernoulli
    E[x] = 1/2 + (coth(l/2) - 2/l) / 2                    continuous Bernoulli (1/2 at l = 0)

The continuous-Bernoulli mean cancels two large terms near l = 0; there it is its Taylor series.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions
tfpl = tfp.layers

__all__ = [
    "bernoulli_distortion",
    "bernoulli_layer",
    "bernoulli_mean",
    "continuous_bernoulli_layer",
    "continuous_bernoulli_mean",
    "distribution_distortion",
]

# Below this |l / 2| the continuous-Bernoulli mean is its Taylor series: the direct formula loses
# about 1e-6 there in float32, the series' first omitted term is below 1e-8.
_TAYLOR_BELOW = 0.25


def bernoulli_layer(image_shape):
    """logits (..., H * W * C) -> prod Bernoulli(logits), event (H, W, C)."""
    return tfpl.IndependentBernoulli(
        tuple(image_shape), convert_to_tensor_fn=tfd.Distribution.mean, dtype="float32", name="p_x_given_z"
    )


def bernoulli_distortion(p_x_given_z, x):
    """-log p(x|z) per image of prod Bernoulli(logits), as one fused expression over the logits.

    sigmoid_cross_entropy_with_logits(x, l) = max(l, 0) - l x + log(1 + e^-|l|) is -log p(x|l) for x in {0, 1}:
    one exp and one log per pixel, forward and backward, where TFP's Bernoulli.log_prob takes a softplus of
    both -l and l. The same figure to float round-off (BENCHMARKS.md, "Training speed").
    """
    bernoulli = p_x_given_z.distribution  # Independent(Bernoulli(logits (..., H, W, C)))
    logits = bernoulli.logits
    x = tf.cast(x, logits.dtype)
    per_pixel = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.broadcast_to(x, tf.shape(logits)), logits=logits)
    return tf.reduce_sum(per_pixel, axis=tf.range(-p_x_given_z.reinterpreted_batch_ndims, 0))


def distribution_distortion(p_x_given_z, x):
    """-log p(x|z) per image: the distribution's own log_prob."""
    return -p_x_given_z.log_prob(tf.cast(x, tf.float32))


def bernoulli_mean(logits):
    """E[x] = sigmoid(logits)."""
    return tf.sigmoid(logits)


def continuous_bernoulli_layer(image_shape):
    """logits (..., H * W * C) -> prod ContinuousBernoulli(logits), event (H, W, C); TFP handles C(l) near l = 0."""
    event_shape = tuple(image_shape)

    def p_x_given_z(logits):
        logits = tf.reshape(logits, tf.concat([tf.shape(logits)[:-1], event_shape], axis=0))  # (..., H, W, C)
        return tfd.Independent(tfd.ContinuousBernoulli(logits=logits), reinterpreted_batch_ndims=len(event_shape))

    return tfpl.DistributionLambda(
        p_x_given_z, convert_to_tensor_fn=tfd.Distribution.mean, dtype="float32", name="p_x_given_z"
    )


def continuous_bernoulli_mean(logits):
    """E[x] of ContinuousBernoulli(logits), elementwise: 1/2 + L(l/2)/2 with L(y) = coth(y) - 1/y (Langevin)."""
    y = 0.5 * tf.convert_to_tensor(logits, tf.float32)
    small = tf.abs(y) < _TAYLOR_BELOW
    y_safe = tf.where(small, tf.ones_like(y), y)  # keeps the unused branch finite
    direct = 1.0 / tf.tanh(y_safe) - 1.0 / y_safe
    y2 = y * y
    series = y * (1.0 / 3.0 + y2 * (-1.0 / 45.0 + y2 * (2.0 / 945.0 - y2 / 4725.0)))  # L(y) = y/3 - y^3/45 + ...
    return 0.5 + 0.5 * tf.where(small, series, direct)
