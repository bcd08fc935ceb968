"""A study's files: :func:`write_report` turns a project directory into::

    study.json        the search, every trial (config, accuracy, params, FLOPs, latency, time,
                      peak RSS) and the analysis; render_report(study.json) rebuilds the rest
    trials.csv        one row per trial
    report.md         the trial table, Pareto fronts, choice effects and memory per trial
    pareto_flops.png / pareto_latency.png   validation accuracy against FLOPs / latency
    effects.png       validation accuracy per choice at each site (mean ± std and every trial)
    best-recipe.yaml  the best trial as a recipe ``zoo train`` accepts (model.downsample set)
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zoo import report as zreport
from zoo import runtime
from zoo.studies.analyse import analyse, collect
from zoo.studies.plots import plot_effects, plot_pareto
from zoo.studies.render import fmt, render_csv, render_markdown
from zoo.training import dump, load_recipe, validate_recipe

__all__ = ["FILES", "export_best_recipe", "render_report", "write_report"]

FILES = {"json": "study.json", "csv": "trials.csv", "markdown": "report.md", "pareto_flops": "pareto_flops.png",
         "pareto_latency": "pareto_latency.png", "effects": "effects.png", "recipe": "best-recipe.yaml"}


def export_best_recipe(study: Mapping[str, Any], path: str | Path) -> Path | None:
    """The best trial as a recipe YAML (base recipe + the trial's overrides), validated."""
    best, base = study.get("best"), study.get("recipe")
    if not best or not base:
        return None
    recipe = load_recipe(base, list(best.get("overrides", [])))
    recipe.name = f"{study.get('name', recipe.name)}-best"
    recipe.description = (
        f"Best configuration of the {study.get('oracle', '')} search in {study.get('project_dir', '?')}: trial "
        f"{best['trial_id']} ({best.get('label')}), validation accuracy {100 * best['val_accuracy']:.2f}% after "
        f"{recipe.train.epochs} epochs of recipe {base.get('name')} ({fmt(best.get('flops'), 'M')} M FLOPs, "
        f"{fmt(best.get('latency_ms'), 'ms')} ms/image). model.downsample is the searched configuration; "
        f"for a full training run keep it and change the schedule and data.")
    validate_recipe(recipe)
    return zreport.write_text(Path(path), dump(recipe))


def render_report(study: dict[str, Any], directory: str | Path) -> dict[str, Path]:
    """Write ``study.json``, ``trials.csv``, the PNGs, ``best-recipe.yaml`` and ``report.md`` of
    ``study`` (as collected, or a ``study.json`` read back) into ``directory``."""
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
    files["csv"] = zreport.write_text(directory / FILES["csv"], render_csv(study))
    files["markdown"] = zreport.write_text(directory / FILES["markdown"], render_markdown(study, images))
    return files


def write_report(project_dir: str | Path) -> dict[str, Path]:
    """Collect a project's trials and write its report files (see the module docstring)."""
    return render_report(collect(project_dir), project_dir)
