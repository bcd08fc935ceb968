"""Argument checks shared by the benchmarks, and the error they raise (no TensorFlow here)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from zoo.errors import RunFailedError, ZooError

__all__ = ["MODES", "BenchError", "BenchWorkerError", "as_bench_error", "check_common", "check_positive", "default_batch", "parse_jit", "thread_env"]

MODES = ("train", "infer")
JIT_WORDS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False,
             "off": False, "auto": "auto"}


class BenchError(ZooError):
    """A benchmark asked for something it cannot measure."""


class BenchWorkerError(RunFailedError):
    """A benchmark worker process failed, exited or went silent (exit status 1)."""


def check_positive(label: str, value: Any, low: int) -> None:
    """Refuse ``value`` unless it is an integer (not a bool) of at least ``low``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise BenchError(f"{label} must be an integer >= {low}, got {value!r}.")


def check_common(mode: str, batch_size: Any, steps: Any, warmup: Any) -> None:
    """Refuse a bad mode, batch size (``None`` allowed: the default), step or warm-up count."""
    if mode not in MODES:
        raise BenchError(f"mode must be one of {', '.join(MODES)}, got {mode!r}.")
    if batch_size is not None:
        check_positive("batch_size", batch_size, 1)
    check_positive("steps", steps, 1)
    check_positive("warmup", warmup, 0)


def parse_jit(value: Any) -> bool | str:
    """``model.compile``'s ``jit_compile`` from a bool, ``"auto"`` or a word (true/false/on/off...)."""
    if isinstance(value, bool) or value == "auto":
        return value
    text = str(value).strip().lower()
    if text not in JIT_WORDS:
        raise BenchError(f"jit_compile must be true, false or auto, got {value!r}.")
    return JIT_WORDS[text]


def default_batch(input_shape: Sequence[int | None]) -> int:
    """The default batch: 128 for inputs up to 64 px, 32 above (the sizes CIFAR and ImageNet train at)."""
    side = max((d for d in input_shape[:2] if d), default=32)
    return 128 if side <= 64 else 32


def thread_env(threads: int | None) -> dict[str, str]:
    """Environment that limits a worker to ``threads`` compute threads (TensorFlow intra-op and,
    for one thread, inter-op; PyTorch/OpenMP/MKL); empty for ``None`` (the frameworks' defaults)."""
    if threads is None:
        return {}
    check_positive("threads", threads, 1)
    env = {"TF_NUM_INTRAOP_THREADS": str(threads), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if threads == 1:
        env["TF_NUM_INTEROP_THREADS"] = "1"
    return env


@contextlib.contextmanager
def as_bench_error() -> Iterator[None]:
    """Turn a plain ``ValueError``/``FileNotFoundError`` of a zoo-free package (:mod:`zoo.data`
    raises those) into a :class:`BenchError`, so it reaches the user as one line."""
    try:
        yield
    except ZooError:
        raise
    except (ValueError, FileNotFoundError) as err:
        raise BenchError(str(err)) from err
