"""Pool-or-stride studies: what each downsampling choice did, per search and across architectures.

A study is a search (:func:`zoo.search.tune`) or a fixed comparison (:func:`zoo.search.compare`)
and its report: :func:`collect` reads a project's trials, :func:`analyse` finds the Pareto fronts,
the effect of each choice at each site and the uniform configurations, :func:`write_report` writes
``report.md``, ``study.json``, ``trials.csv``, the plots and ``best-recipe.yaml``;
:func:`write_index` summarises every study of a folder in its ``README.md``; :func:`study` runs
whole studies, the All-CNN paper comparison included (:mod:`zoo.studies.paper`).

>>> from zoo.studies import tune
>>> result = tune("all_cnn_c-study", max_trials=12)      # the search and its report
>>> result.files["markdown"]
"""
from zoo.studies.analyse import analyse, collect, effects, pareto_front, uniform_configurations
from zoo.studies.index import verdict, write_index
from zoo.studies.paper import PAPER_VARIANTS, paper_variants
from zoo.studies.render import render_csv, render_markdown
from zoo.studies.report import export_best_recipe, render_report, write_report
from zoo.studies.run import StudyResult, compare, study, tune

__all__ = ["PAPER_VARIANTS", "StudyResult", "analyse", "collect", "compare", "effects", "export_best_recipe",
           "pareto_front", "paper_variants", "render_csv", "render_markdown", "render_report", "study", "tune",
           "uniform_configurations", "verdict", "write_index", "write_report"]
