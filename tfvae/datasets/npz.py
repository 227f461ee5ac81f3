"""`npz:PATH`: a NumPy `.npz` holding `x_train` and optionally `x_valid`, `x_test`.

Each array is uint8 in 0..255 or float in [0, 1], shaped (N, H, W) or (N, H, W, C).
Read with `allow_pickle=False`: an archive with object arrays is refused, never unpickled.
"""

from __future__ import annotations

import zipfile

import numpy as np

from tfvae.datasets.images import ReadOptions, Source
from tfvae.errors import DataError

__all__ = ["ARRAYS", "read"]

ARRAYS = {"train": "x_train", "validation": "x_valid", "test": "x_test"}  # split -> array name in the .npz


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
        splits = {}
        for split, name in ARRAYS.items():
            if name not in archive.files:
                continue
            try:
                splits[split] = archive[name]
            except ValueError as e:  # "Object arrays cannot be loaded when allow_pickle=False"
                raise DataError(f"npz:{path}: {name} cannot be loaded without unpickling ({e}); store numeric arrays") from None
            except (OSError, zipfile.BadZipFile, EOFError) as e:
                raise DataError(f"npz:{path}: {name} is truncated or corrupt ({e})") from None
    return Source(splits, f"npz:{path}")
