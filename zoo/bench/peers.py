"""``zoo bench --peers``: zoo's networks against the same networks elsewhere, interleaved.

- ``resnet20`` (batch 128, 32×32): zoo vs PyTorch eager channels-last
  (:mod:`zoo.bench.torch_resnet`, the same option-A network);
- ``resnet50`` (batch 32, 224×224): zoo (torchvision layout), zoo ``layout="keras"``,
  ``keras.applications.ResNet50`` and PyTorch channels-last.

Each implementation runs in its own process; results go to ``results/benchmarks/peers.csv``.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from zoo.bench.checks import BenchError, check_common, thread_env
from zoo.bench.machine import environment_row, peak_value
from zoo.bench.results import append_csv, default_csv
from zoo.bench.rounds import Entry, format_table, interleave, print_line, summarise
from zoo.bench.timing import flops_fields
from zoo.training.device import resolve_precision

__all__ = ["PEER_BATCH", "PEER_GROUPS", "bench_peers"]

PEER_GROUPS = {
    "resnet20": [
        ("zoo resnet20", {"impl": "zoo", "name": "resnet20"}),
        ("torch resnet20 channels-last", {"impl": "torch", "name": "resnet20"}),
    ],
    "resnet50": [
        ("zoo resnet50", {"impl": "zoo", "name": "resnet50"}),
        ("zoo resnet50 layout=keras", {"impl": "zoo", "name": "resnet50", "options": {"layout": "keras"}}),
        ("keras.applications.ResNet50", {"impl": "keras_app", "name": "ResNet50"}),
        ("torch resnet50 channels-last", {"impl": "torch", "name": "resnet50"}),
    ],
}
PEER_BATCH = {"resnet20": 128, "resnet50": 32}


def _check_peers(groups: Sequence[str], mode: str, precision: str, steps: int, warmup: int, torch: bool) -> None:
    check_common(mode, 1, steps, warmup)
    resolve_precision(precision)
    unknown = [g for g in groups if g not in PEER_GROUPS]
    if unknown or not groups:
        raise BenchError(f"peer groups must be among {', '.join(PEER_GROUPS)}, got {list(groups)}.")
    if torch and importlib.util.find_spec("torch") is None:
        raise BenchError("PyTorch is not installed: pip install torch==2.13.0 (the CPU build), "
                         "or pass torch=False / --no-torch.")


def _group_rows(group: str, entries: Sequence[Entry], mode: str, peak: float | None, threads: int | None,
                env: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = [summarise(e, mode, peak) for e in entries]
    zoo_flops, ref = rows[0]["flops"], rows[0]["samples_per_sec"]
    for r in rows:
        if r["flops"] is None and zoo_flops is not None:  # the same network: the zoo model's count
            r.update(flops_fields(zoo_flops, mode, r["samples_per_sec"], peak))
        r.update(group=group, impl_label=r.pop("key"), name="peers", model=r["name"], threads=threads,
                 vs_zoo=r["samples_per_sec"] / ref, zoo_vs=ref / r["samples_per_sec"], environment=env)
    return rows


def bench_peers(groups: Sequence[str] = ("resnet20", "resnet50"), *, mode: str = "train", precision: str = "fp32",
                steps: int = 10, warmup: int = 3, repeats: int = 3, batch_sizes: Mapping[str, int] | None = None,
                torch: bool = True, csv_path: str | Path | None = None, record: bool = True,
                log: Callable[[str], None] = print_line, timeout: float = 1800,
                threads: int | None = None) -> list[dict[str, Any]]:
    """Our models against their peers (:data:`PEER_GROUPS`), same batch, precision and steps,
    interleaved rounds.

    ``torch=False`` leaves PyTorch out (it is an optional dependency). ``threads=1`` compares
    per-core efficiency (useful on a busy machine: PyTorch's OpenMP threads collapse when another
    process takes a core, TensorFlow's thread pool much less). Each row carries
    ``vs_zoo`` (its throughput over the group's zoo model's) and ``zoo_vs`` (the inverse); with
    ``record`` they are appended to ``results/benchmarks/peers.csv`` (or ``csv_path``)."""
    _check_peers(groups, mode, precision, steps, warmup, torch)
    batches = {**PEER_BATCH, **(batch_sizes or {})}
    limit = thread_env(threads)
    peak = peak_value(None)
    env, rows = environment_row(), []
    for group in groups:
        entries = [Entry(key, {"options": {}, **spec, "mode": mode, "batch_size": batches[group], "warmup": warmup,
                               "precision": precision, "jit_compile": False}, dict(limit))
                   for key, spec in PEER_GROUPS[group] if torch or spec["impl"] != "torch"]
        log(f"zoo bench --peers {group}: {len(entries)} implementations x {repeats} rounds x {steps} steps, "
            f"batch {batches[group]}, {precision}" + (f", {threads} thread(s) each" if threads else ""))
        interleave(entries, repeats, steps, log=log, timeout=timeout)
        group_rows = _group_rows(group, entries, mode, peak, threads, env)
        log(format_table(group_rows, ("impl_label", "samples_per_sec", "step_ms_median", "step_ms_p90", "spread",
                                      "vs_zoo", "params", "peak_rss_mb"), f"peers: {group} ({mode}, {precision})"))
        rows += group_rows
    if record:
        log(f"appended to {append_csv(rows, csv_path or default_csv('peers'))}")
    return rows
