"""Test-time augmentation: the logits of a few views of each image, averaged.

Levels, as airbench defines them (Jordan 2024, arXiv 2404.00498, §3.7; its ``infer``):

- ``0`` (``none``): the image;
- ``1`` (``mirror``): the mean of the image's and its mirror's logits (Krizhevsky et al. 2012 §4.1
  averaged predictions over mirrored views);
- ``2`` (``mirror_translate``): half the mirror mean, plus half the mirror mean of the image
  translated one pixel up-left and one pixel down-right (reflection padding): six views
  weighted 1/4, 1/4, 1/8, 1/8, 1/8, 1/8.

The views are built with Keras ops on an NHWC batch, so any model (and any backend) takes them.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops

__all__ = ["TTA_LEVELS", "tta_level", "tta_logits", "tta_predict", "views"]

TTA_LEVELS = {"none": 0, "mirror": 1, "mirror_translate": 2}


def tta_level(level: int | str) -> int:
    """``0``/``1``/``2`` or a name of :data:`TTA_LEVELS` -> the level; anything else is refused."""
    if isinstance(level, str) and level in TTA_LEVELS:
        return TTA_LEVELS[level]
    if isinstance(level, (int, np.integer)) and not isinstance(level, bool) and int(level) in TTA_LEVELS.values():
        return int(level)
    raise ValueError(f"test-time augmentation must be one of {', '.join(TTA_LEVELS)} (or 0, 1, 2), got {level!r}.")


def _mirror(x):
    return ops.flip(x, axis=2)


def _translations(x) -> list[Any]:
    """The batch shifted one pixel up-left and one pixel down-right (reflection padding)."""
    padded = ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="reflect")
    h, w = x.shape[1], x.shape[2]
    return [padded[:, 0:h, 0:w, :], padded[:, 2:h + 2, 2:w + 2, :]]


def views(x, level: int | str) -> list[tuple[float, Any]]:
    """``(weight, view)`` pairs of the batch ``x`` (N, H, W, C) at ``level``; the weights sum to 1."""
    level = tta_level(level)
    if level == 0:
        return [(1.0, x)]
    pairs = [(0.5, x), (0.5, _mirror(x))]
    if level == 1:
        return pairs
    shifted = [(w, v) for t in _translations(x) for w, v in ((0.125, t), (0.125, _mirror(t)))]
    return [(w / 2, v) for w, v in pairs] + shifted


def tta_logits(predict: Callable[[Any], Any], x, level: int | str):
    """The weighted mean of ``predict`` (a batch -> logits function) over :func:`views`."""
    total = None
    for weight, view in views(x, level):
        out = ops.cast(predict(view), "float32") * weight
        total = out if total is None else total + out
    return total


def tta_predict(model: keras.Model, images: np.ndarray, level: int | str, batch_size: int = 500) -> np.ndarray:
    """``model``'s TTA logits for ``images`` (float NHWC, as the model takes them), batch by batch."""
    level = tta_level(level)
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = ops.convert_to_tensor(images[start:start + batch_size])
        outputs.append(ops.convert_to_numpy(tta_logits(lambda v: model(v, training=False), batch, level)))
    return np.concatenate(outputs) if outputs else np.zeros((0, *model.output.shape[1:]), "float32")
