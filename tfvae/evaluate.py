"""Evaluation: the ELBO and an estimate of log p(x), in nats per image.

The ELBO is only a lower bound on log p(x); models are compared on log p(x)
itself, estimated the way papers do (Burda et al. 2016, the IWAE bound) with
K samples from the encoder's posterior q(z|x):

    log p(x) ~= log (1/K) sum_k w_k,   log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x),   z_k ~ q(z|x)

For every K this is a lower bound on log p(x) in expectation, at K = 1 it is
the ELBO, it does not decrease with K in expectation and it reaches log p(x)
as K grows. The naive estimator samples the prior instead,

    log p(x) ~= log (1/K) sum_k p(x|z_k),   z_k ~ p(z),

which is just as consistent but, because p(x|z) is tiny except on the small
region of z that explains x, is biased far below log p(x) at any practical K,
with a large variance: it is here to show why the encoder is needed.

Both are computed with log-sum-exp, K in chunks (a running log-sum-exp per
image), so memory is bounded by `_DECODER_ROWS` decoder inputs whatever K is.

The error that comes from finite K is estimated from the same weights, per
image, by the delta method: with w-bar = (1/K) sum_k w_k,

    sigma^2 = Var[log w-bar] ~= ((1/K) sum_k w_k^2 / w-bar^2 - 1) / K = sum_k w_k^2 / (sum_k w_k)^2 - 1/K

(1/ESS - 1/K, ESS the effective sample size), and log w-bar is biased low by
about sigma^2 / 2. Over n images the mean is off by -mean(sigma^2) / 2 with a
standard error sqrt(sum sigma^2) / n (`sampling_bias`, `sampling_stderr`); this
is not `log_likelihood_stderr`, the spread across images, which K does not
reduce. With heavy-tailed weights sigma^2 is underestimated (the largest
weights are the rarest), so it is a guide, not a bound. With `target_se` each
batch of images stops sampling once its own error, sqrt(bias^2 + se^2) over
the batch, is at most `target_se`: since the error of the overall mean is at
most the largest batch's, the target then holds for the mean.
The ELBO is reported beside them: distortion averaged over K samples
z_k ~ q(z|x) (the same samples as the importance estimate); the rate in closed
form for the Gaussian posterior and the N(0, I) prior, else (a flow posterior,
a learned prior) the Monte Carlo estimate mean_k [log q(z_k|x) - log p(z_k)]
over the same K samples. The model's own q and p enter every weight: a flow's
log density of its sample, a mixture prior's log density (`tfvae.mixture`).

A conditional model (`labels=`) is scored the same way on log p(x|y): the weights are
p(x|z,y) p(z|y) / q(z|x,y), z_k ~ q(z|x,y), each image with its own label. Its classification
of the images (`classify_images`) is argmax_y log p(x|y) + log p(y), each log p(x|y) from K
samples (`DEFAULT_CLASSIFICATION_SAMPLES`) with the same noise for every y (a paired comparison), and
log p(y) uniform, 1/N (so the argmax is that of log p(x|y)).

Randomness: image i of the evaluated array draws its noise from its own
stream, `numpy.random.default_rng((seed, i))`, so the figures are fixed by
`seed`, each image's figure does not depend on `batch_size` or on how many
images follow it (`--limit`), and two decoders evaluated with the same seed see
the same z (a paired comparison, e.g. Keras against TFLite).

Example:
>>> import numpy as np
>>> w = np.linspace(-2.0, 2.0, 784, dtype=np.float32)  # a toy decoder: logits = z w
>>> encode = lambda x: (np.zeros((len(x), 1), np.float32), np.ones((len(x), 1), np.float32))
>>> decode_logits = lambda z: (z * w).reshape(-1, 28, 28, 1)
>>> images = np.zeros((3, 28, 28, 1), np.uint8)
>>> evaluation = evaluate_images(encode, decode_logits, images, importance_samples=100, progress=False)
>>> evaluation.examples, evaluation.log_likelihood >= evaluation.elbo
(3, True)
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from typing import Callable, Optional

import numpy as np

from tfvae.callable_module import make_callable
from tfvae.datasets import load_splits
# The splits of a run or a dataset, read as training reads them (their home: tfvae.datasets.splits).
from tfvae.datasets.splits import SPLITS, _check_split, _first, _split_of, dataset_images, split_data, split_images
from tfvae.errors import ConfigError, DataError
from tfvae.kl import kl_standard_normal
from tfvae.mixture import Mixture
from tfvae.models import LIKELIHOODS
from tfvae.runs import load_vae

__all__ = [
    "DEFAULT_IMPORTANCE_SAMPLES",
    "ESTIMATORS",
    "SPLITS",
    "Evaluation",
    "evaluate",
    "evaluate_dataset",
    "evaluate_images",
    "evaluate_run",
    "dataset_images",
    "model_images",
    "evaluate_vae",
    "evaluation_sizes",
    "split_images",
    "split_data",
    "classify_images",
    "DEFAULT_CLASSIFICATION_SAMPLES",
]

DEFAULT_IMPORTANCE_SAMPLES = 5000  # K, as in the IWAE paper and most VAE papers since
# K per class of a conditional model's classification, argmax_y log p(x|y): N times the decoder calls of one
# evaluation at this K. 100 is enough for the argmax (a wrong class is many nats below the right one).
DEFAULT_CLASSIFICATION_SAMPLES = 100
ESTIMATORS = ("importance", "prior")  # z_k ~ q(z|x) (the IWAE bound), or z_k ~ p(z) (naive Monte Carlo)

# Decoder inputs per call. Bounds memory (the logits are rows x 784 float32, 25 MB)
# while keeping the matmuls large enough to run near the CPU's peak.
_DECODER_ROWS = 8192
# With a target error, no batch stops before this many samples per image (or K if smaller):
# sigma^2 estimated from a few heavy-tailed weights is too small (the weights that matter are rare).
_MIN_SAMPLES_BEFORE_STOPPING = 100
# Images per batch when K is large: enough that per-batch overhead (encoder call,
# noise, bookkeeping) is negligible; with small K batches grow to fill _DECODER_ROWS.
_MIN_BATCH_SIZE = 16
# Below this |l| the continuous-Bernoulli log C(l) is its series: the direct formula divides two numbers near 0.
_CB_SERIES_BELOW = 1e-3


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """A model's figures on one split, in nats per image averaged over the images.

    elbo = -(rate + distortion) <= log p(x); `log_likelihood` estimates log p(x).
    """

    split: str  # which images: test, validation or train (free text for evaluate_images)
    examples: int  # number of images averaged over
    elbo: float  # -(rate + distortion)
    rate: float  # KL(q(z|x) || p(z)): closed form (Gaussian q, N(0, I) p), else the mean over the K samples
    distortion: float  # -log p(x|z), averaged over K samples z ~ q(z|x)
    log_likelihood: float  # the estimate of log p(x)
    log_likelihood_stderr: float  # standard error of `log_likelihood` across images; NaN for one image
    # The error of `log_likelihood` from finite K (not the spread across images), from the per-image delta-method
    # variances sigma_i^2 of log (1/K) sum_k w_k: the standard error sqrt(sum sigma_i^2) / n, and the expected
    # error -mean(sigma_i^2) / 2 (negative: the estimate is biased low).
    sampling_stderr: float
    sampling_bias: float
    importance_samples: int  # K, samples per image (with `target_se`, the most)
    estimator: str  # one of ESTIMATORS
    seconds: float  # wall time of the estimation (data and model loading excluded)
    rate_estimate: str = "closed_form"  # how `rate` was computed: closed_form, or monte_carlo (K samples per image)
    # p(x|z), a key of tfvae.models.LIKELIHOODS. continuous_bernoulli: every log p is a log-density of grey
    # levels, not a log-probability, and is not comparable with a Bernoulli model's figures.
    likelihood: str = "bernoulli"
    target_se: Optional[float] = None  # stop sampling a batch once its sampling error is this small; None: all K
    importance_samples_used: Optional[float] = None  # with `target_se`: samples per image, averaged over the images
    # Per image, in the order of the images (N,) float64: the log p(x) estimates and the ELBOs, for paired comparisons
    # of two decoders on the same z (the export's quantization cost); not in `to_dict`.
    per_image_log_likelihood: Optional[np.ndarray] = dataclasses.field(default=None, repr=False, compare=False)
    per_image_elbo: Optional[np.ndarray] = dataclasses.field(default=None, repr=False, compare=False)
    # label: a conditional model, every log p above is log p(x|y) (and the ELBO, rate, distortion given y);
    # none: log p(x). Only a conditional evaluation has the three fields in `to_dict`.
    condition: str = "none"
    # The model's own classification, argmax_y log p(x|y) + log p(y) (uniform), right on this fraction of the images,
    # with `classification_samples` K per class; None: not measured.
    classification_accuracy: Optional[float] = None
    classification_samples: Optional[int] = None

    @property
    def meaning(self) -> str:
        """What the log p figures are, in words."""
        return LIKELIHOODS[self.likelihood].description

    @property
    def images_per_second(self) -> float:
        return self.examples / self.seconds if self.seconds > 0 else math.inf

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict; a NaN standard error becomes None (JSON null).

        Without `target_se` its two fields are left out: every image used `importance_samples`.
        """
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.startswith("per_image")}
        if self.target_se is None:
            del values["target_se"], values["importance_samples_used"]
        if self.condition == "none":  # an unconditional evaluation's JSON is as it always was
            del values["condition"], values["classification_accuracy"], values["classification_samples"]
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()}


def evaluate_images(
    encode: Callable,
    decode_logits: Callable,
    images,
    *,
    importance_samples: int = DEFAULT_IMPORTANCE_SAMPLES,
    estimator: str = "importance",
    batch_size: Optional[int] = None,
    seed: int = 0,
    progress: bool = False,
    split: str = "test",
    traceable: bool = False,
    jit_compile: bool = True,
    prior: Optional[Mixture] = None,
    sample_posterior: Optional[Callable] = None,
    likelihood: str = "bernoulli",
    target_se: Optional[float] = None,
    labels: Optional[np.ndarray] = None,
) -> Evaluation:
    """ELBO, rate, distortion and an estimate of log p(x) for binary images (or grey levels).

    Args:
      encode: float32 images (B, H, W, C) -> (loc, scale) of q(z|x), each (B, D).
      decode_logits: z (N, D) float32 -> logits (N, H, W, C) (or (N, H * W * C)) of p(x|z).
        Any callable over NumPy arrays will do (a TFLite interpreter wrapper,
        say), as long as it accepts any N up to max(8192, batch_size)
        (`_DECODER_ROWS`, the most rows per call).
      images: (N, H, W, C) values in {0, 1}, any numeric dtype (grey levels in [0, 1]
        for the continuous Bernoulli).
      importance_samples: K >= 1, samples of z per image (with `target_se`, the most).
      estimator: "importance" (z ~ q(z|x), the IWAE bound) or "prior" (z ~ p(z)).
        With "prior" the ELBO still needs K samples from q(z|x), so the decoder
        runs 2K times per image.
      batch_size: images per batch; None picks one that fills `_DECODER_ROWS`.
      seed: fixes all the noise; image i uses the stream default_rng((seed, i)).
      progress: show a tqdm progress bar over images on stderr (if tqdm is installed).
      split: the name recorded in the result.
      traceable: `encode` and `decode_logits` are TensorFlow functions (e.g. a
        Keras VAE's `encode_params` and `decode_logits`): they are traced with
        `tf.function`, log p(x|z) for a chunk is one graph call (compiled with
        XLA if `jit_compile`), and there is no eager call per chunk.
      jit_compile: with `traceable`, compile the Bernoulli likelihood of the decoder's
        logits with XLA (the decoder itself, and a continuous Bernoulli whole). The
        estimate is the same to float round-off either way; which is faster depends
        on the decoder (see `Architecture.xla_evaluation`).
      prior: p(z) as a `tfvae.mixture.Mixture`; None is N(0, I).
      sample_posterior: for a posterior that is not N(loc, scale^2) (a flow):
        images (B, H, W, C), eps (B, C, D) -> z (B, C, D), log q(z|x) (B, C), the
        posterior's sample for the noise eps and its log density. `encode` still
        gives the flow's base (its scale must be positive; it is not otherwise used).
      likelihood: "bernoulli" (binary images) or "continuous_bernoulli" (grey
        levels in [0, 1]; every log p is then a log-density).
      target_se: None samples K per image. A positive number of nats: after
        each chunk, once it has at least min(100, K) samples per image, a batch
        stops when sqrt(bias^2 + se^2) of its mean is at most `target_se`
        (see the module docstring). The samples drawn are the first ones of the
        default path, so the noise is the same; the ELBO averages over them.
      labels: a conditional model's class labels (N,) int: every figure is given y (log p(x|y)), and
        `encode(images, labels)`, `decode_logits(z, labels)` and `sample_posterior(images, eps, labels)` take
        the labels of their rows; `prior`, if given, has one component per class, p(z|y) = component y
        (None: N(0, I) for every y). Not with the prior estimator.

    Returns:
      An `Evaluation`, averaged over the images.

    Raises:
      ConfigError: K < 1, an unknown estimator, a bad batch size, seed or target.
      ValueError: `images` is not a non-empty stack of binary 28x28 images, or
        `encode` / `decode_logits` return the wrong shapes.
    """
    _check_options(importance_samples, estimator, batch_size, seed, target_se)
    if likelihood not in LIKELIHOODS:
        raise ConfigError(f"unknown likelihood {likelihood!r}; choose one of: {', '.join(LIKELIHOODS)}")
    images = _binary_images(images) if LIKELIHOODS[likelihood].binary else _grey_images(images)  # (N, H, W, C) float32
    n = len(images)
    if labels is not None:
        labels = _check_labels(labels, n, estimator, prior)
    batch_size, chunk_size = evaluation_sizes(n, importance_samples, batch_size)
    log_prior = prior.log_density if prior is not None else _log_standard_normal
    if traceable:
        encode, log_p_x_given_z = _compiled(encode), _compiled_log_p_x_given_z(decode_logits, jit_compile, likelihood)
        if sample_posterior is not None:
            sample_posterior = _compiled_sample_posterior(sample_posterior)
        if prior is not None:
            log_prior = _compiled_log_density(prior, jit_compile)
    else:
        log_p_x_given_z = _numpy_log_p_x_given_z(decode_logits, likelihood)
    if labels is not None and prior is not None:
        log_prior = _class_log_density(prior)  # z, labels -> log p(z|y)

    started = time.perf_counter()
    log_likelihood, rate, distortion, variance = (np.empty(n) for _ in range(4))  # (N,) float64 each
    samples = np.empty(n, dtype=np.int64)  # (N,) samples used per image
    most = f"K = {importance_samples}" if target_se is None else f"K <= {importance_samples}, s.e. {target_se:g}"
    bar = _progress_bar(n, f"{estimator} sampling, {most}", enabled=progress)
    try:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            rngs = [np.random.default_rng((seed, i)) for i in range(start, stop)]
            functions = (encode, log_p_x_given_z, log_prior, sample_posterior)
            if labels is not None:  # each function bound to this batch's labels
                functions = _given_labels(*functions, labels[start:stop], prior is not None)
            (log_likelihood[start:stop], rate[start:stop], distortion[start:stop], variance[start:stop],
             samples[start:stop]) = _evaluate_batch(
                functions[0], functions[1], functions[2], images[start:stop], rngs, importance_samples, chunk_size,
                estimator, prior, functions[3], target_se,
            )
            if bar is not None:
                bar.update(stop - start)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - started

    stderr = float(np.std(log_likelihood, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return Evaluation(
        split=split,
        examples=n,
        elbo=float(-np.mean(rate + distortion)),
        rate=float(np.mean(rate)),
        distortion=float(np.mean(distortion)),
        log_likelihood=float(np.mean(log_likelihood)),
        log_likelihood_stderr=stderr,
        sampling_stderr=float(math.sqrt(np.sum(variance)) / n),
        sampling_bias=float(-np.mean(variance) / 2),
        importance_samples=int(importance_samples),
        estimator=estimator,
        seconds=seconds,
        rate_estimate="closed_form" if prior is None and sample_posterior is None else "monte_carlo",
        likelihood=likelihood,
        target_se=None if target_se is None else float(target_se),
        importance_samples_used=None if target_se is None else float(np.mean(samples)),
        per_image_log_likelihood=log_likelihood,
        per_image_elbo=-(rate + distortion),
        condition="none" if labels is None else "label",
    )


def _check_labels(labels, n: int, estimator: str, prior) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu" or labels.shape != (n,) or (n and labels.min() < 0):
        raise ValueError(f"labels must be class indices >= 0, one per image ({n},), got {labels.dtype} {labels.shape}")
    if estimator != "importance":
        raise ConfigError("the prior estimator is for unconditional models; a conditional one is scored by "
                          "importance sampling")
    if prior is not None and labels.max() >= prior.components:
        raise ValueError(f"label {int(labels.max())} has no component of the {prior.components}-class prior")
    return labels.astype(np.int32)


def _given_labels(encode, log_p_x_given_z, log_prior, sample_posterior, labels, class_prior: bool):
    """The evaluator's functions for one batch of a conditional model, bound to its labels (B,)."""
    return (
        lambda x: encode(x, labels),
        lambda x, z: log_p_x_given_z(x, z, labels),
        (lambda z: log_prior(z, labels)) if class_prior else log_prior,
        None if sample_posterior is None else (lambda images, eps: sample_posterior(images, eps, labels)),
    )


def _class_log_density(prior: Mixture):
    """z (B, C, D), labels (B,) -> log p(z|y) (B, C) float64: component y of a per-class prior."""

    def log_density(z, labels):
        loc, scale = prior.loc[labels][:, None, :], prior.scale[labels][:, None, :]  # (B, 1, D)
        u = (np.asarray(z, np.float64) - loc) / scale
        return (-0.5 * np.sum(u * u, -1) - np.sum(np.log(scale), -1)
                - 0.5 * prior.latent_dim * math.log(2 * math.pi))

    return log_density


def classify_images(encode, decode_logits, images, labels, classes: int, *,
                    importance_samples: int = DEFAULT_CLASSIFICATION_SAMPLES, seed: int = 0, **options) -> tuple:
    """A conditional model's own classification: argmax_y log p(x|y) + log p(y), log p(y) uniform.

    Each log p(x|y) is `evaluate_images` with every image given label y, K = `importance_samples`, the
    same noise for every y (image i's stream (seed, i)): a paired comparison of the classes.

    Args:
      encode, decode_logits, images, options: as `evaluate_images`'s (labelled functions).
      labels: the images' true labels (N,).
      classes: N, the number of classes.

    Returns:
      (accuracy, predicted labels (N,), log p(x|y) (N, classes)).
    """
    scores = np.stack([
        evaluate_images(encode, decode_logits, images, importance_samples=importance_samples, seed=seed,
                        labels=np.full(len(images), y, np.int32), **options).per_image_log_likelihood
        for y in range(classes)
    ], axis=1)  # (N, classes); + log p(y) = -log N for every y changes no argmax
    predicted = np.argmax(scores, axis=1)
    return float(np.mean(predicted == np.asarray(labels))), predicted, scores


def evaluation_sizes(examples: int, importance_samples: int, batch_size: Optional[int] = None) -> tuple:
    """(B, C): images per batch and samples per image in one decoder call, as `evaluate_images` chooses them.

    The decoder sees B · C rows per call, at most max(`_DECODER_ROWS`, B); `tfvae.bench` counts FLOPs and
    measures throughput at these shapes.
    """
    batch_size = min(examples, batch_size or max(_MIN_BATCH_SIZE, _DECODER_ROWS // importance_samples))
    return batch_size, _chunk_size(batch_size, importance_samples)


def evaluate(
    model_or_path,
    images,
    importance_samples: int = DEFAULT_IMPORTANCE_SAMPLES,
    seed: int = 0,
    *,
    estimator: str = "importance",
    batch_size: Optional[int] = None,
    target_se: Optional[float] = None,
    progress: bool = False,
    split: str = "images",
    labels=None,
    classification_samples: Optional[int] = None,
) -> Evaluation:
    """ELBO, rate, distortion and importance-sampled log p(x) of a VAE on images, in nats per image.

    A conditional VAE needs the images' `labels` and gives log p(x|y), with q(z|x,y) and p(z|y), and its own
    classification accuracy (`classify_images`).

    `tfvae.evaluate(...)` calls this function; `tfvae evaluate` gives the same figures for the same
    model, images and seed.

    Args:
      model_or_path: a `tfvae.VAE`, a `.keras` file written by `vae.save`, or a run directory.
      images: (N, H, W, C) or, for a one-channel model, (N, H, W), matching the model's image shape:
        binary values (0 or 1) for a Bernoulli model, grey levels in [0, 1] for a continuous Bernoulli.
      importance_samples: K >= 1, samples of z per image (with `target_se`, the most).
      seed: fixes all the noise; image i uses the stream numpy.random.default_rng((seed, i)).
      estimator: "importance" (z ~ q(z|x), the IWAE bound) or "prior" (z ~ p(z)); see ESTIMATORS.
      batch_size: images per batch; None picks one.
      target_se: stop sampling a batch once its K error is this many nats or less; None: all K.
      progress: show a progress bar on stderr.
      split: the name the `Evaluation` records for these images.
      labels: a conditional model's class labels of the images (N,) int in 0..N-1; None for an unconditional one.
      classification_samples: K per class of a conditional model's classification; None:
        `DEFAULT_CLASSIFICATION_SAMPLES`; 0: not measured.

    Returns:
      An `Evaluation`; `.to_dict()` has the keys of `tfvae evaluate --json`.

    Raises:
      DataError: images of another shape than the model's, or grey values for a Bernoulli model.
      ConfigError: a bad option (K < 1, an unknown estimator, ...).
      ModelFileError, RunError: a path that is not a model.

    Example:
    >>> import numpy as np, tfvae
    >>> x = (np.random.default_rng(0).random((8, 28, 28)) < 0.3).astype("float32")
    >>> evaluation = tfvae.evaluate(tfvae.VAE(latent_dim=2, hidden_units=8), x, importance_samples=10)
    >>> evaluation.examples, evaluation.log_likelihood >= evaluation.elbo
    (8, True)
    """
    _check_options(importance_samples, estimator, batch_size, seed, target_se)  # before loading anything
    if classification_samples is not None and classification_samples != 0:
        _check_positive_int("--classification-samples", classification_samples)
    vae = _model(model_or_path)
    if getattr(vae, "classes", 0) and classification_samples is None:
        classification_samples = DEFAULT_CLASSIFICATION_SAMPLES
    return evaluate_vae(vae, images, importance_samples=importance_samples, seed=seed, estimator=estimator,
                        batch_size=batch_size, target_se=target_se, progress=progress, split=split, labels=labels,
                        classification_samples=classification_samples or 0)


def evaluate_vae(vae, images, labels=None, classification_samples: int = 0, **options) -> Evaluation:
    """`evaluate_images` for a Keras VAE: its own posterior and prior, compiled as `tfvae evaluate` runs it.

    `images` are checked against the model first (`model_images`); `options` are `evaluate_images`'s
    keyword arguments. A conditional VAE needs `labels` (N,) and, with `classification_samples` K > 0,
    also classifies the images (`classify_images`, K per class)."""
    images = model_images(vae, images)  # before anything is traced
    classes = getattr(vae, "classes", 0)
    if classes:
        labels = vae.check_labels(labels, len(images), "labels")
    elif labels is not None:
        raise ValueError("this VAE is unconditional: evaluate it without labels")
    functions = dict(
        traceable=True,
        jit_compile=vae.xla_evaluation,  # Architecture.xla_evaluation; False for your own networks
        prior=None if vae.prior_name == "normal" else Mixture(*(t.numpy() for t in vae.prior_mixture())),
        sample_posterior=_batch_first(vae.encode_sample) if _sampled_posterior(vae) else None,
        likelihood=vae.likelihood,
    )
    evaluation = evaluate_images(vae.encode_params, vae.decode_logits, images, labels=labels, **functions, **options)
    if not classes or not classification_samples:
        return evaluation
    same = {k: v for k, v in options.items() if k in ("batch_size", "seed", "progress")}
    accuracy, _, _ = classify_images(vae.encode_params, vae.decode_logits, images, labels, classes,
                                     importance_samples=classification_samples, **functions, **same)
    return dataclasses.replace(evaluation, classification_accuracy=accuracy,
                               classification_samples=int(classification_samples))


def model_images(vae, images) -> np.ndarray:
    """`images` as the float32 (N, H, W, C) stack `vae` takes, or a one-line error saying what does not fit.

    A (N, H, W) array gets a channel axis when the model's images have one channel.

    Raises:
      DataError: not a non-empty stack of the model's image shape; values that are not 0 or 1 for a
        Bernoulli model (binarize them first), or outside [0, 1] for a continuous Bernoulli.
    """
    images = np.asarray(images)
    given, shape = images.shape, tuple(vae.image_shape)  # (H, W, C)
    if images.ndim == 3 and shape[-1] == 1:
        images = images[..., None]  # (N, H, W) -> (N, H, W, 1)
    if images.ndim != 4 or images.shape[1:] != shape or len(images) == 0:
        takes = f"(N, {', '.join(map(str, shape))})" + (f" or (N, {shape[0]}, {shape[1]})" if shape[-1] == 1 else "")
        raise DataError(f"images of shape {given} do not fit this model, which takes {takes} with N >= 1")
    if not np.issubdtype(images.dtype, np.number) and images.dtype != bool:
        raise DataError(f"images must be numbers, got dtype {images.dtype}")
    if LIKELIHOODS[vae.likelihood].binary:
        if not np.isin(images, (0, 1)).all():
            raise DataError("a Bernoulli model is evaluated on binary images (0 or 1), and these hold grey values: "
                            "binarize them first, e.g. (x > 0.5) or a random draw (rng.random(x.shape) < x)")
    elif not ((images >= 0) & (images <= 1)).all():
        raise DataError("a continuous-Bernoulli model is evaluated on grey levels in [0, 1]: scale the images "
                        "first, e.g. x / 255")
    return images.astype(np.float32)


def _model(model_or_path):
    """A VAE as it is, or the one saved at a path (a .keras file or a run directory)."""
    if isinstance(model_or_path, (str, os.PathLike)):
        from tfvae.saving import load_model

        return load_model(model_or_path)
    return model_or_path


def evaluate_run(
    run_dir: str,
    *,
    split: str = "test",
    importance_samples: int = DEFAULT_IMPORTANCE_SAMPLES,
    estimator: str = "importance",
    limit: Optional[int] = None,
    batch_size: Optional[int] = None,
    data_dir: Optional[str] = None,
    seed: int = 0,
    progress: bool = True,
    target_se: Optional[float] = None,
    classification_samples: Optional[int] = None,
) -> Evaluation:
    """`evaluate` for a run's model (its best validation epoch with keep_best, else its newest checkpoint) on
    one split of the run's dataset (a conditional run: on the split's labels too, log p(x|y), and its
    classification with `classification_samples` K per class).

    Args:
      run_dir: a run written by `tfvae train`.
      split: "test", "validation" or "train".
      limit: evaluate the first `limit` images of the split only.
      data_dir: where the data is; None: the run's config, then $TFVAE_DATA_DIR, then TFDS.
      importance_samples, estimator, batch_size, seed, progress, target_se: as `evaluate`'s.

    Raises:
      TfvaeError: a bad option, a directory that is not a finished-enough run, or missing data.
    """
    # Options first: a typo should not cost loading a model and a dataset.
    _check_split(split, limit)
    _check_options(importance_samples, estimator, batch_size, seed, target_se)
    config, vae = load_vae(run_dir)
    images, labels = split_data(config, split, data_dir)
    images = _first(images, limit, split)
    labels = None if labels is None else labels[: len(images)]
    return evaluate(vae, images, importance_samples, seed, estimator=estimator, batch_size=batch_size,
                    target_se=target_se, progress=progress, split=split, labels=labels,
                    classification_samples=classification_samples)


def evaluate_dataset(
    model_or_path,
    dataset: str,
    *,
    split: str = "test",
    limit: Optional[int] = None,
    data_dir: Optional[str] = None,
    image_key: str = "image",
    image_size=None,
    channels: Optional[int] = None,
    importance_samples: int = DEFAULT_IMPORTANCE_SAMPLES,
    seed: int = 0,
    **options,
) -> Evaluation:
    """`evaluate` on one split of a dataset read as `tfvae train` reads it (`dataset_images`).

    Args:
      model_or_path: a `tfvae.VAE`, a `.keras` file or a run directory.
      dataset, split, limit, data_dir, image_key, image_size, channels: as `dataset_images`'s.
      importance_samples, seed, **options: as `evaluate`'s (estimator, batch_size, target_se, progress).

    Raises:
      TfvaeError: a bad option (before anything is loaded), a path that is not a model, missing data,
        or images that do not fit the model.
    """
    _check_split(split, limit)  # options first: a typo should not cost loading a model and a dataset
    _check_options(importance_samples, options.get("estimator", "importance"), options.get("batch_size"), seed,
                   options.get("target_se"))
    vae = _model(model_or_path)
    if getattr(vae, "classes", 0):  # a conditional model: the split's labels too
        _check_split(split, limit)
        splits = load_splits(dataset, data_dir, image_key=image_key, image_size=image_size, channels=channels,
                             likelihood=vae.likelihood, label_key=options.pop("label_key", "label"))
        if len(splits.classes) != vae.classes:
            raise DataError(f"{dataset} has {len(splits.classes)} classes; this model was trained on {vae.classes}")
        images = _first(_split_of(splits, split), limit, split)
        options["labels"] = splits.labels[split][: len(images)]
    else:
        images = dataset_images(dataset, split, data_dir, likelihood=vae.likelihood, limit=limit,
                                image_key=image_key, image_size=image_size, channels=channels)
    return evaluate(vae, images, importance_samples, seed, split=split, **options)


# --------------------------------------------------------------------------- one batch


def _evaluate_batch(encode, log_p_x_given_z, log_prior, images, rngs, importance_samples, chunk_size, estimator,
                    prior=None, sample_posterior=None, target_se=None):
    """Per-image log p(x) estimate, rate, distortion and sampling variance for one batch of images.

    Args:
      encode: images (B, H, W, C) -> loc, scale (B, D).
      log_p_x_given_z: x (B, P), z (B, C, D) -> log p(x|z) (B, C).
      log_prior: z (B, C, D) -> log p(z) (B, C), float64: `prior`'s density (used unless the closed forms apply).
      images: (B, H, W, C) float32 binary images.
      rngs: one numpy Generator per image.
      importance_samples: K.
      chunk_size: C, samples per image per call.
      estimator: one of ESTIMATORS.
      prior: a `Mixture`, or None for N(0, I) (its samples for the naive estimator).
      sample_posterior: None for q(z|x) = N(loc, scale^2), else images, eps -> z, log q(z|x).
      target_se: None, or stop after the chunk at which `_sampling_error` of the batch falls to it
        (not before min(_MIN_SAMPLES_BEFORE_STOPPING, K) samples).

    Returns:
      log_likelihood, rate, distortion, variance (sigma^2 of log_likelihood from finite K): (B,) float64 each;
      samples: the number of samples each image used, (B,) int.
    """
    batch = len(images)
    x = images.reshape(batch, -1)  # (B, P)
    loc, scale = (np.asarray(a, dtype=np.float32) for a in encode(images))
    if loc.ndim != 2 or loc.shape[0] != batch or scale.shape != loc.shape:
        raise ValueError(f"encode must return loc and scale of shape ({batch}, D), got {loc.shape} and {scale.shape}")
    if not np.all(scale > 0):
        raise ValueError("encode returned a scale that is not positive")
    latent_dim = loc.shape[1]
    textbook = prior is None and sample_posterior is None  # N(loc, scale^2) and N(0, I): the closed forms
    if textbook:
        rate = np.sum(kl_standard_normal(loc.astype(np.float64), scale.astype(np.float64)), axis=-1)  # (B,)
    else:
        sum_log_q_over_p = np.zeros(batch)  # running sum_k log q(z_k|x) - log p(z_k), for the sampled rate

    log_sum_w = np.full(batch, -np.inf)  # running log sum_k w_k, (B,)
    log_sum_w2 = np.full(batch, -np.inf)  # running log sum_k w_k^2, (B,), for sigma^2
    sum_log_p_x_given_z = np.zeros(batch)  # running sum_k log p(x|z_k), z_k ~ q(z|x), for the distortion
    drawn = 0  # samples per image so far
    while drawn < importance_samples:
        size = min(chunk_size, importance_samples - drawn)
        eps = np.stack([rng.standard_normal((size, latent_dim), dtype=np.float32) for rng in rngs])  # (B, C, D)
        if sample_posterior is None:
            z = loc[:, None, :] + scale[:, None, :] * eps  # (B, C, D), z ~ q(z|x)
        else:
            z, log_q = (np.asarray(a) for a in sample_posterior(images, eps))
            what = "sample_posterior returned"
            z = _checked(z, eps.shape, f"{what} z").astype(np.float32)
            log_q = _checked(log_q, (batch, size), f"{what} log q").astype(np.float64)
        log_p_x_given_z_q = _checked(log_p_x_given_z(x, z), (batch, size)).astype(np.float64)  # (B, C)
        sum_log_p_x_given_z += log_p_x_given_z_q.sum(axis=1)
        if textbook:
            log_p_over_q = _log_prior_over_posterior(z, eps, scale)  # (B, C)
        else:
            if sample_posterior is None:
                log_q = _log_gaussian_posterior(eps, scale)
            log_p_over_q = log_prior(z) - log_q  # (B, C)
            sum_log_q_over_p -= log_p_over_q.sum(axis=1)
        if estimator == "importance":
            log_w = log_p_x_given_z_q + log_p_over_q  # (B, C)
        else:  # z ~ p(z): the same noise, used as z itself (N(0, I)) or as a mixture component's noise; w = p(x|z)
            z_prior = eps if prior is None else _mixture_sample(prior, rngs, eps)
            log_w = _checked(log_p_x_given_z(x, z_prior), (batch, size)).astype(np.float64)  # (B, C)
        log_sum_w = np.logaddexp(log_sum_w, _logsumexp(log_w))
        log_sum_w2 = np.logaddexp(log_sum_w2, _logsumexp(2 * log_w))
        drawn += size
        if (target_se is not None and drawn >= min(_MIN_SAMPLES_BEFORE_STOPPING, importance_samples)
                and _sampling_error(_log_mean_weight_variance(log_sum_w, log_sum_w2, drawn)) <= target_se):
            break
    log_likelihood = log_sum_w - math.log(drawn)  # log (1/K) sum_k w_k
    distortion = -sum_log_p_x_given_z / drawn
    if not textbook:
        rate = sum_log_q_over_p / drawn
    variance = _log_mean_weight_variance(log_sum_w, log_sum_w2, drawn)
    return log_likelihood, rate, distortion, variance, np.full(batch, drawn)


def _log_mean_weight_variance(log_sum_w, log_sum_w2, samples: int):
    """sigma^2, the delta-method variance of log (1/K) sum_k w_k, from log sum_k w_k and log sum_k w_k^2: (B,).

    Var[w] / (K E[w]^2) with the sample moments is sum w^2 / (sum w)^2 - 1/K (= 1/ESS - 1/K), a ratio in
    [1/K, 1] computed in log space; clipped at 0 against round-off (equal weights give 1/K, to ~1e-15).
    """
    return np.maximum(np.exp(log_sum_w2 - 2 * log_sum_w) - 1.0 / samples, 0.0)


def _sampling_error(variance):
    """sqrt(bias^2 + se^2), the error of the mean of n estimates of log p(x) with variances sigma_i^2 (n,).

    bias = mean(sigma^2) / 2 (each estimate is low by sigma_i^2 / 2); se = sqrt(sum sigma^2) / n.
    """
    n = len(variance)
    return math.hypot(np.mean(variance) / 2, math.sqrt(np.sum(variance)) / n)


def _log_standard_normal(z):
    """log N(z; 0, I) for z (..., D), float64."""
    z = z.astype(np.float64)
    return -0.5 * np.sum(z * z, -1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)


def _log_gaussian_posterior(eps, scale):
    """log N(loc + scale eps; loc, scale^2) = log N(eps; 0, I) - sum log scale: (B, C), float64."""
    return _log_standard_normal(eps) - np.sum(np.log(scale.astype(np.float64)), -1)[:, None]


def _mixture_sample(prior, rngs, eps):
    """z ~ p(z) for each image: a component from the image's stream, then loc + scale * eps: (B, C, D) float32."""
    weights = np.exp(prior.log_weights())
    k = np.stack([rng.choice(prior.components, size=eps.shape[1], p=weights) for rng in rngs])  # (B, C)
    return (prior.loc[k] + prior.scale[k] * eps).astype(np.float32)


def _log_prior_over_posterior(z, eps, scale):
    """log p(z) - log q(z|x) for z = loc + scale * eps: (B, C), float64.

    log N(z; 0, I) - log N(z; loc, scale^2) = -|z|^2 / 2 + |eps|^2 / 2 + sum log scale;
    the (2 pi)^(-D/2) factors cancel.
    """
    z, eps = z.astype(np.float64), eps.astype(np.float64)
    return -0.5 * np.sum(z * z, -1) + 0.5 * np.sum(eps * eps, -1) + np.sum(np.log(scale.astype(np.float64)), -1)[:, None]


def _logsumexp(a):
    """log sum_k exp(a_k) over the last axis, (B, C) -> (B,), without overflow."""
    a = np.asarray(a, dtype=np.float64)
    top = np.max(a, axis=-1)
    return top + np.log(np.sum(np.exp(a - top[:, None]), axis=-1))


def _chunk_size(batch_size: int, importance_samples: int) -> int:
    """C: samples per image per call, so that batch_size * C <= _DECODER_ROWS, in near-equal chunks."""
    most = max(1, _DECODER_ROWS // batch_size)
    chunks = math.ceil(importance_samples / most)
    return math.ceil(importance_samples / chunks)


# --------------------------------------------------------------------------- log p(x|z)


def _numpy_log_p_x_given_z(decode_logits, likelihood: str = "bernoulli"):
    """x (B, P), z (B, C, D) -> log p(x|z) (B, C), for any decoder over NumPy arrays."""

    def log_p_x_given_z(x, z, labels=None):
        batch, samples, latent_dim = z.shape
        given = () if labels is None else (np.repeat(labels, samples),)  # each image's label for its C samples
        logits = np.asarray(decode_logits(z.reshape(batch * samples, latent_dim), *given), dtype=np.float32)
        logits = _checked(logits.reshape(batch, samples, -1), (batch, samples, x.shape[1]))  # (B, C, P)
        # log Bernoulli(x; sigmoid(l)) = x l - softplus(l), summed over the pixels.
        x_dot_logits = np.matmul(logits, x[:, :, None])[..., 0]  # (B, C)
        log_p = x_dot_logits - np.logaddexp(np.float32(0), logits).sum(axis=-1)
        if likelihood == "continuous_bernoulli":  # the same kernel times the normaliser C(l)
            log_p = log_p + continuous_bernoulli_log_normalizer(logits).sum(axis=-1)
        return log_p

    return log_p_x_given_z


def continuous_bernoulli_log_normalizer(logits) -> np.ndarray:
    """log C(l) = log(l / tanh(l / 2)), elementwise in float64, log 2 + l^2/12 - l^4/720 near l = 0.

    NumPy only (the TFLite decoders are evaluated without TensorFlow); tests check it against TFP.
    """
    logits = np.asarray(logits, dtype=np.float64)
    small = np.abs(logits) < _CB_SERIES_BELOW
    safe = np.where(small, 1.0, logits)
    direct = np.log(safe / np.tanh(safe / 2.0))
    series = math.log(2.0) + logits**2 / 12.0 - logits**4 / 720.0
    return np.where(small, series, direct)


def _compiled_log_p_x_given_z(decode_logits, jit_compile: bool = True, likelihood: str = "bernoulli"):
    """The same, as one TensorFlow graph per shape (XLA-compiled if `jit_compile`): the fast path for Keras decoders."""
    import tensorflow as tf

    if likelihood == "continuous_bernoulli":
        return _compiled_continuous_bernoulli(decode_logits, jit_compile)

    # The decoder runs on TensorFlow's own (oneDNN) kernels, whose matrix products beat XLA's on CPUs; only the
    # likelihood, element-wise over every logit, is XLA-compiled when `jit_compile` (BENCHMARKS.md, "Floors").
    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def log_bernoulli(x, logits):
        labels = tf.broadcast_to(x[:, None, :], tf.shape(logits))  # (B, C, P), fused away by XLA
        return -tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits), axis=-1)

    @tf.function(reduce_retracing=True)
    def log_p_x_given_z(x, z, *labels):
        batch, samples, latent_dim = tf.unstack(tf.shape(z))
        given = [tf.repeat(labels[0], samples)] if labels else []  # (B C,): each image's label for its samples
        logits = decode_logits(tf.reshape(z, [batch * samples, latent_dim]), *given)
        return log_bernoulli(x, tf.reshape(logits, [batch, samples, -1]))  # (B, C, P) -> (B, C)

    return lambda x, z, labels=None: log_p_x_given_z(x, z, *(() if labels is None else (labels,))).numpy()


def _compiled_continuous_bernoulli(decode_logits, jit_compile: bool):
    """x (B, P), z (B, C, D) -> the continuous-Bernoulli log-density (B, C), with TFP's log-normaliser."""
    import tensorflow as tf
    import tensorflow_probability as tfp

    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def log_p_x_given_z(x, z, *labels):
        batch, samples, latent_dim = tf.unstack(tf.shape(z))
        given = [tf.repeat(labels[0], samples)] if labels else []  # (B C,): each image's label for its samples
        logits = tf.reshape(decode_logits(tf.reshape(z, [batch * samples, latent_dim]), *given), [batch, samples, -1])
        p_x_given_z = tfp.distributions.ContinuousBernoulli(logits=logits)  # (B, C, P) factors
        return tf.reduce_sum(p_x_given_z.log_prob(x[:, None, :]), axis=-1)

    return lambda x, z, labels=None: log_p_x_given_z(x, z, *(() if labels is None else (labels,))).numpy()


def _compiled_log_density(prior, jit_compile: bool = True):
    """`prior.log_density` (`tfvae.mixture.Mixture`, z (..., D) -> (...)) as one TensorFlow graph in float32:
    the one matrix product [z * z, z, 1] @ `prior.quadratic_form()` and a log-sum-exp over the K components.

    float32 as the decoder's log p(x|z): 3x faster than float64 for a chunk of 8192 z and 500 components, and a
    trained VampPrior's test log p(x) moves by 1e-7 nats (BENCHMARKS.md). The form is built in float64, rounded once.
    """
    import tensorflow as tf

    form = tf.constant(prior.quadratic_form(), tf.float32)  # (2D + 1, K)

    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def log_density(z):
        flat = tf.reshape(z, [-1, prior.latent_dim])  # (N, D)
        features = tf.concat([flat * flat, flat, tf.ones_like(flat[:, :1])], axis=1)  # (N, 2D + 1)
        return tf.reshape(tf.reduce_logsumexp(tf.matmul(features, form), axis=-1), tf.shape(z)[:-1])

    return lambda z: log_density(tf.constant(z, tf.float32)).numpy().astype(np.float64)


def _compiled_sample_posterior(sample_posterior):
    """`sample_posterior` as a tf.function returning NumPy arrays."""
    import tensorflow as tf

    compiled = tf.function(sample_posterior, reduce_retracing=True)
    return lambda images, eps, *labels: tuple(t.numpy() for t in compiled(images, eps, *labels))


def _sampled_posterior(vae) -> bool:
    """A flow or a second latent layer: q(z|x) is sampled through `encode_sample` (your own model may lack the
    property: then its flow decides)."""
    return bool(getattr(vae, "sampled_posterior", getattr(vae, "flow", None) is not None))


def _batch_first(encode_sample):
    """A Keras VAE's `encode_sample` (noise (K, B, D), sample-first) over noise (B, C, D), image-first."""
    import tensorflow as tf

    def sample_posterior(images, eps, *labels):
        z, log_q = encode_sample(images, tf.transpose(eps, [1, 0, 2]), *labels)  # (C, B, D), (C, B)
        return tf.transpose(z, [1, 0, 2]), tf.transpose(log_q)

    return sample_posterior


def _compiled(encode):
    """`encode` as a tf.function returning NumPy arrays."""
    import tensorflow as tf

    compiled = tf.function(encode, reduce_retracing=True)
    return lambda x, *labels: tuple(t.numpy() for t in compiled(x, *labels))


# --------------------------------------------------------------------------- helpers


def _binary_images(images) -> np.ndarray:
    """Binary images (N, H, W, C) as float32, refusing anything else."""
    images = np.asarray(images)
    if images.ndim < 2 or len(images) == 0 or images.size == 0:
        raise ValueError(f"images must be a non-empty stack of images, got shape {images.shape}")
    if not np.isin(images, (0, 1)).all():
        raise ValueError("images must be binary (values 0 and 1); binarize intensities first")
    return images.astype(np.float32)


def _grey_images(images) -> np.ndarray:
    """Grey levels in [0, 1] (N, H, W, C) as float32, refusing anything else."""
    images = np.asarray(images)
    if images.ndim < 2 or len(images) == 0 or images.size == 0:
        raise ValueError(f"images must be a non-empty stack of images, got shape {images.shape}")
    images = images.astype(np.float32)
    if not ((images >= 0) & (images <= 1)).all():
        raise ValueError("images must hold grey levels in [0, 1] for the continuous-Bernoulli likelihood")
    return images


def _checked(array, shape, what="decode_logits returned logits"):
    if tuple(array.shape) != tuple(shape):
        raise ValueError(f"{what} of the wrong size: got {array.shape}, expected {shape}")
    return array


def _check_options(importance_samples, estimator, batch_size, seed, target_se=None) -> None:
    _check_positive_int("--importance-samples", importance_samples)
    if target_se is not None and (isinstance(target_se, bool) or not isinstance(target_se, (int, float, np.number))
                                  or not math.isfinite(target_se) or target_se <= 0):
        raise ConfigError(f"--target-se must be a positive number of nats, got {target_se!r}")
    if estimator not in ESTIMATORS:
        raise ConfigError(f"unknown --estimator {estimator!r}; choose one of: {', '.join(ESTIMATORS)}")
    if batch_size is not None:
        _check_positive_int("--batch-size", batch_size)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"--seed must be a non-negative integer, got {seed!r}")


def _check_positive_int(flag: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{flag} must be a positive integer, got {value!r}")


def _progress_bar(total: int, description: str, enabled: bool, unit: str = "img"):
    """A tqdm bar over images (or another `unit`) on stderr, or None if disabled or tqdm is not installed."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=description, unit=unit, file=sys.stderr, mininterval=1.0, dynamic_ncols=True)


make_callable(__name__, "evaluate")  # `tfvae.evaluate(...)` calls `evaluate`
