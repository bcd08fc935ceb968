"""Loading weights: what a ``weights=`` value names, and the network with those weights in it.

:func:`resolve_weights` is the one rule for what ``weights`` names (``zoo.build``,
:func:`load_weights`, :func:`check_weights`, :func:`weights_info` and distillation teachers all
call it), in this order:

1. a published tag of the model (``zoo weights NAME``; any manifest): that entry;
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

Nothing is attached to the returned model (no attribute survives a ``.keras`` round trip):
:func:`weights_info` says what the weights are (tag, classes, preprocessing record, metrics).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import keras

from zoo.models import registry
from zoo.models.registry import build, build_network, with_preprocessing  # noqa: F401  (build: zoo.weights.build)
from zoo.weights import store
from zoo.weights.entries import WeightsEntry, build_options, entries, get_weights, list_weights, read_json
from zoo.weights.errors import WeightsError, WeightsNotFound
from zoo.weights.h5 import h5_summary, load_into, transfer_by_name
from zoo.weights.preprocess import layer_from_spec
from zoo.weights.runs import run_classes, run_facts

EXACT_OPTIONS = ("num_classes",)  # options whose change alters the published weights' shapes: never overridable
RUN_WEIGHTS = "model.weights.h5"  # the inference model's weights in a run directory


@dataclass(frozen=True)
class WeightsSource:
    """What a ``weights=`` value names: ``kind`` ``"tag"`` (``entry``), ``"run"`` or ``"file"`` (``path``)."""

    name: str
    kind: str
    entry: WeightsEntry | None = None
    path: Path | None = None


def _looks_like_a_path(text: str) -> bool:
    return Path(text).expanduser().exists() or os.sep in text or "/" in text or text.endswith(".h5")


def resolve_weights(name: str, weights: str | os.PathLike) -> WeightsSource:
    """The one rule for what ``weights`` names for model ``name`` (see the module docstring); raises
    what loading would refuse first (unknown model or tag, missing path) without building or downloading."""
    key = registry.get_entry(name).name
    if not isinstance(weights, (str, os.PathLike)):
        raise WeightsError(f"weights must be a tag or a path, got {type(weights).__name__}.")
    text = os.fspath(weights)
    if isinstance(weights, str) and ((key, text) in entries() or not _looks_like_a_path(text)):
        return WeightsSource(key, "tag", entry=get_weights(key, text))
    path = Path(text).expanduser()
    if path.is_dir():
        return WeightsSource(key, "run", path=path)
    if not path.exists():
        tags = ", ".join(e.tag for e in list_weights(key)) or "none"
        raise WeightsNotFound(f"no weights at {path}: give a published tag of {key} (tags: {tags}) or an existing "
                              f"path.")
    return WeightsSource(key, "file", path=path)


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


_LOADERS: dict[str, Callable[..., tuple[keras.Model, Any]]] = {"tag": _from_tag, "run": _from_run, "file": _from_file}


def load_network(name: str, weights: str | os.PathLike, *, offline: bool | None = None, preprocessing: Any = None,
                 sha256: str | None = None, timeout: float = 60.0, **build_options: Any) -> tuple[keras.Model, Any]:
    """``(network, normalisation layer or None)``: ``name`` built with ``weights`` in it, and the layer that
    turns raw 0..255 RGB into its input. The weights loader of :func:`zoo.build` (see the module docstring).

    ``offline`` and ``timeout`` apply to a tag's download; ``preprocessing`` (a preset ``"torch"`` /
    ``"caffe"``, a manifest record or a Keras layer) and ``sha256`` to a file path. ``build_options``
    go on top of the published ones; changing ``num_classes`` is refused.
    """
    source = resolve_weights(name, weights)
    return _LOADERS[source.kind](source, build_options, offline=offline, timeout=timeout, preprocessing=preprocessing,
                                 sha256=sha256)


def load_weights(name: str, weights: str | os.PathLike, *, include_preprocessing: bool = False,
                 offline: bool | None = None, preprocessing: Any = None, sha256: str | None = None,
                 timeout: float = 60.0, **build_options: Any) -> keras.Model:
    """``zoo.build(name, weights=weights, include_preprocessing=...)`` with the loading options of
    :func:`load_network`: the network (normalised input; the default), or with
    ``include_preprocessing=True`` raw 0..255 RGB -> the weights' normalisation -> network.

    >>> net = load_weights("resnet20", "cifar10")                                 # normalised input
    >>> model = load_weights("resnet20", "cifar10", include_preprocessing=True)   # raw 0..255 RGB
    """
    if not isinstance(include_preprocessing, bool):
        raise WeightsError(f"include_preprocessing must be True or False, got {include_preprocessing!r}.")
    net, layer = load_network(name, weights, offline=offline, preprocessing=preprocessing, sha256=sha256,
                              timeout=timeout, **build_options)
    return with_preprocessing(net, layer, f"weights {os.fspath(weights)!r}") if include_preprocessing else net


registry.register_weights_loader(load_network)
