"""The full-integer decoder: post-training int8 quantization calibrated on latents from the model's own prior.

    decoder_full_int8.tflite   decode: z (1, D) float32 -> logits [, mean], logits_fine (1, H, W, C) float32
                               QUANTIZE z -> int8 weights and activations (TFLITE_BUILTINS_INT8) -> DEQUANTIZE

Float32 in and out around an integer body. The decoder returns logits, not probs: the host computes
p = sigmoid(logits) (tfvae's readers do, in NumPy), which keeps the logits' int8 step (in manifest.json)
instead of adding an int8 sigmoid's 1/256 steps, and saves the arena the LOGISTIC op and a second float
output would take (3.9 KB of the `best` decoder's 66 KB). A continuous-Bernoulli decoder keeps its `mean`
in the graph (its presence tells readers the likelihood). The batch is fixed at 1: TFLM has no dynamic
shapes, and a transposed convolution with a dynamic batch computes its output shape at run time (SHAPE,
PACK, BROADCAST_TO), which TFLM cannot prepare.

`logits_fine` is the last layer once more, on the same int8 weights, into an int8 tensor of step 4/127
saturating outside [-4, 4] (`with_fine_logits`): readers take it where it is inside, `logits` elsewhere
(tfvae.export.litert.fine_logits). TFLM rounds its requantization twice (fixed point, gemmlowp's) and
LiteRT's XNNPACK once (exactly), so they disagree by one int8 step on 0.2-0.5 % of each layer's outputs;
at the wide step of logits spanning 40-80 that moved p by up to 0.04-0.07 near p = 1/2, at the fine step
by 0.008 (classic) to 0.024 (`best`, whose hidden layers' disagreements add up before the last layer).

The activation ranges are calibrated on CALIBRATION_LATENTS latents z ~ p(z) of the model's own prior (the
exported mixture, `vae.prior_mixture()`): the latents the decoder meets when it samples.

TensorFlow is imported when a decoder is converted, not with this module.

Example:
>>> data = convert_full_int8(vae, prior)  # doctest: +SKIP
>>> open("decoder_full_int8.tflite", "wb").write(data)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import tempfile

import numpy as np

from tfvae.export import layout
from tfvae.export.convert import convert

__all__ = ["CALIBRATION_LATENTS", "CALIBRATION_SEED", "FULL_INT8_BATCH", "calibration_latents", "convert_full_int8",
           "describe_full_int8", "with_fine_logits"]

# 500 z ~ p(z) calibrate the int8 ranges: past a few hundred the ranges (min and max per tensor) hardly move,
# and conversion stays a few seconds; 100 already gave a 2-epoch classic decoder within 0.0012 of float32.
CALIBRATION_LATENTS = 500
CALIBRATION_SEED = 0  # the same calibration latents for every export of a given prior
FULL_INT8_BATCH = 1  # z per invoke: TFLM's static shapes


def calibration_latents(prior, n: int = CALIBRATION_LATENTS, seed: int = CALIBRATION_SEED, classes: int = 0):
    """n latents z ~ p(z) from `prior` (a tfvae.mixture.Mixture), seeded: (n, D) float32; for a conditional model
    (`classes` N > 0), (z ~ p(z|y), y) with y (n,) int32 drawn uniformly from 0..N-1."""
    rng = np.random.default_rng(seed)
    if not classes:
        return prior.sample(rng, n)
    labels = rng.integers(classes, size=n).astype(np.int32)
    return prior.sample_given(rng, labels), labels


def convert_full_int8(vae, prior, n: int = CALIBRATION_LATENTS, seed: int = CALIBRATION_SEED) -> bytes:
    """The flatbuffer of `vae`'s `decode` signature without `probs`: int8 weights and activations, batch 1, float32
    in and out.

    Args:
      vae: a built tfvae VAE.
      prior: its prior as a `Mixture` (`Mixture(*vae.prior_mixture())`), which the calibration latents come from.
      n: how many calibration latents.
      seed: seeds their draw.
    """
    import tensorflow as tf

    from tfvae.export.savedmodel import VAESignatures

    module = VAESignatures(vae, batch_size=FULL_INT8_BATCH)
    z_spec = tf.TensorSpec([FULL_INT8_BATCH, module.latent_dim], tf.float32, name=layout.Z)
    if module.classes:  # a conditional decoder also takes label (1,) int32, and is calibrated on every class
        latents, labels = calibration_latents(prior, n, seed, len(module.classes))
        inputs = [{layout.Z: latents[row : row + 1], layout.LABEL: labels[row : row + 1]} for row in range(n)]

        @tf.function(input_signature=[z_spec, tf.TensorSpec([FULL_INT8_BATCH], tf.int32, name=layout.LABEL)])
        def decode(z, label):
            return {name: t for name, t in module.decode(z, label).items() if name != layout.PROBS}
    else:
        latents = calibration_latents(prior, n, seed)  # (n, D)
        inputs = [{layout.Z: latents[row : row + 1]} for row in range(n)]

        @tf.function(input_signature=[z_spec])
        def decode(z):
            outputs = module.decode(z)  # probs, logits [, mean], each (1, H, W, C)
            return {name: tensor for name, tensor in outputs.items() if name != layout.PROBS}

    module.decode_without_probs = decode

    def representative_dataset():
        yield from inputs

    with tempfile.TemporaryDirectory(prefix="tfvae-full-int8-") as saved_model_dir:
        tf.saved_model.save(module, saved_model_dir, signatures={layout.DECODE: decode.get_concrete_function()})
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[layout.DECODE])
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        # Integer kernels only (no float fallback); the QUANTIZE and DEQUANTIZE at the ends are int8 builtins too.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # One scale per dense weight matrix, not one per output unit: TFLM keeps an int32 zero point and a
        # multiplier per channel in the arena: 29 KB of the `best` decoder's 66 KB (its 500 -> 3136 layer); and
        # per-channel scales bought no accuracy there (mean |probs - float32| 0.00394 against 0.00393). Convolutions
        # stay per channel. (TFLiteConverter's own switch, not yet public: a converter without it ignores it.)
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True  # noqa: SLF001
        data = convert(converter)  # an op outside the builtins: one line naming it and its layer
    return with_fine_logits(data)


# The ops between the last weighted layer and the logits output that `with_fine_logits` copies.
_WEIGHTED = ("FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_2D")
_PASSING = ("RESHAPE", "DEQUANTIZE")


def with_fine_logits(data: bytes) -> bytes:
    """The full-int8 flatbuffer `data` with a second logits output, `logits_fine`: the last weighted layer (and the
    RESHAPE and DEQUANTIZE after it) once more, on the same int8 weights and bias, into an int8 tensor of step
    FINE_LOGITS_RANGE / 127 (zero point 0) instead of the calibrated step of the whole logit range.

    Why: TFLM requantizes in fixed point with two roundings (a value just below k + 1/2 steps can become k + 1),
    LiteRT's XNNPACK rounds exactly once, so they disagree by one int8 step on 0.2-0.5 % of a layer's outputs;
    with logits spanning 40 to 80, one step (0.15 to 0.33) moves p by up to 0.04 to 0.08 near p = 1/2. Read where not saturated (tfvae.export.litert.fine_logits), the fine step (0.031) bounds a
    one-step disagreement to 0.008 in p; outside [-4, 4], where sigmoid' < 0.018, the wide step is used. No weights
    are added (both layers read the same buffers); the arena grows by one int8 and one float32 image. A graph
    without that shape (no weighted layer before the logits) is returned unchanged.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    subgraph, signature = model.subgraphs[0], model.signatureDefs[0]
    codes = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    op_name = lambda op: codes[max(model.operatorCodes[op.opcodeIndex].builtinCode,  # noqa: E731
                                   model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode)]
    produced_by = {int(t): op for op in subgraph.operators for t in op.outputs}
    outputs = {t.name.decode(): int(t.tensorIndex) for t in signature.outputs}
    if layout.LOGITS not in outputs or layout.LOGITS_FINE in outputs:
        return data
    chain, tensor = [], outputs[layout.LOGITS]  # from the logits output back to the last weighted layer
    while tensor in produced_by and op_name(produced_by[tensor]) in _PASSING + _WEIGHTED:
        op = produced_by[tensor]
        chain.insert(0, op)
        if op_name(op) in _WEIGHTED:
            break
        tensor = int(op.inputs[0])
    if not chain or op_name(chain[0]) not in _WEIGHTED or op_name(chain[-1]) != "DEQUANTIZE":
        return data
    copies = {}  # tensor index in the chain -> its fine copy
    for op in chain:
        twin = copy.deepcopy(op)
        twin.inputs = [copies.get(int(t), int(t)) for t in op.inputs]
        twin.outputs = []
        for t in op.outputs:
            fine = copy.deepcopy(subgraph.tensors[int(t)])
            fine.name = fine.name + b"_fine"
            if fine.type == schema.TensorType.INT8:
                fine.quantization.scale = [layout.FINE_LOGITS_RANGE / 127]
                fine.quantization.zeroPoint = [0]
            subgraph.tensors.append(fine)
            copies[int(t)] = len(subgraph.tensors) - 1
            twin.outputs.append(copies[int(t)])
        subgraph.operators.append(twin)
    fine_output = copies[outputs[layout.LOGITS]]
    subgraph.outputs = [*map(int, subgraph.outputs), fine_output]
    entry = schema.TensorMapT()
    entry.name, entry.tensorIndex = layout.LOGITS_FINE.encode(), fine_output
    signature.outputs = [*signature.outputs, entry]
    return flatbuffer_utils.convert_object_to_bytearray(model)


def describe_full_int8(path: str, n: int = CALIBRATION_LATENTS, seed: int = CALIBRATION_SEED) -> dict:
    """The manifest entry of a full-int8 decoder: its types, its ops and the int8 step of each output."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    runner = interpreter.get_signature_runner(layout.DECODE)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()  # noqa: SLF001 (LiteRT's only listing of a model's ops)
    feeding = {int(op["outputs"][0]): int(op["inputs"][0]) for op in ops if op["op_name"] == "DEQUANTIZE"}
    outputs = {}
    for name, details in sorted(runner.get_output_details().items()):
        integer = tensors.get(feeding.get(details["index"], -1))
        scale, zero_point = integer["quantization"] if integer else (0.0, 0)
        outputs[name] = {"dtype": np.dtype(details["dtype"]).name, "int8_scale": float(scale),
                         "int8_zero_point": int(zero_point)}
    fine = {"fine_logits_range": layout.FINE_LOGITS_RANGE} if layout.LOGITS_FINE in outputs else {}
    return {
        "inputs": {name: np.dtype(d["dtype"]).name for name, d in runner.get_input_details().items()},
        "outputs": outputs,
        **fine,
        "batch": FULL_INT8_BATCH,
        "body": "int8 weights and activations (TFLITE_BUILTINS_INT8); float32 z in, float32 outputs out: "
                "value = (int8 - zero_point) * scale",
        "calibration": f"{n} latents z ~ p(z) from the model's prior (prior.npz), numpy.random.default_rng({seed})",
        "ops": sorted({op["op_name"] for op in ops}),
    }
