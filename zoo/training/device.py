"""The device policy: the training settings each device gets, and the evidence behind them.

:func:`choose_settings` says what is fastest and correct on a device (XLA or not, dtype policy,
oneDNN, image data format); :func:`apply_training_settings` is the hook the fit path calls before
it builds a model. The evidence names the results file where each choice was measured
(``results/benchmarks/``, produced by ``zoo bench --sweep``; how: ``results/benchmarks/RUN.md``);
no figure of one machine is copied here. ``zoo bench --sweep`` measures the alternatives again.

Nothing here imports the benchmarks (:mod:`zoo.bench` imports this module, never the reverse).
"""
from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import keras
import tensorflow as tf

from zoo import runtime
from zoo.errors import ZooError

__all__ = [
    "CPU_EVIDENCE",
    "DEVICES",
    "GPU_EVIDENCE",
    "PRECISIONS",
    "DeviceError",
    "Settings",
    "apply_training_settings",
    "choose_settings",
    "device_kind",
    "device_name",
    "gpus",
    "onednn_enabled",
    "resolve_precision",
]

DEVICES = ("cpu", "gpu")
# user-facing precision names -> Keras dtype policy (None: the device's mixed policy)
PRECISIONS: dict[str, str | None] = {"fp32": "float32", "mixed": None, "mixed_bfloat16": "mixed_bfloat16",
                                     "mixed_float16": "mixed_float16"}
MIXED_POLICY = {"cpu": "mixed_bfloat16", "gpu": "mixed_float16"}
SWEEP_CSV = "results/benchmarks/sweep-resnet20.csv"
RUN_NOTES = "results/benchmarks/RUN.md"


class DeviceError(ZooError):
    """An unknown device or precision name."""


# ------------------------------------------------------------------------------ the machine
def onednn_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether TensorFlow's oneDNN (MKL) CPU kernels are on in a process with ``environ``
    (default this one's): ``TF_ENABLE_ONEDNN_OPTS`` if set, else TensorFlow's default (on for
    x86-64 Linux builds). TensorFlow reads the variable once, when it is imported."""
    flag = (os.environ if environ is None else environ).get("TF_ENABLE_ONEDNN_OPTS")
    if flag is not None:
        return flag.strip().lower() in ("1", "true", "yes", "on")
    return platform.machine().lower() in ("x86_64", "amd64")


def gpus() -> list[Any]:
    """TensorFlow's physical GPUs."""
    return tf.config.list_physical_devices("GPU")


def device_kind() -> str:
    """``"gpu"`` where TensorFlow sees a GPU, else ``"cpu"``."""
    return "gpu" if gpus() else "cpu"


def device_name() -> str:
    """``"2x NVIDIA ..."`` or ``"<CPU model> (N cores)"``, for result rows and logs."""
    found = gpus()
    if found:
        details = tf.config.experimental.get_device_details(found[0])
        return f"{len(found)}x {details.get('device_name', 'GPU')}"
    return f"{runtime.cpu_name()} ({os.cpu_count()} cores)"


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


# ------------------------------------------------------------------------------ the policy
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


# Each line names the file that holds the measurement; re-measure with `zoo bench --sweep resnet20`.
CPU_EVIDENCE = (
    f"jit_compile=False: XLA (True) trains the ResNet-20 step slower on CPU and 'auto' is no faster "
    f"({SWEEP_CSV}, rows 'float32 jit=... b128'; how it was run: {RUN_NOTES})",
    f"float32, not mixed_bfloat16: bfloat16 keeps 8 bits of mantissa and no budget recipe has been "
    f"validated with it, whatever its speed ({SWEEP_CSV}, row 'mixed_bfloat16 jit=False b128'; "
    f"{RUN_NOTES}); train.precision=mixed_bfloat16 opts in",
    f"oneDNN on: TF_ENABLE_ONEDNN_OPTS=0 trains slower ({SWEEP_CSV}, row 'float32 jit=False b128 oneDNN off'); "
    "one inter-op thread and other batch sizes are in the same file",
    "channels_last is the only layout TensorFlow's CPU convolutions train in",
)
GPU_EVIDENCE = (
    "not measured on this project's machines (no row in results/benchmarks/ comes from a GPU): the "
    "standard choice for NVIDIA GPUs of compute capability >= 7.0 (tensor cores): mixed_float16 with "
    "loss scaling (Keras wraps the optimizer in a LossScaleOptimizer) and XLA fusion; confirm with "
    "`zoo bench --sweep` on the GPU machine",
)


def _cpu_settings() -> Settings:
    notes = ()
    if not onednn_enabled():
        notes = (f"TF_ENABLE_ONEDNN_OPTS turns oneDNN off in this process, which trains slower "
                 f"({SWEEP_CSV}); unset it (it is read when TensorFlow is imported)",)
    return Settings("cpu", jit_compile=False, precision="float32", onednn=True, data_format="channels_last",
                    evidence=CPU_EVIDENCE, notes=notes)


def _gpu_settings() -> Settings:
    return Settings("gpu", jit_compile=True, precision="mixed_float16", onednn=None,
                    data_format="channels_last", evidence=GPU_EVIDENCE)


POLICY = {"cpu": _cpu_settings, "gpu": _gpu_settings}  # device -> its settings


def choose_settings(device: str | None = None) -> Settings:
    """The fastest correct training settings for ``device`` (``"cpu"``, ``"gpu"``, or ``None``
    for this machine's): on CPU ``jit_compile=False``, float32, oneDNN on, channels-last (see
    :data:`CPU_EVIDENCE`); on GPU mixed_float16 and XLA (see :data:`GPU_EVIDENCE`).
    ``zoo bench --sweep`` measures the alternatives again."""
    return POLICY[_check_device(device or device_kind())]()


def apply_training_settings(recipe: Any = None, device: str | None = None, *, verbose: bool = True) -> Settings:
    """The hook the fit path calls before building its model: picks :func:`choose_settings`,
    sets the Keras dtype policy (the recipe's ``train.precision`` unless ``auto``) and image data
    format, and prints what it chose. The recipe's ``train.jit_compile`` stays in charge of XLA
    (a recipe is the record of an experiment); when it differs from the device's fastest choice
    this says so, with the override to pass.

    Returns the settings in effect (``jit_compile`` as the recipe has it)."""
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
