"""kl_standard_normal against TFP's KL and against values worked out by hand."""

import math

import numpy as np
import pytest

from tfvae import kl_standard_normal


def naive(mu, sigma):
    return (sigma**2 + mu**2 - 1) / 2 - math.log(sigma)


@pytest.mark.parametrize(
    "mu, sigma, expected",
    [
        (0.0, 1.0, 0.0),
        (1.0, 1.0, 0.5),
        (-2.0, 1.0, 2.0),
        (0.0, math.e, (math.e**2 - 1) / 2 - 1),
        (0.0, 1e-100, 100 * math.log(10) - 0.5),  # tiny sigma: -log sigma dominates
        (0.0, 1e100, 5e199),  # huge sigma: sigma^2 / 2 dominates, no overflow in float64
        (3.0, 0.5, (0.25 + 9 - 1) / 2 + math.log(2)),
    ],
)
def test_hand_values(mu, sigma, expected):
    assert kl_standard_normal(mu, sigma) == pytest.approx(expected, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("delta", [1e-4, -1e-6, 1e-9, 3e-12, -1e-15])
def test_sigma_extremely_close_to_one(delta):
    sigma = 1.0 + delta
    x = sigma - 1.0  # exactly representable difference
    expected = x * x - x**3 / 3 + x**4 / 4  # the series, far beyond double precision here
    assert kl_standard_normal(0.0, sigma) == pytest.approx(expected, rel=1e-12)


def test_naive_form_is_wrong_where_the_careful_one_is_right():
    sigma = 1.0 + 3e-12
    x = sigma - 1.0
    assert abs(naive(0.0, sigma) - x * x) > 0.1 * x * x  # the naive form returns round-off noise (or 0)
    assert kl_standard_normal(0.0, sigma) == pytest.approx(x * x, rel=1e-9)


def test_matches_tfp_on_a_grid():
    tfd = pytest.importorskip("tensorflow_probability").distributions
    mu = np.linspace(-4.0, 4.0, 17)[:, None]
    sigma = np.geomspace(1e-3, 1e3, 25)[None, :]
    expected = tfd.kl_divergence(tfd.Normal(mu, sigma), tfd.Normal(np.float64(0), np.float64(1))).numpy()
    np.testing.assert_allclose(kl_standard_normal(mu, sigma), expected, rtol=1e-10, atol=1e-13)


def test_types_follow_the_input():
    tf = pytest.importorskip("tensorflow")
    assert isinstance(kl_standard_normal(0.5, 2.0), float)
    array = kl_standard_normal(np.zeros(3), np.array([0.5, 1.0, 2.0]))
    assert isinstance(array, np.ndarray) and array.dtype == np.float64 and array.shape == (3,)
    tensor = kl_standard_normal(tf.zeros([2, 3]), tf.fill([2, 3], 1.0 + 1e-3))
    assert tf.is_tensor(tensor) and tensor.dtype == tf.float32 and tensor.shape == (2, 3)


def test_float32_tensor_near_one_keeps_its_digits():
    tf = pytest.importorskip("tensorflow")
    sigma32 = np.float32(1.0) + np.float32(2**-20)  # sigma - 1 = 9.5e-7, exact in float32
    x = float(sigma32) - 1.0
    got = float(kl_standard_normal(tf.constant(0.0), tf.constant(sigma32)))
    assert got == pytest.approx(x * x - x**3 / 3, rel=1e-5)
