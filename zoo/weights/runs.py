"""What a :mod:`zoo.training.fit` run directory says about its weights, read as data (nothing executed).

A run directory holds ``report.json`` (model, build options, data, metrics, recipe),
``model.weights.h5`` (the inference model's weights: normalisation + network) and ``model.keras``,
whose ``config.json`` holds the normalisation layer's serialization.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, Sequence

from zoo.weights.entries import KNOWN_CLASSES, read_json
from zoo.weights.errors import WeightsError

# the layers of an inference model that are not its normalisation
MODEL_CLASSES = ("InputLayer", "Functional", "Model", "Sequential")


def run_preprocessing_layer(run_dir: str | Path) -> dict[str, Any]:
    """The serialized preprocessing layer of a run's ``model.keras`` (read as JSON; nothing executed)."""
    path = Path(run_dir) / "model.keras"
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise WeightsError(f"cannot read the model config in {path} ({err}); publish needs the run's model.keras "
                           f"for its preprocessing layer.") from None
    layers = config.get("config", {}).get("layers", [])
    inner = [x for x in layers if x.get("class_name") not in MODEL_CLASSES]
    if len(layers) != 3 or len(inner) != 1:
        raise WeightsError(f"{path} is not a zoo inference model (input -> preprocessing -> model); its layers: "
                           f"{[x.get('class_name') for x in layers]}.")
    return {k: inner[0][k] for k in ("module", "class_name", "config", "registered_name") if k in inner[0]}


def run_facts(run_dir: str | Path) -> dict[str, Any]:
    """What a run directory says about its model: name, build options, data, metrics, recipe, preprocessing."""
    run = Path(run_dir)
    report = read_json(run / "report.json")
    model, data = report.get("model") or {}, report.get("data") or {}
    if not model.get("name"):
        raise WeightsError(f"{run / 'report.json'} names no model.")
    build = {"num_classes": data.get("num_classes"), **(model.get("options") or {})}
    if model.get("input_shape"):
        build["input_shape"] = list(model["input_shape"])
    if build["num_classes"] is None:
        build.pop("num_classes")
    recipe = report.get("recipe") or {}
    metrics = {split: m for split, m in (report.get("evaluation") or {}).items()}
    if report.get("best"):
        metrics["best_epoch"] = report["best"]
    norm = ((recipe.get("data") or {}).get("normalization")) or "unknown"
    return {"name": model["name"], "build": build, "data": data, "metrics": metrics, "status": report.get("status"),
            "recipe": {"name": recipe.get("name"), "run_name": report.get("run_name"), "resolved": recipe},
            "preprocessing": {"kind": norm, "input": "RGB, 0..255, channels last",
                              "description": f"zoo.data.normalization_layer({norm!r}) fitted by the run",
                              "layer": run_preprocessing_layer(run)}}


def run_classes(facts: dict[str, Any]) -> Sequence[str] | None:
    """The class names of a run's data: its report's ``data.class_names``, or a known dataset's (CIFAR-10)."""
    data = facts["data"]
    return data.get("class_names") or KNOWN_CLASSES.get(str(data.get("name", "")).split(":")[0].lower())
