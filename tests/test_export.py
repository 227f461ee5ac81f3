"""Tests for `tfvae export`: the SavedModel signatures, the TFLite files, parity, the manifest, all-or-nothing writes.

One tiny run (D = 2, 16 hidden units, one epoch on 256 images) is trained once
for the module and exported once with every file; tests that write more
exports write them under their own tmp_path.
"""

import hashlib
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from tfvae.config import Config, save_config
from tfvae.errors import ConfigError, RunError
from tfvae.export import layout

LATENT_DIM = 2
QUIET = lambda message: None  # noqa: E731


@pytest.fixture(scope="module")
def vae(run_dir):
    from tfvae.runs import load_vae

    return load_vae(run_dir)[1]


@pytest.fixture(scope="module")
def exported(run_dir):
    """(export directory, manifest) with every file: SavedModel, decoder, encoder, float16 and int8 decoders."""
    from tfvae.export.exporter import export_run

    manifest = export_run(
        run_dir, tflite=True, quantize="float16,int8", eval_images=64, importance_samples=16, log=QUIET
    )
    return os.path.join(run_dir, layout.DEFAULT_EXPORT_DIR), manifest


def keras_reference(vae, z):
    import tensorflow as tf

    logits = vae.decode_logits(tf.constant(z))
    return tf.sigmoid(logits).numpy(), logits.numpy()


def latents(n, seed=123):
    return np.random.default_rng(seed).standard_normal((n, LATENT_DIM)).astype(np.float32)


def tflite_files(directory):
    return sorted(name for name in os.listdir(directory) if name.endswith(".tflite"))


def leftovers(parent):
    """Temporary export directories left beside the real ones."""
    return [name for name in os.listdir(parent) if ".tmp-" in name]


# --------------------------------------------------------------------------- SavedModel


def test_saved_model_has_decode_and_encode_signatures_tensors_in_tensors_out(exported, vae):
    import tensorflow as tf

    directory, _ = exported
    loaded = tf.saved_model.load(os.path.join(directory, layout.SAVED_MODEL_DIR))
    assert set(loaded.signatures) == {"decode", "encode"}

    decode, encode = loaded.signatures["decode"], loaded.signatures["encode"]
    (_, decode_inputs), (_, encode_inputs) = decode.structured_input_signature, encode.structured_input_signature
    assert {k: (v.shape.as_list(), v.dtype) for k, v in decode_inputs.items()} == {"z": ([None, 2], tf.float32)}
    assert {k: (v.shape.as_list(), v.dtype) for k, v in encode_inputs.items()} == {"x": ([None, 28, 28, 1], tf.float32)}
    assert {k: v.shape.as_list() for k, v in decode.structured_outputs.items()} == {
        "probs": [None, 28, 28, 1],
        "logits": [None, 28, 28, 1],
    }
    assert {k: v.shape.as_list() for k, v in encode.structured_outputs.items()} == {"loc": [None, 2], "scale": [None, 2]}

    z = latents(5)
    out = decode(z=tf.constant(z))
    probs, logits = keras_reference(vae, z)
    np.testing.assert_allclose(out["logits"].numpy(), logits, atol=1e-5)
    np.testing.assert_allclose(out["probs"].numpy(), probs, atol=1e-6)

    x = (np.random.default_rng(0).random((3, 28, 28, 1)) < 0.3).astype(np.float32)
    loc, scale = vae.encode_params(tf.constant(x))
    out = encode(x=tf.constant(x))
    np.testing.assert_allclose(out["loc"].numpy(), loc.numpy(), atol=1e-5)
    np.testing.assert_allclose(out["scale"].numpy(), scale.numpy(), atol=1e-5)


def sampling_op_types(signature):
    """The random (sampling) op types in a loaded signature's graph and in the traced bodies it calls."""
    graph = signature.graph
    op_types = {op.type for op in graph.get_operations()}
    for function in graph.as_graph_def().library.function:  # the traced bodies
        op_types |= {node.op for node in function.node_def}
    assert "MatMul" in op_types or "AddV2" in op_types  # the inspection sees the arithmetic, not only the call
    return {t for t in op_types if any(word in t for word in ("Random", "Multinomial", "TruncatedNormal"))}


def numpy_decode_logits(vae, z):
    """z (N, D) -> logits (N, 28, 28, 1) = relu(z W1 + b1) W2 + b2, from the decoder's Dense weights in float64."""
    import tf_keras as tfk

    (w1, b1), (w2, b2) = [(layer.kernel.numpy().astype(np.float64), layer.bias.numpy().astype(np.float64))
                          for layer in vae.decoder.layers if isinstance(layer, tfk.layers.Dense)]
    return (np.maximum(z @ w1 + b1, 0.0) @ w2 + b2).reshape(len(z), 28, 28, 1)


def test_exported_graphs_are_deterministic_functions_without_sampling_ops(exported, vae):
    import tensorflow as tf

    directory, _ = exported
    loaded = tf.saved_model.load(os.path.join(directory, layout.SAVED_MODEL_DIR))
    for key in ("decode", "encode"):
        assert "MatMul" in {node.op for f in loaded.signatures[key].graph.as_graph_def().library.function
                            for node in f.node_def}, key
        assert sampling_op_types(loaded.signatures[key]) == set(), key
    # The decoder is the MLP itself, checked against NumPy: no noise added anywhere.
    z = latents(4)
    out = loaded.signatures["decode"](z=tf.constant(z))
    logits = numpy_decode_logits(vae, z.astype(np.float64))
    np.testing.assert_allclose(out["logits"].numpy(), logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["probs"].numpy(), 1 / (1 + np.exp(-logits)), atol=1e-6)


def test_the_sampling_op_check_sees_sampling(tmp_path):
    """The check above can fail: saved signatures that draw noise, stateful or stateless (as the model's
    posterior noise is), are caught."""
    import tensorflow as tf

    module = tf.Module()
    spec = [tf.TensorSpec([None, LATENT_DIM], tf.float32, name="z")]
    module.stateful = tf.function(lambda z: {"probs": tf.sigmoid(z + tf.random.normal(tf.shape(z)))},
                                  input_signature=spec)
    module.stateless = tf.function(
        lambda z: {"probs": tf.sigmoid(z + tf.random.stateless_normal(tf.shape(z), seed=[1, 2]))},
        input_signature=spec)
    tf.saved_model.save(module, str(tmp_path / "sampler"), signatures={
        "stateful": module.stateful.get_concrete_function(), "stateless": module.stateless.get_concrete_function()})
    loaded = tf.saved_model.load(str(tmp_path / "sampler"))
    assert sampling_op_types(loaded.signatures["stateful"]) and sampling_op_types(loaded.signatures["stateless"])


# --------------------------------------------------------------------------- TFLite


def test_tflite_files_are_written_with_signature_names_and_a_dynamic_batch(exported):
    from ai_edge_litert.interpreter import Interpreter

    directory, _ = exported
    assert tflite_files(directory) == [
        "decoder.tflite",
        "decoder_float16.tflite",
        "decoder_int8.tflite",
        "encoder.tflite",
    ]
    for name in tflite_files(directory):
        interpreter = Interpreter(model_path=os.path.join(directory, name))
        key, inputs, outputs = ("encode", ["x"], ["loc", "scale"]) if name == "encoder.tflite" else (
            "decode", ["z"], ["logits", "probs"])
        assert interpreter.get_signature_list() == {key: {"inputs": inputs, "outputs": outputs}}, name
        runner = interpreter.get_signature_runner(key)
        assert runner.get_input_details()[inputs[0]]["shape_signature"][0] == -1, name
        for batch in (1, 7):
            shape = (batch, 28, 28, 1) if key == "encode" else (batch, LATENT_DIM)
            result = runner(**{inputs[0]: np.zeros(shape, np.float32)})
            assert all(result[o].shape[0] == batch for o in outputs), name


def test_tflite_files_use_builtin_ops_only(exported):
    from ai_edge_litert import schema_py_generated as schema

    directory, _ = exported
    for name in tflite_files(directory):
        with open(os.path.join(directory, name), "rb") as f:
            model = schema.Model.GetRootAs(f.read(), 0)
        codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
        assert codes, name
        assert all(c.CustomCode() is None for c in codes), name  # Flex ops are custom ops named Flex*
        assert all(c.BuiltinCode() != schema.BuiltinOperator.CUSTOM for c in codes), name


def test_tflite_decoders_match_the_keras_model(exported, vae):
    from tfvae.export.litert import TFLiteDecoder, TFLiteEncoder

    directory, _ = exported
    z = latents(32)
    probs, logits = keras_reference(vae, z)
    tolerances = {"decoder.tflite": 1e-5, "decoder_float16.tflite": 1e-2, "decoder_int8.tflite": 0.1}
    for name, atol in tolerances.items():
        out = TFLiteDecoder(os.path.join(directory, name), num_threads=1).decode(z)
        np.testing.assert_allclose(out["probs"], probs, atol=atol, err_msg=name)
    out = TFLiteDecoder(os.path.join(directory, "decoder.tflite")).decode(z)
    np.testing.assert_allclose(out["logits"], logits, atol=1e-4)

    import tensorflow as tf

    x = (np.random.default_rng(1).random((9, 28, 28, 1)) < probs[:9]).astype(np.float32)
    loc, scale = TFLiteEncoder(os.path.join(directory, "encoder.tflite")).encode(x)
    keras_loc, keras_scale = vae.encode_params(tf.constant(x))
    np.testing.assert_allclose(loc, keras_loc.numpy(), atol=1e-5)
    np.testing.assert_allclose(scale, keras_scale.numpy(), atol=1e-5)


def test_quantized_decoders_are_smaller(exported):
    directory, _ = exported
    size = lambda name: os.path.getsize(os.path.join(directory, name))  # noqa: E731
    assert size("decoder_int8.tflite") < size("decoder_float16.tflite") < size("decoder.tflite")


# --------------------------------------------------------------------------- manifest


def test_manifest_lists_every_file_with_its_size_and_sha256(exported):
    directory, manifest = exported
    with open(os.path.join(directory, "manifest.json"), encoding="utf-8") as f:
        assert json.load(f) == manifest
    assert manifest["latent_dim"] == LATENT_DIM and manifest["image_shape"] == [28, 28, 1]
    assert manifest["signatures"]["decode"]["inputs"] == {"z": [None, LATENT_DIM]}

    on_disk = set()
    for root, _, files in os.walk(directory):
        on_disk |= {os.path.relpath(os.path.join(root, name), directory) for name in files}
    on_disk.discard("manifest.json")
    assert set(manifest["files"]) == on_disk
    assert "saved_model/saved_model.pb" in on_disk
    for name, entry in manifest["files"].items():
        with open(os.path.join(directory, name), "rb") as f:
            data = f.read()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}, name


def test_manifest_records_parity_on_the_fixed_batch_of_z(exported, vae):
    from tfvae.export.exporter import PARITY_LATENTS, PARITY_SEED
    from tfvae.export.litert import TFLiteDecoder

    directory, manifest = exported
    parity = manifest["parity"]
    assert set(parity) == {"batch", "saved_model", "decoder.tflite", "decoder_float16.tflite",
                           "decoder_int8.tflite", "encoder.tflite"}
    z = np.random.default_rng(PARITY_SEED).standard_normal((PARITY_LATENTS, LATENT_DIM)).astype(np.float32)
    probs, _ = keras_reference(vae, z)
    for name in ("decoder.tflite", "decoder_int8.tflite"):
        recomputed = np.max(np.abs(TFLiteDecoder(os.path.join(directory, name)).decode(z)["probs"] - probs))
        assert parity[name]["max_abs_diff_probs"] == pytest.approx(recomputed, rel=1e-3, abs=1e-7)
    assert parity["decoder.tflite"]["max_abs_diff_probs"] < 1e-5
    assert 0 < parity["decoder_int8.tflite"]["max_abs_diff_probs"] < 0.1
    assert parity["encoder.tflite"]["max_abs_diff_loc"] < 1e-5


def test_manifest_states_the_quantization_cost_on_a_subset(exported):
    _, manifest = exported
    cost = manifest["quantization"]
    assert "subset" in cost["subset"] and "64 of the 10000" in cost["subset"]
    assert (cost["images"], cost["split_images"], cost["importance_samples"]) == (64, 10000, 16)
    reference = cost["reference"]
    assert reference["log_likelihood"] >= reference["elbo"]
    assert set(cost["decoders"]) == {"decoder.tflite", "decoder_float16.tflite", "decoder_int8.tflite"}
    for name, entry in cost["decoders"].items():
        assert entry["elbo_change"] == pytest.approx(entry["elbo"] - reference["elbo"]), name
        assert entry["log_likelihood_change"] == pytest.approx(entry["log_likelihood"] - reference["log_likelihood"])
    # Paired with the same z: the float32 TFLite decoder changes nothing, and int8 changes more than float16.
    assert abs(cost["decoders"]["decoder.tflite"]["elbo_change"]) < 1e-3
    float16, int8 = (abs(cost["decoders"][n]["elbo_change"]) for n in ("decoder_float16.tflite", "decoder_int8.tflite"))
    assert float16 < int8


# --------------------------------------------------------------------------- writing


def test_an_existing_export_is_kept_unless_overwrite(run_dir, tmp_path):
    from tfvae.export.exporter import export_run

    out = str(tmp_path / "out")
    export_run(run_dir, out, log=QUIET)
    assert not os.path.exists(os.path.join(out, "decoder.tflite"))
    with open(os.path.join(out, "manifest.json"), "rb") as f:
        before = f.read()
    with pytest.raises(RunError, match="already holds an export; pass --overwrite"):
        export_run(run_dir, out, tflite=True, log=QUIET)
    with open(os.path.join(out, "manifest.json"), "rb") as f:
        assert f.read() == before
    assert not os.path.exists(os.path.join(out, "decoder.tflite"))

    export_run(run_dir, out, tflite=True, overwrite=True, log=QUIET)
    assert os.path.isfile(os.path.join(out, "decoder.tflite"))
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no temporary or previous export left beside it


def test_a_crash_leaves_no_half_export_and_keeps_the_old_one(run_dir, tmp_path, monkeypatch):
    from tfvae.export import exporter

    def crash(*args, **kwargs):
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(exporter, "convert_signature", crash)
    out = str(tmp_path / "out")
    with pytest.raises(RuntimeError, match="converter crashed"):
        exporter.export_run(run_dir, out, tflite=True, log=QUIET)
    assert os.listdir(tmp_path) == []

    exporter.export_run(run_dir, out, log=QUIET)  # a complete export, SavedModel only
    with open(os.path.join(out, "manifest.json"), "rb") as f:
        before = f.read()
    with pytest.raises(RuntimeError, match="converter crashed"):
        exporter.export_run(run_dir, out, tflite=True, overwrite=True, log=QUIET)
    with open(os.path.join(out, "manifest.json"), "rb") as f:
        assert f.read() == before
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_a_directory_that_is_not_an_export_is_never_replaced(run_dir, tmp_path):
    from tfvae.export.exporter import export_run

    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(RunError, match="not a tfvae export"):
        export_run(run_dir, str(out), overwrite=True, log=QUIET)
    assert (out / "notes.txt").read_text() == "keep me"


def test_a_run_without_a_checkpoint_is_refused(tmp_path):
    from tfvae.export.exporter import export_run

    save_config(Config(latent_dim=2), str(tmp_path / "config.json"))
    with pytest.raises(RunError, match="no checkpoint"):
        export_run(str(tmp_path), log=QUIET)
    assert not os.path.exists(tmp_path / "export")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"quantize": "float16"}, "add --tflite"),
        ({"tflite": True, "quantize": "int4"}, "unknown --quantize int4"),
        ({"tflite": True, "quantize": "int8", "eval_images": -1}, "--measure-images must be a non-negative integer"),
        ({"tflite": True, "quantize": "int8", "importance_samples": 0}, "--importance-samples must be a positive"),
    ],
)
def test_bad_options_are_refused_before_any_work(tmp_path, options, message):
    from tfvae.export.exporter import export_run

    with pytest.raises(ConfigError, match=message):
        export_run(str(tmp_path / "no-such-run"), **options, log=QUIET)


def test_parse_quantize():
    from tfvae.export.exporter import parse_quantize

    assert parse_quantize("none") == ()
    assert parse_quantize("int8,float16") == ("float16", "int8")
    assert parse_quantize("none,float16,int8") == ("float16", "int8")
    assert parse_quantize(["float16"]) == ("float16",)


# --------------------------------------------------------------------------- CLI


def test_cli_export_writes_the_export_and_refuses_to_overwrite_it(run_dir, tmp_path):
    from tfvae.cli.main import cli

    out = str(tmp_path / "exp")
    runner = CliRunner()
    result = runner.invoke(cli, ["export", "--run-dir", run_dir, "--out", out, "--tflite"])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(out)) == ["decoder.tflite", "encoder.tflite", "manifest.json", "prior.npz", "saved_model"]

    result = runner.invoke(cli, ["export", "--run-dir", run_dir, "--out", out])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and "--overwrite" in lines[0]


def test_cli_export_of_a_missing_run_is_one_line(tmp_path):
    from tfvae.cli.main import cli

    result = CliRunner().invoke(cli, ["export", "--run-dir", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [f"Error: run directory {tmp_path / 'nope'} does not exist"]


def test_cli_defaults_match_the_library():
    from tfvae.cli import export as export_cli
    from tfvae.export import exporter

    assert export_cli.DEFAULT_EVAL_IMAGES == exporter.DEFAULT_EVAL_IMAGES == layout.DEFAULT_EVAL_IMAGES
    assert export_cli.DEFAULT_IMPORTANCE_SAMPLES == exporter.DEFAULT_IMPORTANCE_SAMPLES


def test_bench_sample_section_reports_sizes_quantization_and_latency(exported):
    from tfvae.bench.device import SampleOptions, section_sample

    directory, manifest = exported
    results = section_sample(SampleOptions(export_dir=directory, repeats=3))  # in this process: no subprocess
    assert json.loads(json.dumps(results)) == results
    assert results["files"]["decoder_int8.tflite"] == manifest["files"]["decoder_int8.tflite"]["bytes"]
    assert set(results["latency_seconds"]) == {"decoder.tflite", "decoder_float16.tflite", "decoder_int8.tflite",
                                              "saved_model"}
    assert all(0 < seconds < 1 for by_batch in results["latency_seconds"].values() for seconds in by_batch.values())
    assert results["prior_seconds"]["components"] == 1  # N(0, I), exported as one component
    assert all(results["prior_seconds"][key] > 0 for key in ("load", "prior", "standard_normal"))
