"""`--data-cache DIR`: a dataset prepared once into uint8 shards on disk, which training reads a batch at a time.

    tfvae train --dataset folder:faces --image-size 64 --data-cache /data/faces-64 ...

The first run prepares DIR from the source (read, resized, converted and carved as an in-memory run does); every
later run, and every worker of a multi-worker run, reads DIR and never the source again. A training process then
holds no split in memory: each batch's rows are read from the shards when the batch is made, so its memory does
not grow with the number of images.

    DIR/cache.json                what DIR holds: the source and its reading options, the data fingerprint (the
                                  in-memory run's, the same digest), the shards of each split, the source's stamp
    DIR/train-00000.npy ...       uint8 (n, H, W, C) intensities, SHARD_BYTES each at most (float sources: float32)
    DIR/validation-00000.npy ...  likewise; and validation_binary-*, test_binary-*: the one-off binarizations that
    DIR/test-00000.npy ...        the Bernoulli likelihood scores (the evaluation stream), so DIR serves both likelihoods
    DIR/labels-SPLIT.npy          --condition label: the class indices of each split

Why `.npy` shards read with `os.pread`, not TFRecord: the rows keep their index, so each epoch's order is the
index permutation of the in-memory pipeline (a function of the seed alone) and a run on a cache gives the same
numbers as in memory, and resumes exactly; there is no shuffle buffer to bound. A worker of a multi-worker run
reads only the rows of its replicas' share of each batch (`tfvae.pipeline`). `pread` rather than a memory map
keeps the pages in the kernel's cache, not in the process's resident memory.

Preparing reads the source into memory once, as an in-memory run does (uint8, 1.5 x its size at most), on the
one machine that prepares it; it is written into a staging folder beside DIR, published in one step, with a
progress bar. A source changed since (a folder's files, an .npz file: their names, sizes and modification times;
`stamp`) is refused in one line; so is a DIR prepared with other options.

Example:
>>> splits = load_or_prepare("npz:/data/big.npz", "/data/big-cache", ReadOptions(), "bernoulli")  # doctest: +SKIP
>>> splits.train.shape, type(splits.train).__name__  # doctest: +SKIP
((54000, 64, 64, 3), 'ShardedImages')
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
import time
from typing import Optional

import numpy as np

from tfvae.datasets.images import CHUNK, SPLITS, ReadOptions, Splits, binarize, evaluation_seeds
from tfvae.errors import DataError

__all__ = ["CACHE_FILE", "FORMAT", "SHARD_BYTES", "ShardedImages", "load_or_prepare", "stamp"]

CACHE_FILE = "cache.json"
FORMAT = 1
SHARD_BYTES = 256 * 2**20  # at most 256 MB of images per shard file: a few files per GB, any one quick to copy
WAIT_SECONDS = 3 * 3600  # how long a worker waits for the chief to prepare a cache


class ShardedImages:
    """Rows (N, H, W, C) stored in `.npy` shards, read on demand: what a `Splits` holds for a prepared cache.

    Looks enough like an array for tfvae's pipeline: `len`, `shape`, `dtype`, `ndim`, `take(indices)` (the rows
    at `indices`, read with `os.pread`), `images[a:b]` (a view of rows a..b-1) and `np.asarray(view)` (its rows
    read into memory: for small views only).
    """

    def __init__(self, paths, counts, row_shape, dtype, start: int = 0, stop: Optional[int] = None):
        self._paths = list(paths)
        self._counts = [int(c) for c in counts]
        self._offsets = np.concatenate([[0], np.cumsum(self._counts)]).astype(np.int64)  # first row of each shard
        self._row_shape = tuple(int(d) for d in row_shape)
        self.dtype = np.dtype(dtype)
        self._row_bytes = int(np.prod(self._row_shape)) * self.dtype.itemsize
        total = int(self._offsets[-1])
        self._start, self._stop = start, total if stop is None else stop
        self._files = None
        self._lock = threading.Lock()
        self.rows_read = 0  # rows this object has read, for the log of a worker's share

    @property
    def shape(self) -> tuple:
        return (self._stop - self._start, *self._row_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self._row_shape)

    def __len__(self) -> int:
        return self._stop - self._start

    def __getitem__(self, key):
        if isinstance(key, slice) and key.step in (None, 1):
            start, stop, _ = key.indices(len(self))
            view = ShardedImages(self._paths, self._counts, self._row_shape, self.dtype,
                                 self._start + start, self._start + max(start, stop))
            view._files, view._lock = self._files, self._lock
            return view
        if isinstance(key, (int, np.integer)):
            return self.take(np.array([key]))[0]
        return self.take(np.asarray(key))

    def __array__(self, dtype=None, copy=None):
        rows = self.take(np.arange(len(self)))
        return rows if dtype is None else rows.astype(dtype)

    def take(self, indices) -> np.ndarray:
        """The rows at `indices` (ints, any order, repeats allowed) as one array, in the order asked."""
        indices = np.asarray(indices, np.int64).reshape(-1)
        if len(indices) and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} rows")
        files = self._open()
        out = np.empty((len(indices), *self._row_shape), self.dtype)
        flat = out.reshape(len(indices), -1).view(np.uint8)  # (n, row bytes)
        rows = indices + self._start
        shards = np.searchsorted(self._offsets, rows, side="right") - 1
        for i, (row, shard) in enumerate(zip(rows.tolist(), shards.tolist())):
            fd, data_start = files[shard]
            where = data_start + (row - int(self._offsets[shard])) * self._row_bytes
            got = os.preadv(fd, [flat[i]], where)
            if got != self._row_bytes:
                raise DataError(f"{self._paths[shard]} is truncated (row {row}); prepare the --data-cache again")
        self.rows_read += len(indices)
        return out

    def _open(self):
        if self._files is None:
            with self._lock:
                if self._files is None:
                    files = []
                    for path in self._paths:
                        fd = os.open(path, os.O_RDONLY)
                        files.append((fd, _data_offset(path)))
                    self._files = files
        return self._files


def _data_offset(path: str) -> int:
    """Where a `.npy` file's array starts (after its header)."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            np.lib.format.read_array_header_1_0(f)
        else:
            np.lib.format.read_array_header_2_0(f)
        return f.tell()


def stamp(dataset: str) -> Optional[str]:
    """A cheap digest of the source's files (names, sizes, modification times): None where there are none to stat
    (tfds, whose name and version say what they are)."""
    prefix, _, argument = dataset.partition(":")
    if prefix not in ("folder", "npz"):
        return None
    entries = []
    if prefix == "npz":
        if os.path.isfile(argument):
            st = os.stat(argument)
            entries.append(("", st.st_size, st.st_mtime_ns))
    else:
        for root, dirs, names in os.walk(argument):
            dirs.sort()
            for name in sorted(names):
                st = os.stat(os.path.join(root, name))
                entries.append((os.path.relpath(os.path.join(root, name), argument), st.st_size, st.st_mtime_ns))
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:16]


def load_or_prepare(dataset: str, cache_dir: str, options: ReadOptions, likelihood: str, *, data_dir=None,
                    prepare: bool = True, log=print, wait_seconds: float = WAIT_SECONDS) -> Splits:
    """The Splits of `dataset` read from the cache in `cache_dir`, preparing it first if it does not exist (or,
    without `prepare`, waiting up to `wait_seconds` for another process to publish it).

    Raises:
      DataError: a cache of another source or other options, a source changed since the cache was prepared, a
        damaged cache, a disk that fills up while preparing; and whatever reading the source raises.
    """
    from tfvae.datasets import canonical_dataset

    dataset = canonical_dataset(dataset)
    if ":" not in dataset:
        raise DataError(f"--data-cache is for tfds:, folder: and npz: datasets; {dataset} is small and built in: "
                        "leave --data-cache out")
    cache_dir = os.path.abspath(os.path.expanduser(cache_dir))
    wanted = _describe(dataset, options)
    path = os.path.join(cache_dir, CACHE_FILE)
    if not os.path.exists(path):
        if os.path.isdir(cache_dir) and os.listdir(cache_dir):
            raise DataError(f"--data-cache {cache_dir} is a folder of other files, not a tfvae cache; "
                            "give an empty or new folder")
        if prepare:
            _prepare(dataset, cache_dir, options, wanted, data_dir, log)
        else:
            _wait_for(path, cache_dir, wait_seconds, log)
    manifest = _read_manifest(path)
    if manifest.get("source") != wanted:
        raise DataError(f"--data-cache {cache_dir} holds {_words(manifest.get('source'))}, not {_words(wanted)}; "
                        "give another folder for this data")
    current = stamp(dataset)
    if manifest.get("stamp") != current:
        raise DataError(f"{dataset} changed since --data-cache {cache_dir} was prepared from it (its files' names, "
                        "sizes or times differ); prepare a new cache (another folder, or delete this one)")
    return _open(cache_dir, manifest, likelihood, options.label_key is not None)


def _wait_for(path: str, cache_dir: str, seconds: float, log) -> None:
    log(f"waiting for the chief to prepare --data-cache {cache_dir}")
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise DataError(f"--data-cache {cache_dir} did not appear within {seconds:.0f} s; prepare it first "
                            "with a one-worker run (or check that every worker sees the same folder)")
        time.sleep(1.0)


def _describe(dataset: str, options: ReadOptions) -> dict:
    return {"dataset": dataset, "image_key": options.image_key, "label_key": options.label_key,
            "image_size": list(options.image_size) if options.image_size else None, "channels": options.channels}


def _words(source) -> str:
    if not isinstance(source, dict):
        return "an unknown source"
    extras = [f"{k} {v}" for k, v in source.items() if k != "dataset" and v not in (None, "image")]
    return f"{source.get('dataset')}" + (f" ({', '.join(extras)})" if extras else "")


def _read_manifest(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        raise DataError(f"{path} is not readable ({e}); prepare the --data-cache again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{path} is not a tfvae cache of format {FORMAT}; prepare the --data-cache again")
    return manifest


def _open(cache_dir: str, manifest: dict, likelihood: str, with_labels: bool) -> Splits:
    """Splits whose arrays are ShardedImages over the cache's shards."""
    def images(name):
        entry = manifest["splits"][name]
        paths = [os.path.join(cache_dir, file) for file in entry["files"]]
        row_bytes = int(np.prod(entry["shape"])) * np.dtype(entry["dtype"]).itemsize
        for path, count in zip(paths, entry["counts"]):  # a shard cut short is named now, not mid-epoch
            if os.path.getsize(path) < _data_offset(path) + count * row_bytes:
                raise DataError(f"{path} is truncated ({os.path.getsize(path):,} bytes for {count:,} images); "
                                "prepare the --data-cache again")
        return ShardedImages(paths, entry["counts"], entry["shape"], entry["dtype"])

    bernoulli = likelihood == "bernoulli"
    try:
        train = images("train")
        validation = images("validation_binary" if bernoulli else "validation")
        test = images("test_binary" if bernoulli else "test")
        labels = None
        if with_labels:
            labels = {split: np.load(os.path.join(cache_dir, f"labels-{split}.npy")) for split in SPLITS}
    except (KeyError, OSError, ValueError) as e:
        raise DataError(f"--data-cache {cache_dir} is damaged ({e}); prepare it again") from None
    classes = tuple(manifest["classes"]) if with_labels else None
    uint8 = train.dtype == np.uint8
    return Splits(train=train, validation=validation, test=test, dynamic=bernoulli,
                  fingerprint=manifest["fingerprint"], description=manifest["description"],
                  grey=not bernoulli and uint8, labels=labels, classes=classes)


def _prepare(dataset: str, cache_dir: str, options: ReadOptions, wanted: dict, data_dir, log) -> None:
    """Read the source once (as an in-memory run reads it) and write it into shards, published in one step."""
    from tfvae.datasets import load_splits
    from tfvae.io import atomic_directory, atomic_write_text

    started = time.perf_counter()
    log(f"preparing --data-cache {cache_dir} from {dataset} (read once; later runs read the cache)")
    source_stamp = stamp(dataset)
    splits = load_splits(dataset, data_dir, image_key=options.image_key, image_size=options.image_size,
                         channels=options.channels, likelihood="continuous_bernoulli", label_key=options.label_key)
    read_seconds = time.perf_counter() - started
    rows = sum(len(getattr(splits, split)) for split in SPLITS)
    log(f"read {rows:,} images in {read_seconds:.0f} s ({rows / max(read_seconds, 1e-9):,.0f} images/s)")
    manifest = {"format": FORMAT, "source": wanted, "stamp": source_stamp, "fingerprint": splits.fingerprint,
                "description": splits.description, "classes": list(splits.classes) if splits.classes else None,
                "splits": {}}
    validation_rng, test_rng = (np.random.default_rng(s) for s in evaluation_seeds()[:2])
    parts = [("train", splits.train, None), ("validation", splits.validation, None), ("test", splits.test, None),
             ("validation_binary", splits.validation, validation_rng), ("test_binary", splits.test, test_rng)]
    total = sum(len(array) for _, array, _ in parts)
    def failed(e: OSError) -> DataError:
        if e.errno == errno.ENOSPC:
            return DataError(f"the disk of --data-cache {cache_dir} is full (the cache needs about "
                             f"{_cache_bytes(parts) / 2**30:.1f} GB); free space or choose another folder")
        return DataError(f"cannot write --data-cache {cache_dir}: {e.strerror or e}")

    try:
        os.makedirs(os.path.dirname(cache_dir) or ".", exist_ok=True)
    except OSError as e:
        raise failed(e) from None
    with atomic_directory(cache_dir) as staging, _progress(total, "writing the cache") as bar:
        try:  # a DataError leaves atomic_directory, which removes the staging folder: nothing is left behind
            for name, array, rng in parts:
                manifest["splits"][name] = _write_shards(staging, name, array, rng, bar)
            if splits.labels is not None:
                for split in SPLITS:
                    np.save(os.path.join(staging, f"labels-{split}.npy"), splits.labels[split].astype(np.int32))
            atomic_write_text(os.path.join(staging, CACHE_FILE), json.dumps(manifest, indent=2) + "\n")
        except OSError as e:
            raise failed(e) from None
    log(f"prepared {cache_dir}: {rows:,} images in {time.perf_counter() - started:.0f} s, "
        f"{_cache_bytes(parts) / 2**20:,.0f} MB")


def _cache_bytes(parts) -> int:
    return sum(array.size * (1 if rng is not None else array.dtype.itemsize) for _, array, rng in parts)


def _write_shards(folder: str, name: str, array: np.ndarray, rng, bar) -> dict:
    """array (uint8 or float32; with `rng`, binarized once with it, chunk by chunk) -> NAME-00000.npy, ...;
    the manifest entry: files, rows per file, row shape, dtype."""
    dtype = np.dtype(np.uint8) if rng is not None else array.dtype
    row_bytes = int(np.prod(array.shape[1:])) * dtype.itemsize
    per_shard = max(1, SHARD_BYTES // row_bytes)
    files, counts = [], []
    for first in range(0, len(array), per_shard):
        count = min(per_shard, len(array) - first)
        file = f"{name}-{len(files):05d}.npy"
        out = np.lib.format.open_memmap(os.path.join(folder, file), mode="w+", dtype=dtype,
                                        shape=(count, *array.shape[1:]))
        for start in range(0, count, CHUNK):
            chunk = np.asarray(array[first + start : first + min(start + CHUNK, count)])
            out[start : start + len(chunk)] = binarize(chunk, rng) if rng is not None else chunk
            bar.update(len(chunk))
        out.flush()
        del out
        files.append(file)
        counts.append(count)
    return {"files": files, "counts": counts, "shape": list(array.shape[1:]), "dtype": dtype.name}


class _progress:
    """A tqdm bar on stderr (images written per second, what is left), or nothing where tqdm is missing."""

    def __init__(self, total: int, what: str):
        self.total, self.what = total, what

    def __enter__(self):
        try:
            from tqdm import tqdm
        except ImportError:  # pragma: no cover
            self.bar = None
            return self
        self.bar = tqdm(total=self.total, desc=self.what, unit="img", unit_scale=True)
        return self

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
        return False

