"""The data of a run, in one import: the readers (`tfvae.datasets`, NumPy only) and the tf.data pipeline (`tfvae.pipeline`).

Kept so that `from tfvae.data import load_splits, make_dataset` goes on working; new code may import
from the two modules directly. Importing this module does not import TensorFlow.
"""

from tfvae.datasets import (  # noqa: F401  (re-exported)
    BUILTIN_DATASETS,
    CACHE_DIR_ENV,
    DATA_DIR_ENV,
    EVALUATION_SEED,
    FASHION_MNIST_SYSTEM_DIR,
    SOURCES,
    SPLIT_SIZES,
    Splits,
    binarize,
    config_splits,
    evaluation_seeds,
    load_splits,
    read_amat,
    read_idx,
)
from tfvae.pipeline import make_dataset, make_training_dataset, steps_per_epoch  # noqa: F401

__all__ = [
    "BUILTIN_DATASETS",
    "SOURCES",
    "DATA_DIR_ENV",
    "CACHE_DIR_ENV",
    "SPLIT_SIZES",
    "EVALUATION_SEED",
    "evaluation_seeds",
    "FASHION_MNIST_SYSTEM_DIR",
    "Splits",
    "read_idx",
    "read_amat",
    "load_splits",
    "config_splits",
    "make_dataset",
    "make_training_dataset",
    "binarize",
    "steps_per_epoch",
]
