"""Two stochastic layers (`--latent-layers 2`): the model's numbers are the two-layer model's, computed here
in its own coordinates (z1, z2), never through the u = [z2, e1] form the code uses.

    log p(x|z1, z2) + log p(z1|z2) + log p(z2) - log q(z1|x, z2) - log q(z2|x)    one sample, by hand
    log p(x) = log ∫∫ p(x|z1, z2) p(z1|z2) p(z2) dz1 dz2                           by quadrature, D1 = D2 = 1
"""

import json
import math

import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

import tfvae
from tfvae.cli.main import cli
from tfvae.config import Config
from tfvae.errors import ConfigError
from tfvae.models import VAE
from tfvae.models.posteriors import posterior_params


def moved(vae, spread=0.3, seed=1):
    """`vae` with every trainable weight moved off its start (biases start at 0), so no term is trivially 0."""
    rng = np.random.default_rng(seed)
    for weight in vae.trainable_weights:
        weight.assign(weight + rng.normal(0.0, spread, weight.shape).astype(np.float32))
    return vae


def images(n, shape=(28, 28, 1), seed=0, p=0.2):
    return (np.random.default_rng(seed).random((n, *shape)) < p).astype(np.float32)


def log_normal(x, loc, scale):
    """log N(x; loc, diag scale^2) summed over the last axis, float64."""
    x, loc, scale = (np.asarray(a, np.float64) for a in (x, loc, scale))
    return np.sum(-0.5 * ((x - loc) / scale) ** 2 - np.log(scale) - 0.5 * math.log(2 * math.pi), axis=-1)


def log_bernoulli(x, logits):
    """log p(x) of Bernoulli(logits) summed over pixels, float64; x and logits (..., P)."""
    x, logits = np.asarray(x, np.float64), np.asarray(logits, np.float64)
    return np.sum(x * logits - np.logaddexp(0.0, logits), axis=-1)


def two_layer_log_weight(vae, x, eps):
    """log p(x, z1, z2) - log q(z1, z2|x) for one sample per image, in the model's own coordinates.

    z2 = loc2 + scale2 eps2;  q(z1|x, z2) = N(m_p + s_p m_q, (s_p s_q)^2) with (m_p, s_p) of p(z1|z2) and
    (m_q, s_q) the network q_z1 gives; z1 = its mean + its scale eps1. p(z2) = N(0, I) (the normal prior).
    """
    top = vae.top_latent_dim
    x = tf.constant(x)
    params2, h = vae._encode(x, training=False)
    loc2, scale2 = (t.numpy().astype(np.float64) for t in posterior_params(params2))
    z2 = loc2 + scale2 * eps[:, :top]
    inputs = tf.concat([tf.cast(h, tf.float32), tf.constant(z2, tf.float32)], -1)
    m_q, s_q = (t.numpy().astype(np.float64) for t in posterior_params(vae.posterior_1(inputs)))
    m_p, s_p = (t.numpy().astype(np.float64) for t in posterior_params(vae.decoder.prior_1(tf.constant(z2, tf.float32))))
    z1 = (m_p + s_p * m_q) + (s_p * s_q) * eps[:, top:]
    logits = vae.decoder.body(tf.constant(np.concatenate([z1, z2], -1), tf.float32)).numpy()
    x_flat = x.numpy().reshape(len(z2), -1)
    log_p = log_bernoulli(x_flat, logits) + log_normal(z1, m_p, s_p) + log_normal(z2, 0.0, 1.0)
    log_q = log_normal(z2, loc2, scale2) + log_normal(z1, m_p + s_p * m_q, s_p * s_q)
    return log_p - log_q, -log_bernoulli(x_flat, logits)


# --------------------------------------------------------------------------- the model's math


def test_one_sample_elbo_is_the_two_layer_models():
    """The training step's distortion + sampled rate equals the two-layer log weight computed by hand."""
    vae = moved(VAE(latent_dim=3, latent_layers=2, latent_dim_1=4, hidden_units=16))
    x = images(6)
    y_pred = vae(tf.constant(x), training=False)  # eps: (seed, step 0, evaluation), the model's own noise
    eps = vae._posterior_noise(6, False).numpy().astype(np.float64)
    distortion = -y_pred.log_prob(tf.constant(x)).numpy()
    log_q_over_p = vae._latents.log_q_over_p.numpy()
    expected_log_w, expected_distortion = two_layer_log_weight(vae, x, eps)
    np.testing.assert_allclose(distortion, expected_distortion, rtol=1e-5)
    np.testing.assert_allclose(-(distortion + log_q_over_p), expected_log_w, rtol=1e-4, atol=1e-3)
    assert float(vae.losses[0]) == pytest.approx(float(np.mean(log_q_over_p)), rel=1e-5)  # the rate, added once
    assert len(vae.losses) == 1


def test_encode_log_prob_is_the_samplers_log_q():
    """`encode(x)` (N(0, I) through the hierarchy) gives the density `encode_sample` reports, and inverts it."""
    vae = moved(VAE(latent_dim=2, latent_layers=2, latent_dim_1=3, hidden_units=8, prior="mog", prior_components=4))
    x = images(5)
    eps = np.random.default_rng(2).standard_normal((5, 5)).astype(np.float32)
    u, log_q = vae.encode_sample(tf.constant(x), tf.constant(eps))
    q = vae.encode(x)
    np.testing.assert_allclose(q.log_prob(u).numpy(), log_q.numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(q.bijector.inverse(u).numpy(), eps, atol=1e-4)


# --------------------------------------------------------------------------- the estimator against the exact answer


def exact_log_likelihood(vae, x, grid_2=np.linspace(-7.0, 7.0, 561), grid_1=np.linspace(-12.0, 12.0, 1601)):
    """log ∫∫ p(x|z1, z2) p(z1|z2) N(z2; 0, 1) dz1 dz2 by quadrature on a grid of (z2, z1), D1 = D2 = 1, float64."""
    z2 = grid_2[:, None]  # (G2, 1)
    m_p, s_p = (t.numpy().astype(np.float64) for t in posterior_params(vae.decoder.prior_1(tf.constant(z2, tf.float32))))
    assert s_p.min() > 3 * (grid_1[1] - grid_1[0])  # p(z1|z2) is resolved by the grid
    z1 = np.broadcast_to(grid_1[None, :], (len(grid_2), len(grid_1)))  # (G2, G1)
    inputs = np.stack([z1, np.broadcast_to(z2, z1.shape)], -1).reshape(-1, 2)
    logits = vae.decoder.body(tf.constant(inputs, tf.float32)).numpy().astype(np.float64)  # (G2 G1, P)
    x_flat = x.reshape(len(x), -1).astype(np.float64)
    log_px = x_flat @ logits.T - np.logaddexp(0.0, logits).sum(-1)[None, :]  # (N, G2 G1)
    log_prior = log_normal(z1[..., None], m_p[:, :, None], s_p[:, :, None]) + log_normal(z2, 0.0, 1.0)[:, None]  # (G2, G1)
    log_joint = log_px + log_prior.reshape(-1)[None, :]
    top = log_joint.max(axis=1, keepdims=True)
    log_sum = top[:, 0] + np.log(np.exp(log_joint - top).sum(axis=1))
    return log_sum + math.log(grid_2[1] - grid_2[0]) + math.log(grid_1[1] - grid_1[0])


def test_importance_estimate_matches_quadrature_over_both_layers():
    shape = (2, 3, 1)
    vae = VAE(latent_dim=1, latent_layers=2, latent_dim_1=1, hidden_units=8, image_shape=shape)
    moved(vae.decoder.body, spread=0.5)  # p(x|z1, z2) far from its start: a posterior worth finding
    moved(vae.decoder.prior_1, spread=0.15, seed=4)  # p(z1|z2) depends on z2, its scale within the grid's reach
    moved(vae.encoder, spread=0.1, seed=2)
    moved(vae.posterior_1, spread=0.1, seed=3)
    # q wider than the posterior (as the one-layer test's q is the exact posterior widened): the weights stay
    # bounded, so K = 40000 resolves log p(x); raw scales + 2 (z2: scale ~2.1) and + 1 (e1: ~1.3 x p(z1|z2)'s)
    for network, width in ((vae.encoder, 1), (vae.posterior_1, 1)):
        bias = network.layers[-1].bias
        bias.assign(bias.numpy() + np.r_[np.zeros(width), np.full(width, 2.0 if network is vae.encoder else 1.0)])
    x = images(6, shape, seed=3, p=0.5)
    exact = exact_log_likelihood(vae, x)
    evaluation = tfvae.evaluate(vae, x, importance_samples=40000, seed=0)
    per_image = evaluation.per_image_log_likelihood
    np.testing.assert_allclose(per_image, exact, atol=0.02)
    assert evaluation.elbo < evaluation.log_likelihood  # the bound is below; the proposal is not the posterior
    assert evaluation.log_likelihood - evaluation.elbo > 0.01


# --------------------------------------------------------------------------- options, training, saving


def test_one_layer_config_json_is_unchanged_and_two_layers_are_recorded():
    assert "latent_layers" not in Config().to_dict() and "latent_dim_1" not in Config().to_dict()
    values = Config(latent_layers=2, latent_dim=8).to_dict()
    assert values["latent_layers"] == 2 and values["latent_dim_1"] is None
    assert Config.from_dict(json.loads(json.dumps(values))) == Config(latent_layers=2, latent_dim=8)


@pytest.mark.parametrize("options, message", [
    ({"latent_layers": 3}, "--latent-layers must be 1 or 2"),
    ({"latent_dim_1": 4}, "give it with --latent-layers 2"),
    ({"latent_layers": 2, "posterior": "iaf"}, "--posterior gaussian"),
    ({"latent_layers": 2, "condition": "label", "dataset": "mnist"}, "unconditional"),
    ({"latent_layers": 2, "latent_dim_1": 0}, "--latent-dim-1 must be a positive integer"),
])
def test_bad_layer_options_are_one_sentence(options, message):
    with pytest.raises(ConfigError, match=message):
        Config(**options)


@pytest.mark.parametrize("architecture, prior", [("mlp", "normal"), ("conv", "vamp"), ("mlp", "mog")])
def test_a_train_step_moves_every_part_and_evaluation_does_not(architecture, prior):
    vae = VAE(latent_dim=3, latent_layers=2, latent_dim_1=2, hidden_units=8, filters=4, architecture=architecture,
              prior=prior, prior_components=3, objective="iwae", train_samples=3)
    vae.compile()
    x = images(16)
    parts = {"encoder": vae.encoder, "q_z1": vae.posterior_1, "p_z1": vae.decoder.prior_1, "body": vae.decoder.body,
             **({"prior": vae.prior} if prior != "normal" else {})}
    before = {name: [w.numpy().copy() for w in part.trainable_weights] for name, part in parts.items()}
    vae.evaluate(x, batch_size=8, verbose=0)
    for name, part in parts.items():
        assert all(np.array_equal(a, w.numpy()) for a, w in zip(before[name], part.trainable_weights)), name
    history = vae.fit(x, batch_size=8, epochs=1, verbose=0).history
    assert set(history) == {"elbo", "rate", "distortion", "objective"}
    for name, part in parts.items():
        assert any(not np.array_equal(a, w.numpy()) for a, w in zip(before[name], part.trainable_weights)), name


def test_saved_and_reloaded_two_layer_model_gives_the_same_numbers(tmp_path):
    vae = moved(VAE(latent_dim=2, latent_layers=2, latent_dim_1=3, hidden_units=8, prior="vamp", prior_components=3))
    vae(tf.zeros([1, 28, 28, 1]))  # built, as a trained model is
    vae.compile()
    path = str(tmp_path / "m.keras")
    vae.save(path)
    again = tfvae.load_model(path)
    assert (again.latent_layers, again.top_latent_dim, again.latent_dim_1, again.latent_dim) == (2, 2, 3, 5)
    np.testing.assert_array_equal(again.sample(6, seed=4), vae.sample(6, seed=4))
    x = images(4)
    eps = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    for a, b in zip(again.encode_sample(tf.constant(x), tf.constant(eps)), vae.encode_sample(tf.constant(x), tf.constant(eps))):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)


def test_own_networks_are_refused_with_two_layers():
    import tf_keras as tfk

    encoder = tfk.Sequential([tfk.layers.InputLayer((28, 28, 1)), tfk.layers.Flatten(), tfk.layers.Dense(4)])
    decoder = tfk.Sequential([tfk.layers.InputLayer((2,)), tfk.layers.Dense(784)])
    with pytest.raises(ValueError, match="two-layer VAE"):
        VAE(latent_dim=2, latent_layers=2, encoder=encoder, decoder=decoder)


# --------------------------------------------------------------------------- the command line, export and the edge


@pytest.fixture(scope="module")
def two_layer_export(tmp_path_factory, synthetic_data_dir):
    root = tmp_path_factory.mktemp("two_layers")
    run, out = str(root / "run"), str(root / "out")
    env = {"TFVAE_DATA_DIR": synthetic_data_dir}
    result = CliRunner().invoke(cli, ["train", "--epochs", "1", "--limit", "256", "--hidden-units", "16",
                                      "--latent-layers", "2", "--latent-dim", "3", "--latent-dim-1", "2",
                                      "--prior", "vamp", "--prior-components", "5", "--run-dir", run,
                                      "--verbose", "0"], env=env)
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, ["export", "--run-dir", run, "--tflite", "--quantize", "int8", "--web",
                                      "--out", out], env=env)
    assert result.exit_code == 0, result.output
    return run, out


def test_cli_run_records_both_layers_and_exports_a_decoder_of_z2_and_the_noise(two_layer_export):
    run, out = two_layer_export
    with open(f"{run}/config.json") as f:
        config = json.load(f)
    assert (config["latent_layers"], config["latent_dim"], config["latent_dim_1"]) == (2, 3, 2)
    with open(f"{out}/manifest.json") as f:
        manifest = json.load(f)
    assert manifest["latent_dim"] == 5
    assert (manifest["latent_layers"]["z2"], manifest["latent_layers"]["z1"]) == (3, 2)
    assert "encode_sample" in manifest["signatures"]
    assert manifest["parity"]["decoder.tflite"]["max_abs_diff_probs"] < 1e-5
    prior = np.load(f"{out}/prior.npz")
    assert prior["loc"].shape == (5, 5)
    np.testing.assert_array_equal(prior["loc"][:, 3:], 0.0)  # p(e1) = N(0, I) in every component
    np.testing.assert_array_equal(prior["scale"][:, 3:], 1.0)


def test_exported_decoder_samples_what_the_keras_model_samples(two_layer_export, tmp_path):
    from tfvae.runs import load_vae

    run, out = two_layer_export
    _, vae = load_vae(run)
    result = CliRunner().invoke(cli, ["sample", "--model", f"{out}/decoder.tflite", "--n", "8", "--seed", "5",
                                      "--npy", str(tmp_path / "s.npy"), "--out", str(tmp_path / "s.png")])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(tmp_path / "s.npy").reshape(8, -1), vae.sample(8, seed=5).reshape(8, -1),
                               atol=1e-5)


@pytest.mark.browser
def test_the_page_draws_z2_and_the_noise_of_z1_from_its_seeded_generator(two_layer_export):
    """The page decodes [z2, e1] drawn by random.js; data-tfvae-z holds z2 and data-tfvae-noise e1, row by row."""
    import web_browser
    from test_web import mixture_replay

    from tfvae.export.sampler import open_decoder
    from tfvae.mixture import Mixture

    _, out = two_layer_export
    site = f"{out}/web"
    with open(f"{site}/tfvae.json") as f:
        assert json.load(f)["latent_layers"] == {"z2": 3, "z1": 2}
    prior = Mixture.load(f"{out}/prior.npz", latent_dim=5)
    for driver in web_browser.chromium_for_tests():
        with web_browser.serve(site) as (base, _):
            attributes = web_browser.open_page(driver, base + "index.html?seed=3")
        assert attributes["status"] == "ready", attributes
        u, _ = mixture_replay(3, 64, prior)  # (64, 5): the page's generator, replayed
        z2 = np.array([float(v) for v in attributes["z"].split(",")]).reshape(64, 3)
        noise = np.array([float(v) for v in attributes["noise"].split(",")]).reshape(64, 2)
        np.testing.assert_allclose(z2, u[:, :3], atol=1e-5)
        np.testing.assert_allclose(noise, u[:, 3:], atol=1e-5)
        decoder = open_decoder(f"{site}/decoder.tflite")
        expected = decoder.decode(u.astype(np.float32))["probs"].mean(dtype=np.float64)
        assert abs(float(attributes["mean"]) - expected) < 1e-5
        assert "Two latent layers" in driver.find_element("id", "status").text


def test_the_inference_gaps_refuse_two_layers_in_one_sentence():
    from tfvae.analysis.gaps import inference_gaps

    config = Config(latent_layers=2, latent_dim=2, hidden_units=8)
    vae = VAE(latent_dim=2, latent_layers=2, hidden_units=8)
    with pytest.raises(ConfigError, match="one-layer posterior .* two latent layers"):
        inference_gaps(config, vae, images(2), refine_steps=1, progress=False)


def test_two_layers_train_under_mixed_precision_with_z_in_float32():
    import tf_keras as tfk

    try:
        tfk.mixed_precision.set_global_policy("mixed_bfloat16")
        vae = VAE(latent_dim=2, latent_layers=2, latent_dim_1=2, hidden_units=8, architecture="conv", filters=4,
                  prior="vamp", prior_components=3)
        vae.compile()
        history = vae.fit(images(16), batch_size=8, epochs=1, verbose=0).history
        assert np.isfinite(history["elbo"][-1])
        assert vae.posterior_1.layers[0].compute_dtype == "bfloat16"  # the hidden layers compute in bfloat16
        assert vae.decode_logits(tf.zeros([2, 4])).dtype == tf.float32
    finally:
        tfk.mixed_precision.set_global_policy("float32")
