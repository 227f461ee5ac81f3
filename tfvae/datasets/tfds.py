"""`tfds:NAME[/CONFIG]`: any TensorFlow Datasets dataset with an image feature (`--image-key`, default `image`).

With `--condition label`, the class labels are the feature `--label-key` (default `label`); a `ClassLabel`
feature gives its class names, any other integer feature "0", "1", ... .

Its train / validation / test splits are used as they are; missing evaluation splits are carved from
train (`tfvae.datasets.images.carve`). TFDS (and TensorFlow) are imported only when such a dataset is read.
"""

from __future__ import annotations

import numpy as np

from tfvae.datasets.images import ReadOptions, Source, prepare
from tfvae.errors import DataError

__all__ = ["SPLIT_NAMES", "read"]

# tfvae split -> the TFDS split names that stand for it, first match wins.
SPLIT_NAMES = {"train": ("train",), "validation": ("validation", "valid", "val"), "test": ("test",)}
# When TFDS lists no splits (a dataset whose metadata is not prepared, or tfds.testing.mock_data), these are read.
_DEFAULT_SPLITS = {"train": "train", "test": "test"}


def read(name: str, options: ReadOptions) -> Source:
    """The images of TFDS dataset `name` ("mnist", "cifar10", "emnist/letters"), by split, as uint8 arrays."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DataError(f"tfds:{name} needs tensorflow-datasets, which is not importable ({e})") from None
    try:
        builder = tfds.builder(name)
    except Exception as e:  # DatasetNotFoundError, a bad config name, a broken install: all say the same to the user
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"no TFDS dataset tfds:{name} ({reason[:200]})") from None
    features = builder.info.features
    feature = features[options.image_key] if options.image_key in features.keys() else None
    if not isinstance(feature, tfds.features.Image):
        images = [k for k, v in features.items() if isinstance(v, tfds.features.Image)]
        hint = f"pass --image-key {images[0]}" if images else "it has no image feature"
        raise DataError(
            f"tfds:{name} has no image feature {options.image_key!r} (features: {', '.join(features.keys())}); {hint}"
        )
    classes = None
    if options.label_key is not None:
        if options.label_key not in features.keys():
            raise DataError(f"tfds:{name} has no label feature {options.label_key!r} (features: "
                            f"{', '.join(features.keys())}); pass --label-key")
        classes = getattr(features[options.label_key], "names", None)
        classes = tuple(classes) if classes else None
    available = set(builder.info.splits.keys())
    chosen = {split: next((n for n in names if n in available), None) for split, names in SPLIT_NAMES.items()}
    chosen = {split: n for split, n in chosen.items() if n} if available else dict(_DEFAULT_SPLITS)
    if "train" not in chosen:
        raise DataError(f"tfds:{name} has no train split (splits: {', '.join(sorted(available))})")
    try:
        if not builder.is_prepared():
            builder.download_and_prepare()
        read = {split: _stack(tfds, builder.as_dataset(split=tfds_split), f"tfds:{name} ({split})", options)
                for split, tfds_split in chosen.items()}
    except DataError:
        raise
    except Exception as e:  # download, checksum and preparation failures come in many types
        raise DataError(f"TFDS cannot provide tfds:{name} ({type(e).__name__}: {str(e)[:200]})") from None
    splits = {split: images for split, (images, _) in read.items()}
    labels = {split: labels for split, (_, labels) in read.items()} if options.label_key is not None else None
    return Source(splits, f"tfds:{name}", labels=labels, classes=classes)


def _stack(tfds, dataset, where: str, options: ReadOptions):
    """All images of one split, (N, H, W, C), and their labels (N,) (None without `label_key`); one example at a
    time (batch_size=-1 is not safe everywhere).

    Images of several sizes are resized one by one to --image-size, or refused without it.
    """
    examples = list(tfds.as_numpy(dataset))
    images = [example[options.image_key] for example in examples]
    labels = None if options.label_key is None else np.array([example[options.label_key] for example in examples])
    return _stack_images(images, where, options), labels


def _stack_images(images, where: str, options: ReadOptions) -> np.ndarray:
    if not images:
        raise DataError(f"{where} holds no images")
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        if options.image_size is None:
            first = next(i for i, image in enumerate(images) if image.shape != images[0].shape)
            raise DataError(f"{where}: image {first} is {images[first].shape}, image 0 is {images[0].shape}; "
                            "pass --image-size to resize every image")
        return np.concatenate([prepare(image[None], where, options) for image in images])
    return np.stack(images)
