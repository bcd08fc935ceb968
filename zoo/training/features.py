"""Airbench's recipe features on the one fit path, usable by any model's recipe (Jordan 2024, "94%
on CIFAR-10 in 3.29 seconds on a single GPU", arXiv 2404.00498): the whitening initialisation of a
:class:`~zoo.layers.whitening.PatchWhitening` layer (§3.2, ``train.whitening_images``), its bias
frozen after ``train.whitening_bias_epochs``, lookahead averaging (§3.6, ``train.lookahead``),
the BatchNorm-bias learning-rate scale's facts (§3.3; the optimizer itself is
:func:`zoo.training.model.make_optimizer`'s) and test-time-augmented accuracy (§3.7,
``data.eval_tta``). :func:`prepare` returns the callbacks and the extra run state (the lookahead
average, saved and restored with :class:`~zoo.training.callbacks.RunState`) the fit path adds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import zoo.data as zdata
from zoo.compat import nested_layers
from zoo.layers.whitening import PatchWhitening, patch_covariance, whitening_kernel
from zoo.training.lookahead import Lookahead
from zoo.training.recipe import Recipe, RecipeError, lookahead_settings
from zoo.training.tta import tta_level, tta_logits

WHITENING_FIELDS = ("whitening_images", "whitening_eps", "whitening_bias_epochs")
_CHUNK = 500  # images per patch-covariance chunk (float64 patches of 500 CIFAR images: ~46 MB)


def whitening_layers(model: keras.Model) -> list[PatchWhitening]:
    """The :class:`PatchWhitening` layers inside ``model`` (nested models too)."""
    return [layer for layer in nested_layers(model) if isinstance(layer, PatchWhitening)]


def uses_whitening(recipe: Recipe) -> bool:
    """Whether the recipe sets a whitening field (which then needs a PatchWhitening layer)."""
    return any(getattr(recipe.train, f) != getattr(type(recipe.train)(), f) for f in WHITENING_FIELDS)


def check_whitening_model(recipe: Recipe, net: keras.Model) -> None:
    """Refuse the whitening fields for a model without exactly one PatchWhitening layer."""
    if uses_whitening(recipe) and len(whitening_layers(net)) != 1:
        raise RecipeError(f"train.whitening_*: model {recipe.model.name!r} has no PatchWhitening layer to "
                          "initialise: use a model that has one (airbench94, airbench96) or drop the "
                          "train.whitening_* fields.")


def whitening_images(recipe: Recipe, raw_train: tf.data.Dataset, normalization: keras.layers.Layer) -> np.ndarray:
    """The first ``train.whitening_images`` training images as the model sees them at evaluation
    (the recipe's resize/eval crop, then its normalisation), float32 NHWC."""
    d = recipe.data
    ds = zdata.make_pipeline(raw_train.take(recipe.train.whitening_images), batch_size=_CHUNK, training=False,
                             augment=tuple(d.eval_augment), image_size=d.image_size, cache=False)
    batches = [keras.ops.convert_to_numpy(normalization(x)) for x, _ in ds]
    return np.concatenate(batches).astype("float32")


def fit_whitening(recipe: Recipe, net: keras.Model, images: np.ndarray) -> dict[str, Any]:
    """Set ``net``'s whitening kernel from ``images`` (the patch covariance, accumulated in chunks)
    and return the facts the report keeps."""
    layer = whitening_layers(net)[0]
    size, channels = layer.kernel_size[0], int(layer.kernel.shape[2])
    covariance = sum(patch_covariance(images[i:i + _CHUNK], size) * len(images[i:i + _CHUNK])
                     for i in range(0, len(images), _CHUNK)) / len(images)
    kernel = whitening_kernel(covariance, size, channels, recipe.train.whitening_eps)
    if kernel.shape != tuple(layer.kernel.shape):
        raise RecipeError(f"train.whitening_images: {layer.name} has a {tuple(layer.kernel.shape)} kernel; "
                          f"whitening {size}x{size} patches of {channels} channels needs {kernel.shape}.")
    layer.kernel.assign(kernel)
    eigenvalues = np.linalg.eigvalsh(covariance)
    print(f"zoo.train: whitening layer {layer.name} initialised from {len(images)} training images "
          f"(eps {recipe.train.whitening_eps})", flush=True)
    return {"layer": layer.name, "images": int(len(images)), "eps": recipe.train.whitening_eps,
            "eigenvalue_max": float(eigenvalues.max()), "eigenvalue_min": float(eigenvalues.min())}


class WhiteningBiasFreeze(keras.callbacks.Callback):
    """Train the whitening layer's bias for the first ``epochs`` epochs only (airbench:
    ``requires_grad = epoch < whiten_bias_epochs``): at the start of each epoch the bias is made
    trainable or not and, when that changes, the train function is traced again (Keras' public
    ``make_train_function(force=True)``), so a frozen bias gets neither gradient, momentum nor
    decay. On a resume the epoch number alone decides, so the state is the uninterrupted run's."""

    def __init__(self, layer: PatchWhitening, epochs: int):
        super().__init__()
        self.layer, self.epochs = layer, int(epochs)
        self.frozen_at: int | None = None
        self.bias_at_freeze: list[float] | None = None

    def on_epoch_begin(self, epoch, logs=None):
        trainable = epoch < self.epochs
        if self.layer.bias.trainable != trainable:
            self.layer.bias.trainable = trainable
            self.model.make_train_function(force=True)
        if not trainable and self.frozen_at is None:
            self.frozen_at = epoch + 1
            self.bias_at_freeze = [float(v) for v in keras.ops.convert_to_numpy(self.layer.bias)]

    def on_train_end(self, logs=None):
        self.layer.bias.trainable = True  # the saved model is the published network: its bias a trainable weight

    def facts(self) -> dict[str, Any]:
        return {"trained_epochs": self.epochs, "frozen_from_epoch": self.frozen_at,
                "bias_at_freeze": self.bias_at_freeze}


@dataclass
class Features:
    """What the fit path adds for the recipe's features: ``callbacks`` (before the history and the
    run state), ``state`` (variables saved with the run state) and the report's ``facts``."""

    callbacks: list[Any] = field(default_factory=list)
    state: list[Any] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    lookahead: Lookahead | None = None
    freeze: WhiteningBiasFreeze | None = None

    def report(self, model: keras.Model) -> dict[str, Any]:
        """The facts, with what the live objects did (lookahead updates, the bias freeze, the scaled
        optimizer's variables)."""
        out = dict(self.facts)
        if self.lookahead is not None:
            out["lookahead"] = {**out.get("lookahead", {}), "updates": getattr(self.lookahead, "updates", None)}
        if self.freeze is not None:
            out["whitening_bias"] = self.freeze.facts()
        scales = lr_scales(model)
        if scales:
            out["bn_bias_lr_scale"] = {"scale": sorted(set(scales.values())), "variables": len(scales)}
        return out


def lr_scales(model: keras.Model) -> dict[str, float]:
    """``{variable path: gradient scale}`` of the model's (scaled) optimizer; empty when none."""
    opt = getattr(model, "optimizer", None)
    opt = getattr(opt, "inner_optimizer", opt)  # under a LossScaleOptimizer
    return dict(getattr(opt, "zoo_lr_scales", {}) or {})


class CountingLookahead(Lookahead):
    """:class:`Lookahead` that counts its averaging steps (this session's), for the report."""

    updates = 0

    def update(self, decay: float) -> None:
        super().update(decay)
        self.updates += 1


def prepare(recipe: Recipe, model: keras.Model, net: keras.Model, normalization: keras.layers.Layer,
            raw_train: tf.data.Dataset, steps_per_epoch: int, resumed: bool) -> Features:
    """Apply the recipe's initialisations to ``model`` (built and compiled, optimizer built; before
    the run state of a resumed run replaces its weights) and make the callbacks that need it."""
    out = Features()
    t = recipe.train
    check_whitening_model(recipe, net)
    if t.whitening_images and not resumed:  # a resumed run's kernel comes back with its state
        out.facts["whitening"] = fit_whitening(recipe, net, whitening_images(recipe, raw_train, normalization))
    if t.whitening_bias_epochs:
        out.freeze = WhiteningBiasFreeze(whitening_layers(net)[0], t.whitening_bias_epochs)
        out.callbacks.append(out.freeze)
    settings = lookahead_settings(recipe)
    if settings:
        total = t.epochs * steps_per_epoch
        out.lookahead = CountingLookahead(total, **settings)
        out.lookahead.build(model)  # the average starts at the initial weights; a resume restores it
        out.callbacks.append(out.lookahead)
        out.state.extend(out.lookahead.average)
        out.facts["lookahead"] = {**settings, "total_steps": total}
    return out


def tta_metrics(model: keras.Model, ds: tf.data.Dataset, level: str) -> dict[str, float]:
    """``{"accuracy_tta_<level>": ...}``: the accuracy of ``model`` on ``ds`` (integer or one-hot
    labels) with the logits averaged over :func:`zoo.training.tta.views` at ``level``."""
    number = tta_level(level)
    correct = total = 0
    for x, y in ds:
        logits = keras.ops.convert_to_numpy(tta_logits(lambda v: model(v, training=False), x, number))
        labels = keras.ops.convert_to_numpy(y)
        labels = labels.argmax(-1) if labels.ndim == 2 else labels
        correct += int((logits.argmax(-1) == labels).sum())
        total += len(labels)
    return {f"accuracy_tta_{level}": correct / max(total, 1)}


def with_tta(metrics: dict[str, float], model: keras.Model, recipe: Recipe, ds: tf.data.Dataset,
             level: str | None = None) -> dict[str, float]:
    """``metrics`` plus :func:`tta_metrics` at ``level`` (default ``data.eval_tta``; ``none``: unchanged)."""
    level = level or recipe.data.eval_tta
    return metrics if level == "none" else {**metrics, **tta_metrics(model, ds, level)}
