"""Patch whitening and identity initialisation: the first layer and the initialiser of airbench
(Jordan 2024, "94% on CIFAR-10 in 3.29 seconds on a single GPU", arXiv 2404.00498, §3.2-3.3),
usable by any family.

- :class:`PatchWhitening`: a convolution whose kernel is frozen (not trained; its bias is) and set
  by :func:`fit_whitening` from the covariance of the training images' patches: each eigenvector
  ``v`` of the (uncentred) patch covariance, scaled by ``1/sqrt(lambda + eps)``, as a filter, and
  its negation beside it (``2 * patch_dim`` filters), so that what follows sees whitened patches
  whichever sign a ReLU-like activation keeps.
- :class:`PartialDirac`: the default initialiser with the first ``in_channels`` filters replaced
  by the identity (PyTorch's ``dirac_`` on ``weight[:in_channels]``), so a fresh convolution
  passes its input through.
"""
from __future__ import annotations

from typing import Any

import keras
import numpy as np

__all__ = ["PartialDirac", "PatchWhitening", "fit_whitening", "patch_covariance", "whitening_kernel"]


@keras.saving.register_keras_serializable(package="zoo")
class PartialDirac(keras.initializers.Initializer):
    """``base`` (default PyTorch's convolution initialiser: uniform with variance
    ``1/(3 fan_in)``) with filter ``i < in_channels`` set to the identity kernel of input channel
    ``i`` (a 1 at the kernel's centre ``k // 2``, zeros elsewhere)."""

    def __init__(self, seed: int | None = None):
        self.seed = seed
        self.base = keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform", seed=seed)

    def __call__(self, shape, dtype=None):
        kernel = keras.ops.convert_to_numpy(self.base(shape, dtype="float32"))
        kh, kw, cin, cout = shape
        n = min(cin, cout)
        kernel[..., :n] = 0.0
        kernel[kh // 2, kw // 2, np.arange(n), np.arange(n)] = 1.0
        return keras.ops.cast(kernel, dtype or "float32")

    def get_config(self) -> dict[str, Any]:
        return {"seed": self.seed}


@keras.saving.register_keras_serializable(package="zoo")
class PatchWhitening(keras.layers.Conv2D):
    """A ``valid`` convolution of ``2 * k * k * channels`` filters whose kernel is not trained
    (set it with :func:`fit_whitening`); the bias trains unless the layer is frozen."""

    def build(self, input_shape):
        super().build(input_shape)
        self.kernel.trainable = False


def patch_covariance(images: np.ndarray, size: int) -> np.ndarray:
    """The uncentred covariance ``X^T X / n`` of every ``size``×``size`` patch (stride 1) of
    ``images`` (N, H, W, C), patches flattened in (row, column, channel) order."""
    x = np.asarray(images, dtype="float64")
    n, h, w, c = x.shape
    windows = np.lib.stride_tricks.sliding_window_view(x, (size, size), axis=(1, 2))  # N, H', W', C, s, s
    patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, size * size * c)
    return patches.T @ patches / len(patches)


def whitening_kernel(covariance: np.ndarray, size: int, channels: int, eps: float = 5e-4) -> np.ndarray:
    """Kernel (size, size, channels, 2·size²·channels): the eigenvectors of ``covariance`` in
    decreasing order of eigenvalue, each divided by ``sqrt(eigenvalue + eps)``, then their negations."""
    values, vectors = np.linalg.eigh(covariance)
    order = np.argsort(values)[::-1]
    scaled = vectors[:, order] / np.sqrt(values[order] + eps)
    filters = np.concatenate([scaled, -scaled], axis=1)
    return filters.reshape(size, size, channels, -1).astype("float32")


def fit_whitening(layer: PatchWhitening, images: np.ndarray, eps: float = 5e-4) -> np.ndarray:
    """Set ``layer``'s kernel from ``images`` (normalised as the model sees them; airbench uses
    5,000 training images) and return it."""
    size, channels = layer.kernel_size[0], int(layer.kernel.shape[2])
    kernel = whitening_kernel(patch_covariance(images, size), size, channels, eps)
    if kernel.shape != tuple(layer.kernel.shape):
        raise ValueError(f"{layer.name} has a {tuple(layer.kernel.shape)} kernel; whitening {size}x{size} patches "
                         f"of {channels} channels gives {kernel.shape}: it needs {kernel.shape[-1]} filters.")
    layer.kernel.assign(kernel)
    return kernel
