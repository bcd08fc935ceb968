"""Benchmark results as CSV rows: ``results/benchmarks/<name>.csv``, with the machine, versions,
settings and date of each row, so a figure is always read beside where it was measured."""
from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from zoo import report as zreport
from zoo.bench.checks import BenchError

__all__ = ["CSV_COLUMNS", "RESULTS_DIR", "append_csv", "default_csv"]

RESULTS_DIR = Path("results") / "benchmarks"
CSV_COLUMNS = (
    "date", "name", "impl", "mode", "samples_per_sec", "samples_per_sec_mean", "step_ms_median", "step_ms_p90",
    "batch_size", "precision", "dtype_policy", "jit_compile", "steps", "warmup", "build_options", "params", "flops",
    "flops_per_sample", "achieved_gflops", "peak_gflops", "peak_fraction", "peak_rss_mb", "peak_gpu_mb",
    "machine", "cpu", "cores", "device", "python", "tensorflow", "keras", "numpy", "onednn",
    "intra_op_threads", "inter_op_threads", "git_commit",
)


def default_csv(name: str) -> Path:
    """``results/benchmarks/<name>.csv`` (relative to the working directory, like ``runs/``)."""
    return RESULTS_DIR / f"{name}.csv"


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else ""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True)
    return "" if value is None else value


def _flat_row(result: Mapping[str, Any]) -> dict[str, Any]:
    row = {k: v for k, v in result.items() if k not in ("environment", "step_times_ms", "flops_convention")}
    for key, value in (result.get("environment") or {}).items():
        row.setdefault(key, value)  # a worker's own setting (e.g. onednn) wins over the parent's
    return row


def _read_csv(path: Path) -> tuple[list[dict[str, str]], list[str]]:
    if not (path.is_file() and path.stat().st_size):
        return [], []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader), list(reader.fieldnames or [])


def append_csv(result: Mapping[str, Any] | Sequence[Mapping[str, Any]], path: str | Path | None = None) -> Path:
    """Append one result (or several) of :func:`zoo.bench.bench`/``sweep``/``bench_peers``/
    ``bench_pipeline`` to ``path`` (default :func:`default_csv` of the result's name). A file with
    other columns is rewritten with the union of the columns (old rows keep empty cells), atomically."""
    rows = [_flat_row(result)] if isinstance(result, Mapping) else [_flat_row(r) for r in result]
    if not rows:
        raise BenchError("append_csv got no results to write.")
    path = Path(path) if path is not None else default_csv(str(rows[0]["name"]))
    old_rows, old_columns = _read_csv(path)
    columns = old_columns + [c for c in CSV_COLUMNS if any(c in r for r in rows) and c not in old_columns]
    for r in rows:
        columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(old_rows)
    writer.writerows({k: _cell(v) for k, v in r.items()} for r in rows)
    zreport.write_text(path, buf.getvalue())
    return path
