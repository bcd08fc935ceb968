"""Published weights: a manifest of (model name, tag) entries, loaded by name with sha256 checks.

An entry (one object in ``manifest.json``'s ``weights`` list)::

    {"name": "resnet20", "tag": "cifar10", "description": "...",
     "file": "files/resnet20-cifar10-1a2b3c4d.weights.h5",     # packaged (relative to the manifest) or a local path
     "url": "https://.../resnet20-cifar10-1a2b3c4d.weights.h5",  # optional download location
     "sha256": "<64 hex>", "size": 1103752, "dtype": "float16",
     "build": {"num_classes": 10, "input_shape": [32, 32, 3]},  # zoo.build options of the published model
     "classes": ["airplane", ...],
     "preprocessing": {"kind": "per_channel", "input": "RGB, 0..255, channels last", "layer": {...}},
     "metrics": {"test": {"accuracy": 0.9125}}, "recipe": {"name": "resnet20-paper", ...},
     "source": "zoo.training.run run resnet20-paper-resnet20", "license": null, "created": "2025-01-01T00:00:00Z"}

A file larger than :data:`SHARD_BYTES` is packaged as *shards* instead of ``file``: consecutive byte
ranges ``files/<name>-<tag>-<sha8>.weights.h5.shard00`` ... each with its own sha256 and size
(``"shards": [{"file": ..., "sha256": ..., "size": ...}, ...]``), so that no committed file exceeds the
repository's size limit. Loading verifies every shard, joins them into the cache and verifies the
whole file against ``sha256``.

Every weights file is the weights of the *inference model* ``raw RGB -> preprocessing layer -> zoo
model`` (what :mod:`zoo.training.run` saves as ``model.weights.h5``), so a loaded model takes raw 0..255
RGB images: the normalisation is part of it, stored with the weights (fitted statistics) and in
the entry (the layer's Keras serialization).

Where a file is looked for, in order: the packaged/local ``file``; the cache
(``$KERAS_HOME/zoo/weights/<name>-<tag>-<sha256[:8]>.weights.h5``); the ``url`` (downloaded into the
cache unless offline: ``offline=True`` or ``ZOO_OFFLINE=1``). Every file is hashed before use.

Manifests: the packaged ``zoo/weights/manifest.json``, then any listed in ``ZOO_WEIGHTS_MANIFEST``
(``os.pathsep``-separated); a later manifest's entry replaces an earlier one with the same name and tag.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import shutil
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from zoo.errors import close_matches
from zoo.weights import store
from zoo.weights.store import ChecksumError, WeightsError, WeightsNotFound

MANIFEST = Path(__file__).with_name("manifest.json")
MANIFEST_ENV = "ZOO_WEIGHTS_MANIFEST"
FORMAT = 1
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
TAG_RE = re.compile(r"^[a-z0-9][a-z0-9_.+-]*$")
SHARD_BYTES = 16 * 2**20  # packaged files above this are split into shards of at most this size
EXACT_OPTIONS = ("num_classes",)  # options whose change alters the published weights' shapes: never overridable

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
KNOWN_CLASSES = {"cifar10": CIFAR10_CLASSES}


@dataclass(frozen=True)
class WeightsEntry:
    """One published weights file and what it needs (see the module docstring)."""

    name: str
    tag: str
    sha256: str
    file: str | None = None
    url: str | None = None
    size: int | None = None
    dtype: str = "float32"
    build: Mapping[str, Any] = field(default_factory=dict)
    classes: Sequence[str] | None = None
    preprocessing: Mapping[str, Any] | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    recipe: Mapping[str, Any] | None = None
    source: str = ""
    description: str = ""
    license: str | None = None
    created: str | None = None
    shards: Sequence[Mapping[str, Any]] | None = None
    manifest: Path | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        return f"{self.name}:{self.tag}"

    def _resolve(self, name: str) -> Path:
        path = Path(name).expanduser()
        if not path.is_absolute() and self.manifest is not None:
            path = self.manifest.parent / path
        return path

    def local_file(self) -> Path | None:
        """The packaged or local file named by ``file`` (resolved against the manifest's folder)."""
        return self._resolve(self.file) if self.file else None

    def shard_files(self) -> list[Path]:
        """The packaged shards' paths, in order (empty for an unsharded entry)."""
        return [self._resolve(s["file"]) for s in self.shards or ()]

    def packaged_files(self) -> list[Path]:
        """Every file of this entry beside its manifest: ``file`` or the shards."""
        local = self.local_file()
        return [local] if local is not None else self.shard_files()

    def cache_path(self) -> Path:
        return store.cache_dir() / store.cache_name(self.name, self.tag, self.sha256)

    def where(self) -> str:
        """``packaged``, ``cached``, ``remote`` (downloadable) or ``missing``."""
        files = self.packaged_files()
        if files and all(f.exists() for f in files):
            return "packaged" if self.manifest == MANIFEST else "local"
        if self.cache_path().exists():
            return "cached"
        return "remote" if self.url else "missing"

    def build_options(self) -> dict[str, Any]:
        return {k: tuple(v) if k in ("input_shape", "out_indices") and isinstance(v, list) else v
                for k, v in self.build.items()}

    def to_json(self) -> dict[str, Any]:
        out = {}
        for f in fields(self):
            if f.name == "manifest":
                continue
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any], manifest: Path | None = None, where: str = "") -> "WeightsEntry":
        known = {f.name for f in fields(cls)} - {"manifest"}
        extra = sorted(set(data) - known)
        if extra:
            raise WeightsError(f"weights entry{where} has unknown fields {extra}; known: {sorted(known)}.")
        for key in ("name", "tag", "sha256"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise WeightsError(f"weights entry{where} needs a string {key!r}.")
        entry = cls(**{**data, "sha256": data["sha256"].lower()}, manifest=manifest)
        if not SHA256_RE.match(entry.sha256):
            raise WeightsError(f"weights entry {entry.key}{where}: sha256 must be 64 hex digits, got {entry.sha256!r}.")
        if not TAG_RE.match(entry.tag):
            raise WeightsError(f"weights entry {entry.key}{where}: a tag is lower-case letters, digits and _.+-.")
        if not entry.file and not entry.url and not entry.shards:
            raise WeightsError(f"weights entry {entry.key}{where} has neither a 'file', 'shards' nor a 'url'.")
        if entry.file and entry.shards:
            raise WeightsError(f"weights entry {entry.key}{where} has both a 'file' and 'shards': keep one.")
        for i, shard in enumerate(entry.shards or ()):
            if not (isinstance(shard, Mapping) and isinstance(shard.get("file"), str)
                    and SHA256_RE.match(str(shard.get("sha256", ""))) and isinstance(shard.get("size"), int)):
                raise WeightsError(f"weights entry {entry.key}{where}: shard #{i} needs a 'file', a 64-hex 'sha256' "
                                   f"and an integer 'size', got {shard!r}.")
        if not isinstance(entry.build, Mapping):
            raise WeightsError(f"weights entry {entry.key}{where}: 'build' must be a mapping of build options.")
        return entry


# ------------------------------------------------------------------------------------ manifests
def manifest_paths() -> list[Path]:
    """The packaged manifest, then those in ``$ZOO_WEIGHTS_MANIFEST`` (later ones take precedence)."""
    extra = [Path(p).expanduser() for p in os.environ.get(MANIFEST_ENV, "").split(os.pathsep) if p.strip()]
    return [MANIFEST, *extra]


def read_manifest(path: str | Path) -> list[WeightsEntry]:
    """The entries of one manifest file (a missing file has none)."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise WeightsError(f"cannot read the weights manifest {path}: {err}") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("weights"), list):
        raise WeightsError(f"the weights manifest {path} must be an object with a 'weights' list.")
    if data.get("format", FORMAT) > FORMAT:
        raise WeightsError(f"the weights manifest {path} has format {data['format']}; this zoo reads up to {FORMAT}.")
    return [WeightsEntry.from_json(e, path, f" #{i} in {path}") for i, e in enumerate(data["weights"])]


def _entries() -> dict[tuple[str, str], WeightsEntry]:
    out: dict[tuple[str, str], WeightsEntry] = {}
    for path in manifest_paths():
        for entry in read_manifest(path):
            out[(entry.name, entry.tag)] = entry
    return out


def _natural(text: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def list_weights(name: str | None = None) -> list[WeightsEntry]:
    """Published weights, sorted by model name and tag; only ``name``'s when given."""
    key = None if name is None else name.strip().lower()
    rows = [e for (n, _), e in _entries().items() if key is None or n == key]
    return sorted(rows, key=lambda e: (_natural(e.name), e.tag))


def weights_table(name: str | None = None) -> list[dict[str, Any]]:
    """Rows for ``zoo weights [NAME]``: name, tag, headline metric (``89.62% holdout``: accuracy and the split
    it was measured on), dtype, size, where the file is."""
    rows = []
    for e in list_weights(name):
        rows.append({"name": e.name, "tag": e.tag, "metric": _headline(e.metrics), "dtype": e.dtype,
                     "size_mb": round(e.size / 2**20, 2) if e.size else None, "where": e.where(),
                     "sha256": e.sha256[:12], "description": e.description})
    return rows


def _headline(metrics: Mapping[str, Any]) -> str:
    for split in ("test", "validation", "holdout"):
        m = metrics.get(split)
        if isinstance(m, Mapping) and "accuracy" in m:
            return f"{100 * m['accuracy']:.2f}% {split}"
    return ""


def get_weights(name: str, tag: str) -> WeightsEntry:
    """The entry of ``name`` with ``tag``; unknown tags list the available ones."""
    key = name.strip().lower()
    entries = _entries()
    if (key, tag) in entries:
        return entries[(key, tag)]
    tags = sorted(t for n, t in entries if n == key)
    if tags:
        near = close_matches(tag, tags)
        hint = f" Did you mean {', '.join(repr(t) for t in near)}?" if near else ""
        raise WeightsError(f"no weights {tag!r} for {key}.{hint} Available tags for {key}: {', '.join(tags)}.")
    with_weights = sorted({n for n, _ in entries})
    raise WeightsError(f"no published weights for {key!r} (tag {tag!r}). Models with weights: "
                       f"{', '.join(with_weights) or 'none yet'}. A local file or run directory path also works.")


# ----------------------------------------------------------------------------------- fetching
def _join_shards(entry: WeightsEntry, dest: Path) -> Path:
    """Verify ``entry``'s shards one by one, join them into ``dest`` atomically, verify the whole."""
    for shard, path in zip(entry.shards or (), entry.shard_files()):
        store.verify(path, shard["sha256"], what=f"shard {path.name} of {entry.key}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".join", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for path in entry.shard_files():
                with open(path, "rb") as src:
                    shutil.copyfileobj(src, out, 2**20)
        store.verify(tmp, entry.sha256, what=f"the joined shards of {entry.key}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def fetch(entry: WeightsEntry, *, offline: bool | None = None, timeout: float = 60.0) -> Path:
    """A verified local file for ``entry``: packaged/local file, else cache (where packaged
    shards are joined), else download."""
    local = entry.local_file()
    looked: list[str] = [str(p) for p in entry.shard_files()]
    if local is not None:
        looked.append(str(local))
        if local.exists():
            store.verify(local, entry.sha256, what=f"weights file of {entry.key}")
            return local
    cached = entry.cache_path()
    looked.append(str(cached))
    if cached.exists():
        try:
            store.verify(cached, entry.sha256, what=f"cached weights of {entry.key}")
            return cached
        except ChecksumError as err:
            cached.unlink(missing_ok=True)
            message = f"{err} The cached file was deleted."
            if entry.shards and all(p.exists() for p in entry.shard_files()):
                warnings.warn(message + " Joining the packaged shards again.", stacklevel=3)
                return _join_shards(entry, cached)
            if not entry.url or store.is_offline(offline):
                raise ChecksumError(message + (" Run again online to download it." if entry.url else "")) from None
            warnings.warn(message + f" Downloading it again from {entry.url}.", stacklevel=3)
    shards = entry.shard_files()
    if shards and all(p.exists() for p in shards):
        return _join_shards(entry, cached)
    if not entry.url:
        raise WeightsNotFound(f"the weights file {cached.name} of {entry.key} is missing: looked at "
                              f"{' and '.join(looked)}, and the entry has no URL.")
    if store.is_offline(offline):
        raise WeightsNotFound(f"offline (ZOO_OFFLINE / offline=True) and the weights file {cached.name} of {entry.key} "
                              f"is not available locally: looked at {' and '.join(looked)}. Go online to download "
                              f"it from {entry.url}, or copy it to {cached}.")
    store.cache_dir(create=True)
    return store.download(entry.url, cached, entry.sha256, timeout=timeout)


# ------------------------------------------------------------------------------------- loading
def _h5_summary(path: Path) -> tuple[int, bool]:
    """(number of arrays, whether it is an inference model: preprocessing layer + nested zoo model)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            count = 0

            def visit(_, obj):
                nonlocal count
                count += isinstance(obj, h5py.Dataset)

            f.visititems(visit)
            wrapped = "layers/functional" in f
    except OSError as err:
        raise WeightsError(f"{path} is not a readable Keras .weights.h5 file ({err}).") from None
    return count, wrapped


def _load_into(model, path: Path, what: str) -> None:
    """``model.load_weights(path)``, strictly: every weight set, every array of the file used."""
    count, _ = _h5_summary(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
        except Exception as err:  # noqa: BLE001 - Keras raises ValueError/KeyError/OSError here
            first = str(err).strip().split("\n\n")[0:2]
            raise WeightsError(f"{path} does not fit {what}: {' '.join(first)[:800]}") from None
    skipped = [str(w.message) for w in caught if "Skipping" in str(w.message) or "retain" in str(w.message)]
    if skipped:
        raise WeightsError(f"{path} does not fit {what}: {skipped[0][:400]}")
    expected = len(model.weights)
    if count != expected:
        raise WeightsError(f"{path} holds {count} arrays but {what} has {expected} weights: the file belongs to "
                           f"another model or other build options.")


def _inference_model(net, preprocessing_layer):
    import keras

    inputs = keras.Input(shape=net.input.shape[1:], name="rgb")
    return keras.Model(inputs, net(preprocessing_layer(inputs)), name=f"{net.name}_inference")


def _transfer_by_name(src, dst, what: str) -> None:
    """Copy weights layer by layer (same names, same shapes); every weight of ``dst`` must be set."""
    by_name = {layer.name: layer for layer in src.layers}
    missing = []
    for layer in dst.layers:
        if not layer.weights:
            continue
        source = by_name.get(layer.name)
        values = source.get_weights() if source is not None else None
        if values is None or [tuple(v.shape) for v in values] != [tuple(w.shape) for w in layer.weights]:
            missing.append(layer.name)
            continue
        layer.set_weights(values)
    if missing:
        raise WeightsError(f"the published weights do not cover {what}: no weights of the same shape for layers "
                           f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}.")


def _merge_options(entry: WeightsEntry, options: Mapping[str, Any]) -> dict[str, Any]:
    published = entry.build_options()
    for key in EXACT_OPTIONS:
        if key in options and key in published and options[key] != published[key]:
            raise WeightsError(f"weights {entry.key} were published with {key}={published[key]!r}; {key}="
                               f"{options[key]!r} would change their shapes. Load them as published and "
                               f"fine-tune a new head instead.")
    return {**published, **options}


def _finish(model, info: dict[str, Any], include_preprocessing: bool):
    net = model.layers[-1] if include_preprocessing is False else model
    net.zoo_weights = info
    return net


def load_weights(name: str, weights: str | os.PathLike, *, offline: bool | None = None,
                 include_preprocessing: bool = True, preprocessing: Any = None, sha256: str | None = None,
                 timeout: float = 60.0, **build_options: Any):
    """Build ``name`` and load published weights ``weights`` (a tag, or a local path).

    Returns the inference model (raw 0..255 RGB → preprocessing → model), or with
    ``include_preprocessing=False`` the zoo model alone (expecting preprocessed input). The
    returned model carries ``zoo_weights`` (the entry: tag, classes, preprocessing, metrics, ...).

    ``weights`` is a tag of :func:`list_weights`, or a path: a run directory of :mod:`zoo.training.run`, an
    inference-model ``.weights.h5`` (``preprocessing`` names its layer: a preset ``"torch"`` /
    ``"caffe"``, a manifest record or a Keras layer; default: the ``<path>.json`` sidecar a
    conversion writes) or a plain model's ``.weights.h5``; ``sha256`` checks a path.
    ``build_options`` go to :func:`zoo.build` on top of the published ones; those that add or drop
    layers (``include_top=False``, ``features_only``, ``output_stride``, ...) are filled by layer
    name from the published model, and changing ``num_classes`` is refused.
    """
    from zoo.models import registry as models

    key = models.get_entry(name).name
    tag = os.fspath(weights) if isinstance(weights, os.PathLike) else weights
    if not isinstance(tag, str):
        raise WeightsError(f"weights must be a tag or a path, got {type(weights).__name__}.")
    if _names_a_path(key, tag):
        return _load_path(key, Path(tag).expanduser(), include_preprocessing, preprocessing, sha256, build_options)
    entry = get_weights(key, tag)
    path = fetch(entry, offline=offline, timeout=timeout)
    info = {**entry.to_json(), "path": str(path)}
    model = _build_entry_model(entry, path)
    options = _merge_options(entry, build_options)
    if options != entry.build_options():
        model = _rebuild(model, key, options, f"{key} with {build_options}")
    return _finish(model, info, include_preprocessing)


def _names_a_path(key: str, tag: str) -> bool:
    """Whether ``tag`` (not a published tag of ``key``) is meant as a local path."""
    return (key, tag) not in _entries() and (Path(tag).expanduser().exists() or os.sep in tag or tag.endswith(".h5"))


def check_weights(name: str, weights: str) -> None:
    """What :func:`load_weights` would refuse first, without building or downloading: an unknown
    model, an unknown tag (with the available ones) or a path that does not exist."""
    from zoo.models import registry as models

    key = models.get_entry(name).name
    if _names_a_path(key, weights):
        if not Path(weights).expanduser().exists():
            raise WeightsError(f"no weights at {weights}: give a published tag of {key} or an existing path.")
        return
    get_weights(key, weights)


def _build_entry_model(entry: WeightsEntry, path: Path):
    from zoo.models import registry as models
    from zoo.weights.preprocess import layer_from_spec

    if entry.preprocessing is None:
        raise WeightsError(f"weights entry {entry.key} has no preprocessing record.")
    net = models.build(entry.name, **entry.build_options())
    model = _inference_model(net, layer_from_spec(entry.preprocessing))
    _load_into(model, path, f"{entry.name} built with {dict(entry.build)}")
    return model


def _rebuild(model, name: str, options: Mapping[str, Any], what: str):
    """The inference model rebuilt with other options, its weights copied by layer name."""
    from zoo.models import registry as models

    net = models.build(name, **options)
    _transfer_by_name(model.layers[-1], net, what)
    return _inference_model(net, model.layers[1])


def _load_path(name: str, path: Path, include_preprocessing: bool, preprocessing: Any, sha256: str | None,
               options: Mapping[str, Any]):
    from zoo.models import registry as models
    from zoo.weights.preprocess import layer_from_spec

    if path.is_dir():
        return _load_run(name, path, include_preprocessing, options)
    if not path.exists():
        raise WeightsNotFound(f"no weights file at {path} (and {path.name!r} is not a published tag of {name}; "
                              f"tags: {', '.join(e.tag for e in list_weights(name)) or 'none'}).")
    if sha256:
        store.verify(path, sha256)
    _, wrapped = _h5_summary(path)
    sidecar = Path(f"{path}.json")
    if wrapped and preprocessing is None and sidecar.exists():  # written by zoo.weights.convert
        side = _read_json(sidecar)
        preprocessing = side.get("preprocessing")
        options = {**WeightsEntry(name, "x", "0" * 64, file="x", build=side.get("build", {})).build_options(),
                   **options}
    info = {"name": name, "path": str(path), "build": dict(options)}
    if wrapped:
        if preprocessing is None:
            raise WeightsError(f"{path} holds an inference model (a preprocessing layer and the model): pass "
                               f"preprocessing= (a preset 'torch' / 'caffe', a manifest record or the Keras layer), "
                               f"or give the run directory it came from.")
        net = models.build(name, **options)
        model = _inference_model(net, layer_from_spec(preprocessing))
        _load_into(model, path, f"{name} built with {dict(options)}")
        return _finish(model, info, include_preprocessing)
    net = models.build(name, **options)
    _load_into(net, path, f"{name} built with {dict(options)}")
    if include_preprocessing and preprocessing is not None:
        return _finish(_inference_model(net, layer_from_spec(preprocessing)), info, True)
    net.zoo_weights = info
    return net


# ------------------------------------------------------------------------------- run directories
def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise WeightsError(f"cannot read {path}: {err}") from None


def run_preprocessing_layer(run_dir: str | Path) -> dict[str, Any]:
    """The serialized preprocessing layer of a run's ``model.keras`` (read as JSON; nothing executed)."""
    path = Path(run_dir) / "model.keras"
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise WeightsError(f"cannot read the model config in {path} ({err}); publish needs the run's model.keras "
                           f"for its preprocessing layer.") from None
    layers = config.get("config", {}).get("layers", [])
    inner = [x for x in layers if x.get("class_name") not in ("InputLayer", "Functional", "Model", "Sequential")]
    if len(layers) != 3 or len(inner) != 1:
        raise WeightsError(f"{path} is not a zoo inference model (input -> preprocessing -> model); its layers: "
                           f"{[x.get('class_name') for x in layers]}.")
    return {k: inner[0][k] for k in ("module", "class_name", "config", "registered_name") if k in inner[0]}


def run_facts(run_dir: str | Path) -> dict[str, Any]:
    """What a run directory says about its model: name, build options, data, metrics, recipe, preprocessing."""
    run = Path(run_dir)
    report = _read_json(run / "report.json")
    model, data = report.get("model") or {}, report.get("data") or {}
    if not model.get("name"):
        raise WeightsError(f"{run / 'report.json'} names no model.")
    build = {"num_classes": data.get("num_classes"), **(model.get("options") or {})}
    if model.get("input_shape"):
        build["input_shape"] = list(model["input_shape"])
    if build["num_classes"] is None:
        build.pop("num_classes")
    recipe = report.get("recipe") or {}
    metrics = {split: m for split, m in (report.get("evaluation") or {}).items()}
    if report.get("best"):
        metrics["best_epoch"] = report["best"]
    norm = ((recipe.get("data") or {}).get("normalization")) or "unknown"
    return {"name": model["name"], "build": build, "data": data, "metrics": metrics, "status": report.get("status"),
            "recipe": {"name": recipe.get("name"), "run_name": report.get("run_name"), "resolved": recipe},
            "preprocessing": {"kind": norm, "input": "RGB, 0..255, channels last",
                              "description": f"zoo.data.normalization_layer({norm!r}) fitted by the run",
                              "layer": run_preprocessing_layer(run)}}


def _load_run(name: str, run: Path, include_preprocessing: bool, options: Mapping[str, Any]):
    facts = run_facts(run)
    if facts["name"] != name:
        raise WeightsError(f"the run in {run} trained {facts['name']!r}, not {name!r}.")
    pseudo = WeightsEntry(name=name, tag="run", sha256="0" * 64, file=str(run / "model.weights.h5"),
                          build=facts["build"], preprocessing=facts["preprocessing"], metrics=facts["metrics"])
    path = run / "model.weights.h5"
    if not path.exists():
        raise WeightsNotFound(f"the run directory {run} has no model.weights.h5 (did the run finish an epoch?).")
    model = _build_entry_model(pseudo, path)
    merged = _merge_options(pseudo, options)
    if merged != pseudo.build_options():
        model = _rebuild(model, name, merged, f"{name} with {dict(options)}")
    info = {**pseudo.to_json(), "tag": None, "sha256": store.sha256_file(path), "path": str(path)}
    return _finish(model, info, include_preprocessing)


# ----------------------------------------------------------------------------------- publishing
def _cast_h5(src: Path, dst: Path, dtype: str) -> None:
    """Copy a .weights.h5 file, floating arrays cast to ``dtype`` (attributes kept)."""
    import h5py
    import numpy as np

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


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock for read-modify-write of the manifest at ``path`` (POSIX; no-op elsewhere).
    The lock file lives in the temporary directory, not beside the manifest (inside the package)."""
    import hashlib

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"zoo-manifest-{digest}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write_manifest(path: Path, entry: WeightsEntry, overwrite: bool) -> WeightsEntry | None:
    """Add ``entry`` to the manifest at ``path`` (atomically); returns the entry it replaced."""
    data = {"format": FORMAT, "weights": []}
    if path.exists():
        data = _read_json(path)
        data.setdefault("weights", [])
    old = None
    kept = []
    for item in data["weights"]:
        if item.get("name") == entry.name and item.get("tag") == entry.tag:
            if not overwrite:
                raise WeightsError(f"{path} already has weights {entry.key}; pass overwrite=True to replace them.")
            old = WeightsEntry.from_json(item, path)
            continue
        kept.append(item)
    kept.append(entry.to_json())
    data["format"] = FORMAT
    data["weights"] = sorted(kept, key=lambda e: (_natural(e["name"]), e["tag"]))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=False)
            fh.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return old


def _wrap_plain(path: Path, name: str, build: Mapping[str, Any], preprocessing: Mapping[str, Any], out: Path) -> None:
    """Save a plain model's weights file as an inference model's (with its preprocessing layer)."""
    from zoo.models import registry as models
    from zoo.weights.preprocess import layer_from_spec

    options = WeightsEntry(name, "x", "0" * 64, file="x", build=build).build_options()
    net = models.build(name, **options)
    _load_into(net, path, f"{name} built with {dict(build)}")
    _inference_model(net, layer_from_spec(preprocessing)).save_weights(out)


def publish_file(path: str | Path, name: str, tag: str, *, build: Mapping[str, Any] | None = None,
                 preprocessing: Mapping[str, Any] | str | None = None, classes: Sequence[str] | None = None,
                 metrics: Mapping[str, Any] | None = None, recipe: Mapping[str, Any] | None = None,
                 source: str = "", description: str = "", license: str | None = None, dtype: str = "float32",
                 url: str | None = None, package: bool = True, manifest: str | Path | None = None,
                 files_dir: str | Path | None = None, overwrite: bool = False, verify: bool = True,
                 shard_bytes: int | None = SHARD_BYTES) -> WeightsEntry:
    """Publish a weights file as ``name:tag``: copy it (cast to ``dtype``), hash it, write the entry.

    ``path`` is an inference model's ``.weights.h5`` (preprocessing layer + model, as
    :mod:`zoo.training.run` and :func:`zoo.weights.convert` write) or a plain model's (wrapped here with
    ``preprocessing``: a manifest record or a preset, ``"torch"`` / ``"caffe"``). ``build`` are
    the :func:`zoo.build` options the file fits; ``build`` and ``preprocessing`` default to those in
    ``<path>.json``, the sidecar :func:`zoo.weights.convert.convert` writes. With ``package=True`` the file goes into
    ``files_dir`` (default: ``files/`` beside the manifest, i.e. inside the package); with
    ``package=False`` into the download cache, and the entry points at ``url`` only (upload the
    file there). ``verify`` loads the published file once through the new entry. A packaged file
    larger than ``shard_bytes`` is stored as shards of at most that size (``None``: never).
    """
    from zoo.models import registry as models
    from zoo.weights.preprocess import spec_for

    name = models.get_entry(name).name
    if not TAG_RE.match(tag):
        raise WeightsError(f"tag {tag!r}: use lower-case letters, digits and _.+- (e.g. 'cifar10').")
    if dtype not in ("float32", "float16"):
        raise WeightsError(f"dtype must be 'float32' or 'float16', got {dtype!r}.")
    if not package and not url:
        raise WeightsError("package=False publishes a URL-only entry: pass url=.")
    if shard_bytes is not None and shard_bytes < 2**20:
        raise WeightsError(f"shard_bytes={shard_bytes}: shards must hold at least 1 MiB (2**20 bytes).")
    manifest = Path(manifest) if manifest is not None else MANIFEST
    if build is None or preprocessing is None:
        sidecar = Path(f"{path}.json")
        if not sidecar.exists():
            raise WeightsError(f"pass build= and preprocessing= for {path} (there is no {sidecar.name} beside it).")
        side = _read_json(sidecar)
        build = side.get("build", {}) if build is None else build
        preprocessing = side.get("preprocessing") if preprocessing is None else preprocessing
        source = source or f"converted from {side.get('source')}"
    prep = spec_for(preprocessing) if isinstance(preprocessing, str) else dict(preprocessing)
    path = Path(path)
    if not path.exists():
        raise WeightsNotFound(f"no weights file at {path}.")
    build = {k: list(v) if isinstance(v, tuple) else v for k, v in dict(build).items()}
    target_dir = Path(files_dir) if files_dir is not None else manifest.parent / "files"
    if not package:
        target_dir = store.cache_dir(create=True)
    target_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".publish-", suffix=".weights.h5", dir=target_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        source_file = path
        if not _h5_summary(path)[1]:
            _wrap_plain(path, name, build, prep, tmp)
            source_file = tmp
        if dtype == "float32" and source_file == path:
            shutil.copyfile(path, tmp)
        elif dtype != "float32":
            staged = tmp.with_suffix(".cast.h5")
            try:
                _cast_h5(source_file, staged, dtype)
                os.replace(staged, tmp)
            finally:
                staged.unlink(missing_ok=True)
        sha = store.sha256_file(tmp)
        final = target_dir / store.cache_name(name, tag, sha)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    size = final.stat().st_size
    file_field, shards = None, None
    if package and shard_bytes is not None and size > shard_bytes:
        shards = [{"file": _manifest_relative(p, manifest), "sha256": store.sha256_file(p), "size": p.stat().st_size}
                  for p in _split_file(final, shard_bytes)]
    elif package:
        file_field = _manifest_relative(final, manifest)
    entry = WeightsEntry(
        name=name, tag=tag, sha256=sha, file=file_field, shards=shards, url=url, size=size, dtype=dtype, build=build,
        classes=list(classes) if classes is not None else None, preprocessing=prep, metrics=dict(metrics or {}),
        recipe=dict(recipe) if recipe is not None else None, source=source, description=description, license=license,
        created=datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        manifest=manifest)
    entry = WeightsEntry.from_json(entry.to_json(), manifest)
    if verify:
        _build_entry_model(entry, fetch(entry, offline=True))
    with _locked(manifest):
        old = _write_manifest(manifest, entry, overwrite)
    if old is not None and old.sha256 != entry.sha256:
        in_use = {p for e in read_manifest(manifest) for p in e.packaged_files()}
        for stale in old.packaged_files():
            if stale.exists() and stale not in in_use and stale.parent.resolve() == target_dir.resolve():
                stale.unlink()
    return entry


def _manifest_relative(path: Path, manifest: Path) -> str:
    try:
        return path.relative_to(manifest.parent).as_posix()
    except ValueError:
        return str(path.resolve())


def _split_file(path: Path, shard_bytes: int) -> list[Path]:
    """Split ``path`` into ``<path>.shard00``, ``.shard01``, ... of at most ``shard_bytes``; delete ``path``."""
    shards = []
    with open(path, "rb") as src:
        while chunk := src.read(shard_bytes):
            shard = path.with_name(f"{path.name}.shard{len(shards):02d}")
            shard.write_bytes(chunk)
            shards.append(shard)
    path.unlink()
    return shards


def publish(run_dir: str | Path, tag: str, *, dtype: str = "float32", url: str | None = None,
            package: bool = True, classes: Sequence[str] | None = None, metrics: Mapping[str, Any] | None = None,
            description: str = "", license: str | None = None, manifest: str | Path | None = None,
            files_dir: str | Path | None = None, overwrite: bool = False, allow_unfinished: bool = False,
            verify: bool = True, shard_bytes: int | None = SHARD_BYTES) -> WeightsEntry:
    """Publish a :mod:`zoo.training.run` run's ``model.weights.h5`` as ``<model>:<tag>``.

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
    data = facts["data"]
    if classes is None:
        classes = data.get("class_names") or KNOWN_CLASSES.get(str(data.get("name", "")).split(":")[0].lower())
    return publish_file(
        run / "model.weights.h5", facts["name"], tag, build=facts["build"], preprocessing=facts["preprocessing"],
        classes=classes, metrics=metrics if metrics is not None else facts["metrics"], recipe=facts["recipe"],
        source=f"zoo.training.run run {facts['recipe'].get('run_name') or run.name}", description=description,
        license=license, dtype=dtype, url=url, package=package, manifest=manifest, files_dir=files_dir,
        overwrite=overwrite, verify=verify, shard_bytes=shard_bytes)



def build(name: str, weights: str | os.PathLike | None = None, **options: Any):
    """:func:`zoo.build` with optional published weights (the hook behind ``zoo.build(name, weights=...)``).

    ``weights=None`` builds with random initialisation (the plain registry build); a tag or path
    loads them with :func:`load_weights` (the model then takes raw 0..255 RGB unless
    ``include_preprocessing=False``).
    """
    from zoo.models import registry as models

    if weights is None:
        return models.build(name, **options)
    return load_weights(name, weights, **options)


__all__ = ["WeightsEntry", "WeightsError", "ChecksumError", "WeightsNotFound", "build", "list_weights",
           "weights_table", "get_weights", "check_weights", "fetch", "load_weights", "publish", "publish_file",
           "read_manifest", "manifest_paths", "run_facts"]
