"""Result types shared by every dataset source."""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf


@dataclass(frozen=True)
class DatasetInfo:
    """What a loaded dataset contains.

    ``image_shape`` is ``(height, width, channels)``; height and width are
    ``None`` for tensorflow-datasets sources whose images vary in size (e.g.
    ``imagenette``) when no ``image_size`` was requested.
    """

    name: str
    num_classes: int
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]
    num_train: int
    num_validation: int
    skipped_files: int = 0  # corrupt/unreadable images skipped while decoding
    skipped: tuple[str, ...] = ()  # their names (folders and archives)


@dataclass
class Splits:
    """A training set, an optional held-out validation set and their info.

    Both datasets are unbatched; each element is ``(image, label)`` with a
    ``uint8`` image of shape ``(H, W, C)`` and an ``int32`` scalar label.
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset | None
    info: DatasetInfo
