"""``zoo weights``, ``zoo publish`` and ``zoo convert``: thin calls into :mod:`zoo.weights`.

``zoo weights [NAME]`` lists the zoo's own weights (the manifests) and the upstream ImageNet weights
(:mod:`zoo.weights.imagenet`: publisher, the publisher's top-1, whether converted, downloaded or not
yet) from files alone (no Keras). ``zoo weights add NAME TAG PATH`` converts a checkpoint downloaded
by hand (the FishNet authors'; pins its sha256), ``zoo weights fetch NAME TAG`` downloads and converts
an upstream entry now. Publishing and converting build models, so their modules are imported inside
their commands (keeps ``zoo weights`` free of TensorFlow).
"""
from __future__ import annotations

import argparse
import json

from rich import box
from rich.console import Console
from rich.table import Table

from zoo.errors import ZooError
from zoo.weights.entries import list_weights, weights_table
from zoo.weights.imagenet import list_upstream
from zoo.weights.upstream import upstream_table


def _console() -> Console:
    return Console()


def cmd_weights(args: argparse.Namespace) -> int:
    """``zoo weights [NAME]``: one line per published entry, then the upstream ones (``--json``: the
    manifest entries, then the upstream records); ``add`` / ``fetch``: :func:`_add`, :func:`_fetch`."""
    words = list(args.words)
    if words and words[0] in ACTIONS:
        return ACTIONS[words[0]](words[1:], args)
    if len(words) > 1:
        raise ZooError(f"zoo weights takes one model name, got {' '.join(words)}; to add a checkpoint: "
                       f"zoo weights add NAME TAG PATH.")
    args.name = words[0] if words else None
    if args.json:
        print(json.dumps([e.to_json() for e in list_weights(args.name)]
                         + [u.to_json() for u in list_upstream(args.name)], indent=2))
        return 0
    rows = weights_table(args.name)
    ups = upstream_table(args.name)
    if not rows and not ups:
        _console().print(f"no published weights{' for ' + args.name if args.name else ''} yet.")
        return 0
    if rows:
        _zoo_table(rows, args)
    if ups:
        _upstream_table(ups, args)
    return 0


def _zoo_table(rows: list[dict], args: argparse.Namespace) -> None:
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


SHORT = {"keras.applications": "keras", "FishNet authors": "FishNet"}  # publishers, in 80 columns


def _upstream_table(rows: list[dict], args: argparse.Namespace) -> None:
    """The upstream ImageNet weights: converted on first use; top-1 is the publisher's figure."""
    table = Table("name", "tag", "publisher", "top-1*", "MB", "where", box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True, title="upstream ImageNet weights")
    for column in table.columns:
        column.no_wrap = True
    for r in rows:
        table.add_row(r["name"], r["tag"], SHORT.get(r["publisher"], r["publisher"]),
                      "–" if r["top1"] is None else f"{r['top1']:.2f}%",
                      "–" if r["size_mb"] is None else f"{r['size_mb']:.1f}", r["where"])
    console = _console()
    console.print(table)
    console.print("* the publisher's ImageNet-1k top-1, not measured here.", highlight=False)
    console.print("zoo.build(NAME, weights=TAG) downloads and converts on first use;", highlight=False)
    console.print("a file downloaded by hand: zoo weights add NAME TAG PATH.", highlight=False)
    if args.name or args.long:
        for r in rows:
            console.print(f"\n[bold]{r['name']}:{r['tag']}[/bold] {r['description']}", highlight=False)


def _add(words: list[str], args: argparse.Namespace) -> int:
    """``zoo weights add NAME TAG PATH [--overwrite]``: :func:`zoo.weights.upstream.add_checkpoint`."""
    if len(words) != 3:
        raise ZooError("usage: zoo weights add NAME TAG PATH (e.g. zoo weights add fishnet99 imagenet "
                       "fishnet99_ckpt.tar)")
    from zoo.cli import import_tensorflow_quietly
    from zoo.weights.upstream import add_checkpoint  # converts: TensorFlow only for this action

    import_tensorflow_quietly()

    out = add_checkpoint(*words, overwrite=args.overwrite)
    _console().print(f"added {words[0]}:{words[1]} -> {out}; zoo.build({words[0]!r}, weights={words[1]!r}) "
                     f"loads it", highlight=False)
    return 0


def _fetch(words: list[str], args: argparse.Namespace) -> int:
    """``zoo weights fetch NAME TAG``: download and convert an upstream entry now."""
    if len(words) != 2:
        raise ZooError("usage: zoo weights fetch NAME TAG (e.g. zoo weights fetch vgg16 imagenet)")
    from zoo.cli import import_tensorflow_quietly
    from zoo.weights.imagenet import get_upstream
    from zoo.weights.upstream import materialize

    import_tensorflow_quietly()

    out = materialize(get_upstream(*words), include_top=not args.no_top)
    _console().print(f"{words[0]}:{words[1]} ready: {out}", highlight=False)
    return 0


ACTIONS = {"add": _add, "fetch": _fetch}  # zoo weights ACTION ...


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
    p.add_argument("words", nargs="*", metavar="NAME | add NAME TAG PATH | fetch NAME TAG",
                   help="only this model's weights; add: convert a checkpoint downloaded by hand (pins its sha256); "
                        "fetch: download and convert an upstream entry now")
    p.add_argument("--json", action="store_true", help="the full manifest entries and upstream records")
    p.add_argument("--overwrite", action="store_true", help="add: replace a pinned checkpoint")
    p.add_argument("--no-top", action="store_true", help="fetch: the headless file where there is one")
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
