"""Tests for `tfvae sample`: ancestral sampling, reproducibility, decoder parity, bad inputs, and no TensorFlow.

One tiny run (D = 2) is trained and exported once for the module. The
no-TensorFlow path is tested twice: fast, in a subprocess whose imports of
TensorFlow, TFP, Keras and matplotlib are blocked and recorded; and slow, in
a fresh virtual environment built from requirements-edge.txt, without
TensorFlow installed at all.
"""

import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import edge_runner

from tfvae.errors import ConfigError, ModelFileError
from tfvae.export import layout
from tfvae.export.sampler import (Samples, interpolation_latents, open_decoder, open_prior, prior_latents, sample,
                                  write_samples)
from tfvae.plots import manifold_latents, tile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LATENT_DIM = 2
QUIET = lambda message: None  # noqa: E731


@pytest.fixture(scope="module")
def export_dir(run_dir):
    from tfvae.export.exporter import export_run

    export_run(run_dir, tflite=True, log=QUIET)
    return os.path.join(run_dir, layout.DEFAULT_EXPORT_DIR)


@pytest.fixture(scope="module")
def decoder_path(export_dir):
    return os.path.join(export_dir, layout.DECODER_FILE)


def _save_and_convert(directory, function, spec):
    """A .tflite file whose `decode` signature is `function` over `spec`: a stand-in for someone else's model."""
    import tensorflow as tf

    module = tf.Module()
    module.decode = tf.function(function, input_signature=[spec])
    saved = os.path.join(directory, "saved")
    tf.saved_model.save(module, saved, signatures={"decode": module.decode.get_concrete_function()})
    converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=["decode"])
    path = saved + ".tflite"
    with open(path, "wb") as f:
        f.write(converter.convert())
    shutil.rmtree(saved)
    return path


@pytest.fixture(scope="module")
def foreign_models(tmp_path_factory):
    """TFLite files with a `decode` signature that is not a tfvae decoder's, and a tfvae-shaped one with D = 3."""
    import tensorflow as tf

    def images(value, n):  # (n, 28, 28, 1) filled with `value`
        return tf.zeros([n, 28, 28, 1]) + tf.reshape(value, [-1, 1, 1, 1])

    models = {}
    directory = tmp_path_factory.mktemp("foreign")
    for name, function, spec in [
        (
            "square_input",  # z (N, 3, 3): wrong input shape
            lambda z: {"probs": images(tf.reduce_sum(z, [1, 2]), tf.shape(z)[0]),
                       "logits": images(tf.reduce_sum(z, [1, 2]), tf.shape(z)[0])},
            tf.TensorSpec([None, 3, 3], tf.float32, name="z"),
        ),
        (
            "flat_output",  # probs (N, 10): wrong output shape
            lambda z: {"probs": tf.tile(z[:, :1], [1, 10]), "logits": tf.tile(z[:, :1], [1, 10])},
            tf.TensorSpec([None, 2], tf.float32, name="z"),
        ),
        (
            "three_d",  # a well-formed decoder with D = 3
            lambda z: {"probs": tf.sigmoid(images(tf.reduce_sum(z, 1), tf.shape(z)[0])),
                       "logits": images(tf.reduce_sum(z, 1), tf.shape(z)[0])},
            tf.TensorSpec([None, 3], tf.float32, name="z"),
        ),
    ]:
        os.makedirs(directory / name)
        models[name] = _save_and_convert(str(directory / name), function, spec)
    return models


def run_cli(args):
    from tfvae.cli.main import cli

    return CliRunner().invoke(cli, ["sample", *args])


# --------------------------------------------------------------------------- sampling


def test_the_same_seed_gives_the_same_samples(decoder_path):
    decoder = open_decoder(decoder_path)
    for mode in ("mean", "bernoulli"):
        first, again = (sample(decoder, 16, seed=7, mode=mode) for _ in range(2))
        other = sample(decoder, 16, seed=8, mode=mode)
        np.testing.assert_array_equal(first.z, again.z)
        np.testing.assert_array_equal(first.images, again.images)
        assert not np.array_equal(first.images, other.images), mode


def test_z_is_drawn_from_a_seeded_standard_normal(decoder_path):
    samples = sample(open_decoder(decoder_path), 5, seed=3)
    np.testing.assert_array_equal(samples.z, np.random.default_rng(3).standard_normal((5, LATENT_DIM)).astype(np.float32))
    z = prior_latents(np.random.default_rng(0), 20_000, LATENT_DIM)
    assert abs(z.mean()) < 0.03 and abs(z.std() - 1) < 0.03


def test_bernoulli_mode_draws_binary_images_with_the_decoder_means(decoder_path):
    decoder = open_decoder(decoder_path)
    means = sample(decoder, 400, seed=0, mode="mean")
    draws = sample(decoder, 400, seed=0, mode="bernoulli")
    np.testing.assert_array_equal(means.z, draws.z)  # the same z; then x ~ Bernoulli(p)
    np.testing.assert_array_equal(means.probs, draws.probs)
    assert set(np.unique(draws.images)) <= {0.0, 1.0}
    assert np.all((means.images > 0) & (means.images < 1))
    # x ~ Bernoulli(p) pixel by pixel: the fraction of ones matches the mean probability.
    assert draws.images.mean() == pytest.approx(means.probs.mean(), abs=0.01)


def test_tflite_agrees_with_the_saved_model_and_the_run(decoder_path, export_dir, run_dir):
    tflite = sample(open_decoder(decoder_path), 64, seed=0)
    for path in (os.path.join(export_dir, layout.SAVED_MODEL_DIR), run_dir):
        other = sample(open_decoder(path), 64, seed=0)
        np.testing.assert_array_equal(tflite.z, other.z)
        np.testing.assert_allclose(tflite.images, other.images, atol=1e-5, err_msg=path)


def test_interpolate_walks_a_straight_line_between_two_latents(decoder_path):
    samples = sample(open_decoder(decoder_path), 9, seed=1, latents="interpolate")
    z_0, z_1 = np.random.default_rng(1).standard_normal((2, LATENT_DIM))
    np.testing.assert_allclose(samples.z[0], z_0, rtol=1e-6)
    np.testing.assert_allclose(samples.z[-1], z_1, rtol=1e-6)
    np.testing.assert_allclose(np.diff(samples.z, 2, axis=0), 0, atol=1e-6)  # equal steps on one line
    assert interpolation_latents(np.random.default_rng(0), 1, 4).shape == (1, 4)


def test_manifold_decodes_the_percent_point_grid(decoder_path, foreign_models):
    samples = sample(open_decoder(decoder_path), 16, latents="manifold")
    np.testing.assert_array_equal(samples.z, manifold_latents(4))
    assert samples.columns == 4
    with pytest.raises(ConfigError, match="--n must be a square number"):
        sample(open_decoder(decoder_path), 10, latents="manifold")
    with pytest.raises(ConfigError, match="2-D latent space; this one has D = 3"):
        sample(open_decoder(foreign_models["three_d"]), 16, latents="manifold")


def test_write_samples_writes_the_grid_as_png_and_the_array_as_npy(tmp_path):
    from PIL import Image

    images = np.random.default_rng(0).random((10, 28, 28, 1)).astype(np.float32)
    samples = Samples(z=np.zeros((10, 2), np.float32), probs=images, images=images, columns=4, mode="mean",
                      latents="prior")
    write_samples(samples, str(tmp_path / "grid.png"), str(tmp_path / "grid.npy"))
    with Image.open(tmp_path / "grid.png") as png:
        assert (png.mode, png.size) == ("L", (4 * 28, 3 * 28))
        pixels = np.asarray(png)
    np.testing.assert_array_equal(pixels, np.round(tile(images, 4) * 255).astype(np.uint8))
    np.testing.assert_array_equal(np.load(tmp_path / "grid.npy"), images)
    assert sorted(os.listdir(tmp_path)) == ["grid.npy", "grid.png"]  # no temporary files left


# --------------------------------------------------------------------------- CLI


def test_cli_sample_writes_a_png_and_npy_reproducibly(decoder_path, tmp_path):
    from PIL import Image

    outputs = []
    for name in ("a", "b"):
        png, npy = str(tmp_path / f"{name}.png"), str(tmp_path / f"{name}.npy")
        result = run_cli(["--model", decoder_path, "--n", "12", "--seed", "5", "--mode", "bernoulli",
                          "--out", png, "--npy", npy])
        assert result.exit_code == 0, result.output
        with open(png, "rb") as f:
            outputs.append((f.read(), np.load(npy)))
    assert outputs[0][0] == outputs[1][0]
    np.testing.assert_array_equal(outputs[0][1], outputs[1][1])
    assert outputs[0][1].shape == (12, 28, 28, 1) and outputs[0][1].dtype == np.float32
    with Image.open(tmp_path / "a.png") as png:
        assert png.size == (4 * 28, 3 * 28)


def test_cli_sample_interpolate_and_manifold(decoder_path, tmp_path):
    result = run_cli(["--model", decoder_path, "--interpolate", "--n", "8", "--out", str(tmp_path / "i.png")])
    assert result.exit_code == 0, result.output
    result = run_cli(["--model", decoder_path, "--manifold", "--n", "25", "--out", str(tmp_path / "m.png")])
    assert result.exit_code == 0, result.output
    result = run_cli(["--model", decoder_path, "--manifold", "--interpolate", "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 1 and "exclusive" in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["i.png", "m.png"]


def bad_models(tmp_path, export_dir, foreign_models):
    not_tflite = tmp_path / "notes.tflite"
    not_tflite.write_text("not a model\n")
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(range(256)) * 4)  # the identifier, then nonsense
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    broken_saved_model = tmp_path / "broken_saved_model"
    broken_saved_model.mkdir()
    (broken_saved_model / "saved_model.pb").write_bytes(b"not a protocol buffer")
    return {
        "missing": (str(tmp_path / "nope.tflite"), "does not exist"),
        "not_tflite": (str(not_tflite), "is not a TFLite model"),
        "corrupt": (str(garbage), "is not a valid TFLite model"),
        "encoder": (os.path.join(export_dir, layout.ENCODER_FILE), "has no 'decode' signature"),
        "square_input": (foreign_models["square_input"], "input 'z' has shape [-1, 3, 3]"),
        "flat_output": (foreign_models["flat_output"], "output 'probs' has shape [-1, 10]"),
        "export_dir": (export_dir, "is an export directory: pass"),
        "empty_dir": (str(empty_dir), "neither a .tflite decoder"),
        "broken_saved_model": (str(broken_saved_model), "is not a readable SavedModel"),
    }


def test_bad_models_give_one_line_errors(tmp_path, export_dir, foreign_models):
    for case, (path, message) in bad_models(tmp_path, export_dir, foreign_models).items():
        out = tmp_path / f"{case}.png"
        result = run_cli(["--model", path, "--out", str(out)])
        assert result.exit_code == 1, (case, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], (case, lines)
        assert not out.exists(), case
        with pytest.raises(ModelFileError, match=message.replace("[", r"\[").replace("]", r"\]")):
            open_decoder(path)


def test_cli_sample_refuses_a_non_positive_n(decoder_path, tmp_path):
    result = run_cli(["--model", decoder_path, "--n", "0", "--out", str(tmp_path / "s.png")])
    assert result.exit_code == 1 and "--n must be a positive integer" in result.stderr


# --------------------------------------------------------------------------- no TensorFlow on the .tflite path

_BLOCKING_RUNNER = edge_runner.BLOCKING_RUNNER  # `tfvae ARGS` with TensorFlow, TFP, Keras and matplotlib blocked


def test_the_tflite_path_never_imports_tensorflow(decoder_path, tmp_path):
    out, npy = tmp_path / "s.png", tmp_path / "s.npy"
    args = ["sample", "--model", decoder_path, "--mode", "bernoulli", "--out", str(out), "--npy", str(npy)]
    result = subprocess.run([sys.executable, "-c", _BLOCKING_RUNNER, *args], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"code": 0, "attempted": [], "loaded": []}, result.stderr
    assert out.is_file() and npy.is_file()


def test_the_blocking_runner_sees_a_tensorflow_import(export_dir, tmp_path):
    """The check above can fail: reading a SavedModel needs TensorFlow; without it, one line says so."""
    args = ["sample", "--model", os.path.join(export_dir, layout.SAVED_MODEL_DIR), "--out", str(tmp_path / "s.png")]
    result = subprocess.run([sys.executable, "-c", _BLOCKING_RUNNER, *args], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["code"] == 1 and "tensorflow" in report["attempted"]
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ") and "needs TensorFlow" in result.stderr


def _copy_project(destination):
    """The files `pip install .` needs, copied: pip would otherwise write build/ into the work tree."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("setup.py", "README.md", "requirements-edge.txt"):
        shutil.copy(os.path.join(ROOT, name), destination)
    for name in ("tfvae", "cli", "export"):
        shutil.copytree(os.path.join(ROOT, name), os.path.join(destination, name), ignore=ignore)


@pytest.mark.slow
def test_sample_runs_in_a_virtual_environment_without_tensorflow(decoder_path, tmp_path):
    """The edge install of docs/export.md: a venv with requirements-edge.txt and `pip install --no-deps .`, no TensorFlow."""
    source, venv = tmp_path / "src", tmp_path / "edge"
    source.mkdir()
    _copy_project(str(source))
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip, python = str(venv / "bin" / "pip"), str(venv / "bin" / "python")
    installed = subprocess.run([pip, "install", "-q", "-r", "requirements-edge.txt"], cwd=source,
                               capture_output=True, text=True, timeout=900)
    if installed.returncode != 0:
        pytest.skip(f"pip could not install requirements-edge.txt (no package index?): {installed.stderr[-300:]}")
    installed = subprocess.run([pip, "install", "-q", "--no-deps", "."], cwd=source, capture_output=True, text=True,
                               timeout=900)
    assert installed.returncode == 0, installed.stderr

    for module in ("tensorflow", "tensorflow_probability", "tf_keras", "matplotlib"):
        probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True)
        assert probe.returncode != 0, f"{module} is installed in the edge environment"

    out = tmp_path / "samples.png"
    result = subprocess.run([str(venv / "bin" / "tfvae"), "sample", "--model", decoder_path, "--out", str(out)],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert out.is_file() and out.stat().st_size > 0
    expected = sample(open_decoder(decoder_path), 64, seed=0).images
    np.testing.assert_array_equal(_png_pixels(out), np.round(tile(expected) * 255).astype(np.uint8))

    result = subprocess.run([str(venv / "bin" / "tfvae"), "sample", "--model", str(tmp_path)],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 1 and "neither a .tflite decoder" in result.stderr

    # The shipped models came with `pip install --no-deps .`: a grid at once, no training, no TensorFlow.
    from tfvae import pretrained

    out = tmp_path / "pretrained.png"
    result = subprocess.run([str(venv / "bin" / "tfvae"), "sample", "--pretrained", pretrained.NAMES[0], "--out",
                             str(out)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    path = pretrained.decoder_path(pretrained.NAMES[0])
    expected = sample(open_decoder(path), 64, seed=0, prior=open_prior(path, open_decoder(path))).images
    np.testing.assert_array_equal(_png_pixels(out), np.round(tile(expected) * 255).astype(np.uint8))


def _png_pixels(path):
    from PIL import Image

    with Image.open(path) as png:
        return np.asarray(png)


def test_grid_columns_are_square_by_default(decoder_path):
    assert sample(open_decoder(decoder_path), 10).columns == math.ceil(math.sqrt(10))
