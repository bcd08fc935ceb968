"""Upstream weights on disk: first-use download, hash check, conversion, and the cache they live in.

An entry of :mod:`zoo.weights.imagenet` becomes a zoo weights file once, on first use::

    $KERAS_HOME/zoo/weights/upstream/resnet18-f37072fd.pth                 the publisher's file, as published
    $KERAS_HOME/zoo/weights/upstream/resnet18-imagenet.weights.h5          converted: raw RGB -> preprocessing -> net
    $KERAS_HOME/zoo/weights/upstream/resnet18-imagenet.weights.h5.json     build options, preprocessing, its own
                                                                           full sha256, the source's hashes

1. The source is looked for in that folder, then in the caches its publisher's own loader uses
   (``$KERAS_HOME/models/`` for keras.applications, ``$TORCH_HOME/hub/checkpoints/`` for torchvision);
   a file found is checked against the publisher's hash first.
2. Else it is downloaded (a progress bar on stderr) through a temporary ``.part`` file that is renamed
   only once the publisher's hash matched (:func:`zoo.weights.store.download`): a killed or cut
   transfer leaves no file under the final name, and a file with the wrong hash is deleted with a
   message that says so. ``ZOO_WEIGHTS_MIRROR=URL`` downloads the same file names from a mirror.
3. It is converted (:mod:`zoo.weights.convert`) and the converted file stored with its full sha256,
   which is checked before every later use (a mismatch deletes it and converts again).

Offline (``ZOO_OFFLINE=1`` or ``offline=True``) or without network, with nothing cached, the error
is one line naming the URL, the expected file name and the folder a copy downloaded by hand goes in.
User-supplied checkpoints (the FishNet authors') are added with :func:`add_checkpoint` (``zoo weights
add NAME TAG PATH``), which converts once and pins the checkpoint's sha256.

Nothing here imports Keras at module level: ``zoo weights`` lists the entries' state without it.
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

from zoo.weights import store
from zoo.weights.errors import ChecksumError, DownloadError, WeightsError, WeightsNotFound
from zoo.weights.imagenet import Upstream, UpstreamFile, get_upstream, list_upstream

MIRROR_ENV = "ZOO_WEIGHTS_MIRROR"
Progress = bool | Callable[[int, "int | None"], None]


def folder(create: bool = False) -> Path:
    """``$KERAS_HOME/zoo/weights/upstream``: sources as published and their conversions."""
    path = store.cache_dir(create) / "upstream"
    if create:
        path.mkdir(exist_ok=True)
    return path


def url_of(file: UpstreamFile) -> str | None:
    """The file's URL, or the same name under ``$ZOO_WEIGHTS_MIRROR`` when that is set."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if file.url is None or not mirror:
        return file.url
    return f"{mirror.rstrip('/')}/{file.name}"


def converted_path(up: Upstream, file: UpstreamFile) -> Path:
    """Where the conversion of ``file`` is kept (``-notop`` for a headless source)."""
    return folder() / f"{up.name}-{up.tag}{'' if file.include_top else '-notop'}.weights.h5"


def sidecar_of(path: Path) -> Path:
    return Path(f"{path}.json")


def publisher_caches(up: Upstream) -> list[Path]:
    """The folders the publisher's own loader caches files in (searched, never written)."""
    if up.converter == "keras":
        return [Path(os.environ.get("KERAS_HOME") or Path("~") / ".keras").expanduser() / "models"]
    if up.converter == "torchvision":
        xdg = os.environ.get("XDG_CACHE_HOME") or Path("~") / ".cache"
        return [Path(os.environ.get("TORCH_HOME") or Path(xdg) / "torch").expanduser() / "hub" / "checkpoints"]
    return []


# ------------------------------------------------------------------------------- cache state
def read_sidecar(path: Path) -> dict[str, Any] | None:
    """The converted file's record, or ``None`` (missing or unreadable)."""
    try:
        return json.loads(sidecar_of(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _discard(path: Path, why: str) -> None:
    path.unlink(missing_ok=True)
    sidecar_of(path).unlink(missing_ok=True)
    warnings.warn(f"{why}; deleted {path.name}, converting it again.", stacklevel=4)


def converted_ok(up: Upstream, file: UpstreamFile) -> Path | None:
    """The converted file of ``file`` if it is there and still hashes to the sha256 recorded beside it;
    a changed or half-written one is deleted (so it is converted again)."""
    path = converted_path(up, file)
    if not path.exists():
        return None
    record = read_sidecar(path)
    if not record or "sha256" not in record:
        _discard(path, f"{path} has no complete record beside it (an interrupted conversion)")
        return None
    actual = store.sha256_file(path)
    if actual != record["sha256"]:
        _discard(path, f"{path} has sha256 {actual}, not the {record['sha256']} recorded when it was converted")
        return None
    return path


def find_source(up: Upstream, file: UpstreamFile) -> Path | None:
    """A local copy of the published ``file`` that passes the publisher's hash: in :func:`folder`
    (a failing one is deleted, with a warning), then in the publisher's caches (left alone)."""
    if file.hash is None:
        return None
    for place in [folder(), *publisher_caches(up)]:
        path = place / file.name
        if not path.is_file():
            continue
        try:
            store.verify(path, file.hash, what=f"the {up.publisher} file for {up.key}")
            return path
        except ChecksumError as err:
            if place == folder():
                path.unlink()
                warnings.warn(f"{err} It was deleted.", stacklevel=3)
            else:
                warnings.warn(f"{err} Not used.", stacklevel=3)
    return None


def state(up: Upstream) -> str:
    """``converted``, ``downloaded`` (source only), ``by hand`` (to add: user-supplied) or ``remote``:
    from the files present, without hashing them."""
    if any(converted_path(up, f).exists() and sidecar_of(converted_path(up, f)).exists() for f in up.files):
        return "converted"
    if any((p / f.name).is_file() for f in up.files for p in [folder(), *publisher_caches(up)]):
        return "downloaded"
    return "by hand" if up.user_supplied else "remote"


def upstream_table(name: str | None = None) -> list[dict[str, Any]]:
    """Rows for ``zoo weights``: name, tag, publisher, the publisher's top-1, size, state, description."""
    return [{"name": u.name, "tag": u.tag, "publisher": u.publisher, "top1": u.top1, "top5": u.top5,
             "size_mb": u.files[0].size_mb, "where": state(u), "description": u.description()}
            for u in list_upstream(name)]


# ------------------------------------------------------------------------------- first use
def materialize(up: Upstream, *, include_top: bool = True, offline: bool | None = None, timeout: float = 60.0,
                progress: Progress = True) -> Path:
    """The verified converted file of ``up`` for a request with or without the classifier: cached, or
    converted from a local source, or downloaded and converted (see the module docstring)."""
    wanted = up.file(include_top)
    for file in dict.fromkeys([wanted, up.file(True)]):  # a full conversion also serves a headless request
        if (path := converted_ok(up, file)) is not None:
            return path
    if (source := find_source(up, wanted)) is not None:
        return convert_source(up, wanted, source)
    if up.user_supplied:
        raise WeightsNotFound(f"{up.key} are the {up.publisher}' {wanted.name}, which is not directly downloadable: "
                              f"download it from {up.page} and run `zoo weights add {up.name} {up.tag} PATH` "
                              f"(zoo.weights.upstream.add_checkpoint) once.")
    return convert_source(up, wanted, fetch_source(up, wanted, offline=offline, timeout=timeout, progress=progress))


def manual_copy(up: Upstream, file: UpstreamFile, reason: str) -> str:
    """The one-line error of a file that cannot be fetched: the URL, the file name, the folder for a copy."""
    return (f"{reason}, and {up.key} is not cached: download {url_of(file)} by hand and put it in {folder()}/ as "
            f"{file.name} (checked against the publisher's {file.hash}), or run online once.")


def fetch_source(up: Upstream, file: UpstreamFile, *, offline: bool | None = None, timeout: float = 60.0,
                 progress: Progress = True) -> Path:
    """Download the published ``file`` into :func:`folder` (a progress bar unless ``progress=False``;
    a callable gets ``(received, total)``), verified against the publisher's hash."""
    if store.is_offline(offline):
        raise WeightsNotFound(manual_copy(up, file, "offline (ZOO_OFFLINE=1 or offline=True)"))
    dest = folder(create=True) / file.name
    try:
        with download_progress(file.name, progress) as report:
            return store.download(url_of(file), dest, file.hash, timeout=timeout, progress=report)
    except ChecksumError:
        raise
    except DownloadError as err:
        raise WeightsNotFound(manual_copy(up, file, str(err).rstrip("."))) from None


class download_progress:  # noqa: N801 - a context manager used like a function
    """``with download_progress(name, progress) as report:`` a rich progress bar on stderr (``True``),
    nothing (``False``) or the caller's ``progress(received, total)`` callable."""

    def __init__(self, label: str, progress: Progress):
        self.label, self.progress, self.bar, self.task = label, progress, None, None

    def __enter__(self) -> Callable[[int, int | None], None] | None:
        if callable(self.progress):
            return self.progress
        if not self.progress:
            return None
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress as Bar, TextColumn, TransferSpeedColumn

        self.bar = Bar(TextColumn(f"downloading {self.label}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                       DownloadColumn(), TransferSpeedColumn(), console=Console(stderr=True))
        self.bar.start()
        self.task = self.bar.add_task(self.label, total=None)
        return self.update

    def update(self, received: int, total: int | None) -> None:
        self.bar.update(self.task, completed=received, total=total)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()


def convert_source(up: Upstream, file: UpstreamFile, source: Path, *, pinned: dict[str, Any] | None = None) -> Path:
    """Convert the published ``source`` into the zoo's file beside it and record the converted file's
    full sha256 and the source's hashes (``pinned``: extra facts, e.g. a user-supplied checkpoint's path)."""
    from zoo.weights.convert import convert, write_json_atomically  # builds models: Keras only from here on

    out = converted_path(up, file)
    folder(create=True)
    convert(up.converter, up.name, source, out, **dict(up.build))
    record = read_sidecar(out) or {}
    digests = store.file_digests(source, ("sha256", *([store.parse_hash(file.hash)[0]] if file.hash else [])))
    record["sha256"] = store.sha256_file(out)
    record["upstream"] = {"key": up.key, "publisher": up.publisher, "file": file.name, "url": file.url,
                          "published_hash": file.hash, "source_sha256": digests["sha256"],
                          "converted": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                          **(pinned or {})}
    write_json_atomically(sidecar_of(out), record)
    return out


# ------------------------------------------------------------------------------- by hand
def add_checkpoint(name: str, tag: str, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Convert a checkpoint downloaded by hand for upstream entry ``name:tag`` (``zoo weights add``).

    A user-supplied entry (FishNet) pins the checkpoint's sha256: adding another file later is refused
    unless ``overwrite``. A published file (torchvision, Keras) must pass the publisher's hash and is
    copied into :func:`folder`. Returns the converted file.
    """
    up = get_upstream(name, tag)
    src = Path(path).expanduser()
    if not src.is_file():
        raise WeightsNotFound(f"no checkpoint at {src}: give the path of the downloaded {up.files[0].name}.")
    file = up.files[0]
    if file.hash is not None:
        store.verify(src, file.hash, what=f"the {up.publisher} file for {up.key}")
        return convert_source(up, file, _copy_in(src, file.name))
    sha = store.sha256_file(src)
    record = read_sidecar(converted_path(up, file)) or {}
    before = (record.get("upstream") or {}).get("source_sha256")
    if before and before != sha and not overwrite:
        raise WeightsError(f"{up.key} was added from a checkpoint with sha256 {before}; {src} has {sha}. Pass "
                           f"--overwrite (overwrite=True) to replace the pinned checkpoint.")
    return convert_source(up, file, src, pinned={"checkpoint": str(src.resolve()), "pinned_sha256": sha})


def _copy_in(src: Path, name: str) -> Path:
    """Copy a verified file into :func:`folder` under its published name (atomically)."""
    dest = folder(create=True) / name
    if dest.exists() and dest.samefile(src):
        return dest
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        store.make_readable(tmp)
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest
