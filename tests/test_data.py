"""Tests for tfvae.datasets.mnist and tfvae.pipeline: the IDX and .amat readers, split loading, the cache
and the tf.data pipeline. The other sources (tfds:, folder:, npz:) are tested in test_datasets.py.

Most tests write tiny synthetic files into `tmp_path` and shrink `SPLIT_SIZES`;
the `realdata` tests read the real files at $TFVAE_DATA_DIR (the `data_dir`
fixture) and check them against their published sizes, checksums and statistics.
"""

import gzip
import os
import sys
import time
import tracemalloc
import types

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfvae import datasets, pipeline
from tfvae.datasets import mnist  # where the readers live: monkeypatch them there
from tfvae.config import IMAGE_SHAPE
from tfvae.errors import DataError

HEIGHT, WIDTH, _ = IMAGE_SHAPE
PIXELS = int(np.prod(IMAGE_SHAPE))
SMALL_SIZES = {"train": 6, "validation": 2, "test": 3}


# --------------------------------------------------------------------------- helpers


def idx_bytes(array, magic=None, dims=None):
    """An IDX file holding uint8 `array`; `magic` and `dims` override the header."""
    array = np.asarray(array, dtype=np.uint8)
    if magic is None:
        magic = 0x00000800 + array.ndim
    dims = array.shape if dims is None else dims
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in dims)
    return header + array.tobytes()


def amat_bytes(bits):
    """`.amat` text for (N, 784) bits: values separated by spaces, lines ended by '\\n'."""
    bits = np.asarray(bits, dtype=np.uint8).reshape(-1, PIXELS)
    rows = np.full((len(bits), 2 * PIXELS), ord(" "), dtype=np.uint8)
    rows[:, 0::2] = bits + ord("0")
    rows[:, -1] = ord("\n")
    return rows.tobytes()


def write(path, content):
    """Write `content` to `path`, gzip-compressed if the name ends in .gz; return the path as str."""
    path = str(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(gzip.compress(content) if path.endswith(".gz") else content)
    return path


def random_bits(n, seed):
    return np.random.default_rng(seed).integers(0, 2, (n, PIXELS), dtype=np.uint8)


def random_images(n, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, HEIGHT, WIDTH), dtype=np.uint8)


def write_binarized(root, sizes=SMALL_SIZES, suffix=".gz"):
    """Write the three .amat splits into `root`; return {split: (N, 784) bits}."""
    names = {"train": "train", "validation": "valid", "test": "test"}
    bits = {split: random_bits(sizes[split], seed=i) for i, split in enumerate(names)}
    for split, name in names.items():
        write(os.path.join(root, f"binarized_mnist_{name}.amat{suffix}"), amat_bytes(bits[split]))
    return bits


def write_idx_dataset(root, sizes=SMALL_SIZES):
    """Write train/t10k image and label IDX files into `root`; return (train_images, test_images)."""
    train = random_images(sizes["train"] + sizes["validation"], seed=10)
    test = random_images(sizes["test"], seed=11)
    write(os.path.join(root, "train-images-idx3-ubyte.gz"), idx_bytes(train))
    write(os.path.join(root, "t10k-images-idx3-ubyte.gz"), idx_bytes(test))
    write(os.path.join(root, "train-labels-idx1-ubyte.gz"), idx_bytes(np.arange(len(train)) % 10))
    write(os.path.join(root, "t10k-labels-idx1-ubyte.gz"), idx_bytes(np.arange(len(test)) % 10))
    return train, test


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Each test gets its own cache directory and no ambient data directory."""
    monkeypatch.setenv(datasets.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(datasets.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(mnist, "FASHION_MNIST_SYSTEM_DIR", str(tmp_path / "no-system-fashion-mnist"))


@pytest.fixture
def small_sizes(monkeypatch):
    monkeypatch.setattr(mnist, "SPLIT_SIZES", {name: dict(SMALL_SIZES) for name in datasets.SPLIT_SIZES})


@pytest.fixture
def parse_count(monkeypatch):
    """Counts the source files actually read (cache misses)."""
    calls = []
    real = mnist._read_bytes

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(mnist, "_read_bytes", counting)
    return calls


# --------------------------------------------------------------------------- read_idx


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trips_images_and_labels(tmp_path, suffix):
    images = random_images(3, seed=0)
    labels = np.array([7, 0, 9], dtype=np.uint8)
    got_images = datasets.read_idx(write(tmp_path / f"images{suffix}", idx_bytes(images)))
    got_labels = datasets.read_idx(write(tmp_path / f"labels{suffix}", idx_bytes(labels)))
    assert got_images.dtype == np.uint8 and got_images.shape == (3, HEIGHT, WIDTH)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    got_images[0, 0, 0] = 1  # callers get an ordinary, writable array


def test_read_idx_rejects_wrong_magic(tmp_path):
    path = write(tmp_path / "images", idx_bytes(random_images(2, 0), magic=0x00000903))
    with pytest.raises(DataError, match=r"magic number 0x00000903") as e:
        datasets.read_idx(path)
    assert path in str(e.value)


def test_read_idx_rejects_wrong_image_dims(tmp_path):
    images = np.zeros((2, HEIGHT - 1, WIDTH), dtype=np.uint8)
    path = write(tmp_path / "images.gz", idx_bytes(images))
    with pytest.raises(DataError, match=f"{HEIGHT - 1}x{WIDTH}, expected {HEIGHT}x{WIDTH}"):
        datasets.read_idx(path)


@pytest.mark.parametrize("extra", [-1, -PIXELS, +1])
def test_read_idx_rejects_payload_longer_or_shorter_than_header(tmp_path, extra):
    content = idx_bytes(random_images(3, 0))
    content = content[:extra] if extra < 0 else content + b"\0" * extra
    path = write(tmp_path / "images.gz", content)
    with pytest.raises(DataError, match="header says 3 items") as e:
        datasets.read_idx(path)
    assert path in str(e.value)


def test_read_idx_rejects_huge_count_without_allocating_it(tmp_path):
    # Header claims 2^31 images (1.7 TB) but only one image follows.
    path = write(tmp_path / "images", idx_bytes(random_images(1, 0), dims=(2**31, HEIGHT, WIDTH)))
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="truncated or corrupt"):
            datasets.read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


@pytest.mark.parametrize("content", [b"", b"\x00\x00\x08", b"\x00\x00\x08\x03\x00\x00\x00\x01"])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_rejects_empty_or_short_header(tmp_path, content, suffix):
    path = write(tmp_path / f"images{suffix}", content)
    with pytest.raises(DataError) as e:
        datasets.read_idx(path)
    assert path in str(e.value)


def test_read_idx_rejects_empty_gz_file(tmp_path):
    path = str(tmp_path / "images.gz")
    open(path, "wb").close()  # zero bytes, not even a gzip header
    with pytest.raises(DataError, match="empty"):
        datasets.read_idx(path)


# --------------------------------------------------------------------------- shared reader failures


READERS = [(datasets.read_idx, idx_bytes(random_images(4, 0))), (datasets.read_amat, amat_bytes(random_bits(4, 0)))]


@pytest.mark.parametrize("reader, valid", READERS, ids=["idx", "amat"])
def test_readers_reject_garbage_named_gz(tmp_path, reader, valid):
    path = str(tmp_path / "file.gz")
    with open(path, "wb") as f:
        f.write(valid)  # uncompressed bytes under a .gz name
    with pytest.raises(DataError, match="not a valid gzip file") as e:
        reader(path)
    assert path in str(e.value)


@pytest.mark.parametrize("reader, valid", READERS, ids=["idx", "amat"])
def test_readers_reject_truncated_gzip_stream(tmp_path, reader, valid):
    path = str(tmp_path / "file.gz")
    compressed = gzip.compress(valid)
    with open(path, "wb") as f:
        f.write(compressed[: len(compressed) // 2])
    with pytest.raises(DataError, match="not a valid gzip file or is truncated") as e:
        reader(path)
    assert path in str(e.value)


@pytest.mark.parametrize("reader", [datasets.read_idx, datasets.read_amat])
def test_readers_name_a_missing_file(tmp_path, reader):
    path = str(tmp_path / "nope.gz")
    with pytest.raises(DataError, match=f"{path} does not exist"):
        reader(path)


# --------------------------------------------------------------------------- read_amat


@pytest.mark.parametrize("suffix", [".amat", ".amat.gz"])
def test_read_amat_round_trips_and_agrees_with_loadtxt(tmp_path, suffix):
    bits = random_bits(5, seed=1)
    path = write(tmp_path / f"x{suffix}", amat_bytes(bits))
    got = datasets.read_amat(path)
    assert got.dtype == np.uint8 and got.shape == (5, PIXELS)
    np.testing.assert_array_equal(got, bits)
    np.testing.assert_array_equal(got, np.loadtxt(path, dtype=np.uint8))  # the reference reader


def amat_lines(n=4, seed=0):
    return amat_bytes(random_bits(n, seed)).split(b"\n")[:-1]


def test_read_amat_names_line_with_wrong_row_length(tmp_path):
    lines = amat_lines()
    lines[2] = lines[2][:-2]  # 783 values
    path = write(tmp_path / "x.amat", b"\n".join(lines) + b"\n")
    with pytest.raises(DataError, match=r"line 3: expected 784 values .* got 1565 characters") as e:
        datasets.read_amat(path)
    assert path in str(e.value)


def test_read_amat_names_line_with_extra_value_even_if_total_length_fits(tmp_path):
    lines = amat_lines()
    lines[1] += b" 0"  # 785 values, and line 3 loses one: the byte count stays a multiple of a row
    lines[2] = lines[2][:-2]
    path = write(tmp_path / "x.amat.gz", b"\n".join(lines) + b"\n")
    with pytest.raises(DataError, match=r"line 2: .* got 1569 characters"):
        datasets.read_amat(path)


def test_read_amat_names_line_and_value_outside_0_1(tmp_path):
    lines = amat_lines()
    lines[1] = lines[1][:20] + b"2" + lines[1][21:]  # value 11 of line 2
    path = write(tmp_path / "x.amat", b"\n".join(lines) + b"\n")
    with pytest.raises(DataError, match=r"line 2: value 11 is b'2', expected b'0' or b'1'") as e:
        datasets.read_amat(path)
    assert path in str(e.value)


def test_read_amat_rejects_wrong_separator(tmp_path):
    lines = amat_lines()
    lines[3] = lines[3][:5] + b"\t" + lines[3][6:]  # after value 3 of line 4
    path = write(tmp_path / "x.amat", b"\n".join(lines) + b"\n")
    with pytest.raises(DataError, match=r"line 4: after value 3 found b'\\t', expected a single space"):
        datasets.read_amat(path)


def test_read_amat_rejects_missing_final_newline(tmp_path):
    path = write(tmp_path / "x.amat", amat_bytes(random_bits(3, 0))[:-1])
    with pytest.raises(DataError, match=r"line 3: the last line does not end in a newline"):
        datasets.read_amat(path)


@pytest.mark.parametrize("suffix", [".amat", ".amat.gz"])
def test_read_amat_rejects_empty_file(tmp_path, suffix):
    path = write(tmp_path / f"x{suffix}", b"")
    with pytest.raises(DataError, match="is empty"):
        datasets.read_amat(path)


# --------------------------------------------------------------------------- fuzzing


FUZZ = settings(max_examples=150, deadline=2000,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@st.composite
def mutated(draw, valid):
    """`valid` with a few random byte flips, insertions, deletions or a truncation."""
    content = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, len(content)))
        if op == "flip" and at < len(content):
            content[at] = draw(st.integers(0, 255))
        elif op == "insert":
            content[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del content[at:at + draw(st.integers(1, 8))]
        elif op == "truncate":
            del content[at:]
    return bytes(content)


def check_idx_result(array):
    assert array.dtype == np.uint8
    assert array.ndim == 1 or array.shape[1:] == (HEIGHT, WIDTH)


def check_amat_result(array):
    assert array.dtype == np.uint8 and array.ndim == 2 and array.shape[1] == PIXELS
    assert len(array) >= 1 and array.max() <= 1


def read_or_data_error(reader, path, check):
    """The reader either returns a valid array or raises DataError; anything else fails the test."""
    try:
        array = reader(path)
    except DataError:
        return
    check(array)


VALID_IDX = {"images": idx_bytes(random_images(2, 0)), "labels": idx_bytes(np.arange(5))}
VALID_AMAT = amat_bytes(random_bits(2, 0))


@FUZZ
@given(content=st.one_of(st.binary(max_size=2000),
                         mutated(VALID_IDX["images"]), mutated(VALID_IDX["labels"])),
       suffix=st.sampled_from(["", ".gz"]))
def test_fuzz_read_idx(tmp_path_factory, content, suffix):
    path = write(tmp_path_factory.mktemp("fuzz") / f"f{suffix}", content)
    read_or_data_error(datasets.read_idx, path, check_idx_result)


@FUZZ
@given(content=st.one_of(st.binary(max_size=2000), mutated(gzip.compress(VALID_IDX["images"]))))
def test_fuzz_read_idx_corrupt_gzip(tmp_path_factory, content):
    path = str(tmp_path_factory.mktemp("fuzz") / "f.gz")
    with open(path, "wb") as f:
        f.write(content)  # raw bytes, not re-compressed
    read_or_data_error(datasets.read_idx, path, check_idx_result)


@FUZZ
@given(dims=st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
       payload=st.binary(max_size=64))
def test_fuzz_read_idx_header_claims_never_drive_allocation(tmp_path_factory, dims, payload):
    path = write(tmp_path_factory.mktemp("fuzz") / "f", bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in dims) + payload)
    tracemalloc.start()
    try:
        read_or_data_error(datasets.read_idx, path, check_idx_result)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


@FUZZ
@given(content=st.one_of(st.binary(max_size=4000), mutated(VALID_AMAT),
                         st.lists(st.sampled_from(b"01 \n2"), max_size=3200).map(bytes)),
       suffix=st.sampled_from([".amat", ".amat.gz"]))
def test_fuzz_read_amat(tmp_path_factory, content, suffix):
    path = write(tmp_path_factory.mktemp("fuzz") / f"f{suffix}", content)
    read_or_data_error(datasets.read_amat, path, check_amat_result)


@FUZZ
@given(content=mutated(gzip.compress(VALID_AMAT)))
def test_fuzz_read_amat_corrupt_gzip(tmp_path_factory, content):
    path = str(tmp_path_factory.mktemp("fuzz") / "f.amat.gz")
    with open(path, "wb") as f:
        f.write(content)
    read_or_data_error(datasets.read_amat, path, check_amat_result)


# --------------------------------------------------------------------------- load_splits: local files


@pytest.mark.parametrize("subdir", ["binarized_mnist", ""])
@pytest.mark.parametrize("suffix", [".gz", ""])
def test_load_binarized_mnist_from_either_layout(tmp_path, small_sizes, subdir, suffix):
    bits = write_binarized(tmp_path / "data" / subdir, suffix=suffix)
    splits = datasets.load_splits("binarized_mnist", data_dir=str(tmp_path / "data"))
    assert splits.dynamic is False
    for split in ("train", "validation", "test"):
        array = getattr(splits, split)
        assert array.dtype == np.uint8 and array.shape == (SMALL_SIZES[split],) + IMAGE_SHAPE
        np.testing.assert_array_equal(array.reshape(-1, PIXELS), bits[split])


def test_load_splits_reads_data_dir_from_environment(tmp_path, small_sizes, monkeypatch):
    bits = write_binarized(tmp_path / "data" / "binarized_mnist")
    monkeypatch.setenv(datasets.DATA_DIR_ENV, str(tmp_path / "data"))
    splits = datasets.load_splits("binarized_mnist")
    np.testing.assert_array_equal(splits.test.reshape(-1, PIXELS), bits["test"])


def test_load_mnist_is_dynamic_with_fixed_validation_and_test(tmp_path, small_sizes):
    train, test = write_idx_dataset(tmp_path / "data" / "mnist")
    splits = datasets.load_splits("mnist", data_dir=str(tmp_path / "data"))
    assert splits.dynamic is True
    # train: the first images, grey intensities untouched.
    np.testing.assert_array_equal(splits.train, train[:SMALL_SIZES["train"], :, :, None])
    assert splits.validation.shape == (SMALL_SIZES["validation"],) + IMAGE_SHAPE
    assert splits.test.shape == (SMALL_SIZES["test"],) + IMAGE_SHAPE
    for binarized, intensities in ((splits.validation, train[SMALL_SIZES["train"]:]), (splits.test, test)):
        intensities = intensities[..., None]
        assert binarized.dtype == np.uint8 and set(np.unique(binarized)) <= {0, 1}
        assert (binarized[intensities == 0] == 0).all() and (binarized[intensities == 255] == 1).all()
        # E[x] = intensity / 255: with ~2000 pixels the mean is close.
        assert abs(binarized.mean() - intensities.mean() / 255) < 0.05
    # Validation and test are binarized with the dataset's own fixed streams (not a run's seed):
    # SeedSequence(EVALUATION_SEED = 0).spawn(3) gives the validation, test and train streams.
    validation_rng, test_rng, _ = (np.random.default_rng(s) for s in np.random.SeedSequence(0).spawn(3))
    for binarized, intensities, rng in ((splits.validation, train[SMALL_SIZES["train"]:], validation_rng),
                                        (splits.test, test, test_rng)):
        u = rng.random(binarized.shape, dtype=np.float32)
        np.testing.assert_array_equal(binarized, (u < intensities[..., None].astype(np.float32) / 255).astype(np.uint8))


def test_load_fashion_mnist_from_data_dir_then_system_dir(tmp_path, small_sizes, monkeypatch):
    train, _ = write_idx_dataset(tmp_path / "data" / "fashion_mnist")
    splits = datasets.load_splits("fashion_mnist", data_dir=str(tmp_path / "data"))
    assert splits.dynamic and splits.train.shape == (SMALL_SIZES["train"],) + IMAGE_SHAPE
    np.testing.assert_array_equal(splits.train[..., 0], train[:SMALL_SIZES["train"]])

    system_train, _ = write_idx_dataset(tmp_path / "system")
    monkeypatch.setattr(mnist, "FASHION_MNIST_SYSTEM_DIR", str(tmp_path / "system"))
    for data_dir in (None, str(tmp_path / "empty")):  # no data dir, and one without fashion_mnist/
        os.makedirs(tmp_path / "empty", exist_ok=True)
        splits = datasets.load_splits("fashion_mnist", data_dir=data_dir)
        np.testing.assert_array_equal(splits.train[..., 0], system_train[:SMALL_SIZES["train"]])


def test_load_splits_rejects_wrong_split_sizes(tmp_path, small_sizes, monkeypatch):
    write_binarized(tmp_path / "data", sizes={"train": 6, "validation": 3, "test": 3})
    with pytest.raises(DataError, match="binarized_mnist validation split has 3 images, expected 2"):
        datasets.load_splits("binarized_mnist", data_dir=str(tmp_path / "data"))
    write_idx_dataset(tmp_path / "data" / "mnist", sizes={"train": 6, "validation": 1, "test": 3})
    with pytest.raises(DataError, match="mnist train \\+ validation split has 7 images, expected 8"):
        datasets.load_splits("mnist", data_dir=str(tmp_path / "data"))


def test_real_split_sizes_are_the_published_ones():
    assert datasets.SPLIT_SIZES["binarized_mnist"] == {"train": 50_000, "validation": 10_000, "test": 10_000}
    assert datasets.SPLIT_SIZES["mnist"] == {"train": 50_000, "validation": 10_000, "test": 10_000}


def test_load_splits_rejects_missing_data_dir(tmp_path, monkeypatch):
    missing = str(tmp_path / "missing")
    with pytest.raises(DataError, match=f"data directory {missing} does not exist"):
        datasets.load_splits("binarized_mnist", data_dir=missing)
    monkeypatch.setenv(datasets.DATA_DIR_ENV, missing)
    with pytest.raises(DataError, match=f"data directory {missing} does not exist"):
        datasets.load_splits("mnist")


@pytest.mark.parametrize("dataset, missing", [
    ("binarized_mnist", "binarized_mnist_valid.amat.gz"),
    ("mnist", "t10k-images-idx3-ubyte.gz"),
])
def test_load_splits_names_missing_split_file(tmp_path, small_sizes, dataset, missing):
    write_binarized(tmp_path / "data" / "binarized_mnist")
    write_idx_dataset(tmp_path / "data" / "mnist")
    os.remove(tmp_path / "data" / dataset / missing)
    with pytest.raises(DataError, match="expected one of") as e:
        datasets.load_splits(dataset, data_dir=str(tmp_path / "data"))
    assert str(tmp_path / "data" / dataset / missing) in str(e.value)


def test_load_splits_rejects_unknown_dataset(tmp_path):
    with pytest.raises(DataError, match="unknown --dataset 'cifar10'.*tfds:NAME"):
        datasets.load_splits("cifar10", data_dir=str(tmp_path))


def test_load_splits_reports_corrupt_file(tmp_path, small_sizes):
    write_binarized(tmp_path / "data")
    path = tmp_path / "data" / "binarized_mnist_test.amat.gz"
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(DataError, match="binarized_mnist_test.amat.gz is not a valid gzip file"):
        datasets.load_splits("binarized_mnist", data_dir=str(tmp_path / "data"))


# --------------------------------------------------------------------------- load_splits: TFDS fallback


def fake_tfds(monkeypatch, prepared, load=None):
    """Install a stand-in tensorflow_datasets module; return the list of its load() calls."""
    calls = []

    def builder(name):
        return types.SimpleNamespace(is_prepared=lambda: prepared)

    def default_load(name, split, batch_size, download):
        calls.append({"name": name, "split": split, "batch_size": batch_size, "download": download})
        sizes = {"train": 6, "validation": 2, "test": 3} if name == "binarized_mnist" else {"train": 8, "test": 3}
        high = 2 if name == "binarized_mnist" else 256
        return [{"image": np.random.default_rng(0).integers(0, high, (sizes[s],) + IMAGE_SHAPE, dtype=np.uint8),
                 "label": np.zeros(sizes[s], np.int64)} for s in split]

    module = types.SimpleNamespace(builder=builder, load=load or default_load, as_numpy=lambda tree: tree)
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", module)
    return calls


def test_offline_without_local_data_fails_fast_with_one_clear_error(monkeypatch):
    calls = fake_tfds(monkeypatch, prepared=False)
    monkeypatch.setattr(mnist, "_network_available", lambda host, *a, **k: False)
    start = time.monotonic()
    for dataset in ("binarized_mnist", "mnist"):
        with pytest.raises(DataError, match="--data-dir or TFVAE_DATA_DIR") as e:
            datasets.load_splits(dataset)
        assert "unreachable" in str(e.value)
    assert calls == []  # TFDS is never asked to download
    assert time.monotonic() - start < 2


def test_network_probe_gives_up_quickly():
    start = time.monotonic()
    assert mnist._network_available("tfvae-test.invalid", timeout=0.5) is False  # .invalid never resolves
    assert time.monotonic() - start < 2


def test_prepared_tfds_dataset_is_used_without_download(monkeypatch, small_sizes):
    calls = fake_tfds(monkeypatch, prepared=True)
    monkeypatch.setattr(mnist, "_network_available", lambda *a, **k: pytest.fail("no probe needed"))
    splits = datasets.load_splits("binarized_mnist")
    assert splits.train.shape == (6,) + IMAGE_SHAPE and not splits.dynamic
    splits = datasets.load_splits("mnist")
    assert splits.dynamic and splits.train.shape == (6,) + IMAGE_SHAPE
    assert splits.validation.shape == (2,) + IMAGE_SHAPE and splits.validation.max() <= 1
    assert [c["download"] for c in calls] == [False, False]
    assert calls[0]["split"] == ["train", "validation", "test"] and calls[1]["split"] == ["train", "test"]
    assert all(c["batch_size"] == -1 for c in calls)


def test_tfds_failure_online_becomes_data_error(monkeypatch):
    def failing_load(*args, **kwargs):
        raise ConnectionError("download interrupted")

    fake_tfds(monkeypatch, prepared=False, load=failing_load)
    monkeypatch.setattr(mnist, "_network_available", lambda *a, **k: True)
    with pytest.raises(DataError, match="ConnectionError: download interrupted.*TFVAE_DATA_DIR"):
        datasets.load_splits("binarized_mnist")


def test_missing_tfds_becomes_data_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # makes the import fail
    with pytest.raises(DataError, match="tensorflow-datasets is not importable.*TFVAE_DATA_DIR"):
        datasets.load_splits("mnist")


# --------------------------------------------------------------------------- cache


def cache_files(tmp_path):
    directory = tmp_path / "cache"
    return sorted(directory.glob("*.npy")) if directory.is_dir() else []


def test_second_load_hits_the_cache(tmp_path, small_sizes, parse_count):
    write_binarized(tmp_path / "data")
    first = datasets.load_splits("binarized_mnist", data_dir=str(tmp_path / "data"))
    assert len(parse_count) == 3 and len(cache_files(tmp_path)) == 3
    second = datasets.load_splits("binarized_mnist", data_dir=str(tmp_path / "data"))
    assert len(parse_count) == 3  # nothing parsed again
    np.testing.assert_array_equal(first.train, second.train)
    assert not [p for p in os.listdir(tmp_path / "cache") if p.endswith(".tmp")]  # atomic writes left no debris


@pytest.mark.parametrize("corruption", ["garbage", "truncated", "wrong_shape", "wrong_dtype", "pickled", "bad_values"])
def test_corrupt_cache_is_ignored_and_rebuilt(tmp_path, small_sizes, parse_count, corruption):
    bits = write_binarized(tmp_path / "data")
    datasets.load_splits("binarized_mnist", data_dir=str(tmp_path / "data"))
    for path in cache_files(tmp_path):
        if corruption == "garbage":
            path.write_bytes(b"not a numpy file")
        elif corruption == "truncated":
            path.write_bytes(path.read_bytes()[:200])
        elif corruption == "wrong_shape":
            np.save(path, np.zeros((3, 3), np.uint8))
        elif corruption == "wrong_dtype":
            np.save(path, np.zeros((6, PIXELS), np.float32))
        elif corruption == "pickled":
            np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        elif corruption == "bad_values":
            np.save(path, np.full((6, PIXELS), 7, np.uint8))
    splits = datasets.load_splits("binarized_mnist", data_dir=str(tmp_path / "data"))
    assert len(parse_count) == 6  # every split parsed again
    np.testing.assert_array_equal(splits.train.reshape(-1, PIXELS), bits["train"])
    for path in cache_files(tmp_path):  # and the cache holds good arrays again
        cached = np.load(path, allow_pickle=False)
        assert cached.dtype == np.uint8 and cached.shape[1] == PIXELS


def test_changed_source_file_is_parsed_again(tmp_path, small_sizes):
    write_binarized(tmp_path / "data")
    datasets.load_splits("binarized_mnist", data_dir=str(tmp_path / "data"))
    new_test = random_bits(SMALL_SIZES["test"], seed=99)
    path = write(tmp_path / "data" / "binarized_mnist_test.amat.gz", amat_bytes(new_test))
    os.utime(path, ns=(1, 1))  # a different mtime even on a coarse clock
    splits = datasets.load_splits("binarized_mnist", data_dir=str(tmp_path / "data"))
    np.testing.assert_array_equal(splits.test.reshape(-1, PIXELS), new_test)


def test_unwritable_cache_dir_is_skipped(tmp_path, small_sizes, monkeypatch, parse_count):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(datasets.CACHE_DIR_ENV, str(blocker / "cache"))  # cannot be created under a file
    bits = write_binarized(tmp_path / "data")
    for _ in range(2):
        splits = datasets.load_splits("binarized_mnist", data_dir=str(tmp_path / "data"))
        np.testing.assert_array_equal(splits.validation.reshape(-1, PIXELS), bits["validation"])
    assert len(parse_count) == 6


# --------------------------------------------------------------------------- make_dataset


def epochs(dataset, n=2):
    """`n` passes over `dataset`, each as (inputs, targets) concatenated over batches."""
    result = []
    for _ in range(n):
        pairs = [(x.numpy(), y.numpy()) for x, y in dataset]
        result.append(tuple(np.concatenate(part) for part in zip(*pairs)))
    return result


STATIC = (random_bits(20, seed=3).reshape((-1,) + IMAGE_SHAPE))
INTENSITIES = random_images(20, seed=4)[..., None]


def test_make_dataset_yields_float_input_target_pairs():
    dataset = pipeline.make_dataset(STATIC, batch_size=8, training=False)
    batches = list(dataset)
    assert [tuple(x.shape) for x, _ in batches] == [(8,) + IMAGE_SHAPE, (8,) + IMAGE_SHAPE, (4,) + IMAGE_SHAPE]
    x, target = batches[0]
    assert x.dtype.name == "float32" and target.dtype.name == "float32"
    np.testing.assert_array_equal(x.numpy(), target.numpy())
    # Not training: every image once, in order, with its values kept.
    (inputs, _), = epochs(dataset, n=1)
    np.testing.assert_array_equal(inputs, STATIC.astype(np.float32))


def test_make_dataset_drop_remainder_gives_full_batches_only():
    dataset = pipeline.make_dataset(STATIC, batch_size=8, training=True, drop_remainder=True)
    assert [x.shape[0] for x, _ in dataset] == [8, 8]


def test_make_dataset_training_shuffles_every_epoch_deterministically():
    first = epochs(pipeline.make_dataset(STATIC, batch_size=8, training=True, seed=1))
    again = epochs(pipeline.make_dataset(STATIC, batch_size=8, training=True, seed=1))
    other = epochs(pipeline.make_dataset(STATIC, batch_size=8, training=True, seed=2))
    assert len(first) == len(again) == 2
    for (a, _), (b, _) in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0][0], first[1][0])  # a new order each epoch
    assert not np.array_equal(first[0][0], other[0][0])
    # Each epoch is a permutation of the whole array.
    flat = STATIC.reshape(len(STATIC), -1)
    for inputs, _ in first:
        got = inputs.reshape(len(inputs), -1).astype(np.uint8)
        assert sorted(map(bytes, got)) == sorted(map(bytes, flat))


def test_make_dataset_dynamic_binarizes_afresh_each_epoch_reproducibly():
    first = epochs(pipeline.make_dataset(INTENSITIES, batch_size=8, training=True, seed=7, dynamic=True))
    again = epochs(pipeline.make_dataset(INTENSITIES, batch_size=8, training=True, seed=7, dynamic=True))
    assert len(first) == len(again) == 2
    for (a, a_target), (b, _) in zip(first, again):
        np.testing.assert_array_equal(a, b)  # same seed, same epochs
        np.testing.assert_array_equal(a, a_target)  # target is the binarized input itself
        assert set(np.unique(a)) <= {0.0, 1.0}
    assert not np.array_equal(first[0][0], first[1][0])


def test_make_dataset_dynamic_draws_new_noise_each_epoch_for_the_same_image():
    # One image, no shuffling: only fresh randomness can make two epochs differ.
    image = np.full((1,) + IMAGE_SHAPE, 128, np.uint8)
    (a, _), (b, _) = epochs(pipeline.make_dataset(image, batch_size=1, training=False, seed=0, dynamic=True))
    assert (a != b).mean() > 0.3  # two independent Bernoulli(0.5) draws differ half the time


def test_make_dataset_dynamic_matches_bernoulli_means():
    p = np.array([0, 64, 191, 255], np.uint8)
    images = np.repeat(p, 100)[:, None, None, None] * np.ones((1,) + IMAGE_SHAPE, np.uint8)  # (400, 28, 28, 1)
    (x, _), = epochs(pipeline.make_dataset(images, batch_size=100, training=False, seed=3, dynamic=True), n=1)
    means = x.reshape(4, -1).mean(axis=1)
    np.testing.assert_allclose(means, p / 255, atol=0.01)
    assert means[0] == 0 and means[-1] == 1


def test_make_dataset_shards_in_memory_data_by_data():
    import tensorflow as tf

    dataset = pipeline.make_dataset(STATIC, batch_size=4, training=True)
    policy = dataset.options().experimental_distribute.auto_shard_policy
    assert policy == tf.data.experimental.AutoShardPolicy.DATA


@pytest.mark.parametrize("images, kwargs, message", [
    (INTENSITIES, {}, "dynamic=True"),
    (STATIC.astype(np.float64), {}, "uint8 or float32"),
    (STATIC.astype(np.float32) * 2, {}, r"grey levels in \[0, 1\]"),
    (STATIC[..., 0], {}, "shape"),
    (STATIC, {"batch_size": 0}, "batch_size"),
])
def test_make_dataset_rejects_misuse(images, kwargs, message):
    kwargs = {"batch_size": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        pipeline.make_dataset(images, training=True, **kwargs)


def test_importing_tfvae_pipeline_does_not_import_tensorflow():
    import subprocess

    code = "import sys, tfvae.pipeline; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert result.stdout.strip() == "False"


# --------------------------------------------------------------------------- real data ($TFVAE_DATA_DIR)


@pytest.mark.realdata
def test_real_binarized_mnist_and_cache_hit(data_dir, parse_count):
    start = time.monotonic()
    splits = datasets.load_splits("binarized_mnist", data_dir=data_dir)
    cold = time.monotonic() - start
    assert splits.train.shape == (50_000,) + IMAGE_SHAPE and splits.validation.shape == (10_000,) + IMAGE_SHAPE
    assert splits.test.shape == (10_000,) + IMAGE_SHAPE and splits.test.dtype == np.uint8
    assert splits.test.mean() == pytest.approx(0.132512, abs=1e-6)
    assert splits.train.mean() == pytest.approx(0.130562, abs=1e-6)
    start = time.monotonic()
    again = datasets.load_splits("binarized_mnist", data_dir=data_dir)
    warm = time.monotonic() - start
    assert len(parse_count) == 3  # the second load read no source file
    np.testing.assert_array_equal(again.test, splits.test)
    assert cold < 10 and warm < 5, (cold, warm)


@pytest.mark.realdata
def test_real_mnist_dynamic_splits(data_dir):
    splits = datasets.load_splits("mnist", data_dir=data_dir)
    assert splits.dynamic and splits.train.shape == (50_000,) + IMAGE_SHAPE and splits.train.max() == 255
    assert splits.validation.shape == (10_000,) + IMAGE_SHAPE and splits.validation.max() == 1
    # Test pixels: mean intensity 33.79 / 255, so about 0.1325 of the binarized pixels are on.
    assert splits.test.mean() == pytest.approx(33.791224 / 255, abs=1e-3)


# Published checksums of the uncompressed files (shared/data/README.md): the sha256 that TensorFlow Datasets
# registers for Larochelle's .amat files, and the canonical md5 of the MNIST IDX files.
BINARIZED_MNIST_SHA256 = {
    "train": "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d",
    "valid": "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2",
    "test": "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c",
}
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(BINARIZED_MNIST_SHA256))
def test_real_amat_files_read_back_to_their_published_checksum(data_dir, name):
    """read_amat returns exactly the file: written back as .amat text, its bits hash to the published sha256."""
    import hashlib

    bits = datasets.read_amat(os.path.join(data_dir, "binarized_mnist", f"binarized_mnist_{name}.amat.gz"))
    assert hashlib.sha256(amat_bytes(bits)).hexdigest() == BINARIZED_MNIST_SHA256[name]


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(MNIST_MD5))
def test_real_idx_files_read_back_to_their_published_checksum(data_dir, name):
    """read_idx returns exactly the file: with its IDX header put back, the array hashes to the canonical md5."""
    import hashlib

    array = datasets.read_idx(os.path.join(data_dir, "mnist", f"{name}.gz"))
    assert hashlib.md5(idx_bytes(array)).hexdigest() == MNIST_MD5[name]


# --------------------------------------------------------------------------- the tests' own synthetic data


def test_the_synthetic_data_dir_loads_like_the_real_one(synthetic_data_dir):
    """The session's stand-in for shared/data (conftest): full split sizes, binary, digit-like sparsity."""
    splits = datasets.load_splits("binarized_mnist", data_dir=synthetic_data_dir)
    assert not splits.dynamic
    for split, size in datasets.SPLIT_SIZES["binarized_mnist"].items():
        images = getattr(splits, split)
        assert images.shape == (size,) + IMAGE_SHAPE and images.dtype == np.uint8 and images.max() == 1, split
        assert 0.08 < images.mean() < 0.2, split  # binarized MNIST: 0.13
    assert len(np.unique(splits.test[:1000].reshape(1000, -1), axis=0)) == 1000  # no two images alike
