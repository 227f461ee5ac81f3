"""Datasets: one reader per source, NumPy only, registered in one table; `load_splits` turns any of them into Splits.

    --dataset                     reader                     returns
    binarized_mnist, mnist,       mnist.load_builtin         the built-in 28 x 28 digits and clothes, as always
      fashion_mnist
    tfds:NAME[/CONFIG]            tfds.read                  any TFDS image dataset (--image-key)
    folder:PATH                   folder.read                PNG / JPEG / BMP / GIF files, recursively
    npz:PATH                      npz.read                   x_train [, x_valid, x_test] arrays

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

from tfvae.datasets import folder, mnist, npz, tfds
from tfvae.datasets.images import (
    EVALUATION_SEED,
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
from tfvae.errors import DataError

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
) -> Splits:
    """The train, validation and test images of `dataset`.

    Args:
      dataset: a built-in name, or tfds:NAME[/CONFIG], folder:PATH, npz:PATH.
      data_dir: where the built-in datasets' files are (see `tfvae.datasets.mnist`).
      image_key: tfds: the image feature.
      image_size: (H, W) or "HxW": resize with the area filter; None keeps the sources' size.
      channels: 1 or 3: convert; None keeps the sources' channels.
      likelihood: "bernoulli": validation and test binarized once, train per epoch;
        anything else (continuous_bernoulli): grey levels in [0, 1] everywhere.

    Raises:
      DataError: unknown dataset, missing or bad files, options the built-in datasets do not take.
    """
    prefix, argument = parse_dataset(dataset)
    options = ReadOptions(image_key=image_key, image_size=parse_image_size(image_size), channels=channels)
    if argument is None:
        if options.image_size is not None or options.channels is not None:
            raise DataError(f"--image-size and --channels apply to tfds:, folder: and npz: datasets; {dataset} is "
                            f"28x28 grey (use tfds:{dataset} to resize or convert it)")
        return mnist.load_builtin(dataset, data_dir, grey=likelihood != "bernoulli")
    if prefix != "tfds" and image_key != ReadOptions.image_key:
        raise DataError(f"--image-key names a TFDS feature; {dataset} has none (leave --image-key out)")
    source = SOURCES[prefix](argument, options)
    return make_splits(source, options, likelihood)


def config_splits(config, data_dir: Optional[str] = None) -> Splits:
    """The Splits a run's config describes, the built-in datasets' files read from `data_dir`."""
    return load_splits(
        config.dataset,
        data_dir,
        image_key=config.image_key,
        image_size=config.image_size,
        channels=config.channels,
        likelihood=config.likelihood,
    )
