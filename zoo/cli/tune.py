"""``zoo tune``: keras-tuner search over a recipe's downsampling choices, and its report.

    zoo tune all_cnn_c-study --max-trials 12                  # runs/tune/<recipe>-<model>/report.md
    zoo tune resnet20-study --choices max,avg,conv,blur --budget-flops 45M --resume
    zoo tune --report-only R --project-dir P                  # rewrite the report of a search

Kill a search and run the same command with ``--resume``: finished trials are kept and the
interrupted one continues from its last finished epoch (:mod:`zoo.search`). The search options
(:func:`add_search_options`) are shared with ``zoo study``.
"""
from __future__ import annotations

import argparse
from typing import Any

from zoo import studies
from zoo.search import ISOLATION, ORACLES, SHORTCUTS, TuneError, parse_choices

SEARCH_OPTIONS = ("sites", "shortcuts", "tune_lr", "tune_wd", "oracle", "max_trials", "budget_flops",
                  "budget_latency_ms", "isolate", "uniform_first", "seed", "latency_batch", "latency_repeats",
                  "resume", "overwrite")


def add_search_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The search options shared by ``zoo tune`` and ``zoo study``."""
    add = parser.add_argument
    add("--sites", choices=("each", "shared"), default="each",
        help="one choice per site (each) or one choice for all sites (shared)")
    add("--choices", action="append", metavar="LIST",
        help="choices for every site (max,avg,conv,blur,s2d; blur5 = blur with filter size 5) or "
             "SITE=LIST for one site or glob (repeatable; then only the named sites are searched)")
    add("--shortcuts", choices=SHORTCUTS, default="follow",
        help="shortcut/mirror sites follow their stage (default), are searched, or stay published")
    add("--tune-lr", action="store_true", help="also search the learning rate (log scale, /5..x5)")
    add("--tune-wd", action="store_true", help="also search the weight decay (log scale, /10..x10)")
    add("--oracle", choices=ORACLES, default="random")
    add("--max-trials", type=int, default=10, help="trials in all, rejected ones included")
    add("--budget-flops", help="reject configurations above this many multiply-adds (300M, 1.2G)")
    add("--budget-latency-ms", type=float, help="reject configurations slower than this (ms/image)")
    add("--isolate", choices=ISOLATION, default="process",
        help="run each trial in a fresh process (default) or in the search process")
    add("--no-uniform-first", dest="uniform_first", action="store_false",
        help="do not start with the uniform configurations (all-max, all-conv, ...)")
    add("--seed", type=int, default=0, help="the oracle's random seed")
    add("--latency-batch", type=int, default=1)
    add("--latency-repeats", type=int, default=30)
    add("--resume", action="store_true", help="continue the search in the project directory")
    add("--overwrite", action="store_true", help="delete the project directory and start again")
    return parser


def search_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`zoo.search.tune` given by parsed search options."""
    return {"choices": parse_choices(args.choices), **{name: getattr(args, name) for name in SEARCH_OPTIONS}}


def add_arguments(parser: argparse.ArgumentParser, command: str = "tune") -> None:
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("recipe", help="recipe YAML path or name in recipes/ (e.g. all_cnn_c-study)")
    parser.add_argument("overrides", nargs="*", help="dotted recipe overrides: train.epochs=3 data.limit=2000")
    parser.add_argument("--project-dir", help="search directory (default runs/tune/<recipe>-<model>)")
    parser.add_argument("--report-only", action="store_true",
                        help="only (re)write the report of the search in --project-dir")
    add_search_options(parser)


def run(args: argparse.Namespace) -> int:
    """Search (or only report, with ``--report-only``) and print where the report is."""
    if args.report_only:
        if not args.project_dir:
            raise TuneError("--report-only needs --project-dir.")
        print(f"zoo tune: report {studies.write_report(args.project_dir)['markdown']}")
        return 0
    result = studies.tune(args.recipe, overrides=args.overrides, project_dir=args.project_dir, **search_options(args))
    best = result.best
    done = "; best " + (f"trial {best['trial_id']} ({best['label']}) val_accuracy {best['val_accuracy']:.4f}"
                        if best else "none")
    print(f"zoo tune: {len(result.completed)} of {len(result.trials)} trials completed{done}; "
          f"{'report ' + str(result.files['markdown']) if result.files else 'worker done'}")
    return 0
