"""Converters from other frameworks' published weights to zoo models, one module per source.

- ``keras``: keras.applications ResNet50/101/152 (→ ``layout="keras"``), VGG16/19;
- ``torchvision``: torchvision state dicts of ResNet-18…152, SqueezeNet 1.0/1.1, VGG-11…19;
- ``fishnet``: the FishNet authors' checkpoints (kevin-ssy/FishNet) of FishNet-99/150/201.

Every converter checks that each weight of the zoo model is assigned exactly once and each source
weight used (see :class:`~zoo.weights.convert.common.Assigner`). :func:`convert` also writes the
result as a publishable weights file: the inference model (raw RGB → the source's preprocessing →
model) plus a ``.json`` sidecar with its build options and preprocessing record, which
:func:`zoo.weights.publish_file` reads.
"""
from __future__ import annotations

import importlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from zoo.errors import unknown
from zoo.models.registry import with_preprocessing
from zoo.weights import store
from zoo.weights.convert.common import Conversion, ConversionError
from zoo.weights.preprocess import PRESETS, layer_from_spec, serialize, spec_for

SOURCES = {"keras": "zoo.weights.convert.keras_apps", "torchvision": "zoo.weights.convert.torchvision",
           "fishnet": "zoo.weights.convert.fishnet"}
ALIASES = {"keras.applications": "keras", "keras_applications": "keras", "tv": "torchvision", "torch": "torchvision"}


def source_module(source: str):
    """The converter module of ``source`` (imported on demand: torchvision's needs torch only then)."""
    key = ALIASES.get(source.strip().lower(), source.strip().lower())
    if key not in SOURCES:
        raise unknown("conversion source", source, SOURCES)
    return importlib.import_module(SOURCES[key])


def convert(source: str, model_name: str, src: Any, out_path: str | os.PathLike | None = None, *,
            preprocessing: Any = None, **build_options: Any) -> Conversion:
    """Convert ``src`` (a path, model or state dict of ``source``) into the zoo model ``model_name``.

    Returns a :class:`~zoo.weights.convert.common.Conversion`: ``.model`` is the zoo model (it expects
    the source's preprocessed input), beside it the build options and a summary. With ``out_path``
    also writes the inference model's weights there (preprocessing: the source's convention unless
    ``preprocessing`` — a preset ``"torch"`` / ``"caffe"``, a manifest record or a layer — is given)
    and ``<out_path>.json``.
    """
    module = source_module(source)
    conversion = module.convert(model_name, src, **build_options)
    if out_path is not None:
        save_converted(conversion, out_path, preprocessing if preprocessing is not None else module.PREPROCESSING,
                       model_name=model_name)
    return conversion


def save_converted(conversion: Conversion, out_path: str | os.PathLike, preprocessing: Any, *,
                   model_name: str) -> Path:
    """Write the converted model wrapped with its preprocessing as ``out_path`` (atomically) and the sidecar JSON."""
    out = Path(out_path)
    if not out.name.endswith(".weights.h5"):
        raise ConversionError(f"out_path must end in .weights.h5 (Keras' weights format), got {out.name}.")
    out.parent.mkdir(parents=True, exist_ok=True)
    layer = layer_from_spec(preprocessing)
    kind = preprocessing if isinstance(preprocessing, str) else (preprocessing.get("kind", "custom")
                                                                  if isinstance(preprocessing, dict) else "custom")
    record = spec_for(kind) if isinstance(preprocessing, str) and preprocessing in PRESETS else \
        {"kind": kind, "input": "RGB, 0..255, channels last", "layer": serialize(layer)}
    wrapped = with_preprocessing(conversion.model, layer)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".weights.h5", dir=out.parent)
    os.close(fd)
    try:
        wrapped.save_weights(tmp)
        store.make_readable(tmp)  # mkstemp's 0600 would leave the file unreadable to others
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    build = {k: list(v) if isinstance(v, tuple) else v for k, v in conversion.build.items()}
    sidecar = {"name": model_name, "build": build, "preprocessing": record, "source": conversion.source,
               "dropped": sorted(conversion.dropped)}
    write_json_atomically(Path(f"{out}.json"), sidecar)
    return out


def write_json_atomically(path: Path, data: Any) -> Path:
    """``data`` as indented JSON at ``path``: a temporary file beside it, renamed (readable mode)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(data, indent=2) + "\n")
        store.make_readable(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


__all__ = ["convert", "save_converted", "source_module", "SOURCES", "Conversion", "ConversionError"]
