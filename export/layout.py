"""What an export directory holds, by name. No TensorFlow: the exporter and the on-device sampler share it.

    OUT/
      saved_model/              signatures `decode` and `encode`, tensors in, tensors out
      decoder.tflite            `decode`, float32               (with --tflite)
      encoder.tflite            `encode`, float32               (with --tflite)
      decoder_float16.tflite    `decode`, float16 weights       (with --quantize float16)
      decoder_int8.tflite       `decode`, int8 dynamic-range    (with --quantize int8)
      manifest.json             shapes, file sizes and sha256, parity and quantization cost; written last

Signatures (batch size N is dynamic, D is the latent dimension):

    decode:  z (N, D) float32                        -> probs, logits (N, 28, 28, 1) float32
    encode:  x (N, 28, 28, 1) float32 in {0, 1}      -> loc, scale (N, D) float32
"""

from __future__ import annotations

from tfvae.runs import EXPORT_DIR

__all__ = [
    "DECODE",
    "ENCODE",
    "Z",
    "X",
    "PROBS",
    "LOGITS",
    "LOC",
    "SCALE",
    "DECODE_OUTPUTS",
    "ENCODE_OUTPUTS",
    "SAVED_MODEL_DIR",
    "DECODER_FILE",
    "ENCODER_FILE",
    "QUANTIZED_DECODER_FILES",
    "QUANTIZATIONS",
    "MANIFEST_FILE",
    "MANIFEST_VERSION",
    "DEFAULT_EXPORT_DIR",
]

# Signature keys, the same in the SavedModel and in each .tflite file.
DECODE = "decode"
ENCODE = "encode"

# Input and output names of the signatures.
Z = "z"  # (N, D) latent
X = "x"  # (N, 28, 28, 1) binary image
PROBS = "probs"  # (N, 28, 28, 1) Bernoulli means, sigmoid(logits)
LOGITS = "logits"  # (N, 28, 28, 1)
LOC = "loc"  # (N, D) posterior mean
SCALE = "scale"  # (N, D) posterior standard deviation
DECODE_OUTPUTS = (PROBS, LOGITS)
ENCODE_OUTPUTS = (LOC, SCALE)

# Files and folders inside an export directory.
SAVED_MODEL_DIR = "saved_model"
DECODER_FILE = "decoder.tflite"
ENCODER_FILE = "encoder.tflite"
QUANTIZED_DECODER_FILES = {
    "float16": "decoder_float16.tflite",  # weights stored as float16, computed in float32
    "int8": "decoder_int8.tflite",  # dynamic-range: int8 weights, float32 activations
}
QUANTIZATIONS = tuple(QUANTIZED_DECODER_FILES)
MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1  # format of manifest.json

DEFAULT_EXPORT_DIR = EXPORT_DIR  # `tfvae export` writes to RUN_DIR/export unless --out is given
