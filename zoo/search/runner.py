"""Runs the trials of one project, each in a fresh process (default) or in the search process.

Each trial directory ``<project>/trial_<id>/`` holds keras-tuner's ``trial.json``, the trial's run
directory ``run/`` (:func:`zoo.training.train`: history, checkpoints, report) and ``zoo_trial.json``:
status (completed / infeasible / nan / failed), the hyperparameter values, the per-site
downsampling, the full resolved recipe, final and best validation accuracy, the per-epoch history,
trainable parameters, FLOPs, latency, training time and peak RSS.

With ``isolate="process"`` every trial runs in a fresh Python process (``python -m
zoo.search.trial spec.json``; its output goes to ``log.txt`` and the screen, its result to
``child.json``): Keras/TensorFlow memory cannot accumulate from trial to trial (it does in one
process, even with ``keras.backend.clear_session()`` and ``gc.collect()``), the trial's
``peak_rss_mb`` is that process's high-water mark and ``search_rss_mb`` is the search process's
RSS after the trial. Starting a process costs an import of TensorFlow per trial.
``isolate="none"`` runs trials in the search process (``clear_session`` + ``gc`` after each;
``peak_rss_mb`` is the peak during that trial, reset through ``/proc/self/clear_refs``): faster to
start, for tiny searches and tests.
"""
from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras

from zoo import report as zreport
from zoo.search.budget import Budget
from zoo.search.errors import TuneError
from zoo.runtime import peak_rss_mb, reset_peak_rss, rss_mb
from zoo.search.records import RECORD, RUN, now, read_record, trial_dir
from zoo.search.trial import failure, run_trial
from zoo.training import Recipe, RecipeError, load_recipe, resolve

__all__ = ["ISOLATION", "TrialRunner"]

ISOLATION = ("process", "none")
REUSED = ("completed", "infeasible")  # finished records a re-run keeps
_NOISE = ("WARNING: All log", "I0000", "W0000")  # TensorFlow start-up lines kept out of the screen echo


class TrialRunner:
    """Runs trials of one project (in this process or a child process) and writes their records."""

    def __init__(self, recipe: Recipe, project_dir: Path, *, budget: Budget, latency: Mapping[str, int],
                 isolate: str, verbose: bool = True, entry: str = "trial"):
        if isolate not in ISOLATION:
            raise TuneError(f"isolate={isolate!r} must be one of {', '.join(ISOLATION)}.")
        self.recipe, self.project_dir, self.budget = recipe, Path(project_dir), budget
        self.latency, self.isolate, self.verbose, self.entry = dict(latency), isolate, verbose, entry

    def run(self, trial_id: str, overrides: Sequence[str], info: Mapping[str, Any]) -> dict[str, Any]:
        """Train the base recipe with ``overrides`` as trial ``trial_id``; ``info`` goes into the
        record (values, config, label). A finished record with the same overrides is reused; an
        interrupted trial resumes its run directory."""
        tdir = trial_dir(self.project_dir, trial_id)
        tdir.mkdir(parents=True, exist_ok=True)
        old = read_record(tdir)
        if old and old.get("status") in REUSED and old.get("overrides") == list(overrides):
            print(f"zoo.tune: trial {trial_id} already finished ({old['status']}); reusing its record", flush=True)
            return old
        recipe = load_recipe(self.recipe, list(overrides))
        head = {"trial_id": trial_id, **info, "overrides": list(overrides), "started": now(),
                "tuner_id": os.environ.get("KERASTUNER_TUNER_ID", "tuner0"), "isolate": self.isolate,
                "entry": self.entry, "recipe": resolve(recipe)}
        overwrite = old is not None and old.get("overrides") != list(overrides)  # the id now names another config
        t0 = time.perf_counter()
        run = self._child if self.isolate == "process" else self._inline
        result = run(tdir, recipe, overwrite)
        if result.pop("fatal", False):
            raise TuneError(f"trial {trial_id}: {result['message']}")
        record = {**head, **result, "trial_wall_time_s": time.perf_counter() - t0, "search_rss_mb": rss_mb(),
                  "finished": now()}
        zreport.write_json(record, tdir / RECORD)
        self._announce(trial_id, info, record)
        return record

    @staticmethod
    def _announce(trial_id: str, info: Mapping[str, Any], record: Mapping[str, Any]) -> None:
        print(f"zoo.tune: trial {trial_id} {record['status']}: {info.get('label', '')} "
              f"val_accuracy={record.get('val_accuracy')} flops={record.get('flops')} "
              f"latency_ms={record.get('latency_ms')} peak_rss_mb={record.get('peak_rss_mb')} "
              f"search_rss_mb={record['search_rss_mb']}" + (f" ({record['message']})" if record.get("message") else ""),
              flush=True)

    def _inline(self, tdir: Path, recipe: Recipe, overwrite: bool) -> dict[str, Any]:
        reset = reset_peak_rss()
        try:
            result = run_trial(recipe, tdir / RUN, budget=self.budget, latency=self.latency, entry=self.entry,
                               overwrite=overwrite)
        except (TuneError, RecipeError):
            raise
        except Exception as err:  # noqa: BLE001 - a broken configuration fails its trial, not the search
            result = failure(err)
        finally:
            keras.backend.clear_session()
            gc.collect()
        result["peak_rss_mb"] = peak_rss_mb()
        result["peak_rss_scope"] = "trial" if reset else "process"
        return result

    def _child(self, tdir: Path, recipe: Recipe, overwrite: bool) -> dict[str, Any]:
        out = tdir / "child.json"
        spec = {"recipe": resolve(recipe), "budget": self.budget.as_dict(), "latency": self.latency,
                "entry": self.entry, "run_dir": str(tdir / RUN), "overwrite": overwrite, "out": str(out),
                "parent_pid": os.getpid()}
        out.unlink(missing_ok=True)
        zreport.write_json(spec, tdir / "spec.json")
        cmd = [sys.executable, "-m", "zoo.search.trial", str(tdir / "spec.json")]
        rc = self._stream(cmd, tdir / "log.txt")
        if out.exists():
            return zreport.read_json(out)
        how = f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}"
        return {"status": "failed", "message": f"trial process ended ({how}) without a result; see {tdir / 'log.txt'}"}

    def _stream(self, cmd: list[str], log_path: Path) -> int:
        """Run ``cmd``, its output appended to ``log_path`` (and echoed when verbose); its exit status."""
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env.setdefault("PYTHONUNBUFFERED", "1")  # the log shows each line as the trial prints it
        root = str(Path(__file__).resolve().parents[2])  # the checkout, so the child imports this zoo
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        with open(log_path, "a") as log:
            log.write(f"--- {now()} {' '.join(cmd)}\n")
            log.flush()
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
            try:
                for line in proc.stdout:
                    log.write(line)
                    log.flush()
                    if self.verbose and not line.startswith(_NOISE):
                        sys.stdout.write("  | " + line)
                return proc.wait()
            except BaseException:
                proc.kill()
                proc.wait()
                raise
