"""A tfvae decoder on a microcontroller: TFLite for Microcontrollers (TFLM), its arena, and the model as a C array.

No TensorFlow here: the TFLM runtime needs numpy and the `tflite-micro` package
(`pip install "tfvae[micro]"`), imported only when a decoder is opened or
measured. The C files are plain text written from the model's bytes.

    MicroDecoder        z (N, D) -> probs, logits [, mean] (N, H, W, C), one image per invoke (TFLM's batch is 1)
    model_ops           the builtin ops a .tflite file uses: what the C++ op resolver must register
    measure_arena       the smallest tensor arena (bytes) in which TFLM allocates and runs the model
    write_micro         OUT/micro/: decoder_model_data.cc and .h (the model, 16-byte aligned), README.md

TFLM has no signatures and no dynamic shapes: the decoder it runs has a fixed
batch of 1 (`decoder_full_int8.tflite` is converted that way), and its outputs
are matched to the names of the `decode` signature stored in the file.

Example:
>>> decoder = MicroDecoder("runs/x/export/decoder_full_int8.tflite")  # doctest: +SKIP
>>> decoder.decode(np.zeros((4, decoder.latent_dim), np.float32))["probs"].shape  # doctest: +SKIP
(4, 28, 28, 1)
"""

from __future__ import annotations

import contextlib
import os
import tempfile

import numpy as np

from tfvae.errors import ModelFileError, TfvaeError
from tfvae.export import layout
from tfvae.export.litert import with_probs

__all__ = ["MicroDecoder", "require_tflm", "model_ops", "measure_arena", "write_micro", "MICRO_INSTALL", "ALIGNMENT", "AMPLE_ARENA"]

MICRO_INSTALL = 'pip install "tfvae[micro]"'  # the extra that brings the TFLM Python interpreter (tflite-micro)
ALIGNMENT = 16  # bytes: the model array's alignment, and the arena's granularity
AMPLE_ARENA = 1024 * 1024  # bytes: measure_arena's first run, at least; then TFLM's record says what it used
# TFLM's kernels that take a float input with int8 weights do not exist: a dynamic-range ("hybrid") model.
_WEIGHTED_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV")


def _tflm():
    """The TFLM runtime module and the flatbuffer schema, or one line telling how to install them."""
    try:
        from tflite_micro.python.tflite_micro import runtime
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema
    except ImportError:
        raise TfvaeError(
            f"TFLite for Microcontrollers needs its Python interpreter, the tflite-micro package: {MICRO_INSTALL}"
        ) from None
    return runtime, schema


def require_tflm() -> None:
    """Fail now, in one line, if the TFLM Python interpreter is not installed (before any slow work)."""
    _tflm()


def _read_model(path: str):
    """(bytes, ModelT) of the .tflite at `path`, or a ModelFileError."""
    from tfvae.export.litert import TFLITE_IDENTIFIER

    if not os.path.isfile(path):
        raise ModelFileError(f"model file {path} does not exist" if not os.path.exists(path) else f"{path} is not a file")
    with open(path, "rb") as f:
        data = f.read()
    if data[4:8] != TFLITE_IDENTIFIER:
        raise ModelFileError(f"{path} is not a TFLite model (no TFL3 identifier); pass a decoder .tflite written by tfvae export")
    _, schema = _tflm()
    try:
        return data, schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    except Exception as e:  # a corrupt flatbuffer raises anything from struct.error to IndexError
        raise ModelFileError(f"{path} is not a valid TFLite model: {type(e).__name__}") from None


def _op_names(model) -> list:
    """The builtin name of each operator code of `model` (a ModelT), in the file's order."""
    runtime, schema = _tflm()
    names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    return [names.get(runtime.get_builtin_code_from_operator_code(code), "CUSTOM") for code in model.operatorCodes]


def model_ops(path: str) -> list:
    """The sorted builtin op names the model at `path` uses (e.g. ["DEQUANTIZE", "FULLY_CONNECTED", ...])."""
    _, model = _read_model(path)
    return sorted(set(_op_names(model)))


def _hybrid_op(model) -> str | None:
    """The first op that takes float activations with int8 weights (a dynamic-range model), or None."""
    _, schema = _tflm()
    names = _op_names(model)
    for subgraph in model.subgraphs:
        tensors = subgraph.tensors
        for op in subgraph.operators or ():
            inputs = [i for i in op.inputs if i >= 0]
            if names[op.opcodeIndex] in _WEIGHTED_OPS and len(inputs) >= 2:
                if (tensors[inputs[0]].type == schema.TensorType.FLOAT32
                        and tensors[inputs[1]].type == schema.TensorType.INT8):
                    return names[op.opcodeIndex]
    return None


@contextlib.contextmanager
def _stderr_captured():
    """Yields a list that receives what native code wrote to file descriptor 2 meanwhile (TFLM logs its errors there)."""
    lines = []
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode("utf-8", "replace").splitlines())


def _reason(lines) -> str:
    """One line out of TFLM's log: the missing op, or its first error."""
    for line in lines:
        if line.startswith("Didn't find op for builtin opcode"):
            return f"it uses the op {line.split()[-1]}, which TFLM does not have"
    for line in lines:
        if "not supported" in line or "failed to prepare" in line:
            return line.strip()
    return next((line.strip() for line in lines if line.strip()), "TFLM could not allocate it")


def _interpreter(data: bytes, arena_size: int):
    """A TFLM interpreter over `data` with `arena_size` bytes, or RuntimeError whose message is TFLM's reason."""
    runtime, _ = _tflm()
    with _stderr_captured() as lines:
        try:
            return runtime.Interpreter.from_bytes(data, arena_size=arena_size)
        except RuntimeError:
            pass
    raise RuntimeError(_reason(lines))


def _check_micro(path: str, model) -> None:
    """Refuse, in one line, a model TFLM cannot run whatever its arena: a hybrid model, or a dynamic batch."""
    op = _hybrid_op(model)
    if op is not None:
        raise ModelFileError(
            f"{path} is a dynamic-range (hybrid) model, float activations with int8 weights in {op}, which TFLM "
            f"does not run; use {layout.DECODER_FILE} or {layout.QUANTIZED_DECODER_FILES['full_int8']} "
            "(tfvae export --quantize full_int8)"
        )


def _invoke_once(interpreter, inputs) -> None:
    for index, value in enumerate(inputs):
        interpreter.set_input(value, index)
    interpreter.invoke()


def _zero_inputs(interpreter, count: int) -> list:
    details = [interpreter.get_input_details(i) for i in range(count)]
    return [np.zeros(d["shape"], d["dtype"]) for d in details]


def measure_arena(path: str) -> int:
    """The smallest arena, in bytes, in which TFLM allocates the model at `path` and runs it.

    Read from TFLM's own allocation record (its RecordingMicroAllocator, after
    one invoke in an ample arena), then confirmed: a fresh TFLM interpreter, in a
    child process, allocates and invokes the model in exactly that many bytes.
    (A child, because TFLM's Python interpreter can crash outright, not fail,
    in an arena a little too small.) Measured on this machine, with 64-bit
    pointers: a 32-bit microcontroller needs at most this much.

    Raises:
      ModelFileError: TFLM cannot run the model (a hybrid model, an op TFLM lacks), one line.
    """
    data, model = _read_model(path)
    _check_micro(path, model)
    inputs = len(model.subgraphs[0].inputs)
    ample = max(AMPLE_ARENA, 10 * len(data))  # TFLM's own default guess is 10x the model
    try:
        interpreter = _interpreter(data, ample)
    except RuntimeError as e:
        raise ModelFileError(f"TFLM cannot run {path}: {e}") from None
    _invoke_once(interpreter, _zero_inputs(interpreter, inputs))
    with _stderr_captured() as lines:
        interpreter.print_allocations()
    totals = [int(line.split()[-2]) for line in lines if "Arena allocation total" in line]
    if not totals:
        raise ModelFileError(f"TFLM did not report the arena {path} needs ({lines[:1]})")
    arena = -(-totals[0] // ALIGNMENT) * ALIGNMENT
    while not _runs_in_child(path, arena):  # never seen: the record is exact; step up rather than guess
        if arena >= ample:
            raise ModelFileError(f"TFLM cannot run {path} in a {arena:,}-byte arena")
        arena = min(ample, arena + max(ALIGNMENT, arena // 64 // ALIGNMENT * ALIGNMENT))
    return arena


_CHILD_RUN = """
import sys, numpy as np
from tflite_micro.python.tflite_micro import runtime
m = runtime.Interpreter.from_file(sys.argv[1], arena_size=int(sys.argv[2]))
for i in range(int(sys.argv[3])):
    d = m.get_input_details(i)
    m.set_input(np.zeros(d["shape"], d["dtype"]), i)
m.invoke()
"""


def _runs_in_child(path: str, arena_size: int) -> bool:
    """Whether a fresh TFLM interpreter in a child process allocates and invokes the model in `arena_size` bytes."""
    import subprocess
    import sys

    _, model = _read_model(path)
    command = [sys.executable, "-c", _CHILD_RUN, path, str(arena_size), str(len(model.subgraphs[0].inputs))]
    return subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


class MicroDecoder:
    """A tfvae decoder `.tflite` run by the TFLM interpreter: z (N, D) -> probs and logits [and mean] (N, H, W, C).

    TFLM runs one image per invoke, as a microcontroller does; the outputs are
    found by the names of the file's `decode` signature.

    Args:
      path: a decoder .tflite with batch 1 and builtin ops TFLM has, such as
        decoder_full_int8.tflite (float32 in and out around an int8 body).
      arena_size: the tensor arena in bytes; None: measure it (`measure_arena`).

    Raises:
      TfvaeError: tflite-micro is not installed (one line: how to install it).
      ModelFileError: not a tfvae decoder, or one TFLM cannot run (hybrid, an op TFLM lacks), one line.
    """

    def __init__(self, path: str, arena_size: int | None = None):
        self.path = path
        data, model = _read_model(path)
        _check_micro(path, model)
        signatures = {s.signatureKey.decode(): s for s in model.signatureDefs or ()}
        if layout.DECODE not in signatures:
            found = ", ".join(sorted(signatures)) or "none"
            raise ModelFileError(f"{path} has no '{layout.DECODE}' signature (it has: {found}); it is not a tfvae decoder")
        signature, subgraph = signatures[layout.DECODE], model.subgraphs[0]
        inputs = {t.name.decode(): t.tensorIndex for t in signature.inputs}
        outputs = {t.name.decode(): t.tensorIndex for t in signature.outputs}
        if layout.LABEL in inputs:
            raise ModelFileError(
                f"{path} is a conditional decoder (it takes '{layout.LABEL}'); --runtime micro runs unconditional "
                "decoders only (its label's ONE_HOT is not a TFLM op): sample it with LiteRT, without --runtime micro"
            )
        if set(inputs) != {layout.Z} or layout.LOGITS not in outputs:
            raise ModelFileError(f"{path} is not a tfvae decoder: 'decode' maps {sorted(inputs)} to {sorted(outputs)}")
        # decoder_full_int8.tflite leaves probs to the host: p = sigmoid(logits), computed in `decode`.
        self.outputs = tuple(name for name in (*layout.DECODE_OUTPUTS, layout.MEAN) if name in outputs or name == layout.PROBS)
        self._output_index = {name: list(subgraph.outputs).index(index) for name, index in outputs.items()
                              if name in self.outputs or name == layout.LOGITS_FINE}
        z_shape = [int(d) for d in subgraph.tensors[inputs[layout.Z]].shape]
        image_shape = [int(d) for d in subgraph.tensors[outputs[layout.LOGITS]].shape]
        if len(z_shape) != 2 or z_shape[0] != 1 or len(image_shape) != 4:
            raise ModelFileError(
                f"{path} takes z of shape {z_shape}: TFLM runs one image per invoke, so the decoder needs a batch "
                f"of 1, as {layout.QUANTIZED_DECODER_FILES['full_int8']} has"
            )
        self.latent_dim = int(z_shape[1])
        self.image_shape = tuple(int(d) for d in image_shape[1:])
        self.likelihood = layout.decoder_likelihood(self.outputs)
        self.arena_size = measure_arena(path) if arena_size is None else int(arena_size)
        try:
            self._interpreter = _interpreter(data, self.arena_size)
        except RuntimeError as e:
            raise ModelFileError(f"TFLM cannot run {path} in a {self.arena_size:,}-byte arena: {e}") from None
        self._z = self._interpreter.get_input_details(0)

    def decode(self, z) -> dict:
        """z (N, D) -> {"probs", "logits"[, "mean"]}, each (N, H, W, C) float32 NumPy arrays, one invoke per row."""
        z = np.ascontiguousarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must have shape (N, {self.latent_dim}), got {z.shape}")
        decoded = {name: np.zeros((len(z), *self.image_shape), np.float32) for name in self._output_index}
        for row in range(len(z)):
            _invoke_once(self._interpreter, [_quantize(z[row : row + 1], self._z)])
            for name, index in self._output_index.items():
                details = self._interpreter.get_output_details(index)
                decoded[name][row] = _dequantize(self._interpreter.get_output(index), details)[0]
        return with_probs(decoded)

    def decode_logits(self, z) -> np.ndarray:
        """z (N, D) -> logits (N, H, W, C)."""
        return self.decode(z)[layout.LOGITS]

    def __repr__(self):
        return f"MicroDecoder({self.path!r}, latent_dim={self.latent_dim}, arena_size={self.arena_size})"


def _quantize(values: np.ndarray, details) -> np.ndarray:
    """Float values as the tensor's type: unchanged for float32, else round(x / scale) + zero point."""
    dtype = np.dtype(details["dtype"])
    if dtype == np.float32:
        return values.astype(np.float32)
    q = details["quantization_parameters"]
    info = np.iinfo(dtype)
    return np.clip(np.round(values / q["scales"][0]) + q["zero_points"][0], info.min, info.max).astype(dtype)


def _dequantize(values: np.ndarray, details) -> np.ndarray:
    """A tensor's values as float32: (q - zero point) * scale for an integer tensor."""
    if np.dtype(details["dtype"]) == np.float32:
        return values
    q = details["quantization_parameters"]
    return ((values.astype(np.float32) - q["zero_points"][0]) * q["scales"][0]).astype(np.float32)


# --------------------------------------------------------------------------- OUT/micro


def c_array(data: bytes, name: str) -> str:
    """The C++ definition of `data` as an ALIGNMENT-byte-aligned `const unsigned char name[]`, 12 bytes a line."""
    lines = [", ".join(f"0x{b:02x}" for b in data[i : i + 12]) for i in range(0, len(data), 12)]
    body = ",\n    ".join(lines)
    return f"alignas({ALIGNMENT}) const unsigned char {name}[] = {{\n    {body}\n}};\n"


_HEADER = """\
// The tfvae decoder {model} for TensorFlow Lite for Microcontrollers, written by `tfvae export --micro`.
// decode: z (1, {latent_dim}) float32 -> {outputs}, each (1, {image}) float32; p(x = 1 | z) = sigmoid(logits).
#ifndef TFVAE_DECODER_MODEL_DATA_H_
#define TFVAE_DECODER_MODEL_DATA_H_

extern const unsigned char g_decoder_model_data[];  // the .tflite flatbuffer, {alignment}-byte aligned: keep it in flash
constexpr unsigned int g_decoder_model_data_len = {length};  // bytes
constexpr unsigned int kTensorArenaSize = {arena};  // bytes, measured with the TFLM interpreter: {arena_note}

#endif  // TFVAE_DECODER_MODEL_DATA_H_
"""

_README = """\
# {model} on a microcontroller

`decoder_model_data.cc` holds `{model}` ({length:,} bytes of flash) as `g_decoder_model_data`;
`decoder_model_data.h` declares it with its length and `kTensorArenaSize` = {arena:,} bytes of RAM,
the smallest arena in which TensorFlow Lite for Microcontrollers ran it ({arena_note}).

The decoder maps z (1, {latent_dim}) float32 to {outputs} (1, {image}) float32 (outputs in this order); its
body is int8. The Bernoulli probabilities are p = 1 / (1 + exp(-logits)), computed by the host. Draw z from the prior in `../prior.npz` (for N(0, I): z = standard normals).
With TFLM (https://github.com/tensorflow/tflite-micro):

```c++
#include "decoder_model_data.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

alignas(16) static uint8_t tensor_arena[kTensorArenaSize];

const tflite::Model* model = tflite::GetModel(g_decoder_model_data);
static tflite::MicroMutableOpResolver<{op_count}> resolver;  // exactly the ops the model uses
{registrations}
static tflite::MicroInterpreter interpreter(model, resolver, tensor_arena, kTensorArenaSize);
interpreter.AllocateTensors();
float* z = interpreter.input(0)->data.f;  // fill with {latent_dim} floats
interpreter.Invoke();
const float* logits = interpreter.output({logits_index})->data.f;  // p(x = 1 | z) = 1 / (1 + exp(-logits)){fine_lines}
```
"""

# decoder_full_int8.tflite's logits_fine: the logits at a finer int8 step inside [-FINE_LOGITS_RANGE, FINE_LOGITS_RANGE]
_FINE_LINES = """
const float* logits_fine = interpreter.output({fine_index})->data.f;  // the logits at a {range:g}/127 step in [-{range:g}, {range:g}]
// pixel k: float l = fabsf(logits_fine[k]) < {edge:.4f}f ? logits_fine[k] : logits[k];  p = 1 / (1 + expf(-l))"""


def _registration(op: str) -> str:
    """`resolver.AddFullyConnected();` for FULLY_CONNECTED: TFLM's method names are the ops in CamelCase."""
    return "resolver.Add" + "".join(part.capitalize() for part in op.split("_")) + "();"


def write_micro(path: str, directory: str, arena_size: int, ops, decoder) -> dict:
    """Write DIRECTORY/decoder_model_data.cc, .h and README.md for the model at `path`; return the manifest entry.

    Args:
      path: the decoder .tflite to embed.
      directory: OUT/micro, created if missing.
      arena_size: bytes, from `measure_arena`.
      ops: the model's builtin ops, from `model_ops`.
      decoder: the MicroDecoder of `path` (its shapes and output order).
    """
    with open(path, "rb") as f:
        data = f.read()
    os.makedirs(directory, exist_ok=True)
    model = os.path.basename(path)
    order = sorted(decoder._output_index, key=decoder._output_index.get)
    fields = dict(
        model=model, length=len(data), arena=arena_size, alignment=ALIGNMENT, latent_dim=decoder.latent_dim,
        image=", ".join(map(str, decoder.image_shape)), outputs=", ".join(order),
        arena_note="64-bit host; a 32-bit MCU needs at most this", order=", ".join(order),
        op_count=len(ops), registrations="\n".join(_registration(op) for op in ops),
        logits_index=decoder._output_index[layout.LOGITS], fine_lines="",
    )
    if layout.LOGITS_FINE in decoder._output_index:
        fields["fine_lines"] = _FINE_LINES.format(fine_index=decoder._output_index[layout.LOGITS_FINE],
                                                  range=layout.FINE_LOGITS_RANGE,
                                                  edge=layout.FINE_LOGITS_RANGE * (1 - 0.5 / 127))
    files = {
        layout.MICRO_HEADER: _HEADER.format(**fields),
        layout.MICRO_SOURCE: f'// {model} as a C array, written by `tfvae export --micro`.\n#include "{layout.MICRO_HEADER}"\n\n'
                             + c_array(data, "g_decoder_model_data"),
        layout.MICRO_README: _README.format(**fields),
    }
    for name, text in files.items():
        with open(os.path.join(directory, name), "w", encoding="utf-8") as f:
            f.write(text)
    return {
        "model": model,
        "model_bytes": len(data),
        "arena_bytes": arena_size,
        "arena": "bytes of RAM: TFLM's allocation record after one invoke (RecordingMicroAllocator), confirmed by a "
                 "fresh TFLM Python interpreter that allocates and invokes the model in exactly that many; 64-bit "
                 "host, a 32-bit microcontroller needs at most this",
        "ops": list(ops),
        "outputs": order,
        "files": [f"{layout.MICRO_DIR}/{name}" for name in files],
    }
