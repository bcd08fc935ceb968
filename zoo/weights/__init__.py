"""Published weights: a hash-verified registry loaded by name, and converters from other frameworks.

>>> from zoo.weights import list_weights, load_weights
>>> net = load_weights("resnet20", weights="cifar10")     # = zoo.build("resnet20", weights="cifar10")
>>> model = load_weights("resnet20", "cifar10", include_preprocessing=True)   # raw 0..255 RGB in, logits out
>>> from zoo.weights.convert import convert      # also zoo.weights.convert_weights
>>> convert("torchvision", "resnet50", "resnet50-0676ba61.pth", "resnet50-imagenet.weights.h5")
>>> vgg = load_weights("vgg16", "imagenet", features_only=True, out_indices=(0,))   # downloaded on first use

The package by concern (imports point down the list; the model registry is below all of them):

- :mod:`~zoo.weights.errors`: ``WeightsError`` and its kinds (all ``ZooError``);
- :mod:`~zoo.weights.store`: sha256, the download cache, verified downloads, an entry's file (``fetch``);
- :mod:`~zoo.weights.entries`: the manifest as data: ``WeightsEntry``, reading, listing, writing;
- :mod:`~zoo.weights.preprocess`: the normalisation layers of converted weights, manifest records;
- :mod:`~zoo.weights.h5`, :mod:`~zoo.weights.runs`: strict ``.weights.h5`` loading; run directories;
- :mod:`~zoo.weights.imagenet`: the upstream ImageNet weights (torchvision, keras.applications, the
  FishNet authors) as data, with the publishers' URLs, hashes and figures;
- :mod:`~zoo.weights.upstream`: their first-use download, hash check and conversion into the cache,
  and ``add_checkpoint`` for files downloaded by hand; :mod:`~zoo.weights.finetune`: their weights in
  networks of other options (a fresh classifier for another ``num_classes``);
- :mod:`~zoo.weights.loading`: what ``weights=`` names, and loading (the hook behind ``zoo.build``);
- :mod:`~zoo.weights.publishing`: publishing runs and files (``publish``, ``publish_file``; the module
  is not called ``publish``, which would shadow the function here);
- :mod:`~zoo.weights.convert`: converters from keras.applications, torchvision and FishNet.

Attributes load lazily, so that listing weights does not start TensorFlow. Importing
:mod:`zoo.weights.loading` (any loading name below does) registers the weights loader of
``zoo.build``; ``zoo.build`` imports it itself.
"""
from __future__ import annotations

import importlib
from typing import Any

_MODULES = {
    "zoo.weights.loading": ("build", "load_weights", "load_network", "check_weights", "resolve_weights",
                            "weights_info", "WeightsSource"),
    "zoo.weights.entries": ("list_weights", "get_weights", "weights_table", "read_manifest", "manifest_paths",
                            "WeightsEntry"),
    "zoo.weights.store": ("fetch", "cache_dir", "sha256_file"),
    "zoo.weights.imagenet": ("list_upstream", "get_upstream", "Upstream"),
    "zoo.weights.upstream": ("add_checkpoint", "materialize"),
    "zoo.weights.publishing": ("publish", "publish_file"),
    "zoo.weights.runs": ("run_facts", "run_preprocessing_layer"),
    "zoo.weights.errors": ("WeightsError", "ChecksumError", "WeightsNotFound", "DownloadError"),
    "zoo.weights.preprocess": ("Preprocess",),
    "zoo.weights.convert.common": ("ConversionError", "Conversion"),
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}
__all__ = [*_EXPORTS, "convert_weights"]


def __getattr__(name: str) -> Any:
    if name == "convert_weights":  # ``zoo.weights.convert`` is the converters' package; its function:
        return importlib.import_module("zoo.weights.convert").convert
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'zoo.weights' has no attribute {name!r}")
