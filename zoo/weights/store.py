"""Weight files on disk: sha256, the download cache, verified downloads, and :func:`fetch`, which
finds an entry's verified file (packaged, joined from packaged shards, cached, or downloaded).

The cache lives in ``$KERAS_HOME/zoo/weights/`` (``KERAS_HOME`` defaults to ``~/.keras``, as for
Keras itself). Cached names are unique per published file: ``<name>-<tag>-<sha256[:8]>.weights.h5``.

A download goes to a temporary ``.part`` file in the cache directory, is hashed while it streams,
and is renamed onto its final name (atomic on one filesystem) only once its sha256 matches; a file
that fails the check is deleted. So a name in the cache is either absent or a complete file, and
every file is hashed again before each use.

``keras.utils.get_file`` is not used: it writes to the final path directly and keeps a file that
fails its hash check, which is what this module exists to avoid.

A published hash is 64 hex digits (a sha256) or ``"<algorithm>:<hex>"``, whose hex may be a prefix:
torchvision publishes the first 8 digits of a file's sha256 in its name (``resnet18-f37072fd.pth``,
checked as ``torch.hub`` does), keras.applications an md5 (``file_hash``) — see :func:`parse_hash`.
Files written here get the mode a plain ``open`` would give (0666 less the umask), not
``mkstemp``'s 0600.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import time
import warnings
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable

from zoo.weights.errors import ChecksumError, DownloadError, WeightsError, WeightsNotFound

CHUNK = 1 << 20
OFFLINE_ENV = "ZOO_OFFLINE"
STALE_PART_SECONDS = 24 * 3600
HEX = frozenset("0123456789abcdef")


def is_offline(offline: bool | None = None) -> bool:
    """``offline`` if given, else the ``ZOO_OFFLINE`` environment variable (1/true/yes/on)."""
    if offline is not None:
        return bool(offline)
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def cache_dir(create: bool = False) -> Path:
    """``$KERAS_HOME/zoo/weights`` (``KERAS_HOME`` defaults to ``~/.keras``)."""
    base = Path(os.environ.get("KERAS_HOME") or Path("~") / ".keras").expanduser()
    path = base / "zoo" / "weights"
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise WeightsError(f"cannot create the weights cache {path} ({err}); set KERAS_HOME to a writable "
                               f"directory.") from None
    return path


def cache_name(name: str, tag: str, sha256: str) -> str:
    """The cache file name of a published file: ``<name>-<tag>-<sha256[:8]>.weights.h5``."""
    return f"{name}-{tag}-{sha256[:8].lower()}.weights.h5"


def sha256_file(path: str | Path) -> str:
    """The sha256 (hex) of a file, read in full every time (no memo: a file rewritten in place within
    the filesystem's timestamp resolution must not pass on an old digest)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_hash(published: str) -> tuple[str, str]:
    """``(algorithm, hex digits)`` of a published hash: 64 hex digits are a sha256; else
    ``"<algorithm>:<hex>"`` (``"sha256:f37072fd"``: a prefix, ``"md5:<32 hex>"``)."""
    text = published.strip().lower()
    algorithm, sep, digits = text.partition(":")
    if not sep:
        algorithm, digits = "sha256", text
    if algorithm not in hashlib.algorithms_guaranteed or not digits or any(c not in HEX for c in digits):
        raise WeightsError(f"published hash {published!r}: expected 64 hex digits or '<algorithm>:<hex>' "
                           f"(e.g. 'sha256:f37072fd', 'md5:64373286793e3c8b2b4e3219cbf3544b').")
    return algorithm, digits


def hash_matches(digests: dict[str, str], published: str) -> bool:
    """Whether the full hex ``digests`` (by algorithm) match ``published`` (a prefix is enough)."""
    algorithm, digits = parse_hash(published)
    return digests[algorithm].startswith(digits)


def file_digests(path: str | Path, algorithms: tuple[str, ...] = ("sha256",)) -> dict[str, str]:
    """The hex digests of a file for each of ``algorithms``, read once."""
    hashers = {a: hashlib.new(a) for a in dict.fromkeys(algorithms)}
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            for h in hashers.values():
                h.update(block)
    return {a: h.hexdigest() for a, h in hashers.items()}


def verify(path: str | Path, sha256: str, *, what: str = "weights file") -> None:
    """Raise :class:`ChecksumError` unless ``path`` hashes to ``sha256`` (or to a published hash of
    :func:`parse_hash`'s forms)."""
    algorithm, digits = parse_hash(sha256)
    actual = file_digests(path, (algorithm,))[algorithm]
    if not actual.startswith(digits):
        raise ChecksumError(f"{what} {path} has {algorithm} {actual}, but {digits} is published: the file is "
                            f"corrupted or not the published one.")


def current_umask() -> int:
    """The process umask (read from /proc where it can be, so that it is never changed, even briefly)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_readable(path: str | Path) -> None:
    """Give a ``mkstemp`` file (mode 0600) the mode a plain ``open`` would: 0666 less the umask."""
    os.chmod(path, 0o666 & ~current_umask())


def _clean_stale_parts(folder: Path) -> None:
    """Remove ``.part`` files older than a day (left by killed downloads; never used)."""
    now = time.time()
    for part in folder.glob(".*.part"):
        try:
            if now - part.stat().st_mtime > STALE_PART_SECONDS:
                part.unlink()
        except OSError:
            pass


def download(url: str, dest: str | Path, sha256: str, *, timeout: float = 60.0,
             progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Download ``url`` to ``dest`` through a temporary file in the same directory.

    The file is renamed onto ``dest`` only after its hash matched ``sha256`` (64 hex digits, or a
    published hash of :func:`parse_hash`'s forms); on any failure (HTTP error, truncated transfer,
    wrong hash, interruption) the temporary file is removed and ``dest`` is not touched. ``file://``
    URLs work (tests, mirrors on shared disks). ``progress(received, total or None)`` is called per block.
    """
    algorithm, digits = parse_hash(sha256)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_parts(dest.parent)
    scheme = urllib.parse.urlparse(url).scheme.lower()
    if scheme not in ("http", "https", "file"):
        raise DownloadError(f"cannot download {url!r}: only http, https and file URLs are supported.")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest, received = hashlib.new(algorithm), 0
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "zoo-weights"})
            with urllib.request.urlopen(request, timeout=timeout) as response, os.fdopen(fd, "wb") as out:
                fd = -1
                length = response.headers.get("Content-Length")
                expected = int(length) if length and length.isdigit() else None
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    digest.update(block)
                    received += len(block)
                    if progress:
                        progress(received, expected)
                out.flush()
                os.fsync(out.fileno())
        except urllib.error.HTTPError as err:
            raise DownloadError(f"downloading {url} failed (HTTP {err.code} {err.reason}); nothing was written to "
                                f"{dest}.") from None
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as err:
            reason = getattr(err, "reason", None) or err
            if isinstance(err, http.client.IncompleteRead):  # the connection closed before Content-Length
                reason = f"the transfer stopped after {received} bytes of {expected}; the partial file was deleted"
            raise DownloadError(f"downloading {url} failed ({reason}); nothing was written to {dest}.") from None
        if expected is not None and received != expected:
            raise DownloadError(f"downloading {url} stopped after {received} of {expected} bytes; the partial "
                                f"file was deleted.")
        actual = digest.hexdigest()
        if not actual.startswith(digits):
            raise ChecksumError(f"the file downloaded from {url} has {algorithm} {actual}, but {digits} is "
                                f"published; it was deleted. The URL serves another file, or the entry is wrong.")
        make_readable(tmp)
        os.replace(tmp, dest)
        return dest
    finally:
        if fd != -1:
            os.close(fd)
        if tmp.exists():
            tmp.unlink()


# ----------------------------------------------------------------------- an entry's file
def join_shards(entry: Any, dest: Path) -> Path:
    """Verify ``entry``'s shards one by one, join them into ``dest`` atomically, verify the whole."""
    for shard, path in zip(entry.shards or (), entry.shard_files()):
        verify(path, shard["sha256"], what=f"shard {path.name} of {entry.key}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".join", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for path in entry.shard_files():
                with open(path, "rb") as src:
                    shutil.copyfileobj(src, out, 2**20)
        verify(tmp, entry.sha256, what=f"the joined shards of {entry.key}")
        make_readable(tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _from_cache(entry: Any, cached: Path, offline: bool | None) -> Path | None:
    """The verified cached file; a corrupted one is deleted (then the shards are joined again, or
    ``None`` asks for a download)."""
    try:
        verify(cached, entry.sha256, what=f"cached weights of {entry.key}")
        return cached
    except ChecksumError as err:
        cached.unlink(missing_ok=True)
        message = f"{err} The cached file was deleted."
        if entry.shards and all(p.exists() for p in entry.shard_files()):
            warnings.warn(message + " Joining the packaged shards again.", stacklevel=4)
            return join_shards(entry, cached)
        if not entry.url or is_offline(offline):
            raise ChecksumError(message + (" Run again online to download it." if entry.url else "")) from None
        warnings.warn(message + f" Downloading it again from {entry.url}.", stacklevel=4)
        return None


def fetch(entry: Any, *, offline: bool | None = None, timeout: float = 60.0) -> Path:
    """A verified local file for a :class:`~zoo.weights.entries.WeightsEntry`: its packaged/local
    file, else the cache (where packaged shards are joined), else a download."""
    local, cached, shards = entry.local_file(), entry.cache_path(), entry.shard_files()
    if local is not None and local.exists():
        verify(local, entry.sha256, what=f"weights file of {entry.key}")
        return local
    if cached.exists() and (found := _from_cache(entry, cached, offline)) is not None:
        return found
    if shards and all(p.exists() for p in shards):
        return join_shards(entry, cached)
    looked = " and ".join([*map(str, shards), *([str(local)] if local is not None else []), str(cached)])
    if not entry.url:
        raise WeightsNotFound(f"the weights file {cached.name} of {entry.key} is missing: looked at {looked}, and "
                              f"the entry has no URL.")
    if is_offline(offline):
        raise WeightsNotFound(f"offline (ZOO_OFFLINE / offline=True) and the weights file {cached.name} of {entry.key} "
                              f"is not available locally: looked at {looked}. Go online to download it from "
                              f"{entry.url}, or copy it to {cached}.")
    cache_dir(create=True)
    return download(entry.url, cached, entry.sha256, timeout=timeout)
