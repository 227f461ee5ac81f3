"""Data that outgrows memory: uint8 kept from reading to the batch, `--data-cache` shards read a batch at a time, and
a worker's share read by that worker only. Tiny arrays (a few hundred 8 x 8 x 3 images) in the tests' own folders."""

import errno
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tfvae.datasets import load_splits
from tfvae.datasets import cache as cache_module
from tfvae.datasets import images as images_module
from tfvae.datasets.cache import CACHE_FILE, ShardedImages, load_or_prepare
from tfvae.datasets.images import ReadOptions, binarize, evaluation_seeds, grey_levels
from tfvae.errors import DataError
from tfvae.pipeline import make_dataset, make_training_dataset


def write_npz(path, n=120, shape=(8, 8, 3), seed=0, labels=False):
    rng = np.random.default_rng(seed)
    arrays = {"x_train": rng.integers(0, 256, (n, *shape), dtype=np.uint8)}
    if labels:
        arrays["y_train"] = rng.integers(0, 3, n)
    np.savez(path, **arrays)
    return f"npz:{path}"


def old_fingerprint(splits):
    """The digest as tfvae computed it before the chunked one: the whole float32 splits at once."""
    digest = hashlib.sha256()
    for split in ("train", "validation", "test"):
        array = np.ascontiguousarray(grey_levels(np.asarray(getattr(splits, split))), dtype=np.float32)
        digest.update(f"{split}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------- compact in memory


def test_uint8_images_stay_uint8_with_the_fingerprint_of_before(tmp_path, monkeypatch):
    monkeypatch.setattr(images_module, "CHUNK", 7)  # many chunks: the digest and the draws must not depend on them
    source = write_npz(tmp_path / "x.npz")
    splits = load_splits(source, likelihood="continuous_bernoulli")
    assert splits.train.dtype == splits.validation.dtype == np.uint8 and splits.grey and not splits.dynamic
    assert splits.fingerprint.endswith(old_fingerprint(splits))  # runs trained before resume on the same digest
    bernoulli = load_splits(source)
    assert bernoulli.train.dtype == np.uint8 and bernoulli.dynamic and not bernoulli.grey
    assert bernoulli.fingerprint == splits.fingerprint
    expected = (np.random.default_rng(evaluation_seeds()[1]).random(splits.test.shape, dtype=np.float32)
                < grey_levels(splits.test)).astype(np.uint8)
    np.testing.assert_array_equal(bernoulli.test, expected)  # one draw, as before, though made a chunk at a time


def test_carving_moves_the_training_rows_in_place_and_keeps_their_order(tmp_path):
    rng = np.random.default_rng(3)
    train = rng.integers(0, 256, (50, 4, 4, 1), dtype=np.uint8)
    original = train.copy()
    out = images_module.carve({"train": train}, "x")
    assert np.shares_memory(out["train"], train)  # no second copy of the training split
    order = np.random.default_rng(images_module.SPLIT_SEED).permutation(50)
    np.testing.assert_array_equal(out["train"], original[np.sort(order[10:])])
    np.testing.assert_array_equal(out["validation"], original[np.sort(order[:5])])
    np.testing.assert_array_equal(out["test"], original[np.sort(order[5:10])])


def test_a_batch_read_in_numpy_equals_the_rows_and_grey_levels_are_exact():
    images = np.random.default_rng(0).integers(0, 256, (10, 4, 4, 3), dtype=np.uint8)
    (x, target), = list(make_dataset(images, 10, training=False, grey=True))
    np.testing.assert_array_equal(x.numpy(), grey_levels(images))  # the values the float32 splits held before
    with pytest.raises(ValueError, match="intensities above 1"):
        make_dataset(images, 10, training=False)  # uint8 intensities need dynamic or grey


# --------------------------------------------------------------------------- the cache


@pytest.fixture
def prepared(tmp_path):
    source = write_npz(tmp_path / "x.npz", labels=True)
    options = ReadOptions(label_key="label")
    cache_dir = tmp_path / "cache"
    splits = load_or_prepare(source, str(cache_dir), options, "bernoulli", log=lambda *a: None)
    return source, options, cache_dir, splits


def test_a_cache_holds_the_splits_an_in_memory_run_trains_on(prepared, monkeypatch):
    monkeypatch.setattr(cache_module, "SHARD_BYTES", 8 * 8 * 3 * 17)  # 17 images a shard: several shards a split
    source, options, cache_dir, _ = prepared
    other = str(cache_dir) + "-small-shards"
    for likelihood in ("bernoulli", "continuous_bernoulli"):
        memory = load_splits(source, likelihood=likelihood, label_key="label")
        cached = load_or_prepare(source, other, options, likelihood, log=lambda *a: None)
        assert isinstance(cached.train, ShardedImages) and len(cached.train._paths) > 1
        assert (cached.dynamic, cached.grey, cached.fingerprint, cached.classes) == \
               (memory.dynamic, memory.grey, memory.fingerprint, memory.classes)
        for split in ("train", "validation", "test"):
            np.testing.assert_array_equal(np.asarray(getattr(cached, split)), getattr(memory, split))
            np.testing.assert_array_equal(cached.labels[split], memory.labels[split])


def test_training_batches_from_a_cache_equal_those_from_memory(prepared):
    source, _, _, cached = prepared
    memory = load_splits(source, label_key="label")
    kwargs = dict(seed=3, epochs=2, dynamic=True)
    from_memory = list(make_training_dataset(memory.train, 16, labels=memory.labels["train"], **kwargs))
    from_disk = list(make_training_dataset(cached.train, 16, labels=cached.labels["train"], **kwargs))
    assert len(from_memory) == len(from_disk) == 2 * -(-len(memory.train) // 16)
    for (x, y), (x2, y2) in zip(from_memory, from_disk):
        np.testing.assert_array_equal(x.numpy(), x2.numpy())
        np.testing.assert_array_equal(y.numpy(), y2.numpy())
    assert cached.train.rows_read == 2 * len(memory.train)


def test_replica_slices_read_only_their_rows_and_join_into_the_whole_batch(prepared):
    source, _, _, cached = prepared
    whole = [x.numpy() for x, _ in make_training_dataset(cached.train, 16, seed=1, epochs=1, dynamic=True)]
    read_before = cached.train.rows_read
    shares = []
    for worker in range(2):
        view = cached.train[:]  # a fresh counter
        shares.append([x.numpy() for x, _ in make_training_dataset(view, 16, seed=1, epochs=1, dynamic=True,
                                                                     replica_slices=(2, worker, 1))])
        assert view.rows_read == len(cached.train) // 2 + (len(cached.train) % 2) * (1 - worker)
    assert cached.train.rows_read == read_before
    for step, batch in enumerate(whole):
        np.testing.assert_array_equal(np.concatenate([shares[0][step], shares[1][step]]), batch)


def test_a_cache_of_other_options_or_a_changed_source_is_refused(prepared, tmp_path):
    source, options, cache_dir, _ = prepared
    with pytest.raises(DataError, match="holds npz:.*not .*image_size"):
        load_or_prepare(source, str(cache_dir), ReadOptions(label_key="label", image_size=(4, 4)), "bernoulli")
    write_npz(tmp_path / "x.npz", seed=1, labels=True)  # the same path, other images
    os.utime(tmp_path / "x.npz", ns=(1, 1))
    with pytest.raises(DataError, match="changed since --data-cache"):
        load_or_prepare(source, str(cache_dir), options, "bernoulli")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="a folder of other files"):
        load_or_prepare(source, str(tmp_path / "other"), options, "bernoulli")
    with pytest.raises(DataError, match="built in"):
        load_or_prepare("mnist", str(tmp_path / "m"), ReadOptions(), "bernoulli")


def test_a_full_disk_is_one_line_and_leaves_nothing_behind(tmp_path, monkeypatch):
    source = write_npz(tmp_path / "x.npz")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np.lib.format, "open_memmap", full)
    with pytest.raises(DataError, match=r"the disk of --data-cache .* is full \(the cache needs about"):
        load_or_prepare(source, str(tmp_path / "cache"), ReadOptions(), "bernoulli", log=lambda *a: None)
    assert not os.path.exists(tmp_path / "cache") and os.listdir(tmp_path) == ["x.npz"]


def test_a_truncated_shard_is_named(prepared):
    _, _, cache_dir, splits = prepared
    shard = splits.train._paths[0]
    with open(shard, "r+b") as f:
        f.truncate(os.path.getsize(shard) - 10)
    fresh = ShardedImages(splits.train._paths, splits.train._counts, splits.train.shape[1:], np.uint8)
    with pytest.raises(DataError, match="truncated"):
        fresh.take([len(fresh) - 1])
    source, options = prepared[:2]
    with pytest.raises(DataError, match=r"train-00000.npy is truncated \(.* bytes for .* images\); prepare"):
        load_or_prepare(source, str(cache_dir), options, "bernoulli")  # found when the cache is opened


# --------------------------------------------------------------------------- end to end


def tfvae(*args, env=None):
    return subprocess.run([sys.executable, "-m", "tfvae.cli.main", *args], capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}, timeout=600)


TINY = ["--epochs", "2", "--hidden-units", "8", "--latent-dim", "2", "--batch-size", "20", "--verbose", "0"]


def test_training_on_a_cache_gives_the_in_memory_history_and_resumes(tmp_path):
    source = write_npz(tmp_path / "x.npz")
    memory = tfvae("train", "--dataset", source, *TINY, "--run-dir", str(tmp_path / "memory"))
    assert memory.returncode == 0, memory.stderr
    first = tfvae("train", "--dataset", source, *TINY, "--epochs", "1", "--run-dir", str(tmp_path / "cached"),
                  "--data-cache", str(tmp_path / "cache"))
    assert first.returncode == 0, first.stderr
    assert "preparing --data-cache" in first.stderr and os.path.exists(tmp_path / "cache" / CACHE_FILE)
    more = tfvae("train", "--dataset", source, *TINY, "--run-dir", str(tmp_path / "cached"),
                 "--data-cache", str(tmp_path / "cache"))  # trained further to 2 epochs, from the cache
    assert more.returncode == 0, more.stderr
    assert "preparing" not in more.stderr and "read 96 training images from the cache in 1 epoch" in more.stderr
    assert (tmp_path / "memory" / "history.csv").read_bytes() == (tmp_path / "cached" / "history.csv").read_bytes()
    with open(tmp_path / "cached" / "config.json") as f:
        assert json.load(f)["data_cache"] == str(tmp_path / "cache")
    with open(tmp_path / "memory" / "config.json") as f:
        assert "data_cache" not in json.load(f)  # an in-memory run's config.json is as it always was
    evaluated = tfvae("evaluate", "--run-dir", str(tmp_path / "cached"), "--importance-samples", "2", "--json")
    assert evaluated.returncode == 0, evaluated.stderr


@pytest.mark.slow
def test_two_workers_on_a_cache_read_half_each_and_match_one(tmp_path):
    from test_distribute import free_ports
    from tfvae.runs import read_history

    source = write_npz(tmp_path / "x.npz", n=200)
    cache_args = ["--dataset", source, *TINY, "--data-cache", str(tmp_path / "cache")]
    single = tfvae("train", *cache_args, "--run-dir", str(tmp_path / "single"))
    assert single.returncode == 0, single.stderr
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    workers = [subprocess.Popen([sys.executable, "-m", "tfvae.cli.main", "train", *cache_args, "--run-dir",
                                 str(tmp_path / "multi"), "--strategy", "multi_worker"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
                                     "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})})
               for i in range(2)]
    try:
        outputs = [w.communicate(timeout=600)[1] for w in workers]
    finally:
        for w in workers:
            w.kill()
    assert [w.returncode for w in workers] == [0, 0], outputs
    for output in outputs:  # 160 training images a 2 epochs: each worker read half of the 320 rows
        assert "read 160 training images from the cache in 2 epochs (of 320" in output, output
    for a, b in zip(read_history(str(tmp_path / "multi")), read_history(str(tmp_path / "single"))):
        assert a == pytest.approx(b, rel=1e-4)
