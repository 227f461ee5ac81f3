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

import numpy as np
import tensorflow as tf

from tfvae.errors import ModelFileError
from tfvae.export import layout
from tfvae.models import LIKELIHOODS

__all__ = ["VAESignatures", "save_signatures", "SavedModelDecoder", "KerasDecoder"]


class VAESignatures(tf.Module):
    """The `decode` and `encode` signatures of a trained VAE, as a `tf.Module` ready for `tf.saved_model.save`.

    decode: z (N, D) float32 -> {"probs": sigmoid(logits), "logits": logits}, each (N, H, W, C),
            and for a continuous-Bernoulli decoder "mean": E[x|z]
    encode: x (N, H, W, C) float32 in [0, 1] -> {"loc": loc, "scale": scale}, each (N, D)
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
        # Bound methods are not tracked: only the variables below are saved, not the Keras model.
        self._decode_logits = vae.decode_logits
        self._encode_params = vae.encode_params
        self.flow = vae.flow is not None
        self.model_variables = list(vae.encoder.variables) + list(vae.decoder.variables)
        if self.flow:
            self._encode_sample = vae.encode_sample
            self.model_variables += list(vae.flow.variables)
            self.encode_sample = tf.function(
                self._sample,
                input_signature=[
                    tf.TensorSpec([batch_size, *self.image_shape], tf.float32, name=layout.X),
                    tf.TensorSpec([batch_size, self.latent_dim], tf.float32, name=layout.EPS),
                ],
            )
        self.decode = tf.function(
            self._decode, input_signature=[tf.TensorSpec([batch_size, self.latent_dim], tf.float32, name=layout.Z)]
        )
        self.encode = tf.function(
            self._encode, input_signature=[tf.TensorSpec([batch_size, *self.image_shape], tf.float32, name=layout.X)]
        )

    def _decode(self, z):
        logits = self._decode_logits(z)  # (N, H, W, C)
        outputs = {layout.PROBS: tf.sigmoid(logits), layout.LOGITS: logits}
        if self.likelihood != "bernoulli":  # the picture of a continuous Bernoulli is its mean, not sigmoid(logits)
            outputs[layout.MEAN] = LIKELIHOODS[self.likelihood].mean(logits)
        return outputs

    def _encode(self, x):
        loc, scale = self._encode_params(x)  # (N, D) each
        return {layout.LOC: loc, layout.SCALE: scale}

    def _sample(self, x, eps):
        z, log_q = self._encode_sample(x, eps)  # (N, D), (N,)
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
        z = inputs.get(layout.Z)
        if set(inputs) != {layout.Z} or z.dtype != tf.float32 or len(z.shape) != 2 or z.shape[1] is None:
            raise ModelFileError(f"{path} is not a tfvae decoder: 'decode' takes {inputs}, expected z (N, D) float32")
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

    def decode(self, z) -> dict:
        """z (N, D) -> {"probs", "logits"[, "mean"]}, each (N, H, W, C) float32 NumPy."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must have shape (N, {self.latent_dim}), got {z.shape}")
        outputs = self._decode(**{layout.Z: tf.constant(z)})
        return {name: outputs[name].numpy() for name in self.outputs}

    def decode_logits(self, z) -> np.ndarray:
        return self.decode(z)[layout.LOGITS]

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
        # Traced once per batch size instead of run op by op: the estimators call these thousands of times.
        self._graphs = VAESignatures(vae)

    def decode(self, z) -> dict:
        """z (N, D) -> {"probs", "logits"[, "mean"]}, each (N, H, W, C) float32 NumPy."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must have shape (N, {self.latent_dim}), got {z.shape}")
        outputs = self._graphs.decode(tf.constant(z))
        return {name: tensor.numpy() for name, tensor in outputs.items()}

    def decode_logits(self, z) -> np.ndarray:
        """z (N, D) -> logits (N, H, W, C)."""
        return self.decode(z)[layout.LOGITS]

    def encode(self, x) -> tuple:
        """x (N, H, W, C) -> (loc, scale), each (N, D) float32 NumPy."""
        outputs = self._graphs.encode(tf.constant(np.asarray(x, dtype=np.float32)))
        return outputs[layout.LOC].numpy(), outputs[layout.SCALE].numpy()

    def __repr__(self):
        return f"KerasDecoder(latent_dim={self.latent_dim}, source={self.path!r})"
