"""``zoo evaluate``: evaluate a run (a thin call into :mod:`zoo.training.run`)."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    from zoo.training.run import add_eval_arguments

    add_eval_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from zoo.training.run import eval_from_args

    return eval_from_args(args)
