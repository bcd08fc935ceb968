"""Datasets for zoo: loading, input pipelines and normalisation layers.

This package imports nothing else from ``zoo``.

* :func:`load` — tensorflow-datasets names, image folders/archives, ``.npz``
  files, numpy arrays or the packaged CIFAR-10 sample, with a deterministic,
  class-stratified validation hold-out.
* :func:`make_pipeline` — cache, shuffle, seeded augmentation, batching.
* :func:`normalization_layer` — per-channel, ImageNet, x/255 or GCN+ZCA
  normalisation as Keras layers, so models take raw 0..255 RGB input.
"""

from zoo.data.augment import AUGMENTATIONS
from zoo.data.embedded import SAMPLE_NAME, embedded_sample_path, make_embedded_sample
from zoo.data.folder import EXPECTED_LAYOUT
from zoo.data.info import DatasetInfo, Splits
from zoo.data.normalize import NORMALIZATIONS, ZCAWhitening, normalization_layer
from zoo.data.pipeline import make_pipeline
from zoo.data.sources import (
    EMBEDDED_NAMES,
    KNOWN_TFDS_DATASETS,
    DatasetUnavailableError,
    is_tfds_name,
    load,
)

__all__ = [
    "AUGMENTATIONS",
    "EMBEDDED_NAMES",
    "EXPECTED_LAYOUT",
    "KNOWN_TFDS_DATASETS",
    "NORMALIZATIONS",
    "SAMPLE_NAME",
    "DatasetInfo",
    "DatasetUnavailableError",
    "Splits",
    "ZCAWhitening",
    "embedded_sample_path",
    "is_tfds_name",
    "load",
    "make_embedded_sample",
    "make_pipeline",
    "normalization_layer",
]
