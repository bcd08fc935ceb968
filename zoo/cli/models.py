"""``zoo list`` and ``zoo info``: the model registry's names, published facts and sites."""
from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.table import Table

from zoo.errors import ZooError
from zoo.flops import count_flops, count_params
from zoo.models.registry import build, get_entry, list_models, parse_options, site_table

console = Console()


def _fmt_params(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else "–"


def _fmt_gflops(g: Any) -> str:
    return f"{g:.2f}" if isinstance(g, (int, float)) else "–"


def cmd_list(args: argparse.Namespace) -> int:
    """``zoo list``: the published params and GFLOPs of the matching models (measured with ``--measure``)."""
    names = list_models(args.pattern)
    if not names:
        raise ZooError(f"no model matches {args.pattern!r}; `zoo list` shows them all.")
    table = Table("name", "family", "params", "GFLOPs", "input", title=None if args.measure else
                  "published params and GFLOPs (multiply-adds); --measure builds each model and counts")
    for name in names:
        entry = get_entry(name)
        params, gflops = entry.published.get("params"), entry.published.get("gflops")
        if args.measure:
            model = build(name)
            params, gflops = count_params(model), count_flops(model) / 1e9
        table.add_row(name, entry.family.name, _fmt_params(params), _fmt_gflops(gflops),
                      "x".join(str(d) for d in entry.input_shape))
    console.print(table)
    return 0


def model_info(name: str, **options: Any) -> dict[str, Any]:
    """Params, FLOPs, input size and downsampling sites (with their current choice) of a build."""
    entry = get_entry(name)
    model = build(name, **options)
    return {
        "name": entry.name, "family": entry.family.name, "description": entry.description,
        "paper": entry.family.paper, "input_shape": list(model.input.shape[1:]),
        "output_shape": [list(t.shape[1:]) for t in model.outputs],
        "params": count_params(model), "flops": count_flops(model),
        "sites": site_table(name, **options), "published": dict(entry.published), "options": options,
    }


def cmd_info(args: argparse.Namespace) -> int:
    """``zoo info NAME``: :func:`model_info` as text (or ``--json``)."""
    info = model_info(args.name, **parse_options(args.option))
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    console.print(f"[bold]{info['name']}[/bold] ({info['family']}): {info['description']}")
    console.print(f"paper: {info['paper']}")
    console.print(f"input {info['input_shape']} → output {info['output_shape']}")
    console.print(f"trainable params {info['params']:,}   FLOPs (multiply-adds) {info['flops'] / 1e9:.3f} G")
    if info["published"]:
        console.print("published: " + ", ".join(f"{k}={v}" for k, v in info["published"].items()))
    table = Table("site", "role", "published", "choice", "where", title="downsampling sites")
    for row in info["sites"]:
        style = "" if row["choice"] == row["default"] else "bold yellow"
        table.add_row(row["site"], row["role"], row["default"], f"[{style}]{row['choice']}[/]" if style else row["choice"],
                      row["doc"])
    console.print(table)
    return 0


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """``zoo list [PATTERN] [--measure]`` and ``zoo info NAME [-o key=value ...] [--json]``."""
    if command == "list":
        parser.add_argument("pattern", nargs="?", help="glob or substring, e.g. 'resnet*' or cnn_c")
        parser.add_argument("--measure", action="store_true", help="build every model and count params/FLOPs")
        parser.set_defaults(func=cmd_list)
    else:
        parser.add_argument("name")
        parser.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                            help="build option, YAML value: -o downsample=max -o 'downsample={stage3: blur}'")
        parser.add_argument("--json", action="store_true")
        parser.set_defaults(func=cmd_info)


def run(args: argparse.Namespace) -> int:
    """Run the command :func:`add_arguments` set up (ZooErrors go to the dispatcher's exit-code rule)."""
    return args.func(args)
