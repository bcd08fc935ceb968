"""Interleaved rounds of several benchmark workers, and their summary rows.

:func:`sweep <zoo.bench.sweeps.sweep>` and :func:`bench_peers <zoo.bench.peers.bench_peers>`
measure each configuration in its own process (:class:`zoo.bench.worker.Worker`), round-robin,
so a slow phase of a shared machine falls on every configuration alike.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zoo.runtime import mem_available_mb
from zoo.bench.timing import flops_fields, step_stats
from zoo.bench.worker import Worker
from zoo.training.device import onednn_enabled

__all__ = ["Entry", "format_table", "interleave", "print_line", "summarise"]


def print_line(text: str) -> None:
    """The default ``log`` of the benchmarks: print and flush."""
    print(text, flush=True)


@dataclass
class Entry:
    """One configuration of a sweep or peer group: its worker spec and environment, and what
    its rounds measured."""

    key: str
    spec: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    times: list[list[float]] = field(default_factory=list)
    peak_rss_mb: float = 0.0


class _Pool:
    """Workers kept alive across rounds while they fit in memory together; once they do not,
    each round starts them afresh and one runs at a time."""

    def __init__(self, count: int, log: Callable[[str], None], timeout: float):
        self.count, self.log, self.timeout = count, log, timeout
        self.workers: dict[str, Worker] = {}
        self.keep_alive, self.biggest = True, 0.0

    def _one_at_a_time(self, why: str) -> None:
        self.log(why)
        self.keep_alive = False
        for key in list(self.workers):
            self.workers.pop(key).close()

    def get(self, entry: Entry, first_round: bool) -> Worker:
        worker = self.workers.get(entry.key)
        if worker is not None:
            return worker
        before = mem_available_mb()
        if self.keep_alive and self.workers and before is not None and before < 1.3 * self.biggest:
            self._one_at_a_time(f"  (only {before:.0f} MB free: one process at a time from here)")
        first = not self.workers
        worker = Worker(entry.spec, entry.env, self.timeout)
        self.biggest = max(self.biggest, worker.info.get("peak_rss_mb", 0))
        entry.info = worker.info
        if self.keep_alive and first and first_round and before is not None:
            need = worker.info.get("peak_rss_mb", 0) * self.count
            if need >= 0.8 * before:
                self._one_at_a_time(f"  (~{need:.0f} MB for {self.count} processes > 80% of {before:.0f} MB "
                                    "free: one process at a time)")
        return worker

    def release(self, key: str, worker: Worker) -> None:
        if self.keep_alive:
            self.workers[key] = worker
        else:
            worker.close()

    def close(self) -> None:
        for worker in self.workers.values():
            worker.close()


def interleave(entries: Sequence[Entry], repeats: int, steps: int, *, log: Callable[[str], None],
               timeout: float) -> None:
    """Measure every entry ``repeats`` times, round-robin (the order rotates every round), each
    in its own process; the step times land in each entry's ``times``."""
    pool = _Pool(len(entries), log, timeout)
    try:
        for r in range(repeats):
            k = r % len(entries)
            for e in [*entries[k:], *entries[:k]]:
                worker = pool.get(e, first_round=r == 0)
                out = worker.measure(steps)
                e.times.append(out["times"])
                e.peak_rss_mb = max(e.peak_rss_mb, out["peak_rss_mb"])
                med = sorted(out["times"])[len(out["times"]) // 2]
                log(f"  round {r + 1}/{repeats} {e.key:<34} {worker.info['batch_size'] / med:8.1f} samples/s")
                pool.release(e.key, worker)
    finally:
        pool.close()


def summarise(e: Entry, mode: str, peak: float | None) -> dict[str, Any]:
    """One result row for an entry: ``samples_per_sec`` is the median of its rounds' medians."""
    batch = e.info["batch_size"]
    per_round = [batch / float(np.median(t)) for t in e.times]
    stats = step_stats([x for t in e.times for x in t], batch)
    stats["samples_per_sec"] = float(np.median(per_round))
    return {
        "key": e.key, "name": e.spec["name"], "impl": e.spec.get("impl", "zoo"), "label": e.info.get("label"),
        "mode": mode, **stats, f"{mode}_samples_per_sec": stats["samples_per_sec"],
        "samples_per_sec_rounds": [round(v, 2) for v in per_round],
        "spread": (max(per_round) - min(per_round)) / stats["samples_per_sec"] if per_round else None,
        "batch_size": batch, "precision": e.spec.get("precision", "fp32"), "dtype_policy": e.info.get("policy"),
        "jit_compile": e.info.get("jit_compile"), "onednn": onednn_enabled({**os.environ, **e.env}),
        "steps": len(e.times[0]) if e.times else 0, "repeats": len(e.times),
        "build_options": e.spec.get("options") or {}, "params": e.info.get("params"),
        **flops_fields(e.info.get("flops"), mode, stats["samples_per_sec"], peak),
        "peak_rss_mb": e.peak_rss_mb, "torch": e.info.get("torch"), "torch_threads": e.info.get("torch_threads"),
        "thread_env": {k: v for k, v in e.env.items() if "THREADS" in k} or None,
    }


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], title: str) -> str:
    """A plain-text table of ``columns`` of ``rows`` under ``title``."""
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
        return "" if v is None else str(v)

    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = [title, "  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)
