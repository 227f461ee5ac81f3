"""Tests for the edge side of conditional models (issue 28): exports whose decoder takes z and a label.

One tiny untrained conditional VAE (D = 2, 3 classes, per-class mog prior, hidden 8) is exported once for
the module with every LiteRT precision and the web page: untrained is enough for parity, which compares
each file with the Keras model on the same z and labels. The page's class picker is driven in Chromium by
tests/test_web_conditional.py, on the same kind of export.
"""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

import edge_runner

from tfvae.errors import ConfigError
from tfvae.export import layout
from tfvae.mixture import Mixture, PriorFileError

CLASSES = ("zero", "one", "two")
LATENT_DIM = 2
QUIET = lambda message: None  # noqa: E731


def conditional_vae(prior="mog"):
    import tfvae

    return tfvae.VAE(latent_dim=LATENT_DIM, hidden_units=8, classes=len(CLASSES), class_names=CLASSES, prior=prior)


def export_conditional(vae, out, **options):
    from tfvae.export.exporter import export_model

    return export_model(vae, str(out), log=QUIET, **options)


@pytest.fixture(scope="module")
def vae():
    return conditional_vae()


@pytest.fixture(scope="module")
def exported(vae, tmp_path_factory):
    """(export directory, manifest): SavedModel, decoder and encoder, float16 and int8 decoders, the page."""
    out = tmp_path_factory.mktemp("conditional") / "export"
    return str(out), export_conditional(vae, out, tflite=True, quantize=("float16", "int8"), web=True)


def latents_and_labels(n=12, seed=5):
    z = np.random.default_rng(seed).standard_normal((n, LATENT_DIM)).astype(np.float32)
    return z, (np.arange(n) % len(CLASSES)).astype(np.int32)


def keras_logits(vae, z, labels):
    import tensorflow as tf

    return vae.decode_logits(tf.constant(z), tf.constant(labels)).numpy()


def run_cli(*args):
    from tfvae.cli.main import cli

    return CliRunner().invoke(cli, ["sample", *args])


def one_line(result, exit_code):
    assert result.exit_code == exit_code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    return lines[0]


# --------------------------------------------------------------------------- the files


def test_signatures_take_z_and_label_and_the_manifest_names_the_classes(exported):
    import tensorflow as tf

    out, manifest = exported
    loaded = tf.saved_model.load(os.path.join(out, layout.SAVED_MODEL_DIR))
    for key, first in (("decode", ("z", [None, 2], tf.float32)), ("encode", ("x", [None, 28, 28, 1], tf.float32))):
        _, inputs = loaded.signatures[key].structured_input_signature
        assert {k: (v.shape.as_list(), v.dtype) for k, v in inputs.items()} == {
            first[0]: (first[1], first[2]), "label": ([None], tf.int32)}, key
    assert manifest["condition"] == "label" and manifest["classes"] == list(CLASSES)
    assert manifest["signatures"]["decode"]["inputs"] == {"z": [None, 2], "label": [None]}
    assert manifest["prior"]["class_conditional"] is True
    with open(os.path.join(out, layout.MANIFEST_FILE)) as f:
        assert json.load(f)["classes"] == list(CLASSES)
    prior = Mixture.load(os.path.join(out, layout.PRIOR_FILE))
    assert prior.class_conditional and prior.components == len(CLASSES)
    with open(os.path.join(out, layout.WEB_DIR, layout.WEB_CONFIG_FILE)) as f:
        page = json.load(f)
    assert page["classes"] == list(CLASSES) and page["condition"] == "label"
    assert page["prior"]["class_conditional"] is True
    assert manifest["web"]["models"]["float32"]["inputs"] == {"label": [64], "z": [64, 2]}


@pytest.mark.parametrize("name, atol", [
    (layout.SAVED_MODEL_DIR, 1e-5),
    (layout.DECODER_FILE, 1e-4),
    (layout.QUANTIZED_DECODER_FILES["float16"], 0.05),
    (layout.QUANTIZED_DECODER_FILES["int8"], 0.1),
    ("web/decoder.tflite", 1e-4),
])
def test_every_decoder_gives_the_keras_logits_for_the_same_z_and_labels(exported, vae, name, atol):
    from tfvae.export.sampler import open_decoder

    z, labels = latents_and_labels(64)  # the web decoder's fixed batch
    decoder = open_decoder(os.path.join(exported[0], name))
    assert decoder.classes == CLASSES  # from the manifest (or the page's tfvae.json) beside the file
    want = keras_logits(vae, z, labels)
    error = np.max(np.abs(decoder.decode_logits(z, labels) - want))
    assert error < atol, error
    effect = np.max(np.abs(keras_logits(vae, z, (labels + 1) % len(CLASSES)) - want))
    assert effect > 3 * error, (effect, error)  # the label matters more than the file's round-off: parity is not vacuous


def test_the_tflite_encoder_takes_the_label_too(exported, vae):
    import tensorflow as tf

    from tfvae.export.litert import TFLiteEncoder

    x = (np.random.default_rng(0).random((6, 28, 28, 1)) < 0.3).astype(np.float32)
    labels = np.array([0, 1, 2, 2, 1, 0], np.int32)
    encoder = TFLiteEncoder(os.path.join(exported[0], layout.ENCODER_FILE))
    loc, scale = encoder.encode(x, labels)
    want_loc, want_scale = (t.numpy() for t in vae.encode_params(tf.constant(x), tf.constant(labels)))
    np.testing.assert_allclose(loc, want_loc, atol=1e-5)
    np.testing.assert_allclose(scale, want_scale, atol=1e-5)


def test_a_decoder_alone_counts_its_classes_and_refuses_bad_labels(exported, tmp_path):
    import shutil

    from tfvae.export.litert import TFLiteDecoder

    path = str(tmp_path / "decoder.tflite")  # no manifest beside it: the classes from the graph's one-hot depth
    shutil.copyfile(os.path.join(exported[0], layout.DECODER_FILE), path)
    decoder = TFLiteDecoder(path)
    assert decoder.classes == ("0", "1", "2")
    z, _ = latents_and_labels(2)
    for labels, message in [(None, "pass labels"), ([0, 3], r"0\.\.2"), ([0.0, 1.0], "integers"), ([1], r"\(2,\)")]:
        with pytest.raises(ValueError, match=message):
            decoder.decode(z, labels)


def test_the_full_int8_decoder_takes_the_label_too_and_micro_is_refused_in_one_line(vae, tmp_path):
    from tfvae.export.sampler import open_decoder

    manifest = export_conditional(vae, tmp_path / "out", tflite=True, quantize=("full_int8",))
    assert manifest["full_int8"]["inputs"] == {"label": "int32", "z": "float32"}
    decoder = open_decoder(str(tmp_path / "out" / layout.QUANTIZED_DECODER_FILES["full_int8"]))
    assert decoder.classes == CLASSES and decoder.batch_size == 1
    z, labels = latents_and_labels(6)
    want = keras_logits(vae, z, labels)
    assert np.max(np.abs(decoder.decode_logits(z, labels) - want)) < 0.3  # the int8 logits' steps, untrained
    assert manifest["parity"]["decoder_full_int8.tflite"]["mean_abs_diff_probs"] < 0.02
    with pytest.raises(ConfigError, match="--micro is not available for a conditional decoder") as error:
        export_conditional(vae, tmp_path / "micro", tflite=True, quantize=("full_int8",), micro=True)
    assert "\n" not in str(error.value) and not os.path.exists(tmp_path / "micro")


def test_the_quantization_cost_is_in_log_p_x_given_y_on_labelled_images(vae, tmp_path):
    """Given labels, each decoder's change is measured given y; images without labels are not measured, and say why."""
    x = (np.random.default_rng(0).random((6, 28, 28)) < 0.3).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2])
    options = dict(tflite=True, quantize=("int8",), images=x, importance_samples=4)
    cost = export_conditional(vae, tmp_path / "a", labels=y, **options)["quantization"]
    assert cost["measured"] and cost["condition"] == "label" and cost["images"] == 6
    assert abs(cost["decoders"]["decoder_int8.tflite"]["log_likelihood_change"]) < 0.5
    assert cost["decoders"]["decoder.tflite"]["log_likelihood_change"] == pytest.approx(0, abs=1e-3)
    cost = export_conditional(vae, tmp_path / "b", **options)["quantization"]
    assert not cost["measured"] and "images came without labels" in cost["why"]


def test_a_normal_prior_is_not_class_conditional(tmp_path):
    manifest = export_conditional(conditional_vae("normal"), tmp_path / "out")
    assert manifest["prior"]["class_conditional"] is False and manifest["classes"] == list(CLASSES)
    assert not Mixture.load(str(tmp_path / "out" / layout.PRIOR_FILE)).class_conditional


def test_an_unconditional_export_has_no_label_and_no_class_keys(tmp_path):
    import tfvae
    from tfvae.export.savedmodel import SavedModelDecoder

    manifest = export_conditional(tfvae.VAE(latent_dim=LATENT_DIM, hidden_units=8), tmp_path / "out")
    assert not {"condition", "classes"} & set(manifest) and "class_conditional" not in manifest["prior"]
    assert manifest["signatures"]["decode"]["inputs"] == {"z": [None, 2]}
    assert SavedModelDecoder(str(tmp_path / "out" / layout.SAVED_MODEL_DIR)).classes is None
    with np.load(tmp_path / "out" / layout.PRIOR_FILE) as npz:
        assert npz.files == ["logits", "loc", "scale"]


# --------------------------------------------------------------------------- prior.npz


def test_prior_npz_keeps_its_class_flag_and_older_files_stay_readable(tmp_path):
    per_class = Mixture(np.zeros(2), np.array([[-3.0, 0.0], [3.0, 1.0]]), np.full((2, 2), 0.5), class_conditional=True)
    path = tmp_path / "prior.npz"
    path.write_bytes(per_class.to_npz_bytes())
    assert Mixture.load(str(path)).class_conditional
    z = Mixture.load(str(path)).sample_given(np.random.default_rng(0), np.array([1, 1, 0]), temperature=0.5)
    eps = np.random.default_rng(0).standard_normal((3, 2))
    np.testing.assert_allclose(z, per_class.loc[[1, 1, 0]] + 0.5 * 0.5 * eps, rtol=1e-6)
    np.savez(path, logits=np.zeros(1), loc=np.zeros((1, 2)), scale=np.ones((1, 2)))  # a file from before
    assert not Mixture.load(str(path)).class_conditional
    np.savez(path, logits=np.zeros(1), loc=np.zeros((1, 2)), scale=np.ones((1, 2)), class_conditional=np.array([1, 1]))
    with pytest.raises(PriorFileError, match="class_conditional must be a scalar 0 or 1"):
        Mixture.load(str(path))


# --------------------------------------------------------------------------- sampling


def test_sample_with_a_label_draws_z_from_that_classes_component(exported):
    from tfvae.export.sampler import open_decoder, open_prior, sample

    path = os.path.join(exported[0], layout.DECODER_FILE)
    decoder = open_decoder(path)
    prior = open_prior(path, decoder)
    drawn = sample(decoder, 6, seed=4, prior=prior, label=2, temperature=0.5)
    eps = np.random.default_rng(4).standard_normal((6, LATENT_DIM))
    np.testing.assert_allclose(drawn.z, prior.loc[2] + 0.5 * prior.scale[2] * eps, rtol=1e-5, atol=1e-6)
    assert drawn.labels.tolist() == [2] * 6
    np.testing.assert_array_equal(drawn.probs, decoder.decode(drawn.z, drawn.labels)["probs"])
    rows = sample(decoder, 7, seed=4, prior=prior)  # one row per class, ceil(7 / 3) = 3 images each
    assert rows.columns == 3 and rows.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and len(rows.images) == 9


def test_cli_sample_label_on_a_tflite_decoder_imports_no_tensorflow(exported, tmp_path):
    from tfvae.export.sampler import open_decoder, open_prior, sample

    path = os.path.join(exported[0], layout.DECODER_FILE)
    for label, index in (("two", 2), ("1", 1)):
        npy = tmp_path / f"{label}.npy"
        report, result = edge_runner.run_blocked(["sample", "--model", path, "--label", label, "--n", "4",
                                                  "--out", str(tmp_path / f"{label}.png"), "--npy", str(npy)], tmp_path)
        assert report == {"code": 0, "attempted": [], "loaded": []}, result.stderr
        decoder = open_decoder(path)
        want = sample(decoder, 4, prior=open_prior(path, decoder), label=index).images
        np.testing.assert_array_equal(np.load(npy), want)
    result = run_cli("--model", path, "--interpolate", "--n", "5", "--label", "one", "--out", str(tmp_path / "i.png"))
    assert result.exit_code == 0 and "class 1 (one)" in result.output, result.output
    result = run_cli("--model", path, "--n", "6", "--out", str(tmp_path / "rows.png"))
    assert result.exit_code == 0 and "one row per class (3 rows of 2)" in result.output, result.output


@pytest.mark.parametrize("args, message", [
    (["--label", "3"], "--label '3' is not a class of this decoder: choose an index from 0 to 2 or a name (zero, one, two)"),
    (["--label", "seven"], "--label 'seven' is not a class"),
    (["--label", "-1"], "--label '-1' is not a class"),
    (["--manifold", "--n", "4"], "--manifold of a conditional decoder shows one class: add --label"),
])
def test_cli_bad_labels_are_one_line_and_exit_2(exported, tmp_path, args, message):
    out = tmp_path / "s.png"
    result = run_cli("--model", os.path.join(exported[0], layout.DECODER_FILE), *args, "--out", str(out))
    assert message in one_line(result, 2)
    assert not out.exists()


def test_cli_label_of_an_unconditional_decoder_is_one_line(tmp_path):
    import tfvae

    export_conditional(tfvae.VAE(latent_dim=LATENT_DIM, hidden_units=8), tmp_path / "out", tflite=True)
    result = run_cli("--model", str(tmp_path / "out" / layout.DECODER_FILE), "--label", "1",
                     "--out", str(tmp_path / "s.png"))
    assert "this decoder is not conditional" in one_line(result, 2)
    assert not (tmp_path / "s.png").exists()


def test_a_conditional_flow_posteriors_encode_sample_takes_the_label(tmp_path):
    """--posterior iaf: encode_sample(x, eps, label) in encoder.tflite gives the Keras flow's z and log q(z|x, y)."""
    import tensorflow as tf
    import tfvae
    from tfvae.export.litert import TFLiteEncoder

    vae = tfvae.VAE(latent_dim=LATENT_DIM, hidden_units=8, classes=len(CLASSES), posterior="iaf")  # never called
    manifest = export_conditional(vae, tmp_path / "out", tflite=True)
    assert manifest["signatures"]["encode_sample"]["inputs"] == {"x": [None, 28, 28, 1], "eps": [None, 2],
                                                                 "label": [None]}
    x = (np.random.default_rng(1).random((4, 28, 28, 1)) < 0.3).astype(np.float32)
    eps, labels = latents_and_labels(4)
    z, log_q = TFLiteEncoder(str(tmp_path / "out" / layout.ENCODER_FILE)).encode_sample(x, eps, labels)
    want_z, want_log_q = (t.numpy() for t in vae.encode_sample(tf.constant(x), tf.constant(eps), tf.constant(labels)))
    np.testing.assert_allclose(z, want_z, atol=1e-5)
    np.testing.assert_allclose(log_q, want_log_q, atol=1e-4)
