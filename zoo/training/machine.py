"""The machine the device policy decides for: CPU model, the instruction-set flags that matter to
the choice of precision (:data:`RELEVANT_FLAGS`: AMX, AVX-512 BF16/FP16), cores, the GPU and its
compute capability, TensorFlow/Keras/NumPy versions and oneDNN, with a stable
:attr:`Machine.fingerprint` (:mod:`zoo.training.device` decides; this module only detects).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from zoo import runtime

__all__ = ["RELEVANT_FLAGS", "Machine", "cpu_flags", "detect_machine", "device_kind", "device_name", "gpus",
           "onednn_enabled"]

# Flags of /proc/cpuinfo recorded in the machine's fingerprint (they decide what is worth timing).
RELEVANT_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512_fp16", "avx512f", "avx2")


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


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags: the ``flags`` (x86) or ``Features`` (Arm) line of ``cpuinfo``
    (default ``/proc/cpuinfo``; empty where there is none)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


@dataclass(frozen=True)
class Machine:
    """The facts about this machine that the device policy depends on."""

    cpu: str
    cores: int
    flags: tuple[str, ...]  # the RELEVANT_FLAGS it has, sorted
    gpu: str | None = None  # "1x NVIDIA H100 ..." where TensorFlow sees a GPU
    gpu_compute: tuple[int, int] | None = None
    tensorflow: str = tf.__version__
    keras: str = keras.__version__
    numpy: str = np.__version__
    onednn: bool = True

    @property
    def kind(self) -> str:
        return "gpu" if self.gpu else "cpu"

    @property
    def fingerprint(self) -> str:
        """16 hex digits of the SHA-256 of these facts: a new CPU, core count, flag, GPU, library
        version or oneDNN setting is a new machine to the policy."""
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def has(self, flags: tuple[str, ...]) -> bool:
        """Whether the CPU has any of ``flags``."""
        return any(f in self.flags for f in flags)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["flags"], d["gpu_compute"] = list(self.flags), list(self.gpu_compute) if self.gpu_compute else None
        return d

    def describe(self) -> str:
        gpu = f"{self.gpu} (compute {'.'.join(map(str, self.gpu_compute or ()))})" if self.gpu else "no GPU"
        flags = " ".join(self.flags) or "none of " + "/".join(RELEVANT_FLAGS)
        return (f"{self.cpu}, {self.cores} cores, flags {flags}; "
                f"{gpu}; TensorFlow {self.tensorflow}, Keras {self.keras}, NumPy {self.numpy}, "
                f"oneDNN {'on' if self.onednn else 'off'}")


def _gpu_facts() -> tuple[str | None, tuple[int, int] | None]:
    found = gpus()
    if not found:
        return None, None
    details = tf.config.experimental.get_device_details(found[0])
    compute = details.get("compute_capability")
    return f"{len(found)}x {details.get('device_name', 'GPU')}", tuple(compute) if compute else None


@functools.cache
def detect_machine() -> Machine:
    """This machine's :class:`Machine` (detected once per process)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    gpu, compute = _gpu_facts()
    flags = cpu_flags()
    return Machine(runtime.cpu_name(), cores, tuple(f for f in sorted(RELEVANT_FLAGS) if f in flags), gpu, compute,
                   onednn=onednn_enabled())
