"""tfvae.VAE from Python: fit on arrays and datasets, save to .keras and reload, encode / decode / sample, bad input.

Tiny models (D = 2, 8-16 units) on random images: these tests are about behaviour, not quality.
"""

import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as tfk

import tfvae
from tfvae.errors import ConfigError, TfvaeError

IMAGE_SHAPE = (28, 28, 1)


def images(n=48, seed=0, grey=False):
    """(n, 28, 28) float32: binary, or grey levels in [0, 1]."""
    rng = np.random.default_rng(seed)
    pixels = rng.random((n, 28, 28)).astype("float32")
    return pixels if grey else (pixels < 0.3).astype("float32")


def tiny(**options):
    vae = tfvae.VAE(**{"latent_dim": 2, "hidden_units": 16, **options})
    vae.compile()
    return vae


def weights(vae):
    return [w.numpy().copy() for w in vae.trainable_weights]


def changed(before, after):
    return any(not np.array_equal(a, b) for a, b in zip(before, after))


# ------------------------------------------------------------------ fit and evaluate


def test_fit_on_an_array_of_grey_images_changes_the_weights_and_reports_the_elbo_terms():
    vae = tiny()
    vae(tf.zeros([1, *IMAGE_SHAPE]))
    before = weights(vae)
    history = vae.fit(images(grey=True), epochs=2, batch_size=16, validation_data=images(16, seed=1), verbose=0)
    assert changed(before, weights(vae))
    assert set(history.history) == {"elbo", "rate", "distortion", "val_elbo", "val_rate", "val_distortion"}
    elbo, rate, distortion = (np.array(history.history[k]) for k in ("elbo", "rate", "distortion"))
    np.testing.assert_allclose(elbo, -(rate + distortion), rtol=1e-5)
    assert np.all(rate >= 0)


def test_evaluate_does_not_change_the_weights():
    vae = tiny()
    vae.fit(images(), epochs=1, batch_size=16, verbose=0)
    before = weights(vae)
    result = vae.evaluate(images(16, seed=2), batch_size=8, return_dict=True, verbose=0)
    assert not changed(before, weights(vae))
    assert result["elbo"] == pytest.approx(-(result["rate"] + result["distortion"]), rel=1e-5)


def test_fit_takes_datasets_of_images_and_of_pairs_and_keras_callbacks(tmp_path):
    x = images()
    vae = tiny()
    pairs = tf.data.Dataset.from_tensor_slices((x, np.arange(len(x)))).batch(16)  # (images, labels): labels ignored
    callbacks = [
        tfk.callbacks.EarlyStopping(monitor="val_elbo", mode="max", patience=1),
        tfk.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"), monitor="val_elbo", mode="max", save_best_only=True),
        tfk.callbacks.TensorBoard(str(tmp_path / "logs")),
    ]
    history = vae.fit(pairs, epochs=2, validation_data=tf.data.Dataset.from_tensor_slices(x[:16]).batch(8),
                      callbacks=callbacks, verbose=0)
    assert len(history.history["val_elbo"]) >= 1
    assert isinstance(tfvae.load_model(str(tmp_path / "best.keras")), tfvae.VAE)
    assert os.listdir(tmp_path / "logs")


def test_a_bernoulli_model_binarizes_grey_values_afresh_at_every_step_and_keeps_binary_ones():
    vae = tiny()
    vae.fit(images(16), epochs=1, batch_size=16, verbose=0)  # creates the optimizer's step counter
    grey = tf.constant(images(64, grey=True).reshape(64, 28, 28, 1))
    first = vae._batch_images(grey, training=True).numpy()
    assert set(np.unique(first)) == {0.0, 1.0}
    assert abs(first.mean() - grey.numpy().mean()) < 0.01  # x ~ Bernoulli(pixel): the mean is kept
    vae.optimizer.iterations.assign_add(1)
    assert not np.array_equal(first, vae._batch_images(grey, training=True).numpy())  # a new draw at the next step
    binary = tf.constant(images(8).reshape(8, 28, 28, 1))
    np.testing.assert_array_equal(vae._batch_images(binary, training=True).numpy(), binary.numpy())
    continuous = tiny(likelihood="continuous_bernoulli")
    np.testing.assert_array_equal(continuous._batch_images(grey, training=True).numpy(), grey.numpy())


def test_compile_without_arguments_is_adam_at_the_command_lines_step_size():
    vae = tiny()
    assert type(vae.optimizer).__name__ == "Adam"
    assert float(vae.optimizer.learning_rate) == pytest.approx(1e-3)
    other = tfvae.VAE(latent_dim=2, hidden_units=8)
    other.compile(optimizer=tfk.optimizers.SGD(0.1))
    other.fit(images(16), epochs=1, batch_size=8, verbose=0)
    with pytest.raises(ValueError, match="own objective"):
        other.compile(loss="mse")


# ------------------------------------------------------------------ save and reload, every member of the family

FAMILY = {
    "mlp": {},
    "conv": {"architecture": "conv", "filters": 4},
    "iwae": {"objective": "iwae", "train_samples": 3},
    "iaf": {"posterior": "iaf", "flow_steps": 2},
    "mog": {"prior": "mog", "prior_components": 3},
    "vamp": {"prior": "vamp", "prior_components": 3},
    "continuous_bernoulli": {"likelihood": "continuous_bernoulli"},
}


@pytest.mark.parametrize("member", sorted(FAMILY))
def test_save_and_reload_give_the_same_model_bit_for_bit(tmp_path, member):
    vae = tiny(**FAMILY[member])
    vae.fit(images(32, grey=True), epochs=1, batch_size=16, verbose=0)
    path = str(tmp_path / "m.keras")
    vae.save(path)
    reloaded = tfk.models.load_model(path)  # no custom_objects
    assert type(reloaded) is tfvae.VAE
    assert reloaded.get_config() == vae.get_config()
    np.testing.assert_array_equal(reloaded.sample(6, seed=3), vae.sample(6, seed=3))
    z = np.random.default_rng(1).standard_normal((5, 2)).astype("float32")
    np.testing.assert_array_equal(reloaded.decode(z).mean().numpy(), vae.decode(z).mean().numpy())
    for a, b in zip(vae.weights, reloaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    reloaded.fit(images(16, seed=4), epochs=1, batch_size=16, verbose=0)  # trains further


def test_your_own_networks_train_save_and_reload(tmp_path):
    encoder = tfk.Sequential([tfk.layers.InputLayer(IMAGE_SHAPE), tfk.layers.Flatten(), tfk.layers.Dense(4)])
    decoder = tfk.Sequential([tfk.layers.InputLayer((2,)), tfk.layers.Dense(784), tfk.layers.Reshape(IMAGE_SHAPE)])
    vae = tfvae.VAE(encoder=encoder, decoder=decoder, latent_dim=2, image_shape=IMAGE_SHAPE)
    assert vae.architecture is None and not vae.xla_evaluation
    vae.compile()
    before = weights(vae)
    vae.fit(images(), epochs=1, batch_size=16, verbose=0)
    assert changed(before, weights(vae))
    path = str(tmp_path / "own.keras")
    vae.save(path)
    reloaded = tfvae.load_model(path)
    np.testing.assert_array_equal(reloaded.sample(4, seed=0), vae.sample(4, seed=0))
    np.testing.assert_array_equal(reloaded.encode(images(3)).mean().numpy(), vae.encode(images(3)).mean().numpy())


def test_your_own_networks_of_the_wrong_size_are_refused_in_one_sentence():
    encoder = tfk.Sequential([tfk.layers.InputLayer(IMAGE_SHAPE), tfk.layers.Flatten(), tfk.layers.Dense(3)])
    decoder = tfk.Sequential([tfk.layers.InputLayer((2,)), tfk.layers.Dense(784)])
    with pytest.raises(ValueError, match=r"the encoder must map images .* \(B, 4\)"):
        tfvae.VAE(encoder=encoder, decoder=decoder, latent_dim=2)
    with pytest.raises(ValueError, match="give both"):
        tfvae.VAE(encoder=encoder, latent_dim=2)


def test_save_weights_and_load_weights_round_trip(tmp_path):
    vae = tiny()
    vae.fit(images(16), epochs=1, batch_size=16, verbose=0)
    path = str(tmp_path / "w.weights.h5")
    vae.save_weights(path)
    other = tiny()
    other(tf.zeros([1, *IMAGE_SHAPE]))
    other.load_weights(path)
    np.testing.assert_array_equal(other.sample(3, seed=0), vae.sample(3, seed=0))


def test_saving_anywhere_but_a_keras_file_names_keras_and_tfvae_export(tmp_path):
    vae = tiny()
    vae(tf.zeros([1, *IMAGE_SHAPE]))
    with pytest.raises(ValueError, match=r"\.keras.*tfvae\.export"):
        vae.save(str(tmp_path / "saved_model_dir"))
    assert not os.listdir(tmp_path)  # nothing half-written


# ------------------------------------------------------------------ encode, decode, sample


def test_encode_and_decode_return_distributions_of_the_right_shapes():
    vae = tiny()
    q_z = vae.encode(images(5))
    assert q_z.batch_shape == (5,) and q_z.event_shape == (2,)
    p_x_given_z = vae.decode(q_z.sample(seed=0))
    assert p_x_given_z.event_shape == IMAGE_SHAPE
    assert p_x_given_z.log_prob(images(5)[..., None]).shape == (5,)


def test_an_iaf_posterior_gives_the_same_density_to_its_samples_through_the_flows_inverse():
    vae = tiny(posterior="iaf", flow_steps=2)
    vae.fit(images(32), epochs=2, batch_size=16, verbose=0)  # the flow is no longer the identity
    q_z = vae.encode(images(4))
    z = q_z.sample(seed=1)
    base = tf.identity(z)  # a new tensor: no cached inverse, log_prob inverts the flow
    np.testing.assert_allclose(q_z.log_prob(base).numpy(), q_z.log_prob(z).numpy(), atol=1e-4)


def test_sample_is_seeded_and_draws_what_tfvae_sample_draws_from_the_same_decoder():
    from tfvae.export.sampler import sample
    from tfvae.export.savedmodel import KerasDecoder
    from tfvae.mixture import Mixture

    vae = tiny(prior="mog", prior_components=3)
    first = vae.sample(9, seed=5)
    assert first.shape == (9, *IMAGE_SHAPE) and first.dtype == np.float32
    np.testing.assert_array_equal(first, vae.sample(9, seed=5))
    assert not np.array_equal(first, vae.sample(9, seed=6))
    prior = Mixture(*(np.asarray(t) for t in vae.prior_mixture()))
    expected = sample(KerasDecoder(vae), 9, seed=5, mode="mean", prior=prior).images
    np.testing.assert_allclose(first, expected, atol=1e-6)


def test_from_preset_takes_the_presets_model_options_and_overrides():
    vae = tfvae.VAE.from_preset("best", prior_components=4, filters=4, hidden_units=16)
    assert (vae.architecture, vae.latent_dim, vae.prior_name, vae.prior_components) == ("conv", 32, "vamp", 4)
    with pytest.raises(ConfigError, match="unknown preset 'bset'; choose one of: classic, "):
        tfvae.VAE.from_preset("bset")


# ------------------------------------------------------------------ bad input, one sentence, before any graph


@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 28, 27)), r"stack of 28x28x1 images.*got shape \(4, 28, 27\)"),
    (np.zeros((28, 28)), r"got shape \(28, 28\)"),
    (np.full((4, 28, 28), 255.0), r"values in \[0, 1\].*divide 8-bit pixels by 255"),
    (np.full((4, 28, 28), np.nan), "NaN"),
    (np.zeros((4, 28, 28, 3)), r"got shape \(4, 28, 28, 3\)"),
])
def test_bad_images_are_refused_with_one_sentence(bad, message):
    vae = tiny()
    with pytest.raises(ValueError, match=message) as error:
        vae.fit(bad, epochs=1, verbose=0)
    assert "\n" not in str(error.value)
    assert vae.train_function is None  # refused before anything was traced


def test_a_dataset_of_single_images_or_of_another_shape_is_refused():
    vae = tiny()
    with pytest.raises(ValueError, match=r"batch it"):
        vae.fit(tf.data.Dataset.from_tensor_slices(images(4)), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="this model takes images of shape"):
        vae.fit(tf.data.Dataset.from_tensor_slices(np.zeros((4, 32, 32, 1), "float32")).batch(2), epochs=1, verbose=0)


def test_bad_latents_counts_and_options_are_refused():
    vae = tiny()
    with pytest.raises(ValueError, match=r"z must have shape \(N, 2\)"):
        vae.decode(np.zeros((3, 5)))
    for n in (0, 2.5, "4", True):
        with pytest.raises(ValueError, match="n must be a positive integer"):
            vae.sample(n)
    with pytest.raises(ValueError, match="temperature"):
        vae.sample(2, temperature=0)
    with pytest.raises(TfvaeError, match="latent_dim must be a positive integer"):
        tfvae.VAE(latent_dim=0)
    with pytest.raises(TfvaeError, match="unknown prior 'gauss'"):
        tfvae.VAE(prior="gauss")


def test_import_tfvae_stays_free_of_tensorflow():
    import subprocess
    import sys

    code = "import sys, tfvae; tfvae.Config; assert 'tensorflow' not in sys.modules, 'TensorFlow imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_layer_tflite_cannot_convert_is_one_line_naming_it(tmp_path):
    class Igamma(tfk.layers.Layer):  # tf.math.igamma has no TFLite builtin
        def call(self, x):
            return tf.math.igamma(tf.nn.softplus(x) + 1.0, tf.ones_like(x))

    encoder = tfk.Sequential([tfk.layers.InputLayer(IMAGE_SHAPE), tfk.layers.Flatten(), tfk.layers.Dense(4)])
    decoder = tfk.Sequential([tfk.layers.InputLayer((2,)), tfk.layers.Dense(784), Igamma(name="my_igamma")])
    vae = tfvae.VAE(encoder=encoder, decoder=decoder, latent_dim=2)
    with pytest.raises(tfvae.ModelFileError, match=r"the op Igamma \(in layer .*my_igamma\)") as error:
        tfvae.export(vae, str(tmp_path / "out"), quantize=(), log=lambda message: None)
    assert "\n" not in str(error.value)
    assert not os.path.exists(tmp_path / "out")  # the export is all or nothing
