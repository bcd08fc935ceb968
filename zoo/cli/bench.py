"""``zoo bench``: throughput benchmarks (a thin call into :mod:`zoo.bench.core`)."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    from zoo.bench.core import add_bench_arguments

    add_bench_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from zoo.bench.core import bench_from_args

    return bench_from_args(args)
