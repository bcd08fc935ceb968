"""``zoo train-distributed RECIPE --workers H:P,... --index I``: the one fit path under
``tf.distribute`` (:mod:`zoo.training.distributed`). The strategy is made before anything else
touches TensorFlow, as ``MultiWorkerMirroredStrategy`` requires."""
from __future__ import annotations

import argparse
import sys

from zoo.cli.train import add_train_arguments
from zoo.training import distributed


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    add_train_arguments(parser)
    parser.add_argument("--workers", help="host:port of every worker, comma-separated, the same on each "
                        "(default: TF_CONFIG, else MirroredStrategy on several GPUs)")
    parser.add_argument("--index", type=int, help="this worker's position in --workers (0 is the chief)")
    parser.add_argument("--timeout", type=float, help="seconds before a collective gives up (default: never)")


def run(args: argparse.Namespace) -> int:
    """Exit status as ``zoo train``'s."""
    strategy = distributed.make_strategy(args.workers, args.index, timeout_s=args.timeout)
    from zoo.training import RunFinishedError, train  # after the strategy: MWMS must come first

    try:
        result = train(args.recipe, args.overrides, run_dir=args.run_dir, overwrite=args.overwrite,
                       entry="distributed", strategy=strategy)
    except RunFinishedError as err:
        print(f"zoo train-distributed: {err}", file=sys.stderr)
        return 0
    return 0 if result.status == "completed" else 1
