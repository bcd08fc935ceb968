"""Name → builder registry, in the spirit of timm's ``register_model``.

A *family* (one file in :mod:`zoo.models`) supplies two functions:

- ``sites(config, **family_options) -> list[Site]``: its downsampling sites in forward order;
- ``trunk(inputs, config, plan, **family_options) -> Trunk``: the network up to the classifier,
  its stage features and its classifier head.

Each *variant* registers a name, a config (data, not code) and its published facts. :func:`build`
validates every option (name and type) before touching Keras, resolves the downsampling plan,
checks the input size against the total stride and assembles the ``keras.Model``.
"""
from __future__ import annotations

import fnmatch
import inspect
import re
import sys
import types
from contextlib import contextmanager
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Sequence

import keras
import yaml
from keras import layers

from zoo.errors import ZooError, unknown
from zoo.layers.downsample import Site, SitePlan, sites_table


@dataclass
class Feature:
    """One stage output: its name, tensor and reduction relative to the input."""

    name: str
    tensor: Any
    reduction: int


@dataclass
class Trunk:
    """What a family's trunk function returns."""

    features: list[Feature]
    head: Callable[..., Any]  # head(x, num_classes, dropout) -> logits
    default_dropout: float = 0.0


@dataclass(frozen=True)
class Family:
    """An architecture family: its sites, trunk and input rules."""

    name: str
    sites: Callable[..., list[Site]]
    trunk: Callable[..., Trunk]
    paper: str
    min_final_size: int = 1  # smallest feature map the trunk's last stage accepts
    divisible: bool = False  # the input must be a multiple of the total stride (skip concatenations)


@dataclass(frozen=True)
class ModelEntry:
    """A registered variant: name, family, config and published facts (params, FLOPs, accuracy)."""

    name: str
    family: Family
    config: Any
    input_shape: tuple[int, int, int]
    num_classes: int = 1000
    published: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)  # family options this variant presets


@dataclass
class CommonOptions:
    """Options every builder takes, as in ``keras.applications``.

    ``classifier_activation`` defaults to ``None``: the model returns logits (use
    ``"softmax"`` for probabilities). ``dropout`` of ``None`` keeps the paper's dropout.
    ``features_only`` returns the stage feature maps (``out_indices`` picks stages) instead of a
    classifier, as timm does; ``output_stride`` trades later downsampling for dilation.
    """

    num_classes: int = 1000
    input_shape: tuple | None = None
    include_top: bool = True
    pooling: Literal["avg", "max"] | None = None
    classifier_activation: str | None = None
    dropout: float | None = None
    downsample: str | Mapping | None = None
    output_stride: int | None = None
    features_only: bool = False
    out_indices: Sequence[int] | None = None
    name: str | None = None


_MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, family: Family, config: Any, *, input_shape: tuple[int, int, int],
                   num_classes: int = 1000, published: Mapping[str, Any] | None = None, description: str = "",
                   defaults: Mapping[str, Any] | None = None) -> ModelEntry:
    """Register a variant under a lower-case ``name``."""
    if name in _MODELS:
        raise KeyError(f"model {name!r} is registered twice")
    entry = ModelEntry(name, family, config, tuple(input_shape), num_classes, dict(published or {}),
                       description, dict(defaults or {}))
    _MODELS[name] = entry
    return entry


def list_models(pattern: str | None = None, family: str | None = None) -> list[str]:
    """Registered names, sorted, optionally filtered by a glob ``pattern`` and ``family``."""
    names = [n for n, e in _MODELS.items() if family is None or e.family.name == family]
    if pattern:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern if any(c in pattern for c in "*?[") else f"*{pattern}*")]
    return sorted(names, key=_natural_key)


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def get_entry(name: str) -> ModelEntry:
    """The registry entry of ``name``; unknown names suggest close ones."""
    if not isinstance(name, str):
        raise ZooError(f"a model name must be a string, got {type(name).__name__}; see zoo.list_models().")
    key = name.strip().lower()
    if key not in _MODELS:
        raise unknown("model", name, _MODELS, hint="List them with `zoo list` or zoo.list_models().")
    return _MODELS[key]


# ---------------------------------------------------------------- option validation
def _type_name(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "").replace("collections.abc.", "")
    return getattr(annotation, "__name__", text) if not typing.get_args(annotation) else text


def _matches(value: Any, annotation: Any) -> bool:
    if annotation is Any or annotation is inspect.Parameter.empty:
        return True
    if annotation is None or annotation is type(None):
        return value is None
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is Literal:
        return value in args
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (tuple, Sequence, list) or annotation in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False
        inner = [a for a in args if a is not Ellipsis]
        if len(inner) > 1:  # fixed-length tuple[a, b, c]
            return len(value) == len(inner) and all(_matches(v, a) for v, a in zip(value, inner))
        return all(_matches(v, inner[0]) for v in value) if inner else True
    if origin in (Mapping, dict) or annotation in (Mapping, dict):
        return isinstance(value, Mapping)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def _family_parameters(family: Family) -> dict[str, inspect.Parameter]:
    params = inspect.signature(family.trunk).parameters
    return {n: p for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY and n != "dropout"}


def _validate(entry: ModelEntry, options: Mapping[str, Any]) -> tuple[CommonOptions, dict[str, Any]]:
    common_hints = typing.get_type_hints(CommonOptions)
    family_params = _family_parameters(entry.family)
    family_hints = typing.get_type_hints(entry.family.trunk)
    allowed = set(common_hints) | set(family_params)
    common, family = {"num_classes": entry.num_classes}, dict(entry.defaults)
    for key, value in options.items():
        if key not in allowed:
            raise unknown(f"option for {entry.name}", key, allowed)
        hint = common_hints.get(key, family_hints.get(key, Any))
        if not _matches(value, hint):
            raise ZooError(
                f"option {key}={value!r} for {entry.name} has the wrong type ({type(value).__name__}); "
                f"expected {_type_name(hint)}."
            )
        (common if key in common_hints else family)[key] = value
    opts = CommonOptions(**common)
    if opts.num_classes < 1:
        raise ZooError(f"num_classes must be at least 1, got {opts.num_classes}.")
    if opts.dropout is not None and not 0.0 <= opts.dropout < 1.0:
        raise ZooError(f"dropout must be in [0, 1), got {opts.dropout}.")
    return opts, family


def _input_shape(entry: ModelEntry, opts: CommonOptions) -> tuple:
    shape = tuple(opts.input_shape) if opts.input_shape is not None else entry.input_shape
    if len(shape) != 3:
        raise ZooError(f"input_shape must be (height, width, channels), got {shape}.")
    return shape


def _check_input_size(entry: ModelEntry, shape: tuple, plan: SitePlan) -> None:
    stride, fam = plan.total_stride, entry.family
    need = stride * fam.min_final_size
    for size in shape[:2]:
        if size is None:
            continue
        remedy = ("remove downsampling (downsample={'<site>': 'none'}, output_stride"
                  + (", stem='cifar'" if "stem" in _family_parameters(fam) else "") + ")")
        if size < need:
            rule = f"a multiple of {stride}, at least {need}" if fam.divisible else f"at least {need}"
            raise ZooError(
                f"input {shape[0]}x{shape[1]} is too small for {entry.name}: its downsampling sites reduce by "
                f"{stride}, so each side must be {rule} (default {entry.input_shape[0]}x{entry.input_shape[1]}). "
                f"Use a larger input_shape, or {remedy}."
            )
        if fam.divisible and size % stride:
            lower, upper = max(need, size - size % stride), size - size % stride + stride
            raise ZooError(
                f"input {shape[0]}x{shape[1]} does not fit {entry.name}: it concatenates feature maps of different "
                f"resolutions, so each side must be a multiple of its total stride {stride} (e.g. {lower} or "
                f"{upper} instead of {size}). Resize or crop the input, or {remedy}."
            )


def sites(name: str, **options: Any) -> list[Site]:
    """The downsampling sites of ``name`` (with the given family options), in forward order."""
    entry = get_entry(name)
    _, family = _validate(entry, options)
    return entry.family.sites(entry.config, **family)


def resolve_plan(name: str, **options: Any) -> SitePlan:
    """The downsampling plan ``build(name, **options)`` would use (validates the options)."""
    entry = get_entry(name)
    opts, family = _validate(entry, options)
    return SitePlan.create(entry.family.sites(entry.config, **family), opts.downsample, opts.output_stride, entry.name)


@contextmanager
def _deep_graph_recursion(limit: int = 5000):
    """Keras walks a functional graph recursively; ResNet-1202's ~4,000 nodes exceed Python's default
    limit of 1,000 frames. Raise it while a model is assembled, then restore it."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def build(name: str, **options: Any) -> keras.Model:
    """Build registered model ``name``; see :class:`CommonOptions` and the family's options.

    >>> model = build("all_cnn_c", num_classes=10)
    >>> model = build("resnet50", downsample={"stage*": "blur"}, output_stride=16)
    """
    entry = get_entry(name)
    opts, family_opts = _validate(entry, options)
    plan = SitePlan.create(entry.family.sites(entry.config, **family_opts), opts.downsample, opts.output_stride, entry.name)
    shape = _input_shape(entry, opts)
    _check_input_size(entry, shape, plan)
    inputs = keras.Input(shape=shape, name="image")
    if "dropout" in inspect.signature(entry.family.trunk).parameters:  # dropout inside the trunk (All-CNN)
        family_opts["dropout"] = opts.dropout
    with _deep_graph_recursion():
        trunk = entry.family.trunk(inputs, entry.config, plan, **family_opts)
        model = _assemble(entry, opts, inputs, trunk)
    model.zoo_sites = sites_table(plan.sites, plan.taken)
    return model


def _assemble(entry: ModelEntry, opts: CommonOptions, inputs, trunk: Trunk) -> keras.Model:
    name = opts.name or entry.name
    if opts.features_only:
        feats = trunk.features
        idx = range(len(feats)) if opts.out_indices is None else opts.out_indices
        try:
            outputs = [feats[i].tensor for i in idx]
        except IndexError:
            raise ZooError(f"out_indices {tuple(idx)} out of range: {entry.name} has {len(feats)} stages "
                           f"({', '.join(f.name for f in feats)}).") from None
        model = keras.Model(inputs, outputs, name=name)
        model.feature_info = [{"name": feats[i].name, "reduction": feats[i].reduction,
                               "channels": int(feats[i].tensor.shape[-1])} for i in idx]
        return model
    x = trunk.features[-1].tensor
    if opts.include_top:
        dropout = trunk.default_dropout if opts.dropout is None else opts.dropout
        x = trunk.head(x, opts.num_classes, dropout)
        if opts.classifier_activation:
            last = getattr(getattr(x, "_keras_history", None), "operation", None)  # a head may own the name
            act_name = "predictions_activation" if getattr(last, "name", None) == "predictions" else "predictions"
            x = layers.Activation(opts.classifier_activation, name=act_name)(x)
    elif opts.pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif opts.pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    return keras.Model(inputs, x, name=name)


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``["num_classes=10", "downsample={stage*: max}"]`` → dict, values parsed as YAML."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ZooError(f"option {pair!r} must look like key=value (values are YAML: 10, max, '{{stage3: avg}}').")
        options[key.strip()] = yaml.safe_load(value)
    for key in ("input_shape", "out_indices"):
        if isinstance(options.get(key), list):
            options[key] = tuple(options[key])
    return options
