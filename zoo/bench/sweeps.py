"""``zoo bench --sweep``: the alternatives to the device policy's training settings, measured.

The policy's static choices (:func:`zoo.training.device.choose_settings`: XLA off, oneDNN on)
cite ``results/benchmarks/sweep-resnet20.csv``, which this writes; re-run it (on an idle machine)
before changing them. The precision is not static: the policy calibrates it on each machine
(:func:`zoo.training.device.resolve_policy`, ``zoo bench --settings``); the sweep's default row is
float32.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from zoo.bench.checks import BenchError, check_common, thread_env
from zoo.bench.machine import environment_row, peak_value
from zoo.bench.results import append_csv, default_csv
from zoo.bench.rounds import Entry, format_table, interleave, print_line, summarise
from zoo.models import registry
from zoo.training.device import choose_settings, device_kind, device_name

__all__ = ["sweep", "sweep_configs"]

Config = tuple[str, dict[str, Any], dict[str, str]]  # label, spec changes, environment


def _device_configs(device: str, batch_size: int, threads: int | None) -> list[Config]:
    b = batch_size
    if device == "gpu":
        return [(f"mixed_float16 jit=False b{b}", {"precision": "mixed_float16"}, {}),
                (f"mixed_float16 jit=True b{b}", {"precision": "mixed_float16", "jit_compile": True}, {})]
    configs = [(f"mixed_bfloat16 jit=False b{b}", {"precision": "mixed_bfloat16"}, {}),
               (f"float32 jit=False b{b} oneDNN off", {}, {"TF_ENABLE_ONEDNN_OPTS": "0"})]
    if threads is None:
        configs.append((f"float32 jit=False b{b} inter_op=1", {}, {"TF_NUM_INTEROP_THREADS": "1"}))
    return configs


def sweep_configs(device: str, batch_size: int, batch_sizes: Sequence[int], threads: int | None = None) -> list[Config]:
    """``(label, spec changes, environment)`` of each configuration :func:`sweep` measures:
    XLA off/on/auto, the device's mixed precision (and oneDNN off, one inter-op thread on CPU),
    then the other batch sizes."""
    configs = [(f"float32 jit={jit} b{batch_size}", {"jit_compile": jit}, {}) for jit in (False, True, "auto")]
    configs += _device_configs(device, batch_size, threads)
    configs += [(f"float32 jit=False b{b}", {"batch_size": b}, {}) for b in dict.fromkeys(batch_sizes)
                if b != batch_size]
    return configs


def _check_sweep(name: str, batch_size: int, batch_sizes: Sequence[int], steps: int, warmup: int, repeats: int,
                 mode: str, build_options: dict[str, Any]) -> None:
    check_common(mode, batch_size, steps, warmup)
    if repeats < 1:
        raise BenchError(f"repeats must be >= 1, got {repeats}.")
    registry.get_entry(name)
    registry.resolve_plan(name, **build_options)
    for b in batch_sizes:
        check_common(mode, b, steps, warmup)


def sweep(name: str = "resnet20", batch_sizes: Sequence[int] = (64, 128, 256), *, batch_size: int = 128,
          steps: int = 15, warmup: int = 3, repeats: int = 3, mode: str = "train", csv_path: str | Path | None = None,
          record: bool = True, log: Callable[[str], None] = print_line, timeout: float = 900,
          threads: int | None = None, **build_options: Any) -> list[dict[str, Any]]:
    """Measure the training-loop alternatives for ``name`` so :func:`choose_settings` stays
    documented by measurement (see :func:`sweep_configs`) — each in its own process, ``repeats``
    interleaved rounds of ``steps`` timed steps after ``warmup``. ``threads`` limits every
    process to that many compute threads.

    Returns one row per configuration (``samples_per_sec`` is the median of the rounds' medians,
    ``vs_default`` the ratio to :func:`choose_settings`' configuration, ``fastest`` marks the
    best); with ``record`` appends them to ``results/benchmarks/sweep-<name>.csv`` (or
    ``csv_path``)."""
    _check_sweep(name, batch_size, batch_sizes, steps, warmup, repeats, mode, build_options)
    limit = thread_env(threads)
    device = device_kind()
    chosen = choose_settings(device)
    base = {"impl": "zoo", "name": name, "options": build_options, "mode": mode, "batch_size": batch_size,
            "warmup": warmup, "precision": "fp32", "jit_compile": False}
    default_key = f"{chosen.precision} jit={chosen.jit_compile} b{batch_size}"
    entries = [Entry(key, {**base, **over}, {**limit, **env})
               for key, over, env in sweep_configs(device, batch_size, batch_sizes, threads)]
    log(f"zoo bench --sweep {name}: {len(entries)} configurations x {repeats} rounds x {steps} steps "
        f"on {device_name()}")
    interleave(entries, repeats, steps, log=log, timeout=timeout)
    peak = peak_value(None)
    rows = [summarise(e, mode, peak) for e in entries]
    ref = next((r for r in rows if r["key"] == default_key), rows[0])
    best = max(rows, key=lambda r: r["samples_per_sec"])
    env = environment_row()
    for r in rows:
        r.update(config=r.pop("key"), vs_default=r["samples_per_sec"] / ref["samples_per_sec"],
                 default=r is ref, fastest=r is best, name=f"sweep-{name}", model=name, environment=env)
    log(format_table(rows, ("config", "samples_per_sec", "step_ms_median", "step_ms_p90", "vs_default",
                            "peak_rss_mb"),
                     f"sweep of {name} ({mode}); default = choose_settings('{device}'): {chosen.describe()}"))
    if best is not ref:
        log(f"note: the fastest here is '{best['config']}' ({best['vs_default']:.2f}x the default); "
            "re-run on an idle machine before changing choose_settings().")
    if record:
        log(f"appended to {append_csv(rows, csv_path or default_csv(f'sweep-{name}'))}")
    return rows
