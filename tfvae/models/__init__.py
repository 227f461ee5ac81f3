"""The model family: one table per part of the math, one short entry per member.

    x --encoder--> params --q(z|x)--> z (K samples) --decoder--> logits --p(x|z)--> x
    objective: elbo or iwae, over log p(x|z_k), log q(z_k|x) - log p(z_k) and the closed-form rate
    p(x|z): Bernoulli on binary pixels, or continuous Bernoulli on grey levels

Tables (a new member is one entry here and one function in the named module):

    ARCHITECTURES   name -> Architecture(encoder, decoder)      networks.py
    OBJECTIVES      name -> loss function                       objectives.py
    LIKELIHOODS     name -> Likelihood(layer, mean, ...)        likelihoods.py
    POSTERIORS      name -> flow factory (None: the Gaussian)   posteriors.py
    FLOW_CONTEXTS   name -> (params, context) of an image       posteriors.py
    PRIORS          name -> prior layer factory                 priors.py

The modules that build models import TensorFlow; this file does not, so that
`tfvae.config` can validate names against these tables on a device that only
has the LiteRT interpreter. Each entry is resolved when a model is built.

    vae.py          the Keras model (VAE, build_vae)
    networks.py     encoders and decoders: tensors in, tensors out (what gets exported)
    posteriors.py   q(z|x) = N(loc, diag scale^2), optionally an IAF on top; the rate layers (added once)
    priors.py       p(z) = N(0, I), a learned mixture of Gaussians, or the VampPrior
    objectives.py   elbo, iwae, and the KL warm-up weight
    likelihoods.py  p(x|z): Bernoulli or continuous Bernoulli, their means and log-normalisers
    replicas.py     the global batch across tf.distribute replicas
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

__all__ = [
    "ARCHITECTURES",
    "OBJECTIVES",
    "LIKELIHOODS",
    "POSTERIORS",
    "FLOW_CONTEXTS",
    "PRIORS",
    "Architecture",
    "Likelihood",
    "VAE",
    "KLDivergenceLoss",
    "build_vae",
    "kl_weight",
    "posterior_params",
    "standard_normal_prior",
]


def _lazy(module: str, name: str) -> Callable:
    """`module.name`, imported at its first call (the module imports TensorFlow; this table must not)."""

    def resolved(*args, **kwargs):
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    resolved.__name__ = name
    resolved.__qualname__ = f"{module}.{name}"
    return resolved


@dataclasses.dataclass(frozen=True)
class Architecture:
    """An encoder/decoder family.

    Each factory is called as f(latent_dim, image_shape, hidden_units=, hidden_layers=, filters=)
    and returns a tensors-in, tensors-out Keras model: encoder x (B, H, W, C) -> params (B, 2D),
    decoder z (B, D) -> logits (B, H * W * C).
    """

    encoder: Callable
    decoder: Callable
    description: str
    # Compile the evaluator's Bernoulli likelihood with XLA (`tfvae evaluate`; the decoder itself runs on
    # TensorFlow's oneDNN kernels). Measured per architecture (BENCHMARKS.md, "Evaluation speed", "Floors"):
    # XLA fuses the softplus over the MLP's logits; with the whole decoder under XLA it ran the MLP's matmuls
    # 1.2x and the transposed convolutions 1.7x slower than oneDNN on this CPU.
    xla_evaluation: bool = True


_NETWORKS = "tfvae.models.networks"
ARCHITECTURES = {
    "mlp": Architecture(
        _lazy(_NETWORKS, "mlp_encoder"),
        _lazy(_NETWORKS, "mlp_decoder"),
        "fully connected ReLU layers (the classic 784-500-20 model)",
    ),
    "conv": Architecture(
        _lazy(_NETWORKS, "conv_encoder"),
        _lazy(_NETWORKS, "conv_decoder"),
        "two stride-2 convolutions down, a dense layer, two stride-2 transposed convolutions up",
        xla_evaluation=False,
    ),
}

_OBJECTIVES = "tfvae.models.objectives"
# name -> loss(distortion, log_q_over_p, rate, kl_weight): the negative objective averaged over the batch.
OBJECTIVES = {
    "elbo": _lazy(_OBJECTIVES, "elbo_loss"),  # E_q[log p(x|z)] - KL, K samples averaged
    "iwae": _lazy(_OBJECTIVES, "iwae_loss"),  # log (1/K) sum_k w_k (Burda et al. 2016)
}

@dataclasses.dataclass(frozen=True)
class Likelihood:
    """p(x|z) given the decoder's logits, one factor per pixel and channel.

    layer(image_shape) -> a TFP distribution layer over logits (B, P) or (K, B, P);
    mean(logits) -> E[x|z], the picture a sample grid shows (TensorFlow, exportable: builtin TFLite ops);
    binary: the data are binarized (validation and test once, train every epoch), else grey levels in [0, 1];
    distortion(p_x_given_z, x) -> -log p(x|z) per image, what the training step computes (a fused expression
    where one pays, else the distribution's own log_prob).
    """

    layer: Callable
    mean: Callable
    binary: bool
    description: str
    distortion: Callable


_LIKELIHOODS = "tfvae.models.likelihoods"
LIKELIHOODS = {
    "bernoulli": Likelihood(
        _lazy(_LIKELIHOODS, "bernoulli_layer"),
        _lazy(_LIKELIHOODS, "bernoulli_mean"),
        True,
        "Bernoulli on binarized pixels: log p(x|z) is a log-probability (nats)",
        _lazy(_LIKELIHOODS, "bernoulli_distortion"),
    ),
    "continuous_bernoulli": Likelihood(
        _lazy(_LIKELIHOODS, "continuous_bernoulli_layer"),
        _lazy(_LIKELIHOODS, "continuous_bernoulli_mean"),
        False,
        "continuous Bernoulli on grey levels (Loaiza-Ganem & Cunningham 2019): log p(x|z) is a log-density",
        _lazy(_LIKELIHOODS, "distribution_distortion"),
    ),
}

_POSTERIORS = "tfvae.models.posteriors"
# name -> f(latent_dim, flow_steps=, hidden_units=): the flow on top of N(loc, diag scale^2), or None.
POSTERIORS = {
    "gaussian": None,  # the diagonal Gaussian itself (with the N(0, I) prior: the closed-form KL)
    "iaf": _lazy(_POSTERIORS, "iaf"),  # Kingma et al. 2016
}

# What conditions each step of a flow posterior: name -> f(encoder, x, training=) -> params (B, 2D), context (B, C).
FLOW_CONTEXTS = {
    "features": _lazy(_POSTERIORS, "features_context"),  # h, the input of the encoder's last layer (Kingma et al.)
    "params": _lazy(_POSTERIORS, "params_context"),  # the encoder's output, loc and raw scale (runs before the choice)
}

_PRIORS = "tfvae.models.priors"
# name -> f(latent_dim, components=, image_shape=, posterior_params=): a Keras layer with mixture() and distribution().
PRIORS = {
    "normal": _lazy(_PRIORS, "normal"),  # N(0, I)
    "mog": _lazy(_PRIORS, "mog"),  # K learned diagonal Gaussians
    "vamp": _lazy(_PRIORS, "vamp"),  # the posterior at K learned pseudo-inputs (Tomczak & Welling 2018)
}

# The TensorFlow side, imported when first used: `from tfvae.models import VAE` works as before.
_LAZY_NAMES = {
    "VAE": "tfvae.models.vae",
    "build_vae": "tfvae.models.vae",
    "KLDivergenceLoss": "tfvae.models.posteriors",
    "posterior_params": "tfvae.models.posteriors",
    "standard_normal_prior": "tfvae.models.priors",
    "kl_weight": "tfvae.models.objectives",
}


def __getattr__(name):
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
