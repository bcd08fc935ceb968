"""Image folders and archives laid out as ``[train/]<class>/<image>``.

The whole folder is decoded once, in parallel with ``tf.data``, into a
``uint8`` array that is cached as ``.npz`` (see :mod:`zoo.data.cache`), so a
second load of the 50,000-image CIFAR-10 archive takes about a second.
Corrupt or unreadable images are skipped, counted and reported with a
warning. Everything is held in memory: this suits CIFAR/MNIST-sized data,
not ImageNet-sized folders.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tarfile
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import tensorflow as tf

from zoo.data.cache import cache_dir, file_sha256, load_arrays, save_arrays
from zoo.data.imageops import ImageSize, as_size, resize_if_needed

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
EXPECTED_LAYOUT = "[train/]<class>/<image>.jpg|png, one sub-folder per class"
SPLIT_FOLDERS = {"train": ("train",), "test": ("test", "val", "validation")}

_CACHE_FORMAT = 1
_PROBE_IMAGES = 16
_DECODE_BATCH = 1024


@dataclass(frozen=True)
class ImageFolderData:
    """Decoded images of one split of an image folder or archive."""

    images: np.ndarray  # uint8, (N, H, W, C)
    labels: np.ndarray  # int32, (N,)
    class_names: tuple[str, ...]
    skipped: tuple[str, ...]  # names of files that could not be decoded


def is_archive(path: str | Path) -> bool:
    """Whether ``path`` names a supported archive (.tar, .tar.gz, .tgz, .zip)."""
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def dataset_name(path: str | Path) -> str:
    """A readable name for a folder or archive: its file name without archive suffix."""
    name = Path(path).name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_image_folder(
    path: str | Path, *, split: str = "train", image_size: ImageSize = None
) -> ImageFolderData:
    """Decode the ``split`` part of an image folder or archive, using the cache.

    Images are resized to ``image_size`` when given; otherwise they must all
    have the same size. Raises ``FileNotFoundError`` for a missing path and
    ``ValueError`` when the layout is not ``[train/]<class>/<image>``.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist; expected an image folder or archive "
            f"({', '.join(ARCHIVE_SUFFIXES)}) laid out as {EXPECTED_LAYOUT}"
        )
    size = as_size(image_size)
    cache_file = _cache_file(path, split, size)
    cached = load_arrays(cache_file)
    data = _from_arrays(cached) if cached is not None else None
    if data is None:
        data = _decode_folder(path, split, size)
        save_arrays(cache_file, _to_arrays(data))
    _check_every_class_read(data, path)
    if data.skipped:
        _warn_skipped(path, data.skipped)
    return data


# --- listing -----------------------------------------------------------------


def _is_image_name(name: str) -> bool:
    parts = PurePosixPath(name).parts
    hidden = any(part.startswith(".") or part == "__MACOSX" for part in parts)
    return not hidden and name.lower().endswith(IMAGE_SUFFIXES)


def _clean_name(name: str) -> str:
    return "/".join(part for part in PurePosixPath(name).parts if part not in (".", "/"))


def _list_directory(path: Path) -> dict[str, str]:
    """Relative image name -> file path, for every image under ``path``."""
    files = (p for p in path.rglob("*") if p.is_file() or p.is_symlink())
    return {
        rel: str(p)
        for p in files
        if _is_image_name(rel := p.relative_to(path).as_posix())
    }


def _read_archive(path: Path) -> dict[str, bytes]:
    """Relative image name -> file bytes, for every image in the archive."""
    try:
        if path.name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                return {
                    _clean_name(info.filename): archive.read(info)
                    for info in archive.infolist()
                    if not info.is_dir() and _is_image_name(info.filename)
                }
        with tarfile.open(path, mode="r:*") as archive:
            return {
                _clean_name(member.name): archive.extractfile(member).read()
                for member in archive
                if member.isfile() and _is_image_name(member.name)
            }
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
        raise ValueError(f"cannot read archive {path}: {exc}") from exc


def _choose_root(roots: set[str], split: str, path: Path) -> str:
    """The folder holding the class sub-folders of ``split``."""
    for folder in SPLIT_FOLDERS[split]:
        matches = sorted(r for r in roots if PurePosixPath(r).name == folder)
        if len(matches) > 1:
            raise ValueError(f"{path}: several '{folder}' folders ({matches}); expected one")
        if matches:
            return matches[0]
    if split == "train" and len(roots) == 1:
        return next(iter(roots))
    wanted = "/".join(SPLIT_FOLDERS[split])
    found = ", ".join(repr(r or ".") for r in sorted(roots))
    raise ValueError(
        f"{path}: no '{wanted}' folder for split={split!r} (class folders found under {found}); "
        f"expected layout {EXPECTED_LAYOUT}"
    )


def _split_entries(names: list[str], split: str, path: Path) -> list[tuple[str, str]]:
    """Sorted ``(name, class_name)`` pairs for the images of ``split``."""
    in_class_folder = [n for n in names if len(PurePosixPath(n).parts) >= 2]
    if not in_class_folder:
        what = "no image files" if not names else "images but no class sub-folders"
        raise ValueError(f"{path} has {what}; expected layout {EXPECTED_LAYOUT}")
    roots = {_root_of(n) for n in in_class_folder}
    root = _choose_root(roots, split, path)
    return sorted(
        (n, PurePosixPath(n).parent.name)
        for n in in_class_folder
        if _root_of(n) == root
    )


def _root_of(name: str) -> str:
    parent = PurePosixPath(name).parent.parent
    return "" if str(parent) == "." else str(parent)


# --- decoding ----------------------------------------------------------------


def _decode_folder(path: Path, split: str, size: tuple[int, int] | None) -> ImageFolderData:
    from_files = path.is_dir()
    if not from_files and not is_archive(path):
        raise ValueError(
            f"{path} is neither a folder nor an archive ({', '.join(ARCHIVE_SUFFIXES)}); "
            f"expected layout {EXPECTED_LAYOUT}"
        )
    contents = _list_directory(path) if from_files else _read_archive(path)
    entries = _split_entries(list(contents), split, path)
    names = [name for name, _ in entries]
    class_names = tuple(sorted({cls for _, cls in entries}))
    class_index = {cls: i for i, cls in enumerate(class_names)}
    labels = np.array([class_index[cls] for _, cls in entries], dtype=np.int32)

    payload = [contents[name] for name in names]
    with _quiet_stderr():  # libjpeg prints a line per corrupt JPEG; the skipped files are counted instead
        channels, first_size = _probe(payload, from_files, path)
        target = size or first_size
        kept, images, original_sizes = _decode_all(payload, from_files, channels, target)
    if not len(kept):
        raise _none_decoded(len(payload), path)
    if size is None:
        _check_same_size(names, kept, original_sizes, target, path)
    skipped = tuple(np.delete(np.array(names, dtype=object), kept))
    return ImageFolderData(images, labels[kept], class_names, skipped)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 sent to /dev/null (the C libraries' messages); Python errors still raise."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _probe(payload: list, from_files: bool, path: Path) -> tuple[int, tuple[int, int]]:
    """Channel count (1 if the first decodable images are all grey, else 3) and first size."""
    shapes = []
    for item in payload:
        try:
            data = Path(item).read_bytes() if from_files else item
            shapes.append(tf.io.decode_image(data, expand_animations=False).shape)
        except (tf.errors.InvalidArgumentError, OSError):
            continue
        if len(shapes) == _PROBE_IMAGES:
            break
    if not shapes:
        raise _none_decoded(len(payload), path)
    channels = 1 if all(shape[-1] == 1 for shape in shapes) else 3
    return channels, (int(shapes[0][0]), int(shapes[0][1]))


def _none_decoded(count: int, path: Path) -> ValueError:
    return ValueError(
        f"none of the {count} image files in {path} could be decoded (corrupt, truncated or not "
        f"images); replace them with readable {'/'.join(s[1:] for s in IMAGE_SUFFIXES)} files"
    )


def _decode_all(
    payload: list, from_files: bool, channels: int, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode in parallel; returns kept positions, images and original sizes.

    Files that fail to read or decode are dropped by ``ignore_errors``; the
    position carried with each element tells which ones survived.
    """

    def decode(position, item):
        data = tf.io.read_file(item) if from_files else item
        image = tf.io.decode_image(data, channels=channels, expand_animations=False)
        return position, resize_if_needed(image, size), tf.shape(image)[:2]

    positions = tf.range(len(payload), dtype=tf.int64)
    dataset = (
        tf.data.Dataset.from_tensor_slices((positions, tf.constant(payload, dtype=tf.string)))
        .map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .ignore_errors()
        .batch(_DECODE_BATCH)
    )
    batches = list(dataset.as_numpy_iterator())
    if not batches:
        empty_images = np.zeros((0, *size, channels), np.uint8)
        return np.zeros(0, np.int64), empty_images, np.zeros((0, 2), np.int32)
    kept, images, sizes = (np.concatenate(parts) for parts in zip(*batches))
    return kept, images, sizes


def _check_same_size(
    names: list[str], kept: np.ndarray, sizes: np.ndarray, target: tuple[int, int], path: Path
) -> None:
    odd = np.flatnonzero(np.any(sizes != np.array(target), axis=1))
    if odd.size:
        example = names[kept[odd[0]]]
        height, width = sizes[odd[0]]
        raise ValueError(
            f"images in {path} differ in size ({names[kept[0]]} is {target[0]}x{target[1]}, "
            f"{example} is {height}x{width}, {odd.size} differ in all); "
            f"pass image_size=N to resize them all to NxN while loading"
        )


def _check_every_class_read(data: ImageFolderData, path: Path) -> None:
    counts = np.bincount(data.labels, minlength=len(data.class_names))
    empty = [name for name, count in zip(data.class_names, counts) if count == 0]
    if empty:
        raise ValueError(
            f"class folder(s) {', '.join(map(repr, empty))} of {path} hold no readable image (every file "
            f"failed to decode); replace their files with readable images or remove the folder(s)"
        )


def _warn_skipped(path: Path, skipped: tuple[str, ...]) -> None:
    shown = ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5 else "")
    warnings.warn(
        f"skipped {len(skipped)} corrupt or unreadable image file(s) in {path}: {shown}",
        stacklevel=3,
    )


# --- cache -------------------------------------------------------------------


def _fingerprint(path: Path) -> str:
    """Content hash for archives; names, sizes and mtimes for folders."""
    if path.is_file():
        return "sha256:" + file_sha256(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        stat = file.stat()
        entry = f"{file.relative_to(path).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n"
        digest.update(entry.encode())
    return "listing:" + digest.hexdigest()


def _cache_file(path: Path, split: str, size: tuple[int, int] | None) -> Path:
    key = f"format={_CACHE_FORMAT}|{_fingerprint(path)}|split={split}|size={size}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return cache_dir() / f"{dataset_name(path)}-{split}-{digest}.npz"


def _to_arrays(data: ImageFolderData) -> dict[str, np.ndarray]:
    return {
        "images": data.images,
        "labels": data.labels,
        "class_names": np.array(data.class_names, dtype=str),
        "skipped": np.array(data.skipped, dtype=str),
    }


def _from_arrays(arrays: dict[str, np.ndarray]) -> ImageFolderData | None:
    try:
        return ImageFolderData(
            images=arrays["images"],
            labels=arrays["labels"].astype(np.int32),
            class_names=tuple(str(c) for c in arrays["class_names"]),
            skipped=tuple(str(s) for s in arrays["skipped"]),
        )
    except KeyError:
        return None
