"""`npz:PATH`: a NumPy `.npz` holding `x_train` and optionally `x_valid`, `x_test`.

Each array is uint8 in 0..255 or float in [0, 1], shaped (N, H, W) or (N, H, W, C). With `--condition label`
the class labels are `y_train` (and `y_valid`, `y_test` beside `x_valid`, `x_test`): integers 0, 1, ..., one
per image; the classes are named "0", "1", ... .
Read with `allow_pickle=False`: an archive with object arrays is refused, never unpickled.
"""

from __future__ import annotations

import zipfile

import numpy as np

from tfvae.datasets.images import ReadOptions, Source
from tfvae.errors import DataError

__all__ = ["ARRAYS", "read"]

ARRAYS = {"train": "x_train", "validation": "x_valid", "test": "x_test"}  # split -> array name in the .npz
LABEL_ARRAYS = {"train": "y_train", "validation": "y_valid", "test": "y_test"}  # split -> its labels (condition label)


def read(path: str, options: ReadOptions) -> Source:
    """The arrays of the `.npz` at `path`, by split."""
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"npz:{path} does not exist") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"npz:{path} is not a readable .npz file ({e})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"npz:{path} holds a single array, expected a .npz with x_train (and x_valid, x_test)")
    with archive:
        if ARRAYS["train"] not in archive.files:
            raise DataError(f"npz:{path} has no x_train array (it has: {', '.join(archive.files) or 'none'})")
        splits = {split: _array(archive, name, path) for split, name in ARRAYS.items() if name in archive.files}
        labels = None
        if options.label_key is not None:
            missing = [LABEL_ARRAYS[split] for split in splits if LABEL_ARRAYS[split] not in archive.files]
            if missing:
                raise DataError(f"npz:{path} has no {' or '.join(missing)} array: --condition label needs the "
                                "labels of every split it holds (y_train, y_valid, y_test)")
            labels = {split: _array(archive, LABEL_ARRAYS[split], path) for split in splits}
    return Source(splits, f"npz:{path}", labels=labels)


def _array(archive, name: str, path: str) -> np.ndarray:
    try:
        return archive[name]
    except ValueError as e:  # "Object arrays cannot be loaded when allow_pickle=False"
        raise DataError(f"npz:{path}: {name} cannot be loaded without unpickling ({e}); store numeric arrays") from None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"npz:{path}: {name} is truncated or corrupt ({e})") from None
