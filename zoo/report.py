"""Run and evaluation reports: plain data in, files out.

Nothing here knows about Keras or the zoo. A *history* is a list of per-epoch dicts
(``epoch`` counted from 1, then ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``, ...);
a *report* is the JSON-ready dict that :mod:`zoo.training.fit` assembles. Files are written
atomically (temporary file, then rename), so a killed process never leaves half a file behind.
"""
from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import math
import os
import shutil
import signal
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "DiskFullError",
    "atomic_path",
    "fault_point",
    "plot_curves",
    "read_history",
    "read_json",
    "remove_stray_temps",
    "render_eval_markdown",
    "render_run_markdown",
    "write_eval_report",
    "write_history",
    "write_json",
    "write_run_report",
    "write_text",
]

CURVES = "curves.png"


# ------------------------------------------------------------------------------------- plumbing
def write_text(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        fault_point(path.name, Path(tmp))
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        raise_if_disk_full(err, path, needed=len(data))
        raise
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (same folder, same ending: ``.weights.h5`` stays
    ``.weights.h5`` for Keras) to write into; renamed onto ``path`` when the block ends without an
    error, removed otherwise. A kill mid-write leaves ``path`` as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        fault_point(path.name, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # h5py reports a full disk as either, errno in the text
        written = tmp.stat().st_size if tmp.exists() else None
        with contextlib.suppress(OSError):  # free its space now: a writer still holding it open (h5py's file
            os.truncate(tmp, 0)  # object, kept alive by the traceback) then flushes on close instead of crashing
        raise_if_disk_full(err, path, written=written)
        raise
    finally:
        tmp.unlink(missing_ok=True)


class DiskFullError(OSError):
    """A file could not be written for want of disk space (``errno.ENOSPC``); the message names the
    file, the space free and the space the file needs, and says that the same command resumes."""

    def __init__(self, path: Path, needed: int | None = None, written: int | None = None):
        super().__init__(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        try:
            free = shutil.disk_usage(next(p for p in (path.parent, *path.parents) if p.exists())).free
        except (OSError, StopIteration):
            free = None
        before = path.stat().st_size if path.is_file() else None  # the file it replaces: about what it needs
        if needed:
            need = f"{_size(needed)} needed"
        elif before:
            need = f"about {_size(before)} needed (the size of the file it replaces)"
        else:
            need = f"more than {_size(written)} needed (it ran out there)" if written else "more needed"
        self.message = (f"no space left on the device to write {path}: {_size(free)} free there, {need}; free some "
                        f"space and run the same command again (a run resumes after its last finished epoch).")

    def __str__(self) -> str:
        return self.message


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` says the disk is full: ``errno.ENOSPC``, or h5py's text for it."""
    text = str(err)
    return (getattr(err, "errno", None) == errno.ENOSPC or f"errno = {errno.ENOSPC}," in text
            or os.strerror(errno.ENOSPC) in text)


def raise_if_disk_full(err: BaseException, path: Path, needed: int | None = None, written: int | None = None) -> None:
    """Raise :class:`DiskFullError` for ``path`` (from ``err``) when ``err`` is a full disk."""
    if isinstance(err, (OSError, RuntimeError)) and not isinstance(err, DiskFullError) and is_disk_full(err):
        raise DiskFullError(path, needed, written) from err


def _size(count: float | None) -> str:
    if count is None:
        return "unknown"
    for unit in ("B", "KB", "MB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GB"


TEMP_PATTERNS = (".tmp-*", ".*.tmp")  # the temporary names of atomic_path and write_text


def remove_stray_temps(folder: str | Path) -> list[Path]:
    """Delete the temporary files a killed writer left in ``folder`` (not below it); returns them.
    Call it only where no other process is writing (a run directory as its run starts)."""
    stray = sorted({p for pattern in TEMP_PATTERNS for p in Path(folder).glob(pattern) if p.is_file()})
    for p in stray:
        p.unlink(missing_ok=True)
    return stray


# ---------------------------------------------------------------- test hook: fault injection
FAULT_AT, FAULT_LOG = "ZOO_FAULT_AT", "ZOO_FAULT_LOG"
_fault_hits: dict[str, int] = {}


def fault_point(label: str, tmp: Path | None = None) -> None:
    """Test hook (tests/test_fault_injection.py), inert unless ``$ZOO_FAULT_AT`` or
    ``$ZOO_FAULT_LOG`` is set. ``ZOO_FAULT_AT=LABEL[:N][:partial]`` SIGKILLs this process the
    ``N``-th time (default 1) it reaches ``LABEL``, first cutting ``tmp`` to half its size with
    ``partial``. The writers above call it with the name of the file they are about to rename
    into place (the temporary file written, the rename not done); the fit path with ``batch``
    after each training batch. ``ZOO_FAULT_LOG`` names a file every label reached is appended to."""
    if os.environ.get(FAULT_LOG):
        with open(os.environ[FAULT_LOG], "a") as f:
            f.write(label + "\n")
    name, *rest = os.environ.get(FAULT_AT, "").split(":")
    if name != label:
        return
    _fault_hits[label] = _fault_hits.get(label, 0) + 1
    if _fault_hits[label] != (int(rest[0]) if rest and rest[0] else 1):
        return
    if "partial" in rest[1:] and tmp is not None and tmp.exists():
        os.truncate(tmp, tmp.stat().st_size // 2)
    os.kill(os.getpid(), signal.SIGKILL)


def _plain(value: Any) -> Any:
    """JSON-ready copy: NumPy scalars to Python, NaN/Inf to None, tuples to lists, paths to str."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # NumPy scalar or 0-d array
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(data: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``data`` as indented, strict JSON (NaN becomes null)."""
    return write_text(Path(path), json.dumps(_plain(data), indent=2, allow_nan=False) + "\n")


def read_json(path: str | Path) -> dict[str, Any]:
    """Read a JSON report."""
    return json.loads(Path(path).read_text())


# -------------------------------------------------------------------------------------- history
def _number(text: str) -> Any:
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number


def read_history(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``history.csv`` as dicts of numbers (empty list if there is no file)."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [{k: _number(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def write_history(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write per-epoch rows as CSV, ``epoch`` first, columns in order of first appearance."""
    columns: list[str] = ["epoch"]
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _plain(v) for k, v in row.items()})
    return write_text(Path(path), buf.getvalue())


# --------------------------------------------------------------------------------------- curves
def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pairs = [(row["epoch"], row[key]) for row in history if isinstance(row.get(key), (int, float))]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def plot_curves(history: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> Path | None:
    """Loss and accuracy per epoch, train and validation, as a PNG (Agg canvas, no pyplot state).
    Returns ``None`` when the history is empty."""
    if not history:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    for ax, metric in zip(fig.subplots(1, 2), ("loss", "accuracy")):
        for key, label, style in ((metric, "train", "-"), (f"val_{metric}", "validation", "--")):
            x, y = _series(history, key)
            if x:
                ax.plot(x, y, style, marker="o" if len(x) < 30 else None, markersize=3, label=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return write_text(Path(path), buf.getvalue())


# ------------------------------------------------------------------------------------- markdown
def _fmt(value: Any, kind: str = "") -> str:
    if value is None:
        return "—"
    if kind == "%" and isinstance(value, (int, float)):
        return f"{100 * value:.2f}%"
    if kind == "M" and isinstance(value, (int, float)):
        return f"{value / 1e6:.2f} M"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(rows: Iterable[tuple[str, str]]) -> list[str]:
    return ["| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows]]


def _history_table(history: Sequence[Mapping[str, Any]]) -> list[str]:
    columns = [c for c in ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "epoch_time_s",
                           "train_images_per_s") if any(c in row for row in history)]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in history:
        lines.append("| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |")
    return lines


def _yaml_block(data: Any) -> list[str]:
    return ["```yaml", yaml.safe_dump(_plain(data), sort_keys=False, allow_unicode=True).rstrip(), "```"]


def _model_line(model: Mapping[str, Any]) -> str:
    return (f"{model.get('name')} — {_fmt(model.get('params_trainable'), 'M')} trainable parameters, "
            f"{_fmt(model.get('flops'), 'M')} multiply-adds per image")


def render_run_markdown(report: Mapping[str, Any], curves: str | None = CURVES) -> str:
    """A readable summary of a training run's report, linking the curves PNG."""
    model, data = report.get("model", {}), report.get("data", {})
    final, best, timing = report.get("final") or {}, report.get("best") or {}, report.get("timing", {})
    evaluation = report.get("evaluation") or {}
    lines = [f"# {report.get('run_name', 'run')}: {report.get('status', '?')}", ""]
    if report.get("message"):
        lines += [f"> {report['message']}", ""]
    rows = [
        ("model", _model_line(model)),
        ("data", (f"{data.get('name')}: {data.get('num_train')} train / {data.get('num_validation')} "
                  f"validation images, {data.get('num_classes')} classes")),
        ("epochs", f"{final.get('epoch', 0)} of {report.get('epochs')}"),
        ("final val accuracy", _fmt(final.get("val_accuracy"), "%")),
        ("final val loss", _fmt(final.get("val_loss"))),
        ("best val accuracy", f"{_fmt(best.get('val_accuracy'), '%')} (epoch {_fmt(best.get('epoch'))})"),
    ]
    if report.get("weight_averaging"):
        w = report["weight_averaging"]
        rows.append(("final weights", f"mean of epochs {w['start_epoch']}-{w['last_epoch']} ({w['models_averaged']} "
                                      f"models, SWA), BatchNorm statistics recomputed"))
    train = (report.get("recipe") or {}).get("train") or {}
    if train.get("teachers"):
        mirrored = ", images and their mirrors" if train.get("distill_flip") else ""
        rows.append(("distilled from", f"{', '.join(train['teachers'])} (weight {train.get('distill_weight')}, "
                                       f"temperature {train.get('distill_temperature')}{mirrored})"))
    rows += [(f"{split} accuracy / loss (final weights)",
              f"{_fmt(m.get('accuracy'), '%')} / {_fmt(m.get('loss'))}") for split, m in evaluation.items()]
    rows += [(f"{split} accuracy with test-time augmentation ({key.removeprefix('accuracy_tta_')})", _fmt(value, "%"))
             for split, m in evaluation.items() for key, value in m.items() if key.startswith("accuracy_tta_")]
    rows += [("training time", f"{_fmt(timing.get('train_time_s'))} s"),
             ("throughput", f"{_fmt(timing.get('train_images_per_s'))} train images/s")]
    lines += _table(rows) + [""]
    if curves and report.get("history"):
        lines += ["## Curves", "", f"![Loss and accuracy per epoch]({curves})", ""]
    lines += ["## Recipe", ""] + _yaml_block(report.get("recipe", {})) + [""]
    lines += ["## Settings", ""] + _yaml_block(report.get("settings", {})) + [""]
    lines += ["## Environment", ""] + _yaml_block(report.get("environment", {})) + [""]
    if report.get("history"):
        lines += ["## History", ""] + _history_table(report["history"]) + [""]
    return "\n".join(lines)


def write_run_report(report: Mapping[str, Any], directory: str | Path) -> dict[str, Path]:
    """Write ``curves.png`` (when there is a history), ``report.md`` and, last, ``report.json``:
    the JSON marks a finished run, so a kill before it leaves a run that a rerun completes."""
    directory = Path(directory)
    paths = {}
    title = f"{report.get('run_name', '')} ({(report.get('model') or {}).get('name', '')})"
    png = plot_curves(report.get("history") or [], directory / CURVES, title=title)
    if png:
        paths["curves"] = png
    paths["markdown"] = write_text(directory / "report.md",
                                   render_run_markdown(report, CURVES if png else None))
    paths["json"] = write_json(report, directory / "report.json")
    return paths


def render_eval_markdown(report: Mapping[str, Any]) -> str:
    """A readable summary of an evaluation report."""
    model, data, metrics = report.get("model", {}), report.get("data", {}), report.get("metrics", {})
    lines = [f"# Evaluation of {report.get('weights', '?')}", ""]
    rows = [
        ("model", _model_line(model)),
        ("data", f"{data.get('name')} split {report.get('split')!s}: {data.get('num_examples')} images"),
    ]
    rows += [(name, _fmt(value, "%" if "accuracy" in name or name.startswith("top") else ""))
             for name, value in metrics.items()]
    rows += [("time", f"{_fmt(report.get('timing', {}).get('eval_time_s'))} s"),
             ("throughput", f"{_fmt(report.get('timing', {}).get('images_per_s'))} images/s")]
    lines += _table(rows) + [""]
    lines += ["## Environment", ""] + _yaml_block(report.get("environment", {})) + [""]
    return "\n".join(lines)


def write_eval_report(report: Mapping[str, Any], directory: str | Path,
                      stem: str = "eval_report") -> dict[str, Path]:
    """Write ``eval_report.json`` and ``eval_report.md``."""
    directory = Path(directory)
    return {"json": write_json(report, directory / f"{stem}.json"),
            "markdown": write_text(directory / f"{stem}.md", render_eval_markdown(report))}
