"""Tests for `tfvae bench` and the FLOP walk (`tfvae.flops`): counts against closed forms, and tiny runs of the sections."""

import json
import shlex
import math
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from tfvae.config import Config


def build(**fields):
    from tfvae.models import build_vae

    return build_vae(Config(**fields))


# --------------------------------------------------------------------------- the FLOP walk


def test_mlp_forward_flops_equal_the_closed_form():
    from tfvae import flops

    vae = build()  # 784-500-20
    encoder = 2 * (784 * 500 + 500 * 40)
    decoder = 2 * (20 * 500 + 500 * 784)
    assert flops.count(vae.encoder, (1, 28, 28, 1)) == encoder
    assert flops.count(vae.decoder, (1, 20)) == decoder
    calls = flops.training_calls(vae, batch_size=1)
    assert sum(c.forward.flops for c in calls) == encoder + decoder


def test_training_adds_weight_gradients_everywhere_and_input_gradients_after_the_first_layer():
    from tfvae import flops

    vae = build(latent_dim=2, hidden_units=8)
    calls = flops.training_calls(vae, batch_size=4)
    forward = sum(c.forward.flops for c in calls)
    first = calls[0].forward.flops  # 784 -> 8, which sees the data only
    assert calls[0].input_gradient is None and all(c.input_gradient is not None for c in calls[1:])
    assert flops.training_flops(calls) == 3 * forward - first
    assert calls[0].weight_gradient.shape == (784, 4, 8)  # xᵀ · dy


def test_iwae_runs_the_decoder_on_k_samples_per_image():
    from tfvae import flops

    one, five = (flops.training_calls(build(latent_dim=2, hidden_units=8, objective="iwae", train_samples=k), 4)
                 for k in (1, 5))
    decoder = lambda calls: sum(c.forward.flops for c in calls if c.network == "decoder")  # noqa: E731
    encoder = lambda calls: sum(c.forward.flops for c in calls if c.network == "encoder")  # noqa: E731
    assert decoder(five) == 5 * decoder(one) and encoder(five) == encoder(one)


def test_vampprior_runs_the_encoder_on_its_pseudo_inputs_learns_them_and_costs_its_density():
    from tfvae import flops

    vae = build(latent_dim=2, hidden_units=8, prior="vamp", prior_components=3)
    calls = flops.training_calls(vae, batch_size=4)
    rows = [c.forward.shape[0] for c in calls if c.network == "encoder" and c.layer == calls[0].layer]
    assert sorted(rows) == [3, 4]  # the batch, and the 3 pseudo-inputs
    pseudo = next(c for c in calls if c.network == "encoder" and c.forward.shape[0] == 3)
    assert pseudo.input_gradient is not None  # the pseudo-inputs are trainable: their gradient is work
    evaluation = flops.evaluation_calls(vae, batch_size=4, chunk_size=2)
    assert [c.forward.shape[0] for c in evaluation["once"]][:1] == [3]
    # Its log density at each chunk's B · C = 8 samples: [z·z, z, 1] (8, 2D + 1) times the form (2D + 1, K).
    density = [c.forward.shape for c in evaluation["per_chunk"] if c.network == "prior"]
    assert density == [(8, 5, 3)]
    assert not [c for c in flops.evaluation_calls(build(latent_dim=2, hidden_units=8), 4, 2)["per_chunk"]
                if c.network == "prior"]  # N(0, I): no mixture


def test_iaf_context_runs_per_image_and_the_autoregressive_layers_per_sample():
    from tfvae import flops

    vae = build(latent_dim=2, hidden_units=8, posterior="iaf", flow_steps=2)
    per_chunk = flops.evaluation_calls(vae, batch_size=4, chunk_size=3)["per_chunk"]
    flow = {c.layer: c.forward.shape for c in per_chunk if c.network == "flow"}
    assert flow["context"] == (4, 8, 8)  # B images, h (the encoder's 8 hidden units) -> hidden
    assert flow["hidden"] == (12, 2, 8) and flow["shift"] == (12, 8, 2)  # C · B samples


def test_conv2d_layer_counts_its_output_grid_times_its_kernel():
    from tfvae import flops

    vae = build(architecture="conv", latent_dim=2, hidden_units=8, filters=4)
    calls = flops.training_calls(vae, batch_size=1)
    conv = next(c for c in calls if c.forward.op == flops.CONV2D)
    h_out, w_out, k_h, k_w, c_in, c_out = 14, 14, 3, 3, 1, 4  # 28x28x1, stride 2 'same', 3x3, 4 filters
    assert conv.forward.flops == 2 * h_out * w_out * k_h * k_w * c_in * c_out
    assert conv.input_gradient is None  # the first layer: data only
    last = [c for c in calls if c.network == "decoder"][-1]  # the transposed convolution to the logits, 14 -> 28
    assert last.forward.op == flops.CONV2D_BACKPROP_INPUT
    assert last.forward.flops == 2 * 14 * 14 * 3 * 3 * 4 * 1
    assert last.input_gradient.op == flops.CONV2D


def test_a_layer_with_a_kernel_and_no_rule_is_refused():
    import tf_keras as tfk

    from tfvae import flops

    class Scaled(tfk.layers.Dense):
        def call(self, inputs):
            return 2 * super().call(inputs)

    network = tfk.Sequential([tfk.layers.InputLayer((3,)), Scaled(4)])
    with pytest.raises(flops.UncountedLayerError, match="Scaled"):
        flops.count(network, (1, 3))


def test_products_round_trip_through_json():
    from tfvae import flops

    calls = flops.training_calls(build(architecture="conv", latent_dim=2, hidden_units=8, filters=4), 2)
    for product in (p for c in calls for p in c.training_products()):
        again = flops.Product.from_dict(json.loads(json.dumps(product.to_dict())))
        assert again == product and again.key == product.key


# --------------------------------------------------------------------------- the sections' options


def test_each_section_takes_only_its_own_options_and_they_round_trip_through_json():
    from tfvae.bench import SECTIONS, options_for
    from tfvae.bench.options import from_dict, to_dict

    values = {"config": Config(latent_dim=2), "run_dir": "run", "export_dir": "export", "data_dir": None,
              "variants": ("spe16",), "epochs": 2, "eval_images": 8, "importance_samples": 4, "seconds": 0.5,
              "gap_epochs": (1, 2), "repeats": 3, "verbose": True}
    chosen = options_for(list(SECTIONS), **values)
    assert list(chosen) == list(SECTIONS)
    assert not hasattr(chosen["sample"], "config") and chosen["sample"].repeats == 3
    assert not hasattr(chosen["matmul"], "epochs") and chosen["strategies"].epochs == chosen["train"].epochs == 2
    assert chosen["quality"].gap_epochs == (1, 2) and chosen["evaluate"].run_dir == "run"
    for options in chosen.values():
        assert from_dict(type(options), json.loads(json.dumps(to_dict(options)))) == options


def test_a_sections_options_are_checked_where_they_are_declared():
    from tfvae.bench import options_for
    from tfvae.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown variant 'fast'"):
        options_for(["train"], config=Config(), variants=("fast",))
    with pytest.raises(ConfigError, match="the quality section needs --run-dir"):
        options_for(["quality"], run_dir=None)
    with pytest.raises(ConfigError, match="unknown section 'nope'"):
        options_for(["nope"])
    options_for(["train"], config=Config(), run_dir=None, refine_steps=-1)  # the gaps option is not train's


def test_the_model_family_is_named_through_the_presets():
    from tfvae.bench import MODELS
    from tfvae.presets import PRESETS, expand_preset

    assert MODELS == tuple(PRESETS)
    assert expand_preset("classic") == Config() and expand_preset("best").architecture == "conv"
    conv = expand_preset("conv-iwae5", latent_dim=2)
    assert (conv.architecture, conv.objective, conv.train_samples, conv.latent_dim) == ("conv", "iwae", 5, 2)


def test_the_bench_library_imports_neither_the_command_line_nor_tensorflow():
    code = ("import sys, tfvae.bench, tfvae.bench.__main__; "
            "sys.exit(3 if 'tensorflow' in sys.modules or any(m.startswith('tfvae.cli') for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# --------------------------------------------------------------------------- the command


def invoke(*args):
    from tfvae.cli.main import cli

    return CliRunner().invoke(cli, ["bench", *args])


def test_help_lists_the_options_and_imports_no_tensorflow():
    code = ("import sys; from click.testing import CliRunner; from tfvae.cli.main import cli; "
            "r = CliRunner().invoke(cli, ['bench', '--help']); "
            "assert r.exit_code == 0, r.output; assert '--sections' in r.output and '--run-dir' in r.output; "
            "assert '--architecture' in r.output; sys.exit(3 if 'tensorflow' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("args, words", [
    (["--sections", "matmul,nope"], "'nope' is not one of"),
    (["--sections", "sample"], "--export-dir"),
    (["--variants", "fast"], "'fast' is not one of"),
    (["--run-dir", ".", "--latent-dim", "3"], "drop --latent-dim"),
    (["--epochs", "0"], "--epochs"),
    (["--models", "classic,vq"], "'vq' is not one of"),
    (["--models", "classic", "--preset", "best"], "drop --preset"),
    (["--models", "classic", "--run-dir", "."], "drop --run-dir"),
    (["--models", "classic", "--sections", "gaps"], "drop --models"),
])
def test_bad_options_are_one_line_and_exit_2(args, words):
    result = invoke(*args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and words in lines[0], result.stderr


def test_a_missing_run_is_one_line(tmp_path):
    result = invoke("--run-dir", str(tmp_path / "nope"))
    assert result.exit_code == 1 and result.stderr.strip().splitlines() == [
        f"Error: run directory {tmp_path / 'nope'} does not exist"]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="PYTHONSAFEPATH came with Python 3.11")
def test_children_import_the_installed_tfvae_not_a_checkout_in_the_working_directory(tmp_path):
    """`python -m tfvae.bench` puts the working directory first on sys.path: run from inside another checkout, the
    children would measure that checkout's code."""
    from tfvae.bench.runner import child_env

    (tmp_path / "tfvae").mkdir()
    (tmp_path / "tfvae" / "__init__.py").write_text("raise ImportError('the checkout in the working directory')\n")
    code = "import tfvae, sys; sys.stdout.write(tfvae.__file__)"
    shadowed = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert shadowed.returncode != 0 and "the checkout in the working directory" in shadowed.stderr
    child = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=child_env(), capture_output=True, text=True)
    assert child.returncode == 0, child.stderr
    assert os.path.dirname(child.stdout) == os.path.dirname(__import__("tfvae").__file__)


@pytest.mark.slow
def test_tiny_benchmark_reports_every_figure_and_its_floors(synthetic_data_dir, tmp_path):
    out = tmp_path / "bench.json"
    result = invoke("--latent-dim", "2", "--hidden-units", "16", "--sections", "matmul,train,evaluate",
                    "--variants", "spe16", "--epochs", "2", "--limit", "512", "--eval-images", "8",
                    "--importance-samples", "4", "--seconds", "0.05", "--data-dir", synthetic_data_dir,
                    "--json", "--out", str(out))
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == json.loads(out.read_text())
    assert report["failed"] == [] and report["machine"]["cpus"] == os.cpu_count()
    assert report["machine"]["cpu_flags"] is not None and report["date"]
    words = shlex.split(report["command"])  # the bench command as given, whoever called click (here pytest)
    assert words[1] == "bench" and "--json" in words and not words[0].endswith("pytest")
    assert words[words.index("--latent-dim") + 1] == "2" and words[words.index("--out") + 1] == str(out)
    assert words[words.index("--sections") + 1] == "matmul,train,evaluate"  # as typed, not a Python tuple
    assert report["model"]["latent_dim"] == 2

    matmul = report["matmul"]
    train, = report["train"]
    evaluate = report["evaluate"]
    # Every product of both workloads was measured, so both floors are complete.
    assert set(train["workload"]["products"]) | set(evaluate["workload"]["products"]) == set(matmul["gflops"])
    assert all(v > 0 for v in matmul["gflops"].values()) and set(matmul["square_gflops"]) == {"2048", "4096"}
    assert train["examples"] == 512 and len(train["epoch_seconds"]) == 2
    forward = 2 * (784 * 16 + 16 * 4 + 2 * 16 + 16 * 784)
    assert train["workload"]["flops_per_image"] == 3 * forward - 2 * 784 * 16  # no input gradient at the first layer
    assert train["floor_seconds"] > 0 and train["times_floor"] == train["seconds_per_epoch"] / train["floor_seconds"]
    assert evaluate["examples"] == 8 and evaluate["importance_samples"] == 4
    assert evaluate["floor_seconds"] > 0 and evaluate["times_floor"] > 0 and evaluate["log_likelihood"] < 0
    assert all(section["peak_rss_mb"] > 0 for section in (matmul, train, evaluate))


@pytest.mark.slow
def test_one_run_measures_each_model_of_the_family_against_its_own_floor(synthetic_data_dir, tmp_path):
    out = tmp_path / "bench.json"
    result = invoke("--models", "classic,conv-iwae5", "--latent-dim", "2", "--hidden-units", "16", "--filters", "4",
                    "--sections", "matmul,conv,train", "--variants", "spe16", "--epochs", "1", "--limit", "256",
                    "--seconds", "0.02", "--data-dir", synthetic_data_dir, "--out", str(out))
    assert result.exit_code == 0, result.stderr
    report = json.loads(out.read_text())
    assert list(report["models"]) == ["classic", "conv-iwae5"] and report["failed"] == []
    mlp, conv = (report["models"][name] for name in ("classic", "conv-iwae5"))
    # The family's values, with the flags given applied to each member.
    assert (mlp["model"]["architecture"], mlp["model"]["objective"], mlp["model"]["latent_dim"]) == ("mlp", "elbo", 2)
    assert (conv["model"]["architecture"], conv["model"]["train_samples"], conv["model"]["filters"]) == ("conv", 5, 4)
    assert mlp["conv"]["gflops"] == {} and conv["conv"]["gflops"]  # each model's own products were measured
    for results in (mlp, conv):
        train, = results["train"]
        assert train["floor_missing"] == [] and train["times_floor"] > 0 and train["parameters"] > 0
    assert conv["train"][0]["workload"]["flops_per_image"] > 5 * mlp["train"][0]["workload"]["flops_per_image"]
    summary = result.stdout.splitlines()
    assert any(line.startswith("| classic | ") for line in summary)
    assert any(line.startswith("| conv-iwae5 | ") for line in summary) and "### conv-iwae5" in summary


@pytest.mark.slow
def test_sample_section_on_a_tiny_export(run_dir):
    from tfvae.export.exporter import export_run

    export_run(run_dir, tflite=True, log=lambda message: None)
    edge_tfvae = os.path.join(os.path.dirname(sys.executable), "tfvae")  # `tfvae sample` of a .tflite: no TensorFlow
    result = invoke("--sections", "sample", "--export-dir", os.path.join(run_dir, "export"), "--repeats", "3",
                    "--runs", "1", "--edge-tfvae", edge_tfvae, "--json")
    assert result.exit_code == 0, result.stderr
    sample = json.loads(result.stdout)["sample"]
    assert sample["files"]["decoder.tflite"] > 0 and sample["sample_wall_seconds"]["runs"] == 1
    assert set(sample["latency_seconds"]) == {"decoder.tflite", "saved_model"}
    assert math.isfinite(sample["peak_rss_mb"])


def test_each_convolution_kernel_runs_at_its_shape():
    from tfvae import flops
    from tfvae.bench import kernels

    calls = flops.training_calls(build(architecture="conv", latent_dim=2, hidden_units=8, filters=4), 2)
    products = {p.op: p for c in calls for p in c.training_products() if p.op != flops.MATMUL}
    assert set(products) == {flops.CONV2D, flops.CONV2D_BACKPROP_INPUT, flops.CONV2D_BACKPROP_FILTER}
    for product in products.values():
        inputs, kernel, outputs, _, _ = product.shape
        expected = {flops.CONV2D: outputs, flops.CONV2D_BACKPROP_INPUT: inputs, flops.CONV2D_BACKPROP_FILTER: kernel}
        assert tuple(kernels.product_kernel(product, 1)(0).shape) == tuple(expected[product.op])
        assert kernels.measure_gflops(product, seconds=0.01) > 0


def test_the_table_skips_a_quantization_cost_that_was_not_measured():
    from tfvae.bench import table

    sample = {"files": {"decoder_int8.tflite": 10}, "parity": {}, "latency_seconds": {}, "peak_rss_mb": 1.0,
              "quantization": {"measured": False, "why": "no images",
                               "decoders": {"decoder_int8.tflite": {"quantization": "int8"}}}}
    text = table({"sample": sample})
    assert "| sample: `decoder_int8.tflite` (bytes) | 10 |" in text and "ELBO change" not in text


def test_the_gaps_section_needs_a_trained_run():
    result = invoke("--sections", "gaps")
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        "Error: the gaps section needs --run-dir (a trained run): it measures its encoder's inference gaps (see 'tfvae bench --help')")


def test_analyze_gaps_reports_the_split_of_a_runs_gap(run_dir):
    from tfvae.cli.main import cli

    result = CliRunner().invoke(cli, ["analyze", "gaps", "--run-dir", run_dir, "--eval-images", "4",
                                      "--importance-samples", "50", "--refine-steps", "20", "--json"])
    assert result.exit_code == 0, result.stderr
    gaps = json.loads(result.stdout)["gaps"]
    assert gaps["examples"] == 4 and gaps["refine_steps"] == 20 and gaps["importance_samples"] == 50
    assert gaps["refined_elbo"] > gaps["elbo"]  # 20 steps on each image's posterior raise its ELBO
    assert gaps["total_gap"] == pytest.approx(gaps["amortisation_gap"] + gaps["approximation_gap"])
    from tfvae.bench import table

    assert "gaps: total, amortisation, approximation (nats)" in table(json.loads(result.stdout))
