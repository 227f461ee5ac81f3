"""What the sections' options share: the evaluation defaults, the checks, and JSON for the child processes.

Each section takes its own frozen dataclass of options (`tfvae.bench.SECTIONS`); `run` saves a section's
options as JSON and its child process reads them back. A field named `config` holds a `Config`; tuples
come back from JSON lists.
"""

from __future__ import annotations

import dataclasses

from tfvae.config import Config
from tfvae.errors import ConfigError

__all__ = ["EVAL_IMAGES", "IMPORTANCE_SAMPLES", "at_least", "to_dict", "from_dict"]

EVAL_IMAGES = 10_000  # evaluate, gaps, quality: the first N test images (matmul, conv: the evaluation workload's)
IMPORTANCE_SAMPLES = 5000  # the same sections' K, samples of z per image


def at_least(options, minimum: int, *names: str) -> None:
    """Refuse any of the fields `names` of `options` that is below `minimum` (None passes: not given)."""
    for name in names:
        value = getattr(options, name)
        if value is not None and value < minimum:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least {minimum}, got {value}")


def to_dict(options) -> dict:
    """A section's options as JSON values."""
    values = dataclasses.asdict(options)
    if "config" in values:
        values["config"] = options.config.to_dict()
    return values


def from_dict(cls, values: dict):
    """`cls(**values)`, the inverse of `to_dict`: the config a Config, lists tuples again."""
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    if "config" in values:
        values["config"] = Config.from_dict(values["config"])
    return cls(**values)
