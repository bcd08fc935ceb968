"""Run directories: where a run's files live, and the rule for reopening one.

A run directory (``runs/<recipe>-<model>/`` unless given) holds::

    recipe.yaml          the resolved recipe (every field; what a resume is checked against)
    history.csv          one row per finished epoch (epoch counted from 1)
    tensorboard/         TensorBoard logs
    checkpoints/         last.weights.h5 (the run state a killed run resumes from, and the last
                         good epoch a NaN falls back to; its epoch inside it, copied to last.json),
                         best.weights.h5 (best val accuracy),
                         swa.npz (the running weight average, with ``train.swa_start_epoch``)
    model.weights.h5     final weights of the inference model (the average, with SWA)
    model.keras          the inference model: raw 0..255 RGB -> normalisation -> zoo model -> logits
    report.json / report.md / curves.png
    workers/worker-<i>/  the other workers' own files, in a multi-worker run

Running the same recipe into it again continues after the last finished epoch (a run killed
after its last epoch trains nothing and writes the final model and reports again), first deleting
the temporary files a killed writer left; ``report.json``, written last, marks a finished run, and
a finished run directory is never overwritten unless asked to.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from zoo import report as zreport
from zoo.errors import ZooError
from zoo.training.recipe import Recipe, RecipeError, dump, load_recipe, same_experiment

ARTIFACTS = ("recipe.yaml", "history.csv", "tensorboard", "checkpoints", "model.weights.h5", "model.keras",
             "report.json", "report.md", "curves.png", "eval_report.json", "eval_report.md", "workers")
WORKERS_DIR = "workers"


class RunDirError(ZooError):
    """The run directory holds a run of a different recipe."""


class RunFinishedError(RunDirError):
    """The run directory holds a finished run (pass ``overwrite=True`` to train it again)."""


def run_dir_for(recipe: Recipe, run_dir: str | Path | None = None) -> Path:
    """``run_dir``, or ``output.runs_dir / <recipe>-<model>`` (``output.name``) when not given."""
    return Path(run_dir) if run_dir else Path(recipe.output.runs_dir) / recipe.run_name


def worker_dir(run: Path, task_id: int) -> Path:
    """Where worker ``task_id`` (not the chief) of a multi-worker run keeps its own files."""
    return Path(run) / WORKERS_DIR / f"worker-{task_id}"


def clear_run_dir(path: Path) -> None:
    """Remove the run artefacts (and only those) from ``path``."""
    for name in ARTIFACTS:
        target = path / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def check_run_dir(recipe: Recipe, path: Path, overwrite: bool = False) -> bool:
    """Whether ``path`` holds a started run of ``recipe`` that may be resumed (False: start
    afresh). Raises :class:`RunFinishedError` for a finished run and :class:`RunDirError` for a
    run of a different recipe that finished at least one epoch, unless ``overwrite``; a run
    directory that is, or lies under, a file is refused too."""
    blocking = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise RunDirError(f"run directory {path}: {blocking} is a file, not a folder; choose another --run-dir.")
    started = (path / "report.json").exists() or bool(zreport.read_history(path / "history.csv"))
    if overwrite or not started:  # a run that never finished an epoch has nothing to keep
        return False
    saved = path / "recipe.yaml"
    if saved.exists():
        try:
            diffs = same_experiment(load_recipe(saved), recipe)
        except RecipeError as err:
            diffs = [f"the saved recipe no longer loads ({err})"]
        if diffs:
            raise RunDirError(
                f"{path} holds a run of a different recipe ({'; '.join(diffs[:6])}). Choose another run "
                f"directory (--run-dir, or output.name=...) or pass --overwrite to replace it.")
    if (path / "report.json").exists():
        status = zreport.read_json(path / "report.json").get("status", "?")
        raise RunFinishedError(f"{path} already holds a finished run (status {status}); see "
                               f"{path / 'report.md'}. Pass --overwrite to train it again.")
    return True


def prepare_run_dir(recipe: Recipe, run_dir: str | Path | None = None, overwrite: bool = False) -> Path:
    """Create (or reopen for resuming) the run directory, delete the temporary files a killed
    run left there and save ``recipe.yaml``; see :func:`check_run_dir` for what is refused."""
    path = run_dir_for(recipe, run_dir)
    if not check_run_dir(recipe, path, overwrite):
        clear_run_dir(path)
    for folder in (path, path / "checkpoints"):
        zreport.remove_stray_temps(folder)
    path.mkdir(parents=True, exist_ok=True)
    zreport.write_text(path / "recipe.yaml", dump(recipe))
    return path
