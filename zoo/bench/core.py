"""Throughput benchmarks: a model's training/inference step, the input pipeline, peers, settings.

Everything here measures on synthetic data already in memory, so the model is timed, not the
input pipeline (which has its own benchmark, :func:`bench_pipeline`).

- :func:`bench` — warm-up steps, then timed steps of one model: samples/s, step time (median and
  p90), peak memory, parameters, FLOPs and the achieved GFLOP/s as a fraction of this machine's
  measured fp32 matmul peak (:func:`measure_matmul_peak`). :func:`append_csv` records a result
  with the machine, versions, settings and date (``results/benchmarks/<name>.csv``).
- :func:`choose_settings` — the fastest correct training settings per device, with the
  measurements behind them; :func:`apply_training_settings` is the hook ``zoo train`` calls.
- :func:`sweep` — measures the alternatives (XLA on/off/auto, mixed precision, oneDNN off, batch
  sizes) so the defaults stay documented by measurement.
- :func:`bench_pipeline` — images/s delivered by :func:`zoo.data.make_pipeline`.
- :func:`bench_peers` — ResNet-20 against the same network in PyTorch (eager, channels-last) and
  ResNet-50 against ``keras.applications.ResNet50`` (and PyTorch), interleaved repeats, each
  implementation in its own process; writes ``results/benchmarks/peers.csv`` with ratios.

FLOPs convention: :func:`zoo.flops.count_flops` counts multiply-adds (MACs) of one forward pass
of one image (convolutions, dense layers, blur filters; not BN, activations, pooling, additions).
One MAC is 2 FLOPs; a training step costs 3 forward passes (forward, gradient with respect to the
activations, gradient with respect to the weights). So ``flops_per_sample`` is ``6 × MACs`` for
training and ``2 × MACs`` for inference, and ``achieved_gflops = flops_per_sample × samples/s``.

Throughput is ``batch_size / median step time`` (robust on a shared machine);
``samples_per_sec_mean`` (all timed samples / total timed seconds) is reported beside it.

    zoo bench resnet20 [--mode train|infer] [--batch-size N] [--precision fp32|mixed] [--json]
    zoo bench --sweep [resnet20]      zoo bench --pipeline      zoo bench --peers
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as _dt
import io
import json
import math
import os
import platform
import resource
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zoo.bench.peers import time_steps

__all__ = [
    "MODES",
    "PRECISIONS",
    "Settings",
    "add_bench_arguments",
    "append_csv",
    "apply_training_settings",
    "bench",
    "bench_from_args",
    "bench_peers",
    "bench_pipeline",
    "choose_settings",
    "default_csv",
    "main",
    "measure_matmul_peak",
    "onednn_enabled",
    "sweep",
]

MODES = ("train", "infer")
PRECISIONS = ("fp32", "mixed", "mixed_bfloat16", "mixed_float16")
JIT_CHOICES = (False, True, "auto")
RESULTS_DIR = Path("results") / "benchmarks"
FLOPS_CONVENTION = ("FLOPs = 2 x multiply-adds (zoo.flops.count_flops: conv, dense, blur); "
                    "training = 3 x forward = 6 x MACs per sample, inference = 2 x MACs per sample")
_PREFIX = "@@zoo-bench "  # worker protocol lines on stdout
_ROOT = Path(__file__).resolve().parents[2]


def _error(message: str) -> Exception:
    from zoo.errors import ZooError

    return ZooError(message)


# ------------------------------------------------------------------------------ environment
def onednn_enabled() -> bool:
    """Whether TensorFlow's oneDNN (MKL) CPU kernels are on: ``TF_ENABLE_ONEDNN_OPTS`` if set,
    else TensorFlow's default (on for x86-64 Linux builds)."""
    flag = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    if flag is not None:
        return flag.strip().lower() in ("1", "true", "yes", "on")
    return platform.machine().lower() in ("x86_64", "amd64")


def _gpus() -> list[Any]:
    import tensorflow as tf

    return tf.config.list_physical_devices("GPU")


def _device_kind() -> str:
    return "gpu" if _gpus() else "cpu"


def _device_name() -> str:
    from zoo import runtime

    gpus = _gpus()
    if gpus:
        import tensorflow as tf

        details = tf.config.experimental.get_device_details(gpus[0])
        return f"{len(gpus)}x {details.get('device_name', 'GPU')}"
    return f"{runtime.cpu_name()} ({os.cpu_count()} cores)"


def _environment() -> dict[str, Any]:
    """Machine, versions and date for result rows (flat)."""
    import tensorflow as tf

    from zoo import runtime

    env = runtime.environment()
    return {
        "date": env["date"], "machine": platform.node(), "cpu": env["cpu"], "cores": env["cpu_count"],
        "device": _device_name(), "python": env["python"], "tensorflow": env["tensorflow"],
        "keras": env["keras"], "numpy": env["numpy"], "platform": env["platform"],
        "onednn": onednn_enabled(), "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "git_commit": env["git_commit"],
    }


# ----------------------------------------------------------------------------------- memory
def _status_kb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux ``clear_refs`` 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss_mb() -> float | None:
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024


def _peak_rss_mb() -> float:
    """Peak resident memory of this process since the last :func:`_reset_peak_rss` (or since it
    started, where the mark cannot be reset)."""
    kb = _status_kb("VmHWM")
    if kb is None:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024


def _reset_gpu_peak() -> None:
    import tensorflow as tf

    for i, _ in enumerate(_gpus()):
        with contextlib.suppress(Exception):
            tf.config.experimental.reset_memory_stats(f"GPU:{i}")


def _gpu_peak_mb() -> float | None:
    import tensorflow as tf

    if not _gpus():
        return None
    try:
        return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    except Exception:  # noqa: BLE001 - memory info is optional
        return None


# -------------------------------------------------------------------------------- matmul peak
def _cache_file() -> Path:
    if os.environ.get("ZOO_BENCH_CACHE"):
        return Path(os.environ["ZOO_BENCH_CACHE"]).expanduser() / "matmul_peak.json"
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "zoo" / "bench" / "matmul_peak.json"


def _machine_key(size: int) -> str:
    import tensorflow as tf

    from zoo import runtime

    return "|".join([platform.node(), runtime.cpu_name(), f"{os.cpu_count()} cores", _device_name(),
                     f"tf {tf.__version__}", f"onednn {onednn_enabled()}", f"n {size}"])


def measure_matmul_peak(size: int = 4096, repeats: int = 5, *, refresh: bool = False,
                        cache: bool = True) -> dict[str, Any]:
    """This machine's fp32 matmul throughput: the best of ``repeats`` timed
    ``tf.linalg.matmul`` of two ``size``×``size`` float32 matrices (``2·size³`` FLOPs), after one
    untimed call. Cached per machine (host, CPU, cores, device, TensorFlow, oneDNN, size) in
    ``$ZOO_BENCH_CACHE`` or ``~/.cache/zoo/bench/matmul_peak.json``; ``refresh`` measures again.
    Measure on an idle machine: a contended figure would be cached. On a GPU TensorFlow may use
    TF32 for float32 matmuls (its default on Ampere and newer), so the "fp32" peak is TF32's.

    Returns ``{"gflops", "size", "seconds", "date", "key", "cached"}``.
    """
    if size < 16 or repeats < 1:
        raise _error(f"measure_matmul_peak needs size >= 16 and repeats >= 1, got {size}, {repeats}.")
    import tensorflow as tf

    path, key = _cache_file(), _machine_key(size)
    stored: dict[str, Any] = {}
    if cache and path.is_file():
        with contextlib.suppress(OSError, ValueError):
            stored = json.loads(path.read_text())
        if not refresh and key in stored:
            return {**stored[key], "cached": True}
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
    record = {"gflops": 2 * size**3 / best / 1e9, "size": size, "seconds": best,
              "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "key": key}
    if cache:
        from zoo import report as zreport

        stored[key] = record
        with contextlib.suppress(OSError):
            zreport.write_text(path, json.dumps(stored, indent=2) + "\n")
    return {**record, "cached": False}


# ---------------------------------------------------------------------------------- runners
def _resolve_precision(precision: str) -> str:
    """``fp32``/``mixed``/... → a Keras dtype policy name (``mixed`` picks the device's)."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise _error(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
    if precision == "fp32":
        return "float32"
    if precision == "mixed":
        return "mixed_float16" if _gpus() else "mixed_bfloat16"
    return precision


def _parse_jit(value: Any) -> bool | str:
    if isinstance(value, bool) or value == "auto":
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    if text == "auto":
        return "auto"
    raise _error(f"jit_compile must be true, false or auto, got {value!r}.")


@contextlib.contextmanager
def _dtype_policy(policy: str) -> Iterator[None]:
    import keras

    before = keras.config.dtype_policy().name
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


class _KerasRunner:
    """One compiled Keras step (``train_on_batch`` / ``predict_on_batch``, the functions
    ``model.fit``/``predict`` run) on a fixed synthetic batch held in memory."""

    impl = "keras"

    def __init__(self, model_fn: Callable[[], Any], *, mode: str, batch_size: int, policy: str,
                 jit_compile: bool | str, seed: int, label: str, from_logits: bool = True):
        import keras
        import tensorflow as tf

        self.mode, self.batch_size, self.policy, self.label = mode, batch_size, policy, label
        with _dtype_policy(policy):
            self.model = model_fn()
        shape = tuple(self.model.input.shape[1:])
        if any(d is None for d in shape):
            raise _error(f"benchmarks need a fixed input size; {self.model.name} takes {shape} (pass input_shape).")
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
        try:
            from zoo.flops import count_flops

            self.flops: int | None = int(count_flops(self.model))
        except Exception:  # noqa: BLE001 - models with layers the counter does not know
            self.flops = None
        self.input_shape = shape

    def step(self) -> None:
        if self.mode == "train":
            self.model.train_on_batch(self.x, self.y)  # returns NumPy logs: the step has finished
        else:
            self.model.predict_on_batch(self.x)

    def measure(self, steps: int) -> list[float]:
        return time_steps(self.step, steps)


def _check_common(mode: str, batch_size: Any, steps: Any, warmup: Any) -> None:
    if mode not in MODES:
        raise _error(f"mode must be one of {', '.join(MODES)}, got {mode!r}.")
    for label, value, low in (("batch_size", batch_size, 1), ("steps", steps, 1), ("warmup", warmup, 0)):
        if value is None and label == "batch_size":
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise _error(f"{label} must be an integer >= {low}, got {value!r}.")


def _default_batch(input_shape: Sequence[int | None]) -> int:
    side = max((d for d in input_shape[:2] if d), default=32)
    return 128 if side <= 64 else 32


def _make_runner(spec: Mapping[str, Any]):
    """Build a runner from a JSON-able spec: ``impl`` (``zoo``, ``keras_app`` or ``torch``),
    ``name``, ``options``, ``mode``, ``batch_size``, ``precision``, ``jit_compile``, ``seed``."""
    impl, name, options = spec.get("impl", "zoo"), spec["name"], dict(spec.get("options") or {})
    mode, precision, seed = spec.get("mode", "train"), spec.get("precision", "fp32"), int(spec.get("seed", 0))
    batch = spec.get("batch_size")
    if impl == "torch":
        from zoo.bench.peers.torch_resnet import BUILDERS, TorchRunner

        if batch is None:
            batch = _default_batch(BUILDERS[name][1][1:]) if name in BUILDERS else 128
        runner = TorchRunner(name, mode, batch, _torch_precision(precision), seed=seed, **options)
        runner.flops = None
        runner.jit_compile = False
        runner.policy = runner.precision
        return runner
    policy = _resolve_precision(precision)
    jit = _parse_jit(spec.get("jit_compile", False))
    if impl == "keras_app":
        import keras

        cls = getattr(keras.applications, name, None)
        if cls is None:
            raise _error(f"keras.applications has no {name!r}.")
        kwargs = {"weights": None, "classifier_activation": None, **options}
        shape = kwargs.get("input_shape") or (224, 224, 3)
        return _KerasRunner(lambda: cls(**kwargs), mode=mode, batch_size=batch or _default_batch(shape),
                            policy=policy, jit_compile=jit, seed=seed, label=f"keras.applications.{name}")
    from zoo.models import registry

    entry = registry.get_entry(name)
    registry.resolve_plan(name, **options)  # validates the build options before anything is built
    shape = tuple(options.get("input_shape") or entry.input_shape)
    logits = options.get("classifier_activation") in (None, "linear")
    label = f"zoo {entry.name}" + (f" {json.dumps(options, sort_keys=True)}" if options else "")
    return _KerasRunner(lambda: registry.build(name, **options), mode=mode, batch_size=batch or _default_batch(shape),
                        policy=policy, jit_compile=jit, seed=seed, label=label, from_logits=logits)


def _torch_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise _error(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
    return "float32" if precision == "fp32" else precision


# ------------------------------------------------------------------------------------ bench
def _stats(times: Sequence[float], batch_size: int) -> dict[str, Any]:
    import numpy as np

    arr = np.asarray(times, dtype=float)
    median = float(np.median(arr))
    return {"samples_per_sec": batch_size / median, "samples_per_sec_mean": batch_size * len(arr) / float(arr.sum()),
            "step_ms_median": 1e3 * median, "step_ms_p90": 1e3 * float(np.percentile(arr, 90)),
            "step_ms_min": 1e3 * float(arr.min()), "step_ms_max": 1e3 * float(arr.max())}


def _flops_fields(macs: int | None, mode: str, samples_per_sec: float, peak: float | None) -> dict[str, Any]:
    per_sample = None if macs is None else (6 if mode == "train" else 2) * macs
    achieved = None if per_sample is None else per_sample * samples_per_sec / 1e9
    return {"flops": macs, "flops_per_sample": per_sample, "achieved_gflops": achieved, "peak_gflops": peak,
            "peak_fraction": None if achieved is None or not peak else achieved / peak}


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
    ``peak_gflops``: ``None`` uses :func:`measure_matmul_peak` (cached), a number uses it,
    ``False`` skips the peak fraction.

    Returns a flat-ish dict: ``train_samples_per_sec`` or ``infer_samples_per_sec`` (also as
    ``samples_per_sec``), ``step_ms_median``/``step_ms_p90``, ``peak_rss_mb``, ``params``,
    ``flops`` (MACs per sample, forward), ``flops_per_sample`` (see the module docstring),
    ``achieved_gflops``, ``peak_fraction``, the settings, ``step_times_ms`` and ``environment``.
    Write it down with :func:`append_csv`. Raises ``ZooError`` for an unknown model, mode or
    precision, a batch size below 1 or bad build options — before building anything.
    """
    from zoo.models import registry

    _check_common(mode, batch_size, steps, warmup)
    _resolve_precision(precision)
    jit = _parse_jit(jit_compile)
    registry.get_entry(name)
    peak = _peak_value(peak_gflops)
    _reset_peak_rss()
    _reset_gpu_peak()
    rss_before = _rss_mb()
    spec = {"impl": "zoo", "name": name, "options": build_options, "mode": mode, "batch_size": batch_size,
            "precision": precision, "jit_compile": jit, "seed": seed}
    runner = _make_runner(spec)
    warm_start = time.perf_counter()
    runner.measure(warmup)
    warmup_s = time.perf_counter() - warm_start
    times = runner.measure(steps)
    return _result(spec, runner, times, warmup, warmup_s, peak, rss_before)


def _peak_value(peak_gflops: float | bool | None) -> float | None:
    if peak_gflops is False:
        return None
    if peak_gflops is None or peak_gflops is True:
        return measure_matmul_peak()["gflops"]
    return float(peak_gflops)


def _result(spec: Mapping[str, Any], runner: Any, times: Sequence[float], warmup: int, warmup_s: float,
            peak: float | None, rss_before: float | None) -> dict[str, Any]:
    mode, batch = spec["mode"], runner.batch_size
    stats = _stats(times, batch)
    return {
        "name": spec["name"], "impl": spec.get("impl", "zoo"), "label": runner.label, "mode": mode,
        f"{mode}_samples_per_sec": stats["samples_per_sec"], **stats,
        "batch_size": batch, "precision": spec.get("precision", "fp32"), "dtype_policy": runner.policy,
        "jit_compile": runner.jit_compile, "steps": len(times), "warmup": warmup, "warmup_s": warmup_s,
        "build_options": dict(spec.get("options") or {}), "input_shape": list(getattr(runner, "input_shape", ())),
        "params": runner.params, **_flops_fields(runner.flops, mode, stats["samples_per_sec"], peak),
        "flops_convention": FLOPS_CONVENTION, "peak_rss_mb": _peak_rss_mb(), "rss_before_mb": rss_before,
        "peak_gpu_mb": _gpu_peak_mb() if runner.impl != "torch" else None,
        "step_times_ms": [1e3 * t for t in times], "environment": _environment(),
    }


# -------------------------------------------------------------------------------------- CSV
CSV_COLUMNS = (
    "date", "name", "impl", "mode", "samples_per_sec", "samples_per_sec_mean", "step_ms_median", "step_ms_p90",
    "batch_size", "precision", "dtype_policy", "jit_compile", "steps", "warmup", "build_options", "params", "flops",
    "flops_per_sample", "achieved_gflops", "peak_gflops", "peak_fraction", "peak_rss_mb", "peak_gpu_mb",
    "machine", "cpu", "cores", "device", "python", "tensorflow", "keras", "numpy", "onednn",
    "intra_op_threads", "inter_op_threads", "git_commit",
)


def default_csv(name: str) -> Path:
    """``results/benchmarks/<name>.csv`` (relative to the working directory, like ``runs/``)."""
    return RESULTS_DIR / f"{name}.csv"


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else ""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True)
    return "" if value is None else value


def _flat_row(result: Mapping[str, Any]) -> dict[str, Any]:
    row = {k: v for k, v in result.items() if k not in ("environment", "step_times_ms", "flops_convention")}
    for key, value in (result.get("environment") or {}).items():
        row.setdefault(key, value)  # a worker's own setting (e.g. onednn) wins over the parent's
    return row


def append_csv(result: Mapping[str, Any] | Sequence[Mapping[str, Any]], path: str | Path | None = None) -> Path:
    """Append one result (or several) of :func:`bench`/:func:`sweep`/:func:`bench_peers` to
    ``path`` (default :func:`default_csv` of the result's name). A file with other columns is
    rewritten with the union of the columns (old rows keep empty cells), atomically."""
    from zoo import report as zreport

    rows = [_flat_row(result)] if isinstance(result, Mapping) else [_flat_row(r) for r in result]
    if not rows:
        raise _error("append_csv got no results to write.")
    path = Path(path) if path is not None else default_csv(str(rows[0]["name"]))
    old_rows, columns = [], [c for c in CSV_COLUMNS if any(c in r for r in rows)]
    if path.is_file() and path.stat().st_size:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            old_rows, old_columns = list(reader), list(reader.fieldnames or [])
        columns = old_columns + [c for c in columns if c not in old_columns]
    for r in rows:
        columns += [k for k in r if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(old_rows)
    writer.writerows({k: _cell(v) for k, v in r.items()} for r in rows)
    zreport.write_text(path, buf.getvalue())
    return path


# ------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Settings:
    """The training loop's settings for one device, and the measurements behind them."""

    device: str  # "cpu" or "gpu"
    jit_compile: bool
    precision: str  # Keras dtype policy
    onednn: bool | None  # CPU only: TF_ENABLE_ONEDNN_OPTS (must be set before TensorFlow is imported)
    data_format: str
    steps_per_execution: int = 1
    evidence: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> str:
        parts = [f"jit_compile={self.jit_compile}", self.precision, self.data_format]
        if self.onednn is not None:
            parts.append(f"oneDNN {'on' if self.onednn else 'off'}")
        return f"{self.device}: " + ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# Measured on the project's 2-core x86-64 CPU (TensorFlow 2.21, Keras 3.15), ResNet-20 train step at
# batch 128; re-measure with `zoo bench --sweep` (on an idle machine).
CPU_EVIDENCE = (
    "ResNet-20 train step, batch 128, 2-core AMD EPYC, TF 2.21 / Keras 3.15, fused BatchNorm, idle CPU, "
    "3 interleaved rounds (results/benchmarks/sweep-resnet20.csv, 2026-11-23): jit_compile=False 1010 img/s, "
    "True 448 (XLA 2.3x slower), 'auto' 1006",
    "mixed_bfloat16 1179 img/s (1.17x float32) in the same sweep, but not the default: bfloat16 keeps "
    "8 bits of mantissa and no budget recipe has been validated with it (train.precision=mixed_bfloat16 "
    "opts in; with Keras' unfused BatchNorm it was slower, 334 vs 478 img/s)",
    "oneDNN off (TF_ENABLE_ONEDNN_OPTS=0): 365 img/s vs 1010 on; inter_op=1: 967; batch 64 / 256: 1005 / 995",
    "channels_last is the only layout TensorFlow's CPU convolutions train in",
)
GPU_EVIDENCE = (
    "not measured on this project's machines (no GPU was lent when this was written): the standard "
    "choice for NVIDIA GPUs of compute capability >= 7.0 (tensor cores): mixed_float16 with loss scaling "
    "(Keras wraps the optimizer in a LossScaleOptimizer) and XLA fusion; confirm with `zoo bench --sweep` "
    "on the GPU machine",
)


def choose_settings(device: str | None = None) -> Settings:
    """The fastest correct training settings for ``device`` (``"cpu"``, ``"gpu"``, or ``None``
    for this machine's): on CPU ``jit_compile=False``, float32, oneDNN on, channels-last (see
    :data:`CPU_EVIDENCE`); on GPU mixed_float16 and XLA (see :data:`GPU_EVIDENCE`).
    ``zoo bench --sweep`` measures the alternatives again."""
    device = (device or _device_kind()).lower()
    if device not in ("cpu", "gpu"):
        raise _error(f"device must be 'cpu' or 'gpu', got {device!r}.")
    if device == "gpu":
        return Settings("gpu", jit_compile=True, precision="mixed_float16", onednn=None,
                        data_format="channels_last", evidence=GPU_EVIDENCE)
    notes = ()
    if not onednn_enabled():
        notes = ("TF_ENABLE_ONEDNN_OPTS turns oneDNN off in this process: training is ~2.5x slower; "
                 "unset it (it is read when TensorFlow is imported)",)
    return Settings("cpu", jit_compile=False, precision="float32", onednn=True, data_format="channels_last",
                    evidence=CPU_EVIDENCE, notes=notes)


def apply_training_settings(recipe: Any = None, device: str | None = None, *, verbose: bool = True) -> Settings:
    """The hook ``zoo train`` calls before building its model: picks :func:`choose_settings`,
    sets the Keras dtype policy (the recipe's ``train.precision`` unless ``auto``) and image data
    format, and prints what it chose. The recipe's ``train.jit_compile`` stays in charge of XLA (a recipe is the record of an experiment); when it
    differs from the device's fastest choice this says so, with the override to pass.

    Returns the settings in effect (``jit_compile`` as the recipe has it)."""
    import keras

    chosen = choose_settings(device)
    train = getattr(recipe, "train", None)
    precision = getattr(train, "precision", "auto")
    precision = chosen.precision if precision == "auto" else precision
    keras.config.set_dtype_policy(precision)
    keras.config.set_image_data_format(chosen.data_format)
    jit = getattr(train, "jit_compile", chosen.jit_compile)
    notes = list(chosen.notes)
    if jit != chosen.jit_compile:
        notes.append(f"the recipe sets train.jit_compile={jit}; on {chosen.device} the fastest is "
                     f"{chosen.jit_compile} (override: train.jit_compile={str(chosen.jit_compile).lower()})")
    if precision != chosen.precision:
        notes.append(f"the recipe sets train.precision={precision}; on {chosen.device} the default is "
                     f"{chosen.precision} (override: train.precision=auto)")
    effective = Settings(chosen.device, bool(jit), precision, chosen.onednn, chosen.data_format,
                         chosen.steps_per_execution, chosen.evidence, tuple(notes))
    if verbose:
        print(f"zoo.train: settings for {effective.describe()} ({chosen.evidence[0]})", flush=True)
        for note in notes:
            print(f"zoo.train: note: {note}", flush=True)
    return effective


# ---------------------------------------------------------------------------- worker processes
def _emit(payload: Mapping[str, Any]) -> None:
    sys.__stdout__.write(_PREFIX + json.dumps(payload) + "\n")
    sys.__stdout__.flush()


def _worker_main(spec_text: str) -> int:
    """``python -m zoo.bench.core --worker SPEC``: build one runner, warm it up, then answer
    ``measure STEPS REWARM`` lines on stdin with step times until ``quit``."""
    try:
        spec = json.loads(spec_text)
        _reset_peak_rss()
        rss_before = _rss_mb()
        runner = _make_runner(spec)
        start = time.perf_counter()
        runner.measure(int(spec.get("warmup", 2)))
        warmup_s = time.perf_counter() - start
        versions = dict(getattr(runner, "versions", {}))
        if "tensorflow" in sys.modules:
            import tensorflow as tf

            versions.update(intra_op_threads=tf.config.threading.get_intra_op_parallelism_threads(),
                            inter_op_threads=tf.config.threading.get_inter_op_parallelism_threads())
        _emit({"event": "ready", "label": runner.label, "params": runner.params, "flops": runner.flops,
               "batch_size": runner.batch_size, "policy": runner.policy, "jit_compile": runner.jit_compile,
               "warmup_s": warmup_s, "rss_before_mb": rss_before, "peak_rss_mb": _peak_rss_mb(),
               "onednn": onednn_enabled(), **versions})
    except Exception as err:  # noqa: BLE001 - reported to the parent, which raises
        _emit({"event": "error", "error": f"{type(err).__name__}: {err}"})
        return 1
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        if words[0] == "measure":
            steps, rewarm = int(words[1]), int(words[2]) if len(words) > 2 else 1
            runner.measure(rewarm)
            times = runner.measure(steps)
            _emit({"event": "measured", "times": times, "peak_rss_mb": _peak_rss_mb()})
    return 0


class _Worker:
    """A benchmark runner in its own process (isolated: its own threads, dtype policy, XLA and
    oneDNN settings, and memory high-water mark)."""

    def __init__(self, spec: Mapping[str, Any], env: Mapping[str, str] | None = None, timeout: float = 900):
        self.spec, self.timeout = dict(spec), timeout
        full_env = {**os.environ, **(env or {})}
        full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), full_env.get("PYTHONPATH")) if p)
        full_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.stderr = tempfile.TemporaryFile()
        self._buffer = b""
        self.proc = subprocess.Popen([sys.executable, "-m", "zoo.bench.core", "--worker", json.dumps(self.spec)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                     env=full_env)
        self.info = self._read("ready")

    def _stderr_tail(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-2000:]

    def _read(self, event: str) -> dict[str, Any]:
        """The next protocol message ``event``; other output of the worker is skipped. Reads the
        pipe unbuffered (a buffered reader could hold a complete line that select() never sees)."""
        deadline = time.monotonic() + self.timeout
        fd = self.proc.stdout.fileno()
        while True:
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                ready = select.select([fd], [], [], max(left, 0))[0] if left > 0 else []
                if not ready:
                    self.close(kill=True)
                    raise TimeoutError(f"benchmark worker {self.spec.get('name')} ({self.spec.get('impl')}) "
                                       f"gave no {event!r} within {self.timeout:.0f} s")
                chunk = os.read(fd, 65536)
                if not chunk:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.proc.wait(10)
                    raise RuntimeError(f"benchmark worker {self.spec.get('name')} ({self.spec.get('impl')}) "
                                       f"exited ({self.proc.returncode}):\n{self._stderr_tail()}")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\n", 1)
            line = raw.decode(errors="replace")
            if not line.startswith(_PREFIX):
                continue
            payload = json.loads(line[len(_PREFIX):])
            if payload.get("event") == "error":
                self.close(kill=True)
                raise _error(f"benchmark worker {self.spec.get('name')} ({self.spec.get('impl')}) "
                             f"failed: {payload['error']}")
            if payload.get("event") == event:
                return payload

    def measure(self, steps: int, rewarm: int = 1) -> dict[str, Any]:
        self.proc.stdin.write(f"measure {steps} {rewarm}\n".encode())
        self.proc.stdin.flush()
        return self._read("measured")

    def close(self, kill: bool = False) -> None:
        if self.proc.poll() is None:
            if not kill:
                with contextlib.suppress(OSError, ValueError):
                    self.proc.stdin.write(b"quit\n")
                    self.proc.stdin.flush()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(30)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
        self.stderr.close()


def _mem_available_mb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) / 1024
    except OSError:
        pass
    return None


@dataclass
class _Entry:
    key: str
    spec: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    times: list[list[float]] = field(default_factory=list)
    peak_rss_mb: float = 0.0


def _interleave(entries: Sequence[_Entry], repeats: int, steps: int, *, log: Callable[[str], None],
                timeout: float) -> None:
    """Measure every entry ``repeats`` times, round-robin (the order rotates every round), each
    in its own process. Processes stay alive across rounds when they fit in memory together;
    otherwise each round starts them afresh (and one runs at a time)."""
    workers: dict[str, _Worker] = {}
    keep_alive, biggest = True, 0.0
    try:
        for r in range(repeats):
            order = list(entries[r % len(entries):]) + list(entries[:r % len(entries)])
            for e in order:
                w = workers.get(e.key)
                if w is None:
                    before = _mem_available_mb()
                    if keep_alive and workers and before is not None and before < 1.3 * biggest:
                        log(f"  (only {before:.0f} MB free: one process at a time from here)")
                        keep_alive = False
                        for other in list(workers):
                            workers.pop(other).close()
                    first = not workers
                    w = _Worker(e.spec, e.env, timeout)
                    biggest = max(biggest, w.info.get("peak_rss_mb", 0))
                    e.info = w.info
                    if keep_alive and first and r == 0 and before is not None:
                        need = w.info.get("peak_rss_mb", 0) * len(entries)
                        keep_alive = need < 0.8 * before
                        if not keep_alive:
                            log(f"  (~{need:.0f} MB for {len(entries)} processes > 80% of {before:.0f} MB free: "
                                "one process at a time)")
                            for other in list(workers):
                                workers.pop(other).close()
                out = w.measure(steps)
                e.times.append(out["times"])
                e.peak_rss_mb = max(e.peak_rss_mb, out["peak_rss_mb"])
                med = sorted(out["times"])[len(out["times"]) // 2]
                log(f"  round {r + 1}/{repeats} {e.key:<34} {w.info['batch_size'] / med:8.1f} samples/s")
                if keep_alive:
                    workers[e.key] = w
                else:
                    w.close()
    finally:
        for w in workers.values():
            w.close()


def _summarise(e: _Entry, mode: str, peak: float | None) -> dict[str, Any]:
    import numpy as np

    batch = e.info["batch_size"]
    per_round = [batch / float(np.median(t)) for t in e.times]
    stats = _stats([x for t in e.times for x in t], batch)
    stats["samples_per_sec"] = float(np.median(per_round))  # median of the rounds' medians
    return {
        "key": e.key, "name": e.spec["name"], "impl": e.spec.get("impl", "zoo"), "label": e.info.get("label"),
        "mode": mode, **stats, f"{mode}_samples_per_sec": stats["samples_per_sec"],
        "samples_per_sec_rounds": [round(v, 2) for v in per_round],
        "spread": (max(per_round) - min(per_round)) / stats["samples_per_sec"] if per_round else None,
        "batch_size": batch, "precision": e.spec.get("precision", "fp32"), "dtype_policy": e.info.get("policy"),
        "jit_compile": e.info.get("jit_compile"), "onednn": e.info.get("onednn"),
        "steps": len(e.times[0]) if e.times else 0, "repeats": len(e.times),
        "build_options": e.spec.get("options") or {}, "params": e.info.get("params"),
        **_flops_fields(e.info.get("flops"), mode, stats["samples_per_sec"], peak),
        "peak_rss_mb": e.peak_rss_mb, "torch": e.info.get("torch"), "torch_threads": e.info.get("torch_threads"),
        "thread_env": {k: v for k, v in e.env.items() if "THREADS" in k} or None,
    }


def _thread_env(threads: int | None) -> dict[str, str]:
    """Environment that limits a worker to ``threads`` compute threads (TensorFlow intra-op and,
    for one thread, inter-op; PyTorch/OpenMP/MKL); empty for ``None`` (the frameworks' defaults)."""
    if threads is None:
        return {}
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise _error(f"threads must be an integer >= 1, got {threads!r}.")
    env = {"TF_NUM_INTRAOP_THREADS": str(threads), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if threads == 1:
        env["TF_NUM_INTEROP_THREADS"] = "1"
    return env


def _print(text: str) -> None:
    print(text, flush=True)


# ------------------------------------------------------------------------------------- sweep
def _sweep_configs(device: str, batch_size: int, batch_sizes: Sequence[int],
                   threads: int | None = None) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    """``(label, spec changes, environment)`` of each configuration :func:`sweep` measures."""
    configs: list[tuple[str, dict[str, Any], dict[str, str]]] = []
    for jit in (False, True, "auto"):
        configs.append((f"float32 jit={jit} b{batch_size}", {"jit_compile": jit}, {}))
    if device == "gpu":
        configs.append((f"mixed_float16 jit=False b{batch_size}", {"precision": "mixed_float16"}, {}))
        configs.append((f"mixed_float16 jit=True b{batch_size}",
                        {"precision": "mixed_float16", "jit_compile": True}, {}))
    else:
        configs.append((f"mixed_bfloat16 jit=False b{batch_size}", {"precision": "mixed_bfloat16"}, {}))
        configs.append((f"float32 jit=False b{batch_size} oneDNN off", {}, {"TF_ENABLE_ONEDNN_OPTS": "0"}))
        if threads is None:
            configs.append((f"float32 jit=False b{batch_size} inter_op=1", {}, {"TF_NUM_INTEROP_THREADS": "1"}))
    for b in dict.fromkeys(batch_sizes):
        if b != batch_size:
            configs.append((f"float32 jit=False b{b}", {"batch_size": b}, {}))
    return configs


def sweep(name: str = "resnet20", batch_sizes: Sequence[int] = (64, 128, 256), *, batch_size: int = 128,
          steps: int = 15, warmup: int = 3, repeats: int = 3, mode: str = "train", csv_path: str | Path | None = None,
          record: bool = True, log: Callable[[str], None] = _print, timeout: float = 900, threads: int | None = None,
          **build_options: Any) -> list[dict[str, Any]]:
    """Measure the training-loop alternatives for ``name`` so :func:`choose_settings` stays
    documented by measurement: jit_compile False/True/auto, mixed precision (bfloat16 on CPU,
    float16 and float16 + XLA on GPU), oneDNN off and one inter-op thread (CPU), and
    ``batch_sizes`` — each in its own process, ``repeats`` interleaved rounds of ``steps`` timed
    steps after ``warmup``. ``threads`` limits every process to that many compute threads.

    Returns one row per configuration (``samples_per_sec`` is the median of the rounds' medians,
    ``vs_default`` the ratio to :func:`choose_settings`' configuration, ``fastest`` marks the
    best); with ``record`` appends them to ``results/benchmarks/sweep-<name>.csv`` (or
    ``csv_path``)."""
    from zoo.models import registry

    _check_common(mode, batch_size, steps, warmup)
    if repeats < 1:
        raise _error(f"repeats must be >= 1, got {repeats}.")
    registry.get_entry(name)
    registry.resolve_plan(name, **build_options)
    limit = _thread_env(threads)
    for b in batch_sizes:
        _check_common(mode, b, steps, warmup)
    device = _device_kind()
    chosen = choose_settings(device)
    base = {"impl": "zoo", "name": name, "options": build_options, "mode": mode, "batch_size": batch_size,
            "warmup": warmup, "precision": "fp32", "jit_compile": False}
    default_key = f"{chosen.precision} jit={chosen.jit_compile} b{batch_size}"
    entries = [_Entry(key, {**base, **over}, {**limit, **env})
               for key, over, env in _sweep_configs(device, batch_size, batch_sizes, threads)]
    log(f"zoo bench --sweep {name}: {len(entries)} configurations x {repeats} rounds x {steps} steps "
        f"on {_device_name()}")
    _interleave(entries, repeats, steps, log=log, timeout=timeout)
    peak = measure_matmul_peak()["gflops"]
    rows = [_summarise(e, mode, peak) for e in entries]
    ref = next((r for r in rows if r["key"] == default_key), rows[0])
    best = max(rows, key=lambda r: r["samples_per_sec"])
    env = _environment()
    for r in rows:
        r.update(config=r.pop("key"), vs_default=r["samples_per_sec"] / ref["samples_per_sec"],
                 default=r is ref, fastest=r is best, name=f"sweep-{name}", model=name, environment=env)
    log(_table(rows, ("config", "samples_per_sec", "step_ms_median", "step_ms_p90", "vs_default", "peak_rss_mb"),
               f"sweep of {name} ({mode}); default = choose_settings('{device}'): {chosen.describe()}"))
    if best is not ref:
        log(f"note: the fastest here is '{best['config']}' ({best['vs_default']:.2f}x the default); "
            "re-run on an idle machine before changing choose_settings().")
    if record:
        log(f"appended to {append_csv(rows, csv_path or default_csv(f'sweep-{name}'))}")
    return rows


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], title: str) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
        return "" if v is None else str(v)

    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = [title, "  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- peers
PEER_GROUPS = {
    "resnet20": [
        ("zoo resnet20", {"impl": "zoo", "name": "resnet20"}),
        ("torch resnet20 channels-last", {"impl": "torch", "name": "resnet20"}),
    ],
    "resnet50": [
        ("zoo resnet50", {"impl": "zoo", "name": "resnet50"}),
        ("zoo resnet50 layout=keras", {"impl": "zoo", "name": "resnet50", "options": {"layout": "keras"}}),
        ("keras.applications.ResNet50", {"impl": "keras_app", "name": "ResNet50"}),
        ("torch resnet50 channels-last", {"impl": "torch", "name": "resnet50"}),
    ],
}
PEER_BATCH = {"resnet20": 128, "resnet50": 32}


def bench_peers(groups: Sequence[str] = ("resnet20", "resnet50"), *, mode: str = "train", precision: str = "fp32",
                steps: int = 10, warmup: int = 3, repeats: int = 3, batch_sizes: Mapping[str, int] | None = None,
                torch: bool = True, csv_path: str | Path | None = None, record: bool = True,
                log: Callable[[str], None] = _print, timeout: float = 1800,
                threads: int | None = None) -> list[dict[str, Any]]:
    """Our models against their peers, same batch, precision and steps, interleaved rounds:

    - ``resnet20`` (batch 128, 32×32): zoo vs PyTorch eager channels-last
      (:mod:`zoo.bench.peers.torch_resnet`, the same option-A network);
    - ``resnet50`` (batch 32, 224×224): zoo (torchvision layout), zoo ``layout="keras"``,
      ``keras.applications.ResNet50`` and PyTorch channels-last.

    ``torch=False`` leaves PyTorch out (it is an optional dependency). ``threads=1`` compares
    per-core efficiency (useful on a busy machine: PyTorch's OpenMP threads collapse when another
    process takes a core, TensorFlow's thread pool much less). Each row carries
    ``vs_zoo`` (its throughput over the group's zoo model's) and ``zoo_vs`` (the inverse); with
    ``record`` they are appended to ``results/benchmarks/peers.csv`` (or ``csv_path``)."""
    _check_common(mode, 1, steps, warmup)
    _resolve_precision(precision)
    unknown = [g for g in groups if g not in PEER_GROUPS]
    if unknown or not groups:
        raise _error(f"peer groups must be among {', '.join(PEER_GROUPS)}, got {list(groups)}.")
    if torch:
        try:
            import torch as _torch  # noqa: F401
        except ImportError:
            raise _error("PyTorch is not installed: pip install torch==2.13.0 (the CPU build), "
                         "or pass torch=False / --no-torch.") from None
    batches = {**PEER_BATCH, **(batch_sizes or {})}
    limit = _thread_env(threads)
    peak = measure_matmul_peak()["gflops"]
    env, rows = _environment(), []
    for group in groups:
        entries = [_Entry(key, {"options": {}, **spec, "mode": mode, "batch_size": batches[group], "warmup": warmup,
                                "precision": precision, "jit_compile": False}, dict(limit))
                   for key, spec in PEER_GROUPS[group] if torch or spec["impl"] != "torch"]
        log(f"zoo bench --peers {group}: {len(entries)} implementations x {repeats} rounds x {steps} steps, "
            f"batch {batches[group]}, {precision}" + (f", {threads} thread(s) each" if threads else ""))
        _interleave(entries, repeats, steps, log=log, timeout=timeout)
        group_rows = [_summarise(e, mode, peak) for e in entries]
        zoo_flops = group_rows[0]["flops"]
        ref = group_rows[0]["samples_per_sec"]
        for r in group_rows:
            if r["flops"] is None and zoo_flops is not None:  # the same network: the zoo model's count
                r.update(_flops_fields(zoo_flops, mode, r["samples_per_sec"], peak))
            r.update(group=group, impl_label=r.pop("key"), name="peers", model=r["name"], threads=threads,
                     vs_zoo=r["samples_per_sec"] / ref, zoo_vs=ref / r["samples_per_sec"], environment=env)
        log(_table(group_rows, ("impl_label", "samples_per_sec", "step_ms_median", "step_ms_p90", "spread",
                                "vs_zoo", "params", "peak_rss_mb"), f"peers: {group} ({mode}, {precision})"))
        rows += group_rows
    if record:
        log(f"appended to {append_csv(rows, csv_path or default_csv('peers'))}")
    return rows


# ---------------------------------------------------------------------------------- pipeline
def bench_pipeline(source: Any = "embedded", batch_size: int = 128, augment: Sequence[str] = ("crop_pad4", "flip"),
                   *, batches: int = 200, warmup: int | None = None, limit: int | None = None,
                   image_size: int | None = None, cache: bool = True, seed: int = 0, data_dir: str | None = None,
                   model_samples_per_sec: float | None = None) -> dict[str, Any]:
    """Images/s delivered by :func:`zoo.data.make_pipeline` for ``source`` (training mode:
    shuffle, seeded ``augment``, batching, float conversion, prefetch), repeated, iterated
    without a model. The first epoch (decoding, filling the cache) and ``warmup`` more batches
    are untimed; then ``batches`` batches are timed.

    ``model_samples_per_sec`` (e.g. :func:`bench` of resnet20) adds ``ratio_to_model`` — the
    pipeline must deliver several times what the model consumes, since in training both share
    the CPU."""
    import zoo.data as zdata
    from zoo.data.augment import check_augmentations

    _check_common("train", batch_size, batches, 0 if warmup is None else warmup)
    check_augmentations(augment)
    splits = zdata.load(source, split="train", validation=0, seed=seed, limit=limit, data_dir=data_dir)
    info = splits.info
    if info.num_train < batch_size:
        raise _error(f"{info.name} has {info.num_train} training images, fewer than one batch of {batch_size}.")
    ds = zdata.make_pipeline(splits.train, batch_size=batch_size, training=True, augment=tuple(augment),
                             image_size=image_size, seed=seed, cache=cache).repeat()
    per_epoch = info.num_train // batch_size
    warmup = per_epoch + 5 if warmup is None else warmup
    it = iter(ds)
    start = time.perf_counter()
    for _ in range(warmup):
        next(it)
    warmup_s = time.perf_counter() - start
    times = []
    for _ in range(batches):
        t0 = time.perf_counter()
        images, _labels = next(it)
        times.append(time.perf_counter() - t0)
    total = sum(times)
    shape = list(images.shape[1:])
    result = {
        "name": "pipeline", "source": info.name, "batch_size": batch_size, "augment": list(augment),
        "image_shape": shape, "cache": cache, "batches": batches, "warmup_batches": warmup, "warmup_s": warmup_s,
        "images_per_sec": batch_size * batches / total, "batch_ms_median": 1e3 * sorted(times)[len(times) // 2],
        "batch_ms_p90": 1e3 * sorted(times)[min(len(times) - 1, int(0.9 * len(times)))],
        "num_train": info.num_train, "tf_data_autotune": True, "environment": _environment(),
        "peak_rss_mb": _peak_rss_mb(),
    }
    if model_samples_per_sec:
        result["model_samples_per_sec"] = float(model_samples_per_sec)
        result["ratio_to_model"] = result["images_per_sec"] / float(model_samples_per_sec)
    return result


# ---------------------------------------------------------------------------------------- CLI
def _registry():
    from zoo.models import registry  # imported late: keeps `zoo bench --help` free of TensorFlow

    return registry


def add_bench_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``bench`` arguments, for ``python -m zoo.bench.core`` and the ``zoo bench`` command."""
    parser.add_argument("name", nargs="?", help="registered model (default resnet20 for --sweep)")
    parser.add_argument("--mode", default="train", choices=MODES)
    parser.add_argument("--batch-size", type=int, help="default 128 up to 64 px inputs, 32 above")
    parser.add_argument("--precision", default="fp32", help="fp32, mixed (bfloat16 on CPU, float16 on GPU), "
                        "mixed_bfloat16 or mixed_float16")
    parser.add_argument("--jit-compile", default="false", help="false, true or auto (model.compile's jit_compile)")
    parser.add_argument("--steps", type=int, help="timed steps (default 20; 15 for --sweep, 10 for --peers)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds for --sweep and --peers")
    parser.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                        help="build option, YAML value: -o layout=keras -o input_shape=[64,64,3]")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--csv", help="append to this CSV (default results/benchmarks/<name>.csv)")
    parser.add_argument("--no-csv", action="store_true", help="do not append the result to a CSV")
    parser.add_argument("--refresh-peak", action="store_true", help="measure the matmul peak again (idle machine!)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--sweep", action="store_true", help="measure jit/precision/oneDNN/batch-size alternatives")
    what.add_argument("--peers", action="store_true", help="resnet20 vs PyTorch, resnet50 vs keras.applications")
    what.add_argument("--pipeline", action="store_true", help="images/s of zoo.data.make_pipeline")
    what.add_argument("--settings", action="store_true", help="print choose_settings() for this machine")
    parser.add_argument("--batch-sizes", default="64,128,256", help="--sweep: batch sizes to compare")
    parser.add_argument("--groups", default="resnet20,resnet50", help="--peers: resnet20, resnet50 or both")
    parser.add_argument("--no-torch", action="store_true", help="--peers without PyTorch")
    parser.add_argument("--threads", type=int, help="--peers/--sweep: compute threads per process (default: all)")
    parser.add_argument("--source", default="embedded", help="--pipeline: dataset (default the embedded sample)")
    parser.add_argument("--augment", default="crop_pad4,flip", help="--pipeline: augmentations, comma-separated")
    parser.add_argument("--batches", type=int, default=200, help="--pipeline: timed batches")
    parser.add_argument("--limit", type=int, help="--pipeline: use this many images")
    parser.add_argument("--model", default="resnet20", help="--pipeline: model to compare with ('none' to skip)")
    return parser


def _say(args: argparse.Namespace, result: Any, text: str) -> None:
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(text)


def _model_line(r: Mapping[str, Any]) -> str:
    frac = r.get("peak_fraction")
    gf = r.get("achieved_gflops")
    flops = "" if gf is None else (f", {gf:.1f} GFLOP/s" + (f" = {100 * frac:.1f}% of the {r['peak_gflops']:.0f} "
                                                              "GFLOP/s fp32 matmul peak" if frac else ""))
    return (f"{r['label']} {r['mode']}: {r['samples_per_sec']:.1f} samples/s (batch {r['batch_size']}, "
            f"{r['dtype_policy']}, jit_compile={r['jit_compile']}); step {r['step_ms_median']:.1f} ms median, "
            f"{r['step_ms_p90']:.1f} ms p90; peak RSS {r['peak_rss_mb']:.0f} MB; {r['params']:,} params, "
            f"{(r['flops'] or 0) / 1e9:.3f} GMACs/sample{flops}")


def bench_from_args(args: argparse.Namespace) -> int:
    """Run the benchmark the arguments ask for; returns the exit status (1 for bad input)."""
    from zoo.errors import ZooError

    try:
        return _bench_from_args(args)
    except (ZooError, ValueError, FileNotFoundError) as err:
        print(f"zoo bench: error: {err}", file=sys.stderr)
        return 1


def _bench_from_args(args: argparse.Namespace) -> int:
    csv_path = None if args.no_csv else args.csv
    record = not args.no_csv
    if args.refresh_peak:
        peak = measure_matmul_peak(refresh=True)
        print(f"zoo bench: fp32 matmul peak {peak['gflops']:.1f} GFLOP/s (n={peak['size']}), cached")
    if args.settings:
        s = choose_settings()
        _say(args, s.as_dict(), f"{s.describe()}\n" + "\n".join(f"  - {e}" for e in s.evidence + s.notes))
        return 0
    if args.sweep:
        sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
        rows = sweep(args.name or "resnet20", sizes, batch_size=args.batch_size or 128, steps=args.steps or 15,
                     warmup=args.warmup, repeats=args.repeats, mode=args.mode, csv_path=csv_path, record=record,
                     log=(lambda s: None) if args.json else _print, threads=args.threads,
                     **_registry().parse_options(args.option))
        if args.json:
            print(json.dumps(rows, indent=2, default=str))
        return 0
    if args.peers:
        groups = [g.strip() for g in args.groups.split(",") if g.strip()]
        rows = bench_peers(groups, mode=args.mode, precision=args.precision, steps=args.steps or 10,
                           warmup=args.warmup, repeats=args.repeats, torch=not args.no_torch, csv_path=csv_path,
                           record=record, log=(lambda s: None) if args.json else _print, threads=args.threads)
        if args.json:
            print(json.dumps(rows, indent=2, default=str))
        return 0
    if args.pipeline:
        augment = [a for a in args.augment.split(",") if a]
        model_rate = None
        if args.model and args.model != "none":
            model_rate = bench(args.model, "train", steps=10, warmup=2, peak_gflops=False)["samples_per_sec"]
        result = bench_pipeline(args.source, args.batch_size or 128, augment, batches=args.batches, limit=args.limit,
                                model_samples_per_sec=model_rate)
        text = (f"pipeline {result['source']} batch {result['batch_size']} augment {','.join(augment) or 'none'}: "
                f"{result['images_per_sec']:.0f} images/s ({result['batch_ms_median']:.2f} ms/batch median)")
        if model_rate:
            ok = "ok" if result["ratio_to_model"] >= 5 else "BELOW the 5x target"
            text += f"; {result['ratio_to_model']:.1f}x {args.model}'s {model_rate:.0f} train samples/s ({ok})"
        if record:
            text += f"\nappended to {append_csv(result, csv_path or default_csv('pipeline'))}"
        _say(args, result, text)
        return 0
    if not args.name:
        raise _error("name a model (zoo bench resnet20), or use --sweep, --peers, --pipeline or --settings.")
    result = bench(args.name, args.mode, args.batch_size, args.precision, args.steps or 20, args.warmup,
                   jit_compile=_parse_jit(args.jit_compile), **_registry().parse_options(args.option))
    text = _model_line(result)
    if record:
        text += f"\nappended to {append_csv(result, csv_path)}"
    _say(args, result, text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m zoo.bench.core ...`` (see :func:`add_bench_arguments`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return _worker_main(argv[1])
    parser = add_bench_arguments(argparse.ArgumentParser(prog="python -m zoo.bench.core", description=__doc__,
                                                         formatter_class=argparse.RawDescriptionHelpFormatter))
    return bench_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
