"""Datasets: one reader per source, NumPy only, registered in one table; `load_splits` turns any of them into Splits.

    --dataset                     reader                     returns
    binarized_mnist, mnist,       mnist.load_builtin         the built-in 28 x 28 digits and clothes, as always
      fashion_mnist
    tfds:NAME[/CONFIG]            tfds.read                  any TFDS image dataset (--image-key)
    folder:PATH                   folder.read                PNG / JPEG / BMP / GIF files, recursively
    npz:PATH                      npz.read                   x_train [, x_valid, x_test] arrays

`load_images(source, split)` is the same data as one float32 array, what `tfvae.load_images` gives.

Labels (`--condition label`, `load_splits(label_key=...)`): mnist and fashion_mnist their IDX label files;
tfds: the feature `label_key`; folder: each image's first subfolder (PATH/CLASS/... or PATH/train/CLASS/...);
npz: the arrays y_train, y_valid, y_test. binarized_mnist has none. `Splits.labels` and `Splits.classes`.

Every reader of the table has the same shape, `read(argument, ReadOptions) -> Source` (arrays per
split and a description); `tfvae.datasets.images.make_splits` then resizes, converts, carves the
missing evaluation splits, fingerprints and, for the Bernoulli likelihood, binarizes them. No
TensorFlow is imported here (the TFDS reader imports it when it is used); the tf.data pipeline is
`tfvae.pipeline`.

Example:
>>> splits = load_splits("npz:/tmp/glyphs.npz", image_size=(32, 32))  # doctest: +SKIP
>>> splits.image_shape, splits.fingerprint  # doctest: +SKIP
((32, 32, 1), 'train 800 / validation 100 / test 100, sha256 3f1c...')
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

from tfvae.datasets import folder, mnist, npz, tfds
from tfvae.datasets.images import (
    CHANNELS,
    EVALUATION_SEED,
    SPLITS,
    ReadOptions,
    Source,
    Splits,
    binarize,
    evaluation_seeds,
    grey_levels,
    make_splits,
    parse_image_size,
)
from tfvae.datasets.mnist import (
    BUILTIN_DATASETS,
    CACHE_DIR_ENV,
    DATA_DIR_ENV,
    FASHION_MNIST_SYSTEM_DIR,
    MNIST_SHAPE,
    SPLIT_SIZES,
    read_amat,
    read_idx,
)
from tfvae.errors import ConfigError, DataError

__all__ = [
    "SOURCES",
    "BUILTIN_DATASETS",
    "MNIST_SHAPE",
    "DATA_DIR_ENV",
    "CACHE_DIR_ENV",
    "SPLIT_SIZES",
    "EVALUATION_SEED",
    "FASHION_MNIST_SYSTEM_DIR",
    "ReadOptions",
    "Source",
    "Splits",
    "binarize",
    "evaluation_seeds",
    "grey_levels",
    "parse_dataset",
    "parse_image_size",
    "read_amat",
    "read_idx",
    "load_splits",
    "config_splits",
    "load_images",
]

# prefix -> reader: `--dataset PREFIX:ARGUMENT`. A new source is one module and one entry here.
SOURCES = {
    "tfds": tfds.read,
    "folder": folder.read,
    "npz": npz.read,
}
_PATH_SOURCES = ("folder", "npz")  # their argument is a path, made absolute for config.json


def parse_dataset(dataset: str) -> tuple:
    """'folder:imgs' -> ('folder', 'imgs'); a built-in name -> (name, None).

    Raises:
      DataError: neither a built-in name nor PREFIX:ARGUMENT with a known prefix and an argument.
    """
    if dataset in BUILTIN_DATASETS:
        return dataset, None
    prefix, sep, argument = str(dataset).partition(":")
    if not sep or prefix not in SOURCES or not argument:
        raise DataError(
            f"unknown --dataset {dataset!r}; choose one of: {', '.join(BUILTIN_DATASETS)}, "
            + ", ".join(f"{p}:{'PATH' if p in _PATH_SOURCES else 'NAME[/CONFIG]'}" for p in SOURCES)
        )
    return prefix, argument


def canonical_dataset(dataset: str) -> str:
    """The dataset as config.json records it: a folder or .npz path made absolute, anything else unchanged."""
    prefix, argument = parse_dataset(dataset)
    if prefix in _PATH_SOURCES:
        return f"{prefix}:{os.path.abspath(os.path.expanduser(argument))}"
    return dataset


def load_splits(
    dataset: str = "binarized_mnist",
    data_dir: Optional[str] = None,
    *,
    image_key: str = "image",
    image_size=None,
    channels: Optional[int] = None,
    likelihood: str = "bernoulli",
    label_key: Optional[str] = None,
) -> Splits:
    """The train, validation and test images of `dataset` (and their class labels, with `label_key`).

    Args:
      dataset: a built-in name, or tfds:NAME[/CONFIG], folder:PATH, npz:PATH.
      data_dir: where the built-in datasets' files are (see `tfvae.datasets.mnist`).
      image_key: tfds: the image feature.
      image_size: (H, W) or "HxW": resize with the area filter; None keeps the sources' size.
      channels: 1 or 3: convert; None keeps the sources' channels.
      likelihood: "bernoulli": validation and test binarized once, train per epoch;
        anything else (continuous_bernoulli): grey levels in [0, 1] everywhere.
      label_key: read the class labels too (`--condition label`); for tfds: the label feature. None: images only.

    Raises:
      DataError: unknown dataset, missing or bad files, options the built-in datasets do not take; with
        `label_key`, a source without labels, labels that are not one integer >= 0 per image, a class with no
        training image.
    """
    prefix, argument = parse_dataset(dataset)
    options = ReadOptions(image_key=image_key, image_size=parse_image_size(image_size), channels=channels,
                          label_key=label_key)
    if argument is None:
        if options.image_size is not None or options.channels is not None:
            raise DataError(f"--image-size and --channels apply to tfds:, folder: and npz: datasets; {dataset} is "
                            f"28x28 grey (use tfds:{dataset} to resize or convert it)")
        return mnist.load_builtin(dataset, data_dir, grey=likelihood != "bernoulli", labels=label_key is not None)
    if prefix != "tfds" and image_key != ReadOptions.image_key:
        raise DataError(f"--image-key names a TFDS feature; {dataset} has none (leave --image-key out)")
    if prefix != "tfds" and label_key not in (None, "label"):
        raise DataError(f"--label-key names a TFDS feature; {dataset} has none (leave --label-key out)")
    source = SOURCES[prefix](argument, options)
    return make_splits(source, options, likelihood)


def config_splits(config, data_dir: Optional[str] = None, *, prepare: bool = True, log=print) -> Splits:
    """The Splits a run's config describes, the built-in datasets' files read from `data_dir`.

    With `config.data_cache` the splits are read from that prepared cache (`tfvae.datasets.cache`), which is
    prepared first if it does not exist and `prepare` (a multi-worker run's other workers wait for the chief's).
    """
    if getattr(config, "data_cache", None):
        from tfvae.datasets import cache

        options = ReadOptions(image_key=config.image_key, image_size=parse_image_size(config.image_size),
                              channels=config.channels,
                              label_key=config.label_key if config.condition == "label" else None)
        return cache.load_or_prepare(config.dataset, config.data_cache, options, config.likelihood,
                                     data_dir=data_dir, prepare=prepare, log=log)
    return load_splits(
        config.dataset,
        data_dir,
        image_key=config.image_key,
        image_size=config.image_size,
        channels=config.channels,
        likelihood=config.likelihood,
        label_key=config.label_key if config.condition == "label" else None,
    )


def load_images(
    source: str,
    split: str = "train",
    *,
    data_dir: Optional[str] = None,
    image_size=None,
    channels: Optional[int] = None,
    image_key: str = "image",
    likelihood: str = "bernoulli",
    limit: Optional[int] = None,
) -> np.ndarray:
    """The images `tfvae train --dataset SOURCE` trains (split "train") or scores (validation, test) on.

    What the values are, always float32 in [0, 1] (`likelihood="bernoulli"`, the default):

    - `binarized_mnist`: every split binary, {0, 1}: Larochelle's static binarization.
    - `mnist`, `fashion_mnist`, `tfds:`, `folder:`, `npz:` (dynamic binarization): split "train" holds
      grey levels (intensity / 255); training draws x ~ Bernoulli(grey level) from them afresh every
      epoch. "validation" and "test" are binary, {0, 1}: binarized once with the dataset's fixed
      evaluation stream (`EVALUATION_SEED`), exactly the images `tfvae.evaluate` and the run's
      validation figures score. (`tfvae.evaluate` scores the train split binarized once too, with
      the third evaluation stream, `tfvae.datasets.splits.split_images`; this gives its grey levels.)
    - `likelihood="continuous_bernoulli"`: grey levels in every split (binarized_mnist stays binary).

    Sources without a validation or test split have them carved from train as `tfvae train` does
    (`tfvae.datasets.images.carve`), so the three splits never share an image.

    Args:
      source: `binarized_mnist`, `mnist`, `fashion_mnist`, tfds:NAME[/CONFIG], folder:PATH or npz:PATH.
      split: "train", "validation" or "test".
      data_dir: where the built-in datasets' files are; None: $TFVAE_DATA_DIR, then TFDS.
      image_size: 32, "32", "64x48" or (H, W): every image resized with the area filter; None: as stored
        (tfds:, folder:, npz: only).
      channels: 1 (grey) or 3 (RGB): every image converted; None: as stored (tfds:, folder:, npz: only).
      image_key: tfds: the feature that holds the images.
      likelihood: "bernoulli" or "continuous_bernoulli", as the run's `likelihood`.
      limit: the first `limit` images of the split only (`tfvae train --limit` for split "train").

    Returns:
      float32 array (N, H, W, C) in [0, 1]; C is 1 or 3.

    Raises:
      ConfigError: an unknown split or likelihood, a bad `channels` or `limit`.
      DataError: an unknown source, missing or bad files, a bad `image_size`, options a built-in dataset
        does not take.

    Example:
    >>> import os, tempfile, numpy as np, tfvae
    >>> path = os.path.join(tempfile.mkdtemp(), "glyphs.npz")
    >>> np.savez(path, x_train=np.random.default_rng(0).integers(0, 256, (50, 40, 30), dtype=np.uint8))
    >>> x = tfvae.load_images("npz:" + path, image_size=32, channels=3)  # 5 + 5 images carved for validation, test
    >>> x.shape, x.dtype.name, bool(x.min() >= 0 and x.max() <= 1)
    ((40, 32, 32, 3), 'float32', True)
    >>> np.unique(tfvae.load_images("npz:" + path, "test"))  # binarized once, as the run scores it
    array([0., 1.], dtype=float32)
    >>> tfvae.load_images("binarized_mnist", limit=2).shape  # doctest: +SKIP
    (2, 28, 28, 1)
    """
    from tfvae.models import LIKELIHOODS  # the registry only: no TensorFlow

    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    if likelihood not in LIKELIHOODS:
        raise ConfigError(f"unknown likelihood {likelihood!r}; choose one of: {', '.join(LIKELIHOODS)}")
    if channels is not None and (isinstance(channels, bool) or channels not in CHANNELS):
        raise ConfigError(f"channels must be 1 or 3 (or None: as stored), got {channels!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1):
        raise ConfigError(f"limit must be a positive integer (or None: every image), got {limit!r}")
    splits = load_splits(source, data_dir, image_key=image_key, image_size=image_size, channels=channels,
                         likelihood=likelihood)
    images = getattr(splits, split)  # (N, H, W, C)
    if limit is not None:
        if limit > len(images):
            raise ConfigError(f"limit {limit} is larger than the {len(images)} {split} images of {source}")
        images = images[:limit]
    if (splits.dynamic and split == "train") or splits.grey:
        return grey_levels(images)  # uint8 intensities 0..255 -> / 255; float grey levels unchanged
    return images.astype(np.float32)  # binary uint8 {0, 1}, or float32 grey levels: the values as they are
