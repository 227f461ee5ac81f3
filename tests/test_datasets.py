"""Tests for the sources of `--dataset`: folder:, npz:, tfds: (under tfds.testing.mock_data), their preparation
(resize, channels, carved splits, fingerprints, binarization) and every bad input the issue lists: one DataError each.

Images are generated in the tests, tiny (a few 8 x 8 or 12 x 12 pictures).
"""

import os
import sys

import numpy as np
import pytest

from tfvae.datasets import SOURCES, canonical_dataset, load_splits, parse_dataset
from tfvae.datasets.images import CARVED_FRACTION, evaluation_seeds, grey_levels, parse_image_size
from tfvae.errors import DataError


def write_pngs(folder, images, names=None, mode=None):
    """uint8 images (N, H, W[, 3]) as PNG files in `folder` (made); returns the paths."""
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = os.path.join(folder, (names or [f"{k:03d}.png" for k in range(len(images))])[i])
        Image.fromarray(np.asarray(image, np.uint8), mode=mode).save(path)
        paths.append(path)
    return paths


def random_uint8(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# --------------------------------------------------------------------------- parsing


def test_the_table_holds_one_reader_per_source():
    assert set(SOURCES) == {"tfds", "folder", "npz"}
    assert parse_dataset("folder:some/where") == ("folder", "some/where")
    assert parse_dataset("tfds:emnist/letters") == ("tfds", "emnist/letters")
    assert parse_dataset("mnist") == ("mnist", None)
    assert canonical_dataset("npz:x.npz") == "npz:" + os.path.abspath("x.npz")
    assert canonical_dataset("tfds:mnist") == "tfds:mnist"


@pytest.mark.parametrize("bad", ["cifar10", "folder:", "web:http://x", "npz"])
def test_unknown_datasets_are_refused_with_the_choices(bad):
    with pytest.raises(DataError, match="choose one of: binarized_mnist.*folder:PATH"):
        parse_dataset(bad)


@pytest.mark.parametrize("value, expected", [("32", (32, 32)), ("64x48", (64, 48)), ("12X8", (12, 8)), (None, None)])
def test_image_size_parses(value, expected):
    assert parse_image_size(value) == expected


@pytest.mark.parametrize("value", ["0", "x", "3x4x5", "-2", "big"])
def test_bad_image_sizes_are_refused(value):
    with pytest.raises(DataError, match="--image-size"):
        parse_image_size(value)


def test_the_readers_do_not_import_tensorflow():
    import subprocess

    code = "import sys, tfvae.datasets; print(sorted(m for m in ('tensorflow', 'tensorflow_datasets') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------- folder:


def test_a_folder_of_rgb_pngs_reads_with_carved_splits(tmp_path):
    images = random_uint8((20, 8, 8, 3))
    write_pngs(tmp_path / "imgs" / "nested", images)
    splits = load_splits(f"folder:{tmp_path / 'imgs'}", likelihood="continuous_bernoulli")
    carved = round(CARVED_FRACTION * 20)
    assert splits.image_shape == (8, 8, 3)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (20 - 2 * carved, carved, carved)
    everything = np.concatenate([splits.train, splits.validation, splits.test])
    # Every image lands in exactly one split, kept as the uint8 intensities it was read as (no float copy).
    assert splits.grey and everything.dtype == np.uint8
    assert sorted(map(bytes, everything)) == sorted(map(bytes, images))
    assert not splits.dynamic


def test_folder_subfolders_are_the_splits_and_bernoulli_binarizes_evaluation_once(tmp_path):
    images = random_uint8((9, 6, 6))
    write_pngs(tmp_path / "train", images[:5])
    write_pngs(tmp_path / "valid", images[5:7])
    write_pngs(tmp_path / "test", images[7:])
    splits = load_splits(f"folder:{tmp_path}")
    assert splits.dynamic and splits.image_shape == (6, 6, 1)
    np.testing.assert_array_equal(splits.train, images[:5, ..., None])  # intensities, binarized per epoch
    assert set(np.unique(splits.validation)) <= {0, 1} and splits.validation.dtype == np.uint8
    expected = (np.random.default_rng(evaluation_seeds()[1]).random((2, 6, 6, 1), dtype=np.float32)
                < grey_levels(images[7:, ..., None])).astype(np.uint8)
    np.testing.assert_array_equal(splits.test, expected)


def test_image_size_and_channels_convert_every_image(tmp_path):
    write_pngs(tmp_path / "a", random_uint8((3, 16, 16, 3)))
    write_pngs(tmp_path / "a", random_uint8((3, 8, 12), seed=1), names=["g0.png", "g1.png", "g2.png"])
    splits = load_splits(f"folder:{tmp_path / 'a'}", image_size="4x6", channels=1, likelihood="continuous_bernoulli")
    assert splits.image_shape == (4, 6, 1)


def test_resizing_uses_the_area_filter(tmp_path):
    image = np.zeros((1, 4, 4), np.uint8)
    image[0, :2, :2] = 255  # the top-left quarter lit
    np.savez(tmp_path / "x.npz", x_train=np.repeat(image, 3, axis=0))
    splits = load_splits(f"npz:{tmp_path / 'x.npz'}", image_size=2, likelihood="continuous_bernoulli")
    np.testing.assert_array_equal(splits.train[0, ..., 0], [[255, 0], [0, 0]])
    image[0, 0, 0] = 254  # one pixel of the lit quarter 1/255 dimmer: its mean (254.75) rounds to 255
    image[0, 2, 2] = 3  # the mean of a dark quarter, 0.75, rounds to 1: resized into uint8, to the nearest level
    np.savez(tmp_path / "y.npz", x_train=np.repeat(image, 3, axis=0))
    splits = load_splits(f"npz:{tmp_path / 'y.npz'}", image_size=2, likelihood="continuous_bernoulli")
    np.testing.assert_array_equal(splits.train[0, ..., 0], [[255, 0], [0, 1]])


def test_an_empty_folder_is_refused(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="holds no images"):
        load_splits(f"folder:{tmp_path / 'empty'}")


def test_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_splits(f"folder:{tmp_path / 'nowhere'}")


def test_a_truncated_image_is_named(tmp_path):
    paths = write_pngs(tmp_path, random_uint8((3, 8, 8)))
    with open(paths[1], "rb") as f:
        head = f.read(60)
    with open(paths[1], "wb") as f:
        f.write(head)
    with pytest.raises(DataError, match=f"cannot read image {paths[1]}"):
        load_splits(f"folder:{tmp_path}")


def test_a_file_that_is_not_an_image_is_named(tmp_path):
    write_pngs(tmp_path, random_uint8((3, 8, 8)))
    (tmp_path / "zz.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="cannot read image .*zz.png"):
        load_splits(f"folder:{tmp_path}")


def test_mixed_sizes_name_the_first_that_differs(tmp_path):
    write_pngs(tmp_path, random_uint8((2, 8, 8)), names=["a.png", "b.png"])
    write_pngs(tmp_path, random_uint8((1, 9, 8)), names=["c.png"])
    with pytest.raises(DataError, match=r"c.png is 9x8 but .*a.png is 8x8; pass --image-size"):
        load_splits(f"folder:{tmp_path}")


def test_mixed_modes_name_the_first_that_differs(tmp_path):
    write_pngs(tmp_path, random_uint8((2, 8, 8)), names=["a.png", "b.png"])
    write_pngs(tmp_path, random_uint8((1, 8, 8, 3)), names=["c.png"])
    with pytest.raises(DataError, match=r"c.png has mode RGB but .*a.png has L; pass --channels"):
        load_splits(f"folder:{tmp_path}")


def test_images_with_alpha_need_channels(tmp_path):
    write_pngs(tmp_path, random_uint8((3, 8, 8, 4)), mode="RGBA")
    with pytest.raises(DataError, match="mode RGBA; pass --channels 1 or 3"):
        load_splits(f"folder:{tmp_path}")
    assert load_splits(f"folder:{tmp_path}", channels=3, likelihood="continuous_bernoulli").image_shape == (8, 8, 3)


def test_a_one_image_dataset_is_refused(tmp_path):
    write_pngs(tmp_path, random_uint8((1, 8, 8)))
    with pytest.raises(DataError, match="has 1 training image; tfvae needs at least 3"):
        load_splits(f"folder:{tmp_path}")


# --------------------------------------------------------------------------- npz:


def test_an_npz_of_grey_floats_keeps_its_splits(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.random((6, 12, 12)), "x_valid": rng.random((2, 12, 12)), "x_test": rng.random((3, 12, 12))}
    np.savez(tmp_path / "g.npz", **arrays)
    splits = load_splits(f"npz:{tmp_path / 'g.npz'}", likelihood="continuous_bernoulli")
    np.testing.assert_allclose(splits.test[..., 0], arrays["x_test"].astype(np.float32))
    assert splits.image_shape == (12, 12, 1)
    assert splits.fingerprint.startswith("train 6 / validation 2 / test 3, sha256 ")


def test_the_fingerprint_follows_the_pixels(tmp_path):
    images = random_uint8((10, 8, 8))
    np.savez(tmp_path / "a.npz", x_train=images)
    images[3, 0, 0] ^= 1
    np.savez(tmp_path / "b.npz", x_train=images)
    first, again, changed = (load_splits(f"npz:{tmp_path / n}").fingerprint for n in ("a.npz", "a.npz", "b.npz"))
    assert first == again != changed


@pytest.mark.parametrize("arrays, message", [
    ({"x_test": np.zeros((3, 8, 8), np.uint8)}, "has no x_train array"),
    ({"x_train": np.array([np.zeros(3), np.zeros(4)], dtype=object)}, "cannot be loaded without unpickling"),
    ({"x_train": np.full((4, 8, 8), 1.5, np.float32)}, r"image 0 holds 1.5; float images must lie in \[0, 1\]"),
    ({"x_train": np.full((4, 8, 8), np.nan)}, r"holds nan; .*\(no NaN\)"),
    ({"x_train": np.zeros((4, 8, 8), np.int64)}, "holds int64 values"),
    ({"x_train": np.zeros((4, 8), np.uint8)}, "has shape"),
    ({"x_train": np.zeros((4, 8, 8, 2), np.uint8)}, "2 channels; pass --channels 1 or 3"),
    ({"x_train": np.zeros((1, 8, 8), np.uint8)}, "has 1 training image"),
    ({"x_train": np.zeros((4, 8, 8), np.uint8), "x_test": np.zeros((2, 9, 9), np.uint8)}, "the splits differ in image shape"),
])
def test_bad_npz_files_are_refused(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message):
        load_splits(f"npz:{tmp_path / 'bad.npz'}")


def test_a_file_that_is_not_an_npz_is_refused(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_splits(f"npz:{tmp_path / 'x.npz'}")
    with pytest.raises(DataError, match="does not exist"):
        load_splits(f"npz:{tmp_path / 'missing.npz'}")


def test_the_builtin_datasets_refuse_image_options():
    with pytest.raises(DataError, match="--image-size and --channels apply to tfds:, folder: and npz:"):
        load_splits("mnist", image_size=32)


# --------------------------------------------------------------------------- tfds: (offline, mock_data)


@pytest.fixture
def mock_tfds():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12):
        yield tfds


def test_a_tfds_dataset_reads_under_mock_data(mock_tfds):
    splits = load_splits("tfds:mnist", image_size=8)
    assert splits.image_shape == (8, 8, 1) and splits.dynamic
    assert len(splits.train) + len(splits.validation) == 12 and len(splits.test) == 12


def test_a_tfds_dataset_that_does_not_exist_is_refused(mock_tfds):
    with pytest.raises(DataError, match="no TFDS dataset tfds:no_such_dataset_xyz"):
        load_splits("tfds:no_such_dataset_xyz")


def test_a_tfds_feature_that_is_not_an_image_is_refused(mock_tfds):
    with pytest.raises(DataError, match="tfds:mnist has no image feature 'label'.*pass --image-key image"):
        load_splits("tfds:mnist", image_key="label")


def test_image_key_is_refused_for_sources_without_features(tmp_path):
    np.savez(tmp_path / "x.npz", x_train=random_uint8((4, 8, 8)))
    with pytest.raises(DataError, match="--image-key names a TFDS feature"):
        load_splits(f"npz:{tmp_path / 'x.npz'}", image_key="pixels")


def test_a_large_folder_shows_its_reading_progress(tmp_path, monkeypatch, capsys):
    from tfvae.datasets import folder

    monkeypatch.setattr(folder, "PROGRESS_FROM", 2)  # "large": more than 2 images
    images = random_uint8((5, 6, 6, 3))
    write_pngs(tmp_path / "imgs", images)
    splits = load_splits(f"folder:{tmp_path / 'imgs'}", likelihood="continuous_bernoulli")
    err = capsys.readouterr().err
    assert "reading folder:" in err and "5.00/5.00" in err and "img/s" in err
    everything = np.concatenate([splits.train, splits.validation, splits.test])
    assert sorted(map(bytes, everything)) == sorted(map(bytes, images))  # read into one array, every image once
