"""keras-tuner searches over a recipe's downsampling choices ("pool or stride?").

A search derives its space from the model's own downsampling sites (:class:`SearchSpace`), lets a
keras-tuner oracle pick configurations (:mod:`zoo.search.oracles`), checks each against a budget
before it trains (:class:`Budget`) and trains it on the one fit path, :func:`zoo.training.train`,
in a process of its own (:mod:`zoo.search.runner`, :mod:`zoo.search.trial`): a trial killed
mid-epoch continues from its last finished epoch when the search is resumed. The study report
of a search is :mod:`zoo.studies`' (``zoo tune`` writes it).

>>> from zoo.search import tune
>>> result = tune("all_cnn_c-study", max_trials=12, choices={"pool1": ["max", "conv"]})

Names load lazily, so that ``python -m zoo.search.trial`` runs its module once.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "tune": "zoo.search.launch", "compare": "zoo.search.launch", "SearchResult": "zoo.search.launch",
    "SearchSpace": "zoo.search.space", "DEFAULT_CHOICES": "zoo.search.space", "SHORTCUTS": "zoo.search.space",
    "parse_choices": "zoo.search.space",
    "Budget": "zoo.search.budget", "parse_flops": "zoo.search.budget", "measure_latency": "zoo.search.budget",
    "ORACLES": "zoo.search.oracles", "OBJECTIVE": "zoo.search.oracles", "make_oracle": "zoo.search.oracles",
    "ISOLATION": "zoo.search.runner", "TrialRunner": "zoo.search.runner",
    "run_trial": "zoo.search.trial", "ZooTuner": "zoo.search.tuner",
    "prepare_project": "zoo.search.project",
    "RECORD": "zoo.search.records", "SEARCH": "zoo.search.records", "read_record": "zoo.search.records",
    "read_records": "zoo.search.records",
    "TuneError": "zoo.search.errors", "ProjectExistsError": "zoo.search.errors",
    "SearchFailedError": "zoo.search.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'zoo.search' has no attribute {name!r}")
