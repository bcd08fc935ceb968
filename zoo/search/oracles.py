"""keras-tuner oracles for a :class:`zoo.search.SearchSpace`.

``bayesian`` needs scipy and scikit-learn (zoo depends on ``keras-tuner[bayesian]``; an
environment without them gets a clear error naming the install). ``random`` and ``bayesian``
start with the *uniform* configurations (every searched site set to one choice: all-max,
all-avg, all-conv, ...), the direct pool-versus-stride comparisons, unless ``uniform_first=False``.
``hyperband`` (``max_epochs`` = the recipe's epochs, factor 3; Li et al. 2018) trains each of its
rungs from scratch for that rung's epochs (the schedule shrunk to fit) instead of continuing a
checkpoint. Over-budget trials are failed trials to keras-tuner, so its limit of consecutive
failures is set above ``max_trials``: rejections never stop a search.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from typing import Any

import keras_tuner as kt

from zoo.search.errors import TuneError
from zoo.search.space import SearchSpace

__all__ = ["OBJECTIVE", "ORACLES", "check_oracle_dependencies", "make_oracle"]

ORACLES = ("random", "bayesian", "hyperband")
OBJECTIVE = "val_accuracy"


def _tried(oracle: kt.Oracle, values: Mapping[str, Any]) -> bool:
    """Whether a trial of ``oracle`` (this session's or a reloaded one) already has ``values``."""
    return any(trial.hyperparameters.values == dict(values) for trial in oracle.trials.values())


class UniformFirst:
    """Oracle mixin: propose the queued configurations (``zoo_initial``) before the oracle's own."""

    zoo_initial: Sequence[dict[str, Any]] = ()

    def populate_space(self, trial_id):
        for values in self.zoo_initial:
            if not _tried(self, values):
                return {"status": kt.engine.trial.TrialStatus.RUNNING, "values": dict(values)}
        return super().populate_space(trial_id)


class RandomOracle(UniformFirst, kt.oracles.RandomSearchOracle):
    """Random search after the uniform configurations."""


class BayesianOracle(UniformFirst, kt.oracles.BayesianOptimizationOracle):
    """Gaussian-process Bayesian optimisation after the uniform configurations."""


def check_oracle_dependencies(kind: str) -> None:
    """Raise :class:`TuneError` for an unknown oracle, or the Bayesian one without scipy and
    scikit-learn (``keras-tuner[bayesian]``)."""
    if kind not in ORACLES:
        raise TuneError(f"oracle={kind!r} must be one of {', '.join(ORACLES)}.")
    if kind != "bayesian":
        return
    missing = [m for m in ("scipy", "sklearn") if importlib.util.find_spec(m) is None]
    if missing:
        raise TuneError(f"oracle='bayesian' needs {' and '.join(missing).replace('sklearn', 'scikit-learn')} "
                        f"(pip install 'keras-tuner[bayesian]'); use oracle='random' or 'hyperband' without them.")


def make_oracle(kind: str, space: SearchSpace, *, max_trials: int, seed: int, epochs: int,
                uniform_first: bool) -> kt.Oracle:
    """The ``kind`` oracle over ``space``, maximising :data:`OBJECTIVE`, for ``max_trials`` trials."""
    check_oracle_dependencies(kind)
    hp = space.hyperparameters()
    common = {"objective": kt.Objective(OBJECTIVE, "max"), "hyperparameters": hp, "allow_new_entries": False,
              "seed": seed + 1,  # keras-tuner takes a seed of 0 as "pick one at random"
              "max_retries_per_trial": 0, "max_consecutive_failed_trials": max_trials + 1}
    if kind == "hyperband":
        oracle = kt.oracles.HyperbandOracle(max_epochs=epochs, factor=3, **common)
        oracle.max_trials = max_trials
        return oracle
    oracle = {"random": RandomOracle, "bayesian": BayesianOracle}[kind](max_trials=max_trials, **common)
    if uniform_first:
        oracle.zoo_initial = space.uniform_values(hp)
    return oracle
