"""The VAE: the KL is counted once and in closed form, training moves weights, evaluation does not.

The expected numbers are computed here with NumPy, from the Dense layers' weights and the model's
math (one hidden ReLU layer each way, softplus scales, Bernoulli pixels, closed-form KL), never by
the code under test.
"""

import math

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as tfk

from tfvae.config import Config
from tfvae.models import VAE, build_vae

tiny = Config(latent_dim=2, hidden_units=8)


@pytest.fixture
def x():
    rng = np.random.default_rng(0)
    return (rng.random((8, 28, 28, 1)) < 0.13).astype(np.float32)


@pytest.fixture
def vae():
    """The tiny VAE with every trainable weight, biases included, moved off its initial value (biases start at 0)."""
    model = build_vae(tiny)
    rng = np.random.default_rng(1)
    for weight in model.trainable_weights:  # not get_weights(): that includes the metrics' totals and counts
        weight.assign(weight + rng.normal(0.0, 0.1, weight.shape).astype(np.float32))
    return model


# --------------------------------------------------------------------------- the same math in NumPy, float64


def dense_weights(network):
    """[(kernel, bias), ...] of the network's Dense layers, as float64 arrays."""
    layers = [layer for layer in network.layers if isinstance(layer, tfk.layers.Dense)]
    return [(layer.kernel.numpy().astype(np.float64), layer.bias.numpy().astype(np.float64)) for layer in layers]


def numpy_encode(vae, x):
    """x (N, 28, 28, 1) -> loc, scale (N, D): relu(x W1 + b1) W2 + b2 = [loc, raw], scale = softplus(raw) + 1e-5."""
    (w1, b1), (w2, b2) = dense_weights(vae.encoder)
    params = np.maximum(x.reshape(len(x), -1) @ w1 + b1, 0.0) @ w2 + b2  # (N, 2D)
    loc, raw_scale = np.split(params, 2, axis=-1)
    return loc, np.log1p(np.exp(raw_scale)) + 1e-5


def numpy_decode_logits(vae, z):
    """z (N, D) -> logits (N, 28, 28, 1) = relu(z W1 + b1) W2 + b2."""
    (w1, b1), (w2, b2) = dense_weights(vae.decoder)
    return (np.maximum(z @ w1 + b1, 0.0) @ w2 + b2).reshape(len(z), 28, 28, 1)


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def numpy_rate(loc, scale):
    """KL(N(loc, scale^2) || N(0, 1)) summed over dimensions, (N,): sum_d (sigma^2 + mu^2 - 1) / 2 - log sigma."""
    return ((scale**2 + loc**2 - 1.0) / 2.0 - np.log(scale)).sum(axis=-1)


def numpy_distortion(x, logits):
    """-log p(x|z) for independent Bernoulli pixels, (N,): -sum x log p + (1 - x) log(1 - p)."""
    x, p = x.reshape(len(x), -1).astype(np.float64), sigmoid(logits.reshape(len(x), -1))
    return -(x * np.log(p) + (1.0 - x) * np.log(1.0 - p)).sum(axis=-1)


# --------------------------------------------------------------------------- tests


def test_decode_logits_and_encode_params_are_the_mlp_computed_by_hand(vae, x):
    z = np.random.default_rng(2).standard_normal((5, 2))
    logits = vae.decode_logits(tf.constant(z, tf.float32)).numpy()
    assert logits.shape == (5, 28, 28, 1)
    np.testing.assert_allclose(logits, numpy_decode_logits(vae, z), rtol=1e-5, atol=1e-5)
    loc, scale = (t.numpy() for t in vae.encode_params(x))
    expected_loc, expected_scale = numpy_encode(vae, x)
    assert loc.shape == scale.shape == (8, 2)
    np.testing.assert_allclose(loc, expected_loc, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scale, expected_scale, rtol=1e-5, atol=1e-6)


def test_kl_appears_once_and_equals_the_closed_form(vae, x):
    vae(x)
    assert len(vae.losses) == 1
    loc, scale = numpy_encode(vae, x)
    assert float(vae.losses[0]) == pytest.approx(numpy_rate(loc, scale).mean(), rel=1e-5)  # nats per image


def test_loss_and_metrics_are_distortion_plus_rate_per_image(vae, x, monkeypatch):
    """With the posterior noise fixed, z = loc + scale * eps and every figure follows by hand."""
    eps = np.random.default_rng(3).standard_normal((8, 2))
    monkeypatch.setattr(vae, "_posterior_noise", lambda batch_size, training: tf.constant(eps, tf.float32))
    loss = float(vae.compute_loss(x, x, vae(x, training=True)))

    loc, scale = numpy_encode(vae, x)
    distortion = numpy_distortion(x, numpy_decode_logits(vae, loc + scale * eps))  # (8,)
    rate = numpy_rate(loc, scale)  # (8,)
    assert loss == pytest.approx(distortion.mean() + rate.mean(), rel=1e-5)
    metrics = {m.name: float(m.result()) for m in vae.metrics}
    assert metrics["distortion"] == pytest.approx(distortion.mean(), rel=1e-5)
    assert metrics["rate"] == pytest.approx(rate.mean(), rel=1e-5)
    assert metrics["elbo"] == pytest.approx(-(distortion + rate).mean(), rel=1e-5)


def test_untrained_elbo_is_near_784_ln2(x):
    vae = build_vae(Config(latent_dim=20, hidden_units=50))
    vae.compile(optimizer=tfk.optimizers.Adam())
    metrics = vae.evaluate(x, x, batch_size=8, return_dict=True, verbose=0)
    assert metrics["elbo"] == pytest.approx(-784 * math.log(2), rel=0.1)
    assert metrics["elbo"] == pytest.approx(-(metrics["rate"] + metrics["distortion"]), rel=1e-6)


def test_a_train_step_changes_weights_and_evaluation_does_not(x):
    vae = build_vae(tiny)
    vae.compile(optimizer=tfk.optimizers.Adam(1e-2))
    before = [w.numpy().copy() for w in vae.trainable_weights]
    assert len(before) == 8  # kernel and bias of two Dense layers in the encoder and two in the decoder
    vae.evaluate(x, x, batch_size=8, verbose=0)
    vae.predict(x, verbose=0)
    assert len(vae.trainable_weights) == len(before)
    assert all(np.array_equal(b, w.numpy()) for b, w in zip(before, vae.trainable_weights))
    vae.fit(x, x, batch_size=8, epochs=1, verbose=0)
    changed = [not np.array_equal(b, w.numpy()) for b, w in zip(before, vae.trainable_weights)]
    assert all(changed), "every weight of encoder and decoder should move after one step"


def test_training_lowers_the_loss(x):
    vae = build_vae(tiny)
    vae.compile(optimizer=tfk.optimizers.Adam(1e-2))
    history = vae.fit(x, x, batch_size=8, epochs=20, verbose=0).history
    assert history["elbo"][-1] > history["elbo"][0] + 50


def test_config_round_trip_rebuilds_the_same_function(x):
    vae = build_vae(tiny)
    clone = VAE.from_config(vae.get_config())
    clone(x)
    clone.set_weights(vae.get_weights())
    z = np.random.default_rng(0).standard_normal((5, 2)).astype(np.float32)
    np.testing.assert_array_equal(vae.decode_logits(z).numpy(), clone.decode_logits(z).numpy())
    assert clone.get_config()["latent_dim"] == 2


@pytest.mark.parametrize("architecture, image_shape", [("mlp", (6, 5, 1)), ("conv", (6, 5, 3))])
def test_decoder_bias_from_the_data_starts_at_the_average_image(architecture, image_shape):
    """--decoder-bias data: an MLP's last bias is the logit of each pixel's mean, a convolution's the logit of
    each channel's mean; with the other weights zero the decoder's probabilities are those means."""
    from tfvae.models.networks import set_output_bias

    config = Config(architecture=architecture, latent_dim=2, hidden_units=8, filters=4, image_shape=image_shape)
    vae = build_vae(config)
    means = np.random.default_rng(0).uniform(0.05, 0.95, image_shape)
    means[0, 0, 0] = 0.0  # a pixel never on: clipped, not -inf
    set_output_bias(vae.decoder, means)
    kernels = [w for layer in vae.decoder.layers for w in layer.trainable_weights if "kernel" in w.name]
    for kernel in kernels:
        kernel.assign(tf.zeros_like(kernel))
    probs = tf.sigmoid(vae.decoder(tf.zeros([1, 2]))).numpy().reshape(image_shape)
    expected = np.clip(means if architecture == "mlp" else means.mean(axis=(0, 1), keepdims=True) + 0 * means,
                       1e-3, 1 - 1e-3)
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)


def test_pixel_means_are_bernoulli_means_for_static_and_dynamic_images():
    from tfvae.pipeline import pixel_means

    binary = np.array([[[[0]], [[1]]], [[[1]], [[1]]]], np.uint8)  # (2, 2, 1, 1)
    np.testing.assert_allclose(pixel_means(binary), [[[0.5]], [[1.0]]])
    grey = np.array([[[[0]], [[255]]], [[[51]], [[255]]]], np.uint8)
    np.testing.assert_allclose(pixel_means(grey, dynamic=True), [[[0.1]], [[1.0]]])


def test_a_model_built_in_a_test_does_not_depend_on_the_tests_before_it():
    """conftest's reset: an earlier `tfk.utils.set_random_seed` (an in-process train does one) and draws from it
    must not change the initial weights of the next test's model, or a tolerance passes or fails by test order."""
    import random

    from conftest import reset_random_state

    def initial_weights():
        reset_random_state()
        vae = build_vae(Config(latent_dim=2, hidden_units=8))
        return np.concatenate([v.numpy().ravel() for v in vae.trainable_variables])

    first = initial_weights()
    tfk.utils.set_random_seed(5)  # what an earlier test may leave behind
    random.random()
    build_vae(Config(latent_dim=3, hidden_units=4))
    np.testing.assert_array_equal(initial_weights(), first)
