"""The study's PNGs: accuracy against FLOPs and latency (Pareto fronts) and accuracy per choice.

Drawn with matplotlib's object API on an Agg canvas (no global pyplot state, no display).
"""
from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from zoo import report as zreport
from zoo.studies.analyse import COSTS, usable

__all__ = ["plot_effects", "plot_pareto"]


def _figure(width: float = 7, height: float = 4.5) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return zreport.write_text(path, buf.getvalue())


def plot_pareto(study: Mapping[str, Any], cost: str, path: str | Path) -> Path | None:
    """Validation accuracy against ``cost`` for every analysed trial, the front as a step line."""
    trials = [t for t in usable(study) if isinstance(t.get(cost), (int, float))]
    if not trials:
        return None
    label, scale = COSTS[cost]
    front = [str(i) for i in (study.get("pareto") or {}).get(cost, [])]
    ax = (fig := _figure()).subplots()
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
