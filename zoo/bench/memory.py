"""Resident memory of this process (current, peak, resettable peak) and the memory left free.

Linux ``/proc`` where there is one, ``getrusage`` elsewhere; no TensorFlow here (a PyTorch
peer's process imports this module).
"""
from __future__ import annotations

import resource
from pathlib import Path

__all__ = ["mem_available_mb", "peak_rss_mb", "reset_peak_rss", "rss_mb"]


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
