"""Tests for the dataset layer ``zoo.data`` (offline: tfds is mocked)."""

from __future__ import annotations

import hashlib
import re
import tarfile
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import zoo.data as zd
from zoo.data import folder as folder_module
from zoo.data.split import allocate_per_class, stratified_split, stratified_subset

CLASSES = ("cat", "dog", "frog")
PER_CLASS = 6


@pytest.fixture(autouse=True)
def isolated_cache(monkeypatch, tmp_path):
    cache = tmp_path / "cache"
    monkeypatch.setenv("ZOO_CACHE", str(cache))
    monkeypatch.delenv("ZOO_OFFLINE", raising=False)
    return cache


# --- helpers -----------------------------------------------------------------


def class_colour(label: int) -> int:
    return 40 * (label + 1)


def write_image(path: Path, value: int, size=(8, 8), fmt="png") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = tf.fill((*size, 3), tf.constant(value, tf.uint8))
    encoded = tf.io.encode_png(image) if fmt == "png" else tf.io.encode_jpeg(image, quality=100)
    path.write_bytes(encoded.numpy())


def make_class_folder(root: Path, split: str = "train", per_class: int = PER_CLASS) -> Path:
    """``root/split/<class>/NN.png`` filled with a colour per class, plus one corrupt file."""
    for label, name in enumerate(CLASSES):
        for i in range(per_class):
            write_image(root / split / name / f"{i:02d}.png", class_colour(label))
    (root / split / "dog" / "corrupt.jpg").write_bytes(b"definitely not a jpeg")
    return root


def tar_folder(folder: Path, out: Path) -> Path:
    with tarfile.open(out, "w:gz") as tar:
        for file in sorted(folder.rglob("*")):
            tar.add(file, arcname=file.relative_to(folder).as_posix(), recursive=False)
    return out


def to_numpy(ds: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    images, labels = zip(*ds.as_numpy_iterator())
    return np.stack(images), np.array(labels)


def imbalanced_labels() -> np.ndarray:
    return np.repeat([0, 1, 2], [60, 30, 10])


# --- tensorflow-datasets -----------------------------------------------------


def test_tfds_cifar10_mocked_split_sizes_and_dtypes(tmp_path):
    with tfds.testing.mock_data(num_examples=50):
        splits = zd.load("cifar10", validation=0.2, seed=3, data_dir=str(tmp_path))
        again = zd.load("tfds:cifar10", validation=0.2, seed=3, data_dir=str(tmp_path))
        train_images, train_labels = to_numpy(splits.train)
        _, val_labels = to_numpy(splits.validation)
        _, val_labels_again = to_numpy(again.validation)

    info = splits.info
    assert (info.num_train, info.num_validation) == (40, 10)
    assert (len(train_labels), len(val_labels)) == (40, 10)
    assert info.image_shape == (32, 32, 3) and info.num_classes == 10
    assert train_images.dtype == np.uint8 and train_images.shape[1:] == (32, 32, 3)
    assert splits.train.element_spec[1].dtype == tf.int32
    assert splits.train.cardinality() == 40
    np.testing.assert_array_equal(val_labels, val_labels_again)


def test_tfds_mnist_mocked_test_split_has_no_validation(tmp_path):
    with tfds.testing.mock_data(num_examples=12):
        splits = zd.load("mnist", split="test", data_dir=str(tmp_path))
        images, labels = to_numpy(splits.train)
    assert splits.validation is None
    assert splits.info.num_train == 12 and splits.info.num_validation == 0
    assert images.shape == (12, 28, 28, 1) and labels.dtype == np.int32


def test_tfds_without_data_gives_clear_error(tmp_path, monkeypatch):
    def no_network(self, *args, **kwargs):
        raise ConnectionError("Failed to resolve 'storage.googleapis.com'")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_network)
    with pytest.raises(zd.DatasetUnavailableError) as error:
        zd.load("cifar10", data_dir=str(tmp_path))
    message = str(error.value)
    assert "'cifar10' is not in its data_dir" in message and str(tmp_path) in message
    assert "ConnectionError" in message and "tfds build cifar10" in message
    assert "image folder" in message and "load('embedded')" in message


def test_offline_env_fails_without_trying_to_download(tmp_path, monkeypatch):
    def must_not_download(self, *args, **kwargs):
        raise AssertionError("download attempted")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", must_not_download)
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(zd.DatasetUnavailableError, match="ZOO_OFFLINE is set") as error:
        zd.load("imagenet2012", data_dir=str(tmp_path), manual_dir=str(tmp_path / "manual"))
    assert "ILSVRC2012_img_train.tar" in str(error.value)


def test_unknown_dataset_name_lists_known_names_and_close_matches():
    with pytest.raises(ValueError) as error:
        zd.load("cifar01")
    message = str(error.value)
    assert "Did you mean 'cifar10'" in message
    assert all(name in message for name in zd.KNOWN_TFDS_DATASETS)
    assert "must exist" in message


def test_unknown_tfds_name_suggests_close_matches():
    with pytest.raises(ValueError, match="no dataset 'fashion_mnistt'.*fashion_mnist"):
        zd.load("tfds:fashion_mnistt")


# --- image folders and archives ----------------------------------------------


def check_class_folder_splits(splits: zd.Splits) -> None:
    info = splits.info
    assert info.class_names == CLASSES and info.num_classes == 3
    assert info.num_train == 3 * PER_CLASS and info.skipped_files == 1
    assert info.image_shape == (8, 8, 3)
    images, labels = to_numpy(splits.train)
    assert images.dtype == np.uint8 and labels.dtype == np.int32
    np.testing.assert_array_equal(np.bincount(labels), [PER_CLASS] * 3)
    # Every image carries its class colour: labels follow the folder names.
    np.testing.assert_array_equal(images[:, 0, 0, 0], [class_colour(y) for y in labels])


def test_image_folder_counts_classes_and_skips_corrupt_file(tmp_path):
    root = make_class_folder(tmp_path / "data")
    with pytest.warns(UserWarning, match=r"skipped 1 corrupt .*corrupt\.jpg"):
        splits = zd.load(root, validation=0)
    assert splits.validation is None
    check_class_folder_splits(splits)


def test_tar_archive_is_decoded_once_then_read_from_cache(tmp_path, monkeypatch, isolated_cache):
    archive = tar_folder(make_class_folder(tmp_path / "data"), tmp_path / "data.tar.gz")
    with pytest.warns(UserWarning, match="skipped 1"):
        first = zd.load(str(archive), validation=0)
    check_class_folder_splits(first)
    assert len(list(isolated_cache.glob("data-train-*.npz"))) == 1

    def must_not_decode(*args, **kwargs):
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(folder_module, "_decode_folder", must_not_decode)
    with pytest.warns(UserWarning, match="skipped 1"):
        second = zd.load(str(archive), validation=0)
    check_class_folder_splits(second)


def test_zip_archive_and_test_split_folder(tmp_path):
    root = make_class_folder(tmp_path / "data")
    make_class_folder(root, split="test", per_class=2)
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for file in sorted(root.rglob("*.*")):
            zipped.write(file, file.relative_to(root).as_posix())
    with pytest.warns(UserWarning):
        train = zd.load(archive, validation=0)
        test = zd.load(archive, split="test")
    check_class_folder_splits(train)
    assert test.info.num_train == 6 and test.validation is None


def test_missing_path_and_bad_layouts_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere.*does not exist.*\[train/\]<class>/"):
        zd.load(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty has no image files.*\[train/\]<class>/"):
        zd.load(tmp_path / "empty")
    write_image(tmp_path / "flat" / "a.png", 10)
    with pytest.raises(ValueError, match="images but no class sub-folders"):
        zd.load(tmp_path / "flat")
    with pytest.raises(ValueError, match="no 'test/val/validation' folder"):
        zd.load(make_class_folder(tmp_path / "trainonly"), split="test")


def test_mixed_image_sizes_need_image_size(tmp_path):
    write_image(tmp_path / "mixed" / "a" / "0.png", 10, size=(8, 8))
    write_image(tmp_path / "mixed" / "b" / "0.jpg", 200, size=(12, 10), fmt="jpg")
    with pytest.raises(ValueError, match="differ in size.*image_size"):
        zd.load(tmp_path / "mixed", validation=0)
    splits = zd.load(tmp_path / "mixed", validation=0, image_size=6)
    images, labels = to_numpy(splits.train)
    assert images.shape == (2, 6, 6, 3) and splits.info.image_shape == (6, 6, 3)
    assert abs(int(images[labels == 1].mean()) - 200) <= 2


# --- arrays, .npz and splitting ----------------------------------------------


def test_array_source_split_is_stratified_and_seeded():
    labels = imbalanced_labels()
    x = np.arange(len(labels), dtype=np.uint8)[:, None, None].repeat(4, 1).repeat(4, 2)
    splits = zd.load((x, labels), validation=0.2, seed=1)
    assert splits.info.image_shape == (4, 4, 1) and splits.info.num_classes == 3
    val_images, val_labels = to_numpy(splits.validation)
    train_images, _ = to_numpy(splits.train)
    np.testing.assert_array_equal(np.bincount(val_labels), [12, 6, 2])
    val_ids, train_ids = set(val_images[:, 0, 0, 0]), set(train_images[:, 0, 0, 0])
    assert not val_ids & train_ids and len(val_ids | train_ids) == 100

    same = to_numpy(zd.load((x, labels), validation=0.2, seed=1).validation)[0]
    other = to_numpy(zd.load((x, labels), validation=0.2, seed=2).validation)[0]
    assert set(same[:, 0, 0, 0]) == val_ids
    assert set(other[:, 0, 0, 0]) != val_ids


def test_stratified_split_counts_and_limits():
    labels = imbalanced_labels()
    train, val = stratified_split(labels, 7, seed=0)
    assert len(val) == 7 and len(train) == 93
    assert allocate_per_class([60, 30, 10], 7).tolist() == [4, 2, 1]
    assert np.bincount(labels[val], minlength=3).tolist() == [4, 2, 1]
    assert len(stratified_split(labels, 0, seed=0)[1]) == 0
    subset = stratified_subset(labels, 10, seed=0)
    np.testing.assert_array_equal(np.bincount(labels[subset]), [6, 3, 1])
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        stratified_split(labels, 1.5, seed=0)


def test_npz_source_train_and_test(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "digits.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (30, 5, 5), dtype=np.uint8),
        y_train=np.arange(30) % 3,
        x_test=rng.integers(0, 256, (9, 5, 5), dtype=np.uint8),
        y_test=np.arange(9) % 3,
        class_names=np.array(["a", "b", "c"]),
    )
    splits = zd.load(str(path), validation=3, limit=24)
    assert splits.info.name == "digits" and splits.info.class_names == ("a", "b", "c")
    assert (splits.info.num_train, splits.info.num_validation) == (21, 3)
    test = zd.load(path, split="test")
    assert test.info.num_train == 9 and test.info.image_shape == (5, 5, 1)
    with pytest.raises(ValueError, match="0..255"):
        zd.load((np.full((4, 2, 2, 3), 1.5, np.float32) * 200, np.zeros(4, int)))


def float_and_uint8_npz(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (48, 6, 6, 3), dtype=np.uint8)
    labels = np.arange(48) % 3
    np.savez(tmp_path / "bytes.npz", x=images, y=labels)
    np.savez(tmp_path / "unit.npz", x=(images / 255.0).astype(np.float32), y=labels)  # the usual x / 255
    return tmp_path / "unit.npz", tmp_path / "bytes.npz", images


def test_float_images_in_0_1_give_the_batches_of_their_uint8_images(tmp_path):
    unit, raw, images = float_and_uint8_npz(tmp_path)

    def batches(path):
        splits = zd.load(path, validation=12, seed=5)
        ds = zd.make_pipeline(splits.train, batch_size=8, training=True, augment=("flip", "crop_pad4"), seed=2,
                              first_epoch=0, stop_epoch=2)
        return [x.numpy() for x, _ in ds], splits.info

    (scaled, info), (expected, _) = batches(unit), batches(raw)
    assert info.image_shape == (6, 6, 3) and len(scaled) == len(expected) == 2 * (36 // 8)
    for a, b in zip(scaled, expected):
        np.testing.assert_array_equal(a, b)  # x / 255 * 255 rounds back to the very bytes
    assert {float(v) for v in np.unique(np.concatenate(scaled))} - {0.0, 1.0}  # not rounded to 0/1 pixels


def test_float_images_in_0_255_are_taken_as_they_are_and_other_ranges_refused():
    labels = np.arange(8) % 2
    pixels = np.linspace(0, 255, 8 * 2 * 2 * 3, dtype=np.float32).reshape(8, 2, 2, 3)
    images, _ = to_numpy(zd.load((pixels, labels), validation=0).train)  # in the split's seeded order
    images = images[np.argsort(images[:, 0, 0, 0])]
    np.testing.assert_array_equal(images, np.round(pixels).astype(np.uint8))
    cases = [(pixels - 1, "neither 0..255 pixel values nor floats in 0..1; rescale x"),
             (pixels * 2, "hold values 0..510"),
             (np.where(pixels > 100, np.nan, pixels), "NaN or infinite"),
             (np.full((8, 2, 2), "a"), "must be numbers")]
    for x, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)):
            zd.load((x, labels), validation=0)


def test_skipped_images_are_counted_and_named_and_libjpeg_stays_quiet(tmp_path, capfd):
    root = make_class_folder(tmp_path / "data")  # one corrupt file
    (root / "train" / "cat" / "cut.jpg").write_bytes(tf.io.encode_jpeg(tf.zeros((8, 8, 3), tf.uint8)).numpy()[:40])
    with pytest.warns(UserWarning, match="skipped 2"):
        info = zd.load(root, validation=0).info
    assert info.skipped_files == 2 and info.skipped == ("train/cat/cut.jpg", "train/dog/corrupt.jpg")
    assert "JPEG" not in capfd.readouterr().err  # libjpeg's own line per corrupt file is not printed


def test_all_corrupt_or_a_class_without_a_readable_image_is_refused(tmp_path):
    for cls in ("a", "b"):
        write_image(tmp_path / "some" / cls / "0.png", 10)
        (tmp_path / "none" / cls).mkdir(parents=True)
        (tmp_path / "none" / cls / "0.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut")
    (tmp_path / "some" / "b" / "0.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"none of the 2 image files .* could be decoded .*replace them"):
        zd.load(tmp_path / "none")
    with pytest.raises(ValueError, match=r"class folder\(s\) 'b' of .* hold no readable image"):
        zd.load(tmp_path / "some")


def test_npz_with_wrong_keys_shapes_or_label_count_names_the_fix(tmp_path):
    x, y = np.zeros((10, 4, 4, 3), np.uint8), np.arange(10) % 2
    cases = [({"images": x, "labels": y}, "save the images and labels under those names (np.savez(path, x=images"),
             ({"x": x[:, 0, 0, 0], "y": y}, "got (10,); save x as one array of N images"),
             ({"x": x, "y": y[:7]}, "got 10 images but 7 labels; give one label per image"),
             ({"x": x, "y": y - 1}, "save y as class indices 0..K-1")]
    for i, (arrays, message) in enumerate(cases):
        np.savez(tmp_path / f"{i}.npz", **arrays)
        with pytest.raises(ValueError, match=re.escape(message)):
            zd.load(tmp_path / f"{i}.npz", validation=0)


# --- pipeline and augmentation -----------------------------------------------


def pipeline_batches(ds, seed, epochs=2, **kwargs):
    pipeline = zd.make_pipeline(ds, batch_size=16, training=True, seed=seed, **kwargs)
    return [[x.numpy() for x, _ in pipeline] for _ in range(epochs)]


@pytest.fixture
def small_images() -> tf.data.Dataset:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 8, 8, 3), dtype=np.uint8)
    return tf.data.Dataset.from_tensor_slices((images, np.arange(64, dtype=np.int32)))


def test_pipeline_yields_float_batches_and_is_seeded(small_images):
    augment = ("crop_pad4", "flip")
    run_a = pipeline_batches(small_images, seed=5, augment=augment)
    run_b = pipeline_batches(small_images, seed=5, augment=augment)
    run_c = pipeline_batches(small_images, seed=6, augment=augment)
    assert run_a[0][0].dtype == np.float32 and run_a[0][0].shape == (16, 8, 8, 3)
    for epoch_a, epoch_b in zip(run_a, run_b):
        for batch_a, batch_b in zip(epoch_a, epoch_b):
            np.testing.assert_array_equal(batch_a, batch_b)
    assert not np.array_equal(run_a[0][0], run_a[1][0])  # reshuffled / re-augmented per epoch
    assert not np.array_equal(run_a[0][0], run_c[0][0])


def test_crop_pad4_is_a_window_of_the_zero_padded_image():
    image = tf.constant(np.arange(1, 8 * 8 * 3 + 1).reshape(8, 8, 3) % 251 + 1, tf.uint8)
    padded = np.pad(image.numpy(), ((4, 4), (4, 4), (0, 0)))
    windows = {padded[i : i + 8, j : j + 8].tobytes() for i in range(9) for j in range(9)}
    offsets_seen = set()
    for s in range(40):
        crop = zd.augment.pad_and_random_crop(image, tf.constant([s, 0])).numpy()
        assert crop.shape == (8, 8, 3) and crop.tobytes() in windows
        offsets_seen.add(crop.tobytes())
    assert len(offsets_seen) > 5


def test_flip_mirrors_about_half_the_images(small_images):
    pipeline = zd.make_pipeline(
        small_images, batch_size=64, training=True, augment=["flip"], cache=False
    )
    flipped, labels = next(iter(pipeline))
    originals = np.stack([x for x, _ in small_images.as_numpy_iterator()])[labels.numpy()]
    mirrored = np.all(flipped.numpy() == originals[:, :, ::-1], axis=(1, 2, 3))
    unchanged = np.all(flipped.numpy() == originals, axis=(1, 2, 3))
    assert np.all(mirrored | unchanged) and 10 < mirrored.sum() < 54


def test_cutout_greys_one_16x16_square_clipped_at_the_border():
    image = tf.fill((32, 32, 3), tf.constant(7, tf.uint8))
    squares = set()
    for s in range(60):
        out = zd.augment.random_cutout(image, tf.constant([s, 1])).numpy()
        grey = np.all(out == zd.augment.CUTOUT_FILL, axis=-1)
        assert np.all(out[~grey] == 7) and np.all(out[grey] == 128)
        rows, cols = np.flatnonzero(grey.any(1)), np.flatnonzero(grey.any(0))
        assert grey.sum() == len(rows) * len(cols)  # one axis-aligned rectangle
        assert 8 <= len(rows) <= 16 and 8 <= len(cols) <= 16  # the centre may lie near a border
        squares.add((rows[0], cols[0], len(rows), len(cols)))
    assert (16, 16) in {(h, w) for _, _, h, w in squares} and len(squares) > 30
    again = zd.augment.random_cutout(image, tf.constant([5, 1])).numpy()
    np.testing.assert_array_equal(again, zd.augment.random_cutout(image, tf.constant([5, 1])).numpy())


def test_cutout_leaves_the_other_augmentations_draws_unchanged():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 128, (32, 32, 32, 3), dtype=np.uint8)  # never the grey 128
    ds = tf.data.Dataset.from_tensor_slices((images, np.arange(32, dtype=np.int32)))
    plain = pipeline_batches(ds, seed=5, augment=("crop_pad4", "flip"))
    cut = pipeline_batches(ds, seed=5, augment=("crop_pad4", "flip", "cutout"))
    flat = [np.concatenate([b for epoch in run for b in epoch]) for run in (plain, cut)]
    for x, xc in zip(*flat):
        grey = np.all(xc == 128, axis=-1)
        assert 64 <= grey.sum() <= 256  # one square, at least a quarter of it inside
        np.testing.assert_array_equal(x[~grey], xc[~grey])  # same crop and flip elsewhere


def test_eval_pipeline_is_unchanged_and_keeps_remainder(small_images):
    first_20 = small_images.take(20)
    pipeline = zd.make_pipeline(
        first_20, batch_size=16, training=False, augment=["crop_pad4", "flip", "cutout"]
    )
    batches = [x.numpy() for x, _ in pipeline]
    assert [len(b) for b in batches] == [16, 4]
    expected = to_numpy(first_20)[0].astype(np.float32)
    np.testing.assert_array_equal(np.concatenate(batches), expected)


def test_imagenet_style_crops_produce_image_size():
    grey = np.full((4, 40, 48, 3), 7, np.uint8)
    images = tf.data.Dataset.from_tensor_slices((grey, np.zeros(4, np.int32)))
    for training in (True, False):
        pipeline = zd.make_pipeline(
            images, batch_size=4, training=training, augment=["imagenet_crop"], image_size=16
        )
        batch, _ = next(iter(pipeline))
        assert batch.shape == (4, 16, 16, 3) and np.allclose(batch.numpy(), 7)
    centred = zd.augment.center_crop(tf.reshape(tf.range(40 * 48 * 3) % 256, (40, 48, 3)), (35, 35))
    assert centred.shape == (35, 35, 3)
    with pytest.raises(ValueError, match="need image_size"):
        zd.make_pipeline(images, batch_size=4, training=True, augment=["center_crop"])


def test_unknown_augmentation_lists_valid_names(small_images):
    with pytest.raises(ValueError, match=r"unknown augmentation.*'mixup'.*crop_pad4, flip, cutout"):
        zd.make_pipeline(small_images, batch_size=8, training=True, augment=["flip", "mixup"])


# --- normalisation layers ----------------------------------------------------


def test_per_channel_normalization_standardises_fit_data():
    rng = np.random.default_rng(0)
    images = rng.normal([20, 120, 220], [5, 30, 10], (256, 6, 6, 3)).clip(0, 255).astype(np.uint8)
    ds = tf.data.Dataset.from_tensor_slices((images, np.zeros(256, np.int32)))
    layer = zd.normalization_layer("per_channel", ds)
    out = layer(images.astype(np.float32)).numpy()
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), 0, atol=1e-3)
    np.testing.assert_allclose(out.std(axis=(0, 1, 2)), 1, atol=1e-3)


def test_fixed_normalizations_and_errors():
    pixel = np.full((1, 1, 1, 3), 255.0, np.float32)
    np.testing.assert_allclose(zd.normalization_layer("scale")(pixel), 1.0)
    np.testing.assert_allclose(zd.normalization_layer(None)(pixel), 255.0)
    imagenet = zd.normalization_layer("imagenet")(pixel).numpy().ravel()
    expected = (1 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(imagenet, expected, rtol=1e-5)
    with pytest.raises(ValueError, match="unknown normalization 'batch'.*per_channel"):
        zd.normalization_layer("batch")
    with pytest.raises(ValueError, match="pass train_ds"):
        zd.normalization_layer("zca")


def test_zca_whitens_fit_data_and_survives_keras_save(tmp_path):
    rng = np.random.default_rng(0)
    # Correlated pixels: a random rotation of independent components with std 10..40.
    rotation, _ = np.linalg.qr(rng.normal(size=(48, 48)))
    mixing = np.diag(np.linspace(10, 40, 48)) @ rotation
    images = (128 + rng.normal(size=(2000, 48)) @ mixing).clip(0, 255).reshape(2000, 4, 4, 3)
    ds = tf.data.Dataset.from_tensor_slices((images.astype(np.uint8), np.zeros(2000, np.int32)))
    layer = zd.normalization_layer("zca", ds, sample=2000)
    assert isinstance(layer, zd.ZCAWhitening) and layer.epsilon == 0.1

    fit_images = np.stack([x for x, _ in ds.as_numpy_iterator()]).astype(np.float32)
    out = layer(fit_images).numpy().reshape(2000, -1)
    eigenvalues = np.linalg.eigvalsh(np.cov(out, rowvar=False))
    # GCN removes one direction (each image's mean); all others come out ~unit variance.
    assert eigenvalues[0] < 1e-3
    assert 0.95 < eigenvalues[1] and eigenvalues[-1] < 1.01

    model = keras.Sequential([keras.Input((4, 4, 3)), layer])
    path = tmp_path / "zca.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored.layers[0], zd.ZCAWhitening)
    batch = fit_images[:32]
    np.testing.assert_array_equal(restored.predict(batch, verbose=0), model.predict(batch, verbose=0))


# --- embedded sample ---------------------------------------------------------


def test_embedded_sample_loads_3000_cifar_images():
    splits = zd.load("embedded", validation=0)
    info = splits.info
    assert info.name == "cifar10-sample" and info.num_classes == 10
    assert info.num_train == 3000 and info.image_shape == (32, 32, 3)
    assert info.class_names[:3] == ("airplane", "automobile", "bird")
    held_out = zd.load("cifar10-sample")
    _, val_labels = to_numpy(held_out.validation)
    np.testing.assert_array_equal(np.bincount(val_labels), [30] * 10)


def test_make_embedded_sample_is_reproducible(tmp_path):
    root = tmp_path / "full"
    for label, name in enumerate(CLASSES):
        for i in range(4):
            write_image(root / "train" / name / f"{i:04d}.jpg", class_colour(label), fmt="jpg")
    archive = tar_folder(root, tmp_path / "full.tar.gz")
    digest = zd.make_embedded_sample(archive, tmp_path / "a.tar.gz", per_class=2)
    assert digest == zd.make_embedded_sample(archive, tmp_path / "b.tar.gz", per_class=2)
    assert digest == hashlib.sha256((tmp_path / "a.tar.gz").read_bytes()).hexdigest()
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        names = tar.getnames()
    assert names == [f"train/{c}/{i:04d}.jpg" for c in CLASSES for i in range(2)]
