"""A search's project directory: created, resumed or overwritten only when asked, and its role.

The project directory (default ``runs/tune/<recipe>-<model>``) holds keras-tuner's own state, the
zoo's ``search.json`` and the trial directories. An existing project without ``resume`` or
``overwrite`` is an error; ``resume`` with a different recipe, space, oracle or budget is an error
too (``max_trials`` may grow, a comparison may add variants after its saved ones); a directory
that is not a search is never used or deleted.

Chief and workers (keras-tuner's distributed mode) are told apart by keras-tuner's environment
variables: ``KERASTUNER_ORACLE_IP``/``_PORT`` and ``KERASTUNER_TUNER_ID`` (an ID containing
"chief" for the chief).
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zoo import report as zreport
from zoo.search.errors import ProjectExistsError, TuneError
from zoo.search.records import SEARCH, is_project, now, read_records
from zoo.training import Recipe, same_experiment

__all__ = ["default_project", "prepare_project", "role", "variant_id"]

CHECKED = ("kind", "space", "oracle", "budget", "seed", "uniform_first", "variants", "latency")  # equal on resume


def role() -> str:
    """``standalone``, ``chief`` or ``worker`` (keras-tuner's environment variables)."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "standalone"
    if "KERASTUNER_ORACLE_PORT" not in os.environ or "KERASTUNER_TUNER_ID" not in os.environ:
        raise TuneError("KERASTUNER_ORACLE_IP is set, so this is distributed tuning: set KERASTUNER_ORACLE_PORT "
                        "and KERASTUNER_TUNER_ID too (an ID containing 'chief' for the chief, e.g. tuner0 for workers).")
    return "chief" if "chief" in os.environ["KERASTUNER_TUNER_ID"] else "worker"


def default_project(recipe: Recipe, suffix: str = "") -> Path:
    """``<output.runs_dir>/tune/<recipe>-<model><suffix>``."""
    return Path(recipe.output.runs_dir) / "tune" / f"{recipe.run_name}{suffix}"


def prepare_project(project_dir: str | Path, description: Mapping[str, Any], *, resume: bool, overwrite: bool) -> bool:
    """Check (and with ``overwrite`` empty) the project directory, then write ``search.json``.
    Returns whether an existing search is being resumed."""
    if resume and overwrite:
        raise TuneError("pass either --resume (continue the search) or --overwrite (start again), not both.")
    path = Path(project_dir)
    exists = path.is_dir() and any(path.iterdir())
    if exists and not is_project(path):
        raise TuneError(f"{path} exists and is not a zoo tune project (no {SEARCH}); refusing to use or delete it. "
                        f"Choose another --project-dir.")
    if exists and overwrite:
        shutil.rmtree(path)
    elif exists and not resume:
        raise ProjectExistsError(
            f"{path} already holds a search ({len(read_records(path))} finished trial(s)). Pass --resume to "
            f"continue it, --overwrite to delete it and start again, or choose another --project-dir.")
    elif exists:
        _check_same_search(path, description)
    path.mkdir(parents=True, exist_ok=True)
    zreport.write_json({**description, "updated": now()}, path / SEARCH)
    return exists and not overwrite


def _check_same_search(path: Path, description: Mapping[str, Any]) -> None:
    saved = zreport.read_json(path / SEARCH) if (path / SEARCH).exists() else None
    diffs = differences(saved, description) if saved is not None else []
    if diffs:
        raise TuneError(f"cannot resume {path}: it searches something else ({'; '.join(diffs[:6])}). "
                        f"Pass --overwrite to start again or choose another --project-dir.")


def differences(saved: Mapping[str, Any], now_: Mapping[str, Any]) -> list[str]:
    """What a resumed search would change: recipe fields and the :data:`CHECKED` keys."""
    diffs = []
    try:
        diffs += same_experiment(saved["recipe"], now_["recipe"])
    except KeyError:
        diffs.append("the saved search has no recipe")
    for key in CHECKED:
        a, b = (json.loads(json.dumps(x, default=str)) for x in (saved.get(key), now_.get(key)))
        if key == "variants" and extends(a, b):
            continue
        if a != b:
            diffs.append(f"{key}: {a!r} -> {b!r}")
    return diffs


def extends(saved: Any, now_: Any) -> bool:
    """Whether a comparison's variants ``now_`` keep every saved variant, unchanged and in its place,
    and only add new ones after them (e.g. a second seed or learning rate): resuming runs just those."""
    if not isinstance(saved, dict) or not isinstance(now_, dict) or len(now_) < len(saved):
        return False
    return list(now_.items())[:len(saved)] == list(saved.items())


def variant_id(project: str | Path, index: int, count: int) -> str:
    """Trial id of a comparison's ``index``-th variant: zero-padded to the count of variants, or the
    id it already has in ``project`` (a comparison extended past 10 variants keeps ``trial_3``)."""
    for width in range(1, len(str(count)) + 1):
        if (Path(project) / f"trial_{index:0{width}d}").is_dir():
            return f"{index:0{width}d}"
    return f"{index:0{len(str(count))}d}"
