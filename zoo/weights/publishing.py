"""Publishing weights: a training run or a weights file becomes a manifest entry (cast, hashed, sharded).

:func:`publish` reads a :mod:`zoo.training.fit` run directory (report, weights, normalisation
layer) and calls :func:`publish_file`, which copies the file (floating arrays cast to the chosen
``dtype``), hashes it, packages it beside the manifest (as shards above ``shard_bytes``, see
:mod:`zoo.weights.entries`) or stages it in the download cache for a URL-only entry, loads it once
through the new entry, and writes the entry (atomically, under a lock). Replaced files are removed.
"""
from __future__ import annotations

import datetime
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import h5py
import numpy as np

from zoo.models.registry import build_network, get_entry, with_preprocessing
from zoo.weights import store
from zoo.weights.entries import (MANIFEST, SHARD_BYTES, TAG_RE, WeightsEntry, build_options, read_json, read_manifest,
                                 write_manifest)
from zoo.weights.errors import WeightsError, WeightsNotFound
from zoo.weights.h5 import h5_summary, load_into
from zoo.weights.loading import load_entry_model
from zoo.weights.preprocess import layer_from_spec, spec_for
from zoo.weights.runs import run_classes, run_facts

DTYPES = ("float32", "float16")


# ------------------------------------------------------------------------- the file itself
def cast_h5(src: Path, dst: Path, dtype: str) -> None:
    """Copy a .weights.h5 file, floating arrays cast to ``dtype`` (attributes kept)."""
    with h5py.File(src, "r") as fin, h5py.File(dst, "w") as fout:
        for k, v in fin.attrs.items():
            fout.attrs[k] = v

        def copy(name, obj):
            if isinstance(obj, h5py.Dataset):
                data = obj[()]
                if getattr(data, "dtype", None) is not None and data.dtype.kind == "f":
                    cast = np.asarray(data).astype(dtype)
                    if not np.all(np.isfinite(cast[np.isfinite(data)])):
                        raise WeightsError(f"{src}: array {name} overflows {dtype}; publish it as float32.")
                    data = cast
                out = fout.create_dataset(name, data=data)
            else:
                out = fout.require_group(name)
            for k, v in obj.attrs.items():
                out.attrs[k] = v

        fin.visititems(copy)


def split_file(path: Path, shard_bytes: int) -> list[Path]:
    """Split ``path`` into ``<path>.shard00``, ``.shard01``, ... of at most ``shard_bytes``; delete ``path``."""
    shards = []
    with open(path, "rb") as src:
        while chunk := src.read(shard_bytes):
            shard = path.with_name(f"{path.name}.shard{len(shards):02d}")
            shard.write_bytes(chunk)
            shards.append(shard)
    path.unlink()
    return shards


def _wrap_plain(path: Path, name: str, build: Mapping[str, Any], preprocessing: Mapping[str, Any], out: Path) -> None:
    """Save a plain network's weights file as an inference model's (with its preprocessing layer)."""
    net = build_network(name, **build_options(build))
    load_into(net, path, f"{name} built with {dict(build)}")
    with_preprocessing(net, layer_from_spec(preprocessing)).save_weights(out)


def _stage(path: Path, name: str, tag: str, build: Mapping[str, Any], prep: Mapping[str, Any], dtype: str,
           target_dir: Path) -> tuple[Path, str]:
    """The inference model's file, cast to ``dtype``, under its unique name in ``target_dir``: (path, sha256)."""
    target_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".publish-", suffix=".weights.h5", dir=target_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        source_file = path
        if not h5_summary(path)[1]:
            _wrap_plain(path, name, build, prep, tmp)
            source_file = tmp
        if dtype == "float32" and source_file == path:
            shutil.copyfile(path, tmp)
        elif dtype != "float32":
            staged = tmp.with_suffix(".cast.h5")
            try:
                cast_h5(source_file, staged, dtype)
                os.replace(staged, tmp)
            finally:
                staged.unlink(missing_ok=True)
        sha = store.sha256_file(tmp)
        final = target_dir / store.cache_name(name, tag, sha)
        store.make_readable(tmp)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final, sha


def _manifest_relative(path: Path, manifest: Path) -> str:
    try:
        return path.relative_to(manifest.parent).as_posix()
    except ValueError:
        return str(path.resolve())


def _package(final: Path, manifest: Path, package: bool, shard_bytes: int | None) -> dict[str, Any]:
    """The entry's ``file`` or ``shards`` fields for the staged file (neither for a URL-only entry)."""
    if package and shard_bytes is not None and final.stat().st_size > shard_bytes:
        return {"file": None, "shards": [{"file": _manifest_relative(p, manifest), "sha256": store.sha256_file(p),
                                          "size": p.stat().st_size} for p in split_file(final, shard_bytes)]}
    return {"file": _manifest_relative(final, manifest) if package else None, "shards": None}


# ---------------------------------------------------------------------------- the entry
def _check_request(tag: str, dtype: str, package: bool, url: str | None, shard_bytes: int | None) -> None:
    if not TAG_RE.match(tag):
        raise WeightsError(f"tag {tag!r}: use lower-case letters, digits and _.+- (e.g. 'cifar10').")
    if dtype not in DTYPES:
        raise WeightsError(f"dtype must be 'float32' or 'float16', got {dtype!r}.")
    if not package and not url:
        raise WeightsError("package=False publishes a URL-only entry: pass url=.")
    if shard_bytes is not None and shard_bytes < 2**20:
        raise WeightsError(f"shard_bytes={shard_bytes}: shards must hold at least 1 MiB (2**20 bytes).")


def _with_sidecar(path: Path, build: Mapping[str, Any] | None, preprocessing: Any,
                  source: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """``build``, the preprocessing record and ``source``, defaulting to the ``<path>.json`` a conversion writes."""
    if build is None or preprocessing is None:
        sidecar = Path(f"{path}.json")
        if not sidecar.exists():
            raise WeightsError(f"pass build= and preprocessing= for {path} (there is no {sidecar.name} beside it).")
        side = read_json(sidecar)
        build = side.get("build", {}) if build is None else build
        preprocessing = side.get("preprocessing") if preprocessing is None else preprocessing
        source = source or f"converted from {side.get('source')}"
    prep = spec_for(preprocessing) if isinstance(preprocessing, str) else dict(preprocessing)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dict(build).items()}, prep, source


def _remove_replaced(old: WeightsEntry | None, entry: WeightsEntry, manifest: Path, target_dir: Path) -> None:
    """Delete the files of the entry ``entry`` replaced, unless another entry still uses them."""
    if old is None or old.sha256 == entry.sha256:
        return
    in_use = {p for e in read_manifest(manifest) for p in e.packaged_files()}
    for stale in old.packaged_files():
        if stale.exists() and stale not in in_use and stale.parent.resolve() == target_dir.resolve():
            stale.unlink()


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def publish_file(path: str | Path, name: str, tag: str, *, build: Mapping[str, Any] | None = None,
                 preprocessing: Mapping[str, Any] | str | None = None, classes: Sequence[str] | None = None,
                 metrics: Mapping[str, Any] | None = None, recipe: Mapping[str, Any] | None = None,
                 source: str = "", description: str = "", license: str | None = None, dtype: str = "float32",
                 url: str | None = None, package: bool = True, manifest: str | Path | None = None,
                 files_dir: str | Path | None = None, overwrite: bool = False, verify: bool = True,
                 shard_bytes: int | None = SHARD_BYTES) -> WeightsEntry:
    """Publish a weights file as ``name:tag``: copy it (cast to ``dtype``), hash it, write the entry.

    ``path`` is an inference model's ``.weights.h5`` (preprocessing layer + model, as
    :mod:`zoo.training.fit` and :func:`zoo.weights.convert.convert` write) or a plain model's (wrapped
    here with ``preprocessing``: a manifest record or a preset, ``"torch"`` / ``"caffe"``). ``build``
    are the ``zoo.build`` options the file fits; ``build`` and ``preprocessing`` default to those in
    ``<path>.json``, the sidecar a conversion writes. With ``package=True`` the file goes into
    ``files_dir`` (default: ``files/`` beside the manifest, i.e. inside the package); with
    ``package=False`` into the download cache, and the entry points at ``url`` only (upload the
    file there). ``verify`` loads the published file once through the new entry. A packaged file
    larger than ``shard_bytes`` is stored as shards of at most that size (``None``: never).
    """
    name = get_entry(name).name
    _check_request(tag, dtype, package, url, shard_bytes)
    manifest = Path(manifest) if manifest is not None else MANIFEST
    path = Path(path)
    build, prep, source = _with_sidecar(path, build, preprocessing, source)
    if not path.exists():
        raise WeightsNotFound(f"no weights file at {path}.")
    target_dir = Path(files_dir) if files_dir is not None else manifest.parent / "files"
    target_dir = target_dir if package else store.cache_dir(create=True)
    final, sha = _stage(path, name, tag, build, prep, dtype, target_dir)
    size = final.stat().st_size
    entry = WeightsEntry(
        name=name, tag=tag, sha256=sha, **_package(final, manifest, package, shard_bytes), url=url, size=size,
        dtype=dtype, build=build, classes=list(classes) if classes is not None else None, preprocessing=prep,
        metrics=dict(metrics or {}), recipe=dict(recipe) if recipe is not None else None, source=source,
        description=description, license=license, created=_now(), manifest=manifest)
    entry = WeightsEntry.from_json(entry.to_json(), manifest)
    if verify:
        load_entry_model(entry, store.fetch(entry, offline=True))
    _remove_replaced(write_manifest(manifest, entry, overwrite), entry, manifest, target_dir)
    return entry


def publish(run_dir: str | Path, tag: str, *, dtype: str = "float32", url: str | None = None,
            package: bool = True, classes: Sequence[str] | None = None, metrics: Mapping[str, Any] | None = None,
            description: str = "", license: str | None = None, manifest: str | Path | None = None,
            files_dir: str | Path | None = None, overwrite: bool = False, allow_unfinished: bool = False,
            verify: bool = True, shard_bytes: int | None = SHARD_BYTES) -> WeightsEntry:
    """Publish a :mod:`zoo.training.fit` run's ``model.weights.h5`` as ``<model>:<tag>``.

    Reads the run's ``report.json`` (model, build options, metrics, recipe) and the preprocessing
    layer from its ``model.keras`` (as JSON), then :func:`publish_file`. ``classes`` default to the
    report's ``data.class_names`` or, for CIFAR-10, its ten classes; ``metrics`` to the run's
    evaluation (per split) and best epoch.
    """
    run = Path(run_dir)
    if not run.is_dir():
        raise WeightsNotFound(f"no run directory at {run}.")
    facts = run_facts(run)
    if facts["status"] != "completed" and not allow_unfinished:
        raise WeightsError(f"the run in {run} is {facts['status']!r}, not completed; pass allow_unfinished=True "
                           f"to publish it anyway.")
    return publish_file(
        run / "model.weights.h5", facts["name"], tag, build=facts["build"], preprocessing=facts["preprocessing"],
        classes=run_classes(facts) if classes is None else classes,
        metrics=metrics if metrics is not None else facts["metrics"], recipe=facts["recipe"],
        source=f"zoo train run {facts['recipe'].get('run_name') or run.name}", description=description,
        license=license, dtype=dtype, url=url, package=package, manifest=manifest, files_dir=files_dir,
        overwrite=overwrite, verify=verify, shard_bytes=shard_bytes)
