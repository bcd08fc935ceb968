"""Published weights as data: a manifest of (model name, tag) entries, read, listed and written here.

An entry (one object in ``manifest.json``'s ``weights`` list)::

    {"name": "resnet20", "tag": "cifar10", "description": "...",
     "file": "files/resnet20-cifar10-1a2b3c4d.weights.h5",     # packaged (relative to the manifest) or a local path
     "url": "https://.../resnet20-cifar10-1a2b3c4d.weights.h5",  # optional download location
     "sha256": "<64 hex>", "size": 1103752, "dtype": "float16",
     "build": {"num_classes": 10, "input_shape": [32, 32, 3]},  # zoo.build options of the published model
     "classes": ["airplane", ...],
     "preprocessing": {"kind": "per_channel", "input": "RGB, 0..255, channels last", "layer": {...}},
     "metrics": {"test": {"accuracy": 0.9125}}, "recipe": {"name": "resnet20-paper", ...},
     "source": "zoo train run resnet20-paper-resnet20", "license": null, "created": "2025-01-01T00:00:00Z"}

A file larger than :data:`SHARD_BYTES` is packaged as *shards* instead of ``file``: consecutive byte
ranges ``files/<name>-<tag>-<sha8>.weights.h5.shard00`` ... each with its own sha256 and size
(``"shards": [{"file": ..., "sha256": ..., "size": ...}, ...]``), so that no committed file exceeds the
repository's size limit. Loading verifies every shard, joins them into the cache and verifies the
whole file against ``sha256``.

Every weights file is the weights of the *inference model* ``raw RGB -> preprocessing layer -> zoo
model`` (what :mod:`zoo.training.fit` saves as ``model.weights.h5``): the normalisation travels with
the weights (fitted statistics in the file, the layer's Keras serialization in the entry), and
``zoo.build(name, weights=TAG, include_preprocessing=True)`` returns the model with it.

Where a file is looked for, in order: the packaged/local ``file``; the cache
(``$KERAS_HOME/zoo/weights/<name>-<tag>-<sha256[:8]>.weights.h5``); the ``url`` (downloaded into the
cache unless offline: ``offline=True`` or ``ZOO_OFFLINE=1``). Every file is hashed before use.

Manifests: the packaged ``zoo/weights/manifest.json``, then any listed in ``ZOO_WEIGHTS_MANIFEST``
(``os.pathsep``-separated); a later manifest's entry replaces an earlier one with the same name and tag.

Loading is :mod:`zoo.weights.loading`, fetching files :mod:`zoo.weights.store`, publishing
:mod:`zoo.weights.publishing`. Nothing here imports Keras: ``zoo weights`` lists entries without it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from zoo.errors import did_you_mean
from zoo.weights import store
from zoo.weights.errors import WeightsError

MANIFEST = Path(__file__).with_name("manifest.json")
MANIFEST_ENV = "ZOO_WEIGHTS_MANIFEST"
FORMAT = 1
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
TAG_RE = re.compile(r"^[a-z0-9][a-z0-9_.+-]*$")
SHARD_BYTES = 16 * 2**20  # packaged files above this are split into shards of at most this size
SHAPE_OPTIONS = ("input_shape", "out_indices")  # build options that are tuples (lists in JSON)

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
KNOWN_CLASSES = {"cifar10": CIFAR10_CLASSES}


def build_options(build: Mapping[str, Any]) -> dict[str, Any]:
    """A manifest's ``build`` record as ``zoo.build`` options (JSON lists back to tuples)."""
    return {k: tuple(v) if k in SHAPE_OPTIONS and isinstance(v, list) else v for k, v in build.items()}


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

    def _resolve(self, name: str) -> Path:  # a manifest's file names are relative to its folder
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
        """Where the download cache keeps (or would keep) this entry's file."""
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
        """The ``zoo.build`` options the file fits."""
        return build_options(self.build)

    def to_json(self) -> dict[str, Any]:
        """The manifest record (every field but ``manifest``)."""
        out = {}
        for f in fields(self):
            if f.name == "manifest":
                continue
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any], manifest: Path | None = None, where: str = "") -> "WeightsEntry":
        """The entry of a manifest record, every field checked (``where`` names the record in errors)."""
        known = {f.name for f in fields(cls)} - {"manifest"}
        extra = sorted(set(data) - known)
        if extra:
            raise WeightsError(f"weights entry{where} has unknown fields {extra}; known: {sorted(known)}.")
        for key in ("name", "tag", "sha256"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise WeightsError(f"weights entry{where} needs a string {key!r}.")
        entry = cls(**{**data, "sha256": data["sha256"].lower()}, manifest=manifest)
        entry._check(f" {entry.key}{where}")
        return entry

    def _check(self, where: str) -> None:
        if not SHA256_RE.match(self.sha256):
            raise WeightsError(f"weights entry{where}: sha256 must be 64 hex digits, got {self.sha256!r}.")
        if not TAG_RE.match(self.tag):
            raise WeightsError(f"weights entry{where}: a tag is lower-case letters, digits and _.+-.")
        if not self.file and not self.url and not self.shards:
            raise WeightsError(f"weights entry{where} has neither a 'file', 'shards' nor a 'url'.")
        if self.file and self.shards:
            raise WeightsError(f"weights entry{where} has both a 'file' and 'shards': keep one.")
        for i, shard in enumerate(self.shards or ()):
            if not (isinstance(shard, Mapping) and isinstance(shard.get("file"), str)
                    and SHA256_RE.match(str(shard.get("sha256", ""))) and isinstance(shard.get("size"), int)):
                raise WeightsError(f"weights entry{where}: shard #{i} needs a 'file', a 64-hex 'sha256' "
                                   f"and an integer 'size', got {shard!r}.")
        if not isinstance(self.build, Mapping):
            raise WeightsError(f"weights entry{where}: 'build' must be a mapping of build options.")


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


def entries() -> dict[tuple[str, str], WeightsEntry]:
    """Every entry of every manifest by (name, tag); a later manifest's entry replaces an earlier one."""
    out: dict[tuple[str, str], WeightsEntry] = {}
    for path in manifest_paths():
        for entry in read_manifest(path):
            out[(entry.name, entry.tag)] = entry
    return out


def natural_key(text: str) -> list:
    """Sort key putting resnet20 before resnet110."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def list_weights(name: str | None = None) -> list[WeightsEntry]:
    """Published weights, sorted by model name and tag; only ``name``'s when given."""
    key = None if name is None else name.strip().lower()
    rows = [e for (n, _), e in entries().items() if key is None or n == key]
    return sorted(rows, key=lambda e: (natural_key(e.name), e.tag))


def weights_table(name: str | None = None) -> list[dict[str, Any]]:
    """Rows for ``zoo weights [NAME]``: name, tag, headline metric (``89.62% holdout``: accuracy and the split
    it was measured on), dtype, size, where the file is."""
    rows = []
    for e in list_weights(name):
        rows.append({"name": e.name, "tag": e.tag, "metric": headline(e.metrics), "dtype": e.dtype,
                     "size_mb": round(e.size / 2**20, 2) if e.size else None, "where": e.where(),
                     "sha256": e.sha256[:12], "description": e.description})
    return rows


def headline(metrics: Mapping[str, Any]) -> str:
    """``"89.62% holdout"``: the accuracy of the first split of test, validation, holdout that has one."""
    for split in ("test", "validation", "holdout"):
        m = metrics.get(split)
        if isinstance(m, Mapping) and "accuracy" in m:
            return f"{100 * m['accuracy']:.2f}% {split}"
    return ""


def get_weights(name: str, tag: str) -> WeightsEntry:
    """The entry of ``name`` with ``tag``; unknown tags list the available ones."""
    key = name.strip().lower()
    published = entries()
    if (key, tag) in published:
        return published[(key, tag)]
    tags = sorted(t for n, t in published if n == key)
    if tags:
        raise WeightsError(f"no weights {tag!r} for {key}.{did_you_mean(tag, tags)} Available tags for {key}: "
                           f"{', '.join(tags)}.")
    with_weights = sorted({n for n, _ in published})
    raise WeightsError(f"no published weights for {key!r} (tag {tag!r}). Models with weights: "
                       f"{', '.join(with_weights) or 'none yet'}. A local file or run directory path also works.")


# --------------------------------------------------------------------- manifest files
def read_json(path: Path) -> dict[str, Any]:
    """A JSON file's object; an unreadable file is a :class:`WeightsError` naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise WeightsError(f"cannot read {path}: {err}") from None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock for read-modify-write of the manifest at ``path`` (POSIX; no-op elsewhere).
    The lock file lives in the temporary directory, not beside the manifest (inside the package)."""
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


def write_manifest(path: Path, entry: WeightsEntry, overwrite: bool) -> WeightsEntry | None:
    """Add ``entry`` to the manifest at ``path`` (atomically, under a lock); returns the entry it replaced."""
    with _locked(path):
        return _replace_in_manifest(path, entry, overwrite)


def _replace_in_manifest(path: Path, entry: WeightsEntry, overwrite: bool) -> WeightsEntry | None:
    data = {"format": FORMAT, "weights": []}
    if path.exists():
        data = read_json(path)
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
    data["weights"] = sorted(kept, key=lambda e: (natural_key(e["name"]), e["tag"]))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=False)
            fh.write("\n")
        store.make_readable(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return old
