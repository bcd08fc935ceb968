"""One study as text: the Markdown report (``report.md``) and the trial table (``trials.csv``)."""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from zoo.studies.analyse import COSTS, units

__all__ = ["EFFECT_HEADER", "effects_rows", "fmt", "md_table", "ratio", "render_csv", "render_markdown"]

EFFECT_HEADER = ["site", "choice", "n", "val acc % mean ± std", "min–max", "mean MFLOPs", "mean latency ms"]


def fmt(value: Any, kind: str = "") -> str:
    """A cell: ``%`` (fraction as percent), ``M`` (millions), ``ms``, ``int`` or plain; — for none."""
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


def ratio(a: Any, b: Any) -> str:
    """``a / b`` as ``"1.47×"`` (— when either is missing or ``b`` is zero)."""
    return f"{a / b:.2f}×" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else "—"


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """A Markdown table's lines (pipes in cells escaped)."""
    def esc(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]]


def _searched_extra(study: Mapping[str, Any]) -> list[str]:
    space = study.get("space") or {}
    return [k for k in ("lr", "weight_decay") if space.get(k)]


def _trial_cells(study: Mapping[str, Any], t: Mapping[str, Any], extra: list[str], marks: tuple[str, set]) -> list:
    best, front = marks
    ds = t.get("config", {}).get("downsample", {})
    tid = str(t["trial_id"])
    cells = [tid + (" ★" if tid == best else "") + (" •" if tid in front else ""), t.get("status", "?")]
    cells += ([t.get("variant") or t.get("label"), t.get("config", {}).get("model", "")]
              if study.get("kind") == "fixed" else [ds.get(site, "—") for _, site in units(study)])
    cells += [fmt((t.get("config") or {}).get(k)) for k in extra]
    return cells + [fmt(t.get("val_accuracy"), "%"), fmt(t.get("best_val_accuracy"), "%"), fmt(t.get("params"), "int"),
                    fmt(t.get("flops"), "M"), fmt(t.get("latency_ms"), "ms"), fmt(t.get("train_time_s")),
                    fmt(t.get("peak_rss_mb")), fmt(t.get("search_rss_mb"))]


def trial_rows(study: Mapping[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The header and rows of the trial table (★ best, • on a Pareto front)."""
    fixed = study.get("kind") == "fixed"
    epochs = len({(t.get("config") or {}).get("epochs") for t in study.get("trials", [])}) > 1  # Hyperband rungs
    extra = _searched_extra(study) + (["epochs"] if epochs else [])
    header = ["trial", "status"] + (["variant", "model"] if fixed else [u for u, _ in units(study)]) + extra + [
        "val acc %", "best val acc %", "params", "MFLOPs", "latency ms", "train s", "peak RSS MB", "search RSS MB"]
    pareto = study.get("pareto", {})
    marks = ((study.get("best") or {}).get("trial_id"), set(pareto.get("flops", [])) | set(pareto.get("latency_ms", [])))
    return header, [_trial_cells(study, t, extra, marks) for t in study.get("trials", [])]


def effects_rows(rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """Rows of an effects table (:data:`EFFECT_HEADER`)."""
    out = []
    for r in rows:
        spread = "—" if r["mean"] is None else f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}"
        span = "—" if r["min"] is None else f"{100 * r['min']:.2f}–{100 * r['max']:.2f}"
        out.append([r["site"], r["choice"], r["count"], spread, span, fmt(r.get("flops_mean"), "M"),
                    fmt(r.get("latency_ms_mean"), "ms")])
    return out


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


def _head_lines(study: Mapping[str, Any]) -> list[str]:
    recipe = study.get("recipe") or {}
    model, data, train = recipe.get("model", {}), recipe.get("data", {}), recipe.get("train", {})
    summary = study.get("summary", {})
    title = "Comparison" if study.get("kind", "search") == "fixed" else "Search"
    counts = ", ".join(f"{v} {k}" for k, v in summary.items() if k not in ("trials", "analysed"))
    lines = [f"# {title}: {study.get('name', '')} ({model.get('name', '?')})", "",
             (f"- **recipe**: {recipe.get('name', '?')} — {model.get('name')} on {data.get('source')} "
              f"(limit {data.get('limit')}, validation {data.get('validation')}), {train.get('epochs')} epochs, "
              f"seed {train.get('seed')}; every trial trained the same way"),
             (f"- **trials**: {summary.get('trials', 0)} ({counts or 'none'}); oracle {study.get('oracle', '?')}, "
              f"objective {study.get('objective', 'val_accuracy')} (final epoch)")]
    budget = {k: v for k, v in (study.get("budget") or {}).items() if v is not None}
    if budget:
        lines.append("- **budget**: " + ", ".join(
            f"{fmt(v, 'M')} M FLOPs" if k == "flops" else f"{v} ms/image" for k, v in budget.items())
            + " (configurations over it rejected before training)")
    return lines + _space_lines(study) + [""]


def _best_lines(study: Mapping[str, Any], images: Mapping[str, str]) -> list[str]:
    best = study.get("best")
    if not best:
        return []
    lines = ["## Best configuration", "",
             (f"Trial {best['trial_id']}: **{best.get('label')}** — val accuracy {fmt(best['val_accuracy'], '%')}%, "
              f"{fmt(best.get('params'), 'int')} params, {fmt(best.get('flops'), 'M')} M FLOPs, "
              f"{fmt(best.get('latency_ms'), 'ms')} ms/image."), ""]
    if images.get("recipe"):
        lines += [(f"Exported as [{images['recipe']}]({images['recipe']}): "
                   f"`zoo train {Path(study.get('project_dir', '.')) / images['recipe']}`"), ""]
    return lines


def _trials_lines(study: Mapping[str, Any]) -> list[str]:
    header, rows = trial_rows(study)
    batch = (study.get("latency") or {}).get("batch", 1)
    lines = ["## Trials", "", ("★ best, • on a Pareto front. Accuracy on the held-out validation images after the "
             f"last epoch; latency is the median ms/image of repeated batch-{batch} calls on this machine."), ""]
    lines += md_table(header, rows) + [""]
    failed = [t for t in study.get("trials", []) if t.get("status") != "completed" and t.get("message")]
    return lines + ([f"- trial {t['trial_id']} ({t.get('status')}): {t['message']}" for t in failed] + [""]
                    if failed else [])


def _pareto_lines(study: Mapping[str, Any], images: Mapping[str, str]) -> list[str]:
    lines = ["## Pareto fronts", ""]
    by_id = {str(t["trial_id"]): t for t in study.get("trials", [])}
    for cost, (label, _) in COSTS.items():
        front = (study.get("pareto") or {}).get(cost, [])
        lines += ["**Accuracy against " + label + "**: " + (" → ".join(
            f"trial {i} ({by_id[i].get('label')}: {fmt(by_id[i].get('val_accuracy'), '%')}% at "
            f"{fmt(by_id[i].get(cost), 'M' if cost == 'flops' else 'ms')})" for i in front if i in by_id) or "none"), ""]
        key = f"pareto_{'flops' if cost == 'flops' else 'latency'}"
        if images.get(key):
            lines += [f"![validation accuracy against {label}]({images[key]})", ""]
    return lines


def _effects_lines(study: Mapping[str, Any], images: Mapping[str, str]) -> list[str]:
    eff = study.get("effects") or []
    if not eff:
        return []
    lines = ["## Effect of each choice", "",
             ("Validation accuracy of the trials that used a choice at a site (with whatever the other sites "
              "had): n trials, mean ± sample std and range; `(any site)` pools every site, n counting site "
              "uses. With few trials per cell, differences smaller than the spread are not evidence."), ""]
    lines += md_table(EFFECT_HEADER, effects_rows([r for r in eff if not r.get("detail")])) + [""]
    detail = [r for r in eff if r.get("detail")]
    if detail:
        lines += ["Blur filter sizes:", ""] + md_table(EFFECT_HEADER, effects_rows(detail)) + [""]
    if images.get("effects"):
        lines += [f"![accuracy per choice and site]({images['effects']})", ""]
    return lines


def _uniform_lines(study: Mapping[str, Any]) -> list[str]:
    uniform = study.get("uniform") or []
    if not uniform:
        return []
    return ["## Uniform configurations", "", "The same choice at every searched site:", ""] + md_table(
        ["choice", "trial", "val acc %", "params", "MFLOPs", "latency ms"],
        [[u["choice"], u["trial_id"], fmt(u["val_accuracy"], "%"), fmt(u.get("params"), "int"),
          fmt(u.get("flops"), "M"), fmt(u.get("latency_ms"), "ms")] for u in uniform]) + [""]


def _machine_lines(study: Mapping[str, Any]) -> list[str]:
    lines, mem = [], study.get("memory") or {}
    if (mem.get("peak_rss_mb") or {}).get("count"):
        p, s = mem["peak_rss_mb"], mem.get("search_rss_mb") or {}
        lines += ["## Memory", "",
                  (f"Peak RSS per trial ({', '.join(mem.get('scope', []))}): {fmt(p['min'])}–{fmt(p['max'])} MB over "
                   f"{p['count']} trials (last − first: {fmt(mem.get('peak_growth_mb'))} MB). Search process RSS "
                   f"after each trial: {fmt(s.get('min'))}–{fmt(s.get('max'))} MB (last − first: "
                   f"{fmt(mem.get('search_growth_mb'))} MB)."), ""]
    env = study.get("environment") or {}
    if env:
        lines += ["## Environment", "", (f"{env.get('cpu')} ({env.get('cpu_count')} CPUs), TensorFlow "
                  f"{env.get('tensorflow')}, Keras {env.get('keras')}, {env.get('date')}."), ""]
    return lines


def render_markdown(study: Mapping[str, Any], images: Mapping[str, str] | None = None) -> str:
    """The report of one study as Markdown (``images``: file names of the plots written)."""
    images = images or {}
    return "\n".join(_head_lines(study) + _best_lines(study, images) + _trials_lines(study)
                     + _pareto_lines(study, images) + _effects_lines(study, images) + _uniform_lines(study)
                     + _machine_lines(study))


def render_csv(study: Mapping[str, Any]) -> str:
    """``trials.csv``: one row per trial."""
    searched, extra = units(study), _searched_extra(study)
    cols = ["trial_id", "status", "label", *[f"site:{u}" for u, _ in searched], *extra, "val_accuracy",
            "best_val_accuracy", "params", "flops", "latency_ms", "train_time_s", "trial_wall_time_s",
            "peak_rss_mb", "search_rss_mb", "tuner_id", "message"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for t in study.get("trials", []):
        ds = t.get("config", {}).get("downsample", {})
        row = {c: t.get(c) for c in cols}
        row.update({f"site:{u}": ds.get(site) for u, site in searched})
        row.update({k: (t.get("config") or {}).get(k) for k in extra})
        writer.writerow(row)
    return buf.getvalue()
