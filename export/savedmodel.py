"""The exported graphs (TensorFlow side): a tensors-in, tensors-out `tf.Module`, and decoders read back from disk.

The module holds only the encoder's and decoder's variables and two
deterministic functions; the Keras model and its TFP layers are not saved, so
no distribution, sampling op or Keras metadata reaches the SavedModel or the
TFLite files converted from it (STYLE.md, principle 5).

Example:
>>> from tfvae.runs import load_vae  # doctest: +SKIP
>>> config, vae = load_vae("runs/x")  # doctest: +SKIP
>>> save_signatures(vae, "/tmp/saved_model")  # doctest: +SKIP
>>> SavedModelDecoder("/tmp/saved_model").decode(np.zeros((2, 20), np.float32))["probs"].shape  # doctest: +SKIP
(2, 28, 28, 1)
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from tfvae.errors import ModelFileError
from tfvae.export import layout
from tfvae.export.litert import checked_labels
from tfvae.mixture import Mixture
from tfvae.models import LIKELIHOODS

__all__ = ["VAESignatures", "save_signatures", "SavedModelDecoder", "KerasDecoder", "class_names", "prior_of"]


def class_names(vae) -> tuple:
    """The class names of a conditional VAE, by label index: its run's `Config.classes`, else "0".."N-1"; () if
    the VAE is unconditional (`vae.classes` 0 or absent)."""
    count = int(getattr(vae, "classes", 0) or 0)
    if not count:
        return ()
    for names in (getattr(getattr(vae, "run_config", None), "classes", None), getattr(vae, "class_names", None)):
        if names is not None and not isinstance(names, (int, np.integer)) and len(names) == count:
            return tuple(str(name) for name in names)
    return tuple(str(k) for k in range(count))


def prior_of(vae) -> Mixture:
    """The prior an export writes as prior.npz: `vae.prior_mixture()` as a `Mixture`; for a conditional VAE whose
    prior is learned per class (not N(0, I), one component per class), flagged class-conditional: component k is
    p(z|y = k). Any other conditional VAE has p(z|y) = p(z)."""
    prior = Mixture(*(np.asarray(t) for t in vae.prior_mixture()))
    classes = class_names(vae)
    if classes and getattr(vae, "prior_name", "normal") != "normal" and prior.components == len(classes):
        return dataclasses.replace(prior, class_conditional=True)
    return prior


class VAESignatures(tf.Module):
    """The `decode` and `encode` signatures of a trained VAE, as a `tf.Module` ready for `tf.saved_model.save`.

    decode: z (N, D) float32 -> {"probs": sigmoid(logits), "logits": logits}, each (N, H, W, C),
            and for a continuous-Bernoulli decoder "mean": E[x|z]
    encode: x (N, H, W, C) float32 in [0, 1] -> {"loc": loc, "scale": scale}, each (N, D)
    A conditional VAE (`vae.classes` N > 0): decode and encode also take label (N,) int32, which the model
    one-hot encodes in the graph; the module keeps the class names as `class_names` (a string variable that
    no signature reads, so no TFLite file holds it).
    encode_sample (a flow posterior only): x, eps (N, D) -> {"z": z (N, D), "log_q": log q(z|x) (N,)}

    Args:
      vae: a built `tfvae.models.VAE`.
      batch_size: None for a dynamic batch dimension (N); an integer fixes it, for runtimes that refuse a
        dynamic one (LiteRT.js).
    """

    def __init__(self, vae, batch_size: int | None = None):
        super().__init__(name="tfvae")
        self.latent_dim = int(vae.latent_dim)
        self.image_shape = tuple(vae.image_shape)
        self.batch_size = batch_size
        self.likelihood = vae.likelihood
        self.classes = class_names(vae)  # () for an unconditional VAE
        # Bound methods are not tracked: only the variables below are saved, not the Keras model.
        self._decode_logits = vae.decode_logits
        self._encode_params = vae.encode_params
        self.flow = bool(getattr(vae, "sampled_posterior", vae.flow is not None))  # a flow, or two latent layers
        self.model_variables = list(vae.encoder.variables) + list(vae.decoder.variables)
        if self.flow:
            self._encode_sample = vae.encode_sample
            sampler = vae.flow if vae.flow is not None else vae.posterior_1  # two layers: q(z1|x, z2)'s network
            if not sampler.variables:  # a flow never run (a model not yet called) makes its variables when first run
                labels = (tf.zeros([1], tf.int32),) if self.classes else ()
                vae.encode_sample(tf.zeros([1, *self.image_shape]), tf.zeros([1, self.latent_dim]), *labels)
            self.model_variables += list(sampler.variables)
            self.encode_sample = tf.function(
                self._sample,
                input_signature=[
                    tf.TensorSpec([batch_size, *self.image_shape], tf.float32, name=layout.X),
                    tf.TensorSpec([batch_size, self.latent_dim], tf.float32, name=layout.EPS),
                ] + ([tf.TensorSpec([batch_size], tf.int32, name=layout.LABEL)] if self.classes else []),
            )
        z_spec = tf.TensorSpec([batch_size, self.latent_dim], tf.float32, name=layout.Z)
        x_spec = tf.TensorSpec([batch_size, *self.image_shape], tf.float32, name=layout.X)
        if self.classes:
            label_spec = tf.TensorSpec([batch_size], tf.int32, name=layout.LABEL)
            self.class_names = tf.Variable(list(self.classes), trainable=False, dtype=tf.string, name="class_names")
            self.decode = tf.function(self._decode, input_signature=[z_spec, label_spec])
            self.encode = tf.function(self._encode, input_signature=[x_spec, label_spec])
        else:  # the signatures of every unconditional export, unchanged
            self.decode = tf.function(self._decode, input_signature=[z_spec])
            self.encode = tf.function(self._encode, input_signature=[x_spec])

    def _decode(self, z, label=None):
        logits = self._decode_logits(z) if label is None else self._decode_logits(z, label)  # (N, H, W, C)
        outputs = {layout.PROBS: tf.sigmoid(logits), layout.LOGITS: logits}
        if self.likelihood != "bernoulli":  # the picture of a continuous Bernoulli is its mean, not sigmoid(logits)
            outputs[layout.MEAN] = LIKELIHOODS[self.likelihood].mean(logits)
        return outputs

    def _encode(self, x, label=None):
        loc, scale = self._encode_params(x) if label is None else self._encode_params(x, label)  # (N, D) each
        return {layout.LOC: loc, layout.SCALE: scale}

    def _sample(self, x, eps, label=None):
        z, log_q = self._encode_sample(x, eps) if label is None else self._encode_sample(x, eps, label)  # (N, D), (N,)
        return {layout.Z: z, layout.LOG_Q: log_q}

    def signatures(self) -> dict:
        """{signature key: concrete function}, for `tf.saved_model.save(..., signatures=...)`."""
        signatures = {
            layout.DECODE: self.decode.get_concrete_function(),
            layout.ENCODE: self.encode.get_concrete_function(),
        }
        if self.flow:
            signatures[layout.ENCODE_SAMPLE] = self.encode_sample.get_concrete_function()
        return signatures


def save_signatures(vae, path: str, batch_size: int | None = None) -> None:
    """Write the SavedModel of `vae` with the signatures `decode` and `encode` to `path`; see `VAESignatures`."""
    module = VAESignatures(vae, batch_size)
    tf.saved_model.save(module, path, signatures=module.signatures())


def _spec_shape(spec) -> tuple:
    return tuple(-1 if d is None else int(d) for d in spec.shape)


def _is_image_shape(shape) -> bool:
    """(H, W, C) with known H, W and C 1 (grey) or 3 (RGB)."""
    return len(shape) == 3 and min(shape[:2]) > 0 and shape[2] in (1, 3)


class SavedModelDecoder:
    """The `decode` signature of a tfvae SavedModel directory: z (N, D) -> probs, logits [, mean] (N, H, W, C).

    A conditional model's `decode` also takes label (N,) int32; `classes` holds its class names (None:
    unconditional).

    Args:
      path: a SavedModel directory written by `tfvae export` (OUT/saved_model).

    Raises:
      ModelFileError: not a readable SavedModel, or no tfvae `decode` signature.
    """

    def __init__(self, path: str):
        self.path = path
        try:
            loaded = tf.saved_model.load(path)
        except (OSError, ValueError, tf.errors.OpError) as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelFileError(f"{path} is not a readable SavedModel: {reason[:200]}") from None
        if layout.DECODE not in loaded.signatures:
            found = ", ".join(sorted(loaded.signatures)) or "none"
            raise ModelFileError(f"{path} has no 'decode' signature (it has: {found}); it is not a tfvae export")
        self._loaded = loaded  # keeps the variables alive
        self._decode = loaded.signatures[layout.DECODE]
        _, inputs = self._decode.structured_input_signature
        outputs = self._decode.structured_outputs
        z, label = inputs.get(layout.Z), inputs.get(layout.LABEL)
        if (set(inputs) - {layout.LABEL} != {layout.Z} or z.dtype != tf.float32 or len(z.shape) != 2
                or z.shape[1] is None or label is not None and (label.dtype != tf.int32 or len(label.shape) != 1)):
            raise ModelFileError(f"{path} is not a tfvae decoder: 'decode' takes {inputs}, expected z (N, D) float32 "
                                 "(and label (N,) int32 for a conditional decoder)")
        self.classes = None
        if label is not None:
            names = getattr(loaded, "class_names", None)
            self.classes = tuple(n.decode() for n in names.numpy()) if names is not None else ()
        shapes = {_spec_shape(outputs[name])[1:] for name in layout.DECODE_OUTPUTS if name in outputs}
        if not set(layout.DECODE_OUTPUTS) <= set(outputs) or len(shapes) != 1 or not _is_image_shape(*shapes):
            raise ModelFileError(
                f"{path} is not a tfvae decoder: 'decode' returns {sorted(outputs)}, "
                "expected probs and logits of one shape (N, H, W, C) with C 1 or 3"
            )
        self.latent_dim = int(z.shape[1])
        self.image_shape = shapes.pop()
        self.outputs = tuple(name for name in (*layout.DECODE_OUTPUTS, layout.MEAN) if name in outputs)
        self.likelihood = layout.decoder_likelihood(self.outputs)

    @property
    def conditional(self) -> bool:
        return self.classes is not None

    def decode(self, z, labels=None) -> dict:
        """z (N, D) [, labels (N,) of a conditional decoder] -> {"probs", "logits"[, "mean"]}, each (N, H, W, C)."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must have shape (N, {self.latent_dim}), got {z.shape}")
        labels = checked_labels(labels, len(z), self.classes, self.path)
        inputs = {layout.Z: tf.constant(z)}
        if labels is not None:
            inputs[layout.LABEL] = tf.constant(labels)
        outputs = self._decode(**inputs)
        return {name: outputs[name].numpy() for name in self.outputs}

    def decode_logits(self, z, labels=None) -> np.ndarray:
        return self.decode(z, labels)[layout.LOGITS]

    def __repr__(self):
        return f"SavedModelDecoder({self.path!r}, latent_dim={self.latent_dim})"


class KerasDecoder:
    """The decoder of a trained `VAE` in memory, with the same interface as the exported ones.

    Args:
      vae: a built `tfvae.models.VAE`.
      source: where it came from (a run directory), for messages.
    """

    def __init__(self, vae, source: str = ""):
        self.vae = vae
        self.path = source
        self.latent_dim = int(vae.latent_dim)
        self.image_shape = tuple(vae.image_shape)
        self.likelihood = vae.likelihood
        self.classes = class_names(vae) or None  # names by label index; None: unconditional
        # Traced once per batch size instead of run op by op: the estimators call these thousands of times.
        self._graphs = VAESignatures(vae)

    @property
    def conditional(self) -> bool:
        return self.classes is not None

    def decode(self, z, labels=None) -> dict:
        """z (N, D) [, labels (N,) of a conditional VAE] -> {"probs", "logits"[, "mean"]}, each (N, H, W, C)."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must have shape (N, {self.latent_dim}), got {z.shape}")
        labels = checked_labels(labels, len(z), self.classes, self.path or "this model")
        args = (tf.constant(z),) if labels is None else (tf.constant(z), tf.constant(labels))
        outputs = self._graphs.decode(*args)
        return {name: tensor.numpy() for name, tensor in outputs.items()}

    def decode_logits(self, z, labels=None) -> np.ndarray:
        """z (N, D) [, labels (N,)] -> logits (N, H, W, C)."""
        return self.decode(z, labels)[layout.LOGITS]

    def encode(self, x, labels=None) -> tuple:
        """x (N, H, W, C) [, labels (N,) of a conditional VAE] -> (loc, scale), each (N, D) float32 NumPy."""
        x = np.asarray(x, dtype=np.float32)
        labels = checked_labels(labels, len(x), self.classes, self.path or "this model")
        args = (tf.constant(x),) if labels is None else (tf.constant(x), tf.constant(labels))
        outputs = self._graphs.encode(*args)
        return outputs[layout.LOC].numpy(), outputs[layout.SCALE].numpy()

    def __repr__(self):
        return f"KerasDecoder(latent_dim={self.latent_dim}, source={self.path!r})"
