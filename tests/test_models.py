"""The VAE: the KL is counted once and in closed form, training moves weights, evaluation does not."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as tfk

from tfvae import kl_standard_normal
from tfvae.config import Config
from tfvae.models import VAE, build_vae

tiny = Config(latent_dim=2, hidden_units=8)


@pytest.fixture
def x():
    rng = np.random.default_rng(0)
    return (rng.random((8, 28, 28, 1)) < 0.13).astype(np.float32)


def test_kl_appears_once_and_equals_the_closed_form(x):
    vae = build_vae(tiny)
    vae(x)
    assert len(vae.losses) == 1
    loc, scale = (t.numpy().astype(np.float64) for t in vae.encode_params(x))
    expected = kl_standard_normal(loc, scale).sum(axis=-1).mean()  # nats per image
    assert float(vae.losses[0]) == pytest.approx(expected, rel=1e-5)


def test_loss_is_distortion_plus_rate_per_image(x):
    vae = build_vae(tiny)
    tf.random.set_seed(1)
    p_x_given_z = vae(x)
    loss = vae.compute_loss(x, x, p_x_given_z)
    distortion = -p_x_given_z.log_prob(x).numpy()
    assert distortion.shape == (8,)
    assert float(loss) == pytest.approx(distortion.mean() + float(vae.losses[0]), rel=1e-6)


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
    vae.evaluate(x, x, batch_size=8, verbose=0)
    vae.predict(x, verbose=0)
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


def test_decode_and_encode_are_deterministic_tensor_functions(x):
    vae = build_vae(tiny)
    z = tf.zeros([3, 2])
    assert vae.decode_logits(z).shape == (3, 28, 28, 1)
    np.testing.assert_array_equal(vae.decode_logits(z).numpy(), vae.decode_logits(z).numpy())
    loc, scale = vae.encode_params(x)
    assert loc.shape == scale.shape == (8, 2) and bool(tf.reduce_all(scale > 0))
