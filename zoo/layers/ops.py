"""Small custom layers the downsampling choices need (serializable with ``.keras`` files) and the
fused BatchNormalization the blocks use."""
from __future__ import annotations


import numpy as np
import keras
import tensorflow as tf
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


CUDNN_MIN_EPSILON = 1.001e-5


@keras.saving.register_keras_serializable(package="zoo")
class BatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` — same weights, names, config and inference — whose
    training ``call`` runs TensorFlow's fused kernel where it applies.

    Keras 3 normalises with separate ops (``moments``, then ``batch_normalization``: several passes
    over the activations forward and more backward); TensorFlow's ``FusedBatchNormV3`` does it in
    one pass each way (oneDNN on CPU; the step time it saves is measured by ``zoo bench``, see
    results/benchmarks/RUN.md). The statistics are Keras': the moving variance is updated from
    the *biased* batch variance, and outputs and gradients agree to float32 rounding.

    The fused path is taken in training for 4-D channels-last inputs on the TensorFlow backend
    without a mask, renorm or synchronisation (and on a GPU only when ``epsilon`` reaches cuDNN's
    minimum, 1.001e-5); inference and everything else run Keras' own ``call``, so predictions are
    exactly a plain BatchNormalization's. It is a subclass (an ``isinstance`` of Keras' class for
    converters and layer walks), registered with Keras as ``zoo>BatchNormalization``, so a ``.keras``
    round trip keeps it fused. It keeps Keras' class *name* on purpose: Keras keys a weights file
    by the snake-cased class name (``batch_normalization_3``), so the zoo's weights files stay
    interchangeable with plain-BatchNormalization models.
    """

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or not _fusable(self, inputs, training, mask):
            # inference (moving statistics) stays Keras' code: outputs are bit-identical to a plain
            # BatchNormalization's, before and after a .keras round trip
            return super().call(inputs, training=training, mask=mask)
        return _fused_training_call(self, inputs)


def fused_batch_norm(**kwargs) -> keras.layers.BatchNormalization:
    """A :class:`BatchNormalization` (fused in training) of ``kwargs`` (those of ``keras.layers.BatchNormalization``)."""
    return BatchNormalization(**kwargs)


def is_fused(layer) -> bool:
    """Whether ``layer`` normalises with the fused training kernel."""
    return isinstance(layer, BatchNormalization)


def _fusable(layer, inputs, training, mask) -> bool:
    if keras.backend.backend() != "tensorflow" or mask is not None or layer.renorm or layer.synchronized:
        return False
    if len(inputs.shape) != 4 or layer.axis not in (-1, 3) or not (training is None or isinstance(training, bool)):
        return False
    if layer.epsilon < CUDNN_MIN_EPSILON:
        return not tf.config.list_physical_devices("GPU")
    return True


FUSED_INPUT_DTYPES = ("float32", "bfloat16", "float16")  # FusedBatchNormV3's T; statistics stay float32 (its U)


def _fused_training_call(self, inputs):
    # Under mixed precision the activations go in as they are (bfloat16/float16): the kernel
    # accumulates its statistics in float32 and takes float32 scale/offset, as Keras 2's fused
    # mixed-precision BatchNorm did; casting them to float32 first costs two passes over every
    # activation forward and backward (about a third of the ResNet-20 bfloat16 step on an AMX CPU).
    dtype = inputs.dtype.name if hasattr(inputs.dtype, "name") else str(inputs.dtype)
    x = inputs if dtype in FUSED_INPUT_DTYPES else tf.cast(inputs, "float32")
    channels = x.shape[-1]
    gamma = tf.cast(self.gamma, "float32") if self.scale else tf.ones((channels,), "float32")
    beta = tf.cast(self.beta, "float32") if self.center else tf.zeros((channels,), "float32")
    empty = tf.constant([], "float32")
    y, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
        x=x, scale=gamma, offset=beta, mean=empty, variance=empty, epsilon=self.epsilon,
        exponential_avg_factor=1.0, data_format="NHWC", is_training=True)
    n = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), "float32")
    # the kernel returns the unbiased (n / (n - 1)) variance; Keras averages the biased one
    variance = tf.where(n > 1.0, variance * (n - 1.0) / tf.maximum(n, 1.0), tf.zeros_like(variance))
    moving_mean = tf.cast(self.moving_mean, "float32")
    moving_variance = tf.cast(self.moving_variance, "float32")
    self.moving_mean.assign(moving_mean * self.momentum + mean * (1.0 - self.momentum))
    self.moving_variance.assign(moving_variance * self.momentum + variance * (1.0 - self.momentum))
    return tf.cast(y, self.compute_dtype)
