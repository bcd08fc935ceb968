"""Loading weights: what a ``weights=`` value names, and the network with those weights in it.

:func:`resolve_weights` is the one rule for what ``weights`` names (``zoo.build``,
:func:`load_weights`, :func:`check_weights`, :func:`weights_info` and distillation teachers all
call it), in this order:

1. a published tag of the model (``zoo weights NAME``; any manifest): that entry; else an upstream
   tag (:mod:`zoo.weights.imagenet`: torchvision's, keras.applications' or the FishNet authors'
   ImageNet weights, ``"imagenet"``, ``"imagenet-v2"``, ``"imagenet-keras"``), downloaded and
   converted on first use (:mod:`zoo.weights.upstream`);
2. an ``os.PathLike``, or text that is an existing path, contains a path separator or ends in
   ``.h5``: a path, which must exist: a directory is a :mod:`zoo.training.fit` run directory (its
   ``model.weights.h5`` and ``report.json``), a file a ``.weights.h5``;
3. anything else: an unknown tag, refused with the model's tags (and a "did you mean").

Importing this module registers :func:`load_network` as the model registry's weights loader
(:func:`zoo.models.registry.register_weights_loader`; the models package never imports this one),
so ``zoo.build(name, weights=...)`` and :func:`load_weights` share one path and one contract: the
network alone by default (normalised input), ``raw 0..255 RGB -> the weights' normalisation ->
network`` with ``include_preprocessing=True`` (see :mod:`zoo.models.registry`). A tag, a run
directory and a ``.weights.h5`` path give the same convention; a file that names no normalisation
(a plain network's weights without ``preprocessing=`` or a ``.json`` sidecar) is refused with
``include_preprocessing=True``.

Upstream weights combine with options that add or drop layers (``include_top=False``, ``pooling``,
``features_only``, ``out_indices``, ``output_stride``, ``input_shape``), and with another
``num_classes``: the classifier then starts fresh, with a warning naming it (:mod:`zoo.weights.finetune`).

Nothing is attached to the returned model (no attribute survives a ``.keras`` round trip):
:func:`weights_info` says what the weights are (tag, classes, preprocessing record, metrics).
"""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import keras

from zoo.errors import did_you_mean
from zoo.models import registry
from zoo.models.registry import build, build_network, with_preprocessing  # noqa: F401  (build: zoo.weights.build)
from zoo.weights import store
from zoo.weights.entries import WeightsEntry, build_options, entries, get_weights, list_weights, read_json
from zoo.weights import finetune, upstream
from zoo.weights.errors import WeightsError, WeightsNotFound
from zoo.weights.h5 import h5_summary, load_into, transfer_by_name
from zoo.weights.imagenet import Upstream, find_upstream, list_upstream
from zoo.weights.preprocess import layer_from_spec
from zoo.weights.runs import run_classes, run_facts

UPSTREAM_EXACT = ("layout", "bypass")  # family options whose change alters converted upstream weights' shapes
EXACT_OPTIONS = ("num_classes",)  # options whose change alters the published weights' shapes: never overridable
RUN_WEIGHTS = "model.weights.h5"  # the inference model's weights in a run directory


@dataclass(frozen=True)
class WeightsSource:
    """What a ``weights=`` value names: ``kind`` ``"tag"`` (``entry``), ``"upstream"`` (``upstream``),
    ``"run"`` or ``"file"`` (``path``)."""

    name: str
    kind: str
    entry: WeightsEntry | None = None
    path: Path | None = None
    upstream: Upstream | None = None


def _looks_like_a_path(text: str) -> bool:
    return Path(text).expanduser().exists() or os.sep in text or "/" in text or text.endswith(".h5")


def resolve_weights(name: str, weights: str | os.PathLike) -> WeightsSource:
    """The one rule for what ``weights`` names for model ``name`` (see the module docstring); raises
    what loading would refuse first (unknown model or tag, missing path) without building or downloading."""
    key = registry.get_entry(name).name
    if not isinstance(weights, (str, os.PathLike)):
        raise WeightsError(f"weights must be a tag or a path, got {type(weights).__name__}.")
    text = os.fspath(weights)
    published = entries()
    if isinstance(weights, str) and (key, text) not in published and find_upstream(key, text) is not None:
        return WeightsSource(key, "upstream", upstream=find_upstream(key, text))
    if isinstance(weights, str) and ((key, text) in published or not _looks_like_a_path(text)):
        return WeightsSource(key, "tag", entry=_get_tag(key, text))
    path = Path(text).expanduser()
    if path.is_dir():
        return WeightsSource(key, "run", path=path)
    if not path.exists():
        tags = ", ".join(e.tag for e in list_weights(key)) or "none"
        raise WeightsNotFound(f"no weights at {path}: give a published tag of {key} (tags: {tags}) or an existing "
                              f"path.")
    return WeightsSource(key, "file", path=path)


def _get_tag(key: str, tag: str) -> WeightsEntry:
    """The manifest entry ``key:tag``; an unknown tag lists the model's manifest and upstream tags."""
    ups = [u.tag for u in list_upstream(key)]
    try:
        return get_weights(key, tag)
    except WeightsError:
        if not ups:
            raise
    tags = sorted({e.tag for e in list_weights(key)} | set(ups))
    raise WeightsError(f"no weights {tag!r} for {key}.{did_you_mean(tag, tags)} Available tags for {key}: "
                       f"{', '.join(tags)} (`zoo weights {key}`).")


def check_weights(name: str, weights: str | os.PathLike) -> WeightsSource:
    """What :func:`load_weights` would refuse first, without building or downloading: an unknown model,
    an unknown tag (with the available ones) or a path that does not exist. Returns what ``weights`` names."""
    return resolve_weights(name, weights)


def weights_info(name: str, weights: str | os.PathLike) -> dict[str, Any]:
    """What ``weights`` are, without building or downloading: name, kind, tag, build options, classes,
    preprocessing record, metrics and path (the manifest entry for a tag; the report for a run)."""
    source = resolve_weights(name, weights)
    if source.kind == "tag":
        return {**source.entry.to_json(), "kind": "tag"}
    if source.kind == "upstream":
        return {**source.upstream.to_json(), "kind": "upstream", "state": upstream.state(source.upstream)}
    if source.kind == "run":
        facts = run_facts(source.path)
        return {"name": facts["name"], "kind": "run", "tag": None, "build": facts["build"],
                "classes": run_classes(facts), "preprocessing": facts["preprocessing"], "metrics": facts["metrics"],
                "path": str(source.path / RUN_WEIGHTS)}
    side = _sidecar(source.path)
    return {"name": source.name, "kind": "file", "tag": None, "build": side.get("build", {}), "classes": None,
            "preprocessing": side.get("preprocessing"), "metrics": {}, "path": str(source.path)}


# ------------------------------------------------------------------------------- loading
def load_entry_model(entry: WeightsEntry, path: Path) -> keras.Model:
    """The inference model (raw RGB -> the entry's preprocessing -> network) with ``path``'s weights in it."""
    if entry.preprocessing is None:
        raise WeightsError(f"weights entry {entry.key} has no preprocessing record.")
    net = build_network(entry.name, **entry.build_options())
    model = with_preprocessing(net, layer_from_spec(entry.preprocessing))
    load_into(model, path, f"{entry.name} built with {dict(entry.build)}")
    return model


def _merge_options(entry: WeightsEntry, options: Mapping[str, Any]) -> dict[str, Any]:
    published = entry.build_options()
    for key in EXACT_OPTIONS:
        if key in options and key in published and options[key] != published[key]:
            raise WeightsError(f"weights {entry.key} were published with {key}={published[key]!r}; {key}="
                               f"{options[key]!r} would change their shapes. Load them as published and "
                               f"fine-tune a new head instead.")
    return {**published, **options}


def _load_entry(entry: WeightsEntry, path: Path, options: Mapping[str, Any]) -> tuple[keras.Model, Any]:
    """(network, normalisation) of an entry's file; options that add or drop layers (``include_top=False``,
    ``features_only``, ...) get a network of those options, filled by layer name from the published one."""
    model = load_entry_model(entry, path)
    net, layer = model.layers[-1], model.layers[1]
    merged = _merge_options(entry, options)
    if merged != entry.build_options():
        rebuilt = build_network(entry.name, **merged)
        transfer_by_name(net, rebuilt, f"{entry.name} with {dict(options)}")
        net = rebuilt
    return net, layer


def _from_tag(source: WeightsSource, options: Mapping[str, Any], *, offline: bool | None = None,
              timeout: float = 60.0, **_: Any) -> tuple[keras.Model, Any]:
    return _load_entry(source.entry, store.fetch(source.entry, offline=offline, timeout=timeout), options)


def _family_default(name: str, option: str) -> Any:
    """The default of a family option of ``name`` (its trunk's keyword default; ``None`` if it has none)."""
    param = inspect.signature(registry.get_entry(name).family.trunk).parameters.get(option)
    return None if param is None else param.default


def _from_upstream(source: WeightsSource, options: Mapping[str, Any], *, offline: bool | None = None,
                   timeout: float = 60.0, progress: upstream.Progress = True, **_: Any) -> tuple[keras.Model, Any]:
    """Upstream weights (downloaded and converted on first use) in a network of the requested options."""
    up = source.upstream
    include_top = options.get("include_top", True) and not options.get("features_only", False)
    path = upstream.materialize(up, include_top=include_top, offline=offline, timeout=timeout, progress=progress)
    record = upstream.read_sidecar(path) or {}
    published = build_options(record.get("build", {}))
    for key in set(UPSTREAM_EXACT) & set(options):  # family options that fix weight shapes (layout="keras")
        value = published.get(key, _family_default(up.name, key))
        if options[key] != value:
            raise WeightsError(f"weights {up.key} are converted for {key}={value!r}; {key}={options[key]!r} "
                               f"would change their shapes.")
    layer = layer_from_spec(record["preprocessing"])
    net = build_network(up.name, **published)
    load_into(with_preprocessing(net, layer), path, f"{up.name} built with {published}")
    merged = {**published, **options}
    if merged == published:
        return net, layer
    target = build_network(up.name, **merged)
    fresh = finetune.transfer(net, target, registry.get_entry(up.name).family.name, f"{up.name} with {dict(options)}")
    finetune.say_fresh(fresh, up.key, merged.get("num_classes", up.num_classes), up.num_classes)
    return target, layer


def _from_run(source: WeightsSource, options: Mapping[str, Any], **_: Any) -> tuple[keras.Model, Any]:
    run, facts = source.path, run_facts(source.path)
    if facts["name"] != source.name:
        raise WeightsError(f"the run in {run} trained {facts['name']!r}, not {source.name!r}.")
    if not (run / RUN_WEIGHTS).exists():
        raise WeightsNotFound(f"the run directory {run} has no {RUN_WEIGHTS} (did the run finish an epoch?).")
    pseudo = WeightsEntry(name=source.name, tag="run", sha256="0" * 64, file=str(run / RUN_WEIGHTS),
                          build=facts["build"], preprocessing=facts["preprocessing"], metrics=facts["metrics"])
    return _load_entry(pseudo, run / RUN_WEIGHTS, options)


def _sidecar(path: Path) -> dict[str, Any]:
    """The ``<path>.json`` a conversion writes beside its file (build options, preprocessing), or ``{}``."""
    sidecar = Path(f"{path}.json")
    return read_json(sidecar) if sidecar.exists() else {}


def _from_file(source: WeightsSource, options: Mapping[str, Any], *, preprocessing: Any = None,
               sha256: str | None = None, **_: Any) -> tuple[keras.Model, Any]:
    """A ``.weights.h5``: an inference model's (its normalisation from ``preprocessing`` or the sidecar)
    or a plain network's (normalisation ``preprocessing``, the sidecar's, or none)."""
    path, name = source.path, source.name
    if sha256:
        store.verify(path, sha256)
    side = _sidecar(path)
    preprocessing = side.get("preprocessing") if preprocessing is None else preprocessing
    options = {**build_options(side.get("build", {})), **options}
    layer = None if preprocessing is None else layer_from_spec(preprocessing)
    net = build_network(name, **options)
    if h5_summary(path)[1]:
        if layer is None:
            raise WeightsError(f"{path} holds an inference model (a preprocessing layer and the model): pass "
                               f"preprocessing= (a preset 'torch' / 'caffe', a manifest record or the Keras layer), "
                               f"or give the run directory it came from.")
        load_into(with_preprocessing(net, layer), path, f"{name} built with {dict(options)}")
    else:
        load_into(net, path, f"{name} built with {dict(options)}")
    return net, layer


_LOADERS: dict[str, Callable[..., tuple[keras.Model, Any]]] = {"tag": _from_tag, "upstream": _from_upstream,
                                                               "run": _from_run, "file": _from_file}


def load_network(name: str, weights: str | os.PathLike, *, offline: bool | None = None, preprocessing: Any = None,
                 sha256: str | None = None, timeout: float = 60.0, progress: upstream.Progress = True,
                 **build_options: Any) -> tuple[keras.Model, Any]:
    """``(network, normalisation layer or None)``: ``name`` built with ``weights`` in it, and the layer that
    turns raw 0..255 RGB into its input. The weights loader of :func:`zoo.build` (see the module docstring).

    ``offline`` and ``timeout`` apply to a tag's download, ``progress`` (a bar on stderr; ``False``: none;
    a callable: ``progress(received, total)``) to an upstream download; ``preprocessing`` (a preset ``"torch"`` /
    ``"caffe"``, a manifest record or a Keras layer) and ``sha256`` to a file path. ``build_options``
    go on top of the published ones; changing ``num_classes`` is refused for the zoo's own weights and
    starts a fresh classifier for upstream ones.
    """
    source = resolve_weights(name, weights)
    return _LOADERS[source.kind](source, build_options, offline=offline, timeout=timeout, preprocessing=preprocessing,
                                 sha256=sha256, progress=progress)


def load_weights(name: str, weights: str | os.PathLike, *, include_preprocessing: bool = False,
                 offline: bool | None = None, preprocessing: Any = None, sha256: str | None = None,
                 timeout: float = 60.0, progress: upstream.Progress = True, **build_options: Any) -> keras.Model:
    """``zoo.build(name, weights=weights, include_preprocessing=...)`` with the loading options of
    :func:`load_network`: the network (normalised input; the default), or with
    ``include_preprocessing=True`` raw 0..255 RGB -> the weights' normalisation -> network.

    >>> net = load_weights("resnet20", "cifar10")                                 # normalised input
    >>> model = load_weights("resnet20", "cifar10", include_preprocessing=True)   # raw 0..255 RGB
    """
    if not isinstance(include_preprocessing, bool):
        raise WeightsError(f"include_preprocessing must be True or False, got {include_preprocessing!r}.")
    net, layer = load_network(name, weights, offline=offline, preprocessing=preprocessing, sha256=sha256,
                              timeout=timeout, progress=progress, **build_options)
    return with_preprocessing(net, layer, f"weights {os.fspath(weights)!r}") if include_preprocessing else net


registry.register_weights_loader(load_network)
