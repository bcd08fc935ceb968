"""Small custom layers the downsampling choices need; serializable with ``.keras`` files."""
from __future__ import annotations

import numpy as np
import keras
from keras import ops


def binomial_filter(size: int) -> np.ndarray:
    """The normalised 2-D binomial filter of Zhang 2019 §3.2 (size 2–7: [1,1] … [1,6,15,20,15,6,1])."""
    row = np.array([1.0])
    for _ in range(size - 1):
        row = np.convolve(row, [1.0, 1.0])
    kernel = np.outer(row, row)
    return (kernel / kernel.sum()).astype("float32")


@keras.saving.register_keras_serializable(package="zoo")
class BlurPool2D(keras.layers.Layer):
    """Anti-aliased downsampling (Zhang 2019, "Making CNNs shift-invariant again", §3.2).

    Reflect-pads by ``pads`` (before, after), blurs each channel with a fixed binomial filter and
    subsamples by ``stride``. No trainable weights.
    """

    def __init__(self, filter_size: int = 3, stride: int = 2, pads: tuple[int, int] = (1, 1), **kwargs):
        super().__init__(**kwargs)
        self.filter_size, self.stride, self.pads = int(filter_size), int(stride), tuple(int(p) for p in pads)

    def build(self, input_shape):
        kernel = binomial_filter(self.filter_size)[:, :, None, None]
        self._kernel = np.repeat(kernel, int(input_shape[-1]), axis=2)

    def call(self, x):
        (b, a) = self.pads
        if b or a:
            x = ops.pad(x, [[0, 0], [b, a], [b, a], [0, 0]], mode="reflect")
        kernel = ops.cast(ops.convert_to_tensor(self._kernel), x.dtype)
        return ops.depthwise_conv(x, kernel, strides=self.stride, padding="valid")

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        size = lambda s: None if s is None else (s + sum(self.pads) - self.filter_size) // self.stride + 1
        return (n, size(h), size(w), c)

    def get_config(self):
        return {**super().get_config(), "filter_size": self.filter_size, "stride": self.stride, "pads": self.pads}


@keras.saving.register_keras_serializable(package="zoo")
class SpaceToDepth(keras.layers.Layer):
    """Lossless space-to-depth: each ``block``×``block`` patch becomes ``block²`` channels (SPD-Conv)."""

    def __init__(self, block: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.block = int(block)

    def call(self, x):
        b = self.block
        _, h, w, c = x.shape
        h = ops.shape(x)[1] if h is None else h
        w = ops.shape(x)[2] if w is None else w
        x = ops.reshape(x, (-1, h // b, b, w // b, b, c))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (-1, h // b, w // b, b * b * c))

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        b = self.block
        return (n, None if h is None else h // b, None if w is None else w // b, c * b * b)

    def get_config(self):
        return {**super().get_config(), "block": self.block}


@keras.saving.register_keras_serializable(package="zoo")
class ChannelGroupSum(keras.layers.Layer):
    """Sum each group of ``k`` consecutive channels: FishNet's up-sampling shortcut r(x) (Sun et al. 2018, §3.2)."""

    def __init__(self, k: int, **kwargs):
        super().__init__(**kwargs)
        self.k = int(k)

    def call(self, x):
        if self.k == 1:
            return x
        shape = ops.shape(x)
        c = x.shape[-1]
        x = ops.reshape(x, (shape[0], shape[1], shape[2], c // self.k, self.k))
        return ops.sum(x, axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] // self.k)

    def get_config(self):
        return {**super().get_config(), "k": self.k}


@keras.saving.register_keras_serializable(package="zoo")
class ZeroChannelPad(keras.layers.Layer):
    """Option-A shortcut of He et al. 2016 (§4.2): pad ``extra`` zero channels, half before, half after."""

    def __init__(self, extra: int, **kwargs):
        super().__init__(**kwargs)
        self.extra = int(extra)

    def call(self, x):
        before = self.extra // 2
        return ops.pad(x, [[0, 0], [0, 0], [0, 0], [before, self.extra - before]])

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + self.extra)

    def get_config(self):
        return {**super().get_config(), "extra": self.extra}
