"""Per-variable learning-rate scaling: BatchNorm biases trained at a multiple of the learning
rate, as airbench does (Jordan 2024, arXiv 2404.00498, §3.3: "we scale up the learning rate for
BatchNorm biases by 64x"; the authors' code gives them their own parameter group).

Keras optimizers have one learning rate, so the scale is applied to the gradient: a variable of
scale ``s`` and L2 coefficient ``l2`` gets ``s * gradient + l2 * weight`` (its L2 penalty is then
added here, not by a regularizer, so the decay is *not* scaled — in the authors' groups the
decay per step is the same for every parameter). With plain SGD (and SGD with momentum, whose
update is linear in the gradient) that is exactly a learning rate ``s`` times larger for the
gradient term. :func:`scaled_optimizer` makes the subclass of any Keras optimizer that does it.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras

from zoo.compat import nested_layers

__all__ = ["batch_norm_biases", "scaled_optimizer"]


def batch_norm_biases(model: keras.Model) -> list[Any]:
    """The trainable ``beta`` of every BatchNormalization layer in ``model`` (nested models too)."""
    found = []
    for layer in nested_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization) and layer.center and layer.trainable:
            found.append(layer.beta)
    return found


def scaled_optimizer(optimizer_cls: type, scales: Mapping[str, float], l2: Mapping[str, float] | None = None) -> type:
    """A subclass of ``optimizer_cls`` that replaces the gradient of each variable whose ``path``
    is in ``scales`` by ``scale * gradient + l2[path] * variable`` before the update."""
    scales, l2 = dict(scales), dict(l2 or {})

    class ScaledGradients(optimizer_cls):
        def apply(self, grads, trainable_variables=None):  # noqa: D102 - Keras' Optimizer.apply
            if trainable_variables is None:
                raise ValueError("the learning-rate-scaled optimizer needs the variables with their gradients")
            variables = list(trainable_variables)
            grads = [_scaled(g, v, scales, l2) for g, v in zip(grads, variables)]
            return super().apply(grads, variables)

    ScaledGradients.__name__ = ScaledGradients.__qualname__ = f"Scaled{optimizer_cls.__name__}"
    return ScaledGradients


def _scaled(grad, variable, scales: Mapping[str, float], l2: Mapping[str, float]):
    scale = scales.get(variable.path)
    if grad is None or scale is None:
        return grad
    grad = grad * keras.ops.cast(scale, grad.dtype)
    decay = l2.get(variable.path, 0.0)
    return grad + keras.ops.cast(decay, grad.dtype) * keras.ops.cast(variable, grad.dtype) if decay else grad
