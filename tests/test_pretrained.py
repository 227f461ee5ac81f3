"""The models shipped in the package: their files match their manifests, the shipped decoder draws what the shipped
Keras model draws, and every route (the device without TensorFlow, Python, evaluate, the web export) works."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

import edge_runner
from tfvae import pretrained
from tfvae.errors import ModelFileError

NAMES = pretrained.NAMES


@pytest.mark.parametrize("name", NAMES)
def test_every_shipped_file_matches_its_manifest_and_the_manifest_says_how_it_was_made(name):
    pretrained.check_files(name)  # raises on a missing or changed file
    manifest = pretrained.manifest(name)
    assert "--seed" in manifest["command"] and manifest["command"].startswith("tfvae train")
    assert len(manifest["commit"]) == 40
    test = manifest["test"]
    assert test["importance_samples"] == 5000 and test["examples"] == 10000
    assert test["log_likelihood"] > test["elbo"] and test["log_likelihood_stderr"] > 0
    assert set(manifest["files"]) == {pretrained.DECODER_FILE, pretrained.PRIOR_FILE, "model.json", "weights.npz"}
    if manifest["config"].get("condition") == "label":  # what `tfvae sample --pretrained NAME --label k` reads
        assert manifest["condition"] == "label" and manifest["classes"] == manifest["config"]["classes"]
        assert 0.9 < test["classification_accuracy"] <= 1.0


def test_a_changed_file_is_refused_in_one_line(tmp_path, monkeypatch):
    import shutil

    copy = tmp_path / "pretrained"
    shutil.copytree(os.path.dirname(pretrained.__file__), copy)
    with open(copy / NAMES[0] / pretrained.PRIOR_FILE, "ab") as f:
        f.write(b"\0")
    monkeypatch.setattr(pretrained, "_HERE", str(copy))
    with pytest.raises(ModelFileError, match=r"prior\.npz is damaged .* reinstall tfvae"):
        pretrained.check_files(NAMES[0])


@pytest.mark.parametrize("name", NAMES)
def test_the_shipped_decoder_draws_what_the_shipped_keras_model_draws(name):
    import tfvae
    from tfvae.config import Config
    from tfvae.export.sampler import open_decoder, open_prior, sample

    vae = tfvae.load_model(f"pretrained:{name}")
    assert vae.run_config == Config.from_dict(pretrained.manifest(name)["config"])
    decoder = open_decoder(pretrained.decoder_path(name))
    label = 7 if vae.classes else None  # a conditional model: 16 sevens, z ~ p(z|y = 7)
    shipped = sample(decoder, 16, seed=0, prior=open_prior(pretrained.decoder_path(name), decoder), label=label).images
    keras = vae.sample(16, seed=0, labels=label)  # the same z: the prior.npz is the model's own prior
    difference = np.abs(shipped - keras)
    assert difference.mean() < 0.005 and difference.max() < 0.1  # int8 weights: a few hundredths at most


@pytest.mark.parametrize("name, label", [("best", None), ("conditional", "7"), ("conditional", None)])
def test_sample_pretrained_runs_without_tensorflow(tmp_path, name, label):
    from tfvae.export.sampler import open_decoder, open_prior, sample

    given = ["--label", label] if label is not None else []
    report, completed = edge_runner.run_blocked(["sample", "--pretrained", name, *given, "--out", "s.png",
                                                 "--npy", "s.npy"], cwd=tmp_path)
    assert report == {"code": 0, "attempted": [], "loaded": []}, completed.stderr
    path = pretrained.decoder_path(name)
    decoder = open_decoder(path)
    expected = sample(decoder, 64, seed=0, prior=open_prior(path, decoder), label=label and int(label))
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), expected.images)
    if name == "conditional":  # the classes come from the shipped manifest: --label 7, or one row per class
        # --label 7: 64 sevens; without: one row per class, 7 images each (64 rounded up to full rows)
        assert expected.labels.tolist() == ([7] * 64 if label else np.repeat(np.arange(10), 7).tolist())


def test_an_unknown_name_is_one_line_listing_the_names():
    from tfvae.cli.main import cli
    import tfvae

    result = CliRunner().invoke(cli, ["sample", "--pretrained", "bset"])
    assert result.exit_code == 2 and "'classic'" in result.output
    with pytest.raises(ModelFileError, match="no pretrained model 'bset'; choose one of: classic, best, conditional"):
        tfvae.load_model("pretrained:bset")
    result = CliRunner().invoke(cli, ["sample", "--pretrained", NAMES[0], "--model", "x.tflite"])
    assert result.exit_code == 2 and "exactly one of --model PATH and --pretrained NAME" in result.output


def test_evaluate_and_export_take_a_pretrained_model(synthetic_data_dir, tmp_path):
    from tfvae.cli.main import cli

    result = CliRunner().invoke(cli, ["evaluate", "--pretrained", "classic", "--data-dir", synthetic_data_dir,
                                      "--limit", "8", "-k", "4", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output[result.output.rindex('{"split"'):].splitlines()[0])  # after the progress bar
    assert figures["examples"] == 8 and figures["log_likelihood"] >= figures["elbo"] - 1.0
    out = tmp_path / "web-demo"
    result = CliRunner().invoke(cli, ["export", "--pretrained", "classic", "--web", "--out", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"] == "pretrained:classic" and "run_dir" not in manifest
    assert (out / "web" / "index.html").is_file()


@pytest.mark.realdata
def test_evaluate_pretrained_conditional_scores_log_p_x_given_y(data_dir):
    from tfvae.cli.main import cli

    result = CliRunner().invoke(cli, ["evaluate", "--pretrained", "conditional", "--data-dir", data_dir,
                                      "--limit", "8", "-k", "4", "--classification-samples", "2", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output[result.output.rindex('{"split"'):].splitlines()[0])
    assert figures["condition"] == "label" and figures["examples"] == 8
    assert 0.0 <= figures["classification_accuracy"] <= 1.0
