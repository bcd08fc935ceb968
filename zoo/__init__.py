"""zoo: exact All-CNN, ResNet, SqueezeNet, FishNet and VGG builders with switchable downsampling.

>>> import zoo
>>> model = zoo.build("all_cnn_c", downsample="max")   # = ConvPool-CNN-C
>>> model = zoo.build("resnet20", weights="cifar10", include_preprocessing=True)   # raw 0..255 RGB in
>>> zoo.list_models("resnet*")

Attributes load lazily so that ``zoo --help`` and ``import zoo.cli`` do not start TensorFlow.
``zoo.build`` is :func:`zoo.models.registry.build` (the build contract is in that module's
docstring); asking for it imports :mod:`zoo.weights.loading` first, which registers the weights
loader, so that ``zoo.build(name, weights=...)`` works without importing anything else.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "build": "zoo.weights.loading",  # re-exports zoo.models.registry.build, with the weights loader registered
    "list_models": "zoo.models.registry", "get_entry": "zoo.models.registry",
    "resolve_plan": "zoo.models.registry", "sites": "zoo.models.registry", "site_table": "zoo.models.registry",
    "feature_info": "zoo.models.registry",
    "load_weights": "zoo.weights.loading", "weights_info": "zoo.weights.loading",
    "list_weights": "zoo.weights.entries", "publish": "zoo.weights.publishing",
    "count_flops": "zoo.flops", "count_params": "zoo.flops", "ZooError": "zoo.errors",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
