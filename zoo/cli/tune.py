"""``zoo tune``: keras-tuner search over a recipe's downsampling choices (a thin call into :mod:`zoo.search.tuner`)."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    from zoo.search.tuner import add_tune_arguments

    add_tune_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from zoo.search.tuner import tune_from_args

    return tune_from_args(args)
