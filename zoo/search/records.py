"""The files of a search project: ``search.json`` and one ``trial_<id>/zoo_trial.json`` per trial."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from zoo import report as zreport

RECORD = "zoo_trial.json"  # per-trial record, beside keras-tuner's trial.json
SEARCH = "search.json"  # what the project searches; checked on --resume
RUN = "run"  # a trial's run directory (zoo.training.train), inside its trial directory


def now() -> str:
    """The time now, UTC, ISO 8601 to the second (records' ``started`` / ``finished``)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def trial_dir(project_dir: str | Path, trial_id: str) -> Path:
    """Where trial ``trial_id`` of a project keeps its files (keras-tuner's own layout)."""
    return Path(project_dir) / f"trial_{trial_id}"


def read_record(trial_dir: str | Path) -> dict[str, Any] | None:
    """A trial directory's ``zoo_trial.json`` (None when missing or unreadable)."""
    path = Path(trial_dir) / RECORD
    try:
        return zreport.read_json(path)
    except (OSError, ValueError):
        return None


def read_records(project_dir: str | Path) -> list[dict[str, Any]]:
    """Every trial record of a project, in trial order."""
    recs = [read_record(p) for p in sorted(Path(project_dir).glob("trial_*")) if p.is_dir()]
    return sorted((r for r in recs if r), key=lambda r: (len(str(r["trial_id"])), str(r["trial_id"])))


def is_project(path: str | Path) -> bool:
    """Whether ``path`` holds a zoo search (``search.json``) or a keras-tuner project (``oracle.json``)."""
    return (Path(path) / SEARCH).exists() or (Path(path) / "oracle.json").exists()
