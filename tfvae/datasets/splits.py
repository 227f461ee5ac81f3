"""One split of a run's (or a dataset's) images, read as `tfvae train` reads them and scored as `tfvae evaluate` scores them.

Evaluation, export, the analyses, the benchmarks and the shipped models' builder all read their images here:

    split_images(config, split)         a run's split: its dataset, image size and channels, checked against its fingerprint
    split_data(config, split)           the same, and a conditional run's labels
    dataset_images(dataset, split)      any dataset's split, for a model saved without a run (`tfvae evaluate --model`)

The training split of a dynamically binarized dataset is binarized once, with the dataset's fixed evaluation
stream, so every model is scored on the same images.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

from tfvae.datasets import DATA_DIR_ENV, binarize, config_splits, evaluation_seeds, grey_levels, load_splits
from tfvae.datasets.cache import CACHE_FILE
from tfvae.errors import ConfigError, DataError

__all__ = ["SPLITS", "dataset_images", "split_data", "split_images"]

SPLITS = ("test", "validation", "train")


def dataset_images(
    dataset: str,
    split: str = "test",
    data_dir: Optional[str] = None,
    *,
    likelihood: str = "bernoulli",
    limit: Optional[int] = None,
    image_key: str = "image",
    image_size=None,
    channels: Optional[int] = None,
) -> np.ndarray:
    """The images (N, H, W, C) of one split of a dataset, as `tfvae train` reads it and `tfvae evaluate` scores it.

    Binary uint8 for the Bernoulli likelihood (the training split of a dynamically binarized dataset
    binarized once, with the dataset's fixed evaluation stream), grey levels for the continuous Bernoulli.

    Args:
      dataset: a built-in name, or tfds:NAME[/CONFIG], folder:PATH, npz:PATH (`tfvae.datasets`).
      split: "test", "validation" or "train".
      data_dir: where the built-in datasets' files are; None: $TFVAE_DATA_DIR, then TFDS.
      likelihood: the model's (`vae.likelihood`).
      limit: the first `limit` images only.
      image_key, image_size, channels: as `tfvae train`'s --image-key, --image-size, --channels.

    Raises:
      ConfigError: an unknown split, a bad limit. DataError: missing or bad data.
    """
    _check_split(split, limit)
    splits = load_splits(dataset, data_dir, image_key=image_key, image_size=image_size, channels=channels,
                         likelihood=likelihood)
    return _first(_split_of(splits, split), limit, split)


def split_data(config, split: str, data_dir: Optional[str] = None) -> tuple:
    """`split_images` and, for a conditional run, the split's labels (N,) int32 (None for an unconditional one)."""
    return _split_images(config, split, data_dir)


def split_images(config, split: str, data_dir: Optional[str] = None) -> np.ndarray:
    """The images (N, H, W, C) of one split of a run's dataset: binary uint8, or grey levels for the continuous Bernoulli.

    The data come from `data_dir`, else $TFVAE_DATA_DIR, else the run's own
    data directory if it exists on this machine, else TFDS. The training split
    of a dynamically binarized dataset holds intensities; it is binarized once,
    with the dataset's fixed evaluation stream (`tfvae.datasets.evaluation_seeds`),
    so every run is scored on the same images.
    """
    return _split_images(config, split, data_dir)[0]


def _split_images(config, split: str, data_dir: Optional[str] = None) -> tuple:
    if data_dir is None and not os.environ.get(DATA_DIR_ENV) and config.data_dir and os.path.isdir(config.data_dir):
        data_dir = config.data_dir
    conditional = config.condition == "label"
    cache = getattr(config, "data_cache", None)
    if cache and os.path.exists(os.path.join(cache, CACHE_FILE)):  # the run's prepared cache, where it still is
        splits = config_splits(config, data_dir, prepare=False)
    else:
        splits = load_splits(config.dataset, data_dir, image_key=config.image_key, image_size=config.image_size,
                             channels=config.channels, likelihood=config.likelihood,
                             label_key=config.label_key if conditional else None)
    if config.data_fingerprint is not None and splits.fingerprint != config.data_fingerprint:
        raise DataError(
            f"the data of this run changed since it was trained: {config.dataset} is now "
            f"{splits.fingerprint!r}, the run was trained on {config.data_fingerprint!r}"
        )
    if conditional and tuple(splits.classes) != tuple(config.classes):
        raise DataError(f"the classes of this run changed since it was trained: {config.dataset} now has "
                        f"{list(splits.classes)}, the run was trained on {list(config.classes)}")
    return _split_of(splits, split), (splits.labels[split] if conditional else None)


def _split_of(splits, split: str) -> np.ndarray:
    """One split of `splits`; the training split of a dynamically binarized dataset binarized once."""
    images = getattr(splits, split)
    if split == "train" and splits.dynamic:
        images = binarize(images, np.random.default_rng(evaluation_seeds()[2]))
    elif splits.grey:  # uint8 intensities of the continuous Bernoulli: its grey levels, what evaluation scores
        images = grey_levels(np.asarray(images))
    return np.asarray(images)  # rows of a prepared cache read into memory: this split only


def _first(images, limit: Optional[int], split: str) -> np.ndarray:
    if limit is None:
        return images
    if limit > len(images):
        raise ConfigError(f"--limit {limit} is larger than the {len(images)} {split} images")
    return images[:limit]


def _check_split(split: str, limit: Optional[int]) -> None:
    if split not in SPLITS:
        raise ConfigError(f"unknown --split {split!r}; choose one of: {', '.join(SPLITS)}")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
            raise ConfigError(f"--limit must be a positive integer, got {limit!r}")
