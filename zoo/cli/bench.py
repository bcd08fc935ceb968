"""``zoo bench``: throughput of a model's step, ``--sweep``, ``--peers``, ``--pipeline``, ``--settings``.

    zoo bench resnet20 [--mode train|infer] [--batch-size N] [--precision fp32|mixed] [--json]
    zoo bench --sweep [resnet20]      zoo bench --pipeline      zoo bench --peers
    zoo bench [resnet20] --settings [--refresh]    the device policy: machine, cached decisions, cache file

``--settings --refresh`` calibrates the device policy again (:func:`zoo.training.device.resolve_policy`)
for the named model (with ``--batch-size``, ``-o``, ``--jit-compile``) or the representative kernel.

The Python API is :mod:`zoo.bench`; results are appended to ``results/benchmarks/<name>.csv``.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from typing import Any

from zoo.bench.checks import MODES, BenchError, parse_jit
from zoo.bench.machine import measure_matmul_peak
from zoo.bench.peers import bench_peers
from zoo.bench.pipeline import bench_pipeline
from zoo.bench.results import append_csv, default_csv
from zoo.bench.rounds import print_line
from zoo.bench.step import bench
from zoo.bench.sweeps import sweep
from zoo.models.registry import parse_options
from zoo.training import device as policy
from zoo.training.calibration import workload_for
from zoo.training.device import PRECISIONS

PIPELINE_TARGET = 5  # the pipeline must deliver this many times what the model trains at


def _add_step_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="registered model (default resnet20 for --sweep)")
    parser.add_argument("--mode", default="train", choices=MODES)
    parser.add_argument("--batch-size", type=int, help="default 128 up to 64 px inputs, 32 above")
    parser.add_argument("--precision", default="fp32", help=f"{', '.join(PRECISIONS)}; --peers also best: every implementation in float32 and mixed "
                        "(mixed: bfloat16 on CPU, float16 on GPU)")
    parser.add_argument("--jit-compile", help="false (default; --settings: the device's), true or auto "
                        "(model.compile's jit_compile)")
    parser.add_argument("--steps", type=int, help="timed steps (default 20; 15 for --sweep, 10 for --peers)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds for --sweep and --peers")
    parser.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                        help="build option, YAML value: -o layout=keras -o input_shape=[64,64,3]")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--csv", help="append to this CSV (default results/benchmarks/<name>.csv)")
    parser.add_argument("--no-csv", action="store_true", help="do not append the result to a CSV")
    parser.add_argument("--refresh-peak", action="store_true", help="measure the matmul peak again (idle machine!)")


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """The ``zoo bench`` arguments: one model's step by default, or one of the exclusive modes."""
    _add_step_arguments(parser)
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--sweep", action="store_true", help="measure jit/precision/oneDNN/batch-size alternatives")
    what.add_argument("--peers", action="store_true", help="resnet20 vs PyTorch, resnet50 vs keras.applications")
    what.add_argument("--pipeline", action="store_true", help="images/s of zoo.data.make_pipeline")
    what.add_argument("--settings", action="store_true", help="the device policy: machine facts, cached "
                      "decisions with their evidence, cache file")
    parser.add_argument("--refresh", action="store_true", help="--settings: calibrate the device policy again "
                        "(for NAME, else the representative kernel)")
    parser.add_argument("--batch-sizes", default="64,128,256", help="--sweep: batch sizes to compare")
    parser.add_argument("--groups", default="resnet20,all_cnn_c,resnet50",
                        help="--peers: comma-separated among resnet20, all_cnn_c, resnet50")
    parser.add_argument("--no-torch", action="store_true", help="--peers without PyTorch")
    parser.add_argument("--threads", type=int, help="--peers/--sweep: compute threads per process (default: all)")
    parser.add_argument("--source", default="embedded", help="--pipeline: dataset (default the embedded sample)")
    parser.add_argument("--augment", default="crop_pad4,flip", help="--pipeline: augmentations, comma-separated")
    parser.add_argument("--batches", type=int, default=200, help="--pipeline: timed batches")
    parser.add_argument("--limit", type=int, help="--pipeline: use this many images")
    parser.add_argument("--model", default="resnet20", help="--pipeline: model to compare with ('none' to skip)")


# ------------------------------------------------------------------------------ output
def _say(args: argparse.Namespace, result: Any, text: str) -> None:
    print(json.dumps(result, indent=2, default=str) if args.json else text)


def _log(args: argparse.Namespace) -> Callable[[str], None]:
    return (lambda _: None) if args.json else print_line


def _csv(args: argparse.Namespace, name: str | None = None) -> Any:
    """Where to append (``None``: the result's own default), or ``None`` with ``--no-csv``."""
    if args.no_csv:
        return None
    return args.csv or (default_csv(name) if name else None)


def _split(text: str) -> list[str]:
    return [word.strip() for word in text.split(",") if word.strip()]


def model_line(r: Mapping[str, Any]) -> str:
    """One line for a :func:`zoo.bench.bench` result."""
    frac, gf = r.get("peak_fraction"), r.get("achieved_gflops")
    flops = "" if gf is None else (f", {gf:.1f} GFLOP/s" + (f" = {100 * frac:.1f}% of the {r['peak_gflops']:.0f} "
                                                              "GFLOP/s fp32 matmul peak" if frac else ""))
    return (f"{r['label']} {r['mode']}: {r['samples_per_sec']:.1f} samples/s (batch {r['batch_size']}, "
            f"{r['dtype_policy']}, jit_compile={r['jit_compile']}); step {r['step_ms_median']:.1f} ms median, "
            f"{r['step_ms_p90']:.1f} ms p90; peak RSS {r['peak_rss_mb']:.0f} MB; {r['params']:,} params, "
            f"{(r['flops'] or 0) / 1e9:.3f} GMACs/sample{flops}")


def pipeline_line(result: Mapping[str, Any], model: str, model_rate: float | None) -> str:
    """One line for a :func:`zoo.bench.bench_pipeline` result, against the model's train rate."""
    text = (f"pipeline {result['source']} batch {result['batch_size']} augment "
            f"{','.join(result['augment']) or 'none'}: {result['images_per_sec']:.0f} images/s "
            f"({result['batch_ms_median']:.2f} ms/batch median)")
    if model_rate:
        ok = "ok" if result["ratio_to_model"] >= PIPELINE_TARGET else f"BELOW the {PIPELINE_TARGET}x target"
        text += f"; {result['ratio_to_model']:.1f}x {model}'s {model_rate:.0f} train samples/s ({ok})"
    return text


# ------------------------------------------------------------------------------ actions
def decision_line(record: Mapping[str, Any]) -> str:
    """One line for a cached device-policy calibration."""
    rates = ", ".join(f"{p} {v:.0f} img/s" for p, v in record["images_per_s"].items()) or "nothing timed"
    load, cores = record.get("load_average"), record.get("machine", {}).get("cores") or 1
    busy = "" if load is None else f", load {load:.1f}" + (f" on {cores} cores: noisy" if load > cores else "")
    return (f"{record['workload']} jit={record['jit_compile']} -> {record['precision']} ({record['date']}{busy}): "
            f"{rates}; {record['reason']}")


def policy_facts(args: argparse.Namespace) -> dict[str, Any]:
    """What ``zoo bench --settings`` shows, refreshing the named workload's decision with ``--refresh``."""
    mode, machine = policy.policy_mode(), policy.detect_machine()
    static = policy.choose_settings(machine.kind)
    jit = static.jit_compile if args.jit_compile is None else parse_jit(args.jit_compile)
    if jit == "auto":
        raise BenchError("--settings needs --jit-compile true or false (the policy times one setting).")
    workload = workload_for(args.name, args.batch_size, parse_options(args.option)) if args.name else None
    decision = None
    if args.refresh:
        # an explicit --refresh measures even under ZOO_DEVICE_POLICY=static
        decision = policy.resolve_policy(workload, jit, refresh=True, mode="auto" if mode == "static" else mode,
                                         log=_log(args))
    mine, others, note = policy.cached_decisions(machine)
    timed, skipped = policy.candidates(machine, mode)
    return {"mode": mode, "mode_means": policy.POLICY_MODES[mode], "machine": {**machine.as_dict(),
            "fingerprint": machine.fingerprint, "description": machine.describe()}, "static": static.as_dict(),
            "candidates": timed, "skipped": skipped, "margin": policy.MIN_SPEEDUP,
            "accuracy": {p: policy.ACCURACY.get(p, "not validated") for p in policy.CANDIDATES[machine.kind]},
            "cache": str(policy.policy_cache_file()), "decisions": mine, "other_entries": others,
            "notes": [n for n in (note, *(decision.notes if decision else ())) if n],
            "refreshed": decision.as_dict() if decision else None,
            "workload": workload.key if workload else None, "jit_compile": jit}


def policy_text(facts: Mapping[str, Any]) -> str:
    """The human-readable ``zoo bench --settings``."""
    static = facts["static"]
    lines = [f"device policy: {policy.POLICY_ENV}={facts['mode']} ({facts['mode_means']})",
             f"machine:  {facts['machine']['description']}; fingerprint {facts['machine']['fingerprint']}",
             f"static:   {static['device']}: jit_compile={static['jit_compile']}, {static['data_format']}"
             + ("" if static["onednn"] is None else f", oneDNN {'on' if static['onednn'] else 'off'}"),
             *(f"            - {e}" for e in static["evidence"] + static["notes"]),
             f"timed:    {', '.join(facts['candidates'])}; a reduced precision is chosen when it trains "
             f">= {facts['margin']:.2f}x as fast as float32 and its accuracy is validated",
             *(f"            - {p}: {why}" for p, why in facts["skipped"].items()),
             *(f"            - {p}: {why}" for p, why in facts["accuracy"].items() if p != "float32"),
             f"cache:    {facts['cache']}: {len(facts['decisions'])} decision(s) for this machine"
             + (f", {facts['other_entries']} of other machines or library versions" if facts["other_entries"] else "")]
    fresh = facts["refreshed"] and facts["refreshed"]["record"]
    lines += [f"  {decision_line(r)}" for r in facts["decisions"] if r != fresh]
    if facts["refreshed"]:
        lines.append(f"refreshed: {facts['refreshed']['evidence']}")
    elif not facts["decisions"] and facts["mode"] != "static":
        lines.append("  none yet: the first `zoo train` with train.precision=auto calibrates its model, or "
                     "`zoo bench NAME --settings --refresh`")
    if facts["workload"] and not facts["refreshed"]:
        key = (facts["workload"], facts["jit_compile"])
        if not any((r["workload"], r["jit_compile"]) == key for r in facts["decisions"]):
            lines.append(f"  no decision cached for {facts['workload']} jit={facts['jit_compile']} "
                         "(--refresh measures it)")
    return "\n".join(lines + [f"note: {n}" for n in facts["notes"]])


def _settings(args: argparse.Namespace) -> int:
    facts = policy_facts(args)
    _say(args, facts, policy_text(facts))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    rows = sweep(args.name or "resnet20", [int(b) for b in _split(args.batch_sizes)],
                 batch_size=args.batch_size or 128, steps=args.steps or 15, warmup=args.warmup, repeats=args.repeats,
                 mode=args.mode, csv_path=_csv(args), record=not args.no_csv, log=_log(args), threads=args.threads,
                 **parse_options(args.option))
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    return 0


def _peers(args: argparse.Namespace) -> int:
    rows = bench_peers(_split(args.groups), mode=args.mode, precision=args.precision, steps=args.steps or 10,
                       warmup=args.warmup, repeats=args.repeats, torch=not args.no_torch, csv_path=_csv(args),
                       record=not args.no_csv, log=_log(args), threads=args.threads)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    return 0


def _pipeline(args: argparse.Namespace) -> int:
    model_rate = None
    if args.model and args.model != "none":
        model_rate = bench(args.model, "train", steps=10, warmup=2, peak_gflops=False)["samples_per_sec"]
    result = bench_pipeline(args.source, args.batch_size or 128, _split(args.augment), batches=args.batches,
                            limit=args.limit, model_samples_per_sec=model_rate)
    text = pipeline_line(result, args.model, model_rate)
    if not args.no_csv:
        text += f"\nappended to {append_csv(result, _csv(args, 'pipeline'))}"
    _say(args, result, text)
    return 0


def _step(args: argparse.Namespace) -> int:
    if not args.name:
        raise BenchError("name a model (zoo bench resnet20), or use --sweep, --peers, --pipeline or --settings.")
    result = bench(args.name, args.mode, args.batch_size, args.precision, args.steps or 20, args.warmup,
                   jit_compile=parse_jit(args.jit_compile or "false"), **parse_options(args.option))
    text = model_line(result)
    if not args.no_csv:
        text += f"\nappended to {append_csv(result, _csv(args))}"
    _say(args, result, text)
    return 0


ACTIONS = {"settings": _settings, "sweep": _sweep, "peers": _peers, "pipeline": _pipeline}  # flag -> action


def run(args: argparse.Namespace) -> int:
    """Run the benchmark the arguments ask for (one model's step unless a mode flag is given)."""
    if args.refresh and not args.settings:
        raise BenchError("--refresh goes with --settings: zoo bench [NAME] --settings --refresh.")
    if args.refresh_peak:
        peak = measure_matmul_peak(refresh=True)
        print(f"zoo bench: fp32 matmul peak {peak['gflops']:.1f} GFLOP/s (n={peak['size']}), cached")
    action = next((fn for flag, fn in ACTIONS.items() if getattr(args, flag)), _step)
    return action(args)
