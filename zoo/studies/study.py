"""Study reports: what each downsampling choice did, per search and across architectures.

A *project* is the directory of one :func:`zoo.search.tuner.tune` search or :func:`zoo.search.tuner.compare`
run: ``search.json`` (what was searched) and ``trial_*/zoo_trial.json`` (one record per trial).
:func:`write_report` turns it into::

    study.json        the search, every trial (config, accuracy, params, FLOPs, latency, time,
                      peak RSS) and the analysis below; render_report(study.json) rebuilds the rest
    trials.csv        one row per trial
    report.md         the trial table, Pareto fronts, choice effects and memory per trial
    pareto_flops.png / pareto_latency.png   validation accuracy against FLOPs / latency
    effects.png       validation accuracy per choice at each site (mean ± std and every trial)
    best-recipe.yaml  the best trial as a recipe ``zoo train`` accepts (model.downsample set)

Analysis (completed trials only; for Hyperband only those trained for the full number of epochs,
when there are any):

- Pareto front: the trials no other trial beats in accuracy at the same or lower cost;
- effects: for every searched site and every choice kind (max, avg, conv, blur, s2d, none), the
  validation accuracy over the trials that used it (count, mean ± sample std, min–max) and their
  mean FLOPs and latency; ``(any site)`` pools every site's uses; blur filter sizes get their own
  rows when more than one was tried;
- uniform configurations: trials with one choice at every searched site (all-max, all-conv ...),
  the direct pool-versus-stride comparisons.

:func:`study` runs searches (and the All-CNN paper comparison: All-CNN-C, ConvPool-CNN-C,
Strided-CNN-C and Model C under one recipe, with one or more seeds each) into
``results/studies/<recipe>/`` and :func:`write_index` summarises every study there in
``results/studies/README.md``.

    zoo study all_cnn_c-study resnet20-study --paper-recipe all_cnn_c-study --paper-seeds 2 --max-trials 12 --resume
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import re
import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from zoo import report as zreport
from zoo.errors import ZooError

__all__ = [
    "PAPER_VARIANTS",
    "add_study_arguments",
    "analyse",
    "collect",
    "effects",
    "export_best_recipe",
    "main",
    "pareto_front",
    "render_markdown",
    "render_report",
    "study",
    "study_from_args",
    "write_index",
    "write_report",
]

SEED_SUFFIX = " (seed "  # paper-comparison repeats: "All-CNN-C (seed 1)"
LR_SUFFIX = " (lr "  # paper-comparison learning rates other than the recipe's: "All-CNN-C (lr 0.002)"
PAPER_VARIANTS = {  # Springenberg et al. 2015, Table 2 (model C column)
    "All-CNN-C": "all_cnn_c", "ConvPool-CNN-C": "convpool_cnn_c", "Strided-CNN-C": "strided_cnn_c",
    "Model C": "cnn_c",
}
POOLING, STRIDING = ("max", "avg"), ("conv",)
FILES = {"json": "study.json", "csv": "trials.csv", "markdown": "report.md", "pareto_flops": "pareto_flops.png",
         "pareto_latency": "pareto_latency.png", "effects": "effects.png", "recipe": "best-recipe.yaml"}
COSTS = {"flops": ("FLOPs (M multiply-adds)", 1e-6), "latency_ms": ("latency (ms/image)", 1.0)}
_DROP = ("recipe", "history", "traceback")  # kept in zoo_trial.json, left out of study.json


# ------------------------------------------------------------------------------------ collect
def collect(project_dir: str | Path) -> dict[str, Any]:
    """The study dict of a project directory (``search.json`` + trial records), analysed."""
    from zoo.search.tuner import SEARCH, read_records

    path = Path(project_dir)
    if not (path / SEARCH).exists():
        raise FileNotFoundError(f"{path} is not a zoo tune project: no {SEARCH}.")
    search = zreport.read_json(path / SEARCH)
    trials = []
    for rec in read_records(path):
        row = {k: v for k, v in rec.items() if k not in _DROP}
        row["record"] = f"trial_{rec['trial_id']}/zoo_trial.json"
        trials.append(row)
    study = {**search, "project_dir": str(path), "trials": trials}
    return analyse(study)


def kind_of(spec: Any) -> str:
    """``"blur5"`` -> ``"blur"``; other choice specs unchanged."""
    if isinstance(spec, Mapping):
        spec = spec.get("type", spec.get("kind", "?"))
    return re.sub(r"\d+$", "", str(spec))


def _units(study: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(unit, site read for it)`` of a search: the searched sites, or ``all`` and its first site."""
    space = study.get("space") or {}
    rows = space.get("sites") or []
    shared = [r["site"] for r in rows if r.get("shared")]
    units = space.get("units")
    if units:
        return [(u, shared[0] if u == "all" and shared else u) for u in units]
    configs = [t.get("config", {}).get("downsample", {}) for t in study.get("trials", [])]
    sites = sorted({s for c in configs for s in c}, key=lambda s: next((i for i, c in enumerate(configs) if s in c), 0))
    return [(s, s) for s in sites if len({str(c.get(s)) for c in configs}) > 1]


def _usable(study: Mapping[str, Any]) -> list[dict[str, Any]]:
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


def _stats(values: Sequence[float]) -> dict[str, Any]:
    vals = [float(v) for v in values if isinstance(v, (int, float))]
    if not vals:
        return {"count": 0, "mean": None, "std": None, "min": None, "max": None}
    return {"count": len(vals), "mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
            "min": min(vals), "max": max(vals)}


def _group_row(site: str, choice: str, trials: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    acc = _stats([t["val_accuracy"] for t in trials])
    return {"site": site, "choice": choice, **acc,
            "flops_mean": _mean([t.get("flops") for t in trials]),
            "latency_ms_mean": _mean([t.get("latency_ms") for t in trials]),
            "trials": [str(t["trial_id"]) for t in trials]}


def _mean(values: Sequence[Any]) -> float | None:
    vals = [float(v) for v in values if isinstance(v, (int, float))]
    return statistics.fmean(vals) if vals else None


def effects(study: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Validation accuracy per (site, choice kind) with spread; see the module docstring."""
    trials = _usable(study)
    if study.get("kind") == "fixed":
        groups: dict[str, list] = {}
        for t in trials:
            groups.setdefault(str(t.get("variant") or t.get("label")), []).append(t)
        return [_group_row("variant", k, v) for k, v in groups.items()]
    rows, pooled, sizes = [], {}, []
    for unit, site in _units(study):
        by_kind: dict[str, list] = {}
        by_spec: dict[str, list] = {}
        for t in trials:
            spec = str(t.get("config", {}).get("downsample", {}).get(site))
            by_kind.setdefault(kind_of(spec), []).append(t)
            by_spec.setdefault(spec, []).append(t)
        for kind in sorted(by_kind, key=_kind_order):
            rows.append(_group_row(unit, kind, by_kind[kind]))
            pooled.setdefault(kind, []).extend(by_kind[kind])
        blur_specs = sorted((s for s in by_spec if kind_of(s) == "blur"), key=_blur_size)
        if len(blur_specs) > 1:
            sizes += [{**_group_row(unit, f"blur filter {_blur_size(s)}", by_spec[s]), "detail": True}
                      for s in blur_specs]
    if len(_units(study)) > 1:
        rows += [_group_row("(any site)", k, pooled[k]) for k in sorted(pooled, key=_kind_order)]
    return rows + sizes


def _kind_order(kind: str) -> tuple[int, str]:
    order = ["max", "avg", "conv", "blur", "s2d", "none"]
    return (order.index(kind) if kind in order else len(order), kind)


def _blur_size(spec: str) -> int:
    digits = re.sub(r"^\D+", "", spec)
    return int(digits) if digits else 3


def uniform_configurations(study: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Trials with the same choice kind at every searched site (best trial per kind)."""
    units = _units(study)
    if study.get("kind") == "fixed" or not units:
        return []
    best: dict[str, dict[str, Any]] = {}
    for t in _usable(study):
        ds = t.get("config", {}).get("downsample", {})
        kinds = {kind_of(ds.get(site)) for _, site in units}
        if len(kinds) == 1:
            kind = kinds.pop()
            if kind not in best or t["val_accuracy"] > best[kind]["val_accuracy"]:
                best[kind] = t
    return [{"choice": k, "trial_id": str(t["trial_id"]), "label": t.get("label"), "val_accuracy": t["val_accuracy"],
             "flops": t.get("flops"), "latency_ms": t.get("latency_ms"), "params": t.get("params")}
            for k, t in sorted(best.items(), key=lambda kv: _kind_order(kv[0]))]


def analyse(study: dict[str, Any]) -> dict[str, Any]:
    """Add ``summary``, ``pareto``, ``effects``, ``uniform``, ``best`` and ``memory`` to a study."""
    trials = study.get("trials", [])
    usable = _usable(study)
    statuses: dict[str, int] = {}
    for t in trials:
        statuses[t.get("status", "?")] = statuses.get(t.get("status", "?"), 0) + 1
    study["summary"] = {"trials": len(trials), **statuses, "analysed": len(usable)}
    study["pareto"] = {cost: pareto_front(usable, cost) for cost in COSTS}
    study["effects"] = effects(study)
    study["uniform"] = uniform_configurations(study)
    best = max(usable, key=lambda t: t["val_accuracy"], default=None)
    study["best"] = ({"trial_id": str(best["trial_id"]), "label": best.get("label"),
                      "val_accuracy": best["val_accuracy"], "flops": best.get("flops"),
                      "latency_ms": best.get("latency_ms"), "params": best.get("params"),
                      "overrides": best.get("overrides", []), "config": best.get("config")} if best else None)
    ran = [t for t in trials if isinstance(t.get("peak_rss_mb"), (int, float))]
    peaks = [t["peak_rss_mb"] for t in ran]
    search = [t["search_rss_mb"] for t in trials if isinstance(t.get("search_rss_mb"), (int, float))]
    study["memory"] = {
        "peak_rss_mb": _stats(peaks), "search_rss_mb": _stats(search),
        "peak_growth_mb": peaks[-1] - peaks[0] if len(peaks) > 1 else None,
        "search_growth_mb": search[-1] - search[0] if len(search) > 1 else None,
        "scope": sorted({str(t.get("peak_rss_scope")) for t in ran}),
    }
    return study


# -------------------------------------------------------------------------------- rendering
def _fmt(value: Any, kind: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if kind == "%":
        return f"{100 * value:.2f}"
    if kind == "M":
        return f"{value / 1e6:.2f}"
    if kind == "ms":
        return f"{value:.3f}"
    if kind == "int":
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    esc = lambda v: str(v).replace("|", "\\|").replace("\n", " ")
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]]


def _searched_extra(study: Mapping[str, Any]) -> list[str]:
    space = study.get("space") or {}
    return [k for k in ("lr", "weight_decay") if space.get(k)]


def _trial_rows(study: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    units = _units(study)
    fixed = study.get("kind") == "fixed"
    extra = _searched_extra(study)
    epochs = len({(t.get("config") or {}).get("epochs") for t in study.get("trials", [])}) > 1  # Hyperband rungs
    extra = extra + (["epochs"] if epochs else [])
    header = ["trial", "status"] + (["variant", "model"] if fixed else [u for u, _ in units]) + extra + [
        "val acc %", "best val acc %", "params", "MFLOPs", "latency ms", "train s", "peak RSS MB", "search RSS MB"]
    front = set(study.get("pareto", {}).get("flops", [])) | set(study.get("pareto", {}).get("latency_ms", []))
    best = (study.get("best") or {}).get("trial_id")
    rows = []
    for t in study.get("trials", []):
        ds = t.get("config", {}).get("downsample", {})
        tid = str(t["trial_id"]) + (" ★" if str(t["trial_id"]) == best else "") + (" •" if str(t["trial_id"]) in front else "")
        cells = [tid, t.get("status", "?")]
        cells += ([t.get("variant") or t.get("label"), t.get("config", {}).get("model", "")] if fixed
                  else [ds.get(site, "—") for _, site in units])
        cells += [_fmt((t.get("config") or {}).get(k)) for k in extra]
        cells += [_fmt(t.get("val_accuracy"), "%"), _fmt(t.get("best_val_accuracy"), "%"),
                  _fmt(t.get("params"), "int"), _fmt(t.get("flops"), "M"), _fmt(t.get("latency_ms"), "ms"),
                  _fmt(t.get("train_time_s")), _fmt(t.get("peak_rss_mb")), _fmt(t.get("search_rss_mb"))]
        rows.append(cells)
    return header, rows


def _effects_rows(rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    out = []
    for r in rows:
        spread = "—" if r["mean"] is None else f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}"
        span = "—" if r["min"] is None else f"{100 * r['min']:.2f}–{100 * r['max']:.2f}"
        out.append([r["site"], r["choice"], r["count"], spread, span, _fmt(r.get("flops_mean"), "M"),
                    _fmt(r.get("latency_ms_mean"), "ms")])
    return out


EFFECT_HEADER = ["site", "choice", "n", "val acc % mean ± std", "min–max", "mean MFLOPs", "mean latency ms"]


def _space_lines(study: Mapping[str, Any]) -> list[str]:
    space = study.get("space") or {}
    if study.get("kind") == "fixed":
        return ["- **variants** (same recipe and seed): " + "; ".join(
            f"{k}: `{' '.join(v) or '(recipe as is)'}`" for k, v in (study.get("variants") or {}).items())]
    lines = [(f"- **space**: sites={space.get('mode')}, shortcuts={space.get('shortcuts')}, "
             f"{space.get('size') or 'continuous'} configurations")]
    for r in space.get("sites", []):
        choices = ", ".join(r["choices"]) if r.get("choices") else "—"
        lines.append(f"  - `{r['site']}` ({r['role']}, published {r['published']}): {r.get('rule')}"
                     + (f" over {choices}" if r.get("choices") else f" = {r.get('base')}"))
    for k in ("lr", "weight_decay"):
        if space.get(k):
            lo, hi, default = space[k]
            lines.append(f"  - `{k}`: log-uniform {lo:.3g}–{hi:.3g} (recipe {default:.3g})")
    return lines


def render_markdown(study: Mapping[str, Any], images: Mapping[str, str] | None = None) -> str:
    """The report of one study as Markdown (``images``: file names of the plots written)."""
    images = images or {}
    recipe = study.get("recipe") or {}
    model, data, train = recipe.get("model", {}), recipe.get("data", {}), recipe.get("train", {})
    summary = study.get("summary", {})
    kind = study.get("kind", "search")
    title = "Comparison" if kind == "fixed" else "Search"
    lines = [f"# {title}: {study.get('name', '')} ({model.get('name', '?')})", ""]
    counts = ", ".join(f"{v} {k}" for k, v in summary.items() if k not in ("trials", "analysed"))
    lines += [
        (f"- **recipe**: {recipe.get('name', '?')} — {model.get('name')} on {data.get('source')} "
        f"(limit {data.get('limit')}, validation {data.get('validation')}), {train.get('epochs')} epochs, "
        f"seed {train.get('seed')}; every trial trained the same way"),
        (f"- **trials**: {summary.get('trials', 0)} ({counts or 'none'}); oracle {study.get('oracle', '?')}, "
        f"objective {study.get('objective', 'val_accuracy')} (final epoch)"),
    ]
    budget = {k: v for k, v in (study.get("budget") or {}).items() if v is not None}
    if budget:
        lines.append("- **budget**: " + ", ".join(
            f"{_fmt(v, 'M')} M FLOPs" if k == "flops" else f"{v} ms/image" for k, v in budget.items())
            + " (configurations over it rejected before training)")
    lines += _space_lines(study) + [""]
    best = study.get("best")
    if best:
        lines += ["## Best configuration", "",
                  (f"Trial {best['trial_id']}: **{best.get('label')}** — val accuracy {_fmt(best['val_accuracy'], '%')}%, "
                  f"{_fmt(best.get('params'), 'int')} params, {_fmt(best.get('flops'), 'M')} M FLOPs, "
                  f"{_fmt(best.get('latency_ms'), 'ms')} ms/image."), ""]
        if images.get("recipe"):
            lines += [(f"Exported as [{images['recipe']}]({images['recipe']}): "
                      f"`zoo train {Path(study.get('project_dir', '.')) / images['recipe']}`"), ""]
    header, rows = _trial_rows(study)
    lines += ["## Trials", "", ("★ best, • on a Pareto front. Accuracy on the held-out validation images after the "
              "last epoch; latency is the median ms/image of repeated batch-"
              f"{(study.get('latency') or {}).get('batch', 1)} calls on this machine."), ""]
    lines += _md_table(header, rows) + [""]
    failed = [t for t in study.get("trials", []) if t.get("status") != "completed" and t.get("message")]
    if failed:
        lines += [f"- trial {t['trial_id']} ({t.get('status')}): {t['message']}" for t in failed] + [""]
    lines += ["## Pareto fronts", ""]
    by_id = {str(t["trial_id"]): t for t in study.get("trials", [])}
    for cost, (label, _) in COSTS.items():
        front = (study.get("pareto") or {}).get(cost, [])
        lines.append(f"**Accuracy against {label}**: " + (" → ".join(
            f"trial {i} ({by_id[i].get('label')}: {_fmt(by_id[i].get('val_accuracy'), '%')}% at "
            f"{_fmt(by_id[i].get(cost), 'M' if cost == 'flops' else 'ms')})" for i in front if i in by_id) or "none"))
        lines.append("")
        key = f"pareto_{'flops' if cost == 'flops' else 'latency'}"
        if images.get(key):
            lines += [f"![validation accuracy against {label}]({images[key]})", ""]
    eff = study.get("effects") or []
    if eff:
        lines += ["## Effect of each choice", "",
                  ("Validation accuracy of the trials that used a choice at a site (with whatever the other sites "
                  "had): n trials, mean ± sample std and range; `(any site)` pools every site, n counting site "
                  "uses. With few trials per cell, differences smaller than the spread are not evidence."), ""]
        lines += _md_table(EFFECT_HEADER, _effects_rows([r for r in eff if not r.get("detail")])) + [""]
        detail = [r for r in eff if r.get("detail")]
        if detail:
            lines += ["Blur filter sizes:", ""] + _md_table(EFFECT_HEADER, _effects_rows(detail)) + [""]
        if images.get("effects"):
            lines += [f"![accuracy per choice and site]({images['effects']})", ""]
    uniform = study.get("uniform") or []
    if uniform:
        lines += ["## Uniform configurations", "", "The same choice at every searched site:", ""]
        lines += _md_table(["choice", "trial", "val acc %", "params", "MFLOPs", "latency ms"],
                           [[u["choice"], u["trial_id"], _fmt(u["val_accuracy"], "%"), _fmt(u.get("params"), "int"),
                             _fmt(u.get("flops"), "M"), _fmt(u.get("latency_ms"), "ms")] for u in uniform]) + [""]
    mem = study.get("memory") or {}
    if (mem.get("peak_rss_mb") or {}).get("count"):
        p, s = mem["peak_rss_mb"], mem.get("search_rss_mb") or {}
        lines += ["## Memory", "",
                  (f"Peak RSS per trial ({', '.join(mem.get('scope', []))}): {_fmt(p['min'])}–{_fmt(p['max'])} MB over "
                  f"{p['count']} trials (last − first: {_fmt(mem.get('peak_growth_mb'))} MB). Search process RSS "
                  f"after each trial: {_fmt(s.get('min'))}–{_fmt(s.get('max'))} MB (last − first: "
                  f"{_fmt(mem.get('search_growth_mb'))} MB)."), ""]
    env = study.get("environment") or {}
    if env:
        lines += ["## Environment", "", (f"{env.get('cpu')} ({env.get('cpu_count')} CPUs), TensorFlow "
                  f"{env.get('tensorflow')}, Keras {env.get('keras')}, {env.get('date')}."), ""]
    return "\n".join(lines)


def _csv(study: Mapping[str, Any]) -> str:
    units = _units(study)
    extra = _searched_extra(study)
    cols = ["trial_id", "status", "label", *[f"site:{u}" for u, _ in units], *extra, "val_accuracy",
            "best_val_accuracy", "params", "flops", "latency_ms", "train_time_s", "trial_wall_time_s",
            "peak_rss_mb", "search_rss_mb", "tuner_id", "message"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for t in study.get("trials", []):
        ds = t.get("config", {}).get("downsample", {})
        row = {c: t.get(c) for c in cols}
        row.update({f"site:{u}": ds.get(site) for u, site in units})
        row.update({k: (t.get("config") or {}).get(k) for k in extra})
        writer.writerow(row)
    return buf.getvalue()


def _figure(width: float = 7, height: float = 4.5):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return zreport.write_text(path, buf.getvalue())


def plot_pareto(study: Mapping[str, Any], cost: str, path: str | Path) -> Path | None:
    """Validation accuracy against ``cost`` for every analysed trial, the front as a step line."""
    trials = [t for t in _usable(study) if isinstance(t.get(cost), (int, float))]
    if not trials:
        return None
    label, scale = COSTS[cost]
    front = [str(i) for i in (study.get("pareto") or {}).get(cost, [])]
    fig = _figure()
    ax = fig.subplots()
    ax.scatter([t[cost] * scale for t in trials], [100 * t["val_accuracy"] for t in trials], color="tab:blue",
               alpha=0.7, label="trials")
    by_id = {str(t["trial_id"]): t for t in trials}
    pts = [by_id[i] for i in front if i in by_id]
    if pts:
        ax.step([t[cost] * scale for t in pts], [100 * t["val_accuracy"] for t in pts], where="post", color="tab:red",
                marker="o", label="Pareto front")
    for t in trials:
        ax.annotate(str(t.get("variant") or t["trial_id"]), (t[cost] * scale, 100 * t["val_accuracy"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    limit = (study.get("budget") or {}).get(cost)
    if isinstance(limit, (int, float)):
        ax.axvline(limit * scale, color="grey", linestyle="--", label="budget")
    ax.set_xlabel(label)
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"{study.get('name', '')}: accuracy against {label.split(' (')[0]}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, Path(path))


def plot_effects(study: Mapping[str, Any], path: str | Path) -> Path | None:
    """Validation accuracy per choice at each site: every trial, and mean ± std."""
    rows = [r for r in study.get("effects") or [] if not r.get("detail") and r["count"]]
    if not rows:
        return None
    sites = list(dict.fromkeys(r["site"] for r in rows))
    by_id = {str(t["trial_id"]): t for t in study.get("trials", [])}
    fig = _figure(max(4.0, 3.2 * len(sites)), 4)
    axes = fig.subplots(1, len(sites), sharey=True, squeeze=False)[0]
    for ax, site in zip(axes, sites):
        mine = [r for r in rows if r["site"] == site]
        for x, r in enumerate(mine):
            ys = [100 * by_id[i]["val_accuracy"] for i in r["trials"] if i in by_id]
            ax.scatter([x + 0.12] * len(ys), ys, s=10, color="grey", alpha=0.6)
            ax.errorbar([x], [100 * r["mean"]], yerr=[100 * r["std"]], fmt="o", color="tab:blue", capsize=4)
        ax.set_xticks(range(len(mine)), [r["choice"] for r in mine], rotation=30 if len(mine) > 5 else 0)
        ax.set_xlim(-0.5, len(mine) - 0.5)
        ax.set_title(site)
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("validation accuracy (%)")
    return _save(fig, Path(path))


def export_best_recipe(study: Mapping[str, Any], path: str | Path) -> Path | None:
    """The best trial as a recipe YAML (base recipe + the trial's overrides), validated."""
    from zoo.training.recipe import dump, load_recipe
    from zoo.training.run import validate_recipe

    best, base = study.get("best"), study.get("recipe")
    if not best or not base:
        return None
    recipe = load_recipe(base, list(best.get("overrides", [])))
    recipe.name = f"{study.get('name', recipe.name)}-best"
    recipe.description = (
        f"Best configuration of the {study.get('oracle', '')} search in {study.get('project_dir', '?')}: trial "
        f"{best['trial_id']} ({best.get('label')}), validation accuracy {100 * best['val_accuracy']:.2f}% after "
        f"{recipe.train.epochs} epochs of recipe {base.get('name')} ({_fmt(best.get('flops'), 'M')} M FLOPs, "
        f"{_fmt(best.get('latency_ms'), 'ms')} ms/image). model.downsample is the searched configuration; "
        f"for a full training run keep it and change the schedule and data.")
    validate_recipe(recipe)
    return zreport.write_text(Path(path), dump(recipe))


def render_report(study: dict[str, Any], directory: str | Path) -> dict[str, Path]:
    """Write ``study.json``, ``trials.csv``, the PNGs, ``best-recipe.yaml`` and ``report.md`` of
    ``study`` (as collected, or a ``study.json`` read back) into ``directory``."""
    from zoo import runtime

    directory = Path(directory)
    study = analyse(dict(study))
    study.setdefault("environment", runtime.environment())
    files: dict[str, Path] = {}
    images: dict[str, str] = {}
    for key, writer in (("pareto_flops", lambda p: plot_pareto(study, "flops", p)),
                        ("pareto_latency", lambda p: plot_pareto(study, "latency_ms", p)),
                        ("effects", lambda p: plot_effects(study, p)),
                        ("recipe", lambda p: export_best_recipe(study, p))):
        out = writer(directory / FILES[key])
        if out:
            files[key], images[key] = out, FILES[key]
        else:
            (directory / FILES[key]).unlink(missing_ok=True)
    files["json"] = zreport.write_json(study, directory / FILES["json"])
    files["csv"] = zreport.write_text(directory / FILES["csv"], _csv(study))
    files["markdown"] = zreport.write_text(directory / FILES["markdown"], render_markdown(study, images))
    return files


def write_report(project_dir: str | Path) -> dict[str, Path]:
    """Collect a project's trials and write its report files (see the module docstring)."""
    return render_report(collect(project_dir), project_dir)


# ---------------------------------------------------------------------------------- studies
def _ratio(a: Any, b: Any) -> str:
    return f"{a / b:.2f}×" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else "—"


def verdict(study: Mapping[str, Any]) -> str:
    """One paragraph: what pooling did against striding in this study, with the numbers."""
    uniform = {u["choice"]: u for u in study.get("uniform") or []}
    conv = uniform.get("conv")
    parts = []
    if conv:
        for kind in (*POOLING, "blur", "s2d"):
            u = uniform.get(kind)
            if u:
                parts.append(f"all-{kind} {100 * u['val_accuracy']:.2f}% ({100 * (u['val_accuracy'] - conv['val_accuracy']):+.2f} "
                             f"pts, {_ratio(u.get('flops'), conv.get('flops'))} FLOPs, "
                             f"{_ratio(u.get('latency_ms'), conv.get('latency_ms'))} latency)")
        if parts:
            return (f"Against all-strided convolutions (all-conv: {100 * conv['val_accuracy']:.2f}%, "
                    f"{_fmt(conv.get('flops'), 'M')} M FLOPs, {_fmt(conv.get('latency_ms'), 'ms')} ms/image): "
                    + "; ".join(parts) + ".")
    pooled = {r["choice"]: r for r in study.get("effects") or [] if r["site"] in ("(any site)",) or
              (len(_units(study)) == 1 and not r.get("detail"))}
    pool = [pooled[k] for k in POOLING if k in pooled and pooled[k]["count"]]
    stride = pooled.get("conv")
    if pool and stride and stride["count"]:
        uses = sum(p["count"] for p in pool)
        mean = sum(p["mean"] * p["count"] for p in pool) / uses
        return (f"Over all trials, sites that pooled (max/avg, {uses} uses) averaged {100 * mean:.2f}% against "
                f"{100 * stride['mean']:.2f}% for strided convolutions ({stride['count']} uses); trials that pooled "
                f"somewhere cost {_ratio(_mean([p['flops_mean'] for p in pool]), stride['flops_mean'])} the FLOPs "
                f"and {_ratio(_mean([p['latency_ms_mean'] for p in pool]), stride['latency_ms_mean'])} the latency "
                f"of those that strided. No uniform configurations to compare directly.")
    return "Not enough completed trials to compare pooling with striding."


def _paper_section(study: Mapping[str, Any], folder: str) -> list[str]:
    """The README section of one paper comparison kept in ``folder`` (its directory name, which
    tells apart several runs of the same comparison, e.g. at different schedules)."""
    from zoo.models.registry import get_entry

    rows, published_errors = [], {}
    for t in study.get("trials", []):
        model = (t.get("config") or {}).get("model")
        try:
            published = get_entry(model).published.get("cifar10_error") if model else None
        except Exception:  # noqa: BLE001 - an unknown model just has no published figure
            published = None
        if published is not None:
            published_errors[_variant_of(t)] = published
        rows.append([t.get("variant") or t.get("label"), model, t.get("status"), _fmt(t.get("val_accuracy"), "%"),
                     _fmt(t.get("params"), "int"), _fmt(t.get("flops"), "M"), _fmt(t.get("latency_ms"), "ms"),
                     _fmt(t.get("train_time_s")), "—" if published is None else f"{published:.2f}"])
    recipe = study.get("recipe") or {}
    done = _by_variant(study)
    pairs = []
    for pooled, strided, where in (("ConvPool-CNN-C", "All-CNN-C", "the extra 3x3 convolution"),
                                   ("Model C", "Strided-CNN-C", "the stage's last convolution")):
        a, b = done.get(pooled), done.get(strided)
        if a and b:
            seeds = f" (means over {len(a['runs'])} and {len(b['runs'])} seeds)" if max(len(a["runs"]), len(b["runs"])) > 1 else ""
            pairs.append(f"pooling after {where} ({pooled}) instead of striding it ({strided}): "
                         f"{100 * (a['val_accuracy'] - b['val_accuracy']):+.2f} pts validation accuracy{seeds} at "
                         f"{_ratio(a.get('flops'), b.get('flops'))} the FLOPs and {_ratio(a.get('latency_ms'), b.get('latency_ms'))} "
                         f"the latency")
    verdict_line = (["**Pooling vs striding.** " + "; ".join(pairs) + ".", ""] if pairs else [])
    verdict_line += _paper_order(done, published_errors) + _lr_section(done)
    many = any(len(v["runs"]) > 1 for v in done.values())
    summary = _md_table(["variant", "seeds", "mean val acc %", "range %"],
                        [[k, len(v["runs"]), _fmt(v["val_accuracy"], "%"),
                          f"{100 * min(v['runs']):.2f}–{100 * max(v['runs']):.2f}"] for k, v in done.items()]) + [""]
    train = recipe.get("train") or {}
    rates = _rates_tried(done)
    varied = ("each seed listed" if many else f"seed {train.get('seed')}") + (
        f", learning rates {', '.join(f'{lr:g}' for lr in rates)}" if len(rates) > 1 else "")
    return [f"### [{folder}]({folder}/report.md) — Springenberg et al. 2015, Table 2, under equal training", "",
            *verdict_line, *(summary if many else []),
            (f"Recipe {recipe.get('name')} for every variant (same data, {train.get('epochs')} epochs, {varied}); "
             "the last column is the paper's CIFAR-10 test error after 350 epochs on all 50k images without "
             "augmentation, for reference only."), ""] + _md_table(
        ["variant", "model", "status", "val acc %", "params", "MFLOPs", "latency ms", "train s",
         "published test error %"], rows) + [""]


def _paper_order(done: Mapping[str, Mapping[str, Any]], errors: Mapping[str, float]) -> list[str]:
    """Whether the variants rank as in the paper: its order by published test error against
    this study's order by (mean) validation accuracy, and the pairs that agree."""
    names = [v for v in sorted(errors, key=errors.get) if v in done]
    if len(names) < 2:
        return []
    ours = sorted(names, key=lambda v: -done[v]["val_accuracy"])
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    agree = [f"{a} > {b}" for a, b in pairs if done[a]["val_accuracy"] > done[b]["val_accuracy"]]
    return [(f"**Paper order** (published test error, best first): {' < '.join(names)}; here (validation "
             f"accuracy, best first): {' > '.join(ours)}. {len(agree)} of {len(pairs)} pairs rank as in the paper"
             f"{': ' + ', '.join(agree) if agree else ''}."), ""]


def _by_variant(study: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Completed paper-comparison trials grouped by variant, each at its best learning rate (the
    paper's protocol, Springenberg et al. 2015 §3.1: a rate per model from a grid, here the one of
    highest mean validation accuracy): that mean, each run's accuracy at that rate (seed repeats),
    the rate, the mean at every rate tried, and the variant's FLOPs and latency (median)."""
    groups: dict[str, dict[float, list[Mapping[str, Any]]]] = {}
    for t in study.get("trials", []):
        if t.get("status") == "completed":
            lr = (t.get("config") or {}).get("lr")
            groups.setdefault(_variant_of(t), {}).setdefault(lr, []).append(t)
    out = {}
    for variant, by_lr in groups.items():
        means = {lr: statistics.fmean(t["val_accuracy"] for t in trials) for lr, trials in by_lr.items()}
        best = max(means, key=means.get)
        trials = by_lr[best]
        latency = [t["latency_ms"] for t in trials if t.get("latency_ms") is not None]
        out[variant] = {"val_accuracy": means[best], "runs": [t["val_accuracy"] for t in trials], "lr": best,
                        "by_lr": means, "flops": trials[0].get("flops"),
                        "latency_ms": statistics.median(latency) if latency else None}
    return out


def _variant_of(trial: Mapping[str, Any]) -> str:
    """The paper variant a comparison trial trained ("All-CNN-C (lr 0.002) (seed 1)" -> "All-CNN-C")."""
    return str(trial.get("variant")).split(LR_SUFFIX)[0].split(SEED_SUFFIX)[0]


def _rates_tried(done: Mapping[str, Mapping[str, Any]]) -> list[float]:
    """The learning rates a paper comparison trained with (from :func:`_by_variant`), ascending."""
    return sorted({lr for v in done.values() for lr in v["by_lr"] if lr is not None})


def _lr_section(done: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The table of mean validation accuracy per variant and learning rate, when several were tried."""
    rates = _rates_tried(done)
    if len(rates) < 2:
        return []
    rows = [[k, *(_fmt(v["by_lr"].get(lr), "%") if lr in v["by_lr"] else "—" for lr in rates), f"{v['lr']:g}"]
            for k, v in done.items()]
    return [("**Learning rate per variant.** As in the paper (Springenberg et al. 2015 §3.1: each model at the "
             "rate from a grid that suits it), every variant is compared at its best rate below; the choice "
             "uses the same validation images, for every variant alike."), ""] + _md_table(
        ["variant", *(f"val acc % at lr {lr:g}" for lr in rates), "chosen lr"], rows) + [""]


def write_index(root: str | Path = "results/studies") -> Path:
    """Summarise every study under ``root`` (``*/study.json``) in ``root/README.md``."""
    from zoo import runtime

    root = Path(root)
    studies = []
    for path in sorted(root.glob("*/study.json")):
        try:
            studies.append((path.parent, zreport.read_json(path)))
        except (OSError, ValueError):
            continue
    env = runtime.environment()
    lines = ["# Pool or stride? Downsampling studies", "",
             (f"Written by `zoo study` ({env['date']}, {env['cpu']}, {env['cpu_count']} CPUs) from "
             f"{len(studies)} studies in this folder. Every trial of a study trains with the same recipe "
             "(data subset, schedule, seed); only the downsampling (and, where searched, lr/weight decay) changes. "
             "Short CPU schedules: accuracies are far below published ones, and differences within the spread "
             "columns are noise. Latency is measured on this machine (ms/image, batch 1, median)."), ""]
    searches = [(p, s) for p, s in studies if s.get("kind") != "fixed"]
    fixed = [(p, s) for p, s in studies if s.get("kind") == "fixed"]
    by_model: dict[str, list] = {}
    for p, s in searches:
        by_model.setdefault(((s.get("recipe") or {}).get("model") or {}).get("name", "?"), []).append((p, s))
    for model, items in by_model.items():
        lines += [f"## {model}", ""]
        for p, s in items:
            link = f"{p.name}/report.md"
            summary, recipe = s.get("summary", {}), s.get("recipe") or {}
            data, train = recipe.get("data") or {}, recipe.get("train") or {}
            sites = ", ".join(f"{r['site']} ({', '.join(r['choices'])})" for r in (s.get("space") or {}).get("sites", [])
                              if r.get("choices"))
            lines += [f"### [{s.get('name')}]({link})", "",
                      (f"{s.get('oracle')} search, {summary.get('trials', 0)} trials ({summary.get('completed', 0)} "
                      f"completed, {summary.get('infeasible', 0)} over budget); {data.get('source')} limit "
                      f"{data.get('limit')} / validation {data.get('validation')}, {train.get('epochs')} epochs; "
                      f"searched: {sites or '—'}."), "", f"**Pooling vs striding.** {verdict(s)}", ""]
            eff = [r for r in s.get("effects") or [] if not r.get("detail") and
                   (r["site"] == "(any site)" or len(_units(s)) == 1)]
            if eff:
                lines += _md_table(EFFECT_HEADER, _effects_rows(eff)) + [""]
            if s.get("uniform"):
                lines += _md_table(["uniform choice", "trial", "val acc %", "MFLOPs", "latency ms"],
                                   [[u["choice"], u["trial_id"], _fmt(u["val_accuracy"], "%"), _fmt(u.get("flops"), "M"),
                                     _fmt(u.get("latency_ms"), "ms")] for u in s["uniform"]]) + [""]
            best = s.get("best")
            if best:
                lines += [(f"Best: trial {best['trial_id']} ({best.get('label')}), {_fmt(best['val_accuracy'], '%')}% — "
                          f"[best-recipe.yaml]({p.name}/best-recipe.yaml). Full evidence: [report]({link}), "
                          f"[study.json]({p.name}/study.json), [trials.csv]({p.name}/trials.csv)."), ""]
    if fixed:
        lines += ["## Paper comparisons", ""]
        for p, s in fixed:
            lines += _paper_section(s, p.name)
    if not studies:
        lines += [("No studies yet: run `zoo study RECIPE ...` or `zoo tune RECIPE --project-dir "
                  f"{root}/NAME`."), ""]
    root.mkdir(parents=True, exist_ok=True)
    return zreport.write_text(root / "README.md", "\n".join(lines))


def paper_variants(recipe: Any, seeds: int = 1, lrs: Sequence[float] = ()) -> dict[str, list[str]]:
    """The All-CNN paper's four model-C variants as overrides of ``recipe`` (its own
    ``model.downsample``, if any, is dropped so every variant is the published network), each
    trained with ``seeds`` consecutive seeds from the recipe's and at each learning rate of ``lrs``
    (default: the recipe's own; the paper picks each model's rate from a grid, §3.1). Round by
    round, so that an interrupted comparison has every variant once first: the recipe's rate before
    the others, every rate before the next seed. Labels: ``"<variant> (lr R) (seed N)"``, where the
    recipe's own rate and seed add nothing, so a comparison run without ``lrs`` extends with them."""
    if seeds < 1:
        raise ZooError(f"--paper-seeds {seeds}: the comparison needs at least one seed per variant (1 or more).")
    rates = _paper_rates(recipe.optimizer.lr, lrs)
    extra = ["model.downsample=null"] if "downsample" in recipe.model.options else []
    out = {}
    for k in range(seeds):
        seed = recipe.train.seed + k
        for lr in rates:
            own = lr == recipe.optimizer.lr
            for label, name in PAPER_VARIANTS.items():
                key = label + ("" if own else f"{LR_SUFFIX}{lr:g})") + ("" if k == 0 else f"{SEED_SUFFIX}{seed})")
                out[key] = [f"model.name={name}", *extra, *([] if own else [f"optimizer.lr={lr:g}"]),
                            *([f"train.seed={seed}"] if k else [])]
    return out


def _paper_rates(own: float, lrs: Sequence[float]) -> list[float]:
    """The learning-rate grid of a paper comparison, the recipe's own rate first when it is in it."""
    rates = [float(lr) for lr in lrs] or [own]
    bad = [lr for lr in rates if not lr > 0]
    if bad or len(set(rates)) != len(rates):
        raise ZooError(f"--paper-lrs {','.join(f'{lr:g}' for lr in rates)}: learning rates must be positive and "
                       "different from each other (e.g. --paper-lrs 0.001,0.002).")
    return sorted(rates, key=lambda lr: lr != own)


def study(recipes: Sequence[str | Path] = (), *, root: str | Path = "results/studies", paper: str | Path | None = None,
          collect_only: bool = False, resume: bool = False, overwrite: bool = False, overrides: Sequence[str] = (),
          paper_seeds: int = 1, paper_lrs: Sequence[float] = (), **tune_options: Any) -> Path:
    """Run a :func:`zoo.search.tuner.tune` search per recipe into ``root/<recipe>/`` and, with ``paper``,
    the All-CNN comparison (:data:`PAPER_VARIANTS`, :func:`zoo.search.tuner.compare`) into
    ``root/<paper recipe>-paper/`` (``paper_seeds`` seeds per variant, at each of ``paper_lrs``); then write ``root/README.md`` (:func:`write_index`).
    ``collect_only`` only rewrites the README from the studies already there."""
    from zoo.training.recipe import load_recipe
    from zoo.search.tuner import compare, tune

    root = Path(root)
    if not collect_only:
        for item in recipes:
            recipe = load_recipe(item, overrides)
            tune(recipe, project_dir=root / recipe.name, resume=resume, overwrite=overwrite, **tune_options)
        if paper:
            recipe = load_recipe(paper, overrides)
            keep = {k: tune_options[k] for k in ("isolate", "latency_batch", "latency_repeats", "verbose")
                    if k in tune_options}
            compare(recipe, paper_variants(recipe, paper_seeds, paper_lrs), project_dir=root / f"{recipe.name}-paper", resume=resume,
                    overwrite=overwrite, name=f"{recipe.name}-paper", **keep)
    return write_index(root)


def add_study_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``study`` arguments, for ``python -m zoo.studies.study`` and the ``zoo study`` command."""
    from zoo.search.tuner import add_search_options

    parser.add_argument("recipes", nargs="*", help="recipes to search, one study each (e.g. all_cnn_c-study)")
    parser.add_argument("--root", default="results/studies", help="studies folder (default results/studies)")
    parser.add_argument("--paper-recipe", help="also run the All-CNN paper comparison (All-CNN-C, ConvPool-CNN-C, "
                                               "Strided-CNN-C, Model C) with this recipe")
    parser.add_argument("--paper-seeds", type=int, default=1, metavar="N",
                        help="train each paper variant with N consecutive seeds (default 1)")
    parser.add_argument("--paper-lrs", type=_rates, default=(), metavar="LIST",
                        help="train each paper variant at each of these learning rates and compare each at its best "
                             "(the paper's protocol), e.g. 0.001,0.002 (default: the recipe's rate)")
    parser.add_argument("--override", "-O", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted recipe override for every study (repeatable)")
    parser.add_argument("--collect-only", action="store_true", help="only rewrite README.md from the studies there")
    add_search_options(parser)
    parser.set_defaults(func=study_from_args)
    return parser


def _rates(text: str) -> tuple[float, ...]:
    """``--paper-lrs 0.001,0.002`` -> (0.001, 0.002)."""
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give learning rates separated by commas, e.g. 0.001,0.002") from None


def study_from_args(args: argparse.Namespace) -> int:
    """Run studies from parsed arguments; 0 on success, 1 for bad input."""
    from zoo.training.recipe import RecipeError
    from zoo.search.tuner import TuneError, tune_options

    options = tune_options(args)
    resume, overwrite = options.pop("resume"), options.pop("overwrite")
    try:
        path = study(args.recipes, root=args.root, paper=args.paper_recipe, collect_only=args.collect_only,
                     resume=resume, overwrite=overwrite, overrides=args.override, paper_seeds=args.paper_seeds,
                     paper_lrs=args.paper_lrs,
                     **options)
    except (TuneError, RecipeError, ZooError, FileNotFoundError) as err:
        print(f"zoo study: error: {err}", file=sys.stderr)
        return 1
    print(f"zoo study: {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m zoo.studies.study [RECIPES...] [--paper-recipe R] [options]``."""
    parser = add_study_arguments(argparse.ArgumentParser(prog="python -m zoo.studies.study", description=__doc__,
                                                         formatter_class=argparse.RawDescriptionHelpFormatter))
    return study_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
