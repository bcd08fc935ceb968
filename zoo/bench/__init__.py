"""Throughput benchmarks: a model's training/inference step, sweeps, peers, the input pipeline.

- :func:`bench` (:mod:`zoo.bench.step`) — warm-up steps, then timed steps of one model on a
  synthetic batch in memory: samples/s, step time (median and p90), peak memory, parameters,
  FLOPs and the achieved GFLOP/s as a fraction of this machine's measured fp32 matmul peak
  (:func:`measure_matmul_peak`, :mod:`zoo.bench.machine`). :func:`append_csv`
  (:mod:`zoo.bench.results`) records a result with the machine, versions, settings and date.
- :func:`sweep` (:mod:`zoo.bench.sweeps`) — the alternatives to the device policy's static
  choices (:func:`zoo.training.device.choose_settings`: XLA on/off/auto, mixed precision, oneDNN
  off, batch sizes). The policy's precision is calibrated on the machine itself
  (:func:`zoo.training.device.resolve_policy`; ``zoo bench --settings [--refresh]`` shows it).
- :func:`bench_peers` (:mod:`zoo.bench.peers`) — ResNet-20 against the same network in PyTorch
  (:mod:`zoo.bench.torch_resnet`) and ResNet-50 against ``keras.applications.ResNet50``.
- :func:`bench_pipeline` (:mod:`zoo.bench.pipeline`) — images/s of :func:`zoo.data.make_pipeline`.

Sweeps and peers time each configuration in its own process (:mod:`zoo.bench.worker`), in
interleaved rounds (:mod:`zoo.bench.rounds`). FLOPs convention: :mod:`zoo.bench.timing`.
Measured figures live in ``results/benchmarks/`` (how each was produced: ``RUN.md`` there).

    zoo bench resnet20 [--mode train|infer] [--batch-size N] [--precision fp32|mixed] [--json]
    zoo bench --sweep [resnet20]      zoo bench --pipeline      zoo bench --peers
    zoo bench [resnet20] --settings [--refresh]

Attributes load lazily: a benchmark worker (``python -m zoo.bench.worker``) timing PyTorch must
not import TensorFlow, and importing a submodule runs this package first.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "bench": "zoo.bench.step", "KerasRunner": "zoo.bench.step",
    "sweep": "zoo.bench.sweeps", "sweep_configs": "zoo.bench.sweeps",
    "bench_peers": "zoo.bench.peers", "PEER_GROUPS": "zoo.bench.peers",
    "bench_pipeline": "zoo.bench.pipeline",
    "append_csv": "zoo.bench.results", "default_csv": "zoo.bench.results", "CSV_COLUMNS": "zoo.bench.results",
    "measure_matmul_peak": "zoo.bench.machine",
    "MODES": "zoo.bench.checks", "BenchError": "zoo.bench.checks", "BenchWorkerError": "zoo.bench.checks",
    "FLOPS_CONVENTION": "zoo.bench.timing", "time_steps": "zoo.bench.timing",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'zoo.bench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
