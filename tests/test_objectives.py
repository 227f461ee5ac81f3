"""Objectives: IWAE with K = 1 is the ELBO, IWAE beats the ELBO for K > 1, the warm-up schedule, the history."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as tfk

from tfvae.config import Config
from tfvae.models import OBJECTIVES, build_vae, kl_weight
from tfvae.models.objectives import elbo_loss, iwae_loss

tiny = dict(latent_dim=2, hidden_units=8)


@pytest.fixture
def x():
    rng = np.random.default_rng(0)
    return (rng.random((8, 28, 28, 1)) < 0.13).astype(np.float32)


def networks(vae):
    return vae.encoder.get_weights() + vae.decoder.get_weights()


def set_networks(vae, weights):
    split = len(vae.encoder.get_weights())
    vae.encoder.set_weights(weights[:split])
    vae.decoder.set_weights(weights[split:])


def losses(config, x, weights=None):
    """(loss, model) of one training-mode forward pass of `config`'s VAE on x at step 0."""
    vae = build_vae(config)
    if weights is not None:
        set_networks(vae, weights)
    p_x_given_z = vae(x, training=True)
    return vae.compute_loss(x, x, p_x_given_z), vae


def test_iwae_with_one_sample_is_exactly_the_elbo(x):
    elbo, vae = losses(Config(**tiny), x)
    iwae, _ = losses(Config(**tiny, objective="iwae", train_samples=1), x, networks(vae))
    assert float(iwae) == float(elbo)  # bit for bit: the same noise, the closed-form KL


def test_iwae_bound_matches_numpy_logsumexp_on_a_fixed_case():
    rng = np.random.default_rng(1)
    distortion = rng.uniform(80, 120, (5, 3)).astype(np.float32)  # (K, B)
    log_q_over_p = rng.normal(20, 4, (5, 3)).astype(np.float32)  # (K, B)
    kl = np.float32(19.0)  # closed form, per image (the same for all three here)
    log_w = -distortion.astype(np.float64) - log_q_over_p  # (K, B), Burda et al.'s log weights
    top = log_w.max(0)
    bound = top + np.log(np.exp(log_w - top).mean(0))  # log (1/K) sum_k w_k, (B,)
    control = log_q_over_p.mean(0) - kl  # the zero-mean term tfvae adds (objectives.py)
    expected = -np.mean(bound + control)
    loss = iwae_loss(tf.constant(distortion), tf.constant(log_q_over_p), tf.constant(kl), tf.constant(1.0))
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    # Jensen: log mean w >= mean log w, image by image; the ELBO's loss is the larger one.
    assert np.all(bound >= (-distortion - log_q_over_p).mean(0))


def test_iwae_is_above_the_elbo_on_average_for_k_above_one(x):
    def mean_bound(objective, samples):
        config = Config(**tiny, objective=objective, train_samples=samples)
        vae = build_vae(config)
        set_networks(vae, weights)
        bounds = []
        for step in range(20):  # 20 noise draws (the step seeds the noise)
            vae.compile(optimizer=tfk.optimizers.SGD(0.0))
            vae.optimizer.iterations.assign(step)
            bounds.append(-float(vae.compute_loss(x, x, vae(x, training=True))))
        return np.mean(bounds)

    weights = networks(build_vae(Config(**tiny)))
    elbo, iwae_5, iwae_50 = mean_bound("elbo", 1), mean_bound("iwae", 5), mean_bound("iwae", 50)
    assert iwae_50 > iwae_5 > elbo


def test_elbo_with_k_samples_averages_the_distortion():
    distortion = tf.constant([[1.0, 3.0], [3.0, 5.0]])  # (K = 2, B = 2)
    assert float(elbo_loss(distortion, None, tf.constant(0.5), tf.constant(1.0))) == pytest.approx(3.5)
    assert float(elbo_loss(distortion, None, tf.constant(0.5), tf.constant(0.0))) == pytest.approx(3.0)


def test_an_empty_replica_contributes_zero_not_nan():
    empty = tf.zeros([4, 0])
    for loss in OBJECTIVES.values():
        assert float(loss(empty, empty, tf.constant(0.0), tf.constant(1.0))) == 0.0


def test_every_objective_trains_and_reports_the_one_sample_elbo_beside_it(x):
    for objective in OBJECTIVES:
        vae = build_vae(Config(**tiny, objective=objective, train_samples=3))
        vae.compile(optimizer=tfk.optimizers.Adam(1e-2))
        history = vae.fit(x, x, batch_size=4, epochs=2, verbose=0).history
        assert {"elbo", "rate", "distortion", "objective"} <= set(history), objective
        assert np.isfinite(history["objective"]).all()
        np.testing.assert_allclose(history["elbo"], -(np.array(history["rate"]) + history["distortion"]), rtol=1e-5)


# --------------------------------------------------------------------------- KL warm-up


def test_warmup_weight_per_epoch():
    assert [kl_weight(e, 4) for e in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert [kl_weight(e, 1) for e in range(3)] == [0.0, 1.0, 1.0]
    assert [kl_weight(e, 0) for e in range(3)] == [1.0, 1.0, 1.0]


def test_warmup_callback_sets_beta_per_epoch_and_validates_at_one(x):
    from tfvae.callbacks import KLWarmup

    seen = []

    class Spy(tfk.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(("train", float(self.model.kl_weight.numpy())))

        def on_test_batch_begin(self, batch, logs=None):
            seen.append(("validation", float(self.model.kl_weight.numpy())))

    vae = build_vae(Config(**tiny, warmup_epochs=2))
    vae.compile(optimizer=tfk.optimizers.Adam(1e-3))
    vae.fit(x, x, batch_size=8, epochs=3, validation_data=(x, x), callbacks=[KLWarmup(2), Spy()], verbose=0)
    assert seen == [("train", 0.0), ("validation", 1.0), ("train", 0.5), ("validation", 1.0),
                    ("train", 1.0), ("validation", 1.0)]


def test_warmup_lowers_the_objective_not_the_reported_elbo(x):
    vae = build_vae(Config(**tiny, warmup_epochs=2))
    p_x_given_z = vae(x, training=True)
    vae.kl_weight.assign(0.0)
    loss = float(vae.compute_loss(x, x, p_x_given_z))
    metrics = {m.name: float(m.result()) for m in vae.metrics}
    assert loss == pytest.approx(metrics["distortion"], rel=1e-6)  # beta = 0: the rate is not in the objective
    assert metrics["elbo"] == pytest.approx(-(metrics["distortion"] + metrics["rate"]), rel=1e-6)
    assert metrics["objective"] == pytest.approx(-loss, rel=1e-6)


@pytest.mark.parametrize("changes, message", [
    ({"warmup_epochs": -1}, "--warmup-epochs must be a non-negative integer"),
    ({"train_samples": 0}, "--train-samples must be a positive integer"),
    ({"objective": "vimco"}, "unknown --objective 'vimco'; choose one of: elbo, iwae"),
    ({"architecture": "resnet"}, "unknown --architecture 'resnet'; choose one of: mlp, conv"),
])
def test_config_refuses_what_the_registries_do_not_have(changes, message):
    from tfvae.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        Config(**changes)
