"""Peer implementations for :func:`zoo.bench.core.bench_peers`: the same networks in other frameworks.

Nothing here is imported by the zoo itself; PyTorch is an optional dependency (the ``bench``
extra: ``pip install torch==2.13.0``, a CPU build).
"""

import time
from collections.abc import Callable


def time_steps(step: Callable[[], object], steps: int) -> list[float]:
    """Seconds taken by each of ``steps`` calls of ``step`` (which must return only once its work
    is finished): the one timing loop of zoo's runners and every peer's."""
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times
