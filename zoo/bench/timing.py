"""The one timing loop of every runner (zoo's and the peers'), step statistics and FLOP rates.

FLOPs convention: :func:`zoo.flops.count_flops` counts multiply-adds (MACs) of one forward pass
of one image (convolutions, dense layers, blur filters; not BN, activations, pooling, additions).
One MAC is 2 FLOPs; a training step costs 3 forward passes (forward, gradient with respect to the
activations, gradient with respect to the weights). So ``flops_per_sample`` is ``6 × MACs`` for
training and ``2 × MACs`` for inference, and ``achieved_gflops = flops_per_sample × samples/s``.

Throughput is ``batch_size / median step time`` (robust on a shared machine);
``samples_per_sec_mean`` (all timed samples / total timed seconds) is reported beside it.
No TensorFlow here: a PyTorch peer's process imports this module.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["FLOPS_CONVENTION", "flops_fields", "step_stats", "time_steps"]

FLOPS_CONVENTION = ("FLOPs = 2 x multiply-adds (zoo.flops.count_flops: conv, dense, blur); "
                    "training = 3 x forward = 6 x MACs per sample, inference = 2 x MACs per sample")
PASSES = {"train": 6, "infer": 2}  # FLOPs per multiply-add of one sample's forward pass, per mode


def time_steps(step: Callable[[], object], steps: int) -> list[float]:
    """Seconds taken by each of ``steps`` calls of ``step`` (which must return only once its work
    is finished): the one timing loop of zoo's runners and every peer's."""
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def step_stats(times: Sequence[float], batch_size: int) -> dict[str, Any]:
    """Samples/s (of the median step and the mean) and step-time percentiles in ms."""
    arr = np.asarray(times, dtype=float)
    median = float(np.median(arr))
    return {"samples_per_sec": batch_size / median, "samples_per_sec_mean": batch_size * len(arr) / float(arr.sum()),
            "step_ms_median": 1e3 * median, "step_ms_p90": 1e3 * float(np.percentile(arr, 90)),
            "step_ms_min": 1e3 * float(arr.min()), "step_ms_max": 1e3 * float(arr.max())}


def flops_fields(macs: int | None, mode: str, samples_per_sec: float, peak: float | None) -> dict[str, Any]:
    """``flops`` (MACs), ``flops_per_sample``, ``achieved_gflops`` and the fraction of ``peak``."""
    per_sample = None if macs is None else PASSES[mode] * macs
    achieved = None if per_sample is None else per_sample * samples_per_sec / 1e9
    return {"flops": macs, "flops_per_sample": per_sample, "achieved_gflops": achieved, "peak_gflops": peak,
            "peak_fraction": None if achieved is None or not peak else achieved / peak}
