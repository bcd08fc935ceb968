"""The device policy's cache: ``$KERAS_HOME/zoo/device-policy.json``, one calibrated decision per
machine fingerprint, library versions and workload, written atomically; an unreadable file is
reported and recalibrated, an unwritable one keeps its decisions for the process and warns once."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from zoo import report as zreport

__all__ = ["CACHE_FORMAT", "kept", "policy_cache_file", "read_cache", "store"]


def policy_cache_file() -> Path:
    """``$KERAS_HOME/zoo/device-policy.json`` (``KERAS_HOME`` defaults to ``~/.keras``, as for Keras)."""
    return Path(os.environ.get("KERAS_HOME") or Path("~") / ".keras").expanduser() / "zoo" / "device-policy.json"


CACHE_FORMAT = 1
_UNSTORED: dict[tuple[str, str], dict[str, Any]] = {}  # (cache file, key) -> decisions this process could not write
_WARNED: set[str] = set()  # cache files whose write failure was reported


def read_cache(path: Path) -> tuple[dict[str, Any], str | None]:
    """``(entries, note)``: the cached calibrations by key; a note, and no entries, when the file is unreadable."""
    if not path.is_file():
        return {}, None
    try:
        data = json.loads(path.read_text())
        entries = data["entries"]
        if data.get("format") != CACHE_FORMAT or not isinstance(entries, dict):
            raise ValueError(f"not a format-{CACHE_FORMAT} device-policy cache")
        return entries, None
    except (OSError, ValueError, KeyError, TypeError) as err:
        return {}, f"the device-policy cache {path} is unreadable ({type(err).__name__}: {err}); calibrating again"


def store(path: Path, key: str, record: dict[str, Any]) -> bool:
    """Add ``record`` to the cache file (re-read first: another process may have written it);
    where it cannot be written, keep it for this process, warn once and return ``False``."""
    entries, _ = read_cache(path)
    entries[key] = record
    try:
        zreport.write_text(path, json.dumps({"format": CACHE_FORMAT, "entries": entries}, indent=2) + "\n")
        return True
    except OSError as err:
        _UNSTORED[(str(path), key)] = record
        if str(path) not in _WARNED:
            _WARNED.add(str(path))
            print(f"zoo: warning: cannot write the device-policy cache {path} ({err}); its decisions hold for this "
                  "process only (set KERAS_HOME to a writable folder)", file=sys.stderr, flush=True)
        return False


def kept(path: Path, key: str) -> dict[str, Any] | None:
    """A decision this process made but could not write to ``path``."""
    return _UNSTORED.get((str(path), key))
