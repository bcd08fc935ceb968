"""``results/studies/README.md``: every study in a folder, summarised ("pool or stride?").

Searches are grouped by model, each with its verdict (:func:`verdict`), pooled choice effects,
uniform configurations and best trial; paper comparisons follow (:mod:`zoo.studies.paper`).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zoo import report as zreport
from zoo import runtime
from zoo.studies.analyse import mean, units
from zoo.studies.paper import paper_section
from zoo.studies.render import EFFECT_HEADER, effects_rows, fmt, md_table, ratio

__all__ = ["verdict", "write_index"]

POOLING = ("max", "avg")


def _uniform_verdict(uniform: Mapping[str, Mapping[str, Any]]) -> str | None:
    """Every uniform configuration against all-conv, or None when there is no all-conv trial to compare."""
    conv = uniform.get("conv")
    if not conv:
        return None
    parts = [f"all-{kind} {100 * u['val_accuracy']:.2f}% ({100 * (u['val_accuracy'] - conv['val_accuracy']):+.2f} "
             f"pts, {ratio(u.get('flops'), conv.get('flops'))} FLOPs, "
             f"{ratio(u.get('latency_ms'), conv.get('latency_ms'))} latency)"
             for kind in (*POOLING, "blur", "s2d") if (u := uniform.get(kind))]
    if not parts:
        return None
    return (f"Against all-strided convolutions (all-conv: {100 * conv['val_accuracy']:.2f}%, "
            f"{fmt(conv.get('flops'), 'M')} M FLOPs, {fmt(conv.get('latency_ms'), 'ms')} ms/image): "
            + "; ".join(parts) + ".")


def verdict(study: Mapping[str, Any]) -> str:
    """One paragraph: what pooling did against striding in this study, with the numbers."""
    found = _uniform_verdict({u["choice"]: u for u in study.get("uniform") or []})
    if found:
        return found
    pooled = {r["choice"]: r for r in study.get("effects") or [] if r["site"] == "(any site)" or
              (len(units(study)) == 1 and not r.get("detail"))}
    pool = [pooled[k] for k in POOLING if k in pooled and pooled[k]["count"]]
    stride = pooled.get("conv")
    if not (pool and stride and stride["count"]):
        return "Not enough completed trials to compare pooling with striding."
    uses = sum(p["count"] for p in pool)
    average = sum(p["mean"] * p["count"] for p in pool) / uses
    return (f"Over all trials, sites that pooled (max/avg, {uses} uses) averaged {100 * average:.2f}% against "
            f"{100 * stride['mean']:.2f}% for strided convolutions ({stride['count']} uses); trials that pooled "
            f"somewhere cost {ratio(mean([p['flops_mean'] for p in pool]), stride['flops_mean'])} the FLOPs "
            f"and {ratio(mean([p['latency_ms_mean'] for p in pool]), stride['latency_ms_mean'])} the latency "
            f"of those that strided. No uniform configurations to compare directly.")


def _search_section(folder: Path, s: Mapping[str, Any]) -> list[str]:
    """The README section of one search kept in ``folder``."""
    link = f"{folder.name}/report.md"
    summary, recipe = s.get("summary", {}), s.get("recipe") or {}
    data, train = recipe.get("data") or {}, recipe.get("train") or {}
    sites = ", ".join(f"{r['site']} ({', '.join(r['choices'])})" for r in (s.get("space") or {}).get("sites", [])
                      if r.get("choices"))
    lines = [f"### [{s.get('name')}]({link})", "",
             (f"{s.get('oracle')} search, {summary.get('trials', 0)} trials ({summary.get('completed', 0)} "
              f"completed, {summary.get('infeasible', 0)} over budget); {data.get('source')} limit "
              f"{data.get('limit')} / validation {data.get('validation')}, {train.get('epochs')} epochs; "
              f"searched: {sites or '—'}."), "", f"**Pooling vs striding.** {verdict(s)}", ""]
    eff = [r for r in s.get("effects") or [] if not r.get("detail") and
           (r["site"] == "(any site)" or len(units(s)) == 1)]
    if eff:
        lines += md_table(EFFECT_HEADER, effects_rows(eff)) + [""]
    if s.get("uniform"):
        lines += md_table(["uniform choice", "trial", "val acc %", "MFLOPs", "latency ms"],
                          [[u["choice"], u["trial_id"], fmt(u["val_accuracy"], "%"), fmt(u.get("flops"), "M"),
                            fmt(u.get("latency_ms"), "ms")] for u in s["uniform"]]) + [""]
    best = s.get("best")
    if best:
        lines += [(f"Best: trial {best['trial_id']} ({best.get('label')}), {fmt(best['val_accuracy'], '%')}% — "
                   f"[best-recipe.yaml]({folder.name}/best-recipe.yaml). Full evidence: [report]({link}), "
                   f"[study.json]({folder.name}/study.json), [trials.csv]({folder.name}/trials.csv)."), ""]
    return lines


def _read_studies(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    studies = []
    for path in sorted(root.glob("*/study.json")):
        try:
            studies.append((path.parent, zreport.read_json(path)))
        except (OSError, ValueError):
            continue
    return studies


def write_index(root: str | Path = "results/studies") -> Path:
    """Summarise every study under ``root`` (``*/study.json``) in ``root/README.md``."""
    root = Path(root)
    studies = _read_studies(root)
    env = runtime.environment()
    lines = ["# Pool or stride? Downsampling studies", "",
             (f"Written by `zoo study` ({env['date']}, {env['cpu']}, {env['cpu_count']} CPUs) from "
              f"{len(studies)} studies in this folder. Every trial of a study trains with the same recipe "
              "(data subset, schedule, seed); only the downsampling (and, where searched, lr/weight decay) changes. "
              "Short CPU schedules: accuracies are far below published ones, and differences within the spread "
              "columns are noise. Latency is measured on this machine (ms/image, batch 1, median)."), ""]
    by_model: dict[str, list] = {}
    for p, s in studies:
        if s.get("kind") != "fixed":
            by_model.setdefault(((s.get("recipe") or {}).get("model") or {}).get("name", "?"), []).append((p, s))
    for model, items in by_model.items():
        lines += [f"## {model}", ""] + [line for p, s in items for line in _search_section(p, s)]
    fixed = [(p, s) for p, s in studies if s.get("kind") == "fixed"]
    if fixed:
        lines += ["## Paper comparisons", ""] + [line for p, s in fixed for line in paper_section(s, p.name)]
    if not studies:
        lines += [f"No studies yet: run `zoo study RECIPE ...` or `zoo tune RECIPE --project-dir {root}/NAME`.", ""]
    root.mkdir(parents=True, exist_ok=True)
    return zreport.write_text(root / "README.md", "\n".join(lines))
