"""A mixture of diagonal Gaussians in NumPy: the prior as data, for the evaluator and the device.

    p(z) = sum_k pi_k N(z; loc_k, diag scale_k^2),   pi = softmax(logits)

Every prior tfvae trains is one of these (N(0, I) is one component with loc 0
and scale 1; a VampPrior is the mixture of the posteriors at its pseudo-inputs).
An export writes it as `prior.npz` (arrays `logits (K,)`, `loc (K, D)`,
`scale (K, D)`), read back with `allow_pickle=False`. No TensorFlow here: the
on-device sampler draws from it with NumPy.

A conditional model with a per-class prior writes one component per class and
the scalar array `class_conditional` = 1: component k is p(z|y = k), and
`sample_given(rng, labels)` draws z from the component of each label. Files
without that array (every unconditional export, and all older ones) are a
mixture over z alone.

Example:
>>> prior = Mixture.standard_normal(2)
>>> round(float(prior.log_density(np.zeros((1, 2)))[0]), 4)  # log N(0; 0, I_2) = -log(2 pi)
-1.8379
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import zipfile

import numpy as np

__all__ = ["Mixture", "PriorFileError", "ARRAYS", "CLASS_CONDITIONAL"]

ARRAYS = ("logits", "loc", "scale")  # the arrays of prior.npz, in this order
CLASS_CONDITIONAL = "class_conditional"  # optional scalar array of prior.npz: 1 when component k is p(z|y = k)


class PriorFileError(ValueError):
    """A prior.npz (or prior arrays) that cannot be used; the message says why, in one line."""


@dataclasses.dataclass(frozen=True)
class Mixture:
    """logits (K,), loc (K, D), scale (K, D), float64, checked on construction.

    `class_conditional`: component k is p(z|y = k) of a conditional model (K = its classes), not a mixture
    component of p(z).
    """

    logits: np.ndarray
    loc: np.ndarray
    scale: np.ndarray
    class_conditional: bool = False

    def __post_init__(self):
        arrays = {}
        for name in ARRAYS:
            value = getattr(self, name)
            if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu":
                raise PriorFileError(f"prior array {name!r} must be a numeric array, got {_describe(value)}")
            arrays[name] = value.astype(np.float64)
            object.__setattr__(self, name, arrays[name])
        logits, loc, scale = (arrays[name] for name in ARRAYS)
        if logits.ndim != 1 or len(logits) < 1 or loc.ndim != 2 or loc.shape[0] != len(logits) or loc.shape[1] < 1:
            raise PriorFileError(
                f"prior arrays must be logits (K,), loc (K, D) and scale (K, D); got logits {logits.shape}, "
                f"loc {loc.shape}"
            )
        if scale.shape != loc.shape:
            raise PriorFileError(f"prior scale has shape {scale.shape}; loc has {loc.shape}: they must agree")
        for name, value in arrays.items():
            if not np.all(np.isfinite(value)):
                raise PriorFileError(f"prior array {name!r} holds NaN or infinite values")
        if not np.all(scale > 0):
            raise PriorFileError("prior scale must be positive everywhere")
        object.__setattr__(self, "class_conditional", bool(self.class_conditional))

    @classmethod
    def standard_normal(cls, latent_dim: int) -> "Mixture":
        """N(0, I_D) as one component."""
        return cls(np.zeros(1), np.zeros((1, latent_dim)), np.ones((1, latent_dim)))

    @property
    def components(self) -> int:
        return len(self.logits)

    @property
    def latent_dim(self) -> int:
        return self.loc.shape[1]

    @property
    def is_standard_normal(self) -> bool:
        return self.components == 1 and not self.loc.any() and bool(np.all(self.scale == 1))

    def log_weights(self) -> np.ndarray:
        """log pi (K,), the normalised log mixture weights."""
        return self.logits - _logsumexp(self.logits)

    def quadratic_form(self) -> np.ndarray:
        """W (2D + 1, K), float64: log pi_k + log N(z; m_k, s_k^2) = [z * z, z, 1] . W[:, k] for every component.

        Per component, log N(z; m, s^2) = -1/2 |z/s|^2 + z.(m/s^2) - 1/2 |m/s|^2 - sum log s - D/2 log 2 pi,
        so K components cost one (N, 2D + 1) x (2D + 1, K) matrix product, not an (N, K, D) tensor.
        """
        precision = 1.0 / self.scale**2  # (K, D)
        constant = (
            self.log_weights()
            - 0.5 * np.sum(self.loc**2 * precision, axis=1)
            - np.sum(np.log(self.scale), axis=1)
            - 0.5 * self.latent_dim * math.log(2 * math.pi)
        )  # (K,)
        return np.concatenate([-0.5 * precision.T, (self.loc * precision).T, constant[None]])  # (2D + 1, K)

    def log_density(self, z) -> np.ndarray:
        """log p(z) for z (..., D) -> (...), float64, by `quadratic_form` and a log-sum-exp over the components."""
        z = np.asarray(z, dtype=np.float64)
        shape = z.shape[:-1]
        return _logsumexp(quadratic_features(z.reshape(-1, self.latent_dim)) @ self.quadratic_form(),
                          axis=-1).reshape(shape)

    def sample(self, rng: np.random.Generator, n: int, temperature: float = 1.0, dtype=np.float32) -> np.ndarray:
        """z (n, D) of `dtype`: a component k ~ pi, then z = loc_k + temperature * scale_k * eps, eps ~ N(0, I).

        For N(0, I) this draws exactly `temperature * rng.standard_normal((n, D))`, the
        stream the sampler always drew, so seeds keep their pictures.
        """
        if self.is_standard_normal:
            return (temperature * rng.standard_normal((n, self.latent_dim))).astype(dtype)
        eps = rng.standard_normal((n, self.latent_dim))
        return self.transform(eps, rng.random(n), temperature).astype(dtype)

    def sample_given(self, rng: np.random.Generator, labels, temperature: float = 1.0, dtype=np.float32) -> np.ndarray:
        """z (n, D) ~ p(z|y) for each of the n `labels`, each scale times `temperature`.

        A class-conditional prior draws z = loc_y + temperature * scale_y * eps from component y; any other
        prior is p(z|y) = p(z) for every y (`sample`, the same stream).

        Raises:
          PriorFileError: a label that is not a component of a class-conditional prior.
        """
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if not self.class_conditional:
            return self.sample(rng, len(labels), temperature, dtype)
        if len(labels) and (labels.min() < 0 or labels.max() >= self.components):
            raise PriorFileError(f"labels must be in 0..{self.components - 1} (one prior component per class), "
                                 f"got {int(labels.min())}..{int(labels.max())}")
        eps = rng.standard_normal((len(labels), self.latent_dim))
        return (self.loc[labels] + temperature * self.scale[labels] * eps).astype(dtype)

    def transform(self, eps, u, temperature: float = 1.0) -> np.ndarray:
        """z = loc_k + temperature * scale_k * eps with k = the component whose CDF interval holds u: (n, D) float64.

        eps (n, D) ~ N(0, I) and u (n,) ~ U(0, 1) give z ~ p(z); fixed eps and u
        follow the prior as it is learned (the training sample grids).
        """
        cdf = np.cumsum(np.exp(self.log_weights()))
        k = np.minimum(np.searchsorted(cdf, np.asarray(u) * cdf[-1], side="right"), self.components - 1)
        return self.loc[k] + temperature * self.scale[k] * np.asarray(eps, dtype=np.float64)

    def to_npz_bytes(self) -> bytes:
        """The prior.npz file's bytes: float32 arrays `logits`, `loc`, `scale` (and `class_conditional` = 1 if so)."""
        buffer = io.BytesIO()
        arrays = {name: getattr(self, name).astype(np.float32) for name in ARRAYS}
        if self.class_conditional:  # only then: an unconditional prior.npz keeps its bytes
            arrays[CLASS_CONDITIONAL] = np.array(1, dtype=np.int8)
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def load(cls, path: str, latent_dim: int = None) -> "Mixture":
        """Read a prior.npz (allow_pickle=False), refusing anything else with one clear line."""
        if not os.path.isfile(path):
            raise PriorFileError(f"{path}: no such prior file")
        if not zipfile.is_zipfile(path):
            raise PriorFileError(f"{path} is not a readable .npz file (not a zip archive of arrays)")
        try:
            with np.load(path, allow_pickle=False) as npz:
                missing = [name for name in ARRAYS if name not in npz.files]
                if missing:
                    raise PriorFileError(f"{path} lacks the array(s) {', '.join(missing)} (needs {', '.join(ARRAYS)})")
                arrays = {name: npz[name] for name in ARRAYS}
                flag = npz[CLASS_CONDITIONAL] if CLASS_CONDITIONAL in npz.files else np.array(0)
        except PriorFileError:
            raise
        except ValueError as e:  # object arrays need pickle, which is refused
            raise PriorFileError(f"{path} holds an array that needs pickle, which tfvae does not load ({e})") from None
        except (OSError, zipfile.BadZipFile, EOFError) as e:
            raise PriorFileError(f"{path} is not a readable .npz file ({e})") from None
        if flag.shape != () or flag.dtype.kind not in "biu" or int(flag) not in (0, 1):
            raise PriorFileError(f"{path}: {CLASS_CONDITIONAL} must be a scalar 0 or 1, got {_describe(flag)} {flag!r}")
        try:
            prior = cls(**arrays, class_conditional=bool(flag))
        except PriorFileError as e:
            raise PriorFileError(f"{path}: {e}") from None
        if latent_dim is not None and prior.latent_dim != latent_dim:
            raise PriorFileError(f"{path} is a prior over D = {prior.latent_dim}; the decoder takes D = {latent_dim}")
        return prior


def quadratic_features(z):
    """[z * z, z, 1] (N, 2D + 1) for z (N, D), NumPy: the left factor of `Mixture.quadratic_form`."""
    return np.concatenate([z * z, z, np.ones_like(z[:, :1])], axis=1)


def _logsumexp(a, axis=None):
    a = np.asarray(a, dtype=np.float64)
    top = np.max(a, axis=axis, keepdims=True)
    out = top + np.log(np.sum(np.exp(a - top), axis=axis, keepdims=True))
    return out.squeeze(axis) if axis is not None else float(out.reshape(()))


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype}"
    return type(value).__name__
