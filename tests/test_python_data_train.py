"""tfvae from Python: `tfvae.load_images` (the images a run trains on) and `tfvae.train` (`tfvae train` as a call).

Tiny everywhere: npz and folder datasets of a few hundred 8 x 8 images written in tmp_path, 8 hidden units, 1-2 epochs.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import tfvae
from tfvae.datasets import load_splits
from tfvae.errors import ConfigError, DataError
from tfvae.runs import read_history


def write_npz(path, n=200, shape=(8, 8), seed=0):
    """An npz dataset of `n` random uint8 grey images (x_train only: validation and test are carved)."""
    np.savez(path, x_train=np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8))
    return f"npz:{path}"


def one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- load_images


@pytest.mark.realdata
def test_binarized_mnist_is_what_the_reader_gives(data_dir):
    x = tfvae.load_images("binarized_mnist", data_dir=data_dir)
    assert x.shape == (50_000, 28, 28, 1) and x.dtype == np.float32
    assert set(np.unique(x)) == {0.0, 1.0}
    np.testing.assert_array_equal(x[:100], load_splits("binarized_mnist", data_dir).train[:100])
    test = tfvae.load_images("binarized_mnist", "test", data_dir=data_dir, limit=10)
    np.testing.assert_array_equal(test, load_splits("binarized_mnist", data_dir).test[:10])


@pytest.mark.realdata
def test_mnist_trains_on_grey_levels_and_is_scored_on_binary_images(data_dir):
    splits = load_splits("mnist", data_dir)
    train = tfvae.load_images("mnist", data_dir=data_dir, limit=100)
    np.testing.assert_array_equal(train, splits.train[:100] / np.float32(255))
    assert len(np.unique(train)) > 2 and train.max() <= 1
    validation = tfvae.load_images("mnist", "validation", data_dir=data_dir, limit=100)
    np.testing.assert_array_equal(validation, splits.validation[:100])  # binarized once, as the run scores it
    assert set(np.unique(validation)) == {0.0, 1.0}


def test_an_npz_is_resized_converted_and_carved_as_for_a_run(tmp_path):
    source = write_npz(tmp_path / "x.npz", n=50, shape=(10, 12))
    x = tfvae.load_images(source, image_size="8x6", channels=3)
    assert x.shape == (40, 8, 6, 3) and x.dtype == np.float32  # 5 + 5 carved for validation and test
    np.testing.assert_array_equal(x, load_splits(source, image_size=(8, 6), channels=3).train / np.float32(255))
    assert tfvae.load_images(source, image_size=(8, 6), channels=3, limit=7).shape == (7, 8, 6, 3)
    test = tfvae.load_images(source, "test", image_size=8)
    assert test.shape == (5, 8, 8, 1) and set(np.unique(test)) <= {0.0, 1.0}
    grey = tfvae.load_images(source, "test", image_size=8, likelihood="continuous_bernoulli")
    assert len(np.unique(grey)) > 2


def test_a_folder_of_pngs(tmp_path):
    from PIL import Image

    os.makedirs(tmp_path / "pngs")
    for i, image in enumerate(np.random.default_rng(1).integers(0, 256, (12, 9, 7), dtype=np.uint8)):
        Image.fromarray(image, mode="L").save(tmp_path / "pngs" / f"{i:02d}.png")
    x = tfvae.load_images(f"folder:{tmp_path / 'pngs'}", image_size=4, channels=3)
    assert x.shape == (10, 4, 4, 3) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    np.testing.assert_array_equal(x[..., 0], x[..., 2])  # grey copied to RGB


@pytest.mark.parametrize(
    "source, options, error, message",
    [
        ("npz:X", {"split": "dev"}, ConfigError, "unknown split 'dev'; choose one of: train, validation, test"),
        ("cifar10", {}, DataError, "unknown --dataset 'cifar10'; choose one of: binarized_mnist, mnist, "),
        ("npz:X", {"channels": 2}, ConfigError, "channels must be 1 or 3"),
        ("npz:X", {"likelihood": "gauss"}, ConfigError, "unknown likelihood 'gauss'; choose one of: bernoulli, "),
        ("npz:X", {"limit": 0}, ConfigError, "limit must be a positive integer"),
        ("npz:X", {"limit": 500}, ConfigError, "limit 500 is larger than the 160 train images of npz:"),
        ("npz:X", {"image_size": "8x"}, DataError, "--image-size must be H or HxW"),
    ],
)
def test_bad_arguments_are_one_line(tmp_path, source, options, error, message):
    source = source.replace("npz:X", write_npz(tmp_path / "x.npz"))
    with pytest.raises(error) as raised:
        tfvae.load_images(source, **options)
    assert one_line(raised).startswith(message)


# --------------------------------------------------------------------------- train


@pytest.mark.slow
def test_train_writes_a_run_and_a_second_call_extends_it(tmp_path):
    source = write_npz(tmp_path / "x.npz")
    tiny = dict(dataset=source, limit=96, latent_dim=2, hidden_units=8, batch_size=32, verbose=0)
    run_dir = tfvae.train(epochs=1, run_dir=tmp_path / "run", **tiny)
    assert run_dir == str(tmp_path / "run")
    first = read_history(run_dir)
    assert len(first) == 1 and os.path.isfile(os.path.join(run_dir, "summary.json"))

    assert tfvae.train(epochs=2, run_dir=run_dir, **tiny) == run_dir  # a finished run trains further
    history = read_history(run_dir)
    assert [row["epoch"] for row in history] == [1, 2] and history[0] == first[0]
    assert tfvae.load_config(os.path.join(run_dir, "config.json")).epochs == 2


def test_options_presets_and_defaults_reach_the_config(tmp_path, monkeypatch):
    """What train hands to train_and_evaluate: the preset's values, the options given, the fields left to the run."""
    import tfvae.train

    seen = {}
    monkeypatch.setattr(tfvae.train, "train_and_evaluate",
                        lambda config, run_dir, **kw: seen.update(config=config, run_dir=run_dir, **kw))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TFVAE_DATA_DIR", raising=False)
    run_dir = tfvae.train(preset="best", epochs=2, image_size=16, dataset="npz:x.npz", log=print)
    assert run_dir == seen["run_dir"] and os.path.dirname(run_dir) == "runs"  # a new time-stamped folder
    config = seen["config"]
    assert (config.architecture, config.prior, config.epochs, config.image_size) == ("conv", "vamp", 2, (16, 16))
    assert "latent_dim" not in seen["defaulted"] and "epochs" not in seen["defaulted"]
    assert "flow_context" in seen["defaulted"] and "data_dir" not in seen["defaulted"]
    assert seen["resume_command"] == (f"tfvae.train(preset='best', epochs=2, image_size=16, dataset='npz:x.npz', "
                                      f"run_dir={run_dir!r})")
    monkeypatch.setenv("TFVAE_DATA_DIR", str(tmp_path))  # as the command: the environment's data directory
    tfvae.train(run_dir="r")
    assert seen["config"].data_dir == str(tmp_path) and seen["run_dir"] == "r"


def test_unknown_options_are_one_line_with_close_matches(tmp_path):
    with pytest.raises(ConfigError) as raised:
        tfvae.train(epoch=1, run_dir=tmp_path / "r")
    assert one_line(raised) == "tfvae.train has no option 'epoch' (did you mean epochs?)"
    with pytest.raises(ConfigError) as raised:
        tfvae.train(**{"latent-dim": 2, "colour": 3})
    assert one_line(raised) == ("tfvae.train has no options 'latent-dim' (did you mean latent_dim?), 'colour'; "
                                "the options are listed in tfvae.train.OPTIONS")
    assert not os.path.exists(tmp_path / "r")


def test_python_and_the_command_take_the_same_options():
    import tfvae.train
    from tfvae.cli.train import train as command

    assert {p.name for p in command.params} == {*tfvae.train.OPTIONS, "preset", "run_dir", "overwrite", "verbose"}


def test_tfvae_train_is_callable_before_and_after_importing_the_module():
    """In a fresh interpreter: `tfvae.train` first reached through the package, then after `import tfvae.train`."""
    script = """
import sys, tfvae
assert "tfvae.train" not in sys.modules
def refused():
    try:
        tfvae.train(epoch=1)
    except tfvae.ConfigError as e:
        return str(e)
before = refused()
import tfvae.train
from tfvae.train import train
assert tfvae.train is sys.modules["tfvae.train"] and callable(tfvae.train) and train.__name__ == "train"
print(before == refused() == "tfvae.train has no option 'epoch' (did you mean epochs?)")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"
