"""The model a recipe trains: built from the registry behind its normalisation, warm-started,
distilled, and compiled with the recipe's optimizer, schedule, weight decay, loss and metrics."""
from __future__ import annotations

import warnings

from pathlib import Path
from typing import Any

import keras

from zoo.models import registry
from zoo.training import distill
from zoo.training.param_groups import batch_norm_biases, scaled_optimizer
from zoo.training.recipe import Recipe, RecipeError
from zoo.training.schedule import make_schedule
from zoo.weights import modelfile


def input_shape(recipe: Recipe, info: Any) -> tuple[int, int, int]:
    """The model's input shape: ``model.input_shape``, else ``data.image_size`` or the data's."""
    if "input_shape" in recipe.model.options:
        return tuple(recipe.model.options["input_shape"])
    size = recipe.data.image_size
    return (size, size, info.image_shape[-1]) if size else tuple(info.image_shape)


def build_model(recipe: Recipe, info: Any, normalization: keras.layers.Layer) -> tuple[keras.Model, keras.Model]:
    """``(inference, net)``: ``net`` is the zoo model (logits unless ``classifier_activation``);
    ``inference`` wraps it as raw 0..255 RGB -> ``normalization`` -> ``net``."""
    shape = input_shape(recipe, info)
    options = {"num_classes": info.num_classes, **recipe.model.options, "input_shape": shape}
    net = registry.build(recipe.model.name, **options)
    inputs = keras.Input(shape=shape, name="rgb")
    outputs = net(normalization(inputs))
    return keras.Model(inputs, outputs, name=f"{net.name}_inference"), net


def init_weights_path(init_weights: str | Path) -> Path:
    """The weights file that ``train.init_weights`` names: a run directory's ``model.weights.h5``
    (else its ``model.keras``, as results/runs keeps), a ``.weights.h5`` or a ``.keras`` file (Keras
    reads the weights alone from it). Raises :class:`RecipeError` naming what is missing."""
    path = Path(init_weights)
    if path.is_dir():
        path = next((path / f for f in ("model.weights.h5", "model.keras") if (path / f).is_file()),
                    path / "model.weights.h5")
    if not path.is_file() or not path.name.endswith((".weights.h5", ".keras")):
        raise RecipeError(f"train.init_weights: no weights at {path}: give a finished run directory "
                          "(with model.weights.h5 or model.keras), a .weights.h5 or a .keras file of the "
                          "same recipe's model.")
    return modelfile.check_model_file(path, "train.init_weights")  # a truncated file is refused here too


def load_init_weights(model: keras.Model, init_weights: str | Path | None) -> str | None:
    """Warm-start ``model`` (the inference model: normalisation + net) from ``init_weights``.
    The normalisation statistics are weights too, so they come from the file. Called before
    ``fit``: on a resume, the run's own state then replaces them. Returns the file loaded."""
    if init_weights is None:
        return None
    path = init_weights_path(init_weights)
    try:
        with warnings.catch_warnings():  # Keras warns per layer it skips; a mismatch is reported below, once
            warnings.simplefilter("ignore", UserWarning)
            model.load_weights(path)
    except (ValueError, OSError) as e:
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__  # Keras appends whole tensors
        raise RecipeError(f"train.init_weights: {path} does not fit {model.name} ({first}). Warm starts need "
                          "the same model, options and normalisation as the run that saved it.") from e
    print(f"zoo.train: weights initialised from {path}", flush=True)
    return str(path)


def with_teachers(model: keras.Model, recipe: Recipe, info: Any) -> keras.Model:
    """``model`` distilled from ``train.teachers`` (:mod:`zoo.training.distill`), or ``model`` itself."""
    t = recipe.train
    if not t.teachers:
        return model
    teachers = distill.load_teachers(t.teachers, info.num_classes, input_shape(recipe, info))
    print(f"zoo.train: distilling from {', '.join(t.teachers)} (weight {t.distill_weight}, "
          f"temperature {t.distill_temperature}{', with mirrored views' if t.distill_flip else ''})", flush=True)
    return distill.distilling(model, teachers, t.distill_weight, t.distill_temperature, t.distill_flip)


def from_logits(recipe: Recipe) -> bool:
    """Whether the recipe's model outputs logits (no ``classifier_activation``)."""
    return registry.outputs_logits(recipe.model.options)


def loss_and_metrics(recipe: Recipe, num_classes: int, one_hot: bool, *, smoothing: bool = True) -> tuple[Any, list]:
    """The recipe's cross-entropy (label smoothing with one-hot labels unless ``smoothing=False``)
    and accuracy metrics (top-5 too above 10 classes)."""
    logits = from_logits(recipe)
    if one_hot:
        eps = recipe.train.label_smoothing if smoothing else 0.0
        loss = keras.losses.CategoricalCrossentropy(from_logits=logits, label_smoothing=eps)
        metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
        if num_classes > 10:
            metrics.append(keras.metrics.TopKCategoricalAccuracy(5, name="top5"))
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=logits)
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        if num_classes > 10:
            metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5"))
    return loss, metrics


def decayed_variables(model: keras.Model, biases: bool = False) -> list[Any]:
    """The variables weight decay applies to: tensors of rank >= 2 (kernels), or with ``biases``
    (``optimizer.decay_biases``) every trainable variable."""
    return [v for v in model.trainable_variables if biases or len(v.shape) >= 2]


OPTIMIZERS = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW}


def optimizer_class(recipe: Recipe, model: keras.Model) -> tuple[type, list[Any]]:
    """``(Keras optimizer class, lr-scaled variables)``: with ``optimizer.bn_bias_lr_scale`` != 1, the
    class of :func:`zoo.training.param_groups.scaled_optimizer` that scales the BatchNorm biases'
    gradients (their coupled L2 decay, when they are decayed, added unscaled there)."""
    o = recipe.optimizer
    cls = OPTIMIZERS[o.name]
    if o.bn_bias_lr_scale == 1:
        return cls, []
    biases = batch_norm_biases(model)
    l2 = o.weight_decay if o.decay_mode == "l2" and o.decay_biases else 0.0
    return scaled_optimizer(cls, {v.path: o.bn_bias_lr_scale for v in biases},
                            {v.path: l2 for v in biases}), biases


def make_optimizer(recipe: Recipe, model: keras.Model, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The recipe's optimizer with its schedule; applies weight decay as the recipe says (L2
    penalties on the kernels, or the optimizer's decoupled decay); see :mod:`zoo.training.recipe`."""
    o = recipe.optimizer
    decoupled = o.weight_decay if o.decay_mode == "decoupled" and o.weight_decay > 0 else None
    common = {"learning_rate": make_schedule(recipe, steps_per_epoch), "weight_decay": decoupled,
              "clipnorm": o.clipnorm}
    cls, scaled = optimizer_class(recipe, model)
    if scaled:  # the scaled subclass keeps the Keras optimizer's own name (reports name the optimizer)
        common["name"] = o.name
    if o.name == "sgd":
        opt = cls(momentum=o.momentum, nesterov=o.nesterov, **common)
    else:
        common["weight_decay"] = decoupled or (0.0 if o.name == "adamw" else None)
        opt = cls(beta_1=o.beta_1, beta_2=o.beta_2, epsilon=o.epsilon, **common)
    opt.zoo_lr_scales = {v.path: o.bn_bias_lr_scale for v in scaled}  # what the report says took effect
    decayed = decayed_variables(model, o.decay_biases)
    if decoupled:
        ids = {id(v) for v in decayed}
        opt.exclude_from_weight_decay(var_list=[v for v in model.trainable_variables if id(v) not in ids])
    elif o.weight_decay > 0:
        unscaled = {id(v) for v in scaled}  # their decay is added by the scaled optimizer, not scaled with them
        for v in decayed:
            if id(v) not in unscaled:
                v.regularizer = keras.regularizers.L2(o.weight_decay / 2)  # gradient += weight_decay * w
    return opt


def strip_l2(model: keras.Model) -> None:
    """Drop the L2 penalties (the saved inference model carries none)."""
    for v in model.trainable_variables:
        v.regularizer = None


def compile_model(model: keras.Model, recipe: Recipe, num_classes: int, steps_per_epoch: int) -> None:
    """Compile ``model`` with the recipe's optimizer, schedule, weight decay, loss and metrics."""
    loss, metrics = loss_and_metrics(recipe, num_classes, recipe.train.label_smoothing > 0)
    model.compile(optimizer=make_optimizer(recipe, model, steps_per_epoch), loss=loss, metrics=metrics,
                  jit_compile=recipe.train.jit_compile, steps_per_execution=recipe.train.steps_per_execution)
