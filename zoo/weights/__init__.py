"""Published weights: a hash-verified registry loaded by name, and converters from other frameworks.

>>> from zoo.weights import list_weights, load_weights
>>> model = load_weights("resnet20", weights="cifar10")        # raw 0..255 RGB in, logits out
>>> from zoo.weights.convert import convert      # also zoo.weights.convert_weights
>>> convert("torchvision", "resnet50", "resnet50-0676ba61.pth", "resnet50-imagenet.weights.h5")

Attributes load lazily, so that listing weights does not start TensorFlow.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build": "zoo.weights.registry", "load_weights": "zoo.weights.registry", "list_weights": "zoo.weights.registry",
    "get_weights": "zoo.weights.registry", "check_weights": "zoo.weights.registry",
    "weights_table": "zoo.weights.registry",
    "fetch": "zoo.weights.registry", "publish": "zoo.weights.registry", "publish_file": "zoo.weights.registry",
    "read_manifest": "zoo.weights.registry", "manifest_paths": "zoo.weights.registry",
    "WeightsEntry": "zoo.weights.registry",
    "WeightsError": "zoo.weights.store", "ChecksumError": "zoo.weights.store",
    "WeightsNotFound": "zoo.weights.store", "DownloadError": "zoo.weights.store",
    "cache_dir": "zoo.weights.store", "sha256_file": "zoo.weights.store",
    "Preprocess": "zoo.weights.preprocess",
    "ConversionError": "zoo.weights.convert.common",
}
__all__ = [*_EXPORTS, "convert_weights"]


def __getattr__(name: str) -> Any:
    if name == "convert_weights":  # ``zoo.weights.convert`` is the converters' package; its function:
        return importlib.import_module("zoo.weights.convert").convert
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'zoo.weights' has no attribute {name!r}")
