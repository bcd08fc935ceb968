"""The callbacks of the one fit path: NaN guard, epoch timings, the history file and the run state
(what a killed run resumes from). Each writes atomically (:func:`zoo.report.atomic_path`)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import h5py  # Keras' own weights-file library
import keras
import numpy as np

from zoo import report as zreport
from zoo.report import atomic_path


class NanGuard(keras.callbacks.TerminateOnNaN):
    """``TerminateOnNaN(raise_error=True)`` that remembers where it tripped, and also trips at an
    epoch's end when a weight is no longer finite (the last update of an epoch can break the
    weights while every loss of the epoch was finite). It runs first, and raising skips the other
    callbacks' ``on_epoch_end``: no checkpoint of broken weights is ever written."""

    def __init__(self):
        super().__init__(raise_error=True)
        self.tripped: dict[str, Any] | None = None
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            self.tripped = {"epoch": self.epoch + 1, "batch": int(batch) + 1, "loss": float(loss)}
        super().on_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        bad = [k for k in ("loss", "val_loss") if k in (logs or {}) and not np.isfinite(logs[k])]
        if bad or not all(np.isfinite(keras.ops.convert_to_numpy(w)).all() for w in self.model.weights):
            value = float(logs[bad[0]]) if bad else float("nan")
            self.tripped = {"epoch": epoch + 1, "batch": "end", "loss": value,
                            "what": bad[0] if bad else "weights"}
            raise RuntimeError(f"non-finite {self.tripped['what']} at the end of epoch {epoch + 1}")


class EpochStats(keras.callbacks.Callback):
    """Adds ``lr`` (at the epoch's first step), ``epoch_time_s``, ``train_time_s`` (without
    validation) and ``train_images_per_s`` to each epoch's logs; counts the epochs this process ran."""

    def __init__(self, images_per_epoch: int):
        super().__init__()
        self.images = images_per_epoch
        self.epochs_run = 0
        self._start = self._train_end = None
        self._lr = float("nan")

    def on_epoch_begin(self, epoch, logs=None):
        self._lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self._start, self._train_end = time.perf_counter(), None

    def on_train_batch_end(self, batch, logs=None):
        zreport.fault_point("batch")  # the test hook: a kill inside an epoch (inert unless asked for)

    def on_test_begin(self, logs=None):
        if self._start is not None and self._train_end is None:
            self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        train_time = (self._train_end or now) - self._start
        logs.update(lr=self._lr, epoch_time_s=now - self._start, train_time_s=train_time,
                    train_images_per_s=self.images / max(train_time, 1e-9))
        self._start = None
        self.epochs_run += 1


class HistoryCSV(keras.callbacks.Callback):
    """Keras' ``CSVLogger`` with three changes a resumable run needs: epochs count from 1, the
    file is rewritten atomically (a kill never leaves half a row) and a re-run epoch replaces its
    row instead of appending a duplicate."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = Path(path)

    def on_epoch_end(self, epoch, logs=None):
        rows = [r for r in zreport.read_history(self.path) if r.get("epoch", 0) < epoch + 1]
        rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})
        zreport.write_history(rows, self.path)


class WeightsCheckpoint(keras.callbacks.Callback):
    """``model.save_weights`` into ``path`` at the end of an epoch whose ``monitor`` beats ``best``
    (Keras' ``ModelCheckpoint(save_best_only=True)``), written to a temporary file and renamed: a
    kill mid-write leaves the previous best intact."""

    def __init__(self, path: Path, monitor: str, best: float | None = None):
        super().__init__()
        self.path, self.monitor, self.best = Path(path), monitor, best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or (self.best is not None and not value > self.best):
            return
        self.best = float(value)
        with atomic_path(self.path) as tmp:
            self.model.save_weights(tmp)


class RunState(keras.callbacks.Callback):
    """What a killed run resumes from: after every finished epoch, the whole training state
    (model and optimizer variables: ``model.save_weights`` of a compiled model holds both) goes to
    ``checkpoints/last.weights.h5``, written to a temporary file and renamed, the epoch it holds
    recorded inside it (the HDF5 attribute ``zoo_epoch``): weights and epoch are one file, one
    rename, so no kill can pair the weights of one epoch with another's number. ``last.json``
    repeats the epoch afterwards for people and scripts (a kill between the two renames leaves it
    one epoch behind; :meth:`saved_epoch` trusts the weights file). :meth:`restore` loads the state
    before ``fit`` and returns the epoch to start from (``fit(initial_epoch=...)``, public Keras).
    The same file is the last good epoch a NaN falls back to. ``extra`` variables outside the model
    (the lookahead average of :mod:`zoo.training.features`) are saved in it too and restored with it."""

    EPOCH_ATTR = "zoo_epoch"
    EXTRA_GROUP = "zoo_extra_state"  # ``extra`` variables (e.g. the lookahead average), in the same file

    def __init__(self, folder: Path, extra: list[Any] | None = None):
        super().__init__()
        self.weights, self.meta = Path(folder) / "last.weights.h5", Path(folder) / "last.json"
        self.extra = list(extra or [])

    def saved_epoch(self) -> int:
        """Finished epochs recorded in the state (0 when there is none): the weights file's own
        record, or ``last.json`` for a state written before the file carried one."""
        if not self.weights.is_file():
            return 0
        try:
            with h5py.File(self.weights, "r") as f:
                if self.EPOCH_ATTR in f.attrs:
                    return int(f.attrs[self.EPOCH_ATTR])
        except OSError:
            return 0
        try:
            return int(json.loads(self.meta.read_text())["epoch"])
        except (OSError, ValueError, KeyError):
            return 0

    def restore(self, model: keras.Model) -> int:
        """Load the saved state into ``model`` (compiled, optimizer built) and return its epoch."""
        epoch = self.saved_epoch()
        if epoch:
            model.load_weights(self.weights)
            self._restore_extra()
        return epoch

    def _restore_extra(self) -> None:
        if not self.extra:
            return
        with h5py.File(self.weights, "r") as f:
            group = f.get(self.EXTRA_GROUP)
            if group is None or len(group) != len(self.extra):
                raise ValueError(f"{self.weights} holds {0 if group is None else len(group)} extra state "
                                 f"variables; this run needs {len(self.extra)}")
            for i, var in enumerate(self.extra):
                var.assign(group[str(i)][()])

    def on_epoch_end(self, epoch, logs=None):
        with atomic_path(self.weights) as tmp:
            self.model.save_weights(tmp)
            with h5py.File(tmp, "a") as f:
                f.attrs[self.EPOCH_ATTR] = epoch + 1
                if self.extra:
                    group = f.create_group(self.EXTRA_GROUP)
                    for i, var in enumerate(self.extra):
                        group.create_dataset(str(i), data=keras.ops.convert_to_numpy(var))
        zreport.write_text(self.meta, json.dumps({"epoch": epoch + 1}))
