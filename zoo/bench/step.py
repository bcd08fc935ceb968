"""One model's training or inference step, timed: :func:`bench` and the Keras runner behind it.

Everything is measured on synthetic data already in memory, so the model is timed, not the input
pipeline (which has its own benchmark, :func:`zoo.bench.pipeline.bench_pipeline`). The FLOPs
convention is :mod:`zoo.bench.timing`'s.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import tensorflow as tf

from zoo import runtime
from zoo.bench import machine
from zoo.bench.checks import BenchError, check_common, default_batch, parse_jit
from zoo.bench.timing import FLOPS_CONVENTION, flops_fields, step_stats, time_steps
from zoo.flops import count_flops
from zoo.models import registry
from zoo.training.calibration import dtype_policy
from zoo.training.device import resolve_precision

__all__ = ["KerasRunner", "bench", "bench_result", "dtype_policy", "make_keras_runner"]


def _macs(model: Any) -> int | None:
    try:
        return int(count_flops(model))
    except Exception:  # noqa: BLE001 - models with layers the counter does not know
        return None


class KerasRunner:
    """One compiled Keras step (``train_on_batch`` / ``predict_on_batch``, the functions
    ``model.fit``/``predict`` run) on a fixed synthetic batch held in memory."""

    impl = "keras"

    def __init__(self, model_fn: Callable[[], Any], *, mode: str, batch_size: int, policy: str,
                 jit_compile: bool | str, seed: int, label: str, from_logits: bool = True):
        self.mode, self.batch_size, self.policy, self.label = mode, batch_size, policy, label
        with dtype_policy(policy):
            self.model = model_fn()
        shape = tuple(self.model.input.shape[1:])
        if any(d is None for d in shape):
            raise BenchError(f"benchmarks need a fixed input size; {self.model.name} takes {shape} "
                             "(pass input_shape).")
        classes = int(self.model.output.shape[-1])
        self.x = tf.random.stateless_normal((batch_size, *shape), seed=(seed, 1))
        self.y = tf.random.stateless_uniform((batch_size,), seed=(seed, 2), minval=0, maxval=classes, dtype=tf.int32)
        if mode == "train":
            self.model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                               loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
                               metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                               jit_compile=jit_compile)
        else:
            self.model.compile(jit_compile=jit_compile)
        self.jit_compile = jit_compile
        self.params = int(sum(math.prod(w.shape) for w in self.model.trainable_weights))
        self.params_total = int(sum(math.prod(w.shape) for w in self.model.weights))
        self.flops = _macs(self.model)
        self.input_shape = shape

    def step(self) -> None:
        if self.mode == "train":
            self.model.train_on_batch(self.x, self.y)  # returns NumPy logs: the step has finished
        else:
            self.model.predict_on_batch(self.x)

    def measure(self, steps: int) -> list[float]:
        return time_steps(self.step, steps)


def _keras_app_runner(name: str, options: dict[str, Any], batch: int | None, **kw: Any) -> KerasRunner:
    cls = getattr(keras.applications, name, None)
    if cls is None:
        raise BenchError(f"keras.applications has no {name!r}.")
    kwargs = {"weights": None, "classifier_activation": None, **options}
    shape = kwargs.get("input_shape") or (224, 224, 3)
    return KerasRunner(lambda: cls(**kwargs), batch_size=batch or default_batch(shape),
                       label=f"keras.applications.{name}", **kw)


def _zoo_runner(name: str, options: dict[str, Any], batch: int | None, **kw: Any) -> KerasRunner:
    entry = registry.get_entry(name)
    registry.resolve_plan(name, **options)  # validates the build options before anything is built
    shape = tuple(options.get("input_shape") or entry.input_shape)
    logits = registry.outputs_logits(options)
    label = f"zoo {entry.name}" + (f" {json.dumps(options, sort_keys=True)}" if options else "")
    return KerasRunner(lambda: registry.build(name, **options), batch_size=batch or default_batch(shape),
                       label=label, from_logits=logits, **kw)


KERAS_IMPLS = {"zoo": _zoo_runner, "keras_app": _keras_app_runner}  # spec["impl"] -> runner factory


def make_keras_runner(spec: Mapping[str, Any]) -> KerasRunner:
    """A runner from a JSON-able spec: ``impl`` (``zoo`` or ``keras_app``), ``name``, ``options``,
    ``mode``, ``batch_size``, ``precision``, ``jit_compile``, ``seed``."""
    impl = spec.get("impl", "zoo")
    if impl not in KERAS_IMPLS:
        raise BenchError(f"no Keras runner for impl {impl!r}; impls: {', '.join(KERAS_IMPLS)}.")
    return KERAS_IMPLS[impl](spec["name"], dict(spec.get("options") or {}), spec.get("batch_size"),
                             mode=spec.get("mode", "train"), policy=resolve_precision(spec.get("precision", "fp32")),
                             jit_compile=parse_jit(spec.get("jit_compile", False)), seed=int(spec.get("seed", 0)))


def bench(name: str, mode: str = "train", batch_size: int | None = None, precision: str = "fp32",
          steps: int = 20, warmup: int = 3, *, jit_compile: bool | str = False, seed: int = 0,
          peak_gflops: float | bool | None = None, **build_options: Any) -> dict[str, Any]:
    """Time ``steps`` training (``mode="train"``: forward, loss, backward, SGD update — the step
    ``model.fit`` runs) or inference steps of zoo model ``name`` on one synthetic batch held in
    memory, after ``warmup`` untimed steps (the first traces the function).

    ``batch_size`` defaults to 128 for inputs up to 64 px and 32 above; ``precision`` is ``fp32``,
    ``mixed`` (``mixed_bfloat16`` on CPU, ``mixed_float16`` on GPU) or a Keras mixed policy;
    ``jit_compile`` is passed to ``model.compile`` (``False``, ``True`` or ``"auto"``).
    ``build_options`` go to :func:`zoo.build` (``input_shape``, ``num_classes``, ``layout``, ...).
    ``peak_gflops``: ``None`` uses :func:`zoo.bench.machine.measure_matmul_peak` (cached), a
    number uses it, ``False`` skips the peak fraction.

    Returns a flat-ish dict: ``train_samples_per_sec`` or ``infer_samples_per_sec`` (also as
    ``samples_per_sec``), ``step_ms_median``/``step_ms_p90``, ``peak_rss_mb``, ``params``,
    ``flops`` (MACs per sample, forward), ``flops_per_sample`` (see :mod:`zoo.bench.timing`),
    ``achieved_gflops``, ``peak_fraction``, the settings, ``step_times_ms`` and ``environment``.
    Write it down with :func:`zoo.bench.results.append_csv`. Raises ``ZooError`` for an unknown
    model, mode or precision, a batch size below 1 or bad build options — before building anything.
    """
    check_common(mode, batch_size, steps, warmup)
    resolve_precision(precision)
    jit = parse_jit(jit_compile)
    registry.get_entry(name)
    peak = machine.peak_value(peak_gflops)
    runtime.reset_peak_rss()
    machine.reset_gpu_peak()
    rss_before = runtime.rss_mb()
    spec = {"impl": "zoo", "name": name, "options": build_options, "mode": mode, "batch_size": batch_size,
            "precision": precision, "jit_compile": jit, "seed": seed}
    runner = make_keras_runner(spec)
    warm_start = time.perf_counter()
    runner.measure(warmup)
    warmup_s = time.perf_counter() - warm_start
    times = runner.measure(steps)
    return bench_result(spec, runner, times, warmup, warmup_s, peak, rss_before)


def bench_result(spec: Mapping[str, Any], runner: Any, times: Sequence[float], warmup: int, warmup_s: float,
                 peak: float | None, rss_before: float | None) -> dict[str, Any]:
    """The result row of one runner's timed ``times`` (see :func:`bench`)."""
    mode, batch = spec["mode"], runner.batch_size
    stats = step_stats(times, batch)
    return {
        "name": spec["name"], "impl": spec.get("impl", "zoo"), "label": runner.label, "mode": mode,
        f"{mode}_samples_per_sec": stats["samples_per_sec"], **stats,
        "batch_size": batch, "precision": spec.get("precision", "fp32"), "dtype_policy": runner.policy,
        "jit_compile": runner.jit_compile, "steps": len(times), "warmup": warmup, "warmup_s": warmup_s,
        "build_options": dict(spec.get("options") or {}), "input_shape": list(getattr(runner, "input_shape", ())),
        "params": runner.params, **flops_fields(runner.flops, mode, stats["samples_per_sec"], peak),
        "flops_convention": FLOPS_CONVENTION, "peak_rss_mb": runtime.peak_rss_mb(), "rss_before_mb": rss_before,
        "peak_gpu_mb": machine.gpu_peak_mb() if runner.impl != "torch" else None,
        "step_times_ms": [1e3 * t for t in times], "environment": machine.environment_row(),
    }
