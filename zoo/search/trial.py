"""One trial: check the budget on the built model, then train on the one fit path.

:func:`run_trial` measures the configuration's params, FLOPs and latency; a configuration over
budget is ``infeasible`` and never trains. Otherwise it calls :func:`zoo.training.train` with
``entry="trial"`` (``"paper"`` for a paper-comparison variant) into the trial's run directory
(``trial_<id>/run``): every recipe field the entry point honours applies, each finished epoch is
checkpointed, and a trial killed mid-epoch continues after its last finished epoch when it runs
again. The record it returns is built from that run's report.

``python -m zoo.search.trial SPEC`` runs one trial in its own process (the search's
``isolate="process"``): ``SPEC`` is a JSON file written by :class:`zoo.search.runner.TrialRunner`;
the result goes to the file the spec names. The process dies with the search process, even when
that is killed by SIGKILL (Linux ``PR_SET_PDEATHSIG``).
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from zoo import report as zreport
from zoo.search.budget import DEFAULT_LATENCY, Budget, data_info, model_cost
from zoo.runtime import peak_rss_mb
from zoo.search.records import RUN
from zoo.training import (Recipe, RecipeError, RunFinishedError, RunResult, TrainingDiverged, check,
                          load_recipe, train)

__all__ = ["ENTRIES", "main", "record_from_result", "run_trial"]

ENTRIES = ("trial", "paper")  # the entry points of zoo.training.train a search trains through


def run_trial(recipe: Recipe, run_dir: str | Path, *, budget: Budget = Budget(),
              latency: Mapping[str, int] | None = None, entry: str = "trial",
              overwrite: bool = False) -> dict[str, Any]:
    """Train one configuration in this process, the way every trial is trained (see the module
    docstring). Returns a JSON-ready record; a recipe field that ``entry`` cannot honour raises
    ``RecipeError`` from :func:`zoo.training.train`."""
    started = time.perf_counter()
    check(recipe, entry)  # what the entry point cannot honour is refused before the data loads
    latency = {**DEFAULT_LATENCY, **(latency or {})}
    record: dict[str, Any] = model_cost(recipe, data_info(recipe), latency)
    record.update(status="completed", message="", epochs=recipe.train.epochs, history=[])
    over = budget.violations(record["flops"], record.get("latency_ms"))
    if over:
        record.update(status="infeasible", message="over budget: " + "; ".join(over) + " (not trained)")
    else:
        try:
            record.update(record_from_result(_train(recipe, Path(run_dir), entry, overwrite)))
        except RecipeError:
            raise
        except TrainingDiverged as err:  # train.nan_policy: raise — a diverged trial counts as a crashed one
            record.update(record_from_result(RunResult.from_dir(run_dir)), status="failed",
                          message=f"TrainingDiverged: {err}")
        except Exception as err:  # noqa: BLE001 - a configuration that fails to train fails its trial
            record.update(failure(err))
    record["wall_time_s"] = time.perf_counter() - started
    return record


def _train(recipe: Recipe, run_dir: Path, entry: str, overwrite: bool) -> RunResult:
    """:func:`zoo.training.train` into ``run_dir``: resumes an interrupted run there, reads a finished one."""
    try:
        return train(recipe, run_dir=run_dir, overwrite=overwrite, entry=entry)
    except RunFinishedError:
        print(f"zoo.tune: {run_dir} holds the finished run of this trial; reading its report", flush=True)
    return RunResult.from_dir(run_dir)


def record_from_result(result: RunResult) -> dict[str, Any]:
    """The trial-record fields of a finished run: status, final and best validation accuracy,
    history, timing and data sizes (from its ``report.json``)."""
    report, final, best = result.report, result.final, result.best
    timing, data = report.get("timing") or {}, report.get("data") or {}
    record = {"status": result.status, "message": report.get("message") or "", "run_dir": RUN,
              "epochs": report.get("epochs"), "history": result.history,
              "num_train": data.get("num_train"), "num_validation": data.get("num_validation"),
              **{k: final.get(k) for k in ("val_accuracy", "val_loss", "accuracy", "loss")},
              "best_val_accuracy": best.get("val_accuracy"), "best_epoch": best.get("epoch"),
              "train_time_s": timing.get("train_time_s"), "train_images_per_s": timing.get("train_images_per_s"),
              "resumed_from_epoch": timing.get("resumed_from_epoch")}
    if record["status"] == "completed" and not isinstance(record["val_accuracy"], float):
        record.update(status="failed", message="no validation accuracy was reported")
    return record


def failure(err: BaseException) -> dict[str, Any]:
    """The record of a trial that raised ``err``; ``fatal`` when every trial would (a refused recipe)."""
    return {"status": "failed", "message": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(),
            "fatal": isinstance(err, RecipeError)}


def _die_with_parent(parent_pid: int | None) -> bool:
    """Ask the kernel to kill this process when the search process dies (even by SIGKILL; Linux
    ``PR_SET_PDEATHSIG``). False when the search process is already gone."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    return parent_pid is None or os.getppid() == parent_pid


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m zoo.search.trial SPEC``: run the trial ``SPEC`` describes, write its result."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print("usage: python -m zoo.search.trial SPEC.json (written by the search; not for direct use)",
              file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    if not _die_with_parent(spec.get("parent_pid")):
        print("zoo.tune: the search process is gone; not running the trial", file=sys.stderr)
        return 1
    try:
        result = run_trial(load_recipe(spec["recipe"]), spec["run_dir"], budget=Budget(**spec["budget"]),
                           latency=spec["latency"], entry=spec.get("entry", "trial"),
                           overwrite=spec.get("overwrite", False))
    except Exception as err:  # noqa: BLE001 - reported in the record
        result = failure(err)
    result.update(peak_rss_mb=peak_rss_mb(), peak_rss_scope="trial process", trial_pid=os.getpid())
    zreport.write_json(result, spec["out"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
