"""p(x|z): the continuous Bernoulli's mean (exported, in the graph) and log-normaliser (NumPy, for TFLite decoders)
against TFP's, near the awkward l = 0 (lambda = 0.5) and far from it; the Bernoulli path unchanged; the model
trains with either; the exported mean runs on builtin TFLite ops."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae.evaluate import continuous_bernoulli_log_normalizer, evaluate_images
from tfvae.models import LIKELIHOODS, VAE
from tfvae.models.likelihoods import continuous_bernoulli_mean

tfd = tfp.distributions

# Far from 0, near 0 (where the formulas cancel), and exactly 0.
LOGITS = np.concatenate([np.linspace(-30, 30, 121), np.linspace(-0.6, 0.6, 121), 1e-7 * np.arange(-3, 4)]).astype(np.float32)


def exact_mean(logits):
    """E[x] by quadrature of x p(x) over [0, 1], in float64: an answer computed another way."""
    x = (np.arange(20000) + 0.5) / 20000  # midpoints
    l = np.asarray(logits, np.float64)[:, None]
    log_kernel = x * l - np.logaddexp(0, l)
    w = np.exp(log_kernel - log_kernel.max(axis=1, keepdims=True))
    return (w * x).sum(axis=1) / w.sum(axis=1)


def test_the_mean_matches_quadrature_and_tfp_everywhere_including_near_logit_0():
    mean = continuous_bernoulli_mean(LOGITS).numpy()
    assert np.isfinite(mean).all() and mean.dtype == np.float32
    np.testing.assert_allclose(mean, exact_mean(LOGITS), atol=2e-6)
    np.testing.assert_allclose(mean, tfd.ContinuousBernoulli(logits=LOGITS).mean().numpy(), atol=2e-5)
    assert mean[LOGITS == 0] == pytest.approx(0.5)


def test_the_mean_is_monotone_across_the_switch_between_series_and_formula():
    logits = np.linspace(0.45, 0.55, 2001, dtype=np.float32)  # |l / 2| crosses 0.25
    assert np.all(np.diff(continuous_bernoulli_mean(logits).numpy()) >= 0)


def test_the_numpy_log_normaliser_matches_tfp():
    x = np.float32(0.3)
    tfp_log_prob = tfd.ContinuousBernoulli(logits=LOGITS.astype(np.float64)).log_prob(np.float64(x)).numpy()
    kernel = x * LOGITS.astype(np.float64) - np.logaddexp(0, LOGITS.astype(np.float64))
    np.testing.assert_allclose(kernel + continuous_bernoulli_log_normalizer(LOGITS), tfp_log_prob, atol=5e-6)  # TFP: float32
    assert continuous_bernoulli_log_normalizer(np.zeros(1))[0] == pytest.approx(np.log(2.0))


@pytest.mark.parametrize("shape", [(6,), (3, 6)])  # one sample per image, or K samples: (K, B)
def test_the_fused_bernoulli_distortion_is_tfps_log_prob_and_gradient(shape):
    """The training step's -log p(x|z) (one sigmoid cross-entropy over the logits) against TFP's Bernoulli, at
    logits from -40 to 40, values and gradients; x broadcasts over the K samples."""
    from tfvae.models.likelihoods import bernoulli_distortion

    rng = np.random.default_rng(0)
    logits = tf.constant(rng.uniform(-40, 40, (*shape, 2 * 3 * 2)).astype(np.float32))
    x = (rng.uniform(size=(shape[-1], 2, 3, 2)) < 0.5).astype(np.uint8)
    layer = LIKELIHOODS["bernoulli"].layer((2, 3, 2))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(logits)
        p_x_given_z = layer(logits)
        fused = bernoulli_distortion(p_x_given_z, x)
        reference = -p_x_given_z.log_prob(tf.cast(x, tf.float32))
    assert fused.shape == reference.shape == shape
    np.testing.assert_allclose(fused.numpy(), reference.numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(tape.gradient(fused, logits).numpy(), tape.gradient(reference, logits).numpy(), atol=1e-6)


def test_evaluation_uses_the_continuous_bernoulli_density_on_both_paths():
    """A one-pixel model whose log p(x) is known: z ~ N(0, 1), logits = 2 z; K large -> the same figure by two paths."""
    w = np.full((1, 4), 2.0, np.float32)
    images = np.array([[0.1, 0.5, 0.9, 0.3]], np.float32).reshape(1, 2, 2, 1)
    encode = lambda x: (np.zeros((len(x), 1), np.float32), np.ones((len(x), 1), np.float32))  # q = p
    decode = lambda z: (np.asarray(z) @ w).reshape(-1, 2, 2, 1)
    numpy_path = evaluate_images(encode, decode, images, importance_samples=4000, likelihood="continuous_bernoulli")
    traced = evaluate_images(
        lambda x: (tf.zeros([tf.shape(x)[0], 1]), tf.ones([tf.shape(x)[0], 1])),
        lambda z: tf.reshape(tf.matmul(z, w), [-1, 2, 2, 1]),
        images, importance_samples=4000, likelihood="continuous_bernoulli", traceable=True, jit_compile=False,
    )
    z = np.random.default_rng(1).standard_normal((200000, 1))
    log_p = tfd.ContinuousBernoulli(logits=(z @ w).astype(np.float64)).log_prob(images.reshape(1, 4).astype(np.float64))
    exact = np.log(np.mean(np.exp(np.sum(log_p.numpy(), axis=1))))
    assert numpy_path.likelihood == traced.likelihood == "continuous_bernoulli"
    assert numpy_path.log_likelihood == pytest.approx(exact, abs=0.05)
    assert traced.log_likelihood == pytest.approx(numpy_path.log_likelihood, abs=1e-4)
    assert "density" in numpy_path.meaning
    bernoulli = evaluate_images(encode, decode, (images > 0.5).astype(np.uint8), importance_samples=10)
    assert bernoulli.likelihood == "bernoulli" and "probability" in bernoulli.meaning


def test_evaluation_refuses_grey_levels_for_a_bernoulli_model():
    encode = lambda x: (np.zeros((len(x), 1), np.float32), np.ones((len(x), 1), np.float32))
    with pytest.raises(ValueError, match="binary"):
        evaluate_images(encode, lambda z: np.zeros((len(z), 2, 2, 1)), np.full((1, 2, 2, 1), 0.5), importance_samples=2)


@pytest.mark.parametrize("likelihood", list(LIKELIHOODS))
def test_a_vae_of_either_likelihood_trains_and_reports_its_mean(likelihood):
    vae = VAE(latent_dim=2, hidden_units=8, image_shape=(6, 5, 3), likelihood=likelihood)
    x = np.random.default_rng(0).random((8, 6, 5, 3)).astype(np.float32)
    if LIKELIHOODS[likelihood].binary:
        x = (x > 0.5).astype(np.float32)
    vae.compile(optimizer="adam")
    before = [w.numpy().copy() for w in vae.trainable_weights]
    vae.fit(x, x, epochs=1, batch_size=4, verbose=0)
    assert any(not np.allclose(a, b.numpy()) for a, b in zip(before, vae.trainable_weights))
    z = tf.zeros([3, 2])
    mean = vae.decode_mean(z).numpy()
    assert mean.shape == (3, 6, 5, 3)
    expected = tf.sigmoid(vae.decode_logits(z)) if likelihood == "bernoulli" else continuous_bernoulli_mean(vae.decode_logits(z))
    np.testing.assert_allclose(mean, expected.numpy(), atol=1e-6)
    assert VAE.from_config(vae.get_config()).likelihood == likelihood


def test_the_exported_mean_converts_to_builtin_tflite_ops(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    module = tf.Module()
    module.mean = tf.function(continuous_bernoulli_mean, input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.mean.get_concrete_function()], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    interpreter = Interpreter(model_content=converter.convert())
    runner = interpreter.get_signature_runner()
    logits = np.array([[-20.0, -0.01, 0.0, 3.0]], np.float32)
    (output,) = runner(**{runner.get_input_details().popitem()[0]: logits}).values()
    np.testing.assert_allclose(output, exact_mean(logits[0])[None], atol=2e-6)
