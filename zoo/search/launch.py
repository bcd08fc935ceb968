"""Start a search (:func:`tune`) or a fixed comparison (:func:`compare`) in a project directory.

Every bad input (recipe, site, choice, empty space, impossible budget, existing project) is a
:class:`zoo.errors.ZooError` before any training. Both return the trial records; the study
report (Pareto fronts, effects, best recipe) is written by :mod:`zoo.studies`, which calls these.

Chief and workers (keras-tuner's distributed mode): run the same search, with the same project
directory on a shared file system, once as the chief and once per worker; start the chief first::

    export KERASTUNER_ORACLE_IP=127.0.0.1 KERASTUNER_ORACLE_PORT=8000
    KERASTUNER_TUNER_ID=chief   zoo tune R --project-dir P --overwrite &   # serves the oracle
    KERASTUNER_TUNER_ID=tuner0  zoo tune R --project-dir P &               # trains trials
    KERASTUNER_TUNER_ID=tuner1  zoo tune R --project-dir P &

The chief checks the project directory (``resume`` / ``overwrite`` apply to it only) and runs the
oracle; it trains nothing. Workers get trials over gRPC and write their trial records. The chief
polls for finished workers every 20 s (keras-tuner), so it may return up to 20 s after the last
trial. Needs the ``tensorboard`` package (keras-tuner's protobuf definitions import it).
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras_tuner as kt

from zoo import compat, runtime
from zoo.models import registry
from zoo.search.budget import Budget, check_budget, data_info
from zoo.search.errors import TuneError
from zoo.search.oracles import OBJECTIVE, check_oracle_dependencies, make_oracle
from zoo.search.project import default_project, prepare_project, role, variant_id
from zoo.search.records import read_records
from zoo.search.runner import TrialRunner
from zoo.search.space import SearchSpace
from zoo.search.tuner import ZooTuner
from zoo.training import Recipe, check, load_recipe, resolve

__all__ = ["SearchResult", "compare", "tune"]


@dataclass
class SearchResult:
    """What :func:`tune` and :func:`compare` return: the project and its trial records."""

    project_dir: Path
    trials: list[dict[str, Any]]
    role: str = "standalone"  # standalone | chief | worker

    @property
    def completed(self) -> list[dict[str, Any]]:
        return [t for t in self.trials if t.get("status") == "completed"]


def _latency(batch: int, repeats: int) -> dict[str, int]:
    if batch < 1 or repeats < 1:
        raise TuneError("latency_batch and latency_repeats must be at least 1.")
    return {"batch": batch, "repeats": repeats, "warmup": 5}


def _trainable(recipe: Recipe, entry: str) -> Recipe:
    """``recipe`` checked as a search needs it, before any data loads: held-out validation images,
    and every field honoured by the ``entry`` point its trials train through (:func:`zoo.training.check`)."""
    if not recipe.data.validation:
        raise TuneError(f"recipe {recipe.name!r} holds out no validation images (data.validation=0); the search "
                        f"objective is val_accuracy: pass e.g. data.validation=2000.")
    check(recipe, entry)
    return recipe


def _announce(space: SearchSpace, oracle: str, project: Path, resuming: bool, where: str) -> None:
    searched = ", ".join(f"{u}: {v}" for u, v in space.searched.items())
    extra = f"{', lr' if space.lr else ''}{', weight_decay' if space.weight_decay else ''}"
    chief = (f" as the chief on {os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
             if where == "chief" else "")
    print(f"zoo.tune: {'resuming' if resuming else 'starting'} {oracle} search of {space.model} ({searched}{extra}) "
          f"-> {project}{chief}", flush=True)


def _search(tuner: ZooTuner, verbose: bool) -> None:
    """Run keras-tuner's search loop; the zoo error that stopped it is raised as itself."""
    try:
        with compat.keras_tuner_tracebacks(False):
            tuner.search(verbose=1 if verbose else 0)
    except kt.errors.FatalError as err:
        raise (tuner.zoo_error or TuneError(str(err))) from err


def tune(recipe: str | Path | Recipe | Mapping, *, sites: str = "each", choices: Any = None,
         shortcuts: str = "follow", tune_lr: bool = False, tune_wd: bool = False, oracle: str = "random",
         max_trials: int = 10, budget_flops: float | str | None = None, budget_latency_ms: float | None = None,
         project_dir: str | Path | None = None, resume: bool = False, overwrite: bool = False,
         overrides: Sequence[str] = (), isolate: str = "process", uniform_first: bool = True, seed: int = 0,
         latency_batch: int = 1, latency_repeats: int = 30, verbose: bool = True) -> SearchResult:
    """Search ``recipe``'s downsampling choices (:class:`SearchSpace`) with a keras-tuner oracle
    (:mod:`zoo.search.oracles`); every trial trains with the recipe (same data, schedule and seed)
    on :func:`zoo.training.train`. Kill it and call it again with ``resume=True``: finished trials
    are kept, the interrupted one continues from its last finished epoch."""
    runtime.git_commit()  # the commit at launch is the one the reports record
    check_oracle_dependencies(oracle)
    if not isinstance(max_trials, int) or max_trials < 1:
        raise TuneError(f"max_trials must be a positive integer, got {max_trials!r}.")
    latency, budget = _latency(latency_batch, latency_repeats), Budget.parse(budget_flops, budget_latency_ms)
    recipe = _trainable(load_recipe(recipe, overrides), "trial")
    space = SearchSpace.create(recipe, sites=sites, choices=choices, shortcuts=shortcuts, tune_lr=tune_lr,
                               tune_wd=tune_wd)
    runner = TrialRunner(recipe, Path(project_dir) if project_dir else default_project(recipe), budget=budget,
                         latency=latency, isolate=isolate, verbose=verbose)
    project, where = runner.project_dir, role()
    description = {"kind": "search", "name": project.name, "recipe": resolve(recipe), "space": space.describe(),
                   "oracle": oracle, "budget": budget.as_dict(), "seed": seed, "uniform_first": uniform_first,
                   "latency": latency, "max_trials": max_trials, "isolate": isolate, "objective": OBJECTIVE}
    size = space.size()
    if size is not None and size < max_trials:
        print(f"zoo.tune: the space has only {size} configurations; the search ends when they are exhausted.",
              flush=True)
    if where != "worker":
        data_info(recipe)
        if budget:
            check_budget(recipe, space, budget, latency)
        _announce(space, oracle, project, prepare_project(project, description, resume=resume, overwrite=overwrite),
                  where)
    kt_oracle = make_oracle(oracle, space, max_trials=max_trials, seed=seed, epochs=recipe.train.epochs,
                            uniform_first=uniform_first)
    _search(ZooTuner(kt_oracle, runner=runner, space=space, directory=str(project.parent),
                     project_name=project.name), verbose)
    return SearchResult(project, read_records(project), where)


def _variant_info(recipe: Recipe, label: str) -> dict[str, Any]:
    ds = {k: str(v) for k, v in registry.resolve_plan(recipe.model.name, **recipe.model.options).choices.items()}
    return {"values": {"variant": label}, "label": label, "variant": label,
            "config": {"model": recipe.model.name, "downsample": ds, "lr": recipe.optimizer.lr,
                       "weight_decay": recipe.optimizer.weight_decay, "epochs": recipe.train.epochs}}


def compare(recipe: str | Path | Recipe | Mapping, variants: Mapping[str, Sequence[str]], *,
            project_dir: str | Path | None = None, resume: bool = False, overwrite: bool = False,
            overrides: Sequence[str] = (), isolate: str = "process", latency_batch: int = 1,
            latency_repeats: int = 30, verbose: bool = True, name: str | None = None,
            entry: str = "paper") -> SearchResult:
    """Fixed "trials": train ``recipe`` once per variant (label -> dotted overrides, e.g.
    ``{"ConvPool-CNN-C": ["model.name=convpool_cnn_c"]}``) under equal training (same recipe,
    data and seed), measured like search trials, through :func:`zoo.training.train` with
    ``entry`` (the paper comparison's entry point by default). Resumable: finished variants are
    kept, an interrupted one continues, and variants added after the saved ones (more seeds or
    learning rates) are all that a resume trains."""
    if not variants:
        raise TuneError("compare needs at least one variant.")
    recipe = _trainable(load_recipe(recipe, overrides), entry)
    checked = {label: _trainable(load_recipe(recipe, list(extra)), entry) for label, extra in variants.items()}
    latency = _latency(latency_batch, latency_repeats)
    project = Path(project_dir) if project_dir else default_project(recipe, "-compare")
    runner = TrialRunner(recipe, project, budget=Budget(), latency=latency, isolate=isolate, verbose=verbose,
                         entry=entry)
    description = {"kind": "fixed", "name": name or project.name, "recipe": resolve(recipe),
                   "variants": {k: list(v) for k, v in variants.items()}, "latency": latency, "isolate": isolate,
                   "objective": OBJECTIVE, "budget": Budget().as_dict(), "oracle": "fixed"}
    prepare_project(project, description, resume=resume, overwrite=overwrite)
    for i, (label, extra) in enumerate(variants.items()):
        runner.run(variant_id(project, i, len(variants)), list(extra), _variant_info(checked[label], label))
    return SearchResult(project, read_records(project))
