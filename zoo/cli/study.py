"""``zoo study``: pool-or-stride studies across architectures (:func:`zoo.studies.study`).

    zoo study all_cnn_c-study resnet20-study --paper-recipe all_cnn_c-study --paper-seeds 2 --max-trials 12
    zoo study --collect-only                                   # rewrite results/studies/README.md
"""
from __future__ import annotations

import argparse

from zoo import studies
from zoo.cli.tune import add_search_options, search_options


def parse_rates(text: str) -> tuple[float, ...]:
    """``--paper-lrs 0.001,0.002`` -> (0.001, 0.002)."""
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give learning rates separated by commas, e.g. 0.001,0.002") from None


def add_arguments(parser: argparse.ArgumentParser, command: str = "study") -> None:
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add = parser.add_argument
    add("recipes", nargs="*", help="recipes to search, one study each (e.g. all_cnn_c-study)")
    add("--root", default="results/studies", help="studies folder (default results/studies)")
    add("--paper-recipe", help="also run the All-CNN paper comparison (All-CNN-C, ConvPool-CNN-C, "
                               "Strided-CNN-C, Model C) with this recipe")
    add("--paper-seeds", type=int, default=1, metavar="N",
        help="train each paper variant with N consecutive seeds (default 1)")
    add("--paper-lrs", type=parse_rates, default=(), metavar="LIST",
        help="train each paper variant at each of these learning rates and compare each at its best "
             "(the paper's protocol), e.g. 0.001,0.002 (default: the recipe's rate)")
    add("--override", "-O", action="append", default=[], metavar="KEY=VALUE",
        help="dotted recipe override for every study (repeatable)")
    add("--collect-only", action="store_true", help="only rewrite README.md from the studies there")
    add_search_options(parser)


def run(args: argparse.Namespace) -> int:
    """Run the studies and print where their summary is."""
    options = search_options(args)
    resume, overwrite = options.pop("resume"), options.pop("overwrite")
    path = studies.study(args.recipes, root=args.root, paper=args.paper_recipe, collect_only=args.collect_only,
                         resume=resume, overwrite=overwrite, overrides=args.override, paper_seeds=args.paper_seeds,
                         paper_lrs=args.paper_lrs, **options)
    print(f"zoo study: {path}")
    return 0
