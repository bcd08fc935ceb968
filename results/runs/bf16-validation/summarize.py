"""Collect the bfloat16 validation runs into summary.json / summary.md (run from the repository root):

    python results/runs/bf16-validation/summarize.py [RUNS_DIR]   # default runs/bf16-validation

Copies each finished run's recipe.yaml, history.csv, report.json, report.md and curves.png here
(not its weights) and tabulates held-out accuracy and throughput per precision and seed.
"""
from __future__ import annotations

import json
import shutil
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
runs = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/bf16-validation")
rows = []
for run in sorted(p for p in runs.iterdir() if (p / "report.json").is_file()):
    report = json.loads((run / "report.json").read_text())
    keep = HERE / run.name
    keep.mkdir(exist_ok=True)
    for name in ("recipe.yaml", "history.csv", "report.json", "report.md", "curves.png"):
        if (run / name).exists():
            shutil.copy2(run / name, keep / name)
    env = report["environment"]
    rows.append({"run": run.name, "recipe": report["recipe"]["name"], "precision": report["settings"]["precision"], "seed": report["recipe"]["train"]["seed"],
                 "holdout_accuracy": report["evaluation"]["holdout"]["accuracy"],
                 "train_images_per_s": report["timing"]["train_images_per_s"],
                 "train_time_s": report["timing"]["train_time_s"], "commit": env.get("git_commit"),
                 "cpu": env.get("cpu"), "started": env.get("date") or env.get("time")})
by = {}
for r in rows:
    by.setdefault(f"{r['recipe']} {r['precision']}", []).append(r["holdout_accuracy"])
summary = {k: {"seeds": len(v), "mean": statistics.mean(v), "min": min(v), "max": max(v)} for k, v in by.items()}
(HERE / "summary.json").write_text(json.dumps({"runs": rows, "by_recipe_and_precision": summary}, indent=2) + "\n")
lines = ["| run | precision | seed | held-out accuracy | train img/s | train time (s) |", "|---|---|---|---|---|---|"]
lines += [f"| {r['run']} | {r['precision']} | {r['seed']} | {100 * r['holdout_accuracy']:.2f}% | "
          f"{r['train_images_per_s']:.0f} | {r['train_time_s']:.0f} |" for r in rows]
lines += ["", "| recipe, precision | seeds | mean | min-max |", "|---|---|---|---|"]
lines += [f"| {p} | {s['seeds']} | {100 * s['mean']:.2f}% | {100 * s['min']:.2f}-{100 * s['max']:.2f}% |"
          for p, s in summary.items()]
(HERE / "summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
