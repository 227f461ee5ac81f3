"""The exported TFLite encoder and decoder, run by the plain LiteRT interpreter: numpy in, numpy out.

Needs numpy and `ai-edge-litert` only; never TensorFlow. A file is checked
when it is opened, so that anything that is not a tfvae model fails with one
clear `ModelFileError` instead of a shape error deep inside the interpreter.

Example:
>>> decoder = TFLiteDecoder("runs/x/export/decoder.tflite", num_threads=1)  # doctest: +SKIP
>>> decoder.decode(np.zeros((4, decoder.latent_dim), np.float32))["probs"].shape  # doctest: +SKIP
(4, 28, 28, 1)

Both read the image shape (H, W, C) from the file, C 1 (grey) or 3 (RGB). A conditional model's files
also take `label` (N,) int32; the decoder reports its class names from the manifest.json (or the web
page's tfvae.json) beside the file, else "0".."N-1" with N read from the graph's one-hot depth.
"""

from __future__ import annotations

import json
import os

import numpy as np

from tfvae.errors import ModelFileError
from tfvae.export import layout

__all__ = ["TFLiteDecoder", "TFLiteEncoder", "TFLITE_IDENTIFIER", "with_probs", "fine_logits", "checked_labels", "classes_beside"]

# Bytes 4..8 of every TFLite flatbuffer (the schema's file_identifier).
TFLITE_IDENTIFIER = b"TFL3"
# (H, W, C) of an image tensor: any known size (None), grey or RGB.
_ANY_IMAGE = (None, None, None)
_CHANNELS = (1, 3)


def _open_signature(path: str, key: str, num_threads, integer_kernels: bool = False):
    """(interpreter, signature runner, input details, output details) of signature `key` in the .tflite at `path`.

    `integer_kernels`: LiteRT's builtin kernels without its default delegate (XNNPACK), which requantize as TFLM
    does (fixed point, rounded twice) where XNNPACK rounds exactly once: what a full-int8 decoder computes on a
    microcontroller, at some speed (BENCHMARKS.md, "The full-int8 decoder under TFLite for Microcontrollers").
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    if not os.path.exists(path):
        raise ModelFileError(f"model file {path} does not exist")
    if not os.path.isfile(path):
        raise ModelFileError(f"{path} is not a file")
    with open(path, "rb") as f:
        head = f.read(8)
    if head[4:8] != TFLITE_IDENTIFIER:
        raise ModelFileError(f"{path} is not a TFLite model (no TFL3 identifier); pass a decoder.tflite written by tfvae export")
    try:
        resolver = (OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES if integer_kernels else OpResolverType.AUTO)
        interpreter = Interpreter(model_path=path, num_threads=num_threads, experimental_op_resolver_type=resolver)
    except (ValueError, RuntimeError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFileError(f"{path} is not a valid TFLite model: {reason[:200]}") from None
    signatures = interpreter.get_signature_list()
    if key not in signatures:
        found = ", ".join(sorted(signatures)) or "none"
        raise ModelFileError(
            f"{path} has no '{key}' signature (it has: {found}); it is not a tfvae {key}r, "
            f"use the {layout.DECODER_FILE if key == layout.DECODE else layout.ENCODER_FILE} of a tfvae export"
        )
    runner = interpreter.get_signature_runner(key)
    return interpreter, runner, runner.get_input_details(), runner.get_output_details()


def _shape(details) -> tuple:
    """The tensor's shape with -1 for dynamic dimensions."""
    return tuple(int(d) for d in details["shape_signature"])


def _image_shape(path, key, details, names, kind) -> tuple:
    """The one (H, W, C) shared by the image tensors `names`, C 1 or 3, or a ModelFileError."""
    shapes = {_check(path, key, details, name, _ANY_IMAGE, kind)[1:] for name in names}
    shape = shapes.pop()
    if shapes or shape[2] not in _CHANNELS:
        raise ModelFileError(
            f"{path} is not a tfvae {key}r: its {kind}s {', '.join(names)} are not (N, H, W, C) images "
            f"of one shape with C 1 or 3"
        )
    return shape


def _check(path, key, details, name, rank_tail, kind):
    """Refuse unless tensor `name` exists, is float32 and has shape (N, *rank_tail); None in rank_tail = any size."""
    if name not in details:
        raise ModelFileError(
            f"{path} is not a tfvae {key}r: its '{key}' signature has {kind}s {sorted(details)}, expected '{name}'"
        )
    shape = _shape(details[name])
    fits = len(shape) == 1 + len(rank_tail) and all(
        want is None and got > 0 or got == want for got, want in zip(shape[1:], rank_tail)
    )
    if not fits or np.dtype(details[name]["dtype"]) != np.float32:
        expected = "(N, " + ", ".join("D" if d is None else str(d) for d in rank_tail) + ") float32"
        raise ModelFileError(
            f"{path} is not a tfvae {key}r: {kind} '{name}' has shape {list(shape)} "
            f"{np.dtype(details[name]['dtype']).name}, expected {expected}"
        )
    return shape


def checked_labels(labels, n: int, classes, where: str) -> np.ndarray | None:
    """A conditional decoder's labels as (n,) int32, or None for an unconditional one (`classes` None).

    Args:
      labels: (n,) integer class indices, or None.
      n: the batch (rows of z).
      classes: the decoder's class names (a sequence, () when their number is unknown), or None: unconditional.
      where: the decoder, for messages.

    Raises:
      ValueError: labels missing for a conditional decoder, given to an unconditional one, of another shape,
        not integers, or outside the classes.
    """
    if classes is None:
        if labels is not None:
            raise ValueError(f"{where} is not a conditional decoder: it takes no labels")
        return None
    if labels is None:
        raise ValueError(f"{where} is a conditional decoder: pass labels, (N,) class indices")
    array = np.asarray(labels)
    if array.shape != (n,) or (array.size and array.dtype.kind not in "iu"):
        raise ValueError(f"labels must be ({n},) integers, one per row of z, got shape {array.shape} {array.dtype}")
    if array.size and (array.min() < 0 or (len(classes) and array.max() >= len(classes))):
        raise ValueError(f"labels must be class indices in 0..{len(classes) - 1 if len(classes) else 'N-1'}, "
                         f"got {int(array.min())}..{int(array.max())}")
    return array.astype(np.int32)


def classes_beside(path: str):
    """The class names listed ("classes") by the manifest.json or tfvae.json in the folder of `path`, or None."""
    folder = os.path.dirname(os.path.abspath(path))
    for name in (layout.MANIFEST_FILE, layout.WEB_CONFIG_FILE):
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                classes = json.load(f).get("classes")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes):
            return tuple(classes)
    return None


def _one_hot_depth(interpreter):
    """N, the depth of the graph's ONE_HOT (a conditional decoder's label encoding), or None if not readable."""
    try:
        for op in interpreter._get_ops_details():  # noqa: SLF001 (LiteRT's only listing of a model's ops)
            if op["op_name"] == "ONE_HOT":
                return int(np.asarray(interpreter.get_tensor(int(op["inputs"][1]))).reshape(()))
    except (ValueError, RuntimeError, KeyError, IndexError, TypeError):
        pass
    return None


def _label_input(path, key, inputs, z_batch, interpreter):
    """The class names of a conditional signature (label (N,) int32 beside z or x), or None without `label`."""
    if layout.LABEL not in inputs:
        return None
    shape = _shape(inputs[layout.LABEL])
    if len(shape) != 1 or shape[0] != z_batch or np.dtype(inputs[layout.LABEL]["dtype"]) != np.int32:
        raise ModelFileError(
            f"{path} is not a tfvae {key}r: input 'label' has shape {list(shape)} "
            f"{np.dtype(inputs[layout.LABEL]['dtype']).name}, expected (N,) int32 with the batch of its other input"
        )
    depth = _one_hot_depth(interpreter)
    names = classes_beside(path)
    if names is not None and (depth is None or depth == len(names)):
        return names
    return tuple(str(k) for k in range(depth)) if depth else ()


def fine_logits(logits, logits_fine):
    """The logits of decoder_full_int8.tflite: `logits_fine` (the finer int8 step) where it is not saturated, |value|
    below FINE_LOGITS_RANGE less half a step, else `logits` (the int8 step that spans every logit)."""
    inside = np.abs(logits_fine) < layout.FINE_LOGITS_RANGE * (1 - 0.5 / 127)
    return np.where(inside, logits_fine, logits).astype(np.float32)


def with_probs(outputs: dict) -> dict:
    """`outputs` with probs = sigmoid(logits) (float32) added if the decoder left it to the host, in signature order;
    a full-int8 decoder's `logits_fine` folded into `logits` (`fine_logits`)."""
    if layout.LOGITS_FINE in outputs:
        outputs[layout.LOGITS] = fine_logits(outputs[layout.LOGITS], outputs.pop(layout.LOGITS_FINE))
    if layout.PROBS not in outputs:
        outputs[layout.PROBS] = (0.5 + 0.5 * np.tanh(0.5 * outputs[layout.LOGITS])).astype(np.float32)  # overflow-free
    return {name: outputs[name] for name in (*layout.DECODE_OUTPUTS, layout.MEAN) if name in outputs}


class TFLiteDecoder:
    """A tfvae decoder in a `.tflite` file: z (N, D) -> probs and logits [and mean] (N, H, W, C).

    The file's `decode` signature takes `z` with a dynamic batch dimension;
    the interpreter is resized to each batch.

    Args:
      path: a `.tflite` file with the signature `decode`: z (N, D) float32 ->
        probs, logits (N, H, W, C) float32, and for a continuous-Bernoulli
        decoder mean (N, H, W, C), E[x|z] (`likelihood` says which). N is
        dynamic, or fixed (`batch_size`: decoder_full_int8.tflite takes one z
        per invoke, and is run that many at a time, the last call padded). A decoder without probs
        (decoder_full_int8.tflite) has them computed here, sigmoid(logits), its logits_fine
        taken where inside their range (`fine_logits`).
        A conditional decoder also takes label (N,) int32 (`classes` names them).
      num_threads: CPU threads for the interpreter; None lets LiteRT choose.

    Raises:
      ModelFileError: the file is missing, not a TFLite model, or not a tfvae
        decoder (no `decode` signature, or other inputs or shapes).

    Example:
    >>> decoder = TFLiteDecoder("runs/x/export/decoder.tflite")  # doctest: +SKIP
    >>> decoder.latent_dim, decoder.image_shape  # doctest: +SKIP
    (20, (28, 28, 1))
    """

    def __init__(self, path: str, num_threads: int | None = None):
        self.path = path
        self.num_threads = num_threads
        self._interpreter, self._runner, inputs, outputs = _open_signature(path, layout.DECODE, num_threads)
        if layout.LOGITS_FINE in outputs:  # a full-int8 decoder: run with TFLM's rounding, the microcontroller's numbers
            self._interpreter, self._runner, inputs, outputs = _open_signature(path, layout.DECODE, num_threads,
                                                                               integer_kernels=True)
        if set(inputs) - {layout.LABEL} != {layout.Z}:
            raise ModelFileError(
                f"{path} is not a tfvae decoder: its 'decode' signature takes {sorted(inputs)}, expected only 'z' "
                "(and 'label' for a conditional decoder)"
            )
        z_shape = _check(path, layout.DECODE, inputs, layout.Z, (None,), "input")
        self.latent_dim = z_shape[1]
        # Conditional: the class names by label index (from the manifest beside, else "0".."N-1"); None: unconditional.
        self.classes = _label_input(path, layout.DECODE, inputs, z_shape[0], self._interpreter)
        # A fixed batch (decoder_full_int8.tflite has 1, for TFLM) is decoded that many z per call; -1: any.
        self.batch_size = None if z_shape[0] < 0 else z_shape[0]
        # decoder_full_int8.tflite leaves probs to the host: p = sigmoid(logits), computed in `decode`.
        self.outputs = tuple(name for name in (*layout.DECODE_OUTPUTS, layout.MEAN) if name in outputs or name == layout.PROBS)
        self._in_file = tuple(name for name in (*self.outputs, layout.LOGITS_FINE) if name in outputs)
        self.image_shape = _image_shape(path, layout.DECODE, outputs, (*self._in_file, layout.LOGITS), "output")
        self.likelihood = layout.decoder_likelihood(self.outputs)

    @property
    def conditional(self) -> bool:
        return self.classes is not None

    def decode(self, z, labels=None) -> dict:
        """z (N, D) [, labels (N,) class indices of a conditional decoder] -> {"probs", "logits"[, "mean"]},
        each (N, H, W, C) float32 NumPy arrays."""
        z = np.ascontiguousarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must have shape (N, {self.latent_dim}), got {z.shape}")
        labels = checked_labels(labels, len(z), self.classes, self.path)
        if len(z) == 0:
            empty = np.zeros((0, *self.image_shape), np.float32)
            return {name: empty.copy() for name in self.outputs}

        def inputs(rows):  # the signature's inputs for rows of the batch
            return {layout.Z: z[rows]} if labels is None else {layout.Z: z[rows], layout.LABEL: labels[rows]}

        if self.batch_size is None:
            outputs = self._runner(**inputs(slice(None)))
        else:  # a fixed batch (the web page's 64, full int8's 1): the last call padded with zeros, then dropped
            n, padding = len(z), -len(z) % self.batch_size
            z = np.concatenate([z, np.zeros((padding, self.latent_dim), np.float32)])
            if labels is not None:
                labels = np.concatenate([labels, np.zeros(padding, np.int32)])
            chunks = [self._runner(**inputs(slice(i, i + self.batch_size))) for i in range(0, len(z), self.batch_size)]
            outputs = {name: np.concatenate([chunk[name] for chunk in chunks])[:n] for name in self._in_file}
        return with_probs({name: outputs[name] for name in self._in_file})

    def decode_logits(self, z, labels=None) -> np.ndarray:
        """z (N, D) [, labels (N,)] -> logits (N, H, W, C): the callable the likelihood estimators take."""
        return self.decode(z, labels)[layout.LOGITS]

    def __repr__(self):
        return f"TFLiteDecoder({self.path!r}, latent_dim={self.latent_dim})"


class TFLiteEncoder:
    """A tfvae encoder in a `.tflite` file: x (N, H, W, C) -> loc, scale (N, D) of q(z|x).

    Args:
      path: a `.tflite` file with the signature `encode`: x (N, H, W, C)
        float32 in [0, 1] [, label (N,) int32 for a conditional model] -> loc, scale (N, D) float32.
      num_threads: CPU threads for the interpreter; None lets LiteRT choose.

    Raises:
      ModelFileError: the file is missing, not a TFLite model, or not a tfvae encoder.
    """

    def __init__(self, path: str, num_threads: int | None = None):
        self.path = path
        self.num_threads = num_threads
        self._interpreter, self._runner, inputs, outputs = _open_signature(path, layout.ENCODE, num_threads)
        if set(inputs) - {layout.LABEL} != {layout.X}:
            raise ModelFileError(
                f"{path} is not a tfvae encoder: its 'encode' signature takes {sorted(inputs)}, expected only 'x' "
                "(and 'label' for a conditional encoder)"
            )
        self.image_shape = _image_shape(path, layout.ENCODE, inputs, (layout.X,), "input")
        self.classes = _label_input(path, layout.ENCODE, inputs, _shape(inputs[layout.X])[0], self._interpreter)
        dims = {_check(path, layout.ENCODE, outputs, name, (None,), "output")[1] for name in layout.ENCODE_OUTPUTS}
        if len(dims) != 1:
            raise ModelFileError(f"{path} is not a tfvae encoder: loc and scale have different sizes {sorted(dims)}")
        self.latent_dim = dims.pop()
        # A flow posterior's encoder also holds `encode_sample`: x, eps -> z, log_q.
        self._sample_runner = None
        if layout.ENCODE_SAMPLE in self._interpreter.get_signature_list():
            self._sample_runner = self._interpreter.get_signature_runner(layout.ENCODE_SAMPLE)

    @property
    def has_encode_sample(self) -> bool:
        return self._sample_runner is not None

    def encode_sample(self, x, eps, labels=None) -> tuple:
        """x (N, H, W, C), eps (N, D) [, labels (N,) of a conditional encoder] -> (z (N, D), log_q (N,)): the flow
        posterior's sample and its log density.

        Raises:
          ModelFileError: the file has no `encode_sample` signature (a Gaussian posterior's encoder).
        """
        if self._sample_runner is None:
            raise ModelFileError(f"{self.path} has no '{layout.ENCODE_SAMPLE}' signature: its posterior is Gaussian")
        x = np.ascontiguousarray(x, dtype=np.float32)
        eps = np.ascontiguousarray(eps, dtype=np.float32)
        if x.shape[1:] != self.image_shape or eps.shape != (len(x), self.latent_dim):
            raise ValueError(f"x must be (N, {', '.join(map(str, self.image_shape))}) and eps (N, {self.latent_dim}), "
                             f"got {x.shape} and {eps.shape}")
        labels = checked_labels(labels, len(x), self.classes, self.path)
        extra = {} if labels is None else {layout.LABEL: labels}
        outputs = self._sample_runner(**{layout.X: x, layout.EPS: eps}, **extra)
        return outputs[layout.Z], outputs[layout.LOG_Q]

    def encode(self, x, labels=None) -> tuple:
        """x (N, H, W, C) [, labels (N,) of a conditional encoder] -> (loc, scale), each (N, D) float32."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape[1:] != self.image_shape:
            raise ValueError(f"x must have shape (N, {', '.join(map(str, self.image_shape))}), got {x.shape}")
        labels = checked_labels(labels, len(x), self.classes, self.path)
        if len(x) == 0:
            empty = np.zeros((0, self.latent_dim), np.float32)
            return empty, empty.copy()
        outputs = self._runner(**({layout.X: x} if labels is None else {layout.X: x, layout.LABEL: labels}))
        return outputs[layout.LOC], outputs[layout.SCALE]

    def __repr__(self):
        return f"TFLiteEncoder({self.path!r}, latent_dim={self.latent_dim})"
