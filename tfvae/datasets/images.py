"""What every source shares: the `Splits` a run trains on, and the NumPy steps from a reader's arrays to them.

    reader -> Source: {split: (N, H, W[, C]) uint8 0..255 or float in [0, 1]}, a description
           -> prepare: checked, resized (area filter), converted to 1 or 3 channels: (N, H, W, C) uint8 0..255
                       for uint8 sources (resized and converted into uint8), float32 in [0, 1] for float ones
           -> carve:   validation / test taken from train (seed SPLIT_SEED) when the source has none
           -> Splits:  bernoulli: train intensities (binarized per epoch), validation and test binarized once
                       continuous_bernoulli: intensities everywhere, `grey` (the pipeline divides by 255 per batch)

Memory: images stay in their reader's type (uint8 for image files) from reading to the batch. No step makes a
float32 copy of a whole split: conversions, the fingerprint and the one-off binarizations go a chunk at a time,
and carving moves the training rows down in place (`carve`).
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
    "CHUNK",
]

CHUNK = 4096  # images per step of the chunked conversions (a few MB at 28 x 28, 50 MB at 64 x 64 x 3)

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
_CONVERSIONS = ((3, 1), (1, 3), (1, 4), (3, 4))  # (to, from) channels: grey -> RGB, RGB(A) -> grey, RGBA -> RGB
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
    # True: uint8 arrays hold intensities 0..255 in every split, their grey levels (/ 255) the data (the continuous
    # Bernoulli on uint8 sources); the pipeline converts per batch. False: uint8 is {0, 1}, or intensities of a
    # dynamic training split; float32 holds the values themselves.
    grey: bool = False
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
    """x ~ Bernoulli(grey level), elementwise, as uint8 in {0, 1} (uint8 input: grey level = intensity / 255).

    A chunk of images at a time: the generator's stream, and so the result, is the one of a single draw."""
    out = np.empty(intensities.shape, np.uint8)
    for start in range(0, len(intensities), CHUNK):
        p_x = grey_levels(np.asarray(intensities[start : start + CHUNK]))
        out[start : start + CHUNK] = rng.random(p_x.shape, dtype=np.float32) < p_x
    return out


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
    """One split of a reader's images -> (N, H, W, C), resized and converted as asked: uint8 intensities for uint8
    images (resized and converted into uint8, rounded), float32 grey levels in [0, 1] for float ones.

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
        for start in range(0, len(images), CHUNK):
            chunk = images[start : start + CHUNK]
            bad = ~((chunk >= 0) & (chunk <= 1))  # NaN fails both comparisons
            if bad.any():
                index = np.unravel_index(int(np.argmax(bad)), chunk.shape)
                raise DataError(f"{where} image {start + index[0]} holds {float(chunk[index])}; float images must "
                                "lie in [0, 1] (no NaN)")
    channels = images.shape[-1]
    if options.channels is None and channels not in CHANNELS:
        raise DataError(f"{where} images have {channels} channels; pass --channels 1 or 3 to convert them")
    if options.channels is not None and options.channels != channels and (options.channels, channels) not in _CONVERSIONS:
        raise DataError(f"{where} images have {channels} channels; cannot convert them to {options.channels}")
    size = tuple(options.image_size) if options.image_size is not None else tuple(images.shape[1:3])
    out_channels = options.channels or channels
    if size == tuple(images.shape[1:3]) and out_channels == channels:
        return images if images.dtype == np.uint8 else images.astype(np.float32, copy=False)  # as read: no copy
    dtype = np.uint8 if images.dtype == np.uint8 else np.float32
    out = np.empty((len(images), *size, out_channels), dtype)
    for start in range(0, len(images), CHUNK):  # a chunk at a time: never a float copy of the split
        chunk = grey_levels(images[start : start + CHUNK])
        if out_channels != channels:
            chunk = _convert_channels(chunk, out_channels)
        if size != chunk.shape[1:3]:
            chunk = _resize(chunk, size)
        out[start : start + CHUNK] = _to_uint8(chunk) if dtype == np.uint8 else chunk
    return out


def _to_uint8(grey: np.ndarray) -> np.ndarray:
    """float32 grey levels in [0, 1] -> uint8 intensities, rounded to the nearest of the 256 levels."""
    return np.rint(np.clip(grey, 0.0, 1.0) * _MAX_INTENSITY).astype(np.uint8)


def _convert_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """float32 (N, H, W, c) -> (N, H, W, channels): grey copied to RGB, RGB (or RGBA, alpha dropped) to luma."""
    if channels == 3 and images.shape[-1] == 1:
        return np.repeat(images, 3, axis=-1)
    if channels == 1 and images.shape[-1] in (3, 4):
        return (images[..., :3] @ _LUMA)[..., None].astype(np.float32)
    return images[..., :3]  # RGBA -> RGB


def _resize(images: np.ndarray, size: tuple) -> np.ndarray:
    """float32 (N, h, w, C) -> (N, H, W, C) with Pillow's area (box) filter, channel by channel."""
    from PIL import Image

    height, width = size
    out = np.empty((len(images), height, width, images.shape[-1]), np.float32)
    for i, image in enumerate(images):
        for c in range(images.shape[-1]):
            plane = Image.fromarray(np.ascontiguousarray(image[..., c]), mode="F").resize((width, height),
                                                                                        Image.Resampling.BOX)
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
        kept = np.sort(order[len(missing) * carved:])
        out["train"] = _keep_rows(train, kept)
        if labels is not None:
            out_labels["train"] = labels["train"][kept]
    for split in SPLITS:
        if len(out[split]) == 0:
            raise DataError(f"{description}: the {split} split is empty")
    if labels is None:
        return {split: out[split] for split in SPLITS}
    return {split: out[split] for split in SPLITS}, {split: out_labels[split] for split in SPLITS}


def _keep_rows(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """array[rows] for ascending `rows`, moved down within `array` itself when it is writable (a reader's fresh
    array, which `make_splits` owns: no second copy of the training split), else copied. Row k moves to position
    i <= k, and a chunk's rows are all read before any is written, so no row is overwritten before it moves."""
    if not (array.flags.writeable and array.flags.c_contiguous):
        return array[rows]
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        array[start : start + len(chunk)] = array[chunk]
    return array[: len(rows)]


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
    """'train N / validation N / test N, sha256 <16 hex>' of the prepared splits as float32 grey levels (and, for a conditional
    run, of their labels and the class names: without labels the digest is the images' alone, as before)."""
    digest = hashlib.sha256()
    for split in SPLITS:
        array = images[split]
        digest.update(f"{split}:{tuple(array.shape)}".encode())
        for start in range(0, len(array), CHUNK):  # the float32 grey levels, a chunk at a time: the same digest
            digest.update(np.ascontiguousarray(grey_levels(np.asarray(array[start : start + CHUNK]))).data)
    if labels is not None:
        digest.update(("classes:" + "\x1f".join(classes)).encode())
        for split in SPLITS:
            digest.update(f"labels {split}:".encode())
            digest.update(np.ascontiguousarray(labels[split], dtype=np.int32).tobytes())
    sizes = " / ".join(f"{split} {len(images[split])}" for split in SPLITS)
    return f"{sizes}, sha256 {digest.hexdigest()[:16]}"


def make_splits(source: Source, options: ReadOptions, likelihood: str) -> Splits:
    """A reader's Source -> the run's Splits: prepared, carved, fingerprinted, binarized for the Bernoulli likelihood.

    The Source's arrays are the reader's own: carving may move rows within them (`_keep_rows`)."""
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
    if likelihood != "bernoulli":  # grey levels everywhere (uint8 intensities, / 255 per batch)
        return Splits(**images, dynamic=False, fingerprint=data_fingerprint, description=source.description,
                      grey=images["train"].dtype == np.uint8, **conditioning)
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
