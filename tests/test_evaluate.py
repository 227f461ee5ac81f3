"""Tests for tfvae.evaluate and `tfvae evaluate`: the estimators against an exact log p(x).

The exact model has a 1-dimensional latent, so log p(x) = log ∫ p(x|z) N(z; 0, 1) dz
is computed by quadrature on a fine grid, in float64:

    p(z) = N(0, 1),   p(x|z) = prod_p Bernoulli(x_p; sigmoid(z w_p + b_p)),   784 pixels

Its "encoder" is the exact posterior's mean and standard deviation (also by
quadrature), deliberately shifted by one standard deviation and widened 1.5
times, so that importance sampling is not trivially exact and the ELBO sits
KL(q || p(z|x)) ~ 0.7 nats below log p(x).

Runs for `evaluate_run` and the CLI are built by hand (a config and one
checkpoint of an untrained tiny VAE) with fake splits; one test reads the
session's synthetic data directory. Nothing here needs the real data.
"""

import hashlib
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from tfvae import evaluate as ev
from tfvae.datasets import splits as run_splits
from tfvae.cli import evaluate as evaluate_cli
from tfvae.cli.main import cli
from tfvae.config import IMAGE_SHAPE, Config, save_config
from tfvae.datasets import Splits
from tfvae.errors import ConfigError
from tfvae.runs import CHECKPOINT_DIR, CONFIG_FILE

PIXELS = math.prod(IMAGE_SHAPE)
IMAGES = 8
SHIFT, WIDEN = 1.0, 1.5  # q(z|x) = N(mean + SHIFT sd, (WIDEN sd)^2) around the exact posterior N(mean, sd^2)
GRID = np.linspace(-8.0, 8.0, 16001)  # z, spacing 0.001; the posterior sd is ~0.16
TOLERANCE = 0.05  # nats: |importance estimate - exact| per image at K = 1000


# --------------------------------------------------------------------------- the exact model


def _softplus(a):
    return np.logaddexp(0.0, a)


def _logsumexp(a, axis=-1):
    top = a.max(axis=axis, keepdims=True)
    return np.squeeze(top, axis) + np.log(np.exp(a - top).sum(axis=axis))


class LinearModel:
    """p(z) = N(0, 1), logits = z w + b; exact posteriors and log p(x) by quadrature."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.w = rng.normal(0.0, 0.5, PIXELS)  # (P,)
        self.b = rng.normal(0.0, 1.0, PIXELS)  # (P,)
        z = rng.standard_normal(IMAGES)  # images drawn from the model itself
        p_x = 1.0 / (1.0 + np.exp(-(z[:, None] * self.w + self.b)))  # (N, P)
        self.images = (rng.random((IMAGES, PIXELS)) < p_x).astype(np.uint8).reshape(IMAGES, *IMAGE_SHAPE)

        x = self.images.reshape(IMAGES, -1).astype(np.float64)  # (N, P)
        logits = GRID[:, None] * self.w + self.b  # (G, P)
        log_p_x_given_z = x @ logits.T - _softplus(logits).sum(-1)  # (N, G)
        log_joint = log_p_x_given_z - 0.5 * GRID**2 - 0.5 * math.log(2 * math.pi)  # (N, G)
        self.log_p_x = _logsumexp(log_joint) + math.log(GRID[1] - GRID[0])  # (N,) exact, in nats
        posterior = np.exp(log_joint - _logsumexp(log_joint)[:, None])  # (N, G), sums to 1 over the grid
        mean = posterior @ GRID
        sd = np.sqrt(posterior @ GRID**2 - mean**2)
        self.loc, self.scale = mean + SHIFT * sd, WIDEN * sd  # q(z|x), (N,) each
        # The exact ELBO of q: E_q[log p(x|z)] - KL(q || p(z)), by quadrature over q's density on the grid.
        q = np.exp(-0.5 * ((GRID - self.loc[:, None]) / self.scale[:, None]) ** 2)
        q /= q.sum(-1, keepdims=True)  # (N, G)
        kl = 0.5 * (self.scale**2 + self.loc**2 - 1.0) - np.log(self.scale)
        self.elbo = (q * log_p_x_given_z).sum(-1) - kl  # (N,)
        self._index = {image.tobytes(): i for i, image in enumerate(self.images)}

    def encode(self, images):
        """(B, 28, 28, 1) -> loc, scale (B, 1): looks each image up, so any subset or order works."""
        index = [self._index[np.asarray(image, dtype=np.uint8).tobytes()] for image in images]
        return self.loc[index, None].astype(np.float32), self.scale[index, None].astype(np.float32)

    def decode_logits(self, z):
        """(N, 1) -> (N, 28, 28, 1), plain NumPy."""
        logits = z * self.w.astype(np.float32) + self.b.astype(np.float32)  # (N, P)
        return logits.reshape(-1, *IMAGE_SHAPE)

    def evaluate(self, **options):
        return ev.evaluate_images(self.encode, self.decode_logits, self.images, **options)


@pytest.fixture(scope="module")
def model():
    return LinearModel()


# --------------------------------------------------------------------------- estimators against the exact answer


def test_importance_estimate_is_within_tolerance_of_exact_log_likelihood(model, monkeypatch):
    per_image = []
    original = ev._evaluate_batch

    def spy(*args):
        result = original(*args)
        per_image.append(result[0])
        return result

    monkeypatch.setattr(ev, "_evaluate_batch", spy)
    evaluation = model.evaluate(importance_samples=1000)
    errors = np.concatenate(per_image) - model.log_p_x
    assert np.max(np.abs(errors)) < TOLERANCE
    assert evaluation.log_likelihood == pytest.approx(np.mean(model.log_p_x), abs=TOLERANCE)
    assert evaluation.log_likelihood_stderr == pytest.approx(np.std(model.log_p_x, ddof=1) / math.sqrt(IMAGES), rel=0.05)


@pytest.mark.parametrize("estimator", ["importance", "prior"])
def test_both_estimators_approach_exact_value_as_k_grows(model, estimator):
    def mean_error(k):  # averaged over 3 seeds x 8 images
        return np.mean([model.evaluate(importance_samples=k, estimator=estimator, seed=s).log_likelihood
                        - np.mean(model.log_p_x) for s in range(3)])

    small, large = mean_error(3), mean_error(3000)
    assert abs(large) < TOLERANCE
    assert abs(large) < abs(small) / 5
    assert small < 0  # both are biased low at small K (Jensen)


def test_prior_sampling_is_much_worse_than_importance_sampling_at_small_k(model):
    def mean_error(estimator):  # over 5 seeds x 8 images
        return np.mean([model.evaluate(importance_samples=10, estimator=estimator, seed=s).log_likelihood
                        - np.mean(model.log_p_x) for s in range(5)])

    prior, importance = mean_error("prior"), mean_error("importance")
    assert prior < -0.5  # biased low: with the posterior ~0.16 wide, few of 10 prior samples explain x
    assert abs(prior) > 10 * abs(importance)


def test_elbo_matches_quadrature_and_is_below_importance_estimate(model):
    evaluation = model.evaluate(importance_samples=2000)
    assert evaluation.elbo == pytest.approx(np.mean(model.elbo), abs=TOLERANCE)
    assert evaluation.rate == pytest.approx(np.mean(0.5 * (model.scale**2 + model.loc**2 - 1) - np.log(model.scale)),
                                            rel=1e-5)
    assert evaluation.elbo == pytest.approx(-(evaluation.rate + evaluation.distortion))
    for seed in range(5):
        evaluation = model.evaluate(importance_samples=20, seed=seed)
        assert evaluation.log_likelihood > evaluation.elbo


def test_importance_estimate_does_not_decrease_with_k_in_expectation(model):
    seeds = range(40)
    means = [np.mean([model.evaluate(importance_samples=k, seed=s).log_likelihood for s in seeds]) for k in (1, 4, 16, 64)]
    assert all(later >= earlier - 0.01 for earlier, later in zip(means, means[1:])), means
    assert means[-1] - means[0] > 0.5  # the ELBO gap, ~0.7 nats, is mostly closed by K = 64
    assert max(means) < np.mean(model.log_p_x) + 0.01  # a lower bound in expectation


# --------------------------------------------------------------------------- the error from finite K


def _per_image(monkeypatch):
    """Spy on _evaluate_batch: a list that receives each batch's (log_likelihood, variance, samples)."""
    batches = []
    original = ev._evaluate_batch

    def spy(*args):
        result = original(*args)
        batches.append((result[0], result[3], result[4]))
        return result

    monkeypatch.setattr(ev, "_evaluate_batch", spy)
    return batches


def test_log_mean_weight_variance_matches_direct_numpy_from_running_sums():
    rng = np.random.default_rng(0)
    log_w = rng.normal(-500.0, 2.0, (3, 40))  # (B, K): weights far below float64's range, heavy-tailed
    log_w[2] = -123.0  # equal weights: no sampling error
    log_sum_w, log_sum_w2 = np.full(3, -np.inf), np.full(3, -np.inf)
    for start in range(0, 40, 7):  # in chunks, as _evaluate_batch accumulates them
        chunk = log_w[:, start:start + 7]
        log_sum_w = np.logaddexp(log_sum_w, ev._logsumexp(chunk))
        log_sum_w2 = np.logaddexp(log_sum_w2, ev._logsumexp(2 * chunk))
    w = np.exp(log_w - log_w.max(axis=1, keepdims=True))  # the ratio does not depend on the weights' scale
    direct = (np.mean(w**2, axis=1) / np.mean(w, axis=1) ** 2 - 1.0) / 40  # Var[w] / (K E[w]^2), sample moments
    np.testing.assert_allclose(ev._log_mean_weight_variance(log_sum_w, log_sum_w2, 40), direct, rtol=1e-9, atol=1e-15)
    assert ev._log_mean_weight_variance(log_sum_w, log_sum_w2, 40)[2] < 1e-12  # 0 but for the round-off of 6 chunks


def test_sampling_variance_predicts_the_spread_and_the_bias_over_seeds(model, monkeypatch):
    seeds = range(60)
    for k in (10, 30):
        batches = _per_image(monkeypatch)
        for seed in seeds:
            model.evaluate(importance_samples=k, seed=seed)
        estimates = np.stack([b[0] for b in batches])  # (seeds, N)
        variance = np.stack([b[1] for b in batches]).mean()  # mean predicted sigma^2
        spread = estimates.var(axis=0, ddof=1).mean()
        assert 0.75 < spread / variance < 1.33, (k, spread, variance)  # measured 1.07 (K = 10), 0.98 (K = 30)
        error = np.mean(estimates - model.log_p_x)  # the bias, -sigma^2 / 2, give or take 3 s.e.
        assert abs(error - (-variance / 2)) < 3 * math.sqrt(spread / estimates.size), (k, error, variance)


def _constant_weight_model(images):
    """A decoder that ignores z, so p(z|x) = p(z) = N(0, 1) = q(z|x): every weight is exactly p(x)."""
    b = np.random.default_rng(1).normal(0.0, 1.0, PIXELS).astype(np.float32)
    encode = lambda x: (np.zeros((len(x), 1), np.float32), np.ones((len(x), 1), np.float32))
    decode_logits = lambda z: np.broadcast_to(b, (len(z), PIXELS)).reshape(-1, *IMAGE_SHAPE)
    x = images.reshape(len(images), -1).astype(np.float64)
    log_p_x = x @ b - np.logaddexp(0.0, b.astype(np.float64)).sum()  # (N,) exact
    return encode, decode_logits, log_p_x


def test_constant_weights_have_no_sampling_error_and_stop_at_the_minimum(model, monkeypatch):
    encode, decode_logits, log_p_x = _constant_weight_model(model.images)
    monkeypatch.setattr(ev, "_DECODER_ROWS", IMAGES * 10)  # 10 samples per chunk, to see where it stops
    for k, used in ((5000, ev._MIN_SAMPLES_BEFORE_STOPPING), (50, 50)):
        evaluation = ev.evaluate_images(encode, decode_logits, model.images, importance_samples=k, target_se=1e-6)
        # 0 but for round-off (sigma^2 ~ 1e-15, so s.e. ~ 1e-8): it stops at the first check
        assert evaluation.sampling_stderr < 1e-6 and -1e-12 < evaluation.sampling_bias <= 0.0
        assert (evaluation.importance_samples, evaluation.importance_samples_used) == (k, used)
        assert evaluation.log_likelihood == pytest.approx(np.mean(log_p_x), rel=1e-6)


def test_target_se_stops_early_and_reports_the_samples_used(model, monkeypatch):
    batches = _per_image(monkeypatch)
    evaluation = model.evaluate(importance_samples=20000, target_se=0.05)
    assert evaluation.importance_samples == 20000
    assert evaluation.importance_samples_used == np.mean(np.concatenate([b[2] for b in batches])) < 20000
    assert math.hypot(evaluation.sampling_bias, evaluation.sampling_stderr) <= 0.05
    assert evaluation.log_likelihood == pytest.approx(np.mean(model.log_p_x), abs=TOLERANCE)
    finer = model.evaluate(importance_samples=20000, target_se=0.003)  # a tighter target costs more samples
    assert evaluation.importance_samples_used < finer.importance_samples_used <= 20000
    assert math.hypot(finer.sampling_bias, finer.sampling_stderr) <= 0.003


def test_target_se_draws_the_same_noise_as_the_default_path(model):
    default = model.evaluate(importance_samples=300, seed=3)
    unreachable = model.evaluate(importance_samples=300, seed=3, target_se=1e-12)  # never met: all K samples
    assert unreachable.importance_samples_used == 300 and default.importance_samples_used is None
    for field in ("log_likelihood", "elbo", "distortion", "log_likelihood_stderr", "sampling_stderr", "sampling_bias"):
        assert getattr(unreachable, field) == getattr(default, field)


@pytest.mark.parametrize("batch_size", [None, 1, 8, 100, 10000])
def test_decoder_rows_per_call_do_not_depend_on_k(batch_size):
    # What one call allocates (noise, z, logits) is rows x (D or P): bounded by _DECODER_ROWS (or one row per image
    # of a larger batch) whatever K is, so peak memory does not grow with K.
    for k in (50, 50000):
        batch = min(10000, batch_size or max(ev._MIN_BATCH_SIZE, ev._DECODER_ROWS // k))  # as evaluate_images picks
        assert batch * ev._chunk_size(batch, k) <= max(ev._DECODER_ROWS, batch)


def test_a_large_k_is_decoded_in_bounded_chunks(model):
    rows = []

    def decode_logits(z):
        rows.append(len(z))
        return model.decode_logits(z)

    for k in (50, 50000):
        rows.clear()
        ev.evaluate_images(model.encode, decode_logits, model.images[:1], importance_samples=k)
        assert sum(rows) == k and max(rows) <= ev._DECODER_ROWS


# --------------------------------------------------------------------------- chunking, seeds, paths


def test_chunks_over_k_give_the_same_estimate(model, monkeypatch):
    whole = model.evaluate(importance_samples=50, estimator="importance")
    monkeypatch.setattr(ev, "_DECODER_ROWS", 7)  # fewer rows than images: one sample per image per call
    chunked = model.evaluate(importance_samples=50, estimator="importance")
    for field in ("log_likelihood", "elbo", "distortion", "log_likelihood_stderr"):
        # Equal up to float32 summation order in the decoder; a wrong log-sum-exp across chunks is off by ~1e-3.
        assert getattr(chunked, field) == pytest.approx(getattr(whole, field), rel=1e-6)


def test_seed_fixes_the_noise_and_batch_size_does_not_change_it(model):
    first = model.evaluate(importance_samples=5, seed=1)
    assert model.evaluate(importance_samples=5, seed=1).log_likelihood == first.log_likelihood
    assert model.evaluate(importance_samples=5, seed=2).log_likelihood != first.log_likelihood
    assert model.evaluate(importance_samples=5, seed=1, batch_size=3).log_likelihood == pytest.approx(
        first.log_likelihood, rel=1e-9)


def test_compiled_keras_path_matches_plain_numpy_path():
    import tensorflow as tf
    from tfvae.models import build_vae

    tf.random.set_seed(0)
    vae = build_vae(Config(latent_dim=2, hidden_units=16))
    images = (np.random.default_rng(0).random((6, *IMAGE_SHAPE)) < 0.3).astype(np.uint8)
    options = dict(importance_samples=20, batch_size=4)
    compiled = ev.evaluate_images(vae.encode_params, vae.decode_logits, images, traceable=True, **options)
    graph = ev.evaluate_images(vae.encode_params, vae.decode_logits, images, traceable=True, jit_compile=False,
                               **options)
    plain = ev.evaluate_images(lambda x: [t.numpy() for t in vae.encode_params(x)],
                               lambda z: vae.decode_logits(z).numpy(), images, **options)
    for field in ("log_likelihood", "elbo", "rate", "distortion"):
        assert getattr(compiled, field) == pytest.approx(getattr(plain, field), rel=1e-5)
        assert getattr(graph, field) == pytest.approx(getattr(plain, field), rel=1e-5)


def test_each_architecture_says_whether_xla_evaluates_it():
    from tfvae.models import ARCHITECTURES

    # The MLP's likelihood is XLA-compiled (its decoder runs on oneDNN); conv evaluates 1.7x faster with no XLA
    # at all (BENCHMARKS.md).
    assert ARCHITECTURES["mlp"].xla_evaluation is True
    assert ARCHITECTURES["conv"].xla_evaluation is False


# --------------------------------------------------------------------------- options and results


@pytest.mark.parametrize("options, message", [
    ({"importance_samples": 0}, "--importance-samples must be a positive integer"),
    ({"importance_samples": 2.5}, "--importance-samples must be a positive integer"),
    ({"estimator": "posterior"}, "unknown --estimator"),
    ({"batch_size": 0}, "--batch-size must be a positive integer"),
    ({"seed": -1}, "--seed must be a non-negative integer"),
    ({"target_se": 0}, "--target-se must be a positive number"),
    ({"target_se": -0.1}, "--target-se must be a positive number"),
    ({"target_se": math.nan}, "--target-se must be a positive number"),
    ({"target_se": math.inf}, "--target-se must be a positive number"),
])
def test_bad_options_are_refused(model, options, message):
    with pytest.raises(ConfigError, match=message):
        model.evaluate(**options)


def test_intensities_are_refused(model):
    with pytest.raises(ValueError, match="binary"):
        ev.evaluate_images(model.encode, model.decode_logits, model.images * 255, importance_samples=2)


def test_progress_bar_goes_to_stderr_only_when_asked(model, capsys):
    model.evaluate(importance_samples=2, progress=False)
    assert capsys.readouterr().err == ""
    model.evaluate(importance_samples=2, progress=True)
    captured = capsys.readouterr()
    assert f"{IMAGES}/{IMAGES}" in captured.err and captured.out == ""


def test_to_dict_is_json_with_the_documented_keys(model):
    one = ev.evaluate_images(model.encode, model.decode_logits, model.images[:1], importance_samples=3)
    values = json.loads(json.dumps(one.to_dict(), allow_nan=False))
    assert {"split", "examples", "elbo", "rate", "distortion", "log_likelihood", "log_likelihood_stderr",
            "sampling_stderr", "sampling_bias", "importance_samples", "estimator"} <= set(values)
    assert values["examples"] == 1 and values["log_likelihood_stderr"] is None  # undefined for one image
    assert not {"target_se", "importance_samples_used"} & set(values)  # only with a target


def test_cli_choices_and_defaults_are_the_librarys():
    params = {param.name: param for param in evaluate_cli.evaluate.params}
    assert tuple(params["split"].type.choices) == ev.SPLITS and params["split"].default in ev.SPLITS
    assert tuple(params["estimator"].type.choices) == ev.ESTIMATORS and params["estimator"].default == ev.ESTIMATORS[0]
    assert params["importance_samples"].default == ev.DEFAULT_IMPORTANCE_SAMPLES


def test_train_split_of_a_dynamic_dataset_is_binarized_once(monkeypatch):
    intensities = np.random.default_rng(0).integers(0, 256, (5, *IMAGE_SHAPE), dtype=np.uint8)
    binary = np.zeros((3, *IMAGE_SHAPE), np.uint8)
    splits = Splits(train=intensities, validation=binary, test=binary, dynamic=True)
    monkeypatch.setattr(run_splits, "load_splits", lambda *args, **kwargs: splits)
    first = ev.split_images(Config(dataset="mnist"), "train")
    assert first.shape == intensities.shape and set(np.unique(first)) <= {0, 1}
    # x ~ Bernoulli(intensity / 255): black stays 0, white becomes 1, and on average E[x] = intensity / 255.
    assert (first[intensities == 0] == 0).all() and (first[intensities == 255] == 1).all()
    assert first.mean() == pytest.approx(intensities.mean() / 255, abs=0.03)
    assert first[intensities < 64].mean() < 0.25 < 0.75 < first[intensities >= 192].mean()
    np.testing.assert_array_equal(first, ev.split_images(Config(dataset="mnist"), "train"))  # once: a fixed seed


# --------------------------------------------------------------------------- runs and the command line


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run of an untrained tiny VAE: config.json and one epoch's checkpoint of the weights, as load_vae reads them."""
    import tensorflow as tf
    from tfvae.models import build_vae

    config = Config(latent_dim=2, hidden_units=16, epochs=1)
    path = tmp_path_factory.mktemp("run")
    save_config(config, str(path / CONFIG_FILE))
    checkpoint = tf.train.Checkpoint(model=build_vae(config))
    tf.train.CheckpointManager(checkpoint, str(path / CHECKPOINT_DIR), max_to_keep=1, checkpoint_name="epoch").save(1)
    return str(path)


@pytest.fixture
def fake_data(monkeypatch):
    """Replaces the dataset with 12 random binary images per split."""
    rng = np.random.default_rng(0)
    images = {split: (rng.random((12, *IMAGE_SHAPE)) < 0.2).astype(np.uint8) for split in ev.SPLITS}
    monkeypatch.setattr(run_splits, "load_splits", lambda *args, **kwargs: Splits(**images, dynamic=False))
    return images


def _digest(directory):
    import pathlib

    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(pathlib.Path(directory).rglob("*"))
            if p.is_file()}


def test_evaluate_run_leaves_weights_and_run_unchanged(run_dir, fake_data, monkeypatch):
    loaded = []
    real_load_vae = ev.load_vae

    def spy(path):
        config, vae = real_load_vae(path)
        loaded.append((vae, [w.copy() for w in vae.get_weights()]))
        return config, vae

    monkeypatch.setattr(ev, "load_vae", spy)
    files = _digest(run_dir)
    evaluation = ev.evaluate_run(run_dir, split="validation", importance_samples=30, limit=10, progress=False)
    assert (evaluation.split, evaluation.examples, evaluation.importance_samples) == ("validation", 10, 30)
    assert evaluation.log_likelihood > evaluation.elbo
    (vae, before), = loaded
    assert len(vae.get_weights()) == len(before)
    for after, weights in zip(vae.get_weights(), before):
        np.testing.assert_array_equal(after, weights)
    assert _digest(run_dir) == files


def test_evaluate_run_reads_the_split_from_a_data_dir(run_dir, synthetic_data_dir):
    evaluation = ev.evaluate_run(run_dir, importance_samples=10, limit=20, data_dir=synthetic_data_dir, progress=False)
    assert evaluation.examples == 20 and np.isfinite(evaluation.log_likelihood)


def test_cli_json_has_the_keys(run_dir, fake_data):
    result = CliRunner().invoke(cli, ["evaluate", "--run-dir", run_dir, "-k", "7", "--limit", "5", "--json"])
    assert result.exit_code == 0, result.output
    values = json.loads(result.stdout)
    assert {"split", "examples", "elbo", "rate", "distortion", "log_likelihood", "log_likelihood_stderr",
            "importance_samples", "estimator"} <= set(values)
    assert (values["split"], values["examples"], values["importance_samples"], values["estimator"]) == \
        ("test", 5, 7, "importance")


def test_cli_target_se_reports_the_samples_used(run_dir, fake_data):
    args = ["evaluate", "--run-dir", run_dir, "-k", "400", "--limit", "5", "--target-se", "0.5"]
    values = json.loads(CliRunner().invoke(cli, args + ["--json"]).stdout)
    assert (values["importance_samples"], values["target_se"]) == (400, 0.5)
    assert ev._MIN_SAMPLES_BEFORE_STOPPING <= values["importance_samples_used"] <= 400
    assert math.hypot(values["sampling_bias"], values["sampling_stderr"]) <= 0.5
    text = CliRunner().invoke(cli, args).stdout
    assert f"K = 400 at most, {values['importance_samples_used']:.0f} used on average" in text
    assert f"s.e. {values['sampling_stderr']:.2g}" in text and "target 0.5;" in text
    unreachable = CliRunner().invoke(cli, ["evaluate", "--run-dir", run_dir, "-k", "20", "--target-se", "1e-9"]).stdout
    assert "K = 20 at most, 20 used on average" in unreachable and "target 1e-09 not reached at this K" in unreachable


def test_cli_text_shows_the_same_figures(run_dir, fake_data):
    args = ["evaluate", "--run-dir", run_dir, "-k", "7", "--estimator", "prior", "--split", "train"]
    values = json.loads(CliRunner().invoke(cli, args + ["--json"]).stdout)
    text = CliRunner().invoke(cli, args).stdout
    for key in ("log_likelihood", "log_likelihood_stderr", "elbo", "rate", "distortion"):
        assert f"{values[key]:.2f}" in text
    assert f"bias ≈ {values['sampling_bias']:.2g}, s.e. {values['sampling_stderr']:.2g}" in text
    assert "train split, 12 images" in text and "K = 7" in text and "prior" in text


@pytest.mark.parametrize("args, message", [
    (["--run-dir", "no/such/run"], "does not exist"),
    (["--importance-samples", "0"], "--importance-samples must be a positive integer"),
    (["--limit", "13"], "--limit 13 is larger than the 12 test images"),
    (["--target-se", "0"], "--target-se must be a positive number of nats, got 0.0"),
    (["--target-se", "-0.05"], "--target-se must be a positive number of nats, got -0.05"),
    (["--target-se", "nan"], "--target-se must be a positive number of nats, got nan"),
])
def test_cli_errors_are_one_line(run_dir, fake_data, args, message):
    if "--run-dir" not in args:
        args = ["--run-dir", run_dir] + args
    result = CliRunner().invoke(cli, ["evaluate"] + args)
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("Error: ")
    assert message in result.stderr
    assert "Traceback" not in result.output and result.stdout == ""


@pytest.mark.parametrize("args, message", [
    (["--split", "nope"], "Invalid value for '--split': 'nope' is not one of"),
    (["--estimator", "exact"], "Invalid value for '--estimator'"),
])
def test_cli_unknown_choices_are_usage_errors(run_dir, args, message):
    result = CliRunner().invoke(cli, ["evaluate", "--run-dir", run_dir] + args)
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr
