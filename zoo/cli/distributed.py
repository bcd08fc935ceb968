"""``zoo distributed``: multi-worker training (a thin call into :mod:`zoo.training.distributed`)."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    from zoo.training.distributed import add_distributed_arguments

    add_distributed_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from zoo.training.distributed import run_from_args

    return run_from_args(args)
