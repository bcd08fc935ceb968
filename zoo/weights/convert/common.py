"""Shared machinery of the converters: strict weight assignment and layout transforms.

:class:`Assigner` collects a value for every target weight (by Keras variable path, e.g.
``stage3_block1_conv2_conv/kernel``), records which source key supplied it, and assigns nothing
until :meth:`Assigner.finish` has checked that every target weight is set exactly once, every
source key used exactly once (or explicitly dropped) and every shape matches; otherwise it raises
:class:`ConversionError` listing the missing, unused and mismatched names.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import keras
import numpy as np
from keras import layers

from zoo.weights.errors import WeightsError

TORCH_BN_EPSILON = 1e-5
BN_SLOTS = (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"), ("moving_variance", "running_var"))
IGNORED_SUFFIXES = (".num_batches_tracked",)


class ConversionError(WeightsError):
    """The source weights do not map one-to-one onto the target model."""


@dataclass
class Conversion:
    """What a converter returns: the zoo ``model`` (the source's weights in it; it expects the source's
    preprocessed input), the ``source`` framework, the ``build`` options it was built with and
    :meth:`Assigner.finish`'s summary (weights ``assigned``, ``source_keys`` used, keys ``dropped``
    with the reason). Kept beside the model, not on it: nothing the zoo adds to a model would survive
    a ``.keras`` round trip."""

    model: keras.Model
    source: str
    build: dict[str, Any]
    assigned: int = 0
    source_keys: int = 0
    dropped: dict[str, str] = field(default_factory=dict)


def _listing(items: Iterable[str], limit: int = 12) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f" ... ({len(items)} in all)" if len(items) > limit else "")


class Assigner:
    """Collect, check, then assign the target model's weights (see the module docstring)."""

    def __init__(self, model, source: Mapping[str, Any], *, what: str = "the source"):
        self.model = model
        self.source = source
        self.what = what
        self.targets = {v.path: v for v in model.weights}
        self.values: dict[str, np.ndarray] = {}
        self.origin: dict[str, str] = {}
        self.used: set[str] = set()
        self.dropped: dict[str, str] = {}
        self.unmatched: dict[str, str] = {}
        self.errors: list[str] = []

    # -------------------------------------------------------------- primitives
    def has_layer(self, name: str) -> bool:
        return any(p.startswith(f"{name}/") for p in self.targets)

    def take(self, key: str) -> np.ndarray | None:
        """The source array ``key``, marked used (an error if absent or used twice)."""
        if key not in self.source:
            self.errors.append(f"source has no {key!r}")
            return None
        if key in self.used:
            self.errors.append(f"source {key!r} used twice")
        self.used.add(key)
        return np.asarray(self.source[key])

    def put(self, target: str, value: np.ndarray | None, origin: str) -> None:
        if value is None:
            return
        var = self.targets.get(target)
        if var is None:  # reported with the unused source keys
            self.used.discard(origin)
            self.unmatched[origin] = target
            return
        if target in self.values:
            self.errors.append(f"target {target!r} assigned twice ({self.origin[target]} and {origin})")
            return
        if tuple(value.shape) != tuple(var.shape):
            self.errors.append(f"{target!r} has shape {tuple(var.shape)}, {origin} gives {tuple(value.shape)}")
            return
        self.values[target] = value
        self.origin[target] = origin

    def _rank(self, value: np.ndarray | None, rank: int, key: str) -> np.ndarray | None:
        if value is not None and value.ndim != rank:
            self.errors.append(f"{key} has shape {tuple(value.shape)}, expected rank {rank}")
            return None
        return value

    def drop(self, keys: Iterable[str], reason: str) -> None:
        """Mark source keys as deliberately unused (e.g. the classifier of an ``include_top=False`` target)."""
        for key in keys:
            self.used.add(key)
            self.dropped[key] = reason

    # ---------------------------------------------------------- torch layouts
    def conv(self, layer: str, key: str, bias: bool | None = None) -> None:
        """A PyTorch Conv2d ``key`` (OIHW, optional bias) → Keras Conv2D ``layer`` (HWIO)."""
        w = self._rank(self.take(f"{key}.weight"), 4, f"{key}.weight")
        self.put(f"{layer}/kernel", None if w is None else np.transpose(w, (2, 3, 1, 0)), f"{key}.weight")
        if bias is None:
            bias = f"{key}.bias" in self.source
        if bias:
            self.put(f"{layer}/bias", self.take(f"{key}.bias"), f"{key}.bias")

    def conv_as_dense(self, layer: str, key: str) -> None:
        """A PyTorch 1×1 Conv2d (O, I, 1, 1) → Keras Dense (I, O), or Conv2D when ``layer`` is one."""
        kind = type(self.model.get_layer(layer)).__name__ if layer in {x.name for x in self.model.layers} else ""
        if kind == "Conv2D":
            return self.conv(layer, key)
        w = self.take(f"{key}.weight")
        if w is not None and (w.ndim != 4 or w.shape[2:] != (1, 1)):
            self.errors.append(f"{key}.weight has shape {w.shape}, expected a 1x1 convolution")
            w = None
        self.put(f"{layer}/kernel", None if w is None else w[:, :, 0, 0].T, f"{key}.weight")
        if f"{key}.bias" in self.source:
            self.put(f"{layer}/bias", self.take(f"{key}.bias"), f"{key}.bias")

    def dense(self, layer: str, key: str, kernel: np.ndarray | None = None) -> None:
        """A PyTorch Linear (out, in) → Keras Dense (in, out); ``kernel`` overrides the transposed weight."""
        w = self._rank(self.take(f"{key}.weight"), 2, f"{key}.weight")
        if kernel is None and w is not None:
            kernel = w.T
        self.put(f"{layer}/kernel", kernel, f"{key}.weight")
        self.put(f"{layer}/bias", self.take(f"{key}.bias"), f"{key}.bias")

    def bn(self, layer: str, key: str) -> None:
        """A PyTorch BatchNorm2d → Keras BatchNormalization (weight/bias/running stats → gamma/beta/moving)."""
        for keras_name, torch_name in BN_SLOTS:
            self.put(f"{layer}/{keras_name}", self.take(f"{key}.{torch_name}"), f"{key}.{torch_name}")

    # ------------------------------------------------------------------ check
    def finish(self) -> dict[str, Any]:
        """Check everything, then assign; returns a summary (counts, dropped keys)."""
        ignorable = {k for k in self.source if k.endswith(IGNORED_SUFFIXES)}
        missing = [p for p in self.targets if p not in self.values]
        unused = sorted(set(self.source) - self.used - ignorable)
        problems = []
        if self.errors:
            problems.append(f"errors: {_listing(self.errors)}")
        if missing:
            problems.append(f"target weights not assigned: {_listing(missing)}")
        if unused:
            shown = [f"{k} (no {self.unmatched[k]} in the target)" if k in self.unmatched else k for k in unused]
            problems.append(f"source weights not used: {_listing(shown)}")
        if problems:
            raise ConversionError(f"cannot convert {self.what} into {self.model.name}:\n  " + "\n  ".join(problems))
        for path, value in self.values.items():
            var = self.targets[path]
            var.assign(value.astype(var.dtype) if hasattr(var, "dtype") else value)
        return {"assigned": len(self.values), "source_keys": len(self.used) - len(self.dropped),
                "dropped": dict(self.dropped)}


def check_bn_epsilon(model, epsilon: float, what: str) -> None:
    """Every BatchNormalization of ``model`` must use the source's epsilon (else outputs drift)."""
    wrong = [x.name for x in model.layers if isinstance(x, layers.BatchNormalization)
             and abs(float(x.epsilon) - epsilon) > 1e-12]
    if wrong:
        raise ConversionError(f"{model.name} uses another BatchNorm epsilon than {what} ({epsilon}) in "
                              f"{_listing(wrong)}; build it with the matching layout.")


def adaptive_pool_matrix(size_in: int, size_out: int) -> np.ndarray:
    """``A`` (size_out × size_in) with ``AdaptiveAvgPool1d(size_out)(x) = A @ x`` (PyTorch's bins)."""
    a = np.zeros((size_out, size_in), dtype=np.float64)
    for i in range(size_out):
        start = (i * size_in) // size_out
        end = -((-(i + 1) * size_in) // size_out)
        a[i, start:end] = 1.0 / (end - start)
    return a


def strip_prefix(key: str, prefixes: tuple[str, ...] = ("module.",)) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in prefixes:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def import_torch():
    """torch, imported only when a PyTorch checkpoint is read (an optional dependency)."""
    try:
        import torch
    except ImportError:
        raise ConversionError("reading PyTorch checkpoints needs torch: pip install torch==2.13.0 "
                              "(the CPU build).") from None
    return torch


def torch_load_error(path: Path, err: BaseException) -> ConversionError:
    """``torch.load``'s error on ``path`` as one line that names the problem and the fix (torch's own
    are empty for an empty file, or paragraphs)."""
    if path.is_file() and path.stat().st_size == 0:
        return ConversionError(f"{path} is empty (0 bytes): its download or copy did not finish; fetch the "
                               f"checkpoint again.")
    text = " ".join(str(err).split())
    if isinstance(err, EOFError):
        reason = "the file ends too soon: it is truncated"
    elif "Weights only load failed" in text:
        detail = text.partition("WeightsUnpickler error:")[2].split(" Check the documentation")[0].strip()
        reason = f"it holds objects besides tensors and plain containers, which weights-only loading refuses: {detail}"
    else:
        reason = text.split(". ")[0] or type(err).__name__
    return ConversionError(f"cannot read {path} as a weights-only PyTorch checkpoint ({reason[:300]}); fetch it "
                           f"again, or save its tensors alone: torch.save(model.state_dict(), path).")


def load_state_dict(src: Any) -> dict[str, np.ndarray]:
    """A flat ``{key: numpy array}`` from a ``.pth`` path, a ``torch.nn.Module`` or a state dict.

    Files are read with ``torch.load(..., map_location="cpu", weights_only=True)``: tensors and plain
    containers only, no code from the file runs. A checkpoint dict's ``state_dict`` is used, and
    DataParallel's ``module.`` prefixes are stripped.
    """
    if isinstance(src, (str, os.PathLike)):
        path = Path(src).expanduser()
        if not path.exists():
            raise ConversionError(f"no checkpoint at {path}.")
        torch = import_torch()
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - unpickling errors come in many types
            raise torch_load_error(path, err) from None
    elif hasattr(src, "state_dict") and callable(src.state_dict):
        obj = src.state_dict()
    else:
        obj = src
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    elif isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping):
        raise ConversionError(f"expected a state dict (or a checkpoint with 'state_dict'), got {type(obj).__name__}.")
    out: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        if not hasattr(value, "shape"):
            continue
        array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        name = strip_prefix(str(key))
        if name in out:
            raise ConversionError(f"two source keys become {name!r} once 'module.' is stripped.")
        out[name] = array
    if not out:
        raise ConversionError("the checkpoint holds no tensors.")
    return out
