"""The one fit path: every entry point of the zoo trains through :func:`train`.

``zoo train``, each tune trial, each variant of the paper comparison and ``zoo train-distributed``
call :func:`train` with their ``entry`` name (what each honours is
:mod:`zoo.training.capabilities`) and, for the last, a ``tf.distribute`` strategy. One sequence
for all: check the recipe (before any data loads) -> open the run directory -> seed, device
policy -> data -> model (under the strategy's scope: build, warm start, teachers, compile) ->
restore the run state of an interrupted run -> the epochs (``model.fit``, or the replicated step
where ``fit`` cannot run the strategy) -> final weights (the SWA average when asked), evaluation
and report.
"""
from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import keras

import zoo.data as zdata
from zoo import compat, runtime
from zoo import report as zreport
from zoo.errors import RunFailedError
from zoo.training import capabilities, distributed, features
from zoo.training.callbacks import EpochStats, HistoryCSV, NanGuard, RunState, WeightsCheckpoint
from zoo.training.device import apply_training_settings
from zoo.training.inputs import Data, eval_dataset, load_data, pipeline
from zoo.training.model import build_model, compile_model, load_init_weights, strip_l2, with_teachers
from zoo.training.recipe import Recipe, load_recipe, resolve
from zoo.training.results import (HOLDOUT, RunResult, data_facts, metrics_on, model_facts, settings_facts, summaries,
                                  timing)
from zoo.training.rundir import check_run_dir, prepare_run_dir, run_dir_for, worker_dir
from zoo.training.swa import WeightAveraging


class TrainingDiverged(RunFailedError):
    """The loss became NaN/Inf and ``train.nan_policy`` is ``raise``."""


@dataclass
class Placement:
    """Where this process writes (``run``), whose run state it resumes from (``state``, the
    chief's checkpoints for every worker) and whether it is the chief."""

    run: Path
    state: Path
    chief: bool


class Callbacks(NamedTuple):
    guard: NanGuard
    stats: EpochStats
    state: RunState
    all: list[Any]
    swa: WeightAveraging | None = None


@compat.custom_gradients_released()  # each call's traced train steps are freed with its models
def train(recipe: str | Path | Recipe | dict, overrides: Sequence[str] = (), run_dir: str | Path | None = None,
          overwrite: bool = False, *, entry: str = "train", strategy: Any = None) -> RunResult:
    """Train ``recipe`` (a path, a name in ``recipes/``, a dict or a :class:`Recipe`) with dotted
    ``overrides`` into ``run_dir`` (default ``runs/<recipe>-<model>``), resuming an interrupted
    run there after its last finished epoch. ``entry`` names the caller (``train``, ``trial``,
    ``paper``, ``distributed``): what it cannot honour is refused before any data loads.
    ``strategy`` is a ``tf.distribute`` strategy (``None``: one device; ``entry="distributed"``
    without one takes :func:`zoo.training.distributed.make_strategy`'s). Raises
    :class:`~zoo.training.rundir.RunFinishedError` / ``RunDirError`` rather than overwriting
    (``overwrite=True`` starts afresh) and :class:`TrainingDiverged` on NaN with
    ``train.nan_policy: raise``."""
    started = time.perf_counter()
    runtime.git_commit()  # the commit at launch is the one the report records
    recipe = load_recipe(recipe, overrides)
    capabilities.check(recipe, entry)
    if entry == "distributed" and strategy is None:
        strategy = distributed.make_strategy()
    if strategy is not None:
        distributed.check_global_batch(strategy, recipe.data.batch_size)
    chief = strategy is None or distributed.is_chief(strategy)
    base = run_dir_for(recipe, run_dir)
    resumable = check_run_dir(recipe, base, overwrite)  # a finished run is refused before data loads
    done = RunState(base / "checkpoints").saved_epoch() if resumable else 0
    runtime.seed_everything(recipe.train.seed, deterministic=False)  # op determinism (process-wide) once data is good
    data = load_data(recipe, first_epoch=done)  # bad data is refused before any calibration or run directory
    device = apply_training_settings(recipe, verbose=chief)
    runtime.seed_everything(recipe.train.seed, recipe.train.deterministic)  # again: a calibration builds models
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        norm = zdata.normalization_layer(recipe.data.normalization, data.raw_train)
        model, net = build_model(recipe, data.info, norm)
        extra = {"init_weights": load_init_weights(model, recipe.train.init_weights)}
        inference = model
        model = with_teachers(model, recipe, data.info)
        compile_model(model, recipe, data.info.num_classes, data.steps_per_epoch)
        model.optimizer.build(model.trainable_variables)
        feats = features.prepare(recipe, inference, net, norm, data.raw_train, data.steps_per_epoch, done > 0)
    place = place_run(recipe, run_dir, overwrite, strategy)  # after the model, its warm start and teachers load
    callbacks = make_callbacks(recipe, place, data, done, feats)
    initial = resume(model, callbacks.state, done)
    announce(recipe, place.run, data, strategy)
    loop = distributed.StepLoop(strategy, model, recipe, data) if distributed.needs_step_loop(strategy) else None
    status = run_epochs(model, recipe, data, callbacks, initial, loop)
    loop_name = "zoo.training.distributed step" if loop else "keras fit"
    settings = settings_facts(recipe, model, data.steps_per_epoch, device, loop_name)  # before the final weights
    averaged = None
    if callbacks.swa and status == "completed":
        # BatchNorm statistics of the average on the epoch after the last (the same batches however the run was resumed)
        images = pipeline(recipe, data.raw_train, data.info.num_classes, True, first_epoch=recipe.train.epochs)
        averaged = callbacks.swa.apply(model, images, data.steps_per_epoch)
    if strategy is not None:
        extra["distributed"] = distributed.distributed_facts(strategy, recipe.data.batch_size)
    extra["features"] = feats.report(model)
    result = finish(recipe, place, data, model, net, status, callbacks, started, averaged, settings, extra)
    if loop is not None:
        loop.barrier()  # the other workers wait until the chief has written its report
    if status == "nan" and recipe.train.nan_policy == "raise":
        raise TrainingDiverged(result.report["message"])
    return result


def place_run(recipe: Recipe, run_dir: str | Path | None, overwrite: bool, strategy: Any) -> Placement:
    """The chief opens the run directory (:func:`prepare_run_dir`); another worker checks it
    without writing and keeps its own files in ``workers/worker-<i>``."""
    if strategy is None or distributed.is_chief(strategy):
        run = prepare_run_dir(recipe, run_dir, overwrite)
        return Placement(run, run / "checkpoints", True)
    base = run_dir_for(recipe, run_dir)
    check_run_dir(recipe, base, overwrite)
    run = worker_dir(base, distributed.task_of(strategy)[1])
    run.mkdir(parents=True, exist_ok=True)
    return Placement(run, base / "checkpoints", False)


def make_callbacks(recipe: Recipe, place: Placement, data: Data, done: int = 0,
                   feats: features.Features | None = None) -> Callbacks:
    """Order matters at each epoch's end: the NaN guard first (raising skips the rest, so no
    broken weights are saved), then history, averages, best weights and the run state last, so
    the state never claims an epoch that history.csv lacks. The best so far is that of the
    ``done`` epochs the run state holds: a row of an epoch killed before its state was saved
    may lack its best weights, and the epoch is trained again."""
    ckpt = place.run / "checkpoints"
    history = [r for r in zreport.read_history(place.run / "history.csv") if r.get("epoch", 0) <= done]
    monitor = "val_accuracy" if data.validation is not None else "accuracy"
    best = max((r[monitor] for r in history if isinstance(r.get(monitor), (int, float))), default=None)
    feats = feats or features.Features()  # the recipe features' callbacks act before history; their state is saved
    guard, stats, state = NanGuard(), EpochStats(data.images_per_epoch), RunState(place.state, feats.state)
    t = recipe.train
    swa = WeightAveraging(t.swa_start_epoch, ckpt / "swa.npz", t.swa_every) if t.swa_start_epoch else None
    callbacks = [guard, *feats.callbacks, stats, HistoryCSV(place.run / "history.csv"), *([swa] if swa else []),
                 WeightsCheckpoint(ckpt / "best.weights.h5", monitor, best), *([state] if place.chief else [])]
    if recipe.output.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(place.run / "tensorboard", write_graph=False, profile_batch=0))
    return Callbacks(guard, stats, state, callbacks, swa)


def resume(model: keras.Model, state: RunState, expected: int) -> int:
    """Load the run state of an interrupted run into ``model``; the epochs already finished, which
    must be the ``expected`` ones the training stream was built to continue from."""
    done = state.restore(model)
    if done != expected:
        raise RunFailedError(f"the run state in {state.meta.parent} names epoch {expected} but holds "
                             f"{'epoch ' + str(done) if done else 'no weights'}; pass --overwrite to train afresh.")
    if done:
        print(f"zoo.train: resuming at epoch {done + 1}: epochs 1-{done} restored from {state.weights}", flush=True)
    return done


def announce(recipe: Recipe, run: Path, data: Data, strategy: Any) -> None:
    t = recipe.train
    where = f"; {distributed.strategy_name(strategy)}, {strategy.num_replicas_in_sync} replica(s)" if strategy else ""
    print(f"zoo.train: {recipe.name} ({recipe.model.name}) -> {run}\n"
          f"  data {data.info.name}: {data.info.num_train} train / {data.info.num_validation} validation images, "
          f"{data.steps_per_epoch} steps/epoch of {recipe.data.batch_size}{where}\n"
          f"  settings: jit_compile={t.jit_compile} steps_per_execution={t.steps_per_execution} "
          f"deterministic={t.deterministic} seed={t.seed}", flush=True)


def verbosity(progress: str) -> int:
    """Keras' ``verbose`` for ``train.progress``."""
    if progress == "auto":
        return 1 if sys.stdout.isatty() else 2
    return {"bar": 1, "epoch": 2, "none": 0}[progress]


def run_epochs(model: keras.Model, recipe: Recipe, data: Data, callbacks: Callbacks, initial: int,
               loop: distributed.StepLoop | None) -> str:
    """The epochs after ``initial``: ``model.fit``, or ``loop`` where fit cannot run the strategy.
    Returns ``"completed"`` or ``"nan"``."""
    try:
        if loop is not None:
            loop.run(callbacks.all, initial)
        else:
            model.fit(data.train, validation_data=data.validation, epochs=recipe.train.epochs, initial_epoch=initial,
                      steps_per_epoch=data.steps_per_epoch, callbacks=callbacks.all, shuffle=False,
                      verbose=verbosity(recipe.train.progress))
    except RuntimeError:
        if callbacks.guard.tripped is None:
            raise
        for cb in callbacks.all:  # close the TensorBoard writers
            if isinstance(cb, keras.callbacks.TensorBoard):
                cb.on_train_end()
        return "nan"
    return "completed"


def restore_last_good(state: RunState, model: keras.Model, tripped: dict[str, Any],
                      history: list[dict[str, Any]]) -> str:
    """After a NaN: load the last good epoch's weights (if any) and explain what happened."""
    what = ("the weights became non-finite" if tripped.get("what") == "weights"
            else f"the loss became {tripped['loss']}")
    message = f"training stopped: {what} at epoch {tripped['epoch']}, batch {tripped['batch']} (lower optimizer.lr?). "
    if history and state.restore(model):
        message += f"Kept the last good checkpoint ({state.weights}, epoch {history[-1]['epoch']})."
    else:
        message += "No epoch finished, so there is no good checkpoint."
    print(f"zoo.train: {message}", file=sys.stderr, flush=True)
    return message


def save_and_evaluate(run: Path, recipe: Recipe, data: Data, model: keras.Model) -> tuple[keras.Model, dict]:
    """Save the inference model (uncompiled: no optimizer state, no L2 penalties) and evaluate it
    on the held-out images and ``data.eval_split``."""
    strip_l2(model)
    inference = keras.Model(model.inputs, model.outputs, name=model.name)
    with zreport.atomic_path(run / "model.weights.h5") as tmp:
        inference.save_weights(tmp)
    with zreport.atomic_path(run / "model.keras") as tmp:
        inference.save(tmp)
    evaluation = {}
    if data.validation is not None:
        evaluation[HOLDOUT] = features.with_tta(metrics_on(inference, recipe, data.validation, data.info.num_classes),
                                                inference, recipe, data.validation)
    if recipe.data.eval_split:
        evaluation[recipe.data.eval_split] = evaluate_split(inference, recipe, data.info.num_classes)
    return inference, evaluation


def evaluate_split(model: keras.Model, recipe: Recipe, num_classes: int) -> dict[str, Any]:
    """Metrics on ``data.eval_split``; a source without that split gives an ``error`` entry
    instead of losing the report of a finished training."""
    try:
        ds = eval_dataset(recipe, recipe.data.source, recipe.data.eval_split)[0]
    except (ValueError, OSError) as err:
        print(f"zoo.train: no {recipe.data.eval_split} evaluation: {err}", file=sys.stderr)
        return {"error": str(err)}
    return features.with_tta(metrics_on(model, recipe, ds, num_classes), model, recipe, ds)


def finish(recipe: Recipe, place: Placement, data: Data, model: keras.Model, net: keras.Model, status: str,
           callbacks: Callbacks, started: float, averaged: dict[str, Any] | None, settings: dict[str, Any],
           extra: dict[str, Any]) -> RunResult:
    """Save the final model (the weight average when ``averaged`` says so), evaluate it and write
    the report (another worker of a multi-worker run writes its weights and ``worker.json`` only)."""
    run = place.run
    history = zreport.read_history(run / "history.csv")
    tripped = callbacks.guard.tripped
    message = restore_last_good(callbacks.state, model, tripped, history) if status == "nan" else ""
    if not place.chief:
        strip_l2(model)
        with zreport.atomic_path(run / "model.weights.h5") as tmp:
            keras.Model(model.inputs, model.outputs, name=model.name).save_weights(tmp)
        report = {"run_dir": str(run), "status": status, "message": message, "history": history, **extra}
        zreport.write_json(report, run / "worker.json")
        return RunResult(run, status, report)
    evaluation = {}
    if status == "completed" or history:
        model, evaluation = save_and_evaluate(run, recipe, data, model)
    final, best = summaries(history)
    report = {
        "run_name": run.name, "run_dir": str(run), "status": status, "message": message,
        "epochs": recipe.train.epochs, "recipe": resolve(recipe),
        "model": model_facts(recipe, model, net), "data": data_facts(data.info),
        "final": final, "best": best, "evaluation": evaluation, "weight_averaging": averaged, "nan": tripped,
        "history": history, "timing": timing(history, started, callbacks.stats.epochs_run), "settings": settings,
        **extra, "environment": runtime.environment(),
    }
    zreport.write_run_report(report, run)
    accuracy = final.get("val_accuracy")
    shown = f"{100 * accuracy:.2f}%" if isinstance(accuracy, (int, float)) else "n/a (no validation split)"
    print(f"zoo.train: {status}; final val accuracy {shown}, report {run / 'report.md'}", flush=True)
    return RunResult(run, status, zreport.read_json(run / "report.json"))
