"""``zoo study``: pool-or-stride studies across architectures (a thin call into :mod:`zoo.studies.study`)."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    from zoo.studies.study import add_study_arguments

    add_study_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from zoo.studies.study import study_from_args

    return study_from_args(args)
