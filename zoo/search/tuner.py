"""The keras-tuner tuner of a zoo search: keras-tuner's ``BaseTuner`` with ``run_trial`` overridden.

keras-tuner's oracle proposes hyperparameter values; :meth:`ZooTuner.run_trial` turns them into
recipe overrides (:meth:`zoo.search.SearchSpace.overrides`, plus a Hyperband rung's epochs) and has
:class:`zoo.search.runner.TrialRunner` train them. A completed trial reports its final
``val_accuracy``; an over-budget, diverged or crashed trial is a failed trial to keras-tuner
(``FailedTrialError``), and :data:`MAX_CRASHES` crashes in a row stop the search
(:class:`zoo.search.errors.SearchFailedError`), as does a recipe that no trial can train.
"""
from __future__ import annotations

from typing import Any

import keras_tuner as kt

from zoo.errors import ZooError
from zoo.search.errors import SearchFailedError
from zoo.search.oracles import OBJECTIVE
from zoo.search.records import trial_dir
from zoo.search.runner import TrialRunner
from zoo.search.space import SearchSpace, flow
from zoo.training import Recipe

__all__ = ["MAX_CRASHES", "ZooTuner", "epoch_overrides"]

MAX_CRASHES = 3  # trials in a row that crash (status failed, not infeasible or nan) stop the search


def epoch_overrides(recipe: Recipe, epochs: int | None) -> list[str]:
    """Overrides that shrink the recipe's schedule to ``epochs`` (Hyperband rungs)."""
    if not epochs or epochs == recipe.train.epochs:
        return []
    f, s = epochs / recipe.train.epochs, recipe.schedule
    out = [f"train.epochs={int(epochs)}"]
    if s.epochs is not None:
        out.append(f"schedule.epochs={s.epochs * f!r}")
    if s.warmup_epochs:
        out.append(f"schedule.warmup_epochs={s.warmup_epochs * f!r}")
    if s.milestones:
        out.append(f"schedule.milestones={flow([m * f for m in s.milestones])}")
    return out


class ZooTuner(kt.engine.base_tuner.BaseTuner):
    """Runs each trial through a :class:`TrialRunner` (see the module docstring). After
    ``search()`` raised keras-tuner's ``FatalError``, :attr:`zoo_error` holds the zoo error that
    stopped it."""

    def __init__(self, oracle: kt.Oracle, *, runner: TrialRunner, space: SearchSpace, **kwargs: Any):
        self.zoo_runner, self.zoo_space, self.zoo_crashes = runner, space, 0
        self.zoo_error: ZooError | None = None
        super().__init__(oracle=oracle, hypermodel=None, overwrite=False, **kwargs)

    def trial_plan(self, values: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
        """``(overrides, record info)`` of a trial's hyperparameter values."""
        epochs = values.pop("tuner/epochs", None)
        values = {k: v for k, v in values.items() if not k.startswith("tuner/")}
        space, recipe = self.zoo_space, self.zoo_runner.recipe
        overrides = space.overrides(values) + epoch_overrides(recipe, epochs)
        info = {"values": values, "label": space.label(values),
                "config": {"downsample": space.downsample(values), "lr": values.get("lr", recipe.optimizer.lr),
                           "weight_decay": values.get("weight_decay", recipe.optimizer.weight_decay),
                           "epochs": int(epochs or recipe.train.epochs)}}
        return overrides, info

    def run_trial(self, trial: kt.engine.trial.Trial, *args: Any, **kwargs: Any) -> dict[str, float]:
        overrides, info = self.trial_plan(dict(trial.hyperparameters.values))
        try:
            record = self.zoo_runner.run(trial.trial_id, overrides, info)
        except ZooError as err:  # the same for every trial: stop the search (keras-tuner would go on)
            self.zoo_error = err
            raise kt.errors.FatalError(str(err)) from err
        self.zoo_crashes = self.zoo_crashes + 1 if record["status"] == "failed" else 0
        if self.zoo_crashes >= MAX_CRASHES:  # a broken setup, not a bad configuration
            where = trial_dir(self.zoo_runner.project_dir, trial.trial_id)
            self.zoo_error = SearchFailedError(
                f"{MAX_CRASHES} trials in a row crashed; the last: {record.get('message')} (see {where}/). "
                f"Fix it and run again with --resume.")
            raise kt.errors.FatalError(str(self.zoo_error))
        if record["status"] == "completed":
            return {OBJECTIVE: float(record["val_accuracy"])}
        raise kt.errors.FailedTrialError(f"{record['status']}: {record.get('message', '')}")
