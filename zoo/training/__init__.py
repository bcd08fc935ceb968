"""Training: recipes, the one fit path, run directories, evaluation and the device policy.

>>> from zoo.training import train
>>> result = train("embedded", ["train.epochs=1"], run_dir="runs/quick")

Modules: :mod:`~zoo.training.recipe` (schema, loading, overrides), :mod:`~zoo.training.capabilities`
(what each entry point honours; checks before data loads), :mod:`~zoo.training.fit` (the one fit
path), :mod:`~zoo.training.rundir`, :mod:`~zoo.training.inputs`, :mod:`~zoo.training.model`,
:mod:`~zoo.training.schedule`, :mod:`~zoo.training.callbacks`, :mod:`~zoo.training.swa`,
:mod:`~zoo.training.distill`, :mod:`~zoo.training.distributed`, :mod:`~zoo.training.device`,
:mod:`~zoo.training.results`, :mod:`~zoo.training.evaluate`.
"""
from zoo.training.capabilities import ENTRY_POINTS, check, validate_recipe
from zoo.training.evaluate import EvalResult, evaluate
from zoo.training.fit import TrainingDiverged, train
from zoo.training.inputs import Data, load_data
from zoo.training.model import build_model, compile_model, make_optimizer
from zoo.training.recipe import Recipe, RecipeError, dump, load_recipe, resolve, same_experiment
from zoo.training.results import RunResult
from zoo.training.rundir import RunDirError, RunFinishedError, prepare_run_dir

__all__ = ["ENTRY_POINTS", "Data", "EvalResult", "Recipe", "RecipeError", "RunDirError", "RunFinishedError",
           "RunResult", "TrainingDiverged", "build_model", "check", "compile_model", "dump", "evaluate", "load_data",
           "load_recipe", "make_optimizer", "prepare_run_dir", "resolve", "same_experiment", "train",
           "validate_recipe"]
