"""Learned priors (mog, vamp) and the flow posterior (iaf): densities, the sampled rate, the IS estimator,
prior.npz and sampling on the device."""

import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as tfk
from click.testing import CliRunner
from scipy import stats

from tfvae import evaluate as ev
from tfvae.config import IMAGE_SHAPE, Config
from tfvae.mixture import Mixture, PriorFileError, quadratic_features
from tfvae.models import build_vae
from tfvae.models.posteriors import features_context

small = dict(hidden_units=16)


def random_mixture(rng, components=3, latent_dim=2):
    return Mixture(rng.normal(size=components), rng.normal(size=(components, latent_dim)) * 2,
                   rng.uniform(0.3, 1.5, (components, latent_dim)))


def binary_images(n, seed=0):
    return (np.random.default_rng(seed).random((n, *IMAGE_SHAPE)) < 0.3).astype(np.float32)


# --------------------------------------------------------------------------- densities


def test_mixture_log_density_matches_scipy():
    rng = np.random.default_rng(0)
    prior = random_mixture(rng, components=4, latent_dim=3)
    z = rng.normal(size=(50, 3)) * 3
    weights = np.exp(prior.logits) / np.exp(prior.logits).sum()
    densities = sum(w * stats.multivariate_normal(m, np.diag(s**2)).pdf(z)
                    for w, m, s in zip(weights, prior.loc, prior.scale))
    np.testing.assert_allclose(prior.log_density(z), np.log(densities), rtol=1e-10)
    # Shapes: any leading axes.
    assert prior.log_density(z.reshape(5, 10, 3)).shape == (5, 10)
    assert Mixture.standard_normal(3).log_density(z) == pytest.approx(stats.multivariate_normal(np.zeros(3)).logpdf(z))


@pytest.mark.parametrize("jit_compile", [True, False])
def test_the_evaluators_compiled_mixture_density_is_numpys_to_float32_round_off(jit_compile):
    from tfvae.evaluate import _compiled_log_density

    rng = np.random.default_rng(1)
    prior = random_mixture(rng, components=7, latent_dim=3)
    z = (rng.normal(size=(4, 9, 3)) * 3).astype(np.float32)  # (B, C, D), as the evaluator draws them
    compiled = _compiled_log_density(prior, jit_compile)(z)
    assert compiled.shape == (4, 9) and compiled.dtype == np.float64
    np.testing.assert_allclose(compiled, prior.log_density(z), rtol=2e-6)  # float64, checked against scipy above


def test_the_quadratic_form_is_each_components_log_weight_and_density():
    rng = np.random.default_rng(2)
    prior = random_mixture(rng, components=4, latent_dim=3)
    z = rng.normal(size=(6, 3))
    per_component = quadratic_features(z) @ prior.quadratic_form()  # (6, 4)
    expected = np.stack([prior.log_weights()[k] + stats.multivariate_normal(prior.loc[k], np.diag(prior.scale[k] ** 2))
                         .logpdf(z) for k in range(4)], axis=1)
    np.testing.assert_allclose(per_component, expected, rtol=1e-12)


@pytest.mark.parametrize("prior", ["mog", "vamp"])
def test_learned_prior_layers_match_their_numpy_mixture(prior):
    vae = build_vae(Config(latent_dim=2, prior=prior, prior_components=5, **small))
    logits, loc, scale = (t.numpy() for t in vae.prior_mixture())
    assert logits.shape == (5,) and loc.shape == scale.shape == (5, 2) and np.all(scale > 0)
    z = np.random.default_rng(1).normal(size=(20, 2)).astype(np.float32)
    np.testing.assert_allclose(vae.prior.distribution().log_prob(z).numpy(),
                               Mixture(logits, loc, scale).log_density(z), rtol=1e-5)
    if prior == "vamp":  # the mixture of the posteriors at the pseudo-inputs, with equal weights
        pseudo_loc, pseudo_scale = vae.encode_params(vae.prior.pseudo_inputs())
        np.testing.assert_array_equal(loc, pseudo_loc.numpy())
        np.testing.assert_array_equal(scale, pseudo_scale.numpy())
        np.testing.assert_array_equal(logits, np.zeros(5))


@pytest.mark.parametrize("flow_context", ["features", "params"])
def test_a_new_flow_is_exactly_the_gaussian_posterior(flow_context):
    """The flow's output layers start at zero: z = loc + scale * eps and log q = log N(z; loc, scale^2), exactly."""
    import tensorflow_probability as tfp

    vae = build_vae(Config(latent_dim=3, posterior="iaf", flow_steps=2, flow_context=flow_context, **small))
    x = binary_images(4)
    eps = tf.constant(np.random.default_rng(0).normal(size=(4, 3)), tf.float32)
    z, log_q = vae.encode_sample(x, eps)
    loc, scale = vae.encode_params(x)
    np.testing.assert_array_equal(z.numpy(), (loc + scale * eps).numpy())
    gaussian = tfp.distributions.MultivariateNormalDiag(loc, scale)
    np.testing.assert_array_equal(log_q.numpy(), gaussian.log_prob(loc + scale * eps).numpy())


def test_the_flow_width_is_its_own_and_defaults_to_the_hidden_units():
    """--flow-hidden-units widens the flow's MADE networks only; left unset, the flow is the one runs had before the
    option, weight for weight (the same layers, shapes and initial values)."""
    widened = build_vae(Config(latent_dim=3, posterior="iaf", flow_hidden_units=24, **small))
    for step in widened.flow.steps:
        assert step.hidden.kernel.shape == (3, 24) and step.context.kernel.shape == (16, 24)
        assert step.shift.kernel.shape == (24, 3)
    assert widened.encoder.layers[1].kernel.shape[-1] == 16  # the encoder keeps --hidden-units
    tfk.utils.set_random_seed(0)  # as `tfvae train` does before it builds the model
    default = build_vae(Config(latent_dim=3, posterior="iaf", **small))
    tfk.utils.set_random_seed(0)
    same = build_vae(Config(latent_dim=3, posterior="iaf", flow_hidden_units=16, **small))
    assert [w.shape for w in default.flow.weights] != [w.shape for w in widened.flow.weights]
    assert len(default.weights) == len(same.weights)
    for a, b in zip(default.weights, same.weights):
        assert a.shape == b.shape
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def set_flow_weights(vae, seed=0, spread=0.5):
    """Random output layers for the flow's steps: a flow that is not the identity."""
    rng = np.random.default_rng(seed)
    for step in vae.flow.steps:
        for layer in (step.shift, step.log_scale):
            layer.kernel.assign(rng.normal(0, spread, layer.kernel.shape).astype(np.float32))
            layer.bias.assign(rng.normal(0, spread, layer.bias.shape).astype(np.float32))


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_the_features_context_is_the_encoder_split_before_its_last_layer(architecture):
    """h is the input of the encoder's last Dense layer, and the params computed from it are encoder(x), bit for bit:
    the encoder's weights and structure are those of a Gaussian or params-context model."""
    from tfvae.models.posteriors import params_context

    vae = build_vae(Config(architecture=architecture, filters=4, latent_dim=3, posterior="iaf", **small))
    x = binary_images(4)
    params, h = features_context(vae.encoder, x)
    assert h.shape == (4, small["hidden_units"])  # the last hidden layer, not the 2D params
    np.testing.assert_array_equal(params.numpy(), vae.encoder(x).numpy())
    np.testing.assert_array_equal(params.numpy(), vae.encoder.layers[-1](h).numpy())
    same_params, context = params_context(vae.encoder, x)
    np.testing.assert_array_equal(context.numpy(), same_params.numpy())
    np.testing.assert_array_equal(same_params.numpy(), params.numpy())
    # The flow is conditioned on h: the context layer of each step reads H numbers, not 2D.
    assert all(step.context.kernel.shape == (small["hidden_units"], small["hidden_units"]) for step in vae.flow.steps)


def test_a_features_flow_depends_on_h_and_encode_sample_passes_it():
    """The same z_0 (the same params and noise) with two different h gives two different z; and encode_sample is
    the flow at the encoder's h."""
    vae = build_vae(Config(latent_dim=3, posterior="iaf", flow_steps=2, **small))
    set_flow_weights(vae)
    x = binary_images(4)
    eps = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    loc, scale = vae.encode_params(x)
    z0 = loc + scale * eps
    h = vae.encoder.layers[-2](vae.encoder.layers[-3](x))  # Flatten, then the hidden Dense: (B, H)
    other_h = h + tf.constant(np.random.default_rng(1).normal(size=h.shape), tf.float32)
    z, log_det = vae.flow(z0, h)
    other_z, other_log_det = vae.flow(z0, other_h)
    assert (np.abs(z.numpy() - other_z.numpy()).max(axis=-1) > 1e-3).all()  # every image's z moves
    assert not np.allclose(log_det.numpy(), other_log_det.numpy())
    sampled_z, log_q = vae.encode_sample(x, eps)
    np.testing.assert_allclose(sampled_z.numpy(), z.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(log_q.numpy(), _gaussian_log_q(vae, x, eps[:, None])[:, 0] - log_det.numpy(),
                               rtol=1e-5, atol=1e-5)


def test_the_flow_is_autoregressive_and_its_log_density_is_the_change_of_variables():
    vae = build_vae(Config(latent_dim=3, posterior="iaf", flow_steps=1, **small))
    set_flow_weights(vae)
    _, context = features_context(vae.encoder, binary_images(1))
    z0 = tf.constant([[0.3, -1.2, 0.7]])
    with tf.GradientTape() as tape:
        tape.watch(z0)
        z, log_det = vae.flow(z0, context)
    jacobian = tape.batch_jacobian(z, z0)[0].numpy()  # (D, D)
    assert np.allclose(np.triu(jacobian, 1), 0.0)  # z_i depends on z_<=i only
    assert log_det.numpy()[0] == pytest.approx(np.log(abs(np.linalg.det(jacobian))), abs=1e-5)
    assert not np.allclose(z.numpy(), z0.numpy())  # the test would pass for the identity otherwise


# --------------------------------------------------------------------------- the sampled rate


@pytest.mark.parametrize("posterior, prior", [("iaf", "normal"), ("gaussian", "mog")])
def test_the_sampled_rate_estimates_the_kl(posterior, prior):
    """With the flow at the identity, or a one-component mog at N(0, I), q and p are the textbook pair:
    the Monte Carlo rate must average to the closed-form KL (sign and scale), at the distortion's z."""
    config = Config(latent_dim=2, posterior=posterior, prior=prior, prior_components=1, **small)
    vae = build_vae(config)
    if prior == "mog":
        vae.prior.loc.assign(np.zeros((1, 2), np.float32))
    x = np.repeat(binary_images(1), 4000, axis=0)  # one image, 4000 draws of z
    vae(x, training=False)
    sampled = float(vae.losses[0])
    loc, scale = (t.numpy().astype(np.float64)[0] for t in vae.encode_params(x[:1]))
    kl = float(np.sum((scale**2 + loc**2 - 1) / 2 - np.log(scale)))
    per_image = vae._latents.log_q_over_p.numpy()
    assert per_image.std() > 0  # a sample per image, not the closed form
    assert sampled == pytest.approx(per_image.mean(), rel=1e-5)
    assert sampled == pytest.approx(kl, abs=4 * float(per_image.std()) / math.sqrt(len(x)))
    assert kl > 0.05  # the posterior is not the prior: a rate of 0 would fail the test


def test_the_textbook_pair_keeps_the_closed_form_rate():
    from tfvae.models.posteriors import KLDivergenceLoss, SampledRateLoss

    assert isinstance(build_vae(Config(latent_dim=2, **small)).rate_loss, KLDivergenceLoss)
    for changes in ({"prior": "vamp"}, {"prior": "mog"}, {"posterior": "iaf"}):
        vae = build_vae(Config(latent_dim=2, prior_components=3, **small, **changes))
        assert isinstance(vae.rate_loss, SampledRateLoss), changes


# --------------------------------------------------------------------------- the IS estimator, exactly


def broad_flow_posterior(vae, base_scale=2.5, log_scale=-0.4, spread=0.3):
    """Weights that make q a proposal K = 3000 samples can correct, whatever the initialisation (an exact check
    must not rest on luck): the base N(0, base_scale^2) for every image, an affine-autoregressive step whose shift
    depends on z_<i and whose log-scale is a constant `log_scale` per dimension (log-det D * log_scale, so a
    dropped log-det moves the estimate by a known amount), a weak decoder, and prior components spread apart."""
    head = vae.encoder.layers[-1]
    raw_scale = math.log(math.expm1(base_scale))  # softplus^-1
    head.kernel.assign(np.zeros(head.kernel.shape, np.float32))
    head.bias.assign(np.repeat(np.array([0.0, raw_scale], np.float32), vae.latent_dim))
    for weight in vae.decoder.trainable_weights:
        if len(weight.shape) > 1:
            weight.assign(weight.numpy() * 0.3)
    rng = np.random.default_rng(0)
    for step in vae.flow.steps:
        step.shift.kernel.assign(rng.normal(0, spread, step.shift.kernel.shape).astype(np.float32))
        step.shift.bias.assign(rng.normal(0, spread, step.shift.bias.shape).astype(np.float32))
        step.log_scale.kernel.assign(np.zeros(step.log_scale.kernel.shape, np.float32))
        step.log_scale.bias.assign(np.full(step.log_scale.bias.shape, log_scale, np.float32))
    vae.prior.loc.assign(np.array([[-2.0, 0.0], [2.0, 0.5], [0.0, 2.0]], np.float32))


@pytest.mark.slow
def test_importance_estimate_with_a_mixture_prior_and_a_flow_matches_quadrature():
    """D = 2: log p(x) = log of the integral of p(x|z) p(z) over a grid, p a 3-component mixture with separated
    modes, against K = 3000 samples from a one-step flow posterior: right only if log q is the flow's density."""
    tfk.utils.set_random_seed(0)
    vae = build_vae(Config(latent_dim=2, posterior="iaf", flow_steps=1, flow_context="params", prior="mog",
                           prior_components=3, **small))
    broad_flow_posterior(vae)
    prior = Mixture(*(t.numpy() for t in vae.prior_mixture()))
    images = binary_images(3)
    axis = np.linspace(-7.0, 7.0, 351)
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)  # (G, 2)
    logits = vae.decode_logits(tf.constant(grid, tf.float32)).numpy().reshape(len(grid), -1).astype(np.float64)
    x = images.reshape(len(images), -1).astype(np.float64)
    log_joint = x @ logits.T - np.logaddexp(0.0, logits).sum(-1) + prior.log_density(grid)  # (N, G)
    top = log_joint.max(-1, keepdims=True)
    exact = top[:, 0] + np.log(np.exp(log_joint - top).sum(-1)) + 2 * math.log(axis[1] - axis[0])

    evaluation = ev.evaluate_images(vae.encode_params, vae.decode_logits, images, importance_samples=3000,
                                    traceable=True, prior=prior,
                                    sample_posterior=ev._batch_first(vae.encode_sample))
    assert evaluation.log_likelihood == pytest.approx(exact.mean(), abs=0.05)
    assert evaluation.rate_estimate == "monte_carlo"
    assert evaluation.elbo < evaluation.log_likelihood
    # Without the flow's log-determinant the estimate is wrong: the test can fail.
    flowed = ev._batch_first(vae.encode_sample)

    def without_log_det(images, eps):
        return flowed(images, eps)[0], _gaussian_log_q(vae, images, eps)

    wrong = ev.evaluate_images(vae.encode_params, vae.decode_logits, images, importance_samples=3000,
                               traceable=True, prior=prior, sample_posterior=without_log_det)
    # The base density is e^0.8 too small for each z, so each log weight is 0.8 too large.
    assert wrong.log_likelihood - exact.mean() == pytest.approx(-2 * -0.4, abs=0.1)


def _gaussian_log_q(vae, images, eps):
    """log N(loc + scale eps; loc, scale^2), (B, C): the base density, ignoring the flow."""
    loc, scale = vae.encode_params(images)
    return (-0.5 * tf.reduce_sum(eps**2, -1) - tf.reduce_sum(tf.math.log(scale), -1)[:, None]
            - tf.cast(eps.shape[-1], tf.float32) * 0.5 * math.log(2 * math.pi))


def test_the_prior_estimator_samples_the_learned_prior():
    """z ~ p(z) with a mixture prior: a decoder whose likelihood depends on z only through which side of 0
    z falls, so the naive estimate is log P(z_1 > 0) under the mixture."""
    prior = Mixture(np.log([0.8, 0.2]), np.array([[3.0], [-3.0]]), np.array([[0.5], [0.5]]))
    decode_logits = lambda z: np.where(z > 0, 30.0, -30.0).repeat(784, axis=1)  # noqa: E731
    images = np.ones((2, *IMAGE_SHAPE), np.uint8)  # p(x|z) = 1 if z > 0 else ~0
    encode = lambda x: (np.zeros((len(x), 1), np.float32), np.ones((len(x), 1), np.float32))  # noqa: E731
    evaluation = ev.evaluate_images(encode, decode_logits, images, importance_samples=4000, estimator="prior",
                                    prior=prior)
    assert evaluation.log_likelihood == pytest.approx(math.log(0.8), abs=0.03)


# --------------------------------------------------------------------------- prior.npz


def test_prior_npz_round_trip(tmp_path):
    prior = random_mixture(np.random.default_rng(0))
    path = tmp_path / "prior.npz"
    path.write_bytes(prior.to_npz_bytes())
    loaded = Mixture.load(str(path), latent_dim=2)
    for name in ("logits", "loc", "scale"):
        np.testing.assert_allclose(getattr(loaded, name), getattr(prior, name), rtol=1e-6)
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["loc", "logits", "scale"]
        assert all(npz[name].dtype == np.float32 for name in npz.files)


@pytest.mark.parametrize("arrays, message", [
    ({"logits": np.zeros(2), "loc": np.zeros((2, 2))}, "lacks the array(s) scale"),
    ({"logits": np.zeros(3), "loc": np.zeros((2, 2)), "scale": np.ones((2, 2))}, "must be logits (K,), loc (K, D)"),
    ({"logits": np.zeros(2), "loc": np.zeros((2, 2)), "scale": np.ones((2, 3))}, "scale has shape (2, 3)"),
    ({"logits": np.zeros(2), "loc": np.zeros((2, 2)), "scale": -np.ones((2, 2))}, "scale must be positive"),
    ({"logits": np.zeros(2), "loc": np.full((2, 2), np.nan), "scale": np.ones((2, 2))}, "NaN or infinite"),
    ({"logits": np.array([{"a": 1}, None], dtype=object), "loc": np.zeros((2, 2)), "scale": np.ones((2, 2))},
     "needs pickle"),
    ({"logits": np.zeros(2), "loc": np.zeros((2, 3)), "scale": np.ones((2, 3))}, "prior over D = 3"),
])
def test_bad_prior_npz_gets_one_clear_error(tmp_path, arrays, message):
    path = tmp_path / "prior.npz"
    np.savez(path, **arrays)
    with pytest.raises(PriorFileError) as raised:
        Mixture.load(str(path), latent_dim=2)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_prior_file_that_is_not_npz_is_refused(tmp_path):
    path = tmp_path / "prior.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(PriorFileError, match="not a readable .npz"):
        Mixture.load(str(path))


# --------------------------------------------------------------------------- end to end, and the device


@pytest.fixture(scope="module")
def vamp_flow_run(tmp_path_factory, synthetic_data_dir):
    """A one-epoch run with a VampPrior and a flow posterior on the encoder's features, exported with all three
    decoders."""
    from tfvae.cli.main import cli

    run_dir = str(tmp_path_factory.mktemp("vamp") / "run")
    runner = CliRunner()
    result = runner.invoke(cli, ["train", "--epochs", "1", "--limit", "256", "--latent-dim", "2", "--hidden-units",
                                 "16", "--batch-size", "64", "--prior", "vamp", "--prior-components", "4",
                                 "--posterior", "iaf", "--flow-steps", "2", "--flow-context", "features",
                                 "--flow-hidden-units", "24",
                                 "--data-dir", synthetic_data_dir,
                                 "--run-dir", run_dir])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["export", "--run-dir", run_dir, "--tflite", "--quantize", "float16,int8",
                                 "--eval-images", "20", "--importance-samples", "20"])
    assert result.exit_code == 0, result.output
    return run_dir


@pytest.mark.slow
def test_a_vamp_flow_run_trains_evaluates_and_exports(vamp_flow_run):
    from tfvae.export.litert import TFLiteEncoder
    from tfvae.io import file_sha256
    from tfvae.runs import load_vae

    with open(os.path.join(vamp_flow_run, "summary.json")) as f:
        assert json.load(f)["rate_estimate"] == "monte_carlo"
    with open(os.path.join(vamp_flow_run, "config.json")) as f:
        config = json.load(f)
    assert config["flow_context"] == "features" and config["flow_hidden_units"] == 24
    export = os.path.join(vamp_flow_run, "export")
    with open(os.path.join(export, "manifest.json")) as f:
        manifest = json.load(f)
    assert manifest["prior"]["family"] == "vamp" and manifest["prior"]["components"] == 4
    assert manifest["files"]["prior.npz"]["sha256"] == file_sha256(os.path.join(export, "prior.npz"))
    assert manifest["signatures"]["encode_sample"]["outputs"] == {"z": [None, 2], "log_q": [None]}
    assert manifest["parity"]["encoder.tflite"]["max_abs_diff_log_q"] < 1e-3

    # The exported prior is the model's (the mixture of the posteriors at the pseudo-inputs).
    _, vae = load_vae(vamp_flow_run, log=lambda m: None)
    logits, loc, scale = (t.numpy() for t in vae.prior_mixture())
    exported = Mixture.load(os.path.join(export, "prior.npz"))
    np.testing.assert_allclose(exported.loc, loc, rtol=1e-6)
    np.testing.assert_allclose(exported.scale, scale, rtol=1e-6)

    # encoder.tflite's encode_sample is the Keras flow.
    encoder = TFLiteEncoder(os.path.join(export, "encoder.tflite"))
    x, eps = binary_images(5), np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    z, log_q = encoder.encode_sample(x, eps)
    keras_z, keras_log_q = vae.encode_sample(x, eps)
    np.testing.assert_allclose(z, keras_z.numpy(), atol=1e-5)
    np.testing.assert_allclose(log_q, keras_log_q.numpy(), atol=1e-4)

    evaluation = ev.evaluate_run(vamp_flow_run, limit=8, importance_samples=50, progress=False,
                                 data_dir=None)
    assert evaluation.rate_estimate == "monte_carlo" and np.isfinite(evaluation.log_likelihood)
    assert evaluation.log_likelihood > evaluation.elbo


@pytest.mark.slow
def test_the_web_page_samples_the_exported_vamp_prior(vamp_flow_run, tmp_path):
    """export --web of a VampPrior run writes the page with the prior.npz mixture (the posteriors at the pseudo-inputs)."""
    from tfvae.cli.main import cli

    out = tmp_path / "w"
    result = CliRunner().invoke(cli, ["export", "--run-dir", vamp_flow_run, "--out", str(out), "--web"])
    assert result.exit_code == 0, result.output
    with open(out / "web" / "tfvae.json") as f:
        prior = json.load(f)["prior"]
    assert prior["family"] == "mixture" and prior["trained"] == "vamp" and prior["components"] == 4
    exported = Mixture.load(str(out / "prior.npz"), latent_dim=2)
    for name in ("logits", "loc", "scale"):
        np.testing.assert_array_equal(np.array(prior[name], dtype=np.float32), getattr(exported, name).astype(np.float32))


@pytest.mark.slow
def test_edge_samples_follow_the_exported_mixture(tmp_path, vamp_flow_run):
    """The mean image of many device samples (numpy prior + TFLite decoder) matches the mean image of
    decoded samples of the prior drawn by TensorFlow; and it differs from N(0, I)'s, so the test can fail."""
    import shutil

    from tfvae.export.sampler import open_decoder, open_prior, sample
    from tfvae.runs import load_vae

    _, vae = load_vae(vamp_flow_run, log=lambda m: None)
    # A prior far from N(0, I): mixture components moved to +-3, unequal weights; exported as prior.npz.
    export = str(tmp_path / "export")
    shutil.copytree(os.path.join(vamp_flow_run, "export"), export)
    prior = Mixture(np.log([0.7, 0.3]), np.array([[3.0, 0.0], [-3.0, 2.0]]), np.array([[0.3, 0.5], [0.4, 0.2]]))
    with open(os.path.join(export, "prior.npz"), "wb") as f:
        f.write(prior.to_npz_bytes())
    decoder_path = os.path.join(export, "decoder.tflite")
    decoder = open_decoder(decoder_path)
    edge = sample(decoder, 4000, seed=1, prior=open_prior(decoder_path, decoder)).probs.mean(0)

    import tensorflow_probability as tfp

    from tfvae.models.priors import mixture_distribution
    tf_prior = mixture_distribution(*(tf.constant(a, tf.float32) for a in (prior.logits, prior.loc, prior.scale)))
    z = tf_prior.sample(4000, seed=tfp.util.SeedStream(2, "prior")())
    reference = tf.sigmoid(vae.decode_logits(z)).numpy().mean(0)
    standard = sample(decoder, 4000, seed=1).probs.mean(0)
    tolerance = 0.02
    assert np.max(np.abs(edge - reference)) < tolerance
    assert np.max(np.abs(standard - reference)) > 2 * tolerance


@pytest.mark.slow
def test_cli_sample_reads_the_prior_and_refuses_a_bad_one(tmp_path, vamp_flow_run):
    import shutil

    from tfvae.cli.main import cli

    export = str(tmp_path / "export")
    shutil.copytree(os.path.join(vamp_flow_run, "export"), export)
    model = os.path.join(export, "decoder_int8.tflite")
    runner = CliRunner()
    result = runner.invoke(cli, ["sample", "--model", model, "--out", str(tmp_path / "a.png"), "--temperature", "0.7"])
    assert result.exit_code == 0, result.output
    assert "p(z) a 4-component mixture, temperature 0.7" in result.output

    np.savez(os.path.join(export, "prior.npz"), logits=np.zeros(2), loc=np.zeros((2, 2)), scale=-np.ones((2, 2)))
    result = runner.invoke(cli, ["sample", "--model", model, "--out", str(tmp_path / "b.png")])
    assert result.exit_code == 1
    assert "scale must be positive" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "b.png")

    os.remove(os.path.join(export, "prior.npz"))  # an export without a prior samples N(0, I)
    result = runner.invoke(cli, ["sample", "--model", model, "--out", str(tmp_path / "c.png")])
    assert result.exit_code == 0 and "mixture" not in result.output

    result = runner.invoke(cli, ["sample", "--model", model, "--out", str(tmp_path / "d.png"), "--temperature", "0"])
    assert result.exit_code == 1 and "--temperature must be a positive number" in result.stderr


def test_the_temperature_scales_the_prior():
    prior = Mixture(np.zeros(2), np.array([[2.0], [-2.0]]), np.array([[1.0], [1.0]]))
    cold = prior.sample(np.random.default_rng(0), 20000, temperature=0.1)
    assert np.std(np.abs(cold)) == pytest.approx(0.1, rel=0.05)  # the modes at +-2, each 0.1 wide
    assert np.mean(np.abs(cold)) == pytest.approx(2.0, abs=0.01)
    normal = Mixture.standard_normal(3)
    np.testing.assert_array_equal(normal.sample(np.random.default_rng(5), 4),
                                  np.random.default_rng(5).standard_normal((4, 3)).astype(np.float32))


@pytest.mark.slow
def test_priors_and_flows_combine_with_conv_iwae_and_warmup(tmp_path):
    """conv + vamp + iaf + iwae (K = 2) + warm-up trains, and its encoder (with encode_sample) and decoder
    convert to TFLite builtins with the Keras model's numbers."""
    import tf_keras as tfk

    from tfvae.callbacks import KLWarmup
    from tfvae.export.exporter import convert_signature
    from tfvae.export.litert import TFLiteDecoder, TFLiteEncoder
    from tfvae.export.savedmodel import save_signatures

    config = Config(architecture="conv", filters=4, hidden_units=16, latent_dim=2, prior="vamp", prior_components=3,
                    posterior="iaf", flow_steps=1, objective="iwae", train_samples=2, warmup_epochs=2)
    vae = build_vae(config)
    vae.compile(optimizer=tfk.optimizers.Adam(1e-2))
    x = binary_images(16)
    before = [w.numpy().copy() for w in vae.prior.weights + vae.flow.weights]
    history = vae.fit(x, x, batch_size=8, epochs=2, verbose=0, callbacks=[KLWarmup(2)]).history
    assert np.isfinite(history["elbo"]).all() and "objective" in history
    after = [w.numpy() for w in vae.prior.weights + vae.flow.weights]
    assert all(not np.array_equal(a, b) for a, b in zip(before, after))  # the prior and the flow learn

    saved_model = str(tmp_path / "saved_model")
    save_signatures(vae, saved_model)
    (tmp_path / "encoder.tflite").write_bytes(convert_signature(saved_model, ["encode", "encode_sample"]))
    (tmp_path / "decoder.tflite").write_bytes(convert_signature(saved_model, "decode"))
    eps = np.random.default_rng(0).normal(size=(4, 2)).astype(np.float32)
    z, log_q = TFLiteEncoder(str(tmp_path / "encoder.tflite")).encode_sample(x[:4], eps)
    keras_z, keras_log_q = vae.encode_sample(x[:4], eps)
    np.testing.assert_allclose(z, keras_z.numpy(), atol=1e-5)
    np.testing.assert_allclose(log_q, keras_log_q.numpy(), atol=1e-4)
    probs = TFLiteDecoder(str(tmp_path / "decoder.tflite")).decode(z)["probs"]
    np.testing.assert_allclose(probs, tf.sigmoid(vae.decode_logits(keras_z)).numpy(), atol=1e-5)


@pytest.mark.slow
def test_a_features_flow_exports_encode_sample_with_the_keras_numbers(tmp_path):
    """The SavedModel's and encoder.tflite's (builtin ops only) encode_sample compute the Keras flow at h."""
    from tfvae.export import layout
    from tfvae.export.exporter import convert_signature
    from tfvae.export.litert import TFLiteEncoder
    from tfvae.export.savedmodel import save_signatures

    vae = build_vae(Config(latent_dim=3, posterior="iaf", flow_steps=2, flow_context="features", **small))
    set_flow_weights(vae, spread=0.3)
    x, eps = binary_images(5), np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    keras_z, keras_log_q = (t.numpy() for t in vae.encode_sample(x, eps))
    loc, scale = vae.encode_params(x)
    assert not np.allclose(keras_z, (loc + scale * eps).numpy())  # not the identity: parity can fail

    saved_model = str(tmp_path / "saved_model")
    save_signatures(vae, saved_model)
    loaded = tf.saved_model.load(saved_model)
    outputs = loaded.signatures[layout.ENCODE_SAMPLE](**{layout.X: tf.constant(x), layout.EPS: tf.constant(eps)})
    np.testing.assert_allclose(outputs[layout.Z].numpy(), keras_z, atol=1e-6)
    np.testing.assert_allclose(outputs[layout.LOG_Q].numpy(), keras_log_q, atol=1e-5)

    (tmp_path / "encoder.tflite").write_bytes(convert_signature(saved_model, [layout.ENCODE, layout.ENCODE_SAMPLE]))
    z, log_q = TFLiteEncoder(str(tmp_path / "encoder.tflite")).encode_sample(x, eps)
    np.testing.assert_allclose(z, keras_z, atol=1e-5)
    np.testing.assert_allclose(log_q, keras_log_q, atol=1e-4)


@pytest.mark.slow
def test_a_flow_run_from_before_flow_context_loads_evaluates_and_trains_further(synthetic_data_dir, tmp_path):
    """A params-context run whose config.json has no flow_context (as every flow run before the field): its
    checkpoints load (they would not as a features flow), it evaluates, and it trains further."""
    from tfvae.errors import RunError
    from tfvae.runs import load_vae
    from tfvae.train import train_and_evaluate

    config = Config(epochs=1, limit=128, latent_dim=2, hidden_units=16, batch_size=64, posterior="iaf", flow_steps=1,
                    flow_context="params", data_dir=synthetic_data_dir)
    run_dir = str(tmp_path / "old")
    quiet = dict(verbose=0, log=lambda message: None)
    train_and_evaluate(config, run_dir, **quiet)
    path = os.path.join(run_dir, "config.json")
    with open(path) as f:
        values = json.load(f)

    def write_config(**changes):
        with open(path, "w") as f:
            json.dump({k: v for k, v in {**values, **changes}.items() if v is not None}, f)

    write_config(flow_context="features")  # the context the checkpoint was not trained with
    with pytest.raises(RunError):
        load_vae(run_dir, log=lambda message: None)
    write_config(flow_context=None)  # the old file
    loaded, vae = load_vae(run_dir, log=lambda message: None)
    assert loaded.flow_context == vae.flow_context == "params"
    evaluation = ev.evaluate_run(run_dir, limit=8, importance_samples=20, progress=False)
    assert np.isfinite(evaluation.log_likelihood) and evaluation.log_likelihood > evaluation.elbo
    train_and_evaluate(loaded.replace(epochs=2), run_dir, **quiet)
    with open(os.path.join(run_dir, "history.csv")) as f:
        assert len(f.read().strip().splitlines()) == 3  # a header and two epochs


@pytest.mark.slow
def test_a_learned_prior_and_flow_run_trained_further_equals_a_straight_run(synthetic_data_dir, tmp_path):
    """The prior's and the flow's weights are checkpointed: 1 epoch, then trained to 2, gives the straight run's
    history.csv byte for byte."""
    from tfvae.train import train_and_evaluate

    config = Config(epochs=1, limit=128, latent_dim=2, hidden_units=16, batch_size=64, prior="mog", prior_components=3,
                    posterior="iaf", flow_steps=1, data_dir=synthetic_data_dir)
    quiet = dict(verbose=0, log=lambda message: None)
    resumed, straight = str(tmp_path / "resumed"), str(tmp_path / "straight")
    train_and_evaluate(config, resumed, **quiet)
    train_and_evaluate(config.replace(epochs=2), resumed, **quiet)
    train_and_evaluate(config.replace(epochs=2), straight, **quiet)
    with open(os.path.join(resumed, "history.csv"), "rb") as a, open(os.path.join(straight, "history.csv"), "rb") as b:
        assert a.read() == b.read()
