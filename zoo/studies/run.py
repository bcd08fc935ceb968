"""Run studies: a search or comparison and its report, and whole "pool or stride?" studies.

:func:`tune` and :func:`compare` run :func:`zoo.search.tune` / :func:`zoo.search.compare` and
write the project's report (:func:`zoo.studies.write_report`; a keras-tuner worker writes none,
its chief does). :func:`study` runs a search per recipe (and the All-CNN paper comparison:
All-CNN-C, ConvPool-CNN-C, Strided-CNN-C and Model C under one recipe, with one or more seeds
and learning rates each) into ``results/studies/<recipe>/`` and summarises every study there in
``results/studies/README.md`` (:func:`zoo.studies.write_index`)::

    zoo study all_cnn_c-study resnet20-study --paper-recipe all_cnn_c-study --paper-seeds 2 --max-trials 12 --resume
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo import report as zreport
from zoo import search
from zoo.studies.analyse import collect
from zoo.studies.index import write_index
from zoo.studies.paper import paper_variants
from zoo.studies.report import write_report
from zoo.training import Recipe, load_recipe

__all__ = ["StudyResult", "compare", "study", "tune"]

COMPARE_OPTIONS = ("isolate", "latency_batch", "latency_repeats", "verbose")  # the search options compare takes


@dataclass
class StudyResult:
    """What :func:`tune` and :func:`compare` return: the trials, the analysed study and its files."""

    project_dir: Path
    trials: list[dict[str, Any]]
    study: dict[str, Any]
    files: dict[str, Path]

    @property
    def completed(self) -> list[dict[str, Any]]:
        return [t for t in self.trials if t.get("status") == "completed"]

    @property
    def best(self) -> dict[str, Any] | None:
        """The best analysed trial (for Hyperband: among those trained for the full schedule)."""
        best = (self.study.get("best") or {}).get("trial_id")
        return next((t for t in self.trials if str(t["trial_id"]) == best), None)

    @classmethod
    def of(cls, result: search.SearchResult) -> StudyResult:
        """The study of a finished search: its report written, unless it ran as a keras-tuner worker."""
        if result.role == "worker":
            study = collect(result.project_dir)
            return cls(result.project_dir, study["trials"], study, {})
        files = write_report(result.project_dir)
        study = zreport.read_json(files["json"])
        return cls(result.project_dir, study["trials"], study, files)


def tune(recipe: str | Path | Recipe | Mapping, **options: Any) -> StudyResult:
    """:func:`zoo.search.tune` (same arguments), then the search's report (``report.md``, ...)."""
    return StudyResult.of(search.tune(recipe, **options))


def compare(recipe: str | Path | Recipe | Mapping, variants: Mapping[str, Sequence[str]], **options: Any) -> StudyResult:
    """:func:`zoo.search.compare` (same arguments), then the comparison's report."""
    return StudyResult.of(search.compare(recipe, variants, **options))


def study(recipes: Sequence[str | Path] = (), *, root: str | Path = "results/studies", paper: str | Path | None = None,
          collect_only: bool = False, resume: bool = False, overwrite: bool = False, overrides: Sequence[str] = (),
          paper_seeds: int = 1, paper_lrs: Sequence[float] = (), **tune_options: Any) -> Path:
    """Run a :func:`tune` search per recipe into ``root/<recipe>/`` and, with ``paper``, the
    All-CNN comparison (:func:`zoo.studies.paper.paper_variants`, :func:`compare`) into
    ``root/<paper recipe>-paper/`` (``paper_seeds`` seeds per variant, at each of ``paper_lrs``);
    then write ``root/README.md`` (:func:`write_index`). ``collect_only`` only rewrites the
    README from the studies already there."""
    root = Path(root)
    if not collect_only:
        for item in recipes:
            recipe = load_recipe(item, overrides)
            tune(recipe, project_dir=root / recipe.name, resume=resume, overwrite=overwrite, **tune_options)
        if paper:
            recipe = load_recipe(paper, overrides)
            keep = {k: tune_options[k] for k in COMPARE_OPTIONS if k in tune_options}
            compare(recipe, paper_variants(recipe, paper_seeds, paper_lrs), project_dir=root / f"{recipe.name}-paper",
                    resume=resume, overwrite=overwrite, name=f"{recipe.name}-paper", **keep)
    return write_index(root)


