"""``zoo eval RUN|FILE``: evaluate a run or weights on a dataset split (:func:`zoo.training.evaluate`)."""
from __future__ import annotations

import argparse

from zoo.training import evaluate
from zoo.training.evaluate import locate
from zoo.weights.modelfile import check_model_file


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("model", help="run directory, .keras file or .weights.h5 file")
    parser.add_argument("overrides", nargs="*", help="dotted recipe overrides, e.g. data.batch_size=256")
    parser.add_argument("--source", help="dataset (default: the recipe's data.source)")
    parser.add_argument("--split", help="split of the source, e.g. test (default: the run's held-out images)")
    parser.add_argument("--recipe", help="recipe, when no recipe.yaml sits next to the weights")
    parser.add_argument("--limit", type=int, help="evaluate a stratified subset of this many images")
    parser.add_argument("--batch-size", type=int, help="batch size (default: the recipe's)")
    parser.add_argument("--tta", choices=("none", "mirror", "mirror_translate"),
                        help="also report the accuracy with this test-time augmentation (airbench's views: "
                             "mirror, or mirror and one-pixel translations; default: the recipe's data.eval_tta)")
    parser.add_argument("--output-dir", help="where eval_report.json/.md go (default: beside the model)")


def run(args: argparse.Namespace) -> int:
    check_model_file(locate(args.model)[0])  # truncated or refused by safe mode: one line, before data
    result = evaluate(args.model, args.source, args.split, recipe=args.recipe, overrides=args.overrides,
                      limit=args.limit, batch_size=args.batch_size, output_dir=args.output_dir, tta=args.tta)
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
    print(f"zoo eval: {result.report['split']} of {result.report['source']}: {metrics}; "
          f"report {result.files['markdown']}")
    return 0
