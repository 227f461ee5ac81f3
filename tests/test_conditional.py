"""Tests for the conditional VAE (`--condition label`, issue 28): labels from every source, the model, evaluation.

The estimator test has an exact answer: a 1-dimensional latent and a label that shifts the decoder's bias,

    p(z|y) = N(m_y, s_y^2) (or N(0, 1)),   p(x|z,y) = prod_p Bernoulli(x_p; sigmoid(z w_p + b_{y,p})),

so log p(x|y) = log ∫ p(x|z,y) p(z|y) dz is computed by quadrature, as in tests/test_evaluate.py.
Everything else is tiny: D = 2, 8 units, tens of images, one epoch.
"""

import gzip
import json
import math
import os

import numpy as np
import pytest
from click.testing import CliRunner

from tfvae import evaluate as ev
from tfvae.cli.main import cli
from tfvae.config import Config
from tfvae.datasets import load_splits
from tfvae.errors import ConfigError, DataError
from tfvae.mixture import Mixture

SHAPE = (28, 28, 1)
PIXELS = math.prod(SHAPE)
CLASSES = 3


def _npz(tmp_path, name="data.npz", n=40, **arrays):
    """x_train (n, 8, 8): image i is filled with grey level y_i / 10, so a label can be checked against its image."""
    y = np.arange(n) % CLASSES
    x = np.ones((n, 8, 8), np.float32) * (y.astype(np.float32)[:, None, None] / 10)
    values = {"x_train": x, "y_train": y, **arrays}
    path = tmp_path / name
    np.savez(path, **{k: v for k, v in values.items() if v is not None})
    return f"npz:{path}"


def _labelled(dataset, **options):
    return load_splits(dataset, likelihood="continuous_bernoulli", label_key="label", **options)


# --------------------------------------------------------------------------- labels from each source


def test_npz_labels_are_carved_with_their_images_and_name_the_classes(tmp_path):
    splits = _labelled(_npz(tmp_path))
    assert splits.classes == ("0", "1", "2")
    for split in ("train", "validation", "test"):
        images, labels = getattr(splits, split), splits.labels[split]
        assert labels.dtype == np.int32 and len(labels) == len(images)
        np.testing.assert_allclose(images[:, 0, 0, 0], labels / 10, atol=1e-6)  # each label stays with its image


def test_labels_enter_the_fingerprint_only_for_a_conditional_read(tmp_path):
    dataset = _npz(tmp_path)
    plain = load_splits(dataset, likelihood="continuous_bernoulli")
    assert plain.labels is None and plain.classes is None
    assert _labelled(dataset).fingerprint != plain.fingerprint
    x = np.load(str(tmp_path / "data.npz"))["x_train"]
    relabelled = tmp_path / "relabelled.npz"  # the same images, one label changed
    np.savez(relabelled, x_train=x, y_train=np.r_[1, np.arange(1, 40) % CLASSES])
    assert load_splits(f"npz:{relabelled}", likelihood="continuous_bernoulli").fingerprint == plain.fingerprint
    assert _labelled(f"npz:{relabelled}").fingerprint != _labelled(dataset).fingerprint


def test_folder_classes_are_the_first_subfolders(tmp_path):
    from PIL import Image

    for split, per_class in (("train", 6), ("valid", 1), ("test", 1)):
        for name in ("cat", "dog"):
            os.makedirs(tmp_path / split / name / "deeper")
            for i in range(per_class):
                grey = 200 if name == "dog" else 20
                Image.fromarray(np.full((6, 6), grey, np.uint8)).save(tmp_path / split / name / "deeper" / f"{i}.png")
    splits = _labelled(f"folder:{tmp_path}")
    assert splits.classes == ("cat", "dog")
    for split in ("train", "validation", "test"):
        lit = getattr(splits, split)[:, 0, 0, 0] > 127  # uint8 intensities (the continuous Bernoulli's grey levels)
        np.testing.assert_array_equal(lit, splits.labels[split] == 1)


def test_mnist_labels_come_from_the_idx_label_files(tmp_path):
    directory = tmp_path / "mnist"
    os.makedirs(directory)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60000), ("t10k", 10000)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        with gzip.open(directory / f"{prefix}-images-idx3-ubyte.gz", "wb", compresslevel=1) as f:
            f.write(bytes([0, 0, 8, 3]) + n.to_bytes(4, "big") + (28).to_bytes(4, "big") * 2)
            f.write(np.zeros(n * PIXELS, np.uint8).tobytes())
        with gzip.open(directory / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(bytes([0, 0, 8, 1]) + n.to_bytes(4, "big") + labels.tobytes())
        if prefix == "train":
            train_labels = labels
        else:
            test_labels = labels
    splits = load_splits("mnist", str(tmp_path), label_key="label")
    assert splits.classes == tuple("0123456789")
    np.testing.assert_array_equal(splits.labels["train"], train_labels[:50000])
    np.testing.assert_array_equal(splits.labels["validation"], train_labels[50000:])
    np.testing.assert_array_equal(splits.labels["test"], test_labels)


# --------------------------------------------------------------------------- refusals, one line each


@pytest.mark.parametrize("arrays, message", [
    (dict(y_train=np.arange(39) % CLASSES), "39 labels for 40 images"),
    (dict(y_train=np.arange(40) % CLASSES - 1), "is negative"),
    (dict(y_train=(np.arange(40) % CLASSES).astype(np.float32)), "must be integers"),
    (dict(y_train=(np.arange(40) % 2) * 2), "class '1' has no training image"),
    (dict(x_test=np.zeros((4, 8, 8), np.float32)), "no y_test array"),
])
def test_bad_labels_are_refused_in_one_line(tmp_path, arrays, message):
    with pytest.raises(DataError, match=message) as error:
        _labelled(_npz(tmp_path, **arrays))
    assert "\n" not in str(error.value)


def test_binarized_mnist_has_no_labels_and_suggests_mnist():
    with pytest.raises(ConfigError, match="--dataset mnist"):
        Config(condition="label")
    with pytest.raises(DataError, match="--dataset mnist"):
        load_splits("binarized_mnist", "/nonexistent", label_key="label")


def test_an_image_outside_a_class_folder_is_refused(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((6, 6), np.uint8)).save(tmp_path / "loose.png")
    with pytest.raises(DataError, match="not in a class folder"):
        _labelled(f"folder:{tmp_path}")


def test_a_conditional_vamp_prior_is_refused():
    with pytest.raises(ConfigError, match="not vamp"):
        Config(dataset="mnist", condition="label", prior="vamp")


def test_unconditional_configs_are_written_and_read_as_before():
    values = Config().to_dict()
    assert not {"condition", "label_key", "classes"} & set(values)
    assert Config.from_dict(values) == Config()
    conditional = Config(dataset="mnist", condition="label", classes=("a", "b"))
    assert Config.from_dict(json.loads(json.dumps(conditional.to_dict()))) == conditional
    assert conditional.num_classes == 2 and Config().num_classes == 0


# --------------------------------------------------------------------------- the pipeline


def test_labelled_batches_keep_the_unconditional_order():
    from tfvae.pipeline import make_training_dataset

    images = (np.arange(20, dtype=np.float32)[:, None, None, None] / 20) * np.ones((1, 2, 2, 1), np.float32)
    labels = np.arange(20) % CLASSES
    plain = [x.numpy() for x, _ in make_training_dataset(images, 8, seed=3, epochs=2)]
    labelled = list(make_training_dataset(images, 8, seed=3, epochs=2, labels=labels))
    for x_plain, (x, y) in zip(plain, labelled):
        np.testing.assert_array_equal(x_plain, x.numpy())
        np.testing.assert_array_equal(np.round(x.numpy()[:, 0, 0, 0] * 20).astype(int) % CLASSES, y.numpy())


# --------------------------------------------------------------------------- the model


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return (rng.random((96, *SHAPE)) < 0.3).astype(np.float32), rng.integers(0, CLASSES, 96).astype(np.int32)


def _vae(**options):
    from tfvae.models.vae import VAE

    return VAE(latent_dim=2, hidden_units=8, filters=4, classes=CLASSES, **options)


@pytest.mark.parametrize("options", [dict(), dict(architecture="conv", prior="mog")])
def test_a_conditional_train_step_changes_the_weights(data, options):
    x, y = data
    vae = _vae(**options)
    vae.compile()
    vae((x[:1], y[:1]))  # creates the weights
    before = [w.numpy().copy() for w in vae.trainable_weights]
    history = vae.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert np.isfinite(history.history["elbo"][0])
    assert all(not np.array_equal(b, w.numpy()) for b, w in zip(before, vae.trainable_weights))


def test_decoding_the_same_z_with_other_labels_gives_other_images():
    vae = _vae()
    z = np.zeros((CLASSES, 2), np.float32)
    means = vae.decode_mean(z, np.arange(CLASSES, dtype=np.int32)).numpy()
    assert means.shape == (CLASSES, *SHAPE)
    assert all(not np.allclose(means[0], means[k]) for k in range(1, CLASSES))
    cycling = np.arange(6) % CLASSES  # labels=None: the classes in turn
    np.testing.assert_array_equal(vae.sample(6, seed=2), vae.sample(6, seed=2, labels=cycling))


def test_labels_are_required_by_a_conditional_model_and_refused_by_an_unconditional_one():
    from tfvae.models.vae import VAE

    z = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match="conditional on 3 classes"):
        _vae().decode_mean(z)
    with pytest.raises(ValueError, match="0..2"):
        _vae().sample(2, labels=[0, 3])
    with pytest.raises(ValueError, match="unconditional"):
        VAE(latent_dim=2, hidden_units=8).decode_mean(z, [0, 1])
    with pytest.raises(ValueError, match="one label per image"):
        _vae().fit(np.zeros((4, 28, 28), np.float32), np.zeros(3, np.int32), verbose=0)
    with pytest.raises(ValueError, match="not 'vamp'"):
        _vae(prior="vamp")


def test_a_per_class_prior_has_one_component_per_class_and_samples_from_it():
    vae = _vae(prior="mog")
    logits, loc, scale = (t.numpy() for t in vae.prior_mixture())
    assert logits.shape == (CLASSES,) and loc.shape == scale.shape == (CLASSES, 2)
    _, loc_y, _ = (t.numpy() for t in vae.prior_mixture([2, 0]))
    np.testing.assert_array_equal(loc_y, loc[[2, 0]])
    assert vae.sample(4, labels=1).shape == (4, *SHAPE)


@pytest.mark.parametrize("options", [dict(), dict(architecture="conv", prior="mog")])
def test_a_saved_conditional_vae_reloads_bit_for_bit(tmp_path, data, options):
    from tfvae.saving import load_model

    x, y = data
    vae = _vae(**options)
    vae.compile()
    vae.fit(x[:32], y[:32], epochs=1, batch_size=16, verbose=0)
    vae.save(str(tmp_path / "m.keras"))
    again = load_model(str(tmp_path / "m.keras"))
    assert again.classes == CLASSES and again.class_names == ("0", "1", "2")
    z = np.random.default_rng(1).standard_normal((5, 2)).astype(np.float32)
    labels = np.array([0, 1, 2, 1, 0], np.int32)
    np.testing.assert_array_equal(vae.decode_mean(z, labels).numpy(), again.decode_mean(z, labels).numpy())
    for a, b in zip(vae.encode_params(x[:5], labels), again.encode_params(x[:5], labels)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


# --------------------------------------------------------------------------- evaluation: log p(x|y) against quadrature

GRID = np.linspace(-8.0, 8.0, 16001)
IMAGES_PER_CLASS = 3


class LinearConditionalModel:
    """p(z|y) = N(m_y, s_y^2), logits = z w + b_y: exact log p(x|y) by quadrature; q(z|x,y) shifted off the truth."""

    def __init__(self, class_prior: bool, seed=0):
        rng = np.random.default_rng(seed)
        self.w = rng.normal(0.0, 0.5, PIXELS)
        self.b = rng.normal(0.0, 1.5, (CLASSES, PIXELS))  # (N, P): the label moves every pixel
        self.m = np.array([-1.0, 0.5, 2.0]) if class_prior else np.zeros(CLASSES)
        self.s = np.array([0.5, 1.0, 1.5]) if class_prior else np.ones(CLASSES)
        self.labels = np.repeat(np.arange(CLASSES), IMAGES_PER_CLASS).astype(np.int32)
        z = self.m[self.labels] + self.s[self.labels] * rng.standard_normal(len(self.labels))
        p_x = 1 / (1 + np.exp(-(z[:, None] * self.w + self.b[self.labels])))
        self.images = (rng.random(p_x.shape) < p_x).astype(np.uint8).reshape(-1, *SHAPE)
        x = self.images.reshape(len(self.labels), -1).astype(np.float64)
        # log p(x|y) for every image and every class (n, N), and q(z|x,y) per (image, class).
        self.log_p_x_given_y = np.empty((len(x), CLASSES))
        self.loc, self.scale = np.empty((len(x), CLASSES)), np.empty((len(x), CLASSES))
        for y in range(CLASSES):
            logits = GRID[:, None] * self.w + self.b[y]  # (G, P)
            log_joint = (x @ logits.T - np.logaddexp(0, logits).sum(-1)
                         - 0.5 * ((GRID - self.m[y]) / self.s[y]) ** 2 - np.log(self.s[y]) - 0.5 * math.log(2 * math.pi))
            top = log_joint.max(-1, keepdims=True)
            log_norm = top[:, 0] + np.log(np.exp(log_joint - top).sum(-1))
            self.log_p_x_given_y[:, y] = log_norm + math.log(GRID[1] - GRID[0])
            posterior = np.exp(log_joint - log_norm[:, None])
            mean = posterior @ GRID
            sd = np.sqrt(posterior @ GRID**2 - mean**2)
            self.loc[:, y], self.scale[:, y] = mean + 0.5 * sd, 1.3 * sd
        self._index = {image.tobytes(): i for i, image in enumerate(self.images)}
        self.prior = Mixture(np.zeros(CLASSES), self.m[:, None], self.s[:, None]) if class_prior else None

    def encode(self, images, labels):
        index = [self._index[np.asarray(image, np.uint8).tobytes()] for image in images]
        return self.loc[index, labels][:, None].astype(np.float32), self.scale[index, labels][:, None].astype(np.float32)

    def decode_logits(self, z, labels):
        return (z * self.w.astype(np.float32) + self.b[labels].astype(np.float32)).reshape(-1, *SHAPE)


@pytest.mark.parametrize("class_prior", [False, True])
def test_log_p_x_given_y_matches_quadrature(class_prior):
    model = LinearConditionalModel(class_prior)
    evaluation = ev.evaluate_images(model.encode, model.decode_logits, model.images, importance_samples=1000,
                                    labels=model.labels, prior=model.prior)
    exact = model.log_p_x_given_y[np.arange(len(model.labels)), model.labels]
    np.testing.assert_allclose(evaluation.per_image_log_likelihood, exact, atol=0.05)
    assert evaluation.condition == "label" and evaluation.to_dict()["condition"] == "label"
    assert evaluation.rate_estimate == ("monte_carlo" if class_prior else "closed_form")


@pytest.mark.parametrize("class_prior", [False, True])
def test_the_models_own_classification_is_the_exact_argmax(class_prior):
    model = LinearConditionalModel(class_prior)
    accuracy, predicted, scores = ev.classify_images(model.encode, model.decode_logits, model.images, model.labels,
                                                     CLASSES, importance_samples=200, prior=model.prior)
    np.testing.assert_allclose(scores, model.log_p_x_given_y, atol=0.1)
    np.testing.assert_array_equal(predicted, np.argmax(model.log_p_x_given_y, axis=1))
    assert accuracy == np.mean(predicted == model.labels)


def test_evaluate_reports_log_p_x_given_y_and_an_accuracy_for_a_tiny_vae(data):
    x, y = data
    vae = _vae(prior="mog")
    evaluation = ev.evaluate(vae, x[:12], importance_samples=4, labels=y[:12], classification_samples=3)
    assert 0.0 <= evaluation.classification_accuracy <= 1.0 and evaluation.classification_samples == 3
    again = ev.evaluate_images(vae.encode_params, vae.decode_logits, x[:12], importance_samples=4, labels=y[:12],
                               traceable=True, prior=Mixture(*(t.numpy() for t in vae.prior_mixture())))
    assert evaluation.log_likelihood == pytest.approx(again.log_likelihood, abs=1e-4)
    with pytest.raises(ValueError, match="conditional on 3 classes"):
        ev.evaluate(vae, x[:4], importance_samples=2)


def test_unconditional_evaluations_keep_their_json_keys():
    model = LinearConditionalModel(False)
    evaluation = ev.evaluate_images(lambda im: model.encode(im, np.zeros(len(im), int)),
                                    lambda z: model.decode_logits(z, np.zeros(len(z), int)),
                                    model.images, importance_samples=2)
    assert not {"condition", "classification_accuracy", "classification_samples"} & set(evaluation.to_dict())


# --------------------------------------------------------------------------- the command line, end to end


def test_train_and_evaluate_a_conditional_run_from_the_command_line(tmp_path, monkeypatch):
    dataset = _npz(tmp_path, n=120)
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli, ["train", "--dataset", dataset, "--condition", "label", "--prior", "mog",
                                 "--epochs", "1", "--latent-dim", "2", "--hidden-units", "8", "--batch-size",
                                 "32", "--likelihood", "continuous_bernoulli", "--run-dir", "r", "--verbose", "0"])
    assert result.exit_code == 0, result.output
    config = json.load(open("r/config.json"))
    assert config["condition"] == "label" and config["classes"] == ["0", "1", "2"]
    result = runner.invoke(cli, ["evaluate", "--run-dir", "r", "-k", "3", "--classification-samples", "2",
                                 "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["condition"] == "label" and 0 <= figures["classification_accuracy"] <= 1


def test_condition_label_on_binarized_mnist_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli, ["train", "--condition", "label", "--run-dir", "r", "--verbose", "0"])
    assert result.exit_code != 0 and "--dataset mnist" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not os.path.exists("r")



@pytest.mark.slow
def test_a_resumed_conditional_run_continues_as_if_never_stopped(tmp_path):
    import tfvae

    options = dict(dataset=_npz(tmp_path, n=60), condition="label", prior="mog", latent_dim=2, hidden_units=8,
                   batch_size=16, likelihood="continuous_bernoulli", verbose=0, log=lambda message: None)
    tfvae.train(epochs=2, run_dir=str(tmp_path / "whole"), **options)
    tfvae.train(epochs=1, run_dir=str(tmp_path / "resumed"), **options)
    tfvae.train(epochs=2, run_dir=str(tmp_path / "resumed"), **options)
    assert open(tmp_path / "whole" / "history.csv").read() == open(tmp_path / "resumed" / "history.csv").read()
