"""The device policy: the training settings each machine gets, decided on the machine itself.

- **The machine** (:class:`Machine`, :func:`detect_machine`): CPU model, the instruction-set
  flags that matter to the choice of precision (:data:`RELEVANT_FLAGS`: AMX, AVX-512 BF16/FP16),
  cores, the GPU and its compute capability, TensorFlow/Keras/NumPy versions and oneDNN, with a
  stable :attr:`Machine.fingerprint`.
- **The static settings** (:func:`choose_settings`): XLA or not, oneDNN, image data format, by
  device kind (:data:`CPU_EVIDENCE`, :data:`GPU_EVIDENCE`), with float32 as the precision.
- **The precision** (:func:`resolve_policy`): ``train.precision: auto`` takes the decision cached
  for this machine, library versions and workload (model, input shape, batch size, build
  options) in :func:`policy_cache_file` (``$KERAS_HOME/zoo/device-policy.json``), else a short
  calibration (:mod:`zoo.training.calibration`: a few timed training steps of each candidate)
  decides and is cached. The rule is data: :data:`CANDIDATES` per device, :data:`HARDWARE` (a
  reduced precision is timed only where the hardware has native support for it), :data:`ACCURACY`
  (only precisions whose accuracy is validated are chosen) and :data:`MIN_SPEEDUP`.
- ``ZOO_DEVICE_POLICY`` (:data:`POLICY_MODES`): ``auto`` (default), ``static`` (float32 without
  calibration: tests and CI), ``all`` (also time the candidates the hardware lacks support for).

:func:`apply_training_settings` is the hook the fit path calls before it builds a model; the
decision and its evidence (each candidate's measured images/s, the machine, the date) are
printed and go into every report. No measured figure of any machine is written here: figures
come from the machine the code runs on. ``zoo bench --settings [--refresh]`` shows (re-measures)
the policy; ``zoo bench --sweep`` measures the static choices' alternatives.

Nothing here imports the benchmarks (:mod:`zoo.bench` imports this module, never the reverse).
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import keras

from zoo.errors import ZooError
from zoo.training import calibration
from zoo.training.calibration import Workload
from zoo.training import policy_cache
from zoo.training.policy_cache import policy_cache_file, read_cache as _read_cache, store as _store
from zoo.training.machine import (RELEVANT_FLAGS, Machine, cpu_flags, detect_machine, device_kind, device_name,  # noqa: F401
                                  gpus, onednn_enabled)

__all__ = [
    "ACCURACY", "CANDIDATES", "CPU_EVIDENCE", "DEVICES", "GPU_EVIDENCE", "HARDWARE", "MIN_SPEEDUP", "POLICY_ENV",
    "POLICY_MODES", "PRECISIONS", "RELEVANT_FLAGS", "Decision", "DeviceError", "Machine", "Settings",
    "apply_training_settings", "cached_decisions", "candidates", "choose_settings", "cpu_flags", "decide",
    "detect_machine", "device_kind", "device_name", "gpus", "onednn_enabled", "policy_cache_file", "policy_mode",
    "resolve_policy", "resolve_precision", "workload_of",
]

DEVICES = ("cpu", "gpu")
# user-facing precision names -> Keras dtype policy (None: the device's mixed policy)
PRECISIONS: dict[str, str | None] = {"fp32": "float32", "mixed": None, "mixed_bfloat16": "mixed_bfloat16",
                                     "mixed_float16": "mixed_float16"}
MIXED_POLICY = {"cpu": "mixed_bfloat16", "gpu": "mixed_float16"}
SWEEP_CSV = "results/benchmarks/sweep-resnet20.csv"

# ------------------------------------------------------------------------------ the rule, as data
REFERENCE = "float32"  # the precision every result is comparable in; chosen unless another wins
CANDIDATES = {"cpu": ("float32", "mixed_bfloat16"), "gpu": ("float32", "mixed_float16")}
# A reduced precision must train at least this many times as fast as float32 to be chosen: it
# changes the numbers a run produces (bfloat16 keeps 8 bits of mantissa) and makes its results
# harder to compare with float32 runs, and a few interleaved steps on a shared CPU cannot resolve
# a smaller gain from timing noise. Below it, float32 stays.
MIN_SPEEDUP = 1.15
# Precisions the policy may choose, and the evidence that training in them keeps the accuracy:
# results/runs/bf16-validation trains budget recipes in float32 and mixed_bfloat16 (two seeds each
# way, the same split) and finds them within the seed spread (its RUN.md names the recipes).
ACCURACY = {
    "float32": "the reference precision",
    "mixed_bfloat16": "validated in results/runs/bf16-validation",
    "mixed_float16": "loss-scaled mixed precision (Micikevicius et al. 2018); no zoo GPU run validates it yet",
}
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # native bfloat16 dot products
TENSOR_CORES = (7, 0)  # NVIDIA compute capability from which float16 matmuls run on tensor cores

POLICY_ENV = "ZOO_DEVICE_POLICY"
POLICY_MODES = {
    "auto": "the decision cached for this machine and workload, else calibrate and cache",
    "static": "float32 without calibration (tests, CI)",
    "all": "as auto, but also time the reduced precisions this hardware has no native support for",
}


class DeviceError(ZooError):
    """An unknown device, precision or device-policy mode."""


# ------------------------------------------------------------------------------ the machine: zoo.training.machine

def _native_bfloat16(machine: Machine) -> bool:
    return machine.has(BF16_FLAGS)


def _tensor_cores(machine: Machine) -> bool:
    return machine.gpu_compute is not None and tuple(machine.gpu_compute) >= TENSOR_CORES


# (device, precision) -> (does this machine run it natively?, what it needs); others need nothing
HARDWARE: dict[tuple[str, str], tuple[Callable[[Machine], bool], str]] = {
    ("cpu", "mixed_bfloat16"): (_native_bfloat16, "native bfloat16 instructions (avx512_bf16 or amx_bf16)"),
    ("gpu", "mixed_float16"): (_tensor_cores, "tensor cores (compute capability 7.0 or above)"),
}


def resolve_precision(precision: str, device: str | None = None) -> str:
    """``fp32``/``mixed``/``mixed_bfloat16``/``mixed_float16`` -> a Keras dtype policy name;
    ``mixed`` picks the device's (bfloat16 on CPU, float16 on GPU)."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise DeviceError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
    return PRECISIONS[precision] or MIXED_POLICY[_check_device(device or device_kind())]


def _check_device(device: str) -> str:
    device = str(device).lower()
    if device not in DEVICES:
        raise DeviceError(f"device must be 'cpu' or 'gpu', got {device!r}.")
    return device


# ------------------------------------------------------------------------------ the static settings
@dataclass(frozen=True)
class Settings:
    """The training loop's settings for one device, and the evidence behind them."""

    device: str  # "cpu" or "gpu"
    jit_compile: bool
    precision: str  # Keras dtype policy
    onednn: bool | None  # CPU only: TF_ENABLE_ONEDNN_OPTS (must be set before TensorFlow is imported)
    data_format: str
    steps_per_execution: int = 1
    evidence: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    policy: dict[str, Any] | None = None  # Decision.as_dict(): how the precision was chosen

    def describe(self) -> str:
        parts = [self.precision, f"jit_compile={self.jit_compile}", self.data_format]
        if self.onednn is not None:
            parts.append(f"oneDNN {'on' if self.onednn else 'off'}")
        return f"{self.device}: " + ", ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# Measured on another machine of this project; `zoo bench --sweep resnet20` measures them here.
CPU_EVIDENCE = (
    f"jit_compile=False: XLA trained the ResNet-20 step slower on the CPUs this project measured ({SWEEP_CSV}); "
    "the recipe's train.jit_compile decides",
    f"oneDNN on: TF_ENABLE_ONEDNN_OPTS=0 trained slower in the same sweep ({SWEEP_CSV})",
    "channels_last is the only layout TensorFlow's CPU convolutions train in",
)
GPU_EVIDENCE = (
    "jit_compile=True: XLA fusion, the standard choice on NVIDIA GPUs (no row in results/benchmarks/ comes from a "
    "GPU; `zoo bench --sweep` on the GPU machine measures it)",
)


def _cpu_settings() -> Settings:
    notes = ()
    if not onednn_enabled():
        notes = (f"TF_ENABLE_ONEDNN_OPTS turns oneDNN off in this process, which trained slower ({SWEEP_CSV}); "
                 "unset it (it is read when TensorFlow is imported)",)
    return Settings("cpu", jit_compile=False, precision=REFERENCE, onednn=True, data_format="channels_last",
                    evidence=CPU_EVIDENCE, notes=notes)


def _gpu_settings() -> Settings:
    return Settings("gpu", jit_compile=True, precision=REFERENCE, onednn=None, data_format="channels_last",
                    evidence=GPU_EVIDENCE)


POLICY = {"cpu": _cpu_settings, "gpu": _gpu_settings}  # device -> its static settings


def choose_settings(device: str | None = None) -> Settings:
    """The static training settings for ``device`` (``"cpu"``, ``"gpu"``, or ``None`` for this
    machine's): on CPU ``jit_compile=False``, oneDNN on, channels-last (:data:`CPU_EVIDENCE`); on
    GPU XLA (:data:`GPU_EVIDENCE`); float32 on both. The precision a run trains in is
    :func:`resolve_policy`'s (``train.precision: auto``)."""
    return POLICY[_check_device(device or device_kind())]()


# ------------------------------------------------------------------------------ the decision
def policy_mode(value: str | None = None) -> str:
    """``value``, else ``$ZOO_DEVICE_POLICY``, else ``auto``; refuses a mode not in :data:`POLICY_MODES`."""
    mode = (value if value is not None else os.environ.get(POLICY_ENV) or "auto").strip().lower()
    if mode not in POLICY_MODES:
        raise DeviceError(f"{POLICY_ENV} must be one of {', '.join(POLICY_MODES)}, got {mode!r} "
                          f"(static: float32 without calibration).")
    return mode


def candidates(machine: Machine, mode: str = "auto") -> tuple[list[str], dict[str, str]]:
    """``(timed, skipped)``: the :data:`CANDIDATES` of the machine's device kind that a
    calibration times, and why the others are not (:data:`HARDWARE`; mode ``all`` times them anyway)."""
    timed, skipped = [], {}
    for precision in CANDIDATES[machine.kind]:
        native, needs = HARDWARE.get((machine.kind, precision), (lambda _: True, ""))
        if native(machine) or mode == "all":
            timed.append(precision)
        else:
            skipped[precision] = f"not timed: this {machine.kind} lacks {needs} ({POLICY_ENV}=all times it anyway)"
    return timed, skipped


def decide(measured: Mapping[str, float], margin: float = MIN_SPEEDUP,
           validated: Mapping[str, str] | None = None) -> tuple[str, str]:
    """``(precision, reason)`` from each candidate's measured images/s: the fastest precision
    with validated accuracy (:data:`ACCURACY`) that trains at least ``margin`` times as fast as
    float32, else float32."""
    validated = ACCURACY if validated is None else validated
    reference = measured.get(REFERENCE)
    if not reference:
        return REFERENCE, "float32 is the only candidate timed"
    ranked = sorted(((rate / reference, p) for p, rate in measured.items() if p != REFERENCE), reverse=True)
    reasons = []
    for speedup, precision in ranked:
        if precision not in validated:
            reasons.append(f"{precision} is {speedup:.2f}x float32 but its accuracy is not validated")
        elif speedup >= margin:
            return precision, (f"{precision} trains {speedup:.2f}x as fast as float32 (margin {margin:.2f}x); "
                               f"accuracy: {validated[precision]}")
        else:
            reasons.append(f"{precision} is {speedup:.2f}x float32, under the {margin:.2f}x margin")
    return REFERENCE, "; ".join(reasons) or "float32 is the only candidate timed"


@dataclass(frozen=True)
class Decision:
    """The precision a run trains in and how it was chosen: ``source`` is ``recipe``
    (train.precision), ``static`` (no calibration), ``cached``, ``calibrated`` (just now) or
    ``fallback`` (the calibration could not run); ``record`` is the calibration behind it."""

    precision: str
    source: str
    record: dict[str, Any] | None = None
    notes: tuple[str, ...] = ()
    cache: str | None = None

    def evidence(self) -> str:
        """One line: the decision, its measurements and its reason."""
        if self.record is None:
            return {"recipe": f"{self.precision}: set by the recipe's train.precision (no calibration)",
                    "static": f"{self.precision}: {POLICY_ENV}=static (no calibration)"}.get(
                        self.source, f"{self.precision}: no calibration ({self.source})")
        r = self.record
        rates = ", ".join(f"{p} {v:.0f} img/s" for p, v in r["images_per_s"].items()) or "nothing timed"
        when = "calibrated now" if self.source == "calibrated" else f"cached, calibrated {r['date']}"
        return f"{self.precision} ({when} on {r['workload']}: {rates}): {r['reason']}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "evidence": self.evidence()}


def _cache_key(machine: Machine, workload: Workload, jit_compile: bool) -> str:
    return f"{machine.fingerprint} {workload.key} jit={jit_compile}"


def _load_average() -> float | None:
    """The one-minute load average while calibrating (a busy machine's figures are noisier)."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def _busy_note(record: Mapping[str, Any]) -> tuple[str, ...]:
    """A note when the calibration ran on a machine busier than its cores (its figures are noisy)."""
    load, cores = record.get("load_average"), record.get("machine", {}).get("cores") or 1
    if load is None or load <= cores:
        return ()
    return (f"the calibration ran at load average {load:.1f} on {cores} cores; its figures are noisy: "
            "`zoo bench --settings --refresh` on an idle machine measures again",)


def _calibrate(workload: Workload, machine: Machine, jit_compile: bool, mode: str,
               measure: Callable[..., Mapping[str, float]]) -> dict[str, Any]:
    timed, skipped = candidates(machine, mode)
    started = time.perf_counter()
    rates = {p: float(v) for p, v in measure(workload, timed, jit_compile).items()} if len(timed) > 1 else {}
    precision, reason = decide(rates)
    if skipped:
        reason += "; " + "; ".join(f"{p} {why}" for p, why in skipped.items())
    return {"precision": precision, "reason": reason, "images_per_s": rates, "skipped": skipped,
            "workload": workload.key, "workload_spec": workload.as_dict(), "jit_compile": jit_compile,
            "steps": calibration.STEPS, "warmup": calibration.WARMUP,
            "seconds": round(time.perf_counter() - started, 2),
            "load_average": _load_average(), "fingerprint": machine.fingerprint, "machine": machine.as_dict(),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def resolve_policy(workload: Workload | None = None, jit_compile: bool | None = None, *, refresh: bool = False,
                   machine: Machine | None = None, mode: str | None = None,
                   measure: Callable[..., Mapping[str, float]] | None = None,
                   log: Callable[[str], None] | None = None) -> Decision:
    """The precision ``train.precision: auto`` trains ``workload`` (default the representative
    :func:`~zoo.training.calibration.kernel_workload`) in on ``machine`` (default this one),
    with ``jit_compile`` (default the device's static choice): the cached decision, else (or
    with ``refresh``) a calibration by ``measure`` (default
    :func:`zoo.training.calibration.measure`), cached. ``mode`` (default ``$ZOO_DEVICE_POLICY``)
    ``static`` returns float32 without calibrating. A corrupt cache is calibrated over (with a
    note); an unwritable one keeps the decision for this process (with a warning, once); a
    calibration that fails falls back to float32 (with a note, not cached). ``log`` hears that
    a calibration starts."""
    mode = policy_mode(mode)
    if mode == "static":
        return Decision(REFERENCE, "static")
    machine = machine or detect_machine()
    workload = workload or calibration.kernel_workload()
    jit = choose_settings(machine.kind).jit_compile if jit_compile is None else bool(jit_compile)
    path, key = policy_cache_file(), _cache_key(machine, workload, jit)
    entries, note = _read_cache(path)
    notes = (note,) if note else ()
    record = None if refresh else entries.get(key) or policy_cache.kept(path, key)
    if record is not None:
        return Decision(record["precision"], "cached", record, (*notes, *_busy_note(record)),
                        str(path) if key in entries else None)
    if log:
        log(f"calibrating the device policy on {workload.key} ({', '.join(candidates(machine, mode)[0])}; "
            "a few seconds, once per machine, library versions and workload)")
    try:
        record = _calibrate(workload, machine, jit, mode, measure or calibration.measure)
    except Exception as err:  # noqa: BLE001 - the run itself reports a model that cannot train
        first = (str(err).splitlines() or [type(err).__name__])[0][:200]
        return Decision(REFERENCE, "fallback", None, (*notes, f"the calibration failed ({type(err).__name__}: "
                                                                f"{first}); training in float32"))
    stored = _store(path, key, record)
    return Decision(record["precision"], "calibrated", record, (*notes, *_busy_note(record)),
                    str(path) if stored else None)


def cached_decisions(machine: Machine | None = None) -> tuple[list[dict[str, Any]], int, str | None]:
    """``(this machine's cached calibrations, how many other machines' or versions', note)``."""
    fingerprint = (machine or detect_machine()).fingerprint
    entries, note = _read_cache(policy_cache_file())
    mine = [r for r in entries.values() if isinstance(r, dict) and r.get("fingerprint") == fingerprint]
    return mine, len(entries) - len(mine), note


def workload_of(recipe: Any) -> Workload:
    """The workload a recipe trains: its model, options, ``data.image_size`` and ``data.batch_size``."""
    return calibration.workload_for(recipe.model.name, recipe.data.batch_size, recipe.model.options,
                                    recipe.data.image_size)


# ------------------------------------------------------------------------------ the hook
def _precision_decision(recipe: Any, device: str, jit: bool, verbose: bool) -> Decision:
    train = getattr(recipe, "train", None)
    requested = getattr(train, "precision", "auto")
    if requested != "auto":
        return Decision(requested, "recipe")
    if policy_mode() != "static" and device != detect_machine().kind:
        return Decision(REFERENCE, "static", notes=(f"no calibration of a {device} on this "
                                                    f"{detect_machine().kind} machine: float32",))
    log = (lambda text: print(f"zoo.train: {text}", flush=True)) if verbose else None
    return resolve_policy(workload_of(recipe) if recipe is not None else None, jit, log=log)


def apply_training_settings(recipe: Any = None, device: str | None = None, *, verbose: bool = True) -> Settings:
    """The hook the fit path calls before seeding and building its model: takes
    :func:`choose_settings`, resolves ``train.precision: auto`` through :func:`resolve_policy`
    (on the recipe's model and batch; an explicit precision is used as it is), sets the Keras
    dtype policy and image data format, and prints the decision and its evidence. The recipe's
    ``train.jit_compile`` stays in charge of XLA (a recipe is the record of an experiment); when
    it differs from the device's choice this says so, with the override to pass.

    Returns the settings in effect; ``policy`` holds the decision and its calibration."""
    chosen = choose_settings(device)
    jit = bool(getattr(getattr(recipe, "train", None), "jit_compile", chosen.jit_compile))
    decision = _precision_decision(recipe, chosen.device, jit, verbose)
    keras.config.set_dtype_policy(decision.precision)
    keras.config.set_image_data_format(chosen.data_format)
    notes = [*chosen.notes, *decision.notes]
    if jit != chosen.jit_compile:
        notes.append(f"the recipe sets train.jit_compile={jit}; on {chosen.device} the default is "
                     f"{chosen.jit_compile} (override: train.jit_compile={str(chosen.jit_compile).lower()})")
    if decision.source == "recipe":
        notes.append(f"the recipe sets train.precision={decision.precision}; train.precision=auto lets the device "
                     "policy measure and choose")
    effective = dataclasses.replace(chosen, jit_compile=jit, precision=decision.precision,
                                    evidence=(decision.evidence(), *chosen.evidence), notes=tuple(notes),
                                    policy=decision.as_dict())
    if verbose:
        print(f"zoo.train: device policy: {effective.describe()}; {decision.evidence()}", flush=True)
        if decision.cache:
            print(f"zoo.train: decision cached in {decision.cache} (`zoo bench --settings --refresh` measures "
                  "again)", flush=True)
        for note in notes:
            print(f"zoo.train: note: {note}", flush=True)
    return effective
