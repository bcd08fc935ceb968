"""zoo: exact All-CNN, ResNet, SqueezeNet, FishNet and VGG builders with switchable downsampling.

>>> import zoo
>>> model = zoo.build("all_cnn_c", downsample="max")   # = ConvPool-CNN-C
>>> zoo.list_models("resnet*")

Attributes load lazily so that ``zoo --help`` and ``import zoo.cli`` do not start TensorFlow.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "build": "zoo.weights.registry", "list_models": "zoo.models.registry", "get_entry": "zoo.models.registry",
    "resolve_plan": "zoo.models.registry", "sites": "zoo.models.registry",
    "load_weights": "zoo.weights.registry", "list_weights": "zoo.weights.registry", "publish": "zoo.weights.registry",
    "count_flops": "zoo.flops", "count_params": "zoo.flops", "ZooError": "zoo.errors",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
