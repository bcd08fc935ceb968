"""On-disk cache of decoded image arrays (``.npz`` files).

The cache directory is ``$ZOO_CACHE`` when set, otherwise
``$XDG_CACHE_HOME/zoo/datasets`` (``~/.cache/zoo/datasets``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np

_CHUNK = 1 << 20


def cache_dir() -> Path:
    """Directory holding cached decoded datasets (not created here)."""
    if os.environ.get("ZOO_CACHE"):
        return Path(os.environ["ZOO_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "zoo" / "datasets"


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's contents, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """Arrays stored at ``path``, or ``None`` when missing or unreadable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {key: stored[key] for key in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        warnings.warn(f"ignoring unreadable dataset cache {path}: {exc}", stacklevel=3)
        return None


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` atomically; warn (never fail) if the cache is not writable."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    except OSError as exc:
        warnings.warn(f"could not write dataset cache {path}: {exc}", stacklevel=3)
        return
    try:
        with os.fdopen(handle, "wb") as tmp:
            np.savez(tmp, **arrays)
        os.replace(tmp_name, path)
    except OSError as exc:
        Path(tmp_name).unlink(missing_ok=True)
        warnings.warn(f"could not write dataset cache {path}: {exc}", stacklevel=3)
