"""The analyses of a trained run (tfvae.analysis), run as sections: `gaps` and `quality`.

They measure how good a run is and where its gap goes, not speed; they run through the bench's runner so
that `tfvae analyze gaps|quality` (and `tfvae bench --sections gaps,quality`) gives each a process of its own
and rows in the report.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from tfvae.bench.options import EVAL_IMAGES, IMPORTANCE_SAMPLES, at_least
from tfvae.errors import ConfigError
from tfvae.analysis.quality import DEFAULT_GAP_EPOCHS, DEFAULT_THRESHOLDS  # NumPy only

__all__ = ["GapsOptions", "QualityOptions", "section_gaps", "section_quality"]

REFINE_STEPS = 1000  # gaps: Adam steps on each image's posterior


@dataclasses.dataclass(frozen=True)
class GapsOptions:
    """gaps: a trained run's inference gaps on its first test images."""

    run_dir: str  # the trained run
    data_dir: Optional[str] = None  # local data laid out like shared/data (None: the run's, then TFDS)
    eval_images: int = EVAL_IMAGES  # the first N test images
    importance_samples: int = IMPORTANCE_SAMPLES  # K of log p(x)
    refine_steps: int = REFINE_STEPS  # Adam steps on each image's own posterior
    progress: bool = False  # progress bars on stderr

    def __post_init__(self):
        if not self.run_dir:
            raise ConfigError("the gaps section needs --run-dir (a trained run): it measures its encoder's inference gaps")
        at_least(self, 1, "eval_images", "importance_samples")
        at_least(self, 0, "refine_steps")


@dataclasses.dataclass(frozen=True)
class QualityOptions:
    """quality: the time a finished (or stopped) run took to reach given test log p(x) levels."""

    run_dir: str  # the trained run, with every epoch kept (--keep-checkpoints 0)
    data_dir: Optional[str] = None  # local data laid out like shared/data (None: the run's, then TFDS)
    eval_images: int = EVAL_IMAGES  # the first N test images measure the gap log p(x) - ELBO
    importance_samples: int = IMPORTANCE_SAMPLES  # K of that gap's log p(x)
    thresholds: tuple = DEFAULT_THRESHOLDS  # nats
    gap_epochs: tuple = DEFAULT_GAP_EPOCHS  # epochs whose gap is measured, besides the run's model
    evaluation: Optional[str] = None  # `tfvae evaluate --json` of the run's model on all test images
    progress: bool = False  # progress bars on stderr

    def __post_init__(self):
        if not self.run_dir:
            raise ConfigError("the quality section needs --run-dir (a trained run): it evaluates the run's epochs")
        at_least(self, 1, "eval_images", "importance_samples")
        if any(isinstance(e, bool) or not isinstance(e, int) or e < 1 for e in self.gap_epochs):
            raise ConfigError(f"--gap-epochs must be positive integers, got {list(self.gap_epochs)}")


def section_gaps(options: GapsOptions) -> dict:
    """A trained run's inference gaps on the first --eval-images test images (tfvae.analysis.gaps)."""
    from tfvae.analysis.gaps import inference_gaps
    from tfvae.datasets.splits import split_images
    from tfvae.runs import load_vae

    config, vae = load_vae(options.run_dir)
    images = split_images(config, "test", options.data_dir)
    if options.eval_images > len(images):
        raise ConfigError(f"--eval-images {options.eval_images} is larger than the {len(images)} test images")
    gaps = inference_gaps(config, vae, images[: options.eval_images], refine_steps=options.refine_steps,
                          importance_samples=options.importance_samples, progress=options.progress)
    return gaps.to_dict()


def section_quality(options: QualityOptions) -> dict:
    """Time to quality of a finished (or stopped) run from its kept epochs (tfvae.analysis.quality)."""
    from tfvae.analysis.quality import time_to_quality

    return time_to_quality(options.run_dir, gap_images=options.eval_images,
                           importance_samples=options.importance_samples, gap_epochs=options.gap_epochs,
                           thresholds=options.thresholds, evaluation=options.evaluation, data_dir=options.data_dir,
                           progress=options.progress)
