"""Upstream weights into a network of other build options: layer by layer, the classifier fresh when
the number of classes changes, VGG's ``fc1`` refolded when the final map is not 7×7.

``zoo.build("vgg16", weights="imagenet", features_only=True, out_indices=(0,))`` keeps the layers it
has (``block1_conv1``, ``block1_conv2``) from the ImageNet network; ``include_top=False``, ``pooling``,
``output_stride`` (dilation changes no weight shapes; a ResNet projection shortcut whose stride it
removed is named ``<block>_proj_*``, not ``<block>_shortcut_proj_*``) likewise. ``num_classes`` other than the
publisher's 1000 leaves the classifier layer (:data:`HEADS`) freshly initialised, and says so.

VGG's classifier flattens the last map. At 224×224 that map is 7×7, the size both publishers trained
``fc1`` on (torchvision average-pools adaptively to 7×7 first, so any input works there). At other
sizes ``fc1``'s kernel is refolded with the adaptive pooling matrix (:func:`refold_fc1`), so the model
computes what torchvision's does at that size: adaptive average to 7×7, then ``fc1``.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from zoo.weights.convert.common import adaptive_pool_matrix
from zoo.weights.errors import WeightsError

HEADS = {"resnet": ("fc",), "squeezenet": ("conv10",), "vgg": ("predictions",), "fishnet": ("fish9_4_1",)}
VGG_POOLED = 7


def refold_fc1(kernel: np.ndarray, channels: int, height: int, width: int, pooled: int = VGG_POOLED) -> np.ndarray:
    """A Dense kernel on a flattened (pooled, pooled, C) map → the kernel on the (height, width, C) map
    whose adaptive average pooling to pooled×pooled it was (``kernel``: (pooled·pooled·C, out))."""
    out = kernel.shape[1]
    if kernel.shape[0] != pooled * pooled * channels:
        raise WeightsError(f"fc1 has {kernel.shape[0]} inputs, expected {pooled}x{pooled}x{channels}.")
    k = kernel.reshape(pooled, pooled, channels, out).astype(np.float64)
    folded = np.einsum("ijco,iy,jx->yxco", k, adaptive_pool_matrix(height, pooled), adaptive_pool_matrix(width, pooled))
    return folded.reshape(height * width * channels, out).astype(kernel.dtype)


def transfer(src: Any, dst: Any, family: str, what: str) -> list[str]:
    """Copy ``src``'s weights into ``dst`` by layer name; returns the layers left fresh (the classifier of
    another number of classes). Any other layer without weights of its shape is an error."""
    by_name = {layer.name: layer for layer in src.layers}
    fresh, missing = [], []
    flat = _flatten_input(dst)
    for layer in dst.layers:
        if not layer.weights:
            continue
        source = next((by_name[n] for n in _names(layer.name) if n in by_name), None)
        values = source.get_weights() if source is not None else None
        shapes = [tuple(w.shape) for w in layer.weights]
        if values is not None and [tuple(v.shape) for v in values] == shapes:
            layer.set_weights(values)
        elif values is not None and family == "vgg" and layer.name == "fc1" and flat is not None:
            layer.set_weights([refold_fc1(values[0], flat[2], flat[0], flat[1]), values[1]])
        elif layer.name in HEADS.get(family, ()) and source is not None:
            fresh.append(layer.name)
        else:
            missing.append(layer.name)
    if missing:
        raise WeightsError(f"the upstream weights do not cover {what}: no weights of the same shape for layers "
                           f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}.")
    return fresh


def _names(name: str) -> list[str]:
    """``name`` and what the same layer is called at another downsampling choice: a ResNet projection
    shortcut is ``<block>_shortcut_proj_*`` at a strided site, ``<block>_proj_*`` where ``output_stride``
    took the stride away."""
    for a, b in (("_shortcut_proj_", "_proj_"), ("_proj_", "_shortcut_proj_")):
        if a in name:
            return [name, name.replace(a, b)]
    return [name]


def _flatten_input(model: Any) -> tuple[int, int, int] | None:
    """(h, w, c) of the map a VGG's ``flatten`` layer flattens, or ``None`` (no such layer)."""
    try:
        shape = model.get_layer("flatten").input.shape
    except ValueError:
        return None
    return tuple(int(d) for d in shape[1:])


def say_fresh(fresh: list[str], key: str, num_classes: int, published: int) -> None:
    """Warn which layers start fresh (fine-tuning a new classifier)."""
    if fresh:
        warnings.warn(f"weights {key} classify {published} classes; for num_classes={num_classes} layer(s) "
                      f"{', '.join(fresh)} start fresh (random), every other layer has the upstream weights: "
                      f"fine-tune them.", stacklevel=4)
