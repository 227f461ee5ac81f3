"""`folder:PATH`: a directory of PNG / JPEG / BMP / GIF files, searched recursively, read with Pillow.

With `PATH/train` (and optionally `PATH/valid`, `PATH/test`) the subfolders are the splits;
otherwise every image under PATH is training data. Files are read in sorted path order.
Without `--image-size` every image must have the first one's size, and without `--channels`
its mode: grey ("1", "L") or colour ("RGB", "P"); any other mode (alpha, 16-bit, CMYK) needs
`--channels`. The first image that differs is named.

With `--condition label` the first subfolder of each image (below the split's, if any) is its class:
`PATH/CLASS/...` or `PATH/train/CLASS/...`; the classes are the training split's class folders in sorted order.
"""

from __future__ import annotations

import os

import numpy as np

from tfvae.datasets.images import ReadOptions, Source
from tfvae.errors import DataError

__all__ = ["EXTENSIONS", "SUBFOLDERS", "read"]

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
SUBFOLDERS = {"train": "train", "validation": "valid", "test": "test"}  # split -> subfolder
# Pillow mode -> channels when no --channels is given; other modes must be converted explicitly.
_NATURAL_CHANNELS = {"1": 1, "L": 1, "RGB": 3, "P": 3}
_CONVERT = {1: "L", 3: "RGB"}
PROGRESS_FROM = 2000  # images in a folder above which reading shows a progress bar


def read(path: str, options: ReadOptions) -> Source:
    """The images under `path`, by split, as uint8 (N, H, W, C)."""
    if not os.path.isdir(path):
        what = "is not a directory" if os.path.exists(path) else "does not exist"
        raise DataError(f"folder:{path} {what}")
    if os.path.isdir(os.path.join(path, SUBFOLDERS["train"])):
        folders = {split: os.path.join(path, sub) for split, sub in SUBFOLDERS.items()
                   if os.path.isdir(os.path.join(path, sub))}
    else:
        folders = {"train": path}
    reference = {}  # the first image's size and mode, which every other image must share
    splits = {split: _read_images(folder, options, reference) for split, folder in folders.items()}
    if options.label_key is None:
        return Source(splits, f"folder:{path}")
    names = {split: [_class_of(file, folder, path) for file in _image_files(folder)] for split, folder in folders.items()}
    classes = tuple(sorted(set(names["train"])))
    index = {name: k for k, name in enumerate(classes)}
    labels = {}
    for split, split_names in names.items():
        unknown = sorted(set(split_names) - set(index))
        if unknown:
            raise DataError(f"folder:{path}: class {unknown[0]!r} of the {split} split has no training image")
        labels[split] = np.array([index[name] for name in split_names], np.int64)
    return Source(splits, f"folder:{path}", labels=labels, classes=classes)


def _class_of(file: str, folder: str, path: str) -> str:
    """The class of an image: the first subfolder of `folder` on its path, or a DataError if it has none."""
    parts = os.path.relpath(file, folder).split(os.sep)
    if len(parts) < 2:
        raise DataError(f"{file} is not in a class folder; with --condition label every image goes in "
                        f"folder:{path}/CLASS/... (or {path}/train/CLASS/...)")
    return parts[0]


def _image_files(folder: str) -> list:
    files = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        files += [os.path.join(root, n) for n in sorted(names) if n.lower().endswith(EXTENSIONS)]
    return files


def _read_images(folder: str, options: ReadOptions, reference: dict) -> np.ndarray:
    """Every image under `folder`, read into one preallocated uint8 array (no list of images beside it), with a
    progress bar (images per second, what is left) when there are more than PROGRESS_FROM of them."""
    files = _image_files(folder)
    if not files:
        raise DataError(f"folder:{folder} holds no images ({', '.join(EXTENSIONS)}, searched recursively)")
    first = _read_image(files[0], options, reference)
    images = np.empty((len(files), *first.shape), np.uint8)
    images[0] = first
    bar = None
    if len(files) > PROGRESS_FROM:
        from tqdm import tqdm

        bar = tqdm(total=len(files), initial=1, desc=f"reading folder:{folder}", unit="img", unit_scale=True)
    try:
        for i, path in enumerate(files[1:], start=1):
            image = _read_image(path, options, reference)
            if image.shape != first.shape:  # a size or mode _check_like_first let through (converted to agree)
                raise DataError(f"{path} reads as {image.shape}, not {first.shape} like {files[0]}; pass --image-size "
                                "and --channels")
            images[i] = image
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return images


def _read_image(path: str, options: ReadOptions, reference: dict) -> np.ndarray:
    """One file -> uint8 (H, W, C), converted and resized as asked, checked against the first image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()  # decodes now: a truncated file fails here, named
            mode = options.channels and _CONVERT[options.channels]
            if mode is None:
                if image.mode not in _NATURAL_CHANNELS:
                    raise DataError(f"{path} has mode {image.mode}; pass --channels 1 or 3 to convert it")
                mode = _CONVERT[_NATURAL_CHANNELS[image.mode]]
            _check_like_first(path, image, reference, options)
            converted = image.convert(mode)
            if options.image_size is not None and converted.size != options.image_size[::-1]:
                converted = converted.resize(options.image_size[::-1], Image.Resampling.BOX)
            pixels = np.asarray(converted, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"cannot read image {path}: {e}") from None
    return pixels.reshape(*pixels.shape[:2], -1)  # (H, W) grey -> (H, W, 1)


def _check_like_first(path: str, image, reference: dict, options: ReadOptions) -> None:
    """Refuse an image whose size (without --image-size) or mode (without --channels) differs from the first one's."""
    if not reference:
        reference.update(path=path, size=image.size, mode=image.mode)
        return
    if options.image_size is None and image.size != reference["size"]:
        (w, h), (rw, rh) = image.size, reference["size"]
        raise DataError(
            f"{path} is {h}x{w} but {reference['path']} is {rh}x{rw}; pass --image-size to resize every image"
        )
    if options.channels is None and _NATURAL_CHANNELS[image.mode] != _NATURAL_CHANNELS[reference["mode"]]:
        raise DataError(
            f"{path} has mode {image.mode} but {reference['path']} has {reference['mode']}; "
            "pass --channels 1 or 3 to convert every image"
        )
