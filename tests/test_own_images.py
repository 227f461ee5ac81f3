"""Your own images, end to end as a user runs them: a folder of 32 x 32 RGB PNGs and an .npz of 64 x 64 grey
images each train, evaluate, export (fp32 / fp16 / int8) and sample on the edge (no TensorFlow), with both
architectures and both likelihoods (paired: folder mlp + bernoulli and conv + continuous Bernoulli, npz mlp +
continuous Bernoulli and conv + bernoulli). A TFDS dataset trains under `tfds.testing.mock_data`; bad
data leaves nothing behind; a run resumed on changed data is refused in one line; old config.json files load.

Everything is tiny: 12 generated images, 1 epoch, D = 2, 8 hidden units, 2 filters, K = 3.
"""

import json
import os
import re

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import edge_runner
from tfvae.cli.main import cli
from tfvae.config import Config, load_config, save_config
from tfvae.export import layout

TINY = ["--epochs", "1", "--latent-dim", "2", "--hidden-units", "8", "--filters", "2", "--batch-size", "8",
        "--verbose", "0"]
IMAGES = 12


def one_line_error(result):
    assert "Traceback" not in result.stderr and "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: ")
    return lines[-1]


def make_folder(root, n=IMAGES, size=32, seed=0):
    """n RGB PNGs of size x size: smooth colour gradients, so that there is something to learn."""
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    for i in range(n):
        a, b, c = rng.random(3)
        image = np.stack([a * x, b * y, c * (1 - x)], axis=-1)
        Image.fromarray(np.round(255 * image).astype(np.uint8)).save(os.path.join(root, f"{i:02d}.png"))
    return str(root)


def make_npz(path, n=IMAGES, size=64, seed=0):
    """x_train and x_test of n grey 64 x 64 discs, floats in [0, 1]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    discs = [(((x - cx) ** 2 + (y - cy) ** 2) < r**2).astype(np.float32) * 0.9 + 0.05
             for cx, cy, r in rng.uniform([0.3, 0.3, 0.1], [0.7, 0.7, 0.3], (n + 3, 3))]
    np.savez(path, x_train=np.stack(discs[:n]), x_test=np.stack(discs[n:]))
    return str(path)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    return {"folder": "folder:" + make_folder(root / "pngs"), "npz": "npz:" + make_npz(root / "grey.npz")}


SHAPES = {"folder": (32, 32, 3), "npz": (64, 64, 1)}
# Each source with both architectures and both likelihoods, paired so that every architecture also meets every
# likelihood: four runs instead of eight (the suite has a 10-minute budget on 2 cores).
CASES = [
    ("folder", "mlp", "bernoulli", SHAPES["folder"]),
    ("folder", "conv", "continuous_bernoulli", SHAPES["folder"]),
    ("npz", "mlp", "continuous_bernoulli", SHAPES["npz"]),
    ("npz", "conv", "bernoulli", SHAPES["npz"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("source, architecture, likelihood, shape", CASES)
def test_train_evaluate_export_and_sample_on_the_edge(sources, tmp_path, monkeypatch, source, architecture,
                                                     likelihood, shape):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    trained = runner.invoke(cli, ["train", "--dataset", sources[source], "--architecture", architecture,
                                  "--likelihood", likelihood, *TINY, "--run-dir", "run"])
    assert trained.exit_code == 0, trained.output
    config = load_config("run/config.json")
    assert config.image_shape == shape and config.likelihood == likelihood
    assert config.dataset == sources[source]
    expected_sizes = "train 10 / validation 1 / test 1" if source == "folder" else "train 11 / validation 1 / test 3"
    assert re.fullmatch(expected_sizes + r", sha256 [0-9a-f]{16}", config.data_fingerprint)
    assert {"samples_epoch_001.png", "reconstructions.png", "manifold.png"} <= set(os.listdir("run"))
    with Image.open("run/samples_epoch_001.png") as grid:
        assert grid.mode == "RGBA"  # matplotlib's figure; the grid itself is checked below with the edge sampler

    evaluated = runner.invoke(cli, ["evaluate", "--run-dir", "run", "--importance-samples", "3", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    figures = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert figures["likelihood"] == likelihood and figures["examples"] >= 1
    assert np.isfinite([figures["elbo"], figures["log_likelihood"]]).all()
    # The IWAE bound at K = 3 is no lower than the ELBO in expectation; here the ELBO's rate is the closed-form KL
    # while the bound's weights carry sampled rates, so the two differ by Monte Carlo noise (up to 0.04 nats seen).
    assert figures["log_likelihood"] >= figures["elbo"] - 0.5

    exported = runner.invoke(cli, ["export", "--run-dir", "run", "--tflite", "--quantize", "float16,int8",
                                   "--eval-images", "1", "--importance-samples", "3"])
    assert exported.exit_code == 0, exported.output
    with open(os.path.join("run", "export", layout.MANIFEST_FILE)) as f:
        manifest = json.load(f)
    assert manifest["image_shape"] == list(shape) and manifest["likelihood"] == likelihood
    assert manifest["signatures"]["decode"]["outputs"][layout.PROBS] == [None, *shape]
    assert (layout.MEAN in manifest["signatures"]["decode"]["outputs"]) == (likelihood == "continuous_bernoulli")
    for name in (layout.DECODER_FILE, *(layout.QUANTIZED_DECODER_FILES[q] for q in ("float16", "int8"))):
        assert manifest["parity"][name]["max_abs_diff_probs"] < 0.05

    # On the edge: the int8 decoder, with TensorFlow, TFP, Keras and matplotlib unimportable.
    decoder = os.path.join("run", "export", layout.QUANTIZED_DECODER_FILES["int8"])
    report, result = edge_runner.run_blocked(["sample", "--model", decoder, "--n", "4", "--out", "grid.png",
                                              "--npy", "grid.npy"], cwd=tmp_path)
    assert report == {"code": 0, "attempted": [], "loaded": []}, result.stderr
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.size == (2 * shape[1], 2 * shape[0]) and grid.mode == ("RGB" if shape[2] == 3 else "L")
    shown = np.load(tmp_path / "grid.npy")
    assert shown.shape == (4, *shape) and shown.min() >= 0 and shown.max() <= 1
    other = 4 - shape[2]  # 3 for a grey model, 1 for a colour one
    refused = runner.invoke(cli, ["sample", "--model", decoder, "--channels", str(other), "--out", "no.png"])
    assert refused.exit_code == 1 and not os.path.exists("no.png")
    assert one_line_error(refused).startswith(f"Error: --channels {other}: the decoder was exported for {shape[2]}-channel")

    from tfvae.export.litert import TFLiteDecoder
    from tfvae.export.sampler import prior_latents

    for name in (layout.DECODER_FILE, layout.QUANTIZED_DECODER_FILES["float16"]):
        outputs = TFLiteDecoder(os.path.join("run", "export", name)).decode(prior_latents(np.random.default_rng(0), 4, 2))
        assert outputs[layout.PROBS].shape == (4, *shape)
    if likelihood == "continuous_bernoulli":  # the grid shows the mean, not sigmoid(logits)
        int8 = TFLiteDecoder(decoder).decode(prior_latents(np.random.default_rng(0), 4, 2))
        np.testing.assert_allclose(shown, int8[layout.MEAN], atol=1e-6)
        assert not np.allclose(int8[layout.MEAN], int8[layout.PROBS], atol=1e-3)


def test_a_tfds_dataset_trains_under_mock_data(tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    monkeypatch.chdir(tmp_path)
    with tfds.testing.mock_data(num_examples=16):
        result = CliRunner().invoke(cli, ["train", "--dataset", "tfds:mnist", "--image-size", "12", *TINY,
                                          "--run-dir", "run"])
    assert result.exit_code == 0, result.output
    config = load_config("run/config.json")
    assert config.image_shape == (12, 12, 1) and config.image_size == (12, 12) and config.dataset == "tfds:mnist"
    assert os.path.isfile("run/summary.json")


@pytest.mark.parametrize("make, message", [
    (lambda d: os.makedirs(d / "empty"), "holds no images"),
    (lambda d: make_folder(d / "empty", n=1, size=8), "has 1 training image"),
])
def test_bad_data_is_one_line_and_writes_nothing(tmp_path, monkeypatch, make, message):
    monkeypatch.chdir(tmp_path)
    make(tmp_path)
    result = CliRunner().invoke(cli, ["train", "--dataset", "folder:empty", *TINY, "--run-dir", "run"])
    assert result.exit_code == 1 and message in one_line_error(result)
    assert not os.path.exists("run")


def test_channels_must_be_one_or_three(tmp_path):
    result = CliRunner().invoke(cli, ["train", "--dataset", "folder:x", "--channels", "2"])
    assert result.exit_code == 2 and "'2' is not one of '1', '3'" in result.stderr


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory):
    """A finished 1-epoch run on 12 RGB 8 x 8 PNGs: (its folder, with pngs/ and run/)."""
    root = tmp_path_factory.mktemp("colour")
    make_folder(root / "pngs", size=8)
    result = CliRunner().invoke(cli, ["train", "--dataset", f"folder:{root / 'pngs'}", *TINY, "--run-dir", str(root / "run")])
    assert result.exit_code == 0, result.output
    return root


def test_the_web_page_refuses_a_colour_run_before_writing(colour_run, monkeypatch):
    monkeypatch.chdir(colour_run)
    result = CliRunner().invoke(cli, ["export", "--run-dir", "run", "--web"])
    assert result.exit_code == 1
    assert one_line_error(result) == ("Error: --web draws grey Bernoulli decoders only; this run's images are 8x8x3 "
                                      "with a bernoulli likelihood: export without --web")
    assert not os.path.exists("run/export")


def test_resuming_or_evaluating_on_changed_data_is_refused_in_one_line(colour_run, monkeypatch):
    monkeypatch.chdir(colour_run)
    make_folder(colour_run / "pngs" / "more", n=1, size=8, seed=5)  # one more image
    result = CliRunner().invoke(cli, ["train", "--dataset", "folder:pngs", *TINY, "--epochs", "2", "--run-dir", "run"])
    assert result.exit_code == 1
    line = one_line_error(result)
    assert "data (sizes and sha256) 'train 10 / validation 1 / test 1" in line and "-> 'train 11 /" in line
    assert load_config("run/config.json").epochs == 1  # the run is untouched
    evaluated = CliRunner().invoke(cli, ["evaluate", "--run-dir", "run", "--importance-samples", "2"])
    assert evaluated.exit_code == 1
    assert one_line_error(evaluated).startswith("Error: the data of this run changed since it was trained: folder:")


def test_an_old_config_without_the_new_fields_loads_with_the_defaults(tmp_path):
    old = Config(epochs=3).to_dict()
    for name in ("image_key", "image_size", "channels", "image_shape", "data_fingerprint", "likelihood"):
        del old[name]
    (tmp_path / "config.json").write_text(json.dumps(old))
    config = load_config(str(tmp_path / "config.json"))
    assert config.image_shape == (28, 28, 1) and config.likelihood == "bernoulli" and config.data_fingerprint is None
    assert config.run_differences(Config(epochs=3)) == []  # resumes as the same run
    save_config(config, str(tmp_path / "again.json"))
    assert load_config(str(tmp_path / "again.json")) == config


@pytest.mark.slow
def test_a_run_written_before_image_shapes_existed_trains_further(tmp_path, monkeypatch):
    """An old run's config.json (no image shape, source options, fingerprint or likelihood) resumes as the same run."""
    from tfvae.datasets import mnist

    monkeypatch.chdir(tmp_path)
    sizes = {"train": 16, "validation": 8, "test": 8}  # a small binarized_mnist, in the real files' format
    monkeypatch.setattr(mnist, "SPLIT_SIZES", {"binarized_mnist": sizes})
    os.makedirs("data/binarized_mnist")
    rng = np.random.default_rng(0)
    for split, name in (("train", "train"), ("validation", "valid"), ("test", "test")):
        bits = rng.integers(0, 2, (sizes[split], 784))
        with open(f"data/binarized_mnist/binarized_mnist_{name}.amat", "w") as f:
            f.writelines(" ".join(map(str, row)) + "\n" for row in bits)
    args = ["train", "--data-dir", "data", *TINY, "--latent-dim", "3", "--run-dir", "old"]  # D = 3: no manifold plot
    assert CliRunner().invoke(cli, args).exit_code == 0
    with open("old/config.json") as f:
        values = json.load(f)
    for name in ("image_key", "image_size", "channels", "image_shape", "data_fingerprint", "likelihood"):
        del values[name]
    with open("old/config.json", "w") as f:
        json.dump(values, f)
    result = CliRunner().invoke(cli, [*args, "--epochs", "2"])
    assert result.exit_code == 0, result.output
    assert "training the finished run in old further: epochs 1 -> 2" in result.stderr
    assert load_config("old/config.json").image_shape == (28, 28, 1)


def test_channels_3_on_a_decoder_exported_for_1_is_refused(tmp_path):
    class GreyDecoder:  # what the sampler reads of any decoder
        latent_dim, image_shape, likelihood = 2, (8, 8, 1), "bernoulli"

    from tfvae.errors import ConfigError
    from tfvae.export.sampler import sample

    with pytest.raises(ConfigError, match=r"--channels 3: the decoder was exported for 1-channel images \(8x8x1\)"):
        sample(GreyDecoder(), 4, channels=3)


def test_mode_bernoulli_on_a_continuous_bernoulli_decoder_is_refused():
    class GreyLevelsDecoder:
        latent_dim, image_shape, likelihood = 2, (8, 8, 1), "continuous_bernoulli"

    from tfvae.errors import ConfigError
    from tfvae.export.sampler import sample

    with pytest.raises(ConfigError, match="--mode bernoulli draws binary pixels, but this decoder is a continuous Bernoulli"):
        sample(GreyLevelsDecoder(), 4, mode="bernoulli")
