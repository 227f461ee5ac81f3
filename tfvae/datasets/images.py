"""What every source shares: the `Splits` a run trains on, and the NumPy steps from a reader's arrays to them.

    reader -> Source: {split: (N, H, W[, C]) uint8 0..255 or float in [0, 1]}, a description
           -> prepare: checked, resized (area filter), converted to 1 or 3 channels, float32 (N, H, W, C) in [0, 1]
           -> carve:   validation / test taken from train (seed SPLIT_SEED) when the source has none
           -> Splits:  bernoulli: train grey levels (binarized per epoch), validation and test binarized once
                       continuous_bernoulli: grey levels everywhere
    labels (--condition label): {split: (N,) integers} and the class names, carved with the images, checked
                       (`check_labels`) and part of the fingerprint; without them everything is as before.

NumPy and Pillow only.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Optional

import numpy as np

from tfvae.errors import DataError

__all__ = [
    "EVALUATION_SEED",
    "SPLIT_SEED",
    "CARVED_FRACTION",
    "CHANNELS",
    "Splits",
    "Source",
    "ReadOptions",
    "evaluation_seeds",
    "binarize",
    "grey_levels",
    "parse_image_size",
    "prepare",
    "carve",
    "check_labels",
    "fingerprint",
    "make_splits",
]

# Seeds the one-off binarization of the evaluation splits (and of the training split when it is
# evaluated) of the dynamic datasets: numpy.random.SeedSequence(EVALUATION_SEED).spawn(3) gives the
# validation, test and train streams. Part of the datasets' definition, never a run's --seed.
EVALUATION_SEED = 0
# A source without a validation (or test) split gives CARVED_FRACTION of its training images (at least
# one) to it, chosen by numpy.random.default_rng(SPLIT_SEED): a fixed part of the data's definition.
SPLIT_SEED = 0
CARVED_FRACTION = 0.1
SPLITS = ("train", "validation", "test")
CHANNELS = (1, 3)  # grey or RGB
_MAX_INTENSITY = np.iinfo(np.uint8).max  # 255: the grey level of a fully lit pixel, p(x=1) = 1
# ITU-R 601-2 luma, the weights Pillow's convert("L") uses: RGB -> grey.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclasses.dataclass(frozen=True)
class Splits:
    """The three splits of one dataset, as arrays of shape (N, H, W, C).

    Static datasets hold x in {0, 1} everywhere. For dynamic ones `train` holds
    grey levels (uint8 0..255, or float32 in [0, 1]) that the pipeline binarizes
    afresh every epoch; validation and test are already binarized. Under the
    continuous-Bernoulli likelihood every split holds float32 grey levels and
    `dynamic` is False.
    """

    train: np.ndarray  # (N_train, H, W, C): {0, 1}, or grey levels if dynamic
    validation: np.ndarray  # (N_valid, H, W, C)
    test: np.ndarray  # (N_test, H, W, C)
    dynamic: bool  # True: train holds grey levels, binarized per epoch by the pipeline
    fingerprint: Optional[str] = None  # sizes and sha256 of the images (sources other than the built-in ones)
    description: str = ""  # where the images came from, in words
    # --condition label: {split: (N_split,) int32 class indices into `classes`}; None: read without labels.
    labels: Optional[dict] = dataclasses.field(default=None, compare=False)
    classes: Optional[tuple] = None  # the class names in label order (strings)

    @property
    def image_shape(self) -> tuple:
        return tuple(int(d) for d in self.train.shape[1:])


@dataclasses.dataclass(frozen=True)
class ReadOptions:
    """How a reader turns files into images (the CLI's --image-key, --image-size, --channels)."""

    image_key: str = "image"  # tfds: the feature holding the images
    label_key: Optional[str] = None  # tfds: the feature holding the class labels; None: no labels are read
    image_size: Optional[tuple] = None  # (H, W): resize every image with the area filter; None: keep
    channels: Optional[int] = None  # 1 or 3: convert; None: keep (every image must agree)


@dataclasses.dataclass(frozen=True)
class Source:
    """What a reader returns: arrays per split (N, H, W[, C]) uint8 0..255 or float in [0, 1], and a description.

    `splits` holds "train" and any of "validation", "test" the source has; `labels` the same splits' class
    indices (N,) and `classes` their names, when labels were asked for (`ReadOptions.label_key`).
    """

    splits: dict
    description: str
    labels: Optional[dict] = None
    classes: Optional[tuple] = None


def evaluation_seeds() -> list:
    """The seeds of the one-off binarizations of the validation, test and train splits, in that order."""
    return np.random.SeedSequence(EVALUATION_SEED).spawn(3)


def grey_levels(images: np.ndarray) -> np.ndarray:
    """uint8 intensities 0..255 or floats in [0, 1] -> float32 in [0, 1]."""
    if images.dtype == np.uint8:
        return images.astype(np.float32) / _MAX_INTENSITY
    return images.astype(np.float32)


def binarize(intensities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """x ~ Bernoulli(grey level), elementwise, as uint8 in {0, 1} (uint8 input: grey level = intensity / 255)."""
    p_x = grey_levels(intensities)
    return (rng.random(intensities.shape, dtype=np.float32) < p_x).astype(np.uint8)


def parse_image_size(value) -> Optional[tuple]:
    """'H' or 'HxW' (or a sequence) -> (H, W); None stays None.

    Raises:
      DataError: not one or two positive integers.
    """
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = str(value)
    try:
        parts = [int(p) for p in value.lower().split("x")] if isinstance(value, str) else [int(p) for p in value]
    except (TypeError, ValueError):
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise DataError(f"--image-size must be H or HxW with positive integers (e.g. 32 or 64x48), got {value!r}")
    return tuple(parts)


def prepare(images, where: str, options: ReadOptions) -> np.ndarray:
    """One split of a reader's images -> float32 (N, H, W, C) in [0, 1], resized and converted as asked.

    Raises:
      DataError: not a numeric image array, values out of range or NaN, channels other than 1 or 3.
    """
    images = np.asarray(images)
    if images.dtype == object or not (images.dtype == np.uint8 or np.issubdtype(images.dtype, np.floating)):
        raise DataError(f"{where} holds {images.dtype} values; expected uint8 in 0-255 or floats in [0, 1]")
    if images.ndim == 3:
        images = images[..., None]  # (N, H, W) -> (N, H, W, 1)
    if images.ndim != 4 or 0 in images.shape[1:]:
        raise DataError(f"{where} has shape {images.shape}; expected (N, H, W) or (N, H, W, C)")
    if images.dtype != np.uint8:
        bad = ~((images >= 0) & (images <= 1))  # NaN fails both comparisons
        if bad.any():
            index = np.unravel_index(int(np.argmax(bad)), images.shape)
            raise DataError(f"{where} image {index[0]} holds {float(images[index])}; float images must lie in [0, 1] (no NaN)")
    channels = images.shape[-1]
    if options.channels is None and channels not in CHANNELS:
        raise DataError(f"{where} images have {channels} channels; pass --channels 1 or 3 to convert them")
    images = grey_levels(images)
    if options.channels is not None and options.channels != channels:
        images = _convert_channels(images, options.channels, where)
    if options.image_size is not None and images.shape[1:3] != tuple(options.image_size):
        images = _resize(images, options.image_size)
    return images


def _convert_channels(images: np.ndarray, channels: int, where: str) -> np.ndarray:
    """float32 (N, H, W, c) -> (N, H, W, channels): grey copied to RGB, RGB (or RGBA, alpha dropped) to luma."""
    if channels == 3 and images.shape[-1] == 1:
        return np.repeat(images, 3, axis=-1)
    if channels == 1 and images.shape[-1] in (3, 4):
        return (images[..., :3] @ _LUMA)[..., None].astype(np.float32)
    if channels == 3 and images.shape[-1] == 4:
        return images[..., :3]
    raise DataError(f"{where} images have {images.shape[-1]} channels; cannot convert them to {channels}")


def _resize(images: np.ndarray, size: tuple) -> np.ndarray:
    """float32 (N, h, w, C) -> (N, H, W, C) with Pillow's area (box) filter, channel by channel."""
    from PIL import Image

    height, width = size
    out = np.empty((len(images), height, width, images.shape[-1]), np.float32)
    for i, image in enumerate(images):
        for c in range(images.shape[-1]):
            plane = Image.fromarray(image[..., c], mode="F").resize((width, height), Image.Resampling.BOX)
            out[i, ..., c] = np.asarray(plane)
    return np.clip(out, 0.0, 1.0)


def carve(images: dict, description: str, labels: Optional[dict] = None):
    """{"train", "validation", "test"}: missing evaluation splits carved from train with SPLIT_SEED.

    With `labels` ({split: (N,)}), returns (images, labels), the labels carved with their images.

    Raises:
      DataError: too few images to give every split at least one.
    """
    missing = [split for split in SPLITS[1:] if split not in images]
    train = images["train"]
    carved = max(1, round(CARVED_FRACTION * len(train)))
    needed = 1 + carved * len(missing)
    if len(train) < needed:
        what = f"{len(train)} training image{'s' if len(train) != 1 else ''}"
        raise DataError(
            f"{description} has {what}; tfvae needs at least {needed} "
            + (f"(it carves {', '.join(missing)} from train)" if missing else "")
        )
    out = dict(images)
    out_labels = dict(labels) if labels is not None else None
    if missing:
        order = np.random.default_rng(SPLIT_SEED).permutation(len(train))
        for i, split in enumerate(missing):
            out[split] = train[np.sort(order[i * carved:(i + 1) * carved])]
            if labels is not None:
                out_labels[split] = labels["train"][np.sort(order[i * carved:(i + 1) * carved])]
        out["train"] = train[np.sort(order[len(missing) * carved:])]
        if labels is not None:
            out_labels["train"] = labels["train"][np.sort(order[len(missing) * carved:])]
    for split in SPLITS:
        if len(out[split]) == 0:
            raise DataError(f"{description}: the {split} split is empty")
    if labels is None:
        return {split: out[split] for split in SPLITS}
    return {split: out[split] for split in SPLITS}, {split: out_labels[split] for split in SPLITS}


def check_labels(labels: dict, sizes: dict, description: str, classes: Optional[tuple] = None) -> tuple:
    """Class labels per split -> ({split: (N,) int32}, class names), or a one-line DataError.

    Labels must be integers >= 0 (bool and float arrays are refused), one per image of their split; every
    class must have a training image. Without `classes` the classes are "0", ..., str(max label).

    Args:
      labels: {split: array-like (N,)}, the splits of `sizes`.
      sizes: {split: number of images}.
      description: names the source in the message.
      classes: the source's own class names in label order, or None.
    """
    checked = {}
    for split, values in labels.items():
        values = np.asarray(values)
        if values.dtype.kind not in "iu" or values.ndim != 1:
            raise DataError(f"{description} ({split}): labels must be integers, one per image, got "
                            f"{values.dtype} of shape {values.shape}")
        if len(values) != sizes[split]:
            raise DataError(f"{description} ({split}): {len(values)} labels for {sizes[split]} images; "
                            "give one label per image")
        if len(values) and values.min() < 0:
            raise DataError(f"{description} ({split}): label {int(values.min())} is negative; labels are class "
                            "indices 0, 1, ...")
        checked[split] = values.astype(np.int64)
    if classes is None:
        classes = tuple(str(k) for k in range(int(checked["train"].max()) + 1))
    classes = tuple(str(c) for c in classes)
    seen = np.bincount(checked["train"], minlength=len(classes))
    for split, values in checked.items():
        if len(values) and values.max() >= len(classes):
            raise DataError(f"{description} ({split}): label {int(values.max())} is no class of the training "
                            f"labels 0..{len(classes) - 1}")
    empty = [classes[k] for k in range(len(classes)) if seen[k] == 0]
    if empty:
        raise DataError(f"{description}: class {empty[0]!r} has no training image"
                        + (f" ({len(empty)} classes have none)" if len(empty) > 1 else "")
                        + "; every class needs one")
    return {split: values.astype(np.int32) for split, values in checked.items()}, classes


def fingerprint(images: dict, labels: Optional[dict] = None, classes: Optional[tuple] = None) -> str:
    """'train N / validation N / test N, sha256 <16 hex>' of the prepared float32 splits (and, for a conditional
    run, of their labels and the class names: without labels the digest is the images' alone, as before)."""
    digest = hashlib.sha256()
    for split in SPLITS:
        array = np.ascontiguousarray(images[split], dtype=np.float32)
        digest.update(f"{split}:{array.shape}".encode())
        digest.update(array.tobytes())
    if labels is not None:
        digest.update(("classes:" + "\x1f".join(classes)).encode())
        for split in SPLITS:
            digest.update(f"labels {split}:".encode())
            digest.update(np.ascontiguousarray(labels[split], dtype=np.int32).tobytes())
    sizes = " / ".join(f"{split} {len(images[split])}" for split in SPLITS)
    return f"{sizes}, sha256 {digest.hexdigest()[:16]}"


def make_splits(source: Source, options: ReadOptions, likelihood: str) -> Splits:
    """A reader's Source -> the run's Splits: prepared, carved, fingerprinted, binarized for the Bernoulli likelihood."""
    prepared = {split: prepare(array, f"{source.description} ({split})", options)
                for split, array in source.splits.items()}
    shapes = {split: array.shape[1:] for split, array in prepared.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{split} {'x'.join(map(str, shape))}" for split, shape in shapes.items())
        raise DataError(f"{source.description}: the splits differ in image shape ({listed}); pass --image-size and --channels")
    labels = classes = None
    if options.label_key is not None:  # --condition label
        if source.labels is None:
            raise DataError(f"{source.description} has no class labels; --condition label needs them")
        labels, classes = check_labels(source.labels, {split: len(a) for split, a in prepared.items()},
                                       source.description, source.classes)
        images, labels = carve(prepared, source.description, labels)
    else:
        images = carve(prepared, source.description)
    data_fingerprint = fingerprint(images, labels, classes)
    conditioning = dict(labels=labels, classes=classes)
    if likelihood != "bernoulli":  # grey levels everywhere
        return Splits(**images, dynamic=False, fingerprint=data_fingerprint, description=source.description,
                      **conditioning)
    validation_rng, test_rng = (np.random.default_rng(s) for s in evaluation_seeds()[:2])
    return Splits(
        train=images["train"],
        validation=binarize(images["validation"], validation_rng),
        test=binarize(images["test"], test_rng),
        dynamic=True,
        fingerprint=data_fingerprint,
        description=source.description,
        **conditioning,
    )
