"""``zoo bench --peers``: zoo's networks against the same networks elsewhere, interleaved.

- ``resnet20`` (batch 128, 32×32): zoo vs PyTorch eager channels-last
  (:mod:`zoo.bench.torch_resnet`, the same option-A network);
- ``resnet50`` (batch 32, 224×224): zoo (torchvision layout), zoo ``layout="keras"``,
  ``keras.applications.ResNet50`` and PyTorch channels-last.

- ``all_cnn_c`` (batch 128, 32×32): zoo vs PyTorch eager channels-last (:mod:`zoo.bench.torch_allconv`).

Each implementation runs in its own process; results go to ``results/benchmarks/peers.csv``.
With ``precision="best"`` (``zoo bench --peers --precision best``) every implementation is timed
in float32 and in the device's mixed precision (PyTorch: autocast; Keras: the mixed dtype
policy), and the zoo's rows say which one ``zoo train`` picks on this machine (the device
policy's decision, :func:`zoo.training.device.resolve_policy`); each row's ``default_vs`` is the
zoo default's throughput over that implementation's best.
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
PEER_GROUPS["all_cnn_c"] = [
    ("zoo all_cnn_c", {"impl": "zoo", "name": "all_cnn_c"}),
    ("torch all_cnn_c channels-last", {"impl": "torch", "name": "all_cnn_c"}),
]
PEER_BATCH = {"resnet20": 128, "resnet50": 32, "all_cnn_c": 128}
BEST = ("fp32", "mixed")  # the precisions precision="best" times every implementation in


def _check_peers(groups: Sequence[str], mode: str, precision: str, steps: int, warmup: int, torch: bool) -> None:
    check_common(mode, 1, steps, warmup)
    if precision != "best":
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
        precisions = BEST if precision == "best" else (precision,)
        entries = [Entry(f"{key} [{resolve_precision(p)}]" if precision == "best" else key,
                         {"options": {}, **spec, "mode": mode, "batch_size": batches[group], "warmup": warmup,
                          "precision": p, "jit_compile": False}, dict(limit))
                   for key, spec in PEER_GROUPS[group] if torch or spec["impl"] != "torch" for p in precisions]
        log(f"zoo bench --peers {group}: {len(entries)} implementations x {repeats} rounds x {steps} steps, "
            f"batch {batches[group]}, {precision}" + (f", {threads} thread(s) each" if threads else ""))
        interleave(entries, repeats, steps, log=log, timeout=timeout)
        group_rows = _group_rows(group, entries, mode, peak, threads, env)
        columns = ("impl_label", "samples_per_sec", "step_ms_median", "step_ms_p90", "spread", "vs_zoo", "params",
                   "peak_rss_mb")
        if precision == "best":
            mark_default(group_rows, default_precision(group, batches[group], log))
            columns = (*columns[:6], "zoo_default", "default_vs", *columns[6:])
        log(format_table(group_rows, columns, f"peers: {group} ({mode}, {precision})"))
        rows += group_rows
    if record:
        log(f"appended to {append_csv(rows, csv_path or default_csv('peers'))}")
    return rows


def default_precision(group: str, batch_size: int, log: Callable[[str], None] = print_line) -> str:
    """The dtype policy ``zoo train`` picks for the group's zoo model on this machine (the
    device policy's cached decision, or a calibration now)."""
    from zoo.training import calibration, device  # the policy imports TensorFlow: only when asked

    name = PEER_GROUPS[group][0][1]["name"]
    decision = device.resolve_policy(calibration.workload_for(name, batch_size), log=log)
    log(f"  zoo train's precision for {name} (batch {batch_size}) here: {decision.evidence()}")
    return decision.precision


def mark_default(rows: list[dict[str, Any]], default: str) -> None:
    """Flag the zoo rows ``zoo train`` would run (``zoo_default``) and give every row
    ``default_vs``: the first zoo model's default throughput over that implementation's best."""
    first = rows[0]["name"], rows[0]["impl"], str(rows[0]["build_options"])
    zoo_rows = [r for r in rows if (r["name"], r["impl"], str(r["build_options"])) == first]
    chosen = next((r for r in zoo_rows if r["dtype_policy"] == default), None)
    for r in rows:
        r["zoo_default"] = r in zoo_rows and r is chosen
    if chosen is None:
        return
    best: dict[str, float] = {}
    for r in rows:
        base = r["impl_label"].rsplit(" [", 1)[0]
        best[base] = max(best.get(base, 0.0), r["samples_per_sec"])
    for r in rows:
        r["default_vs"] = chosen["samples_per_sec"] / best[r["impl_label"].rsplit(" [", 1)[0]]
