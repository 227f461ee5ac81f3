"""A loss that becomes NaN stops training with a clear message and keeps the last good checkpoint;
mixed precision and XLA train on CPU, XLA to the same numbers as the plain graph."""

import numpy as np
import pytest
import tensorflow as tf

from tfvae import train
from tfvae.config import Config
from tfvae.errors import TrainingDiverged
from tfvae.runs import latest_checkpoint, load_vae, read_history


def tiny(data_dir, **changes):
    values = dict(epochs=3, limit=256, latent_dim=2, hidden_units=16, batch_size=64, data_dir=data_dir)
    return Config(**{**values, **changes})


def test_nan_stops_training_and_keeps_the_last_good_checkpoint(synthetic_data_dir, tmp_path, monkeypatch):
    make = train.make_training_dataset

    def poisoned(images, batch_size, **kwargs):
        # Batches of the third epoch onwards carry a NaN pixel, as a corrupt input would.
        steps = len(images) // batch_size

        def poison(step, batch):
            x, _ = batch
            x = tf.where(step >= 2 * steps, x + float("nan"), x)
            return x, x

        return make(images, batch_size, **kwargs).enumerate().map(poison)

    monkeypatch.setattr(train, "make_training_dataset", poisoned)
    run_dir = str(tmp_path / "run")
    with pytest.raises(TrainingDiverged, match=r"NaN or infinite in epoch 3; the last good checkpoint is kept"):
        train.train_and_evaluate(tiny(synthetic_data_dir), run_dir, verbose=0, log=lambda m: None)
    assert [r["epoch"] for r in read_history(run_dir)] == [1, 2]
    assert latest_checkpoint(run_dir).endswith("epoch-2")
    _, vae = load_vae(run_dir)
    assert all(np.isfinite(w).all() for w in vae.get_weights())


def test_divergence_in_the_first_epoch_says_there_is_no_checkpoint(synthetic_data_dir, tmp_path):
    with pytest.raises(TrainingDiverged, match="no epoch finished with a finite loss"):
        train.train_and_evaluate(tiny(synthetic_data_dir, epochs=1, learning_rate=1e30), str(tmp_path / "r"), verbose=0)


def test_mixed_precision_on_cpu_computes_in_bfloat16_and_keeps_distributions_in_float32(synthetic_data_dir, tmp_path):
    import tf_keras as tfk

    try:
        summary = train.train_and_evaluate(tiny(synthetic_data_dir, epochs=1, mixed_precision=True), str(tmp_path / "r"), verbose=0)
        assert np.isfinite(summary["test_elbo"]) and -600 < summary["test_elbo"] < 0
        _, vae = load_vae(str(tmp_path / "r"))
        hidden, output = vae.encoder.layers[1], vae.encoder.layers[-1]
        assert hidden.compute_dtype == "bfloat16" and hidden.variable_dtype == "float32"
        assert output.compute_dtype == "float32"
        assert vae(tf.zeros([2, 28, 28, 1])).dtype == tf.float32
    finally:
        tfk.mixed_precision.set_global_policy("float32")


@pytest.mark.slow
def test_xla_and_plain_graphs_train_the_same_model(synthetic_data_dir, tmp_path):
    # --jit-compile and the default steps_per_execution must give the numbers of one step per call.
    fast = train.train_and_evaluate(tiny(synthetic_data_dir, epochs=1, jit_compile=True), str(tmp_path / "xla"), verbose=0)
    plain = train.train_and_evaluate(tiny(synthetic_data_dir, epochs=1, steps_per_execution=1), str(tmp_path / "plain"), verbose=0)
    for key in ("train_elbo", "val_elbo", "test_elbo"):
        assert fast[key] == pytest.approx(plain[key], rel=1e-3), key  # XLA rounds differently, not more


def test_mixed_float16_with_a_gpu_trains_with_loss_scaling(synthetic_data_dir, monkeypatch):
    """The GPU path, run on the CPU (TensorFlow computes float16 there too) by pretending a GPU is visible."""
    import tf_keras as tfk

    from tfvae import distribute
    from tfvae.pipeline import make_training_dataset

    real = tf.config.list_physical_devices
    monkeypatch.setattr(distribute.tf.config, "list_physical_devices", lambda kind=None: ["GPU:0"] if kind == "GPU" else real(kind))
    config = tiny(synthetic_data_dir, mixed_precision=True)
    try:
        distribute.configure_devices(config)
        assert tfk.mixed_precision.global_policy().name == "mixed_float16"
        vae = train.compile_vae(config, tf.distribute.get_strategy())
        assert isinstance(vae.optimizer, tfk.mixed_precision.LossScaleOptimizer)
        images = (np.random.default_rng(0).random((256, 28, 28, 1)) < 0.13).astype(np.uint8)
        history = vae.fit(make_training_dataset(images, 64, seed=0, epochs=3), epochs=3, steps_per_epoch=4, verbose=0)
        assert all(np.isfinite(history.history["elbo"])) and history.history["elbo"][-1] > history.history["elbo"][0]
        assert all(w.dtype == np.float32 for w in vae.get_weights())
        assert vae.encoder.layers[1].compute_dtype == "float16" and vae(tf.zeros([1, 28, 28, 1])).dtype == tf.float32
    finally:
        tfk.mixed_precision.set_global_policy("float32")
