"""What a run reports: :class:`RunResult` and the facts ``report.json`` is made of."""
from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from zoo import flops as zflops
from zoo import report as zreport
from zoo.training.model import loss_and_metrics
from zoo.training.recipe import Recipe

HOLDOUT = "holdout"  # name of the held-out validation images in reports


@dataclass
class RunResult:
    """What :func:`zoo.training.train` returns: the run directory, its status and its report."""

    run_dir: Path
    status: str  # "completed" or "nan"
    report: dict[str, Any]

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.report.get("history", [])

    @property
    def final(self) -> dict[str, Any]:
        return self.report.get("final") or {}

    @property
    def best(self) -> dict[str, Any]:
        return self.report.get("best") or {}

    @classmethod
    def from_dir(cls, run_dir: str | Path) -> RunResult:
        """The result of a finished run, read from its ``report.json``."""
        report = zreport.read_json(Path(run_dir) / "report.json")
        return cls(Path(run_dir), report["status"], report)


def metrics_on(model: keras.Model, recipe: Recipe, ds: tf.data.Dataset, num_classes: int) -> dict[str, float]:
    """Loss (plain cross-entropy: no label smoothing, no weight-decay penalty) and accuracy of
    ``model`` on ``ds`` (integer or one-hot labels)."""
    one_hot = ds.element_spec[1].shape.rank == 2
    loss, metrics = loss_and_metrics(recipe, num_classes, one_hot, smoothing=False)
    model.compile(loss=loss, metrics=metrics, jit_compile=False)
    return {k: float(v) for k, v in model.evaluate(ds, verbose=0, return_dict=True).items()}


def model_facts(recipe: Recipe, inference: keras.Model, net: keras.Model) -> dict[str, Any]:
    """Name, options, input shape, parameter counts and FLOPs of the trained model."""
    try:
        flops = int(zflops.count_flops(net))
    except Exception as err:  # noqa: BLE001 - a report without FLOPs is still a report
        print(f"zoo.train: could not count FLOPs ({err})", file=sys.stderr)
        flops = None

    def count(weights: list[Any]) -> int:
        return int(sum(np.prod(w.shape) for w in weights))

    return {"name": recipe.model.name, "options": recipe.model.options, "input_shape": list(inference.input_shape[1:]),
            "params_trainable": count(inference.trainable_weights),
            "params_non_trainable": count(inference.non_trainable_weights), "flops": flops}


def data_facts(info: Any) -> dict[str, Any]:
    """The dataset's name, classes, split sizes and how many image files were skipped as unreadable."""
    return {"name": info.name, "num_classes": info.num_classes, "num_train": info.num_train,
            "num_validation": info.num_validation, "image_shape": list(info.image_shape),
            "class_names": list(info.class_names), "skipped_files": info.skipped_files}


def summaries(history: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``final`` (last epoch's metrics) and ``best`` (epoch of highest val accuracy)."""
    if not history:
        return {}, {}
    keys = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "top5", "val_top5")
    final = {k: history[-1][k] for k in keys if k in history[-1]}
    monitor = "val_accuracy" if "val_accuracy" in history[-1] else "accuracy"
    row = max(history, key=lambda r: r.get(monitor, -1.0))
    best = {k: row[k] for k in ("epoch", "val_accuracy", "val_loss", "accuracy", "loss") if k in row}
    return final, best


def timing(history: list[dict[str, Any]], started: float, epochs_run: int) -> dict[str, Any]:
    """Training time summed over all epochs (of every session), the median throughput, and
    this session's share."""
    rates = [r["train_images_per_s"] for r in history if "train_images_per_s" in r]
    before = len(history) - epochs_run
    return {"train_time_s": sum(r.get("epoch_time_s", 0.0) for r in history),
            "train_images_per_s": statistics.median(rates) if rates else None,
            "session_wall_time_s": time.perf_counter() - started,
            "resumed_from_epoch": before if before > 0 else None, "epochs_this_session": epochs_run}


def settings_facts(recipe: Recipe, model: keras.Model, steps_per_epoch: int, device: Any = None,
                   loop: str = "keras fit") -> dict[str, Any]:
    """The settings the run trained with, read from the live objects where they live (the
    compiled model, its optimizer and loss, the dtype policy, the device policy's choice, the loop
    that ran): what the report says is what took effect."""
    t = recipe.train
    loss = getattr(model, "loss", None)
    facts = {"jit_compile": model.jit_compile, "steps_per_execution": model.steps_per_execution,
             "deterministic": t.deterministic, "seed": t.seed, "batch_size": recipe.data.batch_size,
             "steps_per_epoch": steps_per_epoch, "weight_decay_mode": recipe.optimizer.decay_mode,
             "l2_penalties": sum(v.regularizer is not None for v in model.trainable_variables),
             "optimizer": model.optimizer.get_config() if model.optimizer is not None else None,
             "loss": {"name": type(loss).__name__, **loss.get_config()} if hasattr(loss, "get_config") else None,
             "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
             "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
             "training_loop": loop, "precision": keras.config.dtype_policy().name}
    if hasattr(model, "distillation_facts"):
        facts["distillation"] = model.distillation_facts()
    if device is not None:
        facts.update(device=getattr(device, "device", None), device_settings=device.as_dict())
    return facts
