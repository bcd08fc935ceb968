"""The ``zoo`` command. Every subcommand is a thin call into a function users can import."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from rich.console import Console
from rich.table import Table

from zoo.errors import ZooError
from zoo.recipes import parse_args_with_overrides
from zoo.registry import parse_options  # noqa: F401  (re-exported: -o key=value parsing)

console = Console()


def _fmt_params(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else "–"


def _fmt_gflops(g: Any) -> str:
    return f"{g:.2f}" if isinstance(g, (int, float)) else "–"


def cmd_list(args: argparse.Namespace) -> int:
    from zoo.flops import count_flops, count_params
    from zoo.registry import build, get_entry, list_models

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
    from zoo.flops import count_flops, count_params
    from zoo.registry import build, get_entry

    entry = get_entry(name)
    model = build(name, **options)
    return {
        "name": entry.name, "family": entry.family.name, "description": entry.description,
        "paper": entry.family.paper, "input_shape": list(model.input.shape[1:]),
        "output_shape": [list(t.shape[1:]) for t in model.outputs],
        "params": count_params(model), "flops": count_flops(model),
        "sites": model.zoo_sites, "published": dict(entry.published), "options": options,
    }


def cmd_info(args: argparse.Namespace) -> int:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="registered models: name, family, params, FLOPs, input size")
    p.add_argument("pattern", nargs="?", help="glob or substring, e.g. 'resnet*' or cnn_c")
    p.add_argument("--measure", action="store_true", help="build every model and count params/FLOPs")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="params, FLOPs, input size and downsampling sites of a model")
    p.add_argument("name")
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="build option, YAML value: -o downsample=max -o 'downsample={stage3: blur}'")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    from zoo import train as training  # the train/eval arguments live beside the functions they call

    p = training.add_train_arguments(sub.add_parser("train", help="train a recipe (file or name in recipes/)"))
    p.set_defaults(func=training.run_from_args)
    p = training.add_eval_arguments(sub.add_parser("eval", help="evaluate a run or weights on a dataset split"))
    p.set_defaults(func=training.eval_from_args)

    from zoo import study as studies, tune as tuning  # tune/study arguments live beside their functions

    tuning.add_tune_arguments(sub.add_parser("tune", help="keras-tuner search over a recipe's downsampling choices"))
    studies.add_study_arguments(sub.add_parser("study", help="pool-or-stride studies across architectures"))

    from zoo import bench as benchmarks, distributed

    p = benchmarks.add_bench_arguments(sub.add_parser(
        "bench", help="throughput: train/infer step, --sweep, --peers, --pipeline, --settings"))
    p.set_defaults(func=benchmarks.bench_from_args)
    p = distributed.add_distributed_arguments(sub.add_parser(
        "train-distributed", help="train a recipe on several workers/GPUs (tf.distribute)"))
    p.set_defaults(func=distributed.run_from_args)

    from zoo.weights.commands import register as register_weight_commands

    register_weight_commands(sub, parse_options)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args_with_overrides(parser, argv)
    try:
        return args.func(args)
    except ZooError as err:
        console.print(f"[red]error:[/red] {err}", highlight=False)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
