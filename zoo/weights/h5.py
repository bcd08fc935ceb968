"""Keras ``.weights.h5`` files, strictly: what a file holds, and loading that refuses partial matches.

Keras' own ``load_weights`` warns and carries on when a file fits a model only in part; the zoo
wants every weight of the model set and every array of the file used, or a
:class:`~zoo.weights.errors.WeightsError` that says which model the file does not fit.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import h5py

from zoo.weights.errors import WeightsError

WRAPPED_GROUP = "layers/functional"  # where Keras saves a nested model: the network inside an inference model


def h5_summary(path: Path) -> tuple[int, bool]:
    """(number of arrays, whether it is an inference model's: a preprocessing layer and a nested network)."""
    count = 0

    def visit(_, obj) -> None:
        nonlocal count
        count += isinstance(obj, h5py.Dataset)

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
            wrapped = WRAPPED_GROUP in f
    except OSError as err:
        raise WeightsError(f"{path} is not a readable Keras .weights.h5 file ({err}).") from None
    return count, wrapped


def load_into(model: Any, path: Path, what: str) -> None:
    """``model.load_weights(path)``, strictly: every weight set, every array of the file used."""
    count, _ = h5_summary(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
        except Exception as err:  # noqa: BLE001 - Keras raises ValueError/KeyError/OSError here
            first = str(err).strip().split("\n\n")[0:2]
            raise WeightsError(f"{path} does not fit {what}: {' '.join(first)[:800]}") from None
    skipped = [str(w.message) for w in caught if "Skipping" in str(w.message) or "retain" in str(w.message)]
    if skipped:
        raise WeightsError(f"{path} does not fit {what}: {skipped[0][:400]}")
    expected = len(model.weights)
    if count != expected:
        raise WeightsError(f"{path} holds {count} arrays but {what} has {expected} weights: the file belongs to "
                           f"another model or other build options.")


def transfer_by_name(src: Any, dst: Any, what: str) -> None:
    """Copy weights layer by layer (same names, same shapes); every weight of ``dst`` must be set."""
    by_name = {layer.name: layer for layer in src.layers}
    missing = []
    for layer in dst.layers:
        if not layer.weights:
            continue
        source = by_name.get(layer.name)
        values = source.get_weights() if source is not None else None
        if values is None or [tuple(v.shape) for v in values] != [tuple(w.shape) for w in layer.weights]:
            missing.append(layer.name)
            continue
        layer.set_weights(values)
    if missing:
        raise WeightsError(f"the published weights do not cover {what}: no weights of the same shape for layers "
                           f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}.")
