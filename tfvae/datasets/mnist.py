"""The built-in datasets: binarized MNIST and friends, read from local files (or TFDS) and cached.

Three datasets, all 28x28 grey-scale digits or clothes (`MNIST_SHAPE`):

- `binarized_mnist` (default): Larochelle & Murray's *static* binarization,
  train 50,000 / validation 10,000 / test 10,000, read from the `.amat` files.
- `mnist` and `fashion_mnist`: *dynamic* binarization. The training images keep
  their grey intensities and the pipeline draws x ~ Bernoulli(intensity / 255)
  afresh every epoch; validation (the last 10,000 training images) and test are
  binarized once, with `EVALUATION_SEED`, part of the dataset's definition: every
  run, whatever its `--seed`, is scored on the same binary images.

Where the files come from, first match wins: the `data_dir` argument (CLI
`--data-dir`), the `TFVAE_DATA_DIR` environment variable, then TensorFlow
Datasets (which needs the network unless the dataset is already prepared).
Each local source file is parsed once and cached as `.npy` under
`TFVAE_CACHE_DIR` (default `~/.cache/tfvae`).

NumPy only; TensorFlow is imported by the TFDS fallback alone.

Example:
>>> splits = load_builtin("binarized_mnist", data_dir="/work/shared/data")  # doctest: +SKIP
>>> splits.test.shape, splits.dynamic  # doctest: +SKIP
((10000, 28, 28, 1), False)
"""

from __future__ import annotations

import gzip
import hashlib
import os
import threading
import zlib
from typing import Callable, Optional, Sequence

import numpy as np

from tfvae.datasets.images import Splits, binarize, evaluation_seeds, grey_levels
from tfvae.errors import DataError, WriteError
from tfvae.io import atomic_path

__all__ = [
    "BUILTIN_DATASETS",
    "MNIST_SHAPE",
    "DATA_DIR_ENV",
    "CACHE_DIR_ENV",
    "SPLIT_SIZES",
    "FASHION_MNIST_SYSTEM_DIR",
    "read_idx",
    "read_amat",
    "load_builtin",
]

BUILTIN_DATASETS = ("binarized_mnist", "mnist", "fashion_mnist")
MNIST_SHAPE = (28, 28, 1)  # every built-in dataset: 28 x 28 grey levels

DATA_DIR_ENV = "TFVAE_DATA_DIR"  # a directory laid out like shared/data
CACHE_DIR_ENV = "TFVAE_CACHE_DIR"  # where parsed files are kept as .npy; default ~/.cache/tfvae

# Where the Debian package dataset-fashion-mnist installs the four IDX files.
FASHION_MNIST_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"

# Images per split, checked on every load. For the IDX datasets the training
# file holds train + validation (60,000) and the t10k file holds test.
SPLIT_SIZES = {
    "binarized_mnist": {"train": 50_000, "validation": 10_000, "test": 10_000},
    "mnist": {"train": 50_000, "validation": 10_000, "test": 10_000},
    "fashion_mnist": {"train": 50_000, "validation": 10_000, "test": 10_000},
}

_HEIGHT, _WIDTH, _CHANNELS = MNIST_SHAPE
_PIXELS = _HEIGHT * _WIDTH * _CHANNELS  # D = 784 values per image

# IDX magic numbers: 0x00 0x00, element type 0x08 (unsigned byte), then the number of dimensions.
_IDX_IMAGES_MAGIC = 0x00000803  # (N, rows, cols)
_IDX_LABELS_MAGIC = 0x00000801  # (N,)
_IDX_MAGIC_BYTES = 4
_IDX_DIM_BYTES = 4  # each dimension is a big-endian uint32

# .amat: one image per line, "v v ... v\n" with v in {'0', '1'}: every value is
# followed by one separator byte, so a row is 2 * 784 = 1568 bytes.
_AMAT_ROW_BYTES = 2 * _PIXELS
_ZERO, _ONE, _SPACE, _NEWLINE = b"0"[0], b"1"[0], b" "[0], b"\n"[0]

# Source file names. Either the .gz or the uncompressed file is accepted.
_AMAT_NAMES = {"train": "binarized_mnist_train.amat", "validation": "binarized_mnist_valid.amat",
               "test": "binarized_mnist_test.amat"}
_IDX_IMAGE_NAMES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
_IDX_LABEL_NAMES = {"train": "train-labels-idx1-ubyte", "test": "t10k-labels-idx1-ubyte"}  # --condition label

# The class names of the labelled built-in datasets, in label order (`--condition label`).
CLASSES = {
    "mnist": tuple(str(digit) for digit in range(10)),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"),
}

# Bump when the cached arrays change meaning, so old cache files are ignored.
_CACHE_FORMAT = 1

# TFDS fallback: the host each dataset downloads from, probed before calling
# TFDS so that an offline machine fails in seconds instead of retrying.
_TFDS_HOSTS = {
    "binarized_mnist": "www.cs.toronto.edu",
    "mnist": "storage.googleapis.com",
    "fashion_mnist": "fashion-mnist.s3-website.eu-central-1.amazonaws.com",
}
_NETWORK_TIMEOUT_SECONDS = 3.0  # bounds the DNS lookup and the TCP connect together
_HTTPS_PORT = 443


# --------------------------------------------------------------------------- readers


def read_idx(path: str) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzip-compressed if its name ends in `.gz`).

    Args:
        path: an images file (magic 0x00000803, N x 28 x 28) or a labels file
            (magic 0x00000801, N).

    Returns:
        uint8 images of shape (N, 28, 28) or labels of shape (N,).

    Raises:
        DataError: the file is missing, not valid gzip, truncated, or its header
            does not describe exactly the bytes that follow it.

    Example:
    >>> import tempfile, numpy as np
    >>> path = tempfile.mkdtemp() + "/labels-idx1-ubyte"
    >>> _ = open(path, "wb").write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1]))
    >>> read_idx(path)
    array([7, 2, 1], dtype=uint8)
    """
    data = _read_bytes(path)
    if len(data) < _IDX_MAGIC_BYTES:
        raise DataError(f"{path} is empty or too short to be an IDX file ({len(data)} bytes)")
    magic = int.from_bytes(data[:_IDX_MAGIC_BYTES], "big")
    if magic == _IDX_IMAGES_MAGIC:
        expected_tail = (_HEIGHT, _WIDTH)
    elif magic == _IDX_LABELS_MAGIC:
        expected_tail = ()
    else:
        raise DataError(
            f"{path} is not an IDX file of images or labels: magic number 0x{magic:08x}, "
            f"expected 0x{_IDX_IMAGES_MAGIC:08x} (images) or 0x{_IDX_LABELS_MAGIC:08x} (labels)"
        )
    ndim = 1 + len(expected_tail)
    header_bytes = _IDX_MAGIC_BYTES + _IDX_DIM_BYTES * ndim
    if len(data) < header_bytes:
        raise DataError(f"{path}: truncated IDX header ({len(data)} bytes, expected {header_bytes})")
    dims = tuple(
        int.from_bytes(data[start:start + _IDX_DIM_BYTES], "big")
        for start in range(_IDX_MAGIC_BYTES, header_bytes, _IDX_DIM_BYTES)
    )
    if dims[1:] != expected_tail:
        raise DataError(f"{path}: images are {dims[1]}x{dims[2]}, expected {_HEIGHT}x{_WIDTH}")
    # Compare the header's claim with the bytes actually present before building
    # any array: a corrupt count (say 2^31 images) must not drive an allocation.
    expected_payload = int(np.prod(dims, dtype=np.int64))
    payload = len(data) - header_bytes
    if payload != expected_payload:
        raise DataError(
            f"{path}: header says {dims[0]} items ({expected_payload} bytes) but {payload} bytes follow it; "
            "the file is truncated or corrupt"
        )
    # frombuffer views the immutable bytes; copy so callers get an ordinary writable array.
    return np.frombuffer(data, dtype=np.uint8, offset=header_bytes).reshape(dims).copy()


def read_amat(path: str) -> np.ndarray:
    """Read a Larochelle `.amat` file of binarized images (gzip-compressed if its name ends in `.gz`).

    Each line holds 784 values `0`/`1` separated by single spaces and ends in
    `\\n`. The file is checked and decoded with vectorised numpy, byte by byte
    at fixed offsets (a row is 1568 bytes), about 30x faster than `np.loadtxt`.

    Args:
        path: a `.amat` or `.amat.gz` file.

    Returns:
        uint8 array of shape (N, 784) with values in {0, 1}.

    Raises:
        DataError: the file is missing, empty, not valid gzip, or a line does not
            hold exactly 784 values in {0, 1}; the message names the line.

    Example:
    >>> import tempfile
    >>> path = tempfile.mkdtemp() + "/tiny.amat"
    >>> _ = open(path, "w").write(" ".join(["1"] + ["0"] * 783) + "\\n")
    >>> read_amat(path).shape
    (1, 784)
    """
    data = _read_bytes(path)
    if not data:
        raise DataError(f"{path} is empty: expected lines of {_PIXELS} values 0/1")
    buffer = np.frombuffer(data, dtype=np.uint8)
    if len(buffer) % _AMAT_ROW_BYTES == 0:
        rows = buffer.reshape(-1, _AMAT_ROW_BYTES)  # (N, 1568): value, separator, value, ...
        values = rows[:, 0::2]  # (N, 784) ASCII '0' / '1'
        separators = rows[:, 1::2]  # (N, 784): ' ' after each value but the last, then '\n'
        bits = values - _ZERO  # uint8 arithmetic: bytes below '0' wrap round to large numbers
        if (bits.max() <= 1 and (separators[:, :-1] == _SPACE).all()
                and (separators[:, -1] == _NEWLINE).all()):
            return bits
    # Slow path, only for malformed files: find the first bad line to report it.
    raise DataError(_describe_amat_error(path, buffer))


def _describe_amat_error(path: str, buffer: np.ndarray) -> str:
    """Name the first malformed line of an `.amat` file whose bytes are `buffer`."""
    newlines = np.flatnonzero(buffer == _NEWLINE)
    starts = np.concatenate(([0], newlines[:-1] + 1))  # first byte of each '\n'-terminated line
    lengths = newlines - starts  # characters before each '\n'
    bad_length = np.flatnonzero(lengths != _AMAT_ROW_BYTES - 1)
    if len(bad_length):
        line = int(bad_length[0])
        return (f"{path}, line {line + 1}: expected {_PIXELS} values 0/1 separated by single spaces "
                f"({_AMAT_ROW_BYTES - 1} characters), got {int(lengths[line])} characters")
    if len(newlines) == 0 or newlines[-1] != len(buffer) - 1:  # stray bytes after the last '\n'
        return (f"{path}, line {len(newlines) + 1}: the last line does not end in a newline; "
                "the file is truncated or not an .amat file")
    # Every line has the right length, so the rows line up: find the first bad byte.
    rows = buffer.reshape(-1, _AMAT_ROW_BYTES)
    expected_separators = np.full(_PIXELS, _SPACE, dtype=np.uint8)
    expected_separators[-1] = _NEWLINE
    bad_value = (rows[:, 0::2] - _ZERO) > 1  # (N, 784)
    bad_separator = rows[:, 1::2] != expected_separators  # (N, 784)
    line = int(np.argmax((bad_value | bad_separator).any(axis=1)))
    if bad_value[line].any():
        column = int(np.argmax(bad_value[line]))
        found = bytes(rows[line, 2 * column:2 * column + 1])
        return f"{path}, line {line + 1}: value {column + 1} is {found!r}, expected b'0' or b'1'"
    column = int(np.argmax(bad_separator[line]))
    found = bytes(rows[line, 2 * column + 1:2 * column + 2])
    return f"{path}, line {line + 1}: after value {column + 1} found {found!r}, expected a single space"


def _read_bytes(path: str) -> bytes:
    """The whole (decompressed, if `.gz`) content of `path`, or a DataError naming it."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a directory, expected a data file") from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    if not path.endswith(".gz"):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; a cut stream is an EOFError
        raise DataError(f"{path} is not a valid gzip file or is truncated ({e})") from None


# --------------------------------------------------------------------------- parse-once cache


def _cache_dir() -> str:
    return os.environ.get(CACHE_DIR_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "tfvae")


def _cache_path(path: str, reader: Callable[[str], np.ndarray]) -> Optional[str]:
    """The cache file for `path` as parsed by `reader`, keyed by its absolute path, size and mtime."""
    try:
        stat = os.stat(path)
    except OSError:
        return None  # the reader will raise a DataError naming the file
    key = f"{_CACHE_FORMAT}:{reader.__name__}:{os.path.abspath(path)}:{stat.st_size}:{stat.st_mtime_ns}"
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return os.path.join(_cache_dir(), f"{os.path.basename(path)}.{digest}.npy")


def _read_cached(path: str, reader: Callable[[str], np.ndarray], is_valid: Callable[[np.ndarray], bool]) -> np.ndarray:
    """`reader(path)`, from the cache when a valid entry exists; otherwise parse and cache.

    A cache entry that cannot be loaded or fails `is_valid` is ignored and
    rewritten. An unwritable cache directory only costs the speed-up.
    """
    cache_path = _cache_path(path, reader)
    if cache_path is not None and os.path.isfile(cache_path):
        try:
            cached = np.load(cache_path, allow_pickle=False)
        except Exception:  # any unreadable entry (truncated, garbage, pickled) is rebuilt, never fatal
            cached = None
        if isinstance(cached, np.ndarray) and cached.dtype == np.uint8 and is_valid(cached):
            return cached
    array = reader(path)
    if cache_path is not None:
        try:
            with atomic_path(cache_path) as tmp:
                with open(tmp, "wb") as f:  # a file object, so np.save adds no ".npy" to the temp name
                    np.save(f, array, allow_pickle=False)
        except (OSError, WriteError):
            pass  # read-only or full cache directory: parse again next time
    return array


def _is_amat_array(array: np.ndarray) -> bool:
    return array.ndim == 2 and array.shape[0] > 0 and array.shape[1] == _PIXELS and array.max() <= 1


def _is_idx_images(array: np.ndarray) -> bool:
    return array.ndim == 3 and array.shape[1:] == (_HEIGHT, _WIDTH)


# --------------------------------------------------------------------------- splits


def load_builtin(dataset: str = "binarized_mnist", data_dir: Optional[str] = None, grey: bool = False,
                 labels: bool = False) -> Splits:
    """Load the train, validation and test images of a built-in dataset.

    Args:
        dataset: one of `BUILTIN_DATASETS`.
        data_dir: a directory laid out like shared/data (`binarized_mnist/`,
            `mnist/`, `fashion_mnist/`). None: `$TFVAE_DATA_DIR`, then TFDS.
        grey: every split as float32 grey levels in [0, 1], none binarized (the continuous-Bernoulli
            likelihood); binarized_mnist has no grey levels and keeps its binary images, as float32.
        labels: also read the class labels (the IDX label files; `--condition label`): `Splits.labels`
            and `Splits.classes` (`CLASSES`). binarized_mnist has none.

    Returns:
        `Splits` of uint8 arrays shaped (N, 28, 28, 1).

    Raises:
        DataError: unknown dataset, missing directory or file, corrupt file,
            wrong split size, or no local data and TFDS cannot provide it.
    """
    if dataset not in BUILTIN_DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; choose one of: {', '.join(BUILTIN_DATASETS)}")
    if labels and dataset not in CLASSES:
        raise DataError(f"{dataset} has no labels in its files, so --condition label cannot use it; use --dataset "
                        "mnist (the same digits, binarized afresh every epoch, with their labels)")
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or None
    if data_dir is not None and not os.path.isdir(data_dir):
        what = "is not a directory" if os.path.exists(data_dir) else "does not exist"
        raise DataError(f"data directory {data_dir} {what}")
    if dataset == "binarized_mnist":
        if data_dir is not None:
            splits = _static_splits(dataset, **_read_amat_splits(data_dir))
        else:
            splits = _static_splits(dataset, **_load_tfds(dataset, ("train", "validation", "test")))
        if grey:
            splits = Splits(*(s.astype(np.float32) for s in (splits.train, splits.validation, splits.test)), dynamic=False)
        return splits
    # mnist, fashion_mnist: IDX files, dynamic binarization.
    directories = _idx_directories(dataset, data_dir)
    arrays = _read_idx_splits(dataset, directories) if directories else _load_tfds(dataset, ("train", "test"))
    splits = _grey_splits(dataset, **arrays) if grey else _dynamic_splits(dataset, **arrays)
    if not labels:
        return splits
    read = (_read_idx_labels(dataset, directories) if directories
            else _load_tfds(dataset, ("train", "test"), feature="label"))
    return _with_labels(dataset, splits, read)


def _read_idx_labels(dataset: str, directories: Sequence[str]) -> dict:
    """{"train": (60000,) uint8, "test": (10000,) uint8} from the IDX label files beside the images."""
    return {split: _read_cached(_find_file(directories, name, dataset, f"{split} labels"), read_idx, _is_idx_labels)
            for split, name in _IDX_LABEL_NAMES.items()}


def _is_idx_labels(array: np.ndarray) -> bool:
    return array.ndim == 1


def _with_labels(dataset: str, splits: Splits, read: dict) -> Splits:
    """`splits` with the labels of the 60,000 training (train + validation) and 10,000 test images."""
    import dataclasses

    sizes = SPLIT_SIZES[dataset]
    train, test = (np.asarray(read[split]).reshape(-1) for split in ("train", "test"))
    if len(train) != sizes["train"] + sizes["validation"] or len(test) != sizes["test"]:
        raise DataError(f"{dataset}: {len(train)} training and {len(test)} test labels for "
                        f"{sizes['train'] + sizes['validation']} and {sizes['test']} images; the label files do "
                        "not belong to the images")
    classes = CLASSES[dataset]
    if max(train.max(), test.max()) >= len(classes):
        raise DataError(f"{dataset}: label {int(max(train.max(), test.max()))} is no class of {len(classes)}")
    labels = {"train": train[:sizes["train"]], "validation": train[sizes["train"]:], "test": test}
    return dataclasses.replace(splits, labels={k: v.astype(np.int32) for k, v in labels.items()}, classes=classes)


def _read_amat_splits(data_dir: str) -> dict:
    """{split: (N, 784) uint8} from `<data_dir>/binarized_mnist/` or `<data_dir>/`."""
    directories = [os.path.join(data_dir, "binarized_mnist"), data_dir]
    return {split: _read_cached(_find_file(directories, name, "binarized_mnist", split), read_amat, _is_amat_array)
            for split, name in _AMAT_NAMES.items()}


def _idx_directories(dataset: str, data_dir: Optional[str]) -> list:
    """Local directories that may hold `dataset`'s IDX files, in order; empty: use TFDS."""
    directories = []
    if data_dir is not None:
        directories += [os.path.join(data_dir, dataset), data_dir]
    if dataset == "fashion_mnist" and os.path.isdir(FASHION_MNIST_SYSTEM_DIR):
        directories.append(FASHION_MNIST_SYSTEM_DIR)
    return directories


def _read_idx_splits(dataset: str, directories: Sequence[str]) -> dict:
    """{"train": (60000, 28, 28) uint8, "test": (10000, 28, 28) uint8} from the first directory holding them."""
    return {split: _read_cached(_find_file(directories, name, dataset, split), read_idx, _is_idx_images)
            for split, name in _IDX_IMAGE_NAMES.items()}


def _find_file(directories: Sequence[str], name: str, dataset: str, split: str) -> str:
    """The first of `<dir>/<name>.gz`, `<dir>/<name>` that exists, or a DataError listing them all."""
    candidates = [os.path.join(d, name + suffix) for d in directories for suffix in (".gz", "")]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise DataError(f"no {dataset} {split} file: expected one of {', '.join(candidates)}")


def _static_splits(dataset: str, train: np.ndarray, validation: np.ndarray, test: np.ndarray) -> Splits:
    """Splits of already-binarized images, any shape with 784 values per image."""
    sizes = SPLIT_SIZES[dataset]
    arrays = {"train": train, "validation": validation, "test": test}
    for split, array in arrays.items():
        _check_size(dataset, split, array, sizes[split])
    return Splits(**{split: array.reshape((-1,) + MNIST_SHAPE) for split, array in arrays.items()}, dynamic=False)


def _dynamic_splits(dataset: str, train: np.ndarray, test: np.ndarray) -> Splits:
    """Split intensities into train / validation and binarize validation and test once, with EVALUATION_SEED.

    Args:
        train: the 60,000 training images (any shape with 784 values each), 0..255.
        test: the 10,000 test images, 0..255.
    """
    sizes = SPLIT_SIZES[dataset]
    _check_size(dataset, "train + validation", train, sizes["train"] + sizes["validation"])
    _check_size(dataset, "test", test, sizes["test"])
    train = train.reshape((-1,) + MNIST_SHAPE)  # (60000, 28, 28, 1)
    validation_rng, test_rng = (np.random.default_rng(s) for s in evaluation_seeds()[:2])
    return Splits(
        train=train[:sizes["train"]],
        validation=binarize(train[sizes["train"]:], validation_rng),
        test=binarize(test.reshape((-1,) + MNIST_SHAPE), test_rng),
        dynamic=True,
    )


def _grey_splits(dataset: str, train: np.ndarray, test: np.ndarray) -> Splits:
    """Split intensities into train / validation as `_dynamic_splits` does, all three as grey levels in [0, 1]."""
    sizes = SPLIT_SIZES[dataset]
    _check_size(dataset, "train + validation", train, sizes["train"] + sizes["validation"])
    _check_size(dataset, "test", test, sizes["test"])
    train = grey_levels(train.reshape((-1,) + MNIST_SHAPE))
    return Splits(train=train[:sizes["train"]], validation=train[sizes["train"]:],
                  test=grey_levels(test.reshape((-1,) + MNIST_SHAPE)), dynamic=False)


def _check_size(dataset: str, split: str, array: np.ndarray, expected: int) -> None:
    if len(array) != expected:
        raise DataError(f"{dataset} {split} split has {len(array)} images, expected {expected}")


# --------------------------------------------------------------------------- TFDS fallback


def _no_local_data(dataset: str, reason: str) -> DataError:
    return DataError(
        f"no local data for {dataset} and TensorFlow Datasets cannot provide it ({reason}): "
        f"set --data-dir or {DATA_DIR_ENV} to a directory laid out like shared/data "
        f"(binarized_mnist/binarized_mnist_{{train,valid,test}}.amat[.gz], "
        f"{'mnist' if dataset == 'binarized_mnist' else dataset}/{{train,t10k}}-images-idx3-ubyte.gz)"
    )


def _network_available(host: str, port: int = _HTTPS_PORT, timeout: float = _NETWORK_TIMEOUT_SECONDS) -> bool:
    """Whether a TCP connection to `host` opens within `timeout` seconds, DNS lookup included.

    The probe runs in a daemon thread because `getaddrinfo` ignores socket
    timeouts and can block far longer on a machine without DNS.
    """
    import socket

    reachable = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            reachable.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(reachable)


def _load_tfds(dataset: str, splits: Sequence[str], feature: str = "image") -> dict:
    """{split: (N, 28, 28, 1) uint8} (or another `feature`: the labels) from TensorFlow Datasets, without
    hanging when offline."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise _no_local_data(dataset, f"tensorflow-datasets is not importable: {e}") from None
    try:
        prepared = tfds.builder(dataset).is_prepared()
    except Exception as e:  # TFDS raises many kinds of errors for a broken install or data dir
        raise _no_local_data(dataset, f"{type(e).__name__}: {e}") from None
    if not prepared and not _network_available(_TFDS_HOSTS[dataset]):
        raise _no_local_data(dataset, f"it is not prepared in its data directory and {_TFDS_HOSTS[dataset]} "
                                      "is unreachable")
    try:
        tensors = tfds.load(dataset, split=list(splits), batch_size=-1, download=not prepared)
        arrays = [np.asarray(t[feature], dtype=np.uint8 if feature == "image" else np.int64)
                  for t in tfds.as_numpy(tensors)]
    except Exception as e:  # download, checksum and preparation failures come in many types
        raise _no_local_data(dataset, f"{type(e).__name__}: {e}") from None
    return dict(zip(splits, arrays))
