"""The device policy's calibration: a few timed training steps of candidate precisions.

:func:`measure` builds the workload once per candidate dtype policy, runs ``warmup`` untimed
steps of each (the first traces the step function), then ``steps`` timed rounds in which every
candidate takes one step in turn — interleaved, so a background load slows all of them alike —
and reports each candidate's images/s from its median step. A :class:`Workload` is the model
being trained (registered name, input shape, batch size, build options) or, with
:data:`KERNEL`, a small representative conv net. Synthetic data held in memory: the model is
timed, not the input pipeline.

:mod:`zoo.training.device` decides from these figures and caches them; nothing here decides.
"""
from __future__ import annotations

import contextlib
import json
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import tensorflow as tf

from zoo.models import registry

__all__ = ["KERNEL", "MAX_SECONDS", "STEPS", "WARMUP", "Workload", "dtype_policy", "kernel_workload", "measure",
           "workload_for"]

KERNEL = "conv-kernel"  # the representative workload's name: not a registered model
WARMUP, STEPS = 2, 5  # untimed steps per candidate, then timed rounds
MIN_STEPS = 3  # timed rounds kept even when MAX_SECONDS is spent
MAX_SECONDS = 30.0  # after MIN_STEPS rounds, stop once the timed rounds took this long (large models)


@dataclass(frozen=True)
class Workload:
    """What a calibration times: ``model`` (a registered name or :data:`KERNEL`) with
    ``options`` (build options, JSON-able) on ``batch_size`` images of ``input_shape``."""

    model: str
    input_shape: tuple[int, int, int]
    batch_size: int
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """``"resnet20 32x32x3 b128"``, plus the build options as sorted JSON when there are any."""
        text = f"{self.model} {'x'.join(map(str, self.input_shape))} b{self.batch_size}"
        return text + (f" {json.dumps(dict(self.options), sort_keys=True, default=str)}" if self.options else "")

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "input_shape": list(self.input_shape), "batch_size": self.batch_size,
                "options": dict(self.options)}

    def build(self) -> tuple[keras.Model, bool]:
        """``(model, from_logits)`` under the current dtype policy."""
        if self.model == KERNEL:
            return _kernel_model(self.input_shape), True
        options = {**self.options, "input_shape": self.input_shape}
        return registry.build(self.model, **options), registry.outputs_logits(options)


def kernel_workload(batch_size: int = 128) -> Workload:
    """The representative workload when no model is named: :func:`_kernel_model` on CIFAR-sized input."""
    return Workload(KERNEL, (32, 32, 3), batch_size)


def _kernel_model(shape: tuple[int, int, int]) -> keras.Model:
    """Three conv-BatchNorm-ReLU stages (32, 64, 128 filters; strided between them), global
    pooling and a 10-way dense layer: the op mix of the zoo's CIFAR networks, at a fraction of
    their cost."""
    inputs = keras.Input(shape=shape)
    x = inputs
    for i, filters in enumerate((32, 64, 128)):
        x = keras.layers.Conv2D(filters, 3, strides=1 if i == 0 else 2, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, dtype="float32")(x)
    return keras.Model(inputs, outputs, name="calibration_kernel")


def workload_for(name: str, batch_size: int | None = None, options: Mapping[str, Any] | None = None,
                 image_size: int | None = None) -> Workload:
    """The workload of registered model ``name`` as a recipe or benchmark would train it: the
    input shape from ``options["input_shape"]``, else ``image_size`` (square, the model's
    channels), else the model's default; the batch (default 128 up to 64 px, 32 above). Raises
    ``ZooError`` for an unknown model or bad build options."""
    entry = registry.get_entry(name)
    options = dict(options or {})
    shape = options.pop("input_shape", None)
    if shape is None:
        shape = (image_size, image_size, entry.input_shape[-1]) if image_size else entry.input_shape
    shape = tuple(int(d) for d in shape)
    registry.resolve_plan(name, **options, input_shape=shape)  # refuses bad build options before any work
    batch = batch_size or (128 if max(shape[:2]) <= 64 else 32)
    return Workload(name, shape, int(batch), options)


@contextlib.contextmanager
def dtype_policy(policy: str) -> Iterator[None]:
    """Keras' global dtype policy set to ``policy`` inside the block, restored after it."""
    before = keras.config.dtype_policy().name
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


class _Step:
    """One compiled training step (``train_on_batch``: forward, loss, backward, SGD update) of
    ``workload`` under dtype policy ``precision``, on a fixed synthetic batch."""

    def __init__(self, workload: Workload, precision: str, jit_compile: bool):
        with dtype_policy(precision):
            self.model, logits = workload.build()
        classes = int(self.model.output.shape[-1])
        self.x = tf.random.stateless_normal((workload.batch_size, *workload.input_shape), seed=(0, 1))
        self.y = tf.random.stateless_uniform((workload.batch_size,), seed=(0, 2), minval=0, maxval=classes,
                                             dtype=tf.int32)
        self.model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                           loss=keras.losses.SparseCategoricalCrossentropy(from_logits=logits), jit_compile=jit_compile)

    def __call__(self) -> None:
        self.model.train_on_batch(self.x, self.y)  # returns NumPy logs: the step has finished


def measure(workload: Workload, precisions: Sequence[str], jit_compile: bool = False, *, warmup: int = WARMUP,
            steps: int = STEPS, clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Images/s of a training step of ``workload`` in each dtype policy of ``precisions``
    (``batch_size`` / the median of its timed steps): ``warmup`` untimed steps of each, then up
    to ``steps`` interleaved timed rounds (at least :data:`MIN_STEPS`; no new round once
    :data:`MAX_SECONDS` are spent). The global dtype policy is restored afterwards."""
    runners = {p: _Step(workload, p, jit_compile) for p in precisions}
    for run in runners.values():
        for _ in range(warmup):
            run()
    times: dict[str, list[float]] = {p: [] for p in runners}
    spent = 0.0
    for i in range(steps):
        if i >= MIN_STEPS and spent > MAX_SECONDS:
            break
        for p, run in runners.items():
            start = clock()
            run()
            times[p].append(clock() - start)
            spent += times[p][-1]
    return {p: workload.batch_size / statistics.median(t) for p, t in times.items()}
