"""What an export directory holds, by name. No TensorFlow: the exporter and the on-device sampler share it.

    OUT/
      saved_model/              signatures `decode` and `encode` (and `encode_sample`), tensors in, tensors out
      prior.npz                 p(z) as a mixture of diagonal Gaussians: logits (K,), loc (K, D), scale (K, D)
                                (N(0, I): one component, loc 0, scale 1; tfvae.mixture reads it)
      decoder.tflite            `decode`, float32               (with --tflite)
      encoder.tflite            `encode` (and `encode_sample`), float32   (with --tflite)
      decoder_float16.tflite    `decode`, float16 weights       (with --quantize float16)
      decoder_int8.tflite       `decode`, int8 dynamic-range    (with --quantize int8)
      decoder_full_int8.tflite  `decode` without probs, batch 1, float32 in and out around an int8 body
                                (with --quantize full_int8; readers compute probs = sigmoid(logits))
      micro/                    decoder_full_int8.tflite for TFLite for Microcontrollers  (with --micro)
        decoder_model_data.cc, decoder_model_data.h   the model as a 16-byte-aligned C array, its length, its arena
        README.md               the C++ that runs it (the op resolver with exactly its ops)
      web/                      a static page that samples in the browser with LiteRT.js  (with --web)
        index.html, tfvae.js, random.js, style.css   the page (plain ES modules, no bundler)
        tfvae.json              what the page needs: D, the batch, the prior (from prior.npz), the decoders
        decoder.tflite          `decode`, float32, batch fixed at WEB_BATCH
        decoder_int8.tflite     `decode`, int8 dynamic-range, batch fixed at WEB_BATCH
        litertjs/               the LiteRT.js runtime, its WebAssembly builds and its LICENSE
      manifest.json             shapes, file sizes and sha256, parity and quantization cost; written last

Signatures (batch size N is dynamic, except in web/ where it is WEB_BATCH; D is the latent dimension;
(H, W, C) is the run's image shape, recorded in manifest.json and readable from every file):

    decode:  z (N, D) float32                        -> probs, logits (N, H, W, C) float32
                                                        [+ mean (N, H, W, C): continuous-Bernoulli decoders only]
    encode:  x (N, H, W, C) float32 in [0, 1]        -> loc, scale (N, D) float32
             the Gaussian N(loc, diag scale^2): q(z|x) itself, or the base of a flow posterior
    encode_sample (only for a flow posterior, --posterior iaf):
             x (N, H, W, C), eps (N, D) float32      -> z (N, D), log_q (N,) float32
             z = flow(loc + scale * eps | x) ~ q(z|x) for eps ~ N(0, I), and log q(z|x) of that z

A conditional model's (tfvae train --condition label) `decode` and `encode` also take `label` (N,) int32, the
class index of each row, one-hot encoded inside the graph (ONE_HOT, a builtin op); manifest.json lists
"classes" (names, by index) and "condition": "label".

A decoder whose `decode` also returns `mean` is a continuous-Bernoulli decoder: its samples are shown as
that mean, E[x|z], computed in the graph; a Bernoulli decoder's mean is `probs`.
"""

from __future__ import annotations

from tfvae.runs import EXPORT_DIR

__all__ = [
    "DECODE",
    "ENCODE",
    "ENCODE_SAMPLE",
    "EPS",
    "LOG_Q",
    "ENCODE_SAMPLE_OUTPUTS",
    "PRIOR_FILE",
    "Z",
    "X",
    "LABEL",
    "CONDITION_LABEL",
    "PRIOR_CLASS_CONDITIONAL",
    "PROBS",
    "LOGITS",
    "LOGITS_FINE",
    "FINE_LOGITS_RANGE",
    "MEAN",
    "LOC",
    "SCALE",
    "DECODE_OUTPUTS",
    "decoder_likelihood",
    "ENCODE_OUTPUTS",
    "SAVED_MODEL_DIR",
    "DECODER_FILE",
    "ENCODER_FILE",
    "QUANTIZED_DECODER_FILES",
    "QUANTIZATIONS",
    "MANIFEST_FILE",
    "MANIFEST_VERSION",
    "DEFAULT_EXPORT_DIR",
    "WEB_DIR",
    "WEB_BATCH",
    "WEB_MODEL_FILES",
    "WEB_MODELS",
    "WEB_CONFIG_FILE",
    "WEB_PAGE_FILES",
    "WEB_RUNTIME_DIR",
    "MICRO_DIR",
    "MICRO_SOURCE",
    "MICRO_HEADER",
    "MICRO_README",
    "DEFAULT_EVAL_IMAGES",
    "DEFAULT_IMPORTANCE_SAMPLES",
    "EVAL_SPLIT",
    "EVAL_SUBSET_SEED",
]

# Signature keys, the same in the SavedModel and in each .tflite file.
DECODE = "decode"
ENCODE = "encode"
ENCODE_SAMPLE = "encode_sample"  # flow posteriors only

# Input and output names of the signatures.
Z = "z"  # (N, D) latent
X = "x"  # (N, H, W, C) image: binary (Bernoulli) or grey levels (continuous Bernoulli)
LABEL = "label"  # (N,) int32 class index of a conditional model's decode and encode; the one-hot is made in the graph
PROBS = "probs"  # (N, H, W, C) sigmoid(logits): the Bernoulli means, or the continuous Bernoulli's parameter
LOGITS = "logits"  # (N, H, W, C)
MEAN = "mean"  # (N, H, W, C) E[x|z] of a continuous-Bernoulli decoder; absent from Bernoulli decoders
# decoder_full_int8.tflite only: the logits once more at a finer int8 step, FINE_LOGITS_RANGE / 127, saturating
# outside [-FINE_LOGITS_RANGE, FINE_LOGITS_RANGE]; readers take it where it is inside, `logits` elsewhere
# (tfvae.export.litert.with_probs). It keeps the runtimes' one-step disagreements small where p is near 1/2.
LOGITS_FINE = "logits_fine"
FINE_LOGITS_RANGE = 4.0
LOC = "loc"  # (N, D) posterior mean
SCALE = "scale"  # (N, D) posterior standard deviation
EPS = "eps"  # (N, D) noise ~ N(0, I), input of encode_sample
LOG_Q = "log_q"  # (N,) log q(z|x) of encode_sample's z
DECODE_OUTPUTS = (PROBS, LOGITS)  # every decoder; MEAN too for a continuous-Bernoulli one
ENCODE_OUTPUTS = (LOC, SCALE)
ENCODE_SAMPLE_OUTPUTS = (Z, LOG_Q)

# Files and folders inside an export directory.
SAVED_MODEL_DIR = "saved_model"
DECODER_FILE = "decoder.tflite"
ENCODER_FILE = "encoder.tflite"
PRIOR_FILE = "prior.npz"  # arrays logits, loc, scale (tfvae.mixture.ARRAYS), read with allow_pickle=False
# prior.npz of a conditional model with a per-class prior: this scalar array is 1 and component k is p(z|y = k)
# (absent, as in every older file: the components are a mixture over z alone; tfvae.mixture reads both)
PRIOR_CLASS_CONDITIONAL = "class_conditional"
QUANTIZED_DECODER_FILES = {
    "float16": "decoder_float16.tflite",  # weights stored as float16, computed in float32
    "int8": "decoder_int8.tflite",  # dynamic-range: int8 weights, float32 activations
    # full-integer: int8 weights and activations, float32 z in and outputs out, batch 1 (TFLM and NPUs)
    "full_int8": "decoder_full_int8.tflite",
}
QUANTIZATIONS = tuple(QUANTIZED_DECODER_FILES)
MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1  # format of manifest.json
CONDITION_LABEL = "label"  # manifest.json's "condition" of a conditional export, beside "classes" (names, by index)

DEFAULT_EXPORT_DIR = EXPORT_DIR  # `tfvae export` writes to RUN_DIR/export unless --out is given

# The quantization cost (manifest.json's "quantization") is measured on DEFAULT_EVAL_IMAGES test images with
# K = DEFAULT_IMPORTANCE_SAMPLES each: a subset, stated as such in the manifest (the full test set with K = 5000
# is `tfvae evaluate`). Every decoder sees the same images and the same z as the Keras reference, so the change
# is a paired difference whose standard error (in the manifest) is small on few images: 100 images at K = 100
# measure a conv int8 decoder's change to ±0.009 nats (float16's to ±0.0003) in a twentieth of the time of the
# 500 x 200 that exports used before (BENCHMARKS.md, "Export cost"). Here, not in the exporter, so that
# `tfvae export -h` shows them without TensorFlow.
DEFAULT_EVAL_IMAGES = 100
DEFAULT_IMPORTANCE_SAMPLES = 100
EVAL_SPLIT = "test"  # the split a run's (or a --dataset's) cost is measured on
EVAL_SUBSET_SEED = 0  # picks the subset: the same images for every export

# The web page (`tfvae export --web`), inside OUT/WEB_DIR.
WEB_DIR = "web"
# LiteRT.js refuses an input whose batch dimension is dynamic, so the web decoders take exactly this many z:
# the page's 8 x 8 grid. The interpolation strip and the manifold are padded to it.
WEB_BATCH = 64
WEB_MODEL_FILES = {
    "float32": "decoder.tflite",
    "int8": "decoder_int8.tflite",  # dynamic-range: int8 weights, float32 activations
}
WEB_MODELS = tuple(WEB_MODEL_FILES)
WEB_CONFIG_FILE = "tfvae.json"  # read by the page: latent_dim, batch, prior, decoders
WEB_PAGE_FILES = ("index.html", "tfvae.js", "random.js", "style.css")
WEB_RUNTIME_DIR = "litertjs"

# TFLite for Microcontrollers (`tfvae export --micro`), inside OUT/MICRO_DIR: decoder_full_int8.tflite as C.
MICRO_DIR = "micro"
MICRO_SOURCE = "decoder_model_data.cc"  # g_decoder_model_data[], 16-byte aligned
MICRO_HEADER = "decoder_model_data.h"  # its length and kTensorArenaSize, the measured arena
MICRO_README = "README.md"  # the C++ that runs it with TFLM


def decoder_likelihood(output_names) -> str:
    """The likelihood a `decode` signature's outputs stand for: a MEAN output marks a continuous Bernoulli."""
    return "continuous_bernoulli" if MEAN in output_names else "bernoulli"
