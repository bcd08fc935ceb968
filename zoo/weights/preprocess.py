"""Input preprocessing of published weights, as a Keras layer so that loaded models take raw RGB.

Every published weights file is the weights of an *inference model*: raw 0..255 RGB images →
a preprocessing layer → the zoo model, the structure :mod:`zoo.training.fit` saves. A manifest entry
stores that layer as a Keras serialization (``preprocessing["layer"]``), rebuilt here in safe
mode (no lambdas, only Keras layers and layers registered by zoo modules).

Converted weights use :class:`Preprocess` with the source's convention:

- ``torch``: torchvision's ImageNet mean/std (0..1 statistics × 255), RGB;
- ``caffe``: keras.applications' ResNet50/VGG convention: RGB → BGR, minus the BGR ImageNet mean.
"""
from __future__ import annotations

import importlib
from typing import Any, Mapping, Sequence

import keras
from keras import ops

from zoo.errors import did_you_mean
from zoo.weights.errors import WeightsError

IMAGENET_MEAN = tuple(255.0 * m for m in (0.485, 0.456, 0.406))
IMAGENET_STD = tuple(255.0 * s for s in (0.229, 0.224, 0.225))
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="zoo")
class Preprocess(keras.layers.Layer):
    """``(x[..., order] - mean) / std`` with constant per-channel statistics (no weights).

    ``channel_order="bgr"`` reverses the channels first (caffe-style models); ``mean`` and ``std``
    are in the channel order the model sees, on the 0..255 scale.
    """

    def __init__(self, mean: Sequence[float] = (0.0, 0.0, 0.0), std: Sequence[float] = (1.0, 1.0, 1.0),
                 channel_order: str = "rgb", **kwargs):
        super().__init__(**kwargs)
        if channel_order not in ("rgb", "bgr"):
            raise WeightsError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}.")
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]
        self.channel_order = channel_order

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.channel_order == "bgr":
            x = ops.flip(x, axis=-1)
        mean = ops.convert_to_tensor(self.mean, dtype=self.compute_dtype)
        std = ops.convert_to_tensor(self.std, dtype=self.compute_dtype)
        return (x - mean) / std

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mean": self.mean, "std": self.std, "channel_order": self.channel_order}


def torch_imagenet(name: str = "preprocess") -> Preprocess:
    """torchvision's ImageNet normalisation (``transforms.Normalize``) on 0..255 RGB."""
    return Preprocess(IMAGENET_MEAN, IMAGENET_STD, "rgb", name=name)


def caffe_imagenet(name: str = "preprocess") -> Preprocess:
    """keras.applications' ``preprocess_input`` for ResNet50 / VGG ("caffe" mode) on 0..255 RGB."""
    return Preprocess(CAFFE_MEAN_BGR, (1.0, 1.0, 1.0), "bgr", name=name)


PRESETS = {"torch": torch_imagenet, "caffe": caffe_imagenet}
DESCRIPTIONS = {
    "torch": "RGB 0..255 -> (x - 255*[0.485, 0.456, 0.406]) / (255*[0.229, 0.224, 0.225]) (torchvision ImageNet)",
    "caffe": "RGB 0..255 -> BGR, minus [103.939, 116.779, 123.68] (keras.applications caffe mode)",
}


def serialize(layer: keras.layers.Layer) -> dict[str, Any]:
    """A JSON-ready Keras serialization of a preprocessing layer (without its build config)."""
    spec = keras.saving.serialize_keras_object(layer)
    spec.pop("build_config", None)
    return _jsonable(spec)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def spec_for(kind: str, layer: keras.layers.Layer | None = None, description: str | None = None) -> dict[str, Any]:
    """A manifest ``preprocessing`` record: its ``kind``, a description and the serialized layer."""
    if layer is None:
        if kind not in PRESETS:
            raise WeightsError(f"unknown preprocessing preset {kind!r}.{did_you_mean(kind, PRESETS)} Presets: "
                               f"{', '.join(PRESETS)} (or pass a layer).")
        layer = PRESETS[kind]()
    return {"kind": kind, "input": "RGB, 0..255, channels last",
            "description": description or DESCRIPTIONS.get(kind, kind), "layer": serialize(layer)}


def layer_from_spec(spec: Mapping[str, Any] | keras.layers.Layer | str) -> keras.layers.Layer:
    """The preprocessing layer of a manifest record (or a preset name, or a layer as is).

    Deserialized in Keras safe mode. A layer class registered by a zoo module (``module`` starting
    with ``zoo.``, e.g. ``zoo.data.normalize.ZCAWhitening``) is imported first so that Keras knows it;
    nothing outside the zoo is imported.
    """
    if isinstance(spec, keras.layers.Layer):
        return spec
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise WeightsError(f"unknown preprocessing preset {spec!r}.{did_you_mean(spec, PRESETS)} Presets: "
                               f"{', '.join(PRESETS)}.")
        return PRESETS[spec]()
    layer_spec = spec.get("layer", spec)
    if not isinstance(layer_spec, Mapping) or "class_name" not in layer_spec:
        raise WeightsError(f"preprocessing record {dict(spec)!r} has no Keras layer serialization ('layer').")
    module = str(layer_spec.get("module") or "")
    if module.startswith("zoo."):
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise WeightsError(f"the preprocessing layer {layer_spec['class_name']} needs module {module} "
                               f"({err}).") from None
    try:
        return keras.saving.deserialize_keras_object(dict(layer_spec), safe_mode=True)
    except Exception as err:  # noqa: BLE001 - any deserialization failure is a bad record
        raise WeightsError(f"cannot rebuild the preprocessing layer {layer_spec.get('class_name')!r}: {err}") from None
