"""``zoo train``: train a recipe (a thin call into :mod:`zoo.training.run`)."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    from zoo.training.run import add_train_arguments

    add_train_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from zoo.training.run import run_from_args

    return run_from_args(args)
