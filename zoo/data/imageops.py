"""Small image helpers shared by the loaders and the input pipeline."""

from __future__ import annotations

import numbers

import tensorflow as tf

ImageSize = int | tuple[int, int] | list[int] | None


def as_size(image_size: ImageSize) -> tuple[int, int] | None:
    """Normalise ``image_size`` (``int`` or ``(height, width)``) to a pair, or ``None``."""
    if image_size is None:
        return None
    if isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool):
        size = (int(image_size), int(image_size))
    elif isinstance(image_size, (tuple, list)) and len(image_size) == 2:
        size = (int(image_size[0]), int(image_size[1]))
    else:
        raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}")
    if min(size) <= 0:
        raise ValueError(f"image_size must be positive, got {image_size!r}")
    return size


def to_uint8(image: tf.Tensor) -> tf.Tensor:
    """Round and clip a float image in 0..255 back to ``uint8``."""
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def resize_uint8(image: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """Resize a ``uint8`` image to ``size`` (bilinear, antialiased when shrinking)."""
    resized = tf.image.resize(image, size, method="bilinear", antialias=True)
    return to_uint8(resized)


def resize_if_needed(image: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """``resize_uint8`` unless the image already has ``size`` (keeps pixels exact)."""
    same = tf.reduce_all(tf.equal(tf.shape(image)[:2], size))
    resized = tf.cond(same, lambda: image, lambda: resize_uint8(image, size))
    return tf.ensure_shape(resized, (*size, image.shape[-1]))
