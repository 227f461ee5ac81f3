"""Presets: named sets of Config values. `tfvae train --preset NAME`; flags given explicitly win.

A run records the expanded values in config.json, never the preset's name, so
it does not depend on a preset's later definition.

Example:
>>> expand_preset("classic", epochs=1).epochs
1
>>> expand_preset("best").architecture
'conv'
>>> expand_preset("best", condition="label", dataset="mnist").prior
'mog'
"""

from __future__ import annotations

from tfvae.config import Config
from tfvae.errors import ConfigError

__all__ = ["PRESETS", "CONDITIONAL", "preset_values", "expand_preset"]

PRESETS = {
    # The seed's model: a 784-500-20 MLP trained on the one-sample ELBO (the Config defaults).
    "classic": {},
    # The model family of BENCHMARKS.md (`tfvae bench --models`): the classic model with the changes its name says.
    "mlp-iwae5": {"objective": "iwae", "train_samples": 5},
    "mlp-iaf": {"posterior": "iaf"},
    "mlp-vamp": {"prior": "vamp"},
    "conv": {"architecture": "conv"},
    "conv-iwae5": {"architecture": "conv", "objective": "iwae", "train_samples": 5},
    # The best model this 2-core CPU trains in under an hour (BENCHMARKS.md, "Model quality"): the conv networks
    # with D = 32 and the VampPrior (500 pseudo-inputs), the ELBO without warm-up (an epoch at weight 0 blows a
    # VampPrior's rate up), 60 epochs, and the best validation epoch kept.
    "best": {
        "architecture": "conv",
        "latent_dim": 32,
        "prior": "vamp",
        "epochs": 60,
        "keep_best": True,
    },
}


# What a preset changes for a conditional run (`--condition label`): the VampPrior's pseudo-inputs carry no label, so
# the conditional `best` takes the prior BENCHMARKS.md measured best for p(z|y), one learned Gaussian per class (mog).
CONDITIONAL = {
    "best": {"prior": "mog"},
}


def preset_values(name: str, condition: str = "none") -> dict:
    """The Config values preset `name` sets, for a run with `condition` ("none" or "label")."""
    if name not in PRESETS:
        raise ConfigError(f"unknown --preset {name!r}; choose one of: {', '.join(PRESETS)}")
    values = dict(PRESETS[name])
    if condition == "label":
        values.update(CONDITIONAL.get(name, {}))
    return values


def expand_preset(name: str, **explicit) -> Config:
    """The Config of preset `name`, with `explicit` values (flags the user gave) overriding it.

    Raises:
      ConfigError: an unknown preset, or values the Config refuses.
    """
    return Config(**{**preset_values(name, explicit.get("condition", "none")), **explicit})
