"""Study reports (zoo.studies): fixed comparisons, the paper comparison, reports and the index.

Tiny data throughout (tests/tiny_search.py): All-CNN-C at 16x16 on 200 embedded images, 1 epoch.
"""
from __future__ import annotations

import argparse
import json
import os

import pytest

from tiny_search import FAST, TINY, write_recipe
from zoo import search, studies
from zoo.cli.study import parse_rates
from zoo.errors import ZooError
from zoo.report import read_json
from zoo.search.project import variant_id
from zoo.training import load_recipe, resolve


@pytest.fixture
def tiny(tmp_path):
    return write_recipe(tmp_path / "tiny.yaml")


def test_compare_runs_fixed_variants_each_in_its_own_process(tiny, tmp_path):
    project = tmp_path / "paper"
    variants = {"Strided-CNN-C": ["model.name=strided_cnn_c"]}
    result = studies.compare(tiny, variants, project_dir=project, **FAST)  # isolate="process", the default
    (trial,) = result.trials
    assert trial["status"] == "completed" and trial["variant"] == "Strided-CNN-C"
    assert trial["config"]["model"] == "strided_cnn_c" and trial["params"] == 954_730
    record = read_json(project / trial["record"])
    assert record["recipe"]["model"]["name"] == "strided_cnn_c" and record["recipe"]["train"]["seed"] == 0
    assert record["peak_rss_scope"] == "trial process" and record["trial_pid"] != os.getpid()
    assert record["peak_rss_mb"] > 100 and record["search_rss_mb"] > 100 and record["entry"] == "paper"
    run = read_json(project / f"trial_{trial['trial_id']}" / record["run_dir"] / "report.json")  # zoo.training.train
    assert run["recipe"]["model"]["name"] == "strided_cnn_c" and run["history"] == record["history"]
    assert "Strided-CNN-C" in (project / "report.md").read_text()
    again = studies.compare(tiny, variants, project_dir=project, resume=True, **FAST)
    assert [t["started"] for t in again.trials] == [t["started"] for t in result.trials]  # nothing retrained
    assert list(studies.paper_variants(load_recipe(TINY))) == list(studies.PAPER_VARIANTS)
    two = studies.paper_variants(load_recipe(TINY), seeds=2)
    assert list(two)[4:] == [f"{v} (seed 1)" for v in studies.PAPER_VARIANTS]
    assert two["Model C (seed 1)"] == ["model.name=cnn_c", "train.seed=1"] and two["Model C"] == ["model.name=cnn_c"]
    with pytest.raises(ZooError, match="at least one seed"):
        studies.paper_variants(load_recipe(TINY), seeds=0)
    with pytest.raises(search.TuneError, match="at least one variant"):
        studies.compare(tiny, {}, project_dir=tmp_path / "none")


def test_paper_learning_rate_grid_labels_orders_and_checks_its_rates():
    recipe = load_recipe(TINY)  # lr 0.01
    grid = studies.paper_variants(recipe, seeds=2, lrs=(0.002, 0.01))
    names = list(studies.PAPER_VARIANTS)
    assert list(grid) == [*names, *(f"{v} (lr 0.002)" for v in names), *(f"{v} (seed 1)" for v in names),
                          *(f"{v} (lr 0.002) (seed 1)" for v in names)]  # the recipe's own rate first, then seeds
    assert grid["Model C (lr 0.002) (seed 1)"] == ["model.name=cnn_c", "optimizer.lr=0.002", "train.seed=1"]
    assert list(grid)[:4] == list(studies.paper_variants(recipe))  # a one-rate comparison extends to the grid
    assert load_recipe(recipe, grid["All-CNN-C (lr 0.002)"]).optimizer.lr == 0.002
    other = studies.paper_variants(recipe, lrs=(0.05,))  # the recipe's rate not in the grid: every label says it
    assert list(other)[0] == "All-CNN-C (lr 0.05)" and other["All-CNN-C (lr 0.05)"][-1] == "optimizer.lr=0.05"
    for bad in ((0.001, 0.001), (0.0,), (-0.1, 0.1)):
        with pytest.raises(ZooError, match="--paper-lrs .*positive and different"):
            studies.paper_variants(recipe, lrs=bad)
    assert parse_rates("0.001, 0.002") == (0.001, 0.002)
    with pytest.raises(argparse.ArgumentTypeError, match="separated by commas"):
        parse_rates("0.001;0.002")


def test_a_comparison_resumes_with_added_variants_but_not_changed_ones(tmp_path):
    project = tmp_path / "paper"
    first = {"kind": "fixed", "recipe": resolve(load_recipe(TINY)), "variants": {"A": ["model.name=cnn_c"]}}
    search.prepare_project(project, first, resume=False, overwrite=False)
    (project / "trial_3").mkdir()
    more = {**first, "variants": {"A": ["model.name=cnn_c"], "A (lr 0.002)": ["model.name=cnn_c", "optimizer.lr=0.002"]}}
    assert search.prepare_project(project, more, resume=True, overwrite=False) is True
    assert read_json(project / search.SEARCH)["variants"] == more["variants"]
    changed = {**first, "variants": {"A": ["model.name=all_cnn_c"], "B": ["model.name=cnn_c"]}}
    with pytest.raises(search.TuneError, match="cannot resume .*searches something else \\(variants:"):
        search.prepare_project(project, changed, resume=True, overwrite=False)
    fewer = {**first, "variants": {"A (lr 0.002)": ["model.name=cnn_c", "optimizer.lr=0.002"]}}
    with pytest.raises(search.TuneError, match="cannot resume"):
        search.prepare_project(project, fewer, resume=True, overwrite=False)
    # trial ids keep the folders a shorter comparison made: trial_3, not trial_03, once there are 10+
    assert variant_id(project, 3, 12) == "3" and variant_id(project, 4, 12) == "04"
    assert variant_id(project, 4, 9) == "4"


# ---------------------------------------------------------------------------------- reports
def _trial(tid, status, pool1, pool2, acc, flops, latency, **extra):
    return {"trial_id": tid, "status": status, "label": f"pool1={pool1} pool2={pool2}", "val_accuracy": acc,
            "flops": flops, "latency_ms": latency, "params": 1_369_738, "train_time_s": 10.0,
            "peak_rss_mb": 700.0, "search_rss_mb": 600.0, "peak_rss_scope": "trial process",
            "config": {"downsample": {"pool1": pool1, "pool2": pool2}, "epochs": 1},
            "overrides": [f"model.downsample={{pool1: {pool1}, pool2: {pool2}}}"], **extra}


def _synthetic_study() -> dict:
    trials = [
        _trial("0", "completed", "max", "max", 0.60, 398e6, 9.0),
        _trial("1", "completed", "conv", "conv", 0.55, 271e6, 5.0),
        _trial("2", "completed", "conv", "max", 0.62, 334e6, 7.0),
        _trial("3", "completed", "blur5", "conv", 0.58, 335e6, 8.0),
        _trial("4", "infeasible", "s2d", "s2d", None, 999e6, 3.0, message="over budget"),
        _trial("5", "completed", "blur", "max", 0.50, 398e6, 9.5),
    ]
    sites = [{"site": s, "role": "conv", "published": "conv", "base": "conv", "follows": None,
              "choices": ["max", "conv", "blur", "s2d"], "shared": False, "rule": "searched"} for s in ("pool1", "pool2")]
    return {"kind": "search", "name": "synthetic", "oracle": "random", "objective": "val_accuracy",
            "budget": {"flops": 5e8, "latency_ms": None}, "recipe": resolve(load_recipe(TINY)),
            "space": {"model": "all_cnn_c", "mode": "each", "shortcuts": "follow", "units": ["pool1", "pool2"],
                      "sites": sites, "lr": None, "weight_decay": None, "size": 16},
            "latency": {"batch": 1}, "trials": trials}


def test_report_renders_from_a_synthetic_study_json(tmp_path):
    root = tmp_path / "studies"
    project = root / "synthetic"
    project.mkdir(parents=True)
    (project / "study.json").write_text(json.dumps(_synthetic_study()))
    files = studies.render_report(read_json(project / "study.json"), project)
    study = read_json(files["json"])
    assert study["summary"] == {"trials": 6, "completed": 5, "infeasible": 1, "analysed": 5}
    assert study["pareto"]["flops"] == ["1", "2"]  # cheapest, then the most accurate; 0, 3, 5 are dominated
    assert study["pareto"]["latency_ms"] == ["1", "2"]
    assert study["best"]["trial_id"] == "2"
    eff = {(r["site"], r["choice"]): r for r in study["effects"]}
    assert eff[("pool1", "conv")]["count"] == 2 and eff[("pool1", "conv")]["mean"] == pytest.approx(0.585)
    assert eff[("pool1", "conv")]["std"] == pytest.approx(0.0495, abs=1e-4)
    assert eff[("pool1", "blur")]["count"] == 2 and eff[("pool1", "blur")]["min"] == 0.50  # blur5 and blur(3)
    assert eff[("pool1", "blur filter 5")]["detail"] and eff[("pool1", "blur filter 3")]["count"] == 1
    assert eff[("(any site)", "max")]["count"] == 4  # site uses: pool1 once, pool2 three times
    assert [u["choice"] for u in study["uniform"]] == ["max", "conv"]
    report = files["markdown"].read_text()
    for row in ("| 0 | completed | max | max |", "| 1 • | completed | conv | conv |", "| 2 ★ • | completed | conv | max |",
                "| 4 | infeasible | s2d | s2d |"):
        assert row in report
    assert "| pool1 | conv | 2 | 58.50 ± 4.95 | 55.00–62.00 |" in report
    assert "trial 1 (pool1=conv pool2=conv: 55.00% at 271.00) → trial 2" in report
    exported = load_recipe(files["recipe"])
    assert exported.model.options["downsample"] == {"pool1": "conv", "pool2": "max"}
    for key in ("pareto_flops", "pareto_latency", "effects"):
        assert files[key].read_bytes()[:4] == b"\x89PNG"
    # the cross-architecture index, with a paper comparison beside the search
    paper = root / "paper-long"  # the folder, not the study's name, tells repeated comparisons apart
    paper.mkdir()
    variants = [("All-CNN-C", "all_cnn_c", 0.55, 271e6), ("ConvPool-CNN-C", "convpool_cnn_c", 0.57, 398e6),
                ("Strided-CNN-C", "strided_cnn_c", 0.50, 94e6), ("Model C", "cnn_c", 0.52, 221e6)]
    fixed = {"kind": "fixed", "name": "paper", "recipe": study["recipe"], "oracle": "fixed",
             "trials": [{"trial_id": str(i), "status": "completed", "variant": v, "label": v, "val_accuracy": a,
                         "flops": f, "latency_ms": 5.0, "config": {"model": m, "epochs": 1}, "overrides": [f"model.name={m}"]}
                        for i, (v, m, a, f) in enumerate(variants)]}
    studies.render_report(fixed, paper)
    readme = studies.write_index(root).read_text()
    assert "[synthetic](synthetic/report.md)" in readme and "[paper-long](paper-long/report.md)" in readme
    assert f"(same data, {study['recipe']['train']['epochs']} epochs, seed " in readme
    assert "**Pooling vs striding.** Against all-strided convolutions (all-conv: 55.00%" in readme
    assert "all-max 60.00% (+5.00 pts, 1.47× FLOPs, 1.80× latency)" in readme
    assert "| ConvPool-CNN-C | convpool_cnn_c | completed | 57.00 |" in readme and "| 9.31 |" in readme
    assert "(ConvPool-CNN-C) instead of striding it (All-CNN-C): +2.00 pts" in readme
    assert ("**Paper order** (published test error, best first): All-CNN-C < ConvPool-CNN-C < Model C < "
            "Strided-CNN-C; here (validation accuracy, best first): ConvPool-CNN-C > All-CNN-C > Model C > "
            "Strided-CNN-C. 5 of 6 pairs rank as in the paper") in readme
    # a second seed per variant: means, ranges and a per-variant summary
    fixed["trials"] += [{**t, "trial_id": str(4 + i), "variant": f"{t['variant']} (seed 1)", "val_accuracy": a}
                        for i, (t, a) in enumerate(zip(fixed["trials"], (0.59, 0.51, 0.48, 0.50)))]
    studies.render_report(fixed, paper)
    readme = studies.write_index(root).read_text()
    assert "(ConvPool-CNN-C) instead of striding it (All-CNN-C): -3.00 pts validation accuracy (means over 2 and 2 seeds)" in readme
    assert "| All-CNN-C | 2 | 57.00 | 55.00–59.00 |" in readme and "| Model C (seed 1) | cnn_c | completed | 50.00 |" in readme
    # a second learning rate: every variant at its best rate, as in the paper
    fixed["trials"] += [{**t, "trial_id": str(8 + i), "variant": f"{t['variant']} (lr 0.002)", "val_accuracy": a,
                         "config": {**t["config"], "lr": 0.002}}
                        for i, (t, a) in enumerate(zip(fixed["trials"][:4], (0.62, 0.50, 0.40, 0.41)))]
    for t in fixed["trials"][:8]:
        t["config"] = {**t["config"], "lr": 0.001}
    studies.render_report(fixed, paper)
    readme = studies.write_index(root).read_text()
    assert "**Learning rate per variant.**" in readme and ", learning rates 0.001, 0.002); the last column" in readme
    assert "| variant | val acc % at lr 0.001 | val acc % at lr 0.002 | chosen lr |" in readme
    assert "| All-CNN-C | 57.00 | 62.00 | 0.002 |" in readme and "| Model C | 51.00 | 41.00 | 0.001 |" in readme
    assert "(ConvPool-CNN-C) instead of striding it (All-CNN-C): -8.00 pts validation accuracy (means over 2 and 1 seeds)" in readme


def test_pareto_front_ties_and_missing_costs():
    trials = [{"trial_id": i, "val_accuracy": a, "flops": f} for i, a, f in
              [("a", 0.5, 10), ("b", 0.6, 10), ("c", 0.6, 20), ("d", 0.7, 30), ("e", 0.9, None)]]
    assert studies.pareto_front(trials, "flops") == ["b", "d"]
