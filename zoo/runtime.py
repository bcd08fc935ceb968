"""Seeding, determinism, a record of the machine a run used, and this process's memory.

The memory functions read Linux ``/proc`` where there is one (``getrusage`` elsewhere) and import
no TensorFlow: a PyTorch peer's benchmark process uses them too."""
from __future__ import annotations

import datetime as _dt
import functools
import os
import platform
import resource
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy, TensorFlow and Keras; with ``deterministic`` also turn on TensorFlow
    op determinism, so two runs on one machine give bit-identical results.

    Op determinism is process-wide and cannot be turned off again in the same process.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(int(seed))
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def check_keras_home() -> None:
    """Refuse a ``KERAS_HOME`` that is, or lies under, a file: Keras would silently drop its
    configuration and the zoo could not keep its weights cache there. Imports no Keras (the
    ``zoo`` command calls it before Keras starts)."""
    value = os.environ.get("KERAS_HOME")
    if not value:
        return
    path = Path(value).expanduser()
    blocking = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        from zoo.errors import ZooError

        raise ZooError(f"KERAS_HOME={value}: {blocking} is a file, not a folder; point KERAS_HOME at a folder "
                       f"(Keras keeps its settings and the zoo its weights cache there) or unset it for ~/.keras.")


def cpu_name() -> str:
    """The CPU model, from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def git_commit() -> str | None:
    """The checkout's short commit, ``+dirty`` when tracked files differ from it; ``None`` outside
    git. Cached: the first call (made when a run starts) is what every report of this process
    records, so a commit made while a long run trains does not relabel it."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=5, check=False)
        if head.returncode != 0 or not head.stdout.strip():
            return None
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--"], cwd=root, capture_output=True,
                               timeout=5, check=False).returncode == 1
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty else "")


def environment() -> dict[str, Any]:
    """Versions, hardware, date and command line of this process, for reports."""
    import keras
    import numpy as np
    import tensorflow as tf

    devices = [d.device_type for d in tf.config.list_physical_devices()]
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "devices": sorted(set(devices)),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "git_commit": git_commit(),
    }


# ------------------------------------------------------------------------------ memory
def _proc_kb(path: str, key: str) -> float | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux ``clear_refs`` 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def rss_mb() -> float | None:
    """Resident memory now, MB (``None`` without ``/proc``)."""
    kb = _proc_kb("/proc/self/status", "VmRSS")
    return None if kb is None else kb / 1024


def peak_rss_mb() -> float:
    """Peak resident memory of this process since the last :func:`reset_peak_rss` (or since it
    started, where the mark cannot be reset), MB."""
    kb = _proc_kb("/proc/self/status", "VmHWM")
    if kb is None:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024


def mem_available_mb() -> float | None:
    """The machine's available memory, MB (``None`` without ``/proc/meminfo``)."""
    kb = _proc_kb("/proc/meminfo", "MemAvailable")
    return None if kb is None else kb / 1024
