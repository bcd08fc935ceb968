"""The machine a benchmark ran on: its description for result rows, GPU memory, and its
measured fp32 matmul peak (cached per machine), against which achieved GFLOP/s are reported."""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import tensorflow as tf

from zoo import report as zreport
from zoo import runtime
from zoo.bench.checks import BenchError
from zoo.training.device import device_name, gpus, onednn_enabled

__all__ = ["environment_row", "gpu_peak_mb", "matmul_cache_file", "measure_matmul_peak", "peak_value",
           "reset_gpu_peak"]


def environment_row() -> dict[str, Any]:
    """Machine, versions, threads and date for result rows (flat)."""
    env = runtime.environment()
    return {
        "date": env["date"], "machine": platform.node(), "cpu": env["cpu"], "cores": env["cpu_count"],
        "device": device_name(), "python": env["python"], "tensorflow": env["tensorflow"],
        "keras": env["keras"], "numpy": env["numpy"], "platform": env["platform"],
        "onednn": onednn_enabled(), "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "git_commit": env["git_commit"],
    }


def reset_gpu_peak() -> None:
    """Reset TensorFlow's peak-memory mark of every GPU (nothing on a CPU machine)."""
    for i, _ in enumerate(gpus()):
        with contextlib.suppress(Exception):
            tf.config.experimental.reset_memory_stats(f"GPU:{i}")


def gpu_peak_mb() -> float | None:
    """Peak memory TensorFlow allocated on the first GPU since :func:`reset_gpu_peak`, MB."""
    if not gpus():
        return None
    try:
        return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    except Exception:  # noqa: BLE001 - memory info is optional
        return None


# -------------------------------------------------------------------------------- matmul peak
def matmul_cache_file() -> Path:
    """``$ZOO_BENCH_CACHE/matmul_peak.json``, else ``$XDG_CACHE_HOME`` or ``~/.cache``'s ``zoo/bench/``."""
    if os.environ.get("ZOO_BENCH_CACHE"):
        return Path(os.environ["ZOO_BENCH_CACHE"]).expanduser() / "matmul_peak.json"
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "zoo" / "bench" / "matmul_peak.json"


def _machine_key(size: int) -> str:
    return "|".join([platform.node(), runtime.cpu_name(), f"{os.cpu_count()} cores", device_name(),
                     f"tf {tf.__version__}", f"onednn {onednn_enabled()}", f"n {size}"])


def _best_matmul_seconds(size: int, repeats: int) -> float:
    a = tf.random.stateless_normal((size, size), seed=(1, 2))
    b = tf.random.stateless_normal((size, size), seed=(3, 4))

    @tf.function
    def product(a, b):
        return tf.linalg.matmul(a, b)[0, 0]  # a scalar out: nothing large is copied back

    float(product(a, b))
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        float(product(a, b))
        best = min(best, time.perf_counter() - start)
    return best


def measure_matmul_peak(size: int = 4096, repeats: int = 5, *, refresh: bool = False,
                        cache: bool = True) -> dict[str, Any]:
    """This machine's fp32 matmul throughput: the best of ``repeats`` timed
    ``tf.linalg.matmul`` of two ``size``×``size`` float32 matrices (``2·size³`` FLOPs), after one
    untimed call. Cached per machine (host, CPU, cores, device, TensorFlow, oneDNN, size) in
    :func:`matmul_cache_file`; ``refresh`` measures again. Measure on an idle machine: a
    contended figure would be cached. On a GPU TensorFlow may use TF32 for float32 matmuls (its
    default on Ampere and newer), so the "fp32" peak is TF32's.

    Returns ``{"gflops", "size", "seconds", "date", "key", "cached"}``.
    """
    if size < 16 or repeats < 1:
        raise BenchError(f"measure_matmul_peak needs size >= 16 and repeats >= 1, got {size}, {repeats}.")
    path, key = matmul_cache_file(), _machine_key(size)
    stored: dict[str, Any] = {}
    if cache and path.is_file():
        with contextlib.suppress(OSError, ValueError):
            stored = json.loads(path.read_text())
        if not refresh and key in stored:
            return {**stored[key], "cached": True}
    best = _best_matmul_seconds(size, repeats)
    record = {"gflops": 2 * size**3 / best / 1e9, "size": size, "seconds": best,
              "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "key": key}
    if cache:
        stored[key] = record
        with contextlib.suppress(OSError):
            zreport.write_text(path, json.dumps(stored, indent=2) + "\n")
    return {**record, "cached": False}


def peak_value(peak_gflops: float | bool | None) -> float | None:
    """``False``: no peak; ``None``/``True``: :func:`measure_matmul_peak` (cached); a number: itself."""
    if peak_gflops is False:
        return None
    if peak_gflops is None or peak_gflops is True:
        return measure_matmul_peak()["gflops"]
    return float(peak_gflops)
