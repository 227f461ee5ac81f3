"""The tf.data input pipeline: batches of (x, x) for Keras, binarization, shuffling, replicas.

With class labels (a conditional run, `labels=`), batches are (x, y) instead: y (B,) int32, the labels of the
batch's images, shuffled with them (the order is the same function of the seed either way).

Images come from `tfvae.datasets` as arrays (N, H, W, C): uint8 in {0, 1} (static binary data), uint8
intensities 0..255 or float32 grey levels in [0, 1] binarized afresh every epoch (`dynamic`), or
float32 grey levels used as they are (the continuous-Bernoulli likelihood). Every batch is float32.

Example:
>>> import numpy as np
>>> train = make_training_dataset(np.zeros((10, 8, 8, 1), np.uint8), 4, seed=0, epochs=1)  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

__all__ = ["make_dataset", "make_training_dataset", "steps_per_epoch", "pixel_means"]

_MAX_INTENSITY = np.iinfo(np.uint8).max  # 255: grey level of a fully black pixel, p(x=1) = 1


def make_dataset(
    images: np.ndarray,
    batch_size: int,
    *,
    training: bool,
    seed: int = 0,
    dynamic: bool = False,
    drop_remainder: bool = False,
    labels=None,
    grey: bool = False,
):
    """A `tf.data.Dataset` of `(x, x)` batches for Keras `fit` / `evaluate` (the target is the input).

    Args:
        images: array of shape (N, H, W, C): uint8 in {0, 1}, float32 in [0, 1], or
            grey levels (uint8 0..255 or float32 in [0, 1]) if `dynamic`. It stays
            in its dtype in memory; batches are cast to float32 inside the pipeline.
        batch_size: images per batch (the global batch under a distribution strategy).
        training: shuffle the whole array, with a new order every epoch.
        seed: fixes the shuffle orders and the dynamic binarizations, so two
            pipelines built with the same seed yield the same epochs.
        dynamic: binarize x ~ Bernoulli(grey level), afresh every epoch.
        drop_remainder: drop the last, smaller batch.
        labels: (N,) class labels of the images, or None; with them the batches are `(x, y)`, y (B,) int32.
        grey: uint8 `images` hold intensities 0..255 whose grey levels (/ 255) are the data, used as they are
            (the continuous Bernoulli); converted per batch.

    Returns:
        A dataset of `(x, x)` with x float32 of shape (B, H, W, C) in {0, 1} (or [0, 1] for grey levels).

    Example:
    >>> import numpy as np
    >>> images = np.zeros((10, 28, 28, 1), np.uint8)
    >>> x, target = next(iter(make_dataset(images, 4, training=True)))
    >>> x.shape, x.dtype.name
    (TensorShape([4, 28, 28, 1]), 'float32')
    """
    import tensorflow as tf

    images = _check_images(images, batch_size, dynamic, grey)
    labels = _check_labels(labels, images)

    # Indices, shuffled and batched, then the batch's rows read from the array where it lies (`_reader`): the
    # images are never copied whole into a tensor. The shuffle permutes indices exactly as it permuted images.
    dataset = tf.data.Dataset.range(len(images))
    if training:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)  # (B,) indices
    read = _reader(images, grey)
    if labels is not None:
        labels_t = tf.constant(labels)
        dataset = dataset.map(lambda indices: (read(indices), tf.gather(labels_t, indices)),
                              num_parallel_calls=tf.data.AUTOTUNE)
        return _labelled(dataset, dynamic, seed)
    dataset = dataset.map(read, num_parallel_calls=tf.data.AUTOTUNE)  # (B, H, W, C)

    if dynamic:
        # One stateless seed pair per batch. Dataset.random draws a new sequence each
        # epoch (rerandomize_each_iteration) yet the same sequences for the same seed;
        # a seeded random op inside map would repeat the same noise every epoch.
        batch_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)

        dataset = tf.data.Dataset.zip((dataset, batch_seeds)).map(_binarize_batch, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        dataset = dataset.map(_to_float, num_parallel_calls=tf.data.AUTOTUNE)

    return _finish_pipeline(dataset)


def steps_per_epoch(num_images: int, batch_size: int, drop_remainder: bool = False) -> int:
    """Batches in one epoch of `num_images`."""
    return num_images // batch_size if drop_remainder else -(-num_images // batch_size)


def make_training_dataset(
    images: np.ndarray,
    batch_size: int,
    *,
    seed: int,
    epochs: int,
    first_epoch: int = 0,
    dynamic: bool = False,
    drop_remainder: bool = False,
    labels=None,
    grey: bool = False,
    replica_slices=None,
):
    """Training batches for epochs `first_epoch`, ..., `epochs - 1`, one epoch after another.

    Unlike `make_dataset`, the order and the binarization of epoch e are a pure
    function of (seed, e), not of how often the dataset was iterated. A run
    resumed at epoch k therefore sees exactly the batches an uninterrupted run
    would have seen: this is the data half of "resume as if never stopped".
    Pass `steps_per_epoch(len(images), batch_size)` to Keras `fit`.

    Args:
        images: (N, H, W, C), as for `make_dataset`.
        batch_size: the global batch size.
        seed: fixes every epoch's permutation and binarization.
        epochs: one past the last epoch to produce.
        first_epoch: the first epoch to produce (the number of epochs already done).
        dynamic: binarize x ~ Bernoulli(grey level), afresh every epoch.
        drop_remainder: drop each epoch's last, smaller batch.
        labels: (N,) class labels of the images, or None; with them the batches are `(x, y)`, y (B,) int32,
            in the same order (the permutation does not depend on the labels).
        grey: uint8 `images` hold intensities whose grey levels are the data (as for `make_dataset`).
        replica_slices: (workers W, this worker w, its replicas R), for `distribute_datasets_from_function`: the
            dataset yields, for each global batch, the R per-replica slices of worker w only (global replicas
            w R .. w R + R - 1 of W R), reading only their rows (a worker of a run on a --data-cache reads its
            share, not every image); each slice binarized with the whole batch's draw, so the numbers are those
            of one worker. None: whole global batches, for `experimental_distribute_dataset`.

    Returns:
        A dataset of `(x, x)` pairs, x float32 (B, H, W, C).

    Example:
    >>> images = np.zeros((10, 28, 28, 1), np.uint8)
    >>> batches = list(make_training_dataset(images, 4, seed=0, epochs=2))
    >>> len(batches), batches[0][0].shape.as_list()
    (6, [4, 28, 28, 1])
    """
    import tensorflow as tf

    images = _check_images(images, batch_size, dynamic, grey)
    labels = _check_labels(labels, images)
    num_images = len(images)
    read = _reader(images, grey)  # the rows of a batch, read where the images lie: no tensor copy of them all
    labels_t = None if labels is None else tf.constant(labels)  # (N,) int32
    base_seed = tf.constant([seed, 0], tf.int64)

    def one_epoch(epoch):
        epoch_seed = tf.random.experimental.stateless_fold_in(base_seed, epoch)
        order = tf.argsort(tf.random.stateless_uniform([num_images], seed=epoch_seed))  # a permutation of N
        batches = tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder=drop_remainder)

        def load(step, indices, lo=0, hi=None):
            """The batch of `indices`, or its rows lo..hi-1 only (a replica's share), binarized as the whole."""
            mine = indices if hi is None else indices[lo:hi]
            x = read(mine)  # (b, H, W, C)
            if dynamic:
                seed_pair = tf.random.experimental.stateless_fold_in(epoch_seed, step + 1)
                x, target = (_binarize_batch(x, seed_pair) if hi is None
                             else _binarize_batch(x, seed_pair, tf.shape(indices)[0], lo))
            else:
                x, target = _to_float(x)
            return (x, target) if labels_t is None else (x, tf.gather(labels_t, mine))

        if replica_slices is None:
            return batches.enumerate().map(load, num_parallel_calls=tf.data.AUTOTUNE)
        workers, worker, local = replica_slices
        replicas = workers * local

        def shares(step, indices):  # this worker's replicas' slices of the global batch, in replica order
            bounds = _split_bounds(tf.shape(indices, out_type=tf.int64)[0], replicas)
            first = worker * local
            return tf.data.Dataset.range(first, first + local).map(
                lambda r: load(step, indices, bounds[r], bounds[r + 1]))

        return batches.enumerate().flat_map(shares)

    dataset = tf.data.Dataset.range(first_epoch, epochs).flat_map(one_epoch)
    return _finish_pipeline(dataset, shard=replica_slices is None)


def _split_bounds(size, parts: int):
    """(parts + 1,) int64 bounds splitting `size` rows into `parts` consecutive slices, the first ones one longer."""
    import tensorflow as tf

    r = tf.range(parts + 1, dtype=tf.int64)
    return r * (size // parts) + tf.minimum(r, size % parts)


def pixel_means(images: np.ndarray, dynamic: bool = False, grey: bool = False) -> np.ndarray:
    """(H, W, C) float64: each pixel's mean over `images`, as a Bernoulli mean (uint8 intensities / 255 when
    `dynamic`, since those are binarized with probability grey level, or when `grey`). Summed in chunks: no float
    copy of the set (and rows on disk are read a chunk at a time)."""
    scale = _MAX_INTENSITY if (dynamic or grey) and images.dtype == np.uint8 else 1.0
    total = np.zeros(images.shape[1:], np.float64)
    for start in range(0, len(images), 4096):
        total += np.asarray(images[start : start + 4096]).sum(axis=0, dtype=np.float64)
    return total / len(images) / scale


def _check_images(images, batch_size, dynamic, grey=False):
    """The images, checked: a NumPy array, or rows read from disk (`tfvae.datasets.cache.ShardedImages`, whose
    values were checked when the cache was prepared)."""
    if not hasattr(images, "take"):
        images = np.asarray(images)
    if images.dtype not in (np.uint8, np.float32) or images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty uint8 or float32 array of shape (N, H, W, C), "
                         f"got {images.dtype} {images.shape}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(images, np.ndarray):
        if not (dynamic or grey) and images.dtype == np.uint8 and _chunked(np.max, images) > 1:
            raise ValueError("images hold intensities above 1; pass dynamic=True to binarize them per epoch")
        if images.dtype == np.float32 and not (_chunked(np.min, images) >= 0 and _chunked(np.max, images) <= 1):
            raise ValueError("float32 images must hold grey levels in [0, 1]")
    return images


def _chunked(reduce, images, chunk: int = 4096):
    """reduce (np.min or np.max) over `images`, a chunk at a time (NaN propagates, as in one call)."""
    return reduce([reduce(images[start : start + chunk]) for start in range(0, len(images), chunk)])


def _reader(images, grey: bool):
    """indices (B,) int64 tensor -> the batch (B, H, W, C) of `images` at them, read in NumPy (`tf.numpy_function`):
    uint8 as stored, float32 as stored, or, with `grey`, uint8 intensities as float32 grey levels (/ 255, computed
    exactly as `tfvae.datasets.grey_levels` does). `images` is an array in memory or rows on disk (`.take`)."""
    import tensorflow as tf

    take = images.take if not isinstance(images, np.ndarray) else (lambda indices: images[indices])
    to_grey = grey and images.dtype == np.uint8
    dtype = np.float32 if to_grey else images.dtype
    shape = tuple(images.shape[1:])

    def rows(indices):
        batch = take(indices)
        return batch.astype(np.float32) / _MAX_INTENSITY if to_grey else batch

    def read(indices):
        batch = tf.numpy_function(rows, [indices], tf.as_dtype(dtype), stateful=False)
        batch.set_shape((None, *shape))
        return batch

    return read


def _check_labels(labels, images):
    """None, or (N,) int32 labels, one per image."""
    if labels is None:
        return None
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu" or labels.shape != (len(images),):
        raise ValueError(f"labels must be integers, one per image ({len(images)},), got {labels.dtype} {labels.shape}")
    return labels.astype(np.int32)


def _labelled(dataset, dynamic: bool, seed: int):
    """(images, labels) batches -> (x, y): x binarized as `make_dataset` does without labels, y unchanged."""
    import tensorflow as tf

    if dynamic:
        batch_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip((dataset, batch_seeds)).map(
            lambda batch, s: (_binarize_batch(batch[0], s)[0], batch[1]), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        dataset = dataset.map(lambda x, y: (_to_float(x)[0], y), num_parallel_calls=tf.data.AUTOTUNE)
    return _finish_pipeline(dataset)


def _to_float(x):
    import tensorflow as tf

    x = tf.cast(x, tf.float32)
    return x, x


def _binarize_batch(x, seed, rows=None, first=0):
    """x ~ Bernoulli(grey level) for a batch of uint8 intensities / 255 or float32 grey levels, with a stateless seed pair.

    With `rows`, x is rows first.. of a batch of `rows`: the draw is the whole batch's, and x takes its rows of it."""
    import tensorflow as tf

    p_x = tf.cast(x, tf.float32) / _MAX_INTENSITY if x.dtype == tf.uint8 else x  # (B, H, W, C) Bernoulli means
    if rows is None:
        u = tf.random.stateless_uniform(tf.shape(x), seed=seed)
    else:
        first = tf.cast(first, tf.int32)
        whole = tf.concat([[tf.cast(rows, tf.int32)], tf.shape(x)[1:]], axis=0)
        u = tf.random.stateless_uniform(whole, seed=seed)[first : first + tf.shape(x)[0]]
    x = tf.cast(u < p_x, tf.float32)
    return x, x


def _finish_pipeline(dataset, shard: bool = True):
    import tensorflow as tf

    options = tf.data.Options()
    options.deterministic = True  # parallel map keeps the order, so equal seeds give equal epochs
    # Every worker builds the same batches: shard the elements, not files (a dataset made per worker, with
    # replica_slices, is its share already).
    options.experimental_distribute.auto_shard_policy = (tf.data.experimental.AutoShardPolicy.DATA if shard
                                                         else tf.data.experimental.AutoShardPolicy.OFF)
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)
