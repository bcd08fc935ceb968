"""``load``: one entry point for every kind of dataset source.

A source is turned into a :class:`_Source` (all labels in a canonical order
plus a way to build a ``tf.data.Dataset`` of any subset of examples), then
split into train/validation with :mod:`zoo.data.split`.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from zoo.data.embedded import SAMPLE_NAME, embedded_sample_path
from zoo.data.folder import ARCHIVE_SUFFIXES, EXPECTED_LAYOUT, dataset_name, read_image_folder
from zoo.data.imageops import ImageSize, as_size, resize_if_needed
from zoo.data.info import DatasetInfo, Splits
from zoo.data.split import stratified_split, stratified_subset

KNOWN_TFDS_DATASETS = ("cifar10", "cifar100", "mnist", "fashion_mnist", "imagenette", "imagenet2012")
EMBEDDED_NAMES = ("embedded", SAMPLE_NAME)
TFDS_PREFIX = "tfds:"
SPLITS = ("train", "test")
OFFLINE_ENV = "ZOO_OFFLINE"  # 1/true/yes/on: fail at once instead of trying to download

_NPZ_KEYS = {"train": (("x", "y"), ("x_train", "y_train")), "test": (("x_test", "y_test"),)}


class DatasetUnavailableError(FileNotFoundError):
    """A known tensorflow-datasets dataset is not on disk and could not be downloaded."""


@dataclass(frozen=True)
class _Source:
    name: str
    labels: np.ndarray  # int32, one per example, canonical order
    class_names: tuple[str, ...]
    image_shape: tuple
    select: Callable[[np.ndarray], tf.data.Dataset]  # positions -> (image, label) dataset
    skipped: tuple[str, ...] = ()  # names of the image files that could not be decoded


def load(
    source,
    *,
    split: str = "train",
    validation: float | int = 0.1,
    seed: int = 0,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    image_size: ImageSize = None,
    limit: int | None = None,
) -> Splits:
    """Load a labelled image dataset and hold out a stratified validation set.

    Args:
        source: a tensorflow-datasets name (``cifar10``, ``cifar100``,
            ``mnist``, ``fashion_mnist``, ``imagenette``, ``imagenet2012``, or
            any other as ``"tfds:<name>"``); a path to an image folder or
            archive (.tar, .tar.gz, .tgz, .zip) laid out
            ``[train/]<class>/*.jpg|png``; a ``.npz`` file with ``x``/``y``
            (or ``x_train``/``y_train``/``x_test``/``y_test``) arrays; a tuple
            ``(x, y)`` of numpy arrays; or ``"embedded"`` /
            ``"cifar10-sample"``, the CIFAR-10 sample shipped with zoo.
        split: ``"train"`` (the official training data, part of it held out
            for validation) or ``"test"`` (the official test split, or the
            ``test``/``val`` folder, returned as ``train`` with no validation).
        validation: fraction in [0, 1) or number of training examples to hold
            out, stratified per class; 0 means no validation set.
        seed: chooses the validation examples, the ``limit`` subset and the
            (fixed) example order; the same seed gives the same split.
        data_dir: tensorflow-datasets data directory.
        manual_dir: directory with manually downloaded files (ImageNet tars).
        image_size: ``int`` or ``(height, width)``; images are resized to it
            (folders when decoding, other sources lazily).
        limit: keep only this many examples (a seeded, stratified subset)
            before splitting; useful for quick runs.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    size = as_size(image_size)
    src = _open_source(source, split=split, data_dir=data_dir, manual_dir=manual_dir, size=size)
    if len(src.labels) == 0:
        raise ValueError(f"dataset {src.name!r} has no examples in split {split!r}")
    pool = np.arange(len(src.labels)) if limit is None else stratified_subset(src.labels, limit, seed)
    held_out = 0 if split == "test" else validation
    train_pos, val_pos = stratified_split(src.labels[pool], held_out, seed)
    train_idx, val_idx = pool[train_pos], pool[val_pos]
    info = DatasetInfo(
        name=src.name,
        num_classes=len(src.class_names),
        class_names=src.class_names,
        image_shape=src.image_shape,
        num_train=len(train_idx),
        num_validation=len(val_idx),
        skipped_files=len(src.skipped),
        skipped=src.skipped,
    )
    validation_ds = src.select(val_idx) if len(val_idx) else None
    return Splits(train=src.select(train_idx), validation=validation_ds, info=info)


# --- resolving the source ----------------------------------------------------


def _open_source(source, *, split, data_dir, manual_dir, size) -> _Source:
    if isinstance(source, tuple) and len(source) == 2:
        if split != "train":
            raise ValueError(
                "an (x, y) array source has no test split; pass the test arrays with split='train'"
            )
        return _array_source("arrays", *source, size=size)
    if isinstance(source, os.PathLike):
        return _path_source(Path(source), split, size)
    if not isinstance(source, str):
        raise TypeError(f"unsupported dataset source of type {type(source).__name__}: {source!r}")
    if source in EMBEDDED_NAMES:
        with embedded_sample_path() as path:
            return _folder_source(path, split, size, name=SAMPLE_NAME)
    if source.startswith(TFDS_PREFIX):
        return _tfds_source(source[len(TFDS_PREFIX) :], split, data_dir, manual_dir, size)
    if source.split("/")[0] in KNOWN_TFDS_DATASETS:  # also "imagenette/160px"
        return _tfds_source(source, split, data_dir, manual_dir, size)
    if _looks_like_path(source):
        return _path_source(Path(source), split, size)
    raise _unknown_source_error(source)


def is_tfds_name(source: object) -> bool:
    """Whether ``source`` names a tensorflow-datasets dataset (``cifar10``, ``tfds:name``, ``imagenette/160px``)."""
    return isinstance(source, str) and (source.startswith(TFDS_PREFIX) or source.split("/")[0] in KNOWN_TFDS_DATASETS)


def _looks_like_path(text: str) -> bool:
    suffixes = (*ARCHIVE_SUFFIXES, ".npz")
    return os.path.exists(text) or os.sep in text or "/" in text or text.lower().endswith(suffixes)


def _path_source(path: Path, split: str, size) -> _Source:
    if path.suffix.lower() == ".npz":
        return _npz_source(path.expanduser(), split, size)
    return _folder_source(path, split, size)


def _unknown_source_error(name: str) -> ValueError:
    known = (*KNOWN_TFDS_DATASETS, *EMBEDDED_NAMES)
    close = difflib.get_close_matches(name, known, n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(
        f"unknown dataset {name!r}.{hint} Known names: {', '.join(known)}; other "
        f"tensorflow-datasets names can be given as 'tfds:<name>'. A path to an image "
        f"folder or archive ({', '.join(ARCHIVE_SUFFIXES)}) laid out as {EXPECTED_LAYOUT}, "
        f"or to a .npz file, must exist."
    )


# --- arrays, .npz and image folders ------------------------------------------


def _as_uint8_images(x: np.ndarray) -> np.ndarray:
    """``x`` as ``uint8`` 0..255 images ``(N, H, W, C)``: ``uint8`` as it is, integers and floats in
    0..255 rounded, floats that all lie in [0, 1] (images already divided by 255) scaled by 255.
    Anything else (NaN, other ranges, non-numbers) is refused with the fix."""
    images = np.asarray(x)
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.ndim != 4:
        raise ValueError(
            f"images must have shape (N, H, W) or (N, H, W, C), got {images.shape}; "
            f"save x as one array of N images (e.g. uint8 of shape (N, 32, 32, 3))"
        )
    if images.dtype == np.uint8:
        return images
    floating = np.issubdtype(images.dtype, np.floating)
    if not (floating or np.issubdtype(images.dtype, np.integer)):
        raise ValueError(f"images must be numbers, got dtype {images.dtype}; save x as uint8 0..255 pixel values")
    if images.size and floating and not np.isfinite(images).all():
        raise ValueError("images hold NaN or infinite values; save x as uint8 0..255 (or float 0..1) pixel values")
    low, high = (float(images.min()), float(images.max())) if images.size else (0.0, 0.0)
    if floating and low >= 0 and high <= 1:
        images = images * 255.0  # float images in [0, 1]: the usual x / 255
    elif low < 0 or high > 255:
        raise ValueError(
            f"images hold values {low:g}..{high:g}, neither 0..255 pixel values nor floats in 0..1; "
            f"rescale x to 0..255 (uint8) or 0..1 (float) before saving it"
        )
    return np.round(images).astype(np.uint8)


def _as_labels(y: np.ndarray, count: int) -> np.ndarray:
    labels = np.asarray(y).reshape(-1)
    if len(labels) != count:
        raise ValueError(
            f"got {count} images but {len(labels)} labels; give one label per image (y of shape ({count},))"
        )
    if labels.size and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0):
        raise ValueError(
            f"labels must be non-negative integers, got dtype {labels.dtype}; save y as class indices 0..K-1"
        )
    return labels.astype(np.int32)


def _array_source(
    name: str, x, y, class_names: Sequence[str] | None = None, *, size=None
) -> _Source:
    images = _as_uint8_images(x)
    labels = _as_labels(y, len(images))
    num_classes = len(class_names) if class_names is not None else int(labels.max(initial=-1)) + 1
    if labels.size and labels.max() >= num_classes:
        raise ValueError(
            f"label {labels.max()} is out of range for {num_classes} class names; "
            f"give one class name per label value 0..{labels.max()}"
        )
    names = tuple(class_names) if class_names is not None else tuple(str(i) for i in range(num_classes))
    shape = (*size, images.shape[-1]) if size else tuple(images.shape[1:])

    def select(positions: np.ndarray) -> tf.data.Dataset:
        dataset = tf.data.Dataset.from_tensor_slices((images[positions], labels[positions]))
        if size and tuple(images.shape[1:3]) != size:
            dataset = dataset.map(
                lambda image, label: (resize_if_needed(image, size), label),
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True,
            )
        return dataset

    return _Source(name, labels, names, tuple(int(d) for d in shape), select)


def _npz_source(path: Path, split: str, size) -> _Source:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; expected a .npz file with x/y arrays")
    with np.load(path, allow_pickle=False) as arrays:
        for x_key, y_key in _NPZ_KEYS[split]:
            if x_key in arrays and y_key in arrays:
                names = [str(c) for c in arrays["class_names"]] if "class_names" in arrays else None
                return _array_source(path.stem, arrays[x_key], arrays[y_key], names, size=size)
        wanted = " or ".join(f"{x}/{y}" for x, y in _NPZ_KEYS[split])
        first_x, first_y = _NPZ_KEYS[split][0]
        raise ValueError(
            f"{path} has arrays {sorted(arrays.files)}; split={split!r} needs {wanted}: save the images "
            f"and labels under those names (np.savez(path, {first_x}=images, {first_y}=labels))"
        )


def _folder_source(path: Path, split: str, size, name: str | None = None) -> _Source:
    data = read_image_folder(path, split=split, image_size=size)
    source = _array_source(name or dataset_name(path), data.images, data.labels, data.class_names)
    return replace(source, skipped=tuple(data.skipped))


# --- tensorflow-datasets -----------------------------------------------------


def _tfds_source(name: str, split: str, data_dir, manual_dir, size) -> _Source:
    builder = _tfds_builder(name, data_dir)
    _ensure_prepared(builder, name, manual_dir)
    if builder.info.supervised_keys is None:
        raise ValueError(f"tensorflow-datasets {name!r} has no (image, label) supervised keys")
    image_key, label_key = builder.info.supervised_keys[:2]
    tfds_split = _tfds_split_name(builder, name, split)
    labels = _scan_labels(builder, tfds_split, image_key)
    image_shape = tuple(builder.info.features[image_key].shape)
    if size:
        image_shape = (*size, image_shape[-1])

    def select(positions: np.ndarray) -> tf.data.Dataset:
        return _tfds_subset(builder, tfds_split, positions, len(labels), size)

    class_names = tuple(builder.info.features[label_key].names)
    return _Source(name, labels, class_names, image_shape, select)


def _tfds_builder(name: str, data_dir: str | None):
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError as exc:
        close = difflib.get_close_matches(name.split("/")[0], tfds.list_builders(), n=5)
        hint = f" Close matches: {', '.join(close)}." if close else ""
        raise ValueError(f"tensorflow-datasets has no dataset {name!r}.{hint}") from exc


def _ensure_prepared(builder, name: str, manual_dir: str | None) -> None:
    if builder.is_prepared():
        return
    if os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        reason = f"{OFFLINE_ENV} is set"
        raise DatasetUnavailableError(_unavailable_message(builder, name, manual_dir, reason))
    config = tfds.download.DownloadConfig(manual_dir=manual_dir)
    try:
        builder.download_and_prepare(download_config=config)
    except Exception as exc:  # noqa: BLE001 - any download/build failure means "not available"
        reason = f"{type(exc).__name__}: {_first_line(exc)}"
        raise DatasetUnavailableError(_unavailable_message(builder, name, manual_dir, reason)) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _unavailable_message(builder, name: str, manual_dir: str | None, reason: str) -> str:
    lines = [
        f"tensorflow-datasets {name!r} is not in its data_dir ({builder.data_dir}) and could "
        f"not be downloaded or prepared ({reason}).",
        "To provide it: run `tfds build "
        f"{name}` on a machine with internet access and copy the resulting data_dir folder "
        "here (then pass data_dir=... or set TFDS_DATA_DIR),",
        f"or use an image folder/archive laid out as {EXPECTED_LAYOUT} "
        "(e.g. load('/path/to/cifar10-jpeg-train.tar.gz')), or the offline sample load('embedded').",
    ]
    if builder.name == "imagenet2012":
        lines.insert(
            1,
            "ImageNet cannot be downloaded automatically: put ILSVRC2012_img_train.tar and "
            f"ILSVRC2012_img_val.tar in manual_dir (given: {manual_dir!r}).",
        )
    return "\n".join(lines)


def _tfds_split_name(builder, name: str, split: str) -> str:
    if split == "train":
        return "train"
    available = set(builder.info.splits.keys())
    for candidate in ("test", "validation"):
        if not available or candidate in available:
            return candidate
    raise ValueError(f"{name!r} has no test or validation split (splits: {sorted(available)})")


def _scan_labels(builder, split: str, image_key: str) -> np.ndarray:
    """All labels of ``split`` in storage order, read without decoding images."""
    dataset = builder.as_dataset(
        split=split,
        shuffle_files=False,
        as_supervised=True,
        decoders={image_key: tfds.decode.SkipDecoding()},
    )
    batches = list(dataset.map(lambda image, label: label).batch(65536).as_numpy_iterator())
    return np.concatenate(batches).astype(np.int32) if batches else np.zeros(0, np.int32)


def _tfds_subset(builder, split: str, positions: np.ndarray, total: int, size) -> tf.data.Dataset:
    """The examples at ``positions`` of ``split``, in storage order."""
    dataset = builder.as_dataset(split=split, shuffle_files=False, as_supervised=True)
    if len(positions) < total:
        mask = np.zeros(total, dtype=bool)
        mask[positions] = True
        keep = tf.constant(mask)

        def is_kept(index, example):
            return keep[index]

        def drop_index(index, example):
            return example

        dataset = dataset.enumerate().filter(is_kept).map(drop_index)

    def convert(image, label):
        image = resize_if_needed(image, size) if size else image
        return image, tf.cast(label, tf.int32)

    dataset = dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.apply(tf.data.experimental.assert_cardinality(len(positions)))
