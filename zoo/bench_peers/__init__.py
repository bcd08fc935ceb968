"""Peer implementations for :func:`zoo.bench.bench_peers`: the same networks in other frameworks.

Nothing here is imported by the zoo itself; PyTorch is an optional dependency (the ``bench``
extra: ``pip install torch==2.13.0``, a CPU build).
"""
