"""``zoo train RECIPE [overrides...]``: train a recipe on the one fit path (:func:`zoo.training.train`)."""
from __future__ import annotations

import argparse
import sys

from zoo.training import RunFinishedError, train


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The arguments ``zoo train`` and ``zoo train-distributed`` share."""
    parser.add_argument("recipe", help="recipe YAML path or name in recipes/ (e.g. resnet20-budget)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides: optimizer.lr=0.05 train.epochs=3")
    parser.add_argument("--run-dir", help="run directory (default runs/<recipe>-<model>)")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished run in the run directory")
    return parser


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    add_train_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """0 when trained (or already finished: said on stderr), 1 when training ended in NaN."""
    try:
        result = train(args.recipe, args.overrides, run_dir=args.run_dir, overwrite=args.overwrite)
    except RunFinishedError as err:
        print(f"zoo train: {err}", file=sys.stderr)
        return 0
    return 0 if result.status == "completed" else 1
