"""Per-image budgets (multiply-adds, measured latency) checked on a built model before it trains.

``budget_flops`` counts multiply-adds per image (:func:`zoo.flops.count_flops`); ``budget_latency_ms``
is measured (:func:`measure_latency`). A configuration over budget is recorded as ``infeasible``
and never trained. A budget that even the cheapest configuration of a space exceeds is an error
before the search starts: FLOPs are additive over sites (every choice keeps a site's output
size), so the cheapest configuration is found site by site, and latency is checked on it.
"""
from __future__ import annotations

import gc
import os
import re
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from zoo import flops as zflops
from zoo.errors import ZooError
from zoo.search.errors import TuneError
from zoo.search.space import BLUR_SIZES, SearchSpace
from zoo.training import Recipe, build_model, load_data, load_recipe

__all__ = ["DEFAULT_LATENCY", "Budget", "check_budget", "data_info", "measure_latency", "model_cost", "parse_flops"]

DEFAULT_LATENCY = {"batch": 1, "repeats": 30, "warmup": 5}


def parse_flops(text: str | float | None) -> float | None:
    """``"300M"``, ``"1.2G"``, ``"5e7"`` or a number -> multiply-adds (None stays None)."""
    if text is None or isinstance(text, (int, float)):
        return None if text is None else float(text)
    match = re.fullmatch(r"\s*([0-9.]+(?:[eE][-+]?[0-9]+)?)\s*([kKmMgG]?)\s*", str(text))
    if not match:
        raise TuneError(f"budget_flops={text!r} must be a number of multiply-adds such as 3e8, 300M or 1.2G.")
    scale = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[match.group(2).lower()]
    return float(match.group(1)) * scale


@dataclass(frozen=True)
class Budget:
    """Per-image limits checked on the built model before training."""

    flops: float | None = None
    latency_ms: float | None = None

    @classmethod
    def parse(cls, flops: float | str | None, latency_ms: float | None) -> Budget:
        """A budget from user input (``"300M"``, milliseconds); raises :class:`TuneError` unless positive."""
        budget = cls(parse_flops(flops), None if latency_ms is None else float(latency_ms))
        if any(v is not None and v <= 0 for v in (budget.flops, budget.latency_ms)):
            raise TuneError(f"budgets must be positive, got {budget.as_dict()}.")
        return budget

    def __bool__(self) -> bool:
        return self.flops is not None or self.latency_ms is not None

    def violations(self, flops: float | None, latency_ms: float | None) -> list[str]:
        out = []
        if self.flops is not None and flops is not None and flops > self.flops:
            out.append(f"{flops / 1e6:.2f} M FLOPs > budget {self.flops / 1e6:.2f} M")
        if self.latency_ms is not None and latency_ms is not None and latency_ms > self.latency_ms:
            out.append(f"{latency_ms:.3f} ms/image > budget {self.latency_ms:.3f} ms")
        return out

    def as_dict(self) -> dict[str, float | None]:
        return {"flops": self.flops, "latency_ms": self.latency_ms}


def measure_latency(model: keras.Model, *, batch: int = 1, repeats: int = 30, warmup: int = 5) -> dict[str, Any]:
    """Inference latency of ``model`` on this machine: ms per image at batch size ``batch``,
    median (and 10th/90th percentiles) of ``repeats`` timed calls of a ``tf.function`` after
    ``warmup`` untimed ones, random 0..255 input."""
    shape = (batch, *model.input_shape[1:])
    x = tf.constant(np.random.default_rng(0).uniform(0, 255, size=shape).astype("float32"))
    fn = tf.function(lambda t: model(t, training=False))
    for _ in range(max(warmup, 1)):
        np.asarray(fn(x))
    times = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        np.asarray(fn(x))
        times.append(1000.0 * (time.perf_counter() - start) / batch)
    q = np.percentile(times, [10, 90])
    return {"batch": batch, "repeats": repeats, "median_ms": statistics.median(times), "p10_ms": float(q[0]),
            "p90_ms": float(q[1]), "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "cpu_count": os.cpu_count()}


def data_info(recipe: Recipe) -> Any:
    """The recipe's dataset facts (``zoo.data.DatasetInfo``); loading it also fills the
    decoded-image cache the trial processes read. A source that cannot be loaded is a
    :class:`TuneError` before any training."""
    try:
        return load_data(recipe).info
    except ZooError:
        raise  # already one line naming the field and the fix (zoo.training.inputs.DataError)
    except Exception as err:
        raise TuneError(f"cannot load the data of recipe {recipe.name!r} (data.source={recipe.data.source!r}): "
                        f"{type(err).__name__}: {err}") from err


def model_cost(recipe: Recipe, info: Any, latency: Mapping[str, int] | None) -> dict[str, Any]:
    """Params, FLOPs and (with ``latency`` settings) the latency of ``recipe``'s model, built
    without normalisation; the Keras session is cleared afterwards."""
    _, net = build_model(recipe, info, keras.layers.Identity())
    out = {"params": int(zflops.count_params(net)), "flops": int(zflops.count_flops(net))}
    if latency is not None:
        out["latency"] = measure_latency(net, **latency)
        out["latency_ms"] = out["latency"]["median_ms"]
    del net
    keras.backend.clear_session()
    return out


def cheapest(recipe: Recipe, space: SearchSpace, info: Any) -> dict[str, Any]:
    """The hyperparameter values of the configuration of least FLOPs, found site by site."""
    hp = space.hyperparameters()
    best = space.complete(hp, {})
    for unit, values in space.searched.items():
        name, costs = space.hp_name(unit), []
        for value in values:
            trial = dict(best, **{name: value})
            if value == "blur":
                trial[f"{name}/filter_size"] = min(BLUR_SIZES)
            trial = space.complete(hp, trial)
            costs.append((model_cost(load_recipe(recipe, space.overrides(trial)), info, None)["flops"], trial))
        best = min(costs, key=lambda c: c[0])[1]
    return best


def check_budget(recipe: Recipe, space: SearchSpace, budget: Budget, latency: Mapping[str, int]) -> dict[str, Any]:
    """Raise :class:`TuneError` when no configuration of ``space`` can meet ``budget``; returns
    the cheapest configuration's values, downsampling and cost."""
    info = data_info(recipe)
    values = cheapest(recipe, space, info)
    ds = space.downsample(values)
    cost = model_cost(load_recipe(recipe, space.overrides(values)), info, latency if budget.latency_ms else None)
    gc.collect()
    over = budget.violations(cost["flops"], cost.get("latency_ms"))
    if over:
        raise TuneError(f"no configuration of the search space meets the budget: the cheapest one "
                        f"({', '.join(f'{k}={v}' for k, v in ds.items())}) has {'; '.join(over)}. "
                        f"Raise the budget or search other choices.")
    print(f"zoo.tune: budget {budget.as_dict()}: the cheapest configuration has {cost['flops'] / 1e6:.2f} M FLOPs"
          + (f", {cost['latency_ms']:.3f} ms/image" if "latency_ms" in cost else ""), flush=True)
    return {"values": values, "downsample": ds, **cost}
