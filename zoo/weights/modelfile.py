"""Is a Keras model file readable, and would Keras' safe mode load it? Answered without Keras.

Keras reports a truncated ``.keras`` file as "File not found" and a safe-mode refusal as a long
paragraph that suggests ``safe_mode=False``, which the zoo never passes (a ``.keras`` file's
Python lambdas would run on load). :func:`check_model_file` looks at the file itself (the zip and
its ``config.json`` with :mod:`zipfile` and :mod:`json`, an HDF5 file with :mod:`h5py`) so a bad file
is refused in one line, with the fix, before a run directory is made or a model is built; and
:func:`keras_load_error` turns an error Keras raised on loading anyway into the same kind of line.
"""
from __future__ import annotations

import json
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from zoo.weights.errors import WeightsError

KERAS_SUFFIX, WEIGHTS_SUFFIX = ".keras", ".weights.h5"
CONFIG = "config.json"
# class names in a .keras config that Keras refuses in safe mode (keras/src/saving/serialization_lib.py
# "__lambda__": a Python lambda, a Lambda layer's function among them; TFSMLayer: an external SavedModel)
UNSAFE_CLASSES = {"__lambda__": "a Python lambda", "TFSMLayer": "a TFSMLayer (an external SavedModel)"}
SAFE_MODE_FIX = ("the zoo loads .keras files in safe mode only and has no switch to turn it off: rebuild the model "
                 "without it (e.g. a registered layer instead of a Lambda layer) and save it again, or use its "
                 "weights (model.save_weights(...) to a .weights.h5 file) instead")
UNREADABLE_FIX = "save the model again (model.save) or copy the file again"


def check_model_file(path: str | Path, what: str | None = None) -> Path:
    """``path`` if it is a readable ``.keras`` file that safe mode loads, or a readable
    ``.weights.h5`` file (other files pass unchecked); else a :class:`WeightsError` that starts
    with ``what`` (``train.init_weights``, ...; else the path) and names the problem and the fix."""
    path = Path(path)
    if path.name.endswith(KERAS_SUFFIX):
        check_keras_archive(path, what)
    elif path.name.endswith(WEIGHTS_SUFFIX):
        check_h5(path, what)
    return path


def check_keras_archive(path: Path, what: str | None = None) -> None:
    """A ``.keras`` zip whose members are intact (their CRCs checked: a cut file fails here), with a
    ``config.json`` that holds nothing safe mode refuses."""
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
            config = json.loads(archive.read(CONFIG)) if broken is None else None
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError, zlib.error) as err:
        raise WeightsError(f"{_lead(what, path)} is not a readable .keras file (truncated, or not a Keras 3 model "
                           f"archive: {_first_line(err)}); {UNREADABLE_FIX}.") from None
    if broken is not None:
        raise WeightsError(f"{_lead(what, path)} is a damaged .keras file (its {broken} fails its checksum); "
                           f"{UNREADABLE_FIX}.")
    unsafe = sorted({f"{layer!r} ({UNSAFE_CLASSES[kind]})" for kind, layer in unsafe_objects(config)})
    if unsafe:
        raise WeightsError(f"{_lead(what, path)} is refused by Keras safe mode: layer {', '.join(unsafe)} would run "
                           f"code stored in the file; {SAFE_MODE_FIX}.")


def check_h5(path: Path, what: str | None = None) -> None:
    """A ``.weights.h5`` file that opens as HDF5 and whose arrays' headers all read."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            f.visititems(lambda name, obj: obj.shape if isinstance(obj, h5py.Dataset) else None)
    except (OSError, ValueError, RuntimeError) as err:
        raise WeightsError(f"{_lead(what, path)} is not a readable Keras .weights.h5 file (truncated or not HDF5: "
                           f"{_first_line(err)}); save the weights again (model.save_weights) or copy the file "
                           f"again.") from None


def unsafe_objects(config: Any, layer: str = "?") -> Iterator[tuple[str, str]]:
    """``(class name, layer name)`` of every object in a Keras config that safe mode refuses."""
    if isinstance(config, dict):
        if config.get("class_name") in UNSAFE_CLASSES:
            yield config["class_name"], layer
        inner = config.get("config")
        name = inner.get("name", layer) if isinstance(inner, dict) and "class_name" in config else layer
        for value in config.values():
            yield from unsafe_objects(value, str(name))
    elif isinstance(config, list):
        for value in config:
            yield from unsafe_objects(value, layer)


def keras_load_error(err: BaseException, path: str | Path, what: str | None = None) -> WeightsError:
    """An error raised by ``keras.saving.load_model(path, safe_mode=True)`` as one line with the fix."""
    text = _first_line(err)
    if "safe_mode=False" in str(err) or "enable_unsafe_deserialization" in str(err):
        reason = text.split(". ")[0]
        return WeightsError(f"{_lead(what, path)} is refused by Keras safe mode ({reason}); {SAFE_MODE_FIX}.")
    return WeightsError(f"{_lead(what, path)} does not load as a Keras model ({text}); {UNREADABLE_FIX}.")


def _lead(what: str | None, path: Path) -> str:
    return f"{what}: {path}" if what else str(path)


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(err).__name__
