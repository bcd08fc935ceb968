"""Evaluate what a run saved (its ``model.keras``, or a ``.weights.h5`` built from its recipe) on
the images it held out or on another split."""
from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

import zoo.data as zdata
from zoo import report as zreport
from zoo import runtime
from zoo.errors import ZooError
from zoo.training.features import with_tta
from zoo.training.inputs import eval_dataset, load_splits
from zoo.training.model import build_model
from zoo.training.recipe import Recipe, load_recipe, resolve
from zoo.training.results import HOLDOUT, data_facts, metrics_on, model_facts
from zoo.training.tta import TTA_LEVELS


@dataclass
class EvalResult:
    """What :func:`evaluate` returns: the metrics, the full report and the files written."""

    metrics: dict[str, float]
    report: dict[str, Any]
    files: dict[str, Path]


def locate(run_or_weights: str | Path) -> tuple[Path, Path | None]:
    """``(model or weights file, recipe.yaml next to it or None)``."""
    path = Path(run_or_weights)
    if path.is_dir():
        path = path / "model.keras"
    if not path.exists():
        raise ZooError(f"no model at {path}: give a run directory, a .keras file or a .weights.h5 file.")
    for folder in (path.parent, path.parent.parent):
        if (folder / "recipe.yaml").exists():
            return path, folder / "recipe.yaml"
    return path, None


def load_for_eval(path: Path, recipe: Recipe, info: Any) -> tuple[keras.Model, keras.Model]:
    """``(inference, net)`` from a ``.keras`` file (safe mode) or a build plus ``.weights.h5``."""
    if path.name.endswith(".keras"):
        inference = keras.saving.load_model(path, safe_mode=True, compile=False)
        nets = [layer for layer in inference.layers if isinstance(layer, keras.Model)]
        return inference, nets[-1] if nets else inference
    inference, net = build_model(recipe, info, unfitted_normalization(recipe))
    with warnings.catch_warnings(record=True) as caught:  # Keras warns, and carries on, on a partial match
        warnings.simplefilter("always")
        try:  # the normalisation statistics are weights too (a checkpoint's optimizer state is ignored)
            inference.load_weights(path)
            failure = next((str(w.message) for w in caught if "Skipping" in str(w.message)), None)
        except (ValueError, OSError) as err:
            failure = " ".join(str(err).split("\n\n")[:2])  # Keras then lists every object it could not load
    if failure:
        raise ZooError(f"{path} does not fit {recipe.model.name} of recipe {recipe.name!r} "
                       f"({' '.join(failure.split())[:300]}); pass the recipe of the run that saved it (--recipe).")
    return inference, net


def unfitted_normalization(recipe: Recipe) -> keras.layers.Layer:
    """A normalisation layer of the recipe's kind, to load saved statistics into. Fitted kinds
    are fitted again on the recipe's training split (the weights then overwrite them)."""
    kind = recipe.data.normalization
    try:
        return zdata.normalization_layer(kind)
    except ValueError:
        return zdata.normalization_layer(kind, load_splits(recipe).train)


def evaluate(run_or_weights: str | Path, source: str | None = None, split: str | None = None, *,
             recipe: str | Path | Recipe | None = None, overrides: Sequence[str] = (), limit: int | None = None,
             batch_size: int | None = None, output_dir: str | Path | None = None,
             tta: str | None = None) -> EvalResult:
    """Evaluate a run's ``model.keras`` (a run directory or .keras file, loaded with
    ``safe_mode=True``) or a ``.weights.h5`` file (built from the recipe) on ``split`` of
    ``source`` (default: the recipe's source), and write ``eval_report.json``/``.md`` into
    ``output_dir`` (default: beside the model). ``split=None`` evaluates the images the recipe
    held out for validation; any other name is a split of ``source`` (e.g. ``test``). The recipe
    comes from the run's ``recipe.yaml`` (or the one above a checkpoint) unless given. ``tta``
    (``none``, ``mirror``, ``mirror_translate``; default the recipe's ``data.eval_tta``) adds the
    accuracy under that test-time augmentation (:mod:`zoo.training.tta`) as ``accuracy_tta_<level>``."""
    started = time.perf_counter()
    path, saved = locate(run_or_weights)
    if recipe is None and saved is None:
        raise ZooError(f"no recipe.yaml next to {path}; pass --recipe (the recipe that trained it).")
    recipe = load_recipe(recipe if recipe is not None else saved, overrides)
    if tta is not None and tta not in TTA_LEVELS:
        raise ZooError(f"--tta {tta!r}: unknown test-time augmentation; valid: {', '.join(TTA_LEVELS)}.")
    source = source or recipe.data.source
    ds, info, count = eval_dataset(recipe, source, split, limit, batch_size)
    inference, net = load_for_eval(path, recipe, info)
    t0 = time.perf_counter()
    metrics = with_tta(metrics_on(inference, recipe, ds, info.num_classes), inference, recipe, ds, tta)
    seconds = time.perf_counter() - t0
    report = {
        "weights": str(path), "source": source, "split": split or HOLDOUT, "recipe": resolve(recipe),
        "model": model_facts(recipe, inference, net), "data": {**data_facts(info), "num_examples": count},
        "metrics": metrics, "timing": {"eval_time_s": seconds, "images_per_s": count / max(seconds, 1e-9),
                                       "wall_time_s": time.perf_counter() - started},
        "environment": runtime.environment(),
    }
    files = zreport.write_eval_report(report, Path(output_dir) if output_dir else path.parent)
    return EvalResult(metrics, report, files)
