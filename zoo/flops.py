"""Multiply-add counter for built Keras models.

Counts one multiply-add per weight use of convolutions, depthwise convolutions, dense layers and
the fixed blur filters of anti-aliased pooling — the convention of the published figures (He et
al. 2016 Table 1 "FLOPs", torchvision's and timm's GMACs). Pooling, normalisation, activations and
additions are not counted.
"""
from __future__ import annotations

import math

import keras

from zoo.errors import ZooError

from zoo.layers.ops import BlurPool2D


def _positions(shape) -> int:
    dims = [d for d in shape[1:-1]]
    if any(d is None for d in dims):
        raise ZooError("count_flops needs a model with a fixed input size; build it with input_shape=(H, W, C).")
    return math.prod(dims)


def layer_flops(layer: keras.layers.Layer) -> int:
    """Multiply-adds of one call of ``layer`` on one image (0 for layers that are not counted)."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw = layer.kernel_size
        return _positions(layer.output.shape) * kh * kw * layer.output.shape[-1]
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw = layer.kernel_size
        cin = layer.input.shape[-1] // layer.groups
        return _positions(layer.output.shape) * kh * kw * cin * layer.filters
    if isinstance(layer, keras.layers.Dense):
        return _positions(layer.output.shape) * layer.input.shape[-1] * layer.units
    if isinstance(layer, BlurPool2D):
        return _positions(layer.output.shape) * layer.filter_size**2 * layer.output.shape[-1]
    return 0


def count_flops(model: keras.Model) -> int:
    """Multiply-adds of one forward pass of one image through ``model`` (nested models included)."""
    total = 0
    for layer in model.layers:
        total += count_flops(layer) if isinstance(layer, keras.Model) else layer_flops(layer)
    return total


def count_params(model: keras.Model) -> int:
    """Trainable parameters (PyTorch's ``numel`` convention: BN moving statistics excluded)."""
    return sum(math.prod(w.shape) for w in model.trainable_weights)
