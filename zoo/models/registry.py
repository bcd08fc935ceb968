"""Name → builder registry, in the spirit of timm's ``register_model``, and :func:`build`, the zoo's one builder.

A *family* (one file in :mod:`zoo.models`) supplies two functions:

- ``sites(config, **family_options) -> list[Site]``: its downsampling sites in forward order;
- ``trunk(inputs, config, plan, **family_options) -> Trunk``: the network up to the classifier,
  its stage features and its classifier head.

Each *variant* registers a name, a config (data, not code) and its published facts.
:func:`build_network` validates every option (name and type) before touching Keras, resolves the
downsampling plan, checks the input size against the total stride and assembles the ``keras.Model``.

The build contract (:func:`build`, which ``zoo.build`` is)::

    build(name, weights=None | TAG | PATH, include_preprocessing=False, **options)

returns the same kind of model whatever ``weights`` is:

- ``include_preprocessing=False`` (the default): the network alone, as the paper draws it; it takes
  *normalised* input (what the weights were trained on, or for random weights whatever you train it on).
- ``include_preprocessing=True``: ``raw 0..255 RGB -> normalisation -> network`` (an input named
  ``rgb``, a normalisation layer, the network as a nested model: ``model.layers[-1]``). With weights,
  the normalisation is the weights' own (fitted statistics included). Without weights it is the
  variant's default, :data:`DEFAULT_NORMALIZATION`: the CIFAR-10 training set's per-channel
  mean/std for the 32x32 variants, torchvision's ImageNet mean/std for the others. Weights that name
  no normalisation (a plain network's ``.weights.h5``) are refused with ``True``.

The registry adds no attributes to the models it returns (they would not survive a ``.keras``
round trip): the sites and their choices are :func:`site_table`, the stage features of
``features_only`` are :func:`feature_info`.

Weights: this package sits below the weights package (weights -> models, never back), so loading
is a hook. The weights loader registers itself with :func:`register_weights_loader` when its
module (``zoo.weights.loading``) is imported; ``zoo.build`` (the lazy attribute of :mod:`zoo`)
imports it first. :func:`build` with ``weights`` and no loader registered raises a one-line
:class:`~zoo.errors.ZooError` naming the module to import. A loader is
``loader(name, weights, **options) -> (network, normalisation layer or None)``: the network with the
weights in it, and the layer that normalises raw RGB for it.
"""
from __future__ import annotations

import fnmatch
import inspect
import os
import re
import sys
import typing
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import keras
import yaml
from keras import layers

from zoo.errors import ZooError, unknown
from zoo.layers.downsample import Site, SitePlan, sites_table
from zoo.models.options import CommonOptions, matches, type_name


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
        if not matches(value, hint):
            raise ZooError(
                f"option {key}={value!r} for {entry.name} has the wrong type ({type(value).__name__}); "
                f"expected {type_name(hint)}."
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


def _trunk(name: str, options: Mapping[str, Any]) -> tuple[ModelEntry, CommonOptions, Any, Trunk]:
    """Validate ``options`` and run the family's trunk on a symbolic input: (entry, options, input, trunk)."""
    entry = get_entry(name)
    opts, family_opts = _validate(entry, options)
    plan = SitePlan.create(entry.family.sites(entry.config, **family_opts), opts.downsample, opts.output_stride, entry.name)
    shape = _input_shape(entry, opts)
    _check_input_size(entry, shape, plan)
    inputs = keras.Input(shape=shape, name="image")
    if "dropout" in inspect.signature(entry.family.trunk).parameters:  # dropout inside the trunk (All-CNN)
        family_opts["dropout"] = opts.dropout
    return entry, opts, inputs, entry.family.trunk(inputs, entry.config, plan, **family_opts)


def build_network(name: str, **options: Any) -> keras.Model:
    """The network ``name`` with random weights, taking normalised input; see :class:`CommonOptions`
    and the family's options. ``build(name, **options)`` without weights is this.

    >>> model = build_network("all_cnn_c", num_classes=10)
    >>> model = build_network("resnet50", downsample={"stage*": "blur"}, output_stride=16)
    """
    with _deep_graph_recursion():
        entry, opts, inputs, trunk = _trunk(name, options)
        return _assemble(entry, opts, inputs, trunk)


def _feature_indices(entry: ModelEntry, opts: CommonOptions, feats: Sequence[Feature]) -> list[int]:
    idx = list(range(len(feats)) if opts.out_indices is None else opts.out_indices)
    if any(not -len(feats) <= i < len(feats) for i in idx):
        raise ZooError(f"out_indices {tuple(idx)} out of range: {entry.name} has {len(feats)} stages "
                       f"({', '.join(f.name for f in feats)}).")
    return idx


def _assemble(entry: ModelEntry, opts: CommonOptions, inputs, trunk: Trunk) -> keras.Model:
    name = opts.name or entry.name
    if opts.features_only:
        feats = trunk.features
        return keras.Model(inputs, [feats[i].tensor for i in _feature_indices(entry, opts, feats)], name=name)
    x = trunk.features[-1].tensor
    if opts.include_top:
        dropout = trunk.default_dropout if opts.dropout is None else opts.dropout
        x = trunk.head(x, opts.num_classes, dropout)
        if opts.classifier_activation:  # a head may own the name "predictions" already
            taken = {layer.name for layer in keras.Model(inputs, x).layers}
            act_name = "predictions_activation" if "predictions" in taken else "predictions"
            x = layers.Activation(opts.classifier_activation, name=act_name)(x)
    elif opts.pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif opts.pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    return keras.Model(inputs, x, name=name)


def site_table(name: str, **options: Any) -> list[dict[str, str]]:
    """The downsampling sites of ``build(name, **options)``: site, role, published default, the choice
    these options make, and where it is (for reports and ``zoo info``)."""
    plan = resolve_plan(name, **options)
    for site in sorted(plan.sites, key=lambda s: not s.cumulative):  # as the trunk takes them: a shortcut
        plan.take(site.name)  # follows its main site; output_stride counts the main sites in forward order
    return sites_table(plan.sites, plan.taken)


def feature_info(name: str, **options: Any) -> list[dict[str, Any]]:
    """What each output of ``build(name, features_only=True, **options)`` is, as timm's ``feature_info``:
    the stage's name, its reduction relative to the input and its channels (builds the trunk once)."""
    with _deep_graph_recursion():
        entry, opts, _, trunk = _trunk(name, {**options, "features_only": True})
    feats = trunk.features
    return [{"name": feats[i].name, "reduction": feats[i].reduction, "channels": int(feats[i].tensor.shape[-1])}
            for i in _feature_indices(entry, opts, feats)]


# ------------------------------------------------------------------- the build contract
# the dataset whose statistics normalise a randomly initialised variant's raw RGB (0..1 scale, RGB order):
# CIFAR-10's training-set per-channel mean/std, torchvision's ImageNet mean/std (transforms.Normalize)
DEFAULT_NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
_WEIGHTS_LOADER: dict[str, Callable[..., tuple[keras.Model, Any]]] = {}
_LOADER_MODULE = "zoo.weights.loading"


def register_weights_loader(loader: Callable[..., tuple[keras.Model, Any]]) -> None:
    """Install the function behind ``build(name, weights=...)`` (see the module docstring); the
    weights package calls this once, when its loading module is imported."""
    _WEIGHTS_LOADER["loader"] = loader


def default_normalization(name: str) -> str:
    """The key of :data:`DEFAULT_NORMALIZATION` for variant ``name``: ``cifar10`` for the variants
    registered at 32x32, ``imagenet`` for the others."""
    return "cifar10" if get_entry(name).input_shape[:2] == (32, 32) else "imagenet"


def default_preprocessing(name: str, channels: int = 3) -> keras.layers.Layer:
    """The normalisation ``build(name, include_preprocessing=True)`` puts in front of a random network:
    a ``keras.layers.Normalization`` with the fixed statistics of :func:`default_normalization`."""
    if channels != 3:
        raise ZooError(f"include_preprocessing=True without weights normalises RGB images, but this {name} takes "
                       f"{channels} channels: pass include_preprocessing=False and normalise the input yourself.")
    mean, std = DEFAULT_NORMALIZATION[default_normalization(name)]
    return layers.Normalization(axis=-1, mean=[255.0 * m for m in mean], variance=[(255.0 * s) ** 2 for s in std],
                                name="preprocess")


def with_preprocessing(net: keras.Model, layer: keras.layers.Layer | None,
                       source: str = "these weights") -> keras.Model:
    """``raw 0..255 RGB -> layer -> net`` as one model (the ``include_preprocessing=True`` form)."""
    if layer is None:
        raise ZooError(f"{source} hold the network alone and name no normalisation, so include_preprocessing=True "
                       f"cannot say what raw RGB becomes: pass include_preprocessing=False and normalise the input "
                       f"yourself, or give the weights' preprocessing (load_weights(..., preprocessing=...)).")
    inputs = keras.Input(shape=net.input.shape[1:], name="rgb")
    return keras.Model(inputs, net(layer(inputs)), name=f"{net.name}_inference")


def _weights_loader() -> Callable[..., tuple[keras.Model, Any]]:
    if "loader" not in _WEIGHTS_LOADER:
        raise ZooError(f"build(..., weights=...) needs the weights loader: `import {_LOADER_MODULE}` first "
                       f"(zoo.build does it for you).")
    return _WEIGHTS_LOADER["loader"]


def build(name: str, weights: str | os.PathLike | None = None, *, include_preprocessing: bool = False,
          **options: Any) -> keras.Model:
    """Build registered model ``name``, with random or published weights (the contract of the module docstring).

    ``weights``: ``None`` (random), a published tag (``zoo weights NAME`` lists them: the zoo's own,
    and upstream ImageNet weights such as ``"imagenet"``, downloaded and converted on first use) or a
    path (a ``.weights.h5`` file or a training run's directory). ``options`` are :class:`CommonOptions`
    and the family's options; with weights they go on top of the published build options (loading
    options such as ``offline=``, ``progress=`` go to the weights loader).

    >>> model = build("all_cnn_c", num_classes=10)                       # normalised input, logits
    >>> model = build("resnet20", weights="cifar10", include_preprocessing=True)   # raw 0..255 RGB in
    >>> pixels = build("vgg16", weights="imagenet", features_only=True, out_indices=(0,))  # up to pool1
    """
    if not isinstance(include_preprocessing, bool):
        raise ZooError(f"include_preprocessing must be True or False, got {include_preprocessing!r}.")
    if weights is None:
        net = build_network(name, **options)
        layer = default_preprocessing(name, int(net.input.shape[-1])) if include_preprocessing else None
        return with_preprocessing(net, layer) if include_preprocessing else net
    net, layer = _weights_loader()(name, weights, **options)
    return with_preprocessing(net, layer, f"weights {os.fspath(weights)!r}") if include_preprocessing else net


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


def outputs_logits(options: Mapping[str, Any]) -> bool:
    """Whether a model built with ``options`` outputs logits (no ``classifier_activation``)."""
    return options.get("classifier_activation") in (None, "linear")
