"""Shared building blocks: convolution + norm + activation, in the PyTorch conventions the
published weights use (BatchNorm epsilon 1e-5, momentum 0.1 ≙ Keras 0.9)."""
from __future__ import annotations

from keras import layers

from zoo.layers.ops import fused_batch_norm

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


def batch_norm(x, name: str, epsilon: float = BN_EPSILON):
    """BatchNorm over channels (last axis): Keras' layer, computed by TensorFlow's fused kernel
    (:class:`zoo.layers.ops.BatchNormalization`: same weights and statistics)."""
    return fused_batch_norm(axis=-1, epsilon=epsilon, momentum=BN_MOMENTUM, name=name)(x)


def conv(x, filters: int, kernel_size: int, *, strides: int = 1, padding: str = "same", dilation_rate: int = 1,
         use_bias: bool = False, name: str, kernel_regularizer=None):
    """A plain 2-D convolution, He-normal initialised (He et al. 2015)."""
    return layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, dilation_rate=dilation_rate, use_bias=use_bias,
        kernel_initializer="he_normal", kernel_regularizer=kernel_regularizer, name=name,
    )(x)


def conv_bn_act(x, filters: int, kernel_size: int, *, strides: int = 1, padding: str = "same",
                dilation_rate: int = 1, use_bias: bool = False, activation: str | None = "relu",
                bn_epsilon: float = BN_EPSILON, name: str):
    """Conv → BN → activation (the post-activation unit of ResNet v1 and most stems)."""
    x = conv(x, filters, kernel_size, strides=strides, padding=padding, dilation_rate=dilation_rate,
             use_bias=use_bias, name=f"{name}_conv")
    x = batch_norm(x, f"{name}_bn", bn_epsilon)
    return layers.Activation(activation, name=f"{name}_{activation}")(x) if activation else x


def conv_act(x, filters: int, kernel_size: int, *, strides: int = 1, padding: str = "same",
             dilation_rate: int = 1, activation: str = "relu", name: str):
    """Conv (with bias) → activation, no normalisation (All-CNN, SqueezeNet, VGG)."""
    x = conv(x, filters, kernel_size, strides=strides, padding=padding, dilation_rate=dilation_rate,
             use_bias=True, name=f"{name}_conv" if activation else name)
    return layers.Activation(activation, name=f"{name}_{activation}")(x) if activation else x


def bn_act_conv(x, filters: int, kernel_size: int, *, strides: int = 1, padding: str = "same",
                dilation_rate: int = 1, use_bias: bool = False, name: str):
    """BN → ReLU → conv: the pre-activation unit (He et al. 2016b; FishNet, Sun et al. 2018)."""
    x = batch_norm(x, f"{name}_bn")
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    return conv(x, filters, kernel_size, strides=strides, padding=padding, dilation_rate=dilation_rate,
                use_bias=use_bias, name=f"{name}_conv")
