"""``zoo weights``, ``zoo publish`` and ``zoo convert``: thin calls into :mod:`zoo.weights`.

``zoo weights`` reads manifests only (:mod:`zoo.weights.entries`, no Keras); publishing and
converting build models, so their modules are imported inside their commands (keeps ``zoo
weights`` free of TensorFlow).
"""
from __future__ import annotations

import argparse
import json

from rich import box
from rich.console import Console
from rich.table import Table

from zoo.weights.entries import list_weights, weights_table


def _console() -> Console:
    return Console()


def cmd_weights(args: argparse.Namespace) -> int:
    """``zoo weights [NAME]``: one line per published entry (``--json``: the manifest entries)."""
    if args.json:
        print(json.dumps([e.to_json() for e in list_weights(args.name)], indent=2))
        return 0
    rows = weights_table(args.name)
    if not rows:
        _console().print(f"no published weights{' for ' + args.name if args.name else ''} yet.")
        return 0
    table = Table("name", "tag", "accuracy", "dtype", "MB", "where", "sha256", box=box.SIMPLE_HEAD,
                  pad_edge=False, collapse_padding=True)  # fits 80 columns: rich's width for a pipe
    for column in table.columns:
        column.no_wrap = True
    for r in rows:
        table.add_row(r["name"], r["tag"], r["metric"], r["dtype"], "–" if r["size_mb"] is None else f"{r['size_mb']}",
                      r["where"], r["sha256"][:8])
    console = _console()
    console.print(table)
    if args.name or args.long:  # descriptions are paragraphs: below the table, one per entry
        for r in rows:
            console.print(f"\n[bold]{r['name']}:{r['tag']}[/bold] {r['description']}", highlight=False)
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    """``zoo publish RUN_DIR TAG``: :func:`zoo.weights.publishing.publish`."""
    from zoo.weights.publishing import publish  # builds models: TensorFlow only for this command

    entry = publish(args.run_dir, args.tag, dtype=args.dtype, url=args.url, package=not args.no_package,
                    description=args.description, manifest=args.manifest, overwrite=args.overwrite)
    files = entry.packaged_files()
    where = ", ".join(map(str, files)) if files else entry.cache_path()
    _console().print(f"published {entry.key}: {where} (sha256 {entry.sha256})", highlight=False)
    if args.no_package:
        _console().print(f"upload {where} to {entry.url}", highlight=False)
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    """``zoo convert SOURCE MODEL SRC OUT``: :func:`zoo.weights.convert.convert` into a publishable file."""
    from zoo.models.registry import parse_options  # these build models: TensorFlow only for this command
    from zoo.weights.convert import convert

    options = parse_options(args.option)
    done = convert(args.source, args.model, args.src, args.out, preprocessing=args.preprocessing, **options)
    _console().print(f"converted {done.assigned} weights into {args.model} -> {args.out} (+ {args.out}.json); "
                     f"publish with zoo.weights.publish_file", highlight=False)
    if done.dropped:
        _console().print(f"dropped: {', '.join(sorted(done.dropped))}", highlight=False)
    return 0


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """The arguments of ``zoo weights``, ``zoo publish`` and ``zoo convert``."""
    ADDERS[command](parser)


def run(args: argparse.Namespace) -> int:
    """Run the command :func:`add_arguments` set up (ZooErrors go to the dispatcher's exit-code rule)."""
    return args.func(args)


def _add_weights(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="only this model's weights")
    p.add_argument("--json", action="store_true", help="the full manifest entries")
    p.add_argument("--long", action="store_true", help="each entry's description too (always with NAME)")
    p.set_defaults(func=cmd_weights)


def _add_publish(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir")
    p.add_argument("tag", help="e.g. cifar10")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32")
    p.add_argument("--url", help="where the file will be downloadable from")
    p.add_argument("--no-package", action="store_true", help="URL-only entry (file staged in the cache)")
    p.add_argument("--description", default="")
    p.add_argument("--manifest", help="manifest to write (default: the packaged one)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_publish)


def _add_convert(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="keras, torchvision or fishnet")
    p.add_argument("model", help="zoo model name, e.g. resnet50")
    p.add_argument("src", help="source weights file (.pth, .h5, .weights.h5, .keras)")
    p.add_argument("out", help="output .weights.h5 (the inference model) and its .json sidecar")
    p.add_argument("--preprocessing", choices=("torch", "caffe"), help="default: the source's convention")
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE", help="build option")
    p.set_defaults(func=cmd_convert)


ADDERS = {"weights": _add_weights, "publish": _add_publish, "convert": _add_convert}  # command -> its arguments
