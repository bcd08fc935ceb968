"""keras.applications models → zoo models: ResNet50/101/152 (``layout="keras"``), VGG16/19.

keras.applications' ResNet names ``conv1_conv``, ``conv1_bn``, ``conv{s}_block{b}_{j}_conv`` / ``_bn``
(``j`` = 0 is the projection shortcut) and ``predictions`` map onto the zoo's ``stem_conv``,
``stem_bn``, ``stage{s}_block{b}_conv{j}_conv`` / ``_bn``, ``stage{s}_block1[_shortcut]_proj_*`` and
``fc``; the zoo model is built with ``layout="keras"`` (conv biases, stride on the first 1×1, BN
epsilon 1.001e-5). VGG16 / VGG19 share the zoo's layer names. The source is a Keras model (e.g.
``keras.applications.ResNet50(weights=None)``) or a weights file: a legacy ``.h5`` of
keras.applications (loaded by layer name) or a Keras 3 ``.weights.h5`` of the same application.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import h5py
import keras
import numpy as np
from keras import layers

from zoo.models import registry
from zoo.weights import modelfile
from zoo.weights.convert.common import Assigner, Conversion, ConversionError

PREPROCESSING = "caffe"
APPLICATIONS = {"resnet50": "ResNet50", "resnet101": "ResNet101", "resnet152": "ResNet152",
                "vgg16": "VGG16", "vgg19": "VGG19"}
RESNET_RX = re.compile(r"conv(\d)_block(\d+)_(\d)_(conv|bn)$")


def _has_top_h5(path: Path) -> bool:
    with h5py.File(path, "r") as f:
        if "layer_names" in f.attrs:  # legacy keras.applications file
            return any(n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]
                       if (n.decode() if isinstance(n, bytes) else n) == "predictions")
        return "layers/dense" in f


def source_model(model_name: str, src: Any, input_shape=None):
    """``src`` as a Keras model: a model is used as is; a path is loaded into the application."""
    if isinstance(src, keras.Model):
        return src
    path = Path(src).expanduser()
    if not path.exists():
        raise ConversionError(f"no Keras weights file at {path}.")
    if path.name.endswith(".keras"):
        modelfile.check_keras_archive(path)
        try:
            return keras.saving.load_model(path, safe_mode=True, compile=False)
        except (ValueError, OSError, TypeError) as err:
            raise modelfile.keras_load_error(err, path) from None
    modelfile.check_h5(path)
    app = getattr(keras.applications, APPLICATIONS[model_name])
    top = _has_top_h5(path)
    model = app(weights=None, include_top=top, input_shape=None if top else input_shape, classifier_activation=None)
    try:
        model.load_weights(path)
    except Exception as err:  # noqa: BLE001
        raise ConversionError(f"{path} does not load into keras.applications.{APPLICATIONS[model_name]}: "
                              f"{err}") from None
    return model


def _target_name(model_name: str, layer: str, has) -> str | None:
    if model_name.startswith("vgg"):
        return layer
    if layer == "conv1_conv":
        return "stem_conv"
    if layer == "conv1_bn":
        return "stem_bn"
    if layer == "predictions":
        return "fc"
    m = RESNET_RX.match(layer)
    if not m:
        return None
    stage, block, j, kind = m.groups()
    prefix = f"stage{stage}_block{block}"
    if j == "0":
        proj = next((p for p in (f"{prefix}_shortcut_proj", f"{prefix}_proj") if has(f"{p}_{kind}")),
                    f"{prefix}_shortcut_proj")
        return f"{proj}_{kind}"
    return f"{prefix}_conv{j}_{kind}"


def convert(model_name: str, src: Any, **options: Any) -> Conversion:
    """The zoo model ``model_name`` with the weights of a keras.applications model or weights file."""
    name = registry.get_entry(model_name).name
    if name not in APPLICATIONS:
        raise ConversionError(f"keras.applications conversion covers {', '.join(APPLICATIONS)}, not {model_name}.")
    source = source_model(name, src, options.get("input_shape"))
    names = {x.name for x in source.layers}
    top = "predictions" in names
    built = {"include_top": top, "input_shape": tuple(source.input.shape[1:]), **options}
    if name.startswith("resnet"):
        built.setdefault("layout", "keras")
    if top and built.get("include_top", True):
        built.setdefault("num_classes", int(source.get_layer("predictions").units))
    if None in built["input_shape"]:
        built.pop("input_shape")
    model = registry.build(name, **built)
    target_names = {x.name for x in model.layers}
    arrays = {f"{x.name}/{v.name}": np.asarray(v.numpy()) for x in source.layers for v in x.weights}
    a = Assigner(model, arrays, what=f"keras.applications.{APPLICATIONS[name]}")
    for layer in source.layers:
        if not layer.weights:
            continue
        target = _target_name(name, layer.name, target_names.__contains__)
        if target is None or target not in target_names:
            if not model_has_head(model) and layer.name in ("predictions", "fc1", "fc2"):
                a.drop([f"{layer.name}/{v.name}" for v in layer.weights], "the target has no classifier")
            continue  # reported as unused by finish()
        dst = model.get_layer(target)
        if not (isinstance(dst, type(layer)) or isinstance(layer, type(dst))):  # subclasses share weights
            raise ConversionError(f"{layer.name} ({type(layer).__name__}) maps onto {target} ({type(dst).__name__}).")
        if isinstance(layer, layers.BatchNormalization) and abs(layer.epsilon - dst.epsilon) > 1e-12:
            raise ConversionError(f"{layer.name} has BN epsilon {layer.epsilon}, {target} {dst.epsilon}: build the "
                                  f"target with layout='keras'.")
        for var in layer.weights:
            key = f"{layer.name}/{var.name}"
            a.put(f"{target}/{var.name}", a.take(key), key)
    return Conversion(model, "keras", dict(built), **a.finish())


def model_has_head(model) -> bool:
    names = {x.name for x in model.layers}
    return bool(names & {"fc", "predictions"})
