"""Resident memory of this process (Linux ``/proc/self/status``, else psutil / ``resource``).

Trials record their peak RSS so that a report shows whether memory grows from trial to trial.
"""
from __future__ import annotations

import resource
from pathlib import Path


def _status_field(key: str) -> int | None:
    """``VmRSS``/``VmHWM`` of this process in kB (Linux), or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb() -> float | None:
    """This process's resident set size now, in MiB."""
    kb = _status_field("VmRSS")
    if kb is None:
        try:
            import psutil  # optional: only where /proc is missing

            return psutil.Process().memory_info().rss / 2**20
        except ImportError:
            return None
    return kb / 1024


def peak_rss_mb() -> float | None:
    """This process's peak RSS in MiB (since start, or since :func:`reset_peak_rss`)."""
    kb = _status_field("VmHWM")
    if kb is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return kb / 1024


def reset_peak_rss() -> bool:
    """Reset the peak RSS (Linux ``clear_refs`` 5); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False
