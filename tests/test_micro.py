"""Tests for the full-integer decoder and TFLite for Microcontrollers (`--quantize full_int8`, `--micro`, `--runtime micro`).

The tiny run (D = 2) is exported once for the module with decoder_int8.tflite (hybrid) and
decoder_full_int8.tflite, and OUT/micro. The full-int8 file is run by both runtimes: LiteRT and
the TFLM Python interpreter (the `tflite-micro` package, in the `test` extra). Conv and
continuous-Bernoulli decoders are exported untrained (hidden 8, 4 filters): enough to check that
they convert, what runs where, and the parity between runtimes.
"""

import os
import re
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from tfvae.errors import ModelFileError, TfvaeError
from tfvae.export import layout

QUIET = lambda message: None  # noqa: E731
FULL_INT8 = layout.QUANTIZED_DECODER_FILES["full_int8"]
HYBRID = layout.QUANTIZED_DECODER_FILES["int8"]
RUNTIME_TOLERANCE = 0.02  # TFLM and LiteRT run the same int8 file with kernels a few output steps apart
KERAS_TOLERANCE = 0.02  # mean |probs int8 - probs float32|: the bound


@pytest.fixture(scope="module")
def exported(run_dir):
    """(export directory, manifest): the tiny run with the hybrid and full-int8 decoders and OUT/micro."""
    from tfvae.export.exporter import export_run

    out = os.path.join(run_dir, "micro-export")
    manifest = export_run(run_dir, out, tflite=True, quantize="int8,full_int8", micro=True, eval_images=32,
                          importance_samples=8, log=QUIET)
    return out, manifest


def latents(n=16, d=2, seed=7):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def run_cli(args):
    from tfvae.cli.main import cli

    return CliRunner().invoke(cli, args)


def test_full_int8_decoder_is_integer_inside_with_float32_ends(exported):
    from ai_edge_litert.interpreter import Interpreter

    out, manifest = exported
    entry = manifest["full_int8"]
    assert entry["inputs"] == {"z": "float32"} and entry["batch"] == 1
    # logits only (twice): the readers compute probs = sigmoid(logits), at the fine step inside [-4, 4]
    assert set(entry["outputs"]) == {"logits", "logits_fine"} and entry["outputs"]["logits"]["int8_scale"] > 0
    assert entry["outputs"]["logits_fine"] == {"dtype": "float32", "int8_scale": pytest.approx(layout.FINE_LOGITS_RANGE / 127),
                                               "int8_zero_point": 0}
    assert entry["fine_logits_range"] == layout.FINE_LOGITS_RANGE
    assert "LOGISTIC" not in entry["ops"]
    interpreter = Interpreter(model_path=os.path.join(out, FULL_INT8))
    weighted = [op for op in interpreter._get_ops_details() if op["op_name"] == "FULLY_CONNECTED"]
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    assert weighted and all(tensors[int(i)]["dtype"] == np.int8 for op in weighted for i in op["inputs"][:2])
    # dense weights per tensor: TFLM would otherwise hold an int32 zero point per output unit in the arena
    assert all(len(tensors[int(op["inputs"][1])]["quantization_parameters"]["scales"]) == 1 for op in weighted)
    # logits_fine: the last layer once more on the same weights, not a second copy of them
    last = [op for op in weighted if any(tensors[int(o)]["name"].endswith("_fine") for o in op["outputs"])]
    assert len(last) == 1 and [int(i) for i in last[0]["inputs"]] == [int(i) for i in weighted[-2]["inputs"]]
    assert manifest["quantization"]["decoders"][FULL_INT8]["quantization"] == "full_int8"
    assert np.isfinite(manifest["quantization"]["decoders"][FULL_INT8]["log_likelihood_change"])


def test_tflm_agrees_with_litert_and_keras_on_the_full_int8_file(exported, run_dir):
    from tfvae.export.litert import TFLiteDecoder
    from tfvae.export.micro import MicroDecoder
    from tfvae.export.savedmodel import KerasDecoder
    from tfvae.runs import load_vae

    out, manifest = exported
    path, z = os.path.join(out, FULL_INT8), latents()
    tflm = MicroDecoder(path).decode(z)
    litert = TFLiteDecoder(path).decode(z)
    keras = KerasDecoder(load_vae(run_dir)[1]).decode(z)
    assert tflm["probs"].shape == litert["probs"].shape == (16, 28, 28, 1)
    assert np.max(np.abs(tflm["probs"] - litert["probs"])) <= RUNTIME_TOLERANCE
    logits_step = manifest["full_int8"]["outputs"]["logits"]["int8_scale"]
    assert np.max(np.abs(tflm["logits"] - litert["logits"])) <= 4 * logits_step + 1e-6
    # inside [-4, 4] the logits are read at the fine step: the runtimes' few-step disagreements stay below 0.02 in p
    fine_step = manifest["full_int8"]["outputs"]["logits_fine"]["int8_scale"]
    inside = (np.abs(tflm["logits"]) < 3.9) & (np.abs(litert["logits"]) < 3.9)
    assert inside.any() and np.max(np.abs(tflm["logits"] - litert["logits"])[inside]) <= 2 * fine_step + 1e-6
    mean_diff = float(np.mean(np.abs(tflm["probs"] - keras["probs"])))
    print(f"mean |probs TFLM int8 - Keras float32| = {mean_diff:.5f}")
    assert mean_diff <= KERAS_TOLERANCE
    assert manifest["parity"][FULL_INT8]["mean_abs_diff_probs"] <= KERAS_TOLERANCE
    assert manifest["micro"]["parity"]["max_abs_diff_probs_litert"] <= RUNTIME_TOLERANCE


def test_the_arena_is_measured_recorded_and_the_smallest(exported):
    from tfvae.export import micro

    out, manifest = exported
    path, arena = os.path.join(out, FULL_INT8), manifest["micro"]["arena_bytes"]
    assert 0 < arena <= 64 * 1024 and arena % micro.ALIGNMENT == 0
    assert micro.measure_arena(path) == arena
    assert micro._runs_in_child(path, arena) and not micro._runs_in_child(path, arena - micro.ALIGNMENT)
    header = open(os.path.join(out, layout.MICRO_DIR, layout.MICRO_HEADER)).read()
    assert f"kTensorArenaSize = {arena};" in header


def test_the_c_source_holds_the_model_bytes_aligned(exported):
    out, manifest = exported
    model = open(os.path.join(out, FULL_INT8), "rb").read()
    directory = os.path.join(out, layout.MICRO_DIR)
    source = open(os.path.join(directory, layout.MICRO_SOURCE)).read()
    header = open(os.path.join(directory, layout.MICRO_HEADER)).read()
    assert "alignas(16) const unsigned char g_decoder_model_data[]" in source
    body = source[source.index("{") + 1 : source.rindex("}")]
    assert bytes(int(b, 16) for b in re.findall(r"0x([0-9a-f]{2})", body)) == model
    length = int(re.search(r"g_decoder_model_data_len = (\d+);", header).group(1))
    assert length == os.path.getsize(os.path.join(out, FULL_INT8)) == manifest["micro"]["model_bytes"]
    readme = open(os.path.join(directory, layout.MICRO_README)).read()
    ops = manifest["micro"]["ops"]
    assert f"MicroMutableOpResolver<{len(ops)}>" in readme and readme.count("resolver.Add") == len(ops)
    assert "resolver.AddFullyConnected();" in readme and "FULLY_CONNECTED" in ops
    assert "logits_fine = interpreter.output(" in readme and "logits_fine" in manifest["micro"]["outputs"]


def test_the_fine_logits_keep_tflm_and_litert_within_0_02_when_the_logits_span_widely(tmp_path):
    """Logits spanning about 30: one int8 step of the whole range (0.13) moves p by 0.03 near 1/2, which the
    runtimes' one-step disagreements did (0.032 here without logits_fine); the fine step keeps them below 0.01."""
    import tfvae
    from tfvae.export.litert import TFLiteDecoder
    from tfvae.export.micro import MicroDecoder
    from tfvae.export.quantize import convert_full_int8, describe_full_int8
    from tfvae.export.savedmodel import prior_of

    vae = tfvae.VAE(latent_dim=2, hidden_units=32)
    vae.decode(np.zeros((1, 2), np.float32))
    last = [layer for layer in vae.decoder.layers if layer.weights][-1]
    kernel, bias = last.get_weights()
    last.set_weights([kernel * 40, bias])  # logits in about [-16, 16]
    path = str(tmp_path / FULL_INT8)
    open(path, "wb").write(convert_full_int8(vae, prior_of(vae), n=64))
    assert describe_full_int8(path)["outputs"]["logits"]["int8_scale"] > 4 * RUNTIME_TOLERANCE  # one step > 0.02 in p
    z = latents(64, seed=3)
    litert, tflm = TFLiteDecoder(path).decode(z), MicroDecoder(path).decode(z)
    assert np.mean(np.abs(litert["logits"]) < 4) > 0.5
    assert np.max(np.abs(tflm["probs"] - litert["probs"])) <= RUNTIME_TOLERANCE / 2


@pytest.mark.parametrize("architecture, likelihood", [("conv", "bernoulli"), ("mlp", "continuous_bernoulli")])
def test_every_architecture_and_likelihood_converts_to_full_int8(tmp_path, architecture, likelihood):
    import tfvae
    from tfvae.export.exporter import export_model
    from tfvae.export.litert import TFLiteDecoder
    from tfvae.export.micro import MicroDecoder

    vae = tfvae.VAE(latent_dim=2, hidden_units=8, filters=4, architecture=architecture, likelihood=likelihood)
    micro = likelihood == "bernoulli"
    manifest = export_model(vae, str(tmp_path / "out"), tflite=True, quantize="full_int8", micro=micro, log=QUIET)
    path = str(tmp_path / "out" / FULL_INT8)
    litert = TFLiteDecoder(path)
    assert litert.likelihood == likelihood and manifest["parity"][FULL_INT8]["mean_abs_diff_probs"] <= KERAS_TOLERANCE
    if micro:  # transposed convolutions run under TFLM
        assert "TRANSPOSE_CONV" in manifest["micro"]["ops"] and manifest["micro"]["arena_bytes"] <= 64 * 1024
        z = latents(4)
        assert np.max(np.abs(MicroDecoder(path).decode(z)["probs"] - litert.decode(z)["probs"])) <= RUNTIME_TOLERANCE
    else:  # the continuous-Bernoulli mean's tf.where becomes SELECT, which TFLM lacks: refused naming it
        assert manifest["parity"][FULL_INT8]["max_abs_diff_mean"] < 0.05
        with pytest.raises(ModelFileError, match="SELECT"):
            MicroDecoder(path)


# --------------------------------------------------------------------------- tfvae sample


def test_cli_sample_runs_the_full_int8_decoder_with_litert_and_tflm(exported, tmp_path):
    out, _ = exported
    images = {}
    for runtime in ("litert", "micro"):
        npy = tmp_path / f"{runtime}.npy"
        result = run_cli(["sample", "--model", os.path.join(out, FULL_INT8), "--runtime", runtime, "--n", "9",
                          "--out", str(tmp_path / f"{runtime}.png"), "--npy", str(npy)])
        assert result.exit_code == 0, result.output
        images[runtime] = np.load(npy)
    assert np.max(np.abs(images["litert"] - images["micro"])) <= RUNTIME_TOLERANCE  # the same seed, the same z


@pytest.mark.parametrize(
    "model, message",
    [
        (HYBRID, "dynamic-range (hybrid) model"),
        (".", "is a directory: pass"),
        ("no-such.tflite", "does not exist"),
        (layout.MANIFEST_FILE, "is not a TFLite model"),
    ],
)
def test_cli_sample_micro_refuses_what_tflm_cannot_run_in_one_line(exported, tmp_path, model, message):
    out, _ = exported
    result = run_cli(["sample", "--model", os.path.join(out, model), "--runtime", "micro",
                      "--out", str(tmp_path / "s.png")])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and message in lines[0], result.output
    assert not (tmp_path / "s.png").exists()


def test_the_micro_path_never_imports_tensorflow(exported, tmp_path):
    import json
    import subprocess

    import edge_runner

    args = ["sample", "--model", os.path.join(exported[0], FULL_INT8), "--runtime", "micro", "--n", "4",
            "--out", str(tmp_path / "s.png")]
    result = subprocess.run([sys.executable, "-c", edge_runner.BLOCKING_RUNNER, *args], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"code": 0, "attempted": [], "loaded": []}, result.stderr
    assert (tmp_path / "s.png").is_file()


def test_missing_tflite_micro_says_how_to_install(exported, monkeypatch):
    from tfvae.export.sampler import open_decoder

    for name in [m for m in sys.modules if m == "tflite_micro" or m.startswith("tflite_micro.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tflite_micro", None)  # import tflite_micro... raises ImportError
    with pytest.raises(TfvaeError, match=r'pip install "tfvae\[micro\]"'):
        open_decoder(os.path.join(exported[0], FULL_INT8), runtime="micro")


def test_export_micro_needs_the_full_int8_decoder(tmp_path):
    from tfvae.errors import ConfigError
    from tfvae.export.exporter import export_run

    with pytest.raises(ConfigError, match="--micro embeds decoder_full_int8.tflite"):
        export_run(str(tmp_path / "no-such-run"), tflite=True, quantize="int8", micro=True, log=QUIET)


def test_tflm_refuses_a_decoder_whose_batch_is_not_one(run_dir, tmp_path):
    import tensorflow as tf

    from tfvae.export.micro import MicroDecoder
    from tfvae.export.savedmodel import save_signatures
    from tfvae.runs import load_vae

    save_signatures(load_vae(run_dir)[1], str(tmp_path / "saved_model"), batch_size=4)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "saved_model"), signature_keys=[layout.DECODE])
    path = tmp_path / "decoder.tflite"
    path.write_bytes(converter.convert())
    with pytest.raises(ModelFileError, match=r"takes z of shape \[4, 2\]: TFLM runs one image per invoke"):
        MicroDecoder(str(path))


def test_a_conditional_decoder_converts_to_full_int8_but_tflm_has_no_one_hot(tmp_path):
    import tfvae
    from tfvae.export.litert import TFLiteDecoder
    from tfvae.export.micro import MicroDecoder
    from tfvae.export.quantize import convert_full_int8
    from tfvae.export.savedmodel import prior_of

    vae = tfvae.VAE(latent_dim=2, hidden_units=8, classes=3)
    path = tmp_path / FULL_INT8
    path.write_bytes(convert_full_int8(vae, prior_of(vae), n=32))  # calibrated on (z, y) over every class
    decoder = TFLiteDecoder(str(path))
    assert decoder.classes == ("0", "1", "2")
    assert decoder.decode(latents(3), labels=np.arange(3))["probs"].shape == (3, 28, 28, 1)
    with pytest.raises(ModelFileError, match="is a conditional decoder .* ONE_HOT is not a TFLM op"):
        MicroDecoder(str(path))
