"""Tests for the inference gaps (tfvae.analysis.gaps): the ELBO estimates against the model's own and against an exact
log p(x) by quadrature, and the refinement of each image's posterior."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tfvae.analysis import gaps
from tfvae.config import Config
from tfvae.evaluate import evaluate_vae, split_images
from tfvae.models import LIKELIHOODS, build_vae
from tfvae.runs import load_vae


@pytest.fixture(scope="module")
def trained(tiny_run):
    """The tiny two-epoch run (D = 2), its first 6 test images, and their exact log p(x) by quadrature."""
    config, run_dir, _ = tiny_run
    config, vae = load_vae(run_dir)
    images = split_images(config, "test")[:6]
    axis = np.linspace(-6.0, 6.0, 241)
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)  # (G, 2)
    logits = vae.decode_logits(tf.constant(grid, tf.float32)).numpy().reshape(len(grid), -1).astype(np.float64)
    x = images.reshape(len(images), -1).astype(np.float64)
    log_prior = -0.5 * (grid**2).sum(-1) - math.log(2 * math.pi)
    log_joint = x @ logits.T - np.logaddexp(0.0, logits).sum(-1) + log_prior  # (N, G)
    top = log_joint.max(-1, keepdims=True)
    exact = top[:, 0] + np.log(np.exp(log_joint - top).sum(-1)) + 2 * math.log(axis[1] - axis[0])
    return config, vae, images, exact


def test_the_elbo_estimate_is_the_models_own_elbo(trained):
    """2000 samples of log p(x, z) - log q(z|x) average to the closed-form ELBO that `tfvae evaluate` reports."""
    config, vae, images, _ = trained
    likelihood = LIKELIHOODS[config.likelihood]
    x = gaps._images(images, likelihood)
    loc, log_scale, context = gaps.encoded(vae, x)
    log_weights = gaps.log_p_over_q(vae, likelihood, x, context)
    estimate = gaps.elbo_estimates(log_weights, loc, log_scale)
    reference = evaluate_vae(vae, images, importance_samples=2000, progress=False)
    assert estimate.mean() == pytest.approx(reference.elbo, abs=0.1)
    # No refinement: q* is q, the same noise, the same figure to the last bit.
    same = gaps.elbo_estimates(log_weights, *gaps.refine_posterior(log_weights, loc, log_scale, 0))
    np.testing.assert_array_equal(same, estimate)


def test_refining_each_posterior_raises_its_elbo_up_to_the_exact_log_likelihood(trained):
    """D = 2: ELBO[q] < ELBO[q*] <= log p(x) (quadrature), and the three gaps add up."""
    config, vae, images, exact = trained
    result = gaps.inference_gaps(config, vae, images, refine_steps=300, importance_samples=2000, progress=False)
    assert result.log_likelihood == pytest.approx(exact.mean(), abs=0.05)
    assert result.refined_elbo > result.elbo + 0.1  # a two-epoch encoder is far from each image's best Gaussian
    assert result.refined_elbo < exact.mean() + 0.02  # a bound, up to the estimate's noise
    assert result.approximation_gap > 0 and result.amortisation_gap > 0
    values = result.to_dict()
    assert values["total_gap"] == pytest.approx(values["amortisation_gap"] + values["approximation_gap"])
    assert values["examples"] == 6 and values["refine_steps"] == 300


def test_images_are_refined_in_batches_with_the_same_result(trained, monkeypatch):
    """Six images in batches of 4 and 2 (memory bounded whatever --eval-images): each image's refinement is its own,
    so only the noise it draws changes."""
    config, vae, images, _ = trained
    whole = gaps.inference_gaps(config, vae, images, refine_steps=200, importance_samples=100, progress=False)
    monkeypatch.setattr(gaps, "BATCH_IMAGES", 4)
    batched = gaps.inference_gaps(config, vae, images, refine_steps=200, importance_samples=100, progress=False)
    assert batched.examples == 6 and batched.log_likelihood == whole.log_likelihood
    assert batched.elbo == pytest.approx(whole.elbo, abs=0.05)
    assert batched.refined_elbo == pytest.approx(whole.refined_elbo, abs=0.05)


def test_a_flow_posterior_is_refined_through_its_base_and_keeps_its_flow():
    """--posterior iaf: the flow is applied to the refined base (log q includes its log-det), and refining raises
    the ELBO; a new flow is the identity, so its estimate equals the Gaussian posterior's with the same encoder."""
    small = dict(latent_dim=2, hidden_units=16, flow_context="params")
    images = (np.random.default_rng(0).random((4, 28, 28, 1)) < 0.3).astype(np.float32)
    tf.random.set_seed(0)
    flow_vae = build_vae(Config(posterior="iaf", flow_steps=2, **small))
    gaussian_vae = build_vae(Config(**small))
    for source, target in ((flow_vae.encoder, gaussian_vae.encoder), (flow_vae.decoder, gaussian_vae.decoder)):
        target.set_weights(source.get_weights())
    likelihood = LIKELIHOODS["bernoulli"]
    x = gaps._images(images, likelihood)
    estimates = []
    for vae in (flow_vae, gaussian_vae):
        loc, log_scale, context = gaps.encoded(vae, x)
        estimates.append(gaps.elbo_estimates(gaps.log_p_over_q(vae, likelihood, x, context), loc, log_scale,
                                             samples=200))
    np.testing.assert_allclose(estimates[0], estimates[1], rtol=1e-5)

    for step in flow_vae.flow.steps:  # a flow that is not the identity
        step.shift.bias.assign([0.5, -0.5])
        step.log_scale.bias.assign([-0.3, 0.2])
    loc, log_scale, context = gaps.encoded(flow_vae, x)
    log_weights = gaps.log_p_over_q(flow_vae, likelihood, x, context)
    before = gaps.elbo_estimates(log_weights, loc, log_scale)
    # log q is the flow's density: the estimate is the evaluator's Monte Carlo ELBO (a dropped log-det is 0.2 off)
    reference = evaluate_vae(flow_vae, images,
                             importance_samples=2000, progress=False)
    assert before.mean() == pytest.approx(reference.elbo, abs=0.05)
    refined = gaps.refine_posterior(log_weights, loc, log_scale, 100)
    after = gaps.elbo_estimates(log_weights, *refined)
    assert after.mean() > before.mean() + 0.1
