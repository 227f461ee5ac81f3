"""`tfvae.evaluate` and `tfvae.export` from Python, and the CLI on a saved model (`--model m.keras`).

One tiny trained run (conftest's `tiny_run`: D = 2, 16 hidden units) is saved once as a .keras file;
every test evaluates a few dozen images with small K.
"""

import json
import math
import os

import numpy as np
import pytest
from click.testing import CliRunner

import tfvae
from tfvae.errors import DataError

K = 5
IMAGES = 20
QUIET = lambda message: None  # noqa: E731


@pytest.fixture(scope="module")
def saved(run_dir, tmp_path_factory):
    """(the run's VAE, the path of the same model saved as .keras)."""
    vae = tfvae.load_model(run_dir)
    path = str(tmp_path_factory.mktemp("keras") / "m.keras")
    vae.save(path)
    return vae, path


@pytest.fixture(scope="module")
def images(run_dir, synthetic_data_dir):
    """The first IMAGES test images of the run's dataset (N, 28, 28, 1) uint8, as `tfvae evaluate` reads them."""
    from tfvae.config import load_config
    from tfvae.evaluate import split_images

    config = load_config(os.path.join(run_dir, "config.json"))
    return split_images(config, "test", synthetic_data_dir)[:IMAGES]


FIGURES = ("elbo", "rate", "distortion", "log_likelihood", "log_likelihood_stderr", "sampling_stderr",
           "sampling_bias", "examples", "importance_samples")


def figures(evaluation):
    return {key: evaluation.to_dict()[key] for key in FIGURES}


# --------------------------------------------------------------------------- tfvae.evaluate


def test_evaluate_of_a_model_a_keras_file_and_a_run_equals_evaluate_run(run_dir, synthetic_data_dir, saved, images):
    from tfvae.evaluate import evaluate_run

    vae, path = saved
    reference = evaluate_run(run_dir, importance_samples=K, limit=IMAGES, data_dir=synthetic_data_dir, progress=False)
    assert figures(tfvae.evaluate(vae, images, importance_samples=K)) == figures(reference)  # the same to the bit
    assert figures(tfvae.evaluate(run_dir, images, K)) == figures(reference)
    from_file = figures(tfvae.evaluate(path, images[..., 0], importance_samples=K))  # (N, H, W): a channel is added
    assert from_file == pytest.approx(figures(reference), rel=1e-6)


def test_grey_images_and_wrong_shapes_are_one_line_errors_before_any_tracing(saved, images, monkeypatch):
    from tfvae import evaluate as ev

    def never(*args, **kwargs):
        raise AssertionError("the model ran")

    monkeypatch.setattr(ev, "evaluate_images", never)
    vae, _ = saved
    grey = images.astype(np.float32) * 0.7
    for bad, message in [(grey, "binarize them first, e.g. (x > 0.5)"),
                         (images[:, :27], "do not fit this model, which takes (N, 28, 28, 1) or (N, 28, 28)"),
                         (images[:0], "do not fit this model"),
                         (np.repeat(images, 3, axis=-1), "(20, 28, 28, 3) do not fit")]:
        with pytest.raises(DataError) as error:
            tfvae.evaluate(vae, bad, importance_samples=K)
        assert message in str(error.value) and "\n" not in str(error.value)


# --------------------------------------------------------------------------- tfvae.export


def test_export_of_a_model_matches_keras_and_measures_the_cost_on_the_images_given(saved, images, tmp_path):
    import tensorflow as tf

    from tfvae.export.litert import TFLiteDecoder

    vae, _ = saved
    out = str(tmp_path / "out")
    manifest = tfvae.export(vae, out, images=images, importance_samples=K, log=QUIET)
    assert manifest == json.loads(open(os.path.join(out, "manifest.json")).read())
    assert manifest["source"] == "python" and "run_dir" not in manifest
    assert {"decoder.tflite", "decoder_float16.tflite", "decoder_int8.tflite", "encoder.tflite"} <= set(os.listdir(out))
    z = np.random.default_rng(1).standard_normal((8, 2)).astype(np.float32)
    probs = TFLiteDecoder(os.path.join(out, "decoder.tflite")).decode(z)["probs"]
    np.testing.assert_allclose(probs, tf.sigmoid(vae.decode_logits(tf.constant(z))).numpy(), atol=1e-5)
    np.testing.assert_allclose(probs, vae.decode_mean(tf.constant(z)).numpy(), atol=1e-5)
    cost = manifest["quantization"]
    assert cost["measured"] and cost["images"] == IMAGES and cost["importance_samples"] == K
    assert set(cost["decoders"]) == {"decoder.tflite", "decoder_float16.tflite", "decoder_int8.tflite"}
    assert abs(cost["decoders"]["decoder.tflite"]["elbo_change"]) < 1e-3


def test_export_without_images_says_the_cost_was_not_measured(saved, tmp_path):
    vae, path = saved
    manifest = tfvae.export(path, str(tmp_path / "out"), quantize=("int8",), log=QUIET)
    assert manifest["source"] == os.path.abspath(path)
    cost = manifest["quantization"]
    assert cost["measured"] is False and "no images" in cost["why"]
    assert cost["decoders"] == {"decoder.tflite": {"quantization": "float32"},
                                "decoder_int8.tflite": {"quantization": "int8"}}


def test_the_quantization_cost_is_a_paired_change_with_its_standard_error(saved, images, tmp_path):
    vae, _ = saved
    manifest = tfvae.export(vae, str(tmp_path / "out"), quantize=("int8",), images=images, importance_samples=K,
                            log=QUIET)
    change = manifest["quantization"]["decoders"]["decoder_int8.tflite"]
    for figure in ("elbo", "log_likelihood"):
        assert change[f"{figure}_change_stderr"] >= 0
    # Paired (same images, same z): the change is known far better than either figure across images.
    assert change["log_likelihood_change_stderr"] < manifest["quantization"]["reference"]["log_likelihood_stderr"] / 10


def test_more_measure_images_than_there_are_measures_on_all_and_says_so(saved, images, tmp_path):
    vae, _ = saved
    said = []
    manifest = tfvae.export(vae, str(tmp_path / "out"), quantize=("int8",), images=images, eval_images=10 * IMAGES,
                            importance_samples=K, log=said.append)
    assert manifest["quantization"]["images"] == IMAGES
    assert any(f"on all {IMAGES}" in line for line in said)


def test_one_image_measures_the_change_without_a_standard_error(saved, images, tmp_path):
    vae, _ = saved
    manifest = tfvae.export(vae, str(tmp_path / "out"), quantize=("int8",), images=images[:1], importance_samples=K,
                            log=QUIET)
    change = manifest["quantization"]["decoders"]["decoder_int8.tflite"]
    assert change["log_likelihood_change_stderr"] is None and math.isfinite(change["log_likelihood_change"])


def test_measure_images_0_skips_the_cost_and_the_manifest_says_so(saved, images, tmp_path):
    vae, _ = saved
    manifest = tfvae.export(vae, str(tmp_path / "out"), quantize=("int8",), images=images, eval_images=0, log=QUIET)
    assert manifest["quantization"]["measured"] is False
    assert "--measure-images 0" in manifest["quantization"]["why"]


# --------------------------------------------------------------------------- the CLI on a saved model


def test_cli_evaluate_and_export_take_a_keras_file_and_sample_runs_on_the_export(saved, images, synthetic_data_dir,
                                                                                  tmp_path):
    from tfvae.cli.main import cli

    vae, path = saved
    runner = CliRunner()
    result = runner.invoke(cli, ["evaluate", "--model", path, "--dataset", "binarized_mnist", "--data-dir",
                                 synthetic_data_dir, "--limit", str(IMAGES), "-k", str(K), "--json"])
    assert result.exit_code == 0, result.output
    values = json.loads(result.stdout)
    expected = figures(tfvae.evaluate(vae, images, importance_samples=K))
    assert {key: values[key] for key in FIGURES} == pytest.approx(expected, rel=1e-6)
    assert values["split"] == "test"

    out = str(tmp_path / "export")
    result = runner.invoke(cli, ["export", "--model", path, "--out", out, "--tflite"])
    assert result.exit_code == 0, result.output
    assert json.loads(open(os.path.join(out, "manifest.json")).read())["source"] == os.path.abspath(path)
    png = str(tmp_path / "samples.png")
    result = runner.invoke(cli, ["sample", "--model", os.path.join(out, "decoder.tflite"), "--n", "4", "--out", png])
    assert result.exit_code == 0, result.output
    assert os.path.getsize(png) > 0


@pytest.mark.parametrize("command", [["evaluate", "--dataset", "binarized_mnist"], ["export", "--out", "x"]])
def test_cli_refuses_both_run_dir_and_model_and_neither(command, tmp_path):
    from tfvae.cli.main import cli

    for sources in (["--run-dir", str(tmp_path), "--model", "m.keras"], []):
        result = CliRunner().invoke(cli, command[:1] + sources + command[1:])
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "exactly one of --run-dir" in lines[0]
