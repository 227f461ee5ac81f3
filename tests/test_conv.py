"""The conv architecture: shapes from the image shape, the IS estimator against quadrature, export in three precisions."""

import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from tfvae import evaluate as ev
from tfvae.config import IMAGE_SHAPE, Config, save_config
from tfvae.datasets import Splits
from tfvae.datasets import splits as run_splits
from tfvae.models import ARCHITECTURES, VAE, build_vae
from tfvae.models.networks import conv_grid
from tfvae.runs import CHECKPOINT_DIR, CONFIG_FILE

QUIET = lambda message: None  # noqa: E731
small = dict(hidden_units=16, filters=4)


@pytest.mark.parametrize("image_shape", [(28, 28, 1), (32, 32, 3), (20, 20, 1), (27, 27, 1), (9, 13, 2)])
def test_conv_shapes_follow_the_image_shape(image_shape):
    vae = VAE(latent_dim=3, architecture="conv", image_shape=image_shape, **small)
    x = (np.random.default_rng(0).random((5, *image_shape)) < 0.3).astype(np.float32)
    p_x_given_z = vae(x)
    assert p_x_given_z.log_prob(x).shape == (5,)
    assert vae.encoder(x).shape == (5, 6)
    assert vae.decoder(tf.zeros([4, 3])).shape == (4, math.prod(image_shape))
    assert vae.decode_logits(tf.zeros([4, 3])).shape == (4, *image_shape)
    loc, scale = vae.encode_params(x)
    assert loc.shape == scale.shape == (5, 3)
    assert vae.encoder.layers[-3].output_shape[1:] == (conv_grid(image_shape)[0] * conv_grid(image_shape)[1] * 8,)


def test_conv_grid_is_ceil_of_halving():
    assert conv_grid((28, 28, 1)) == (7, 7)
    assert conv_grid((27, 20, 1)) == (7, 5)
    assert conv_grid((9, 13, 2)) == (3, 4)


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
@pytest.mark.parametrize("objective, samples", [("elbo", 1), ("iwae", 3)])
def test_every_architecture_and_objective_trains_on_dynamic_binarization(architecture, objective, samples):
    """mnist / fashion_mnist feed intensities, binarized per batch by the pipeline."""
    import tf_keras as tfk

    from tfvae.pipeline import make_training_dataset

    config = Config(architecture=architecture, objective=objective, train_samples=samples, latent_dim=2,
                    batch_size=8, **small)
    intensities = np.random.default_rng(0).integers(0, 256, (32, *IMAGE_SHAPE), dtype=np.uint8)
    vae = build_vae(config)
    vae.compile(optimizer=tfk.optimizers.Adam(1e-3))
    data = make_training_dataset(intensities, 8, seed=0, epochs=1, dynamic=True)
    history = vae.fit(data, epochs=1, steps_per_epoch=4, verbose=0).history
    assert np.isfinite(history["elbo"]).all()


# --------------------------------------------------------------------------- the IS estimator, exactly


def test_importance_estimate_of_a_conv_model_matches_quadrature():
    """D = 1: log p(x) = log integral p(x|z) N(z; 0, 1) dz on a fine grid, against K = 2000 samples of q(z|x)."""
    tf.random.set_seed(0)
    vae = build_vae(Config(architecture="conv", latent_dim=1, **small))
    images = (np.random.default_rng(0).random((4, *IMAGE_SHAPE)) < 0.3).astype(np.uint8)
    grid = np.linspace(-8.0, 8.0, 8001)  # z, spacing 0.002
    logits = np.concatenate([vae.decode_logits(tf.constant(grid[i:i + 2000, None], tf.float32)).numpy()
                             for i in range(0, len(grid), 2000)]).reshape(len(grid), -1).astype(np.float64)
    x = images.reshape(len(images), -1).astype(np.float64)
    log_p_x_given_z = x @ logits.T - np.logaddexp(0.0, logits).sum(-1)  # (N, G)
    log_joint = log_p_x_given_z - 0.5 * grid**2 - 0.5 * math.log(2 * math.pi)
    top = log_joint.max(-1, keepdims=True)
    exact = (top[:, 0] + np.log(np.exp(log_joint - top).sum(-1))) + math.log(grid[1] - grid[0])  # (N,)

    evaluation = ev.evaluate_images(vae.encode_params, vae.decode_logits, images, importance_samples=2000,
                                    traceable=True)
    assert evaluation.log_likelihood == pytest.approx(exact.mean(), abs=0.05)
    assert evaluation.elbo < evaluation.log_likelihood


# --------------------------------------------------------------------------- export


@pytest.fixture(scope="module")
def conv_export(tmp_path_factory):
    """A run of an untrained conv VAE (a checkpoint and its config), exported with every file on fake test images."""
    from tfvae.export.exporter import export_run

    config = Config(architecture="conv", latent_dim=2, hidden_units=64, filters=16, epochs=1)
    run_dir = tmp_path_factory.mktemp("conv") / "run"
    run_dir.mkdir()
    save_config(config, str(run_dir / CONFIG_FILE))
    tf.random.set_seed(0)
    checkpoint = tf.train.Checkpoint(model=build_vae(config))
    tf.train.CheckpointManager(checkpoint, str(run_dir / CHECKPOINT_DIR), max_to_keep=1, checkpoint_name="epoch").save(1)
    rng = np.random.default_rng(0)
    images = {split: (rng.random((40, *IMAGE_SHAPE)) < 0.2).astype(np.uint8) for split in ev.SPLITS}
    original = run_splits.load_splits
    run_splits.load_splits = lambda *args, **kwargs: Splits(**images, dynamic=False)
    try:
        manifest = export_run(str(run_dir), tflite=True, quantize="float16,int8", eval_images=16,
                              importance_samples=8, log=QUIET)
    finally:
        run_splits.load_splits = original
    return str(run_dir / "export"), manifest


def test_conv_decoder_exports_in_three_precisions_with_parity(conv_export):
    directory, manifest = conv_export
    parity = manifest["parity"]
    assert parity["saved_model"]["max_abs_diff_probs"] < 1e-6
    assert parity["decoder.tflite"]["max_abs_diff_probs"] < 1e-5
    assert parity["decoder_float16.tflite"]["max_abs_diff_probs"] < 1e-2
    assert parity["decoder_int8.tflite"]["max_abs_diff_probs"] < 0.1
    sizes = {name: os.path.getsize(os.path.join(directory, name)) for name in
             ("decoder.tflite", "decoder_float16.tflite", "decoder_int8.tflite")}
    assert sizes["decoder_int8.tflite"] <= 0.35 * sizes["decoder.tflite"]
    cost = manifest["quantization"]["decoders"]
    assert abs(cost["decoder_int8.tflite"]["log_likelihood_change"]) < 0.5
    with open(os.path.join(directory, "manifest.json")) as f:
        assert json.load(f)["image_shape"] == [28, 28, 1]


def test_conv_tflite_files_use_builtin_ops_only(conv_export):
    from ai_edge_litert import schema_py_generated as schema

    directory, _ = conv_export
    for name in ("decoder.tflite", "decoder_float16.tflite", "decoder_int8.tflite", "encoder.tflite"):
        with open(os.path.join(directory, name), "rb") as f:
            model = schema.Model.GetRootAs(f.read(), 0)
        codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
        assert all(c.CustomCode() is None for c in codes), name
        assert all(c.BuiltinCode() != schema.BuiltinOperator.CUSTOM for c in codes), name


_NO_TENSORFLOW = r"""
import importlib.abc, json, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tensorflow_probability", "tf_keras", "keras", "matplotlib"):
            raise ImportError(name + " is blocked")

sys.meta_path.insert(0, Block())
from tfvae.cli.main import cli
try:
    cli(sys.argv[1:], prog_name="tfvae")
except SystemExit as e:
    print(json.dumps({"code": e.code}))
"""


def test_the_edge_sampler_runs_a_conv_decoder_without_tensorflow(conv_export, tmp_path):
    import subprocess
    import sys

    directory, _ = conv_export
    for name in ("decoder.tflite", "decoder_int8.tflite"):
        out = tmp_path / f"{name}.png"
        result = subprocess.run([sys.executable, "-c", _NO_TENSORFLOW, "sample", "--model",
                                 os.path.join(directory, name), "--out", str(out)],
                                capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert json.loads(result.stdout.strip().splitlines()[-1]) == {"code": 0}, result.stderr
        assert out.is_file()
