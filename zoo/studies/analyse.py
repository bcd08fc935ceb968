"""What each downsampling choice did in one study: collect a project's trials and analyse them.

A *project* is the directory of one :func:`zoo.search.tune` search or :func:`zoo.search.compare`
run: ``search.json`` (what was searched) and ``trial_*/zoo_trial.json`` (one record per trial).

Analysis (completed trials only; for Hyperband only those trained for the full number of epochs,
when there are any):

- Pareto front: the trials no other trial beats in accuracy at the same or lower cost;
- effects: for every searched site and every choice kind (max, avg, conv, blur, s2d, none), the
  validation accuracy over the trials that used it (count, mean ± sample std, min–max) and their
  mean FLOPs and latency; ``(any site)`` pools every site's uses; blur filter sizes get their own
  rows when more than one was tried;
- uniform configurations: trials with one choice at every searched site (all-max, all-conv ...),
  the direct pool-versus-stride comparisons.
"""
from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from zoo import report as zreport
from zoo.search import SEARCH, TuneError, read_records

__all__ = ["COSTS", "analyse", "collect", "effects", "kind_of", "pareto_front", "uniform_configurations", "units",
           "usable"]

COSTS = {"flops": ("FLOPs (M multiply-adds)", 1e-6), "latency_ms": ("latency (ms/image)", 1.0)}
KIND_ORDER = ("max", "avg", "conv", "blur", "s2d", "none")
DROPPED = ("recipe", "history", "traceback")  # kept in zoo_trial.json, left out of study.json


def collect(project_dir: str | Path) -> dict[str, Any]:
    """The study dict of a project directory (``search.json`` + trial records), analysed."""
    path = Path(project_dir)
    if not (path / SEARCH).exists():
        raise TuneError(f"{path} is not a zoo tune project: no {SEARCH}.")
    search = zreport.read_json(path / SEARCH)
    trials = []
    for rec in read_records(path):
        row = {k: v for k, v in rec.items() if k not in DROPPED}
        row["record"] = f"trial_{rec['trial_id']}/zoo_trial.json"
        trials.append(row)
    return analyse({**search, "project_dir": str(path), "trials": trials})


def kind_of(spec: Any) -> str:
    """``"blur5"`` -> ``"blur"``; other choice specs unchanged."""
    if isinstance(spec, Mapping):
        spec = spec.get("type", spec.get("kind", "?"))
    return re.sub(r"\d+$", "", str(spec))


def units(study: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(unit, site read for it)`` of a search: the searched sites, or ``all`` and its first site."""
    space = study.get("space") or {}
    rows = space.get("sites") or []
    shared = [r["site"] for r in rows if r.get("shared")]
    names = space.get("units")
    if names:
        return [(u, shared[0] if u == "all" and shared else u) for u in names]
    configs = [t.get("config", {}).get("downsample", {}) for t in study.get("trials", [])]
    sites = sorted({s for c in configs for s in c}, key=lambda s: next((i for i, c in enumerate(configs) if s in c), 0))
    return [(s, s) for s in sites if len({str(c.get(s)) for c in configs}) > 1]


def usable(study: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Completed trials with an accuracy; Hyperband: those trained for the most epochs."""
    done = [t for t in study.get("trials", []) if t.get("status") == "completed"
            and isinstance(t.get("val_accuracy"), (int, float))]
    epochs = [t.get("config", {}).get("epochs") for t in done]
    top = max((e for e in epochs if isinstance(e, int)), default=None)
    if top is not None and len(set(epochs)) > 1:
        done = [t for t in done if t.get("config", {}).get("epochs") == top]
    return done


def pareto_front(trials: Sequence[Mapping[str, Any]], cost: str) -> list[str]:
    """Trial ids on the front of highest ``val_accuracy`` for lowest ``cost``, cheapest first."""
    rows = [t for t in trials if isinstance(t.get(cost), (int, float)) and isinstance(t.get("val_accuracy"), (int, float))]
    rows.sort(key=lambda t: (t[cost], -t["val_accuracy"]))
    front, best = [], -math.inf
    for t in rows:
        if t["val_accuracy"] > best:
            front.append(str(t["trial_id"]))
            best = t["val_accuracy"]
    return front


def stats(values: Sequence[Any]) -> dict[str, Any]:
    """Count, mean, sample std, min and max of the numbers among ``values``."""
    vals = [float(v) for v in values if isinstance(v, (int, float))]
    if not vals:
        return {"count": 0, "mean": None, "std": None, "min": None, "max": None}
    return {"count": len(vals), "mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
            "min": min(vals), "max": max(vals)}


def mean(values: Sequence[Any]) -> float | None:
    """The mean of the numbers among ``values`` (None when there are none)."""
    vals = [float(v) for v in values if isinstance(v, (int, float))]
    return statistics.fmean(vals) if vals else None


def _group_row(site: str, choice: str, trials: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {"site": site, "choice": choice, **stats([t["val_accuracy"] for t in trials]),
            "flops_mean": mean([t.get("flops") for t in trials]),
            "latency_ms_mean": mean([t.get("latency_ms") for t in trials]),
            "trials": [str(t["trial_id"]) for t in trials]}


def kind_order(kind: str) -> tuple[int, str]:
    """Sort key of a choice kind: max, avg, conv, blur, s2d, none, then the rest by name."""
    return (KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER), kind)


def _blur_size(spec: str) -> int:
    digits = re.sub(r"^\D+", "", spec)
    return int(digits) if digits else 3


def _variant_effects(trials: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[str, list] = {}
    for t in trials:
        groups.setdefault(str(t.get("variant") or t.get("label")), []).append(t)
    return [_group_row("variant", k, v) for k, v in groups.items()]


def effects(study: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Validation accuracy per (site, choice kind) with spread; see the module docstring."""
    trials = usable(study)
    if study.get("kind") == "fixed":
        return _variant_effects(trials)
    rows, pooled, sizes = [], {}, []
    for unit, site in units(study):
        by_kind: dict[str, list] = {}
        by_spec: dict[str, list] = {}
        for t in trials:
            spec = str(t.get("config", {}).get("downsample", {}).get(site))
            by_kind.setdefault(kind_of(spec), []).append(t)
            by_spec.setdefault(spec, []).append(t)
        for kind in sorted(by_kind, key=kind_order):
            rows.append(_group_row(unit, kind, by_kind[kind]))
            pooled.setdefault(kind, []).extend(by_kind[kind])
        blur_specs = sorted((s for s in by_spec if kind_of(s) == "blur"), key=_blur_size)
        if len(blur_specs) > 1:
            sizes += [{**_group_row(unit, f"blur filter {_blur_size(s)}", by_spec[s]), "detail": True}
                      for s in blur_specs]
    if len(units(study)) > 1:
        rows += [_group_row("(any site)", k, pooled[k]) for k in sorted(pooled, key=kind_order)]
    return rows + sizes


def uniform_configurations(study: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Trials with the same choice kind at every searched site (best trial per kind)."""
    searched = units(study)
    if study.get("kind") == "fixed" or not searched:
        return []
    best: dict[str, dict[str, Any]] = {}
    for t in usable(study):
        ds = t.get("config", {}).get("downsample", {})
        kinds = {kind_of(ds.get(site)) for _, site in searched}
        if len(kinds) == 1:
            kind = kinds.pop()
            if kind not in best or t["val_accuracy"] > best[kind]["val_accuracy"]:
                best[kind] = t
    return [{"choice": k, "trial_id": str(t["trial_id"]), "label": t.get("label"), "val_accuracy": t["val_accuracy"],
             "flops": t.get("flops"), "latency_ms": t.get("latency_ms"), "params": t.get("params")}
            for k, t in sorted(best.items(), key=lambda kv: kind_order(kv[0]))]


def _memory(trials: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Peak RSS per trial and the search process's RSS after each, with their growth."""
    ran = [t for t in trials if isinstance(t.get("peak_rss_mb"), (int, float))]
    peaks = [t["peak_rss_mb"] for t in ran]
    search = [t["search_rss_mb"] for t in trials if isinstance(t.get("search_rss_mb"), (int, float))]
    return {"peak_rss_mb": stats(peaks), "search_rss_mb": stats(search),
            "peak_growth_mb": peaks[-1] - peaks[0] if len(peaks) > 1 else None,
            "search_growth_mb": search[-1] - search[0] if len(search) > 1 else None,
            "scope": sorted({str(t.get("peak_rss_scope")) for t in ran})}


def analyse(study: dict[str, Any]) -> dict[str, Any]:
    """Add ``summary``, ``pareto``, ``effects``, ``uniform``, ``best`` and ``memory`` to a study."""
    trials = study.get("trials", [])
    done = usable(study)
    statuses: dict[str, int] = {}
    for t in trials:
        statuses[t.get("status", "?")] = statuses.get(t.get("status", "?"), 0) + 1
    study["summary"] = {"trials": len(trials), **statuses, "analysed": len(done)}
    study["pareto"] = {cost: pareto_front(done, cost) for cost in COSTS}
    study["effects"] = effects(study)
    study["uniform"] = uniform_configurations(study)
    best = max(done, key=lambda t: t["val_accuracy"], default=None)
    study["best"] = ({"trial_id": str(best["trial_id"]), "label": best.get("label"),
                      "val_accuracy": best["val_accuracy"], "flops": best.get("flops"),
                      "latency_ms": best.get("latency_ms"), "params": best.get("params"),
                      "overrides": best.get("overrides", []), "config": best.get("config")} if best else None)
    study["memory"] = _memory(trials)
    return study
