"""Input normalisation as Keras layers, so models take raw 0..255 RGB images.

Layers carry their statistics as weights or config, so a saved ``.keras``
model normalises its inputs by itself.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops

NORMALIZATIONS = ("per_channel", "imagenet", "scale", "zca", "none")

# torchvision's ImageNet statistics (0..1 scale) times 255.
IMAGENET_MEAN = tuple(255.0 * m for m in (0.485, 0.456, 0.406))
IMAGENET_STD = tuple(255.0 * s for s in (0.229, 0.224, 0.225))

# The CIFAR-10 preprocessing of Goodfellow et al. 2013 (Maxout Networks) in
# pylearn2 (scripts/datasets/make_cifar10_gcn_whitened.py: CIFAR10(gcn=55.)
# then preprocessing.ZCA(), whose filter_bias defaults to 0.1); reused by
# Springenberg et al. 2015 (All-CNN).
GCN_SCALE = 55.0
ZCA_EPSILON = 0.1


def normalization_layer(
    kind: str | None, train_ds: tf.data.Dataset | None = None, *, sample: int = 10000
) -> keras.layers.Layer:
    """A layer mapping raw 0..255 images to normalised model inputs.

    Args:
        kind: ``"per_channel"`` (per-channel mean/std fitted on ``train_ds``),
            ``"imagenet"`` (fixed ImageNet mean/std), ``"scale"`` (x / 255),
            ``"zca"`` (global contrast normalisation + ZCA whitening fitted on
            ``train_ds``, see :class:`ZCAWhitening`) or ``"none"``/``None``.
        train_ds: unbatched ``(image, label)`` training data, needed by the
            fitted kinds.
        sample: number of training images (taken from the start of
            ``train_ds``, which :func:`zoo.data.load` returns in shuffled
            order) used to fit the statistics.
    """
    kind = "none" if kind is None else kind
    # float32 whatever the global dtype policy: statistics are fitted and applied in full precision
    # (under mixed_bfloat16 the network casts the normalised images itself, as Keras' mixed precision does)
    if kind not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {kind!r}; valid kinds: {', '.join(NORMALIZATIONS)}")
    if kind == "none":
        return keras.layers.Identity()
    if kind == "scale":
        return keras.layers.Rescaling(1.0 / 255.0, dtype="float32")
    if kind == "imagenet":
        variance = [s * s for s in IMAGENET_STD]
        return keras.layers.Normalization(axis=-1, mean=list(IMAGENET_MEAN), variance=variance, dtype="float32")
    if train_ds is None:
        raise ValueError(f"normalization {kind!r} is fitted on the training data: pass train_ds")
    if kind == "per_channel":
        layer = keras.layers.Normalization(axis=-1, dtype="float32")
        layer.adapt(_image_batches(train_ds, sample))
        return layer
    layer = ZCAWhitening(dtype="float32")
    layer.adapt(sample_images(train_ds, sample))
    return layer


def global_contrast_normalize(flat, scale: float, sqrt_bias: float = 0.0, min_divisor: float = 1e-8):
    """Centre each row and scale it to L2 norm ``scale`` (pylearn2 ``use_std=False``).

    Goodfellow et al. 2013 (Maxout Networks); works on numpy arrays and
    backend tensors of shape ``(N, features)``.
    """
    centred = flat - ops.mean(flat, axis=1, keepdims=True)
    norm = ops.sqrt(sqrt_bias + ops.sum(ops.square(centred), axis=1, keepdims=True))
    norm = ops.where(norm < min_divisor, ops.ones_like(norm), norm)
    return scale * centred / norm


def sample_images(ds: tf.data.Dataset, count: int) -> np.ndarray:
    """The first ``count`` images of an unbatched ``(image, label)`` dataset, as float32."""
    batches = list(_image_batches(ds, count).as_numpy_iterator())
    if not batches:
        raise ValueError("the training dataset is empty")
    return np.concatenate(batches)


def _image_batches(ds: tf.data.Dataset, count: int) -> tf.data.Dataset:
    images = ds.map(lambda image, label: tf.cast(image, tf.float32)).take(count)
    fixed = ds.element_spec[0].shape.is_fully_defined()
    return images.batch(1024 if fixed else 1)


@keras.saving.register_keras_serializable(package="zoo")
class ZCAWhitening(keras.layers.Layer):
    """Global contrast normalisation followed by ZCA whitening.

    Each image (flattened) is centred and scaled to L2 norm ``gcn_scale``
    (global contrast normalisation; pylearn2 ``global_contrast_normalize``
    with ``use_std=False``, ``sqrt_bias=0``), then whitened with
    ``W = U diag(1 / sqrt(λ + ε)) Uᵀ``, where ``U, λ`` are the eigenvectors
    and eigenvalues of the covariance of the normalised training images (ZCA,
    Bell & Sejnowski 1997). This is the CIFAR-10 preprocessing of Goodfellow
    et al. 2013 (Maxout Networks), reused by Springenberg et al. 2015
    (Striving for Simplicity: The All Convolutional Net).

    ``epsilon`` is pylearn2's ``filter_bias``; 0.1 is its default and the
    value used for CIFAR-10 after GCN with scale 55 (which makes the average
    per-pixel variance about 1). It damps the near-zero-variance directions
    instead of amplifying their noise, so outputs have unit variance only
    along directions whose variance is well above ``epsilon``.

    The mean and whitening matrix are non-trainable weights fitted by
    :meth:`adapt`, so they are saved with the model. The whitening matrix
    has ``(H·W·C)²`` entries (9.4 M for 32×32×3 images).
    """

    def __init__(
        self,
        epsilon: float = ZCA_EPSILON,
        gcn_scale: float = GCN_SCALE,
        gcn_sqrt_bias: float = 0.0,
        gcn_min_divisor: float = 1e-8,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)
        self.gcn_scale = float(gcn_scale)
        self.gcn_sqrt_bias = float(gcn_sqrt_bias)
        self.gcn_min_divisor = float(gcn_min_divisor)

    def build(self, input_shape):
        features = math.prod(input_shape[1:])
        self.mean = self.add_weight(
            shape=(features,), initializer="zeros", trainable=False, name="mean"
        )
        self.whitening = self.add_weight(
            shape=(features, features), initializer="identity", trainable=False, name="whitening"
        )

    def call(self, inputs):
        flat = ops.reshape(ops.cast(inputs, self.compute_dtype), (ops.shape(inputs)[0], -1))
        normalized = global_contrast_normalize(
            flat, self.gcn_scale, self.gcn_sqrt_bias, self.gcn_min_divisor
        )
        whitened = ops.matmul(normalized - self.mean, self.whitening)
        return ops.reshape(whitened, ops.shape(inputs))

    def adapt(self, images: np.ndarray) -> None:
        """Fit the mean and whitening matrix on ``images`` (N, H, W, C) in 0..255."""
        images = np.asarray(images, dtype=np.float64)
        if not self.built:
            self.build((None, *images.shape[1:]))
        flat = images.reshape(len(images), -1)
        normalized = np.asarray(
            global_contrast_normalize(flat, self.gcn_scale, self.gcn_sqrt_bias, self.gcn_min_divisor)
        )
        mean = normalized.mean(axis=0)
        centred = normalized - mean
        covariance = centred.T @ centred / len(centred)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        eigenvalues = np.maximum(eigenvalues, 0.0)  # clip round-off below zero
        whitening = (eigenvectors / np.sqrt(eigenvalues + self.epsilon)) @ eigenvectors.T
        self.mean.assign(mean.astype(np.float32))
        self.whitening.assign(whitening.astype(np.float32))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "epsilon": self.epsilon,
            "gcn_scale": self.gcn_scale,
            "gcn_sqrt_bias": self.gcn_sqrt_bias,
            "gcn_min_divisor": self.gcn_min_divisor,
        }
