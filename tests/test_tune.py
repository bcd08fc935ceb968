"""keras-tuner search over downsampling choices (zoo.search.tuner) and study reports (zoo.studies.study).

Tiny data throughout: All-CNN-C at 16x16 on 200 images of the embedded CIFAR-10 sample, 1 epoch.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from zoo.models import registry
from zoo.studies import study as zstudy
from zoo.search import tuner as ztune
from zoo.errors import ZooError
from zoo.training.recipe import load_recipe, resolve
from zoo.report import read_json

ROOT = Path(__file__).resolve().parent.parent
TINY = {
    "name": "tiny",
    "description": "All-CNN-C at 16x16 on 200 embedded images, 1 epoch (tests only)",
    "model": {"name": "all_cnn_c"},
    "data": {"source": "embedded", "limit": 200, "validation": 50, "batch_size": 32, "image_size": 16,
             "normalization": "per_channel", "augment": []},
    "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9},
    "schedule": {"name": "constant"},
    "train": {"epochs": 1, "seed": 0, "progress": "none"},
    "output": {"tensorboard": False},
}
FAST = {"latency_repeats": 5, "verbose": False}
POOL1 = {"pool1": ["max", "conv"]}  # 2 configurations: max (81.8 M FLOPs at 16x16) and conv (65.8 M)


@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def _recipe(name: str, **options):
    return load_recipe({"name": "t", "description": "t", "model": {"name": name, **options}})


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


# ------------------------------------------------------------------------------ search spaces
FAMILIES = [  # (model, options, shortcuts): every family, with and without shortcut / mirror sites
    ("all_cnn_c", {}, "follow"),
    ("cnn_c", {}, "follow"),
    ("resnet20", {}, "follow"),
    ("resnet50", {}, "follow"),
    ("resnet50", {}, "search"),
    ("squeezenet1_1", {}, "follow"),
    ("squeezenet1_1", {"stem": "cifar"}, "follow"),
    ("fishnet99", {}, "follow"),
    ("vgg16", {}, "follow"),
]


@pytest.mark.parametrize("name,options,shortcuts", FAMILIES,
                         ids=[f"{n}-{'-'.join(map(str, o.values())) or 'default'}-{s}" for n, o, s in FAMILIES])
def test_search_space_matches_the_models_sites(name, options, shortcuts):
    sites = registry.sites(name, **options)
    published = {s.name: s.default for s in sites}
    space = ztune.SearchSpace.create(_recipe(name, **options), shortcuts=shortcuts)
    main = [s.name for s in sites if s.follows is None and published[s.name] != "none"]
    followers = {s.name: s.follows for s in sites if s.follows}
    expected = main + ([f for f, m in followers.items() if m in main] if shortcuts == "search" else [])
    assert sorted(space.units()) == sorted(expected)
    assert all(space.searched[u] == list(ztune.DEFAULT_CHOICES) for u in expected)
    assert space.followers == ({f: m for f, m in followers.items() if m in main} if shortcuts == "follow" else {})
    hp = space.hyperparameters()
    names = {p.name: p for p in hp.space}
    for unit in expected:  # one Choice per site, blur's filter size only inside blur's conditional scope
        assert names[f"ds/{unit}"].values == list(ztune.DEFAULT_CHOICES)
        size = names[f"ds/{unit}/filter_size"]
        assert [(c.name, c.values) for c in size.conditions] == [(f"ds/{unit}", ["blur"])]
    assert len(hp.space) == 2 * len(expected)
    # sites the recipe leaves at 'none' (CIFAR stems) stay fixed; every uniform configuration builds a plan
    assert all(space.base[s] == "none" for s, d in published.items() if d == "none")
    for values in space.uniform_values(hp):
        ds = space.downsample(values)
        assert set(ds) == set(published)
        chosen = {ds[u] for u in expected}
        assert len(chosen) == 1
        for follower, main_site in space.followers.items():
            assert ds[follower] == ds[main_site]
        registry.resolve_plan(name, **options, downsample=ds)


def test_shared_space_lr_weight_decay_and_explicit_sites():
    space = ztune.SearchSpace.create(_recipe("vgg16"), sites="shared", tune_lr=True, tune_wd=True)
    hp = space.hyperparameters()
    assert [p.name for p in hp.space] == ["ds/all", "ds/all/filter_size", "lr", "weight_decay"]
    lr, wd = hp.space[2], hp.space[3]
    assert (lr.sampling, lr.min_value, lr.max_value) == ("log", 0.1 / 5, 0.1 * 5)
    assert (wd.sampling, wd.min_value, wd.max_value) == ("log", 1e-5, 1e-3)  # the recipe has no weight decay
    ds = space.downsample({"ds/all": "blur", "ds/all/filter_size": 5})
    assert set(ds.values()) == {"blur5"} and len(ds) == 5
    assert space.size() is None
    # a mapping searches only the sites it names; fixed 'blur5' keeps its size; shortcuts follow
    space = ztune.SearchSpace.create(_recipe("resnet20"), choices={"stage3": ["max", "blur5", "conv"]})
    assert space.searched == {"stage3": ["max", "blur5", "conv"]}
    assert space.downsample({"ds/stage3": "blur5"}) == {"stage2": "conv", "shortcut2": "conv", "stage3": "blur5",
                                                         "shortcut3": "blur5"}
    assert space.size() == 3
    assert [p.name for p in space.hyperparameters().space] == ["ds/stage3"]  # no filter size to search


@pytest.mark.parametrize("kwargs,error,pattern", [
    ({"choices": {"stage9": ["max", "conv"]}}, ZooError, r"unknown downsampling site.*'stage9'.*stage2"),
    ({"choices": ["max", "maxx"]}, ZooError, r"unknown downsampling choice.*'maxx'.*Did you mean 'max'"),
    ({"choices": []}, ztune.TuneError, r"empty"),
    ({"choices": {"stage2": []}}, ztune.TuneError, r"no choices for site 'stage2'.*empty"),
    ({"choices": ["max"]}, ztune.TuneError, r"search space of resnet20 is empty"),
    ({"choices": {"shortcut2": ["max", "avg"]}}, ztune.TuneError, r"follows 'stage2'.*shortcuts='search'"),
    ({"sites": "shared", "shortcuts": "search"}, ztune.TuneError, r"needs sites='each'"),
    ({"sites": "every"}, ztune.TuneError, r"'each'.*'shared'"),
])
def test_bad_spaces_are_clear_errors(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        ztune.SearchSpace.create(_recipe("resnet20"), **kwargs)


@pytest.mark.parametrize("kwargs,pattern", [
    ({"budget_flops": "1M"}, r"no configuration of the search space meets the budget.*cheapest.*pool1=conv"),
    ({"budget_latency_ms": 1e-6}, r"no configuration of the search space meets the budget.*ms/image"),
    ({"oracle": "grid"}, r"oracle='grid'"),
    ({"overrides": ["data.validation=0"]}, r"holds out no validation images"),
    ({"budget_flops": "lots"}, r"budget_flops='lots'"),
    ({"choices": {"pool3": ["max", "conv"]}}, r"unknown downsampling site of all_cnn_c 'pool3'"),
    ({"overrides": ["train.swa_start_epoch=1"]}, r"sets train.swa_start_epoch: searches train each trial without"),
    ({"overrides": ["train.teachers=[resnet20:cifar10]"]}, r"sets train.teachers: .*remove them"),
])
def test_bad_requests_fail_before_any_training(tiny, tmp_path, kwargs, pattern):
    project = tmp_path / "project"
    options = {"choices": POOL1, "max_trials": 2, "isolate": "none", **FAST, **kwargs}
    with pytest.raises(ValueError, match=pattern):
        ztune.tune(tiny, project_dir=project, **options)
    assert not project.exists()  # nothing was created, nothing trained


def test_parsing_helpers():
    assert ztune.parse_flops("300M") == 3e8 and ztune.parse_flops("1.5G") == 1.5e9 and ztune.parse_flops(5e7) == 5e7
    assert ztune.parse_choices(["max,avg , conv"]) == ["max", "avg", "conv"]
    assert ztune.parse_choices(["pool1=max,conv", "pool2=blur5"]) == {"pool1": ["max", "conv"], "pool2": ["blur5"]}
    assert ztune.parse_choices(None) is None
    parser = ztune.add_tune_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["r", "train.epochs=2", "--choices", "pool1=max,conv", "--budget-flops", "70M",
                              "--oracle", "bayesian", "--resume"])
    options = ztune.tune_options(args)
    assert options["choices"] == POOL1 and options["oracle"] == "bayesian" and options["resume"]
    assert args.overrides == ["train.epochs=2"] and args.func is ztune.tune_from_args


@pytest.mark.parametrize("kind", ["random", "bayesian", "hyperband"])
def test_oracles_and_uniform_first(kind):
    space = ztune.SearchSpace.create(load_recipe(TINY))
    oracle = ztune._make_oracle(kind, space, max_trials=7, seed=0, epochs=3, uniform_first=True)
    assert oracle.max_trials == 7 and oracle.max_consecutive_failed_trials > 7  # rejections never stop it
    if kind != "hyperband":  # the uniform configurations come first: all-max, all-avg, ...
        assert [v["ds/pool1"] for v in oracle.zoo_initial] == list(ztune.DEFAULT_CHOICES)
        assert all(v["ds/pool1"] == v["ds/pool2"] for v in oracle.zoo_initial)


def test_bayesian_oracle_without_its_extras_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a))
    space = ztune.SearchSpace.create(load_recipe(TINY))
    with pytest.raises(ztune.TuneError, match=r"needs scikit-learn .*keras-tuner\[bayesian\]"):
        ztune._make_oracle("bayesian", space, max_trials=7, seed=0, epochs=3, uniform_first=True)


# --------------------------------------------------------------------------------- searching
def test_two_trial_search_end_to_end_writes_the_report(tiny, tmp_path):
    project = tmp_path / "search"
    result = ztune.tune(tiny, project_dir=project, choices=POOL1, max_trials=2, isolate="none", **FAST)
    assert [t["status"] for t in result.trials] == ["completed", "completed"]
    for name in ("study.json", "trials.csv", "report.md", "pareto_flops.png", "pareto_latency.png", "effects.png",
                 "best-recipe.yaml", "search.json", "oracle.json"):
        assert (project / name).stat().st_size > 0, name
    assert (project / "pareto_flops.png").read_bytes()[:4] == b"\x89PNG"
    study = read_json(project / "study.json")
    assert study["summary"]["completed"] == 2 and study["kind"] == "search"
    for trial in study["trials"]:  # every trial records what the report needs
        for key in ("val_accuracy", "params", "flops", "latency_ms", "train_time_s", "peak_rss_mb",
                    "search_rss_mb", "config", "overrides", "label"):
            assert trial[key] is not None, key
        record = read_json(project / trial["record"])
        assert record["recipe"]["model"]["downsample"]["pool1"] == trial["config"]["downsample"]["pool1"]
        assert len(record["history"]) == 1 and record["latency"]["repeats"] == 5
    assert {t["config"]["downsample"]["pool1"] for t in study["trials"]} == {"max", "conv"}
    flops = {t["config"]["downsample"]["pool1"]: t["flops"] for t in study["trials"]}
    assert flops["max"] > flops["conv"]  # pooling keeps the convolution at full resolution
    report = (project / "report.md").read_text()
    assert "| 0" in report and "| 1" in report and "## Pareto fronts" in report and "## Effect of each choice" in report
    assert len((project / "trials.csv").read_text().strip().splitlines()) == 3
    # the best configuration as a recipe zoo train accepts
    from zoo.training.run import validate_recipe

    exported = load_recipe(project / "best-recipe.yaml")
    validate_recipe(exported)
    best = result.best
    assert exported.model.options["downsample"] == best["config"]["downsample"]
    assert exported.data.limit == 200 and exported.train.epochs == 1
    # never silently reuse or wipe a project
    with pytest.raises(ztune.ProjectExistsError, match=r"--resume.*--overwrite"):
        ztune.tune(tiny, project_dir=project, choices=POOL1, max_trials=2, **FAST)
    with pytest.raises(ztune.TuneError, match=r"cannot resume.*optimizer.lr"):
        ztune.tune(tiny, project_dir=project, choices=POOL1, max_trials=2, resume=True,
                   overrides=["optimizer.lr=0.02"], **FAST)
    with pytest.raises(ztune.TuneError, match="not both"):
        ztune.tune(tiny, project_dir=project, choices=POOL1, resume=True, overwrite=True, **FAST)
    before = [read_json(project / t["record"])["started"] for t in study["trials"]]
    again = ztune.tune(tiny, project_dir=project, choices=POOL1, max_trials=2, resume=True, **FAST)
    assert len(again.trials) == 2  # finished: nothing trained again
    assert [read_json(project / t["record"])["started"] for t in again.trials] == before
    other = tmp_path / "not-a-project"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ztune.TuneError, match="not a zoo tune project"):
        ztune.tune(tiny, project_dir=other, choices=POOL1, overwrite=True, **FAST)
    assert (other / "notes.txt").exists()


def test_budget_rejects_over_budget_trials_without_training(tiny, tmp_path):
    project = tmp_path / "budget"
    result = ztune.tune(tiny, project_dir=project, choices=POOL1, max_trials=2, budget_flops="70M",
                        isolate="none", **FAST)
    by_choice = {t["config"]["downsample"]["pool1"]: t for t in result.trials}
    rejected, trained = by_choice["max"], by_choice["conv"]
    assert rejected["status"] == "infeasible" and "budget" in rejected["message"]
    assert rejected["flops"] > 70e6 and rejected.get("val_accuracy") is None
    assert read_json(project / rejected["record"])["history"] == []  # never trained
    assert trained["status"] == "completed" and trained["flops"] <= 70e6  # the search went on after the rejection
    oracle = read_json(project / f"trial_{rejected['trial_id']}" / "trial.json")
    assert oracle["status"] == "FAILED"
    study = read_json(project / "study.json")
    assert study["summary"]["infeasible"] == 1 and study["pareto"]["flops"] == [trained["trial_id"]]
    assert "over budget" in (project / "report.md").read_text()


def test_crashing_trials_fail_and_three_in_a_row_stop_the_search(tiny, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(ztune, "run_config", boom)
    project = tmp_path / "crash"
    with pytest.raises(ztune.TuneError, match=r"3 trials in a row crashed.*boom.*--resume"):
        ztune.tune(tiny, project_dir=project, max_trials=6, isolate="none", **FAST)
    records = ztune.read_records(project)
    assert [r["status"] for r in records] == ["failed"] * 3 and "boom" in records[0]["traceback"]


def test_compare_runs_fixed_variants_each_in_its_own_process(tiny, tmp_path):
    project = tmp_path / "paper"
    variants = {"Strided-CNN-C": ["model.name=strided_cnn_c"]}
    result = ztune.compare(tiny, variants, project_dir=project, **FAST)  # isolate="process", the default
    (trial,) = result.trials
    assert trial["status"] == "completed" and trial["variant"] == "Strided-CNN-C"
    assert trial["config"]["model"] == "strided_cnn_c" and trial["params"] == 954_730
    record = read_json(project / trial["record"])
    assert record["recipe"]["model"]["name"] == "strided_cnn_c" and record["recipe"]["train"]["seed"] == 0
    assert record["peak_rss_scope"] == "trial process" and record["trial_pid"] != os.getpid()
    assert record["peak_rss_mb"] > 100 and record["search_rss_mb"] > 100
    assert "Strided-CNN-C" in (project / "report.md").read_text()
    again = ztune.compare(tiny, variants, project_dir=project, resume=True, **FAST)
    assert [t["started"] for t in again.trials] == [t["started"] for t in result.trials]  # nothing retrained
    assert list(zstudy.paper_variants(load_recipe(TINY))) == list(zstudy.PAPER_VARIANTS)
    two = zstudy.paper_variants(load_recipe(TINY), seeds=2)
    assert list(two)[4:] == [f"{v} (seed 1)" for v in zstudy.PAPER_VARIANTS]
    assert two["Model C (seed 1)"] == ["model.name=cnn_c", "train.seed=1"] and two["Model C"] == ["model.name=cnn_c"]
    with pytest.raises(ZooError, match="at least one seed"):
        zstudy.paper_variants(load_recipe(TINY), seeds=0)
    with pytest.raises(ztune.TuneError, match="at least one variant"):
        ztune.compare(tiny, {}, project_dir=tmp_path / "none")


def test_paper_learning_rate_grid_labels_orders_and_checks_its_rates():
    recipe = load_recipe(TINY)  # lr 0.01
    grid = zstudy.paper_variants(recipe, seeds=2, lrs=(0.002, 0.01))
    names = list(zstudy.PAPER_VARIANTS)
    assert list(grid) == [*names, *(f"{v} (lr 0.002)" for v in names), *(f"{v} (seed 1)" for v in names),
                          *(f"{v} (lr 0.002) (seed 1)" for v in names)]  # the recipe's own rate first, then seeds
    assert grid["Model C (lr 0.002) (seed 1)"] == ["model.name=cnn_c", "optimizer.lr=0.002", "train.seed=1"]
    assert list(grid)[:4] == list(zstudy.paper_variants(recipe))  # a one-rate comparison extends to the grid
    assert load_recipe(recipe, grid["All-CNN-C (lr 0.002)"]).optimizer.lr == 0.002
    other = zstudy.paper_variants(recipe, lrs=(0.05,))  # the recipe's rate not in the grid: every label says it
    assert list(other)[0] == "All-CNN-C (lr 0.05)" and other["All-CNN-C (lr 0.05)"][-1] == "optimizer.lr=0.05"
    for bad in ((0.001, 0.001), (0.0,), (-0.1, 0.1)):
        with pytest.raises(ZooError, match="--paper-lrs .*positive and different"):
            zstudy.paper_variants(recipe, lrs=bad)
    assert zstudy._rates("0.001, 0.002") == (0.001, 0.002)
    with pytest.raises(argparse.ArgumentTypeError, match="separated by commas"):
        zstudy._rates("0.001;0.002")


def test_a_comparison_resumes_with_added_variants_but_not_changed_ones(tmp_path):
    project = tmp_path / "paper"
    first = {"kind": "fixed", "recipe": resolve(load_recipe(TINY)), "variants": {"A": ["model.name=cnn_c"]}}
    ztune.prepare_project(project, first, resume=False, overwrite=False)
    (project / "trial_3").mkdir()
    more = {**first, "variants": {"A": ["model.name=cnn_c"], "A (lr 0.002)": ["model.name=cnn_c", "optimizer.lr=0.002"]}}
    assert ztune.prepare_project(project, more, resume=True, overwrite=False) is True
    assert read_json(project / ztune.SEARCH)["variants"] == more["variants"]
    changed = {**first, "variants": {"A": ["model.name=all_cnn_c"], "B": ["model.name=cnn_c"]}}
    with pytest.raises(ztune.TuneError, match="cannot resume .*searches something else \\(variants:"):
        ztune.prepare_project(project, changed, resume=True, overwrite=False)
    fewer = {**first, "variants": {"A (lr 0.002)": ["model.name=cnn_c", "optimizer.lr=0.002"]}}
    with pytest.raises(ztune.TuneError, match="cannot resume"):
        ztune.prepare_project(project, fewer, resume=True, overwrite=False)
    # trial ids keep the folders a shorter comparison made: trial_3, not trial_03, once there are 10+
    assert ztune._variant_id(project, 3, 12) == "3" and ztune._variant_id(project, 4, 12) == "04"
    assert ztune._variant_id(project, 4, 9) == "4"


def test_resume_after_a_killed_search(tiny, tmp_path, capsys):
    project = tmp_path / "killed"
    cmd = [sys.executable, "-m", "zoo.search.tuner", str(tiny), "--project-dir", str(project), "--max-trials", "2",
           "--isolate", "none", "--latency-repeats", "5", "--choices", "pool1=max,conv"]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    first = project / "trial_0" / ztune.RECORD
    try:
        deadline = time.monotonic() + 150
        while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert first.exists(), "no trial finished in time"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    started = read_json(first)["started"]
    finished_before = {p.parent.name for p in project.glob(f"trial_*/{ztune.RECORD}")}
    assert finished_before == {"trial_0"}
    assert ztune.main(cmd[3:]) == 1  # the same command without --resume: a clear error, nothing touched
    err = capsys.readouterr().err
    assert "already holds a search (1 finished trial(s))" in err and "--resume" in err and "--overwrite" in err
    assert ztune.main(cmd[3:] + ["--resume"]) == 0  # the same command with --resume (in this process)
    out = capsys.readouterr().out
    assert "resuming" in out and "zoo.tune: trial 1 completed" in out
    assert "zoo.tune: trial 0 completed" not in out  # trial 0 was not run again
    study = read_json(project / "study.json")
    assert [t["status"] for t in study["trials"]] == ["completed"] * 2
    assert len({t["label"] for t in study["trials"]}) == 2  # two different configurations
    assert read_json(first)["started"] == started  # the finished trial was not trained again


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
    files = zstudy.render_report(read_json(project / "study.json"), project)
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
    zstudy.render_report(fixed, paper)
    readme = zstudy.write_index(root).read_text()
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
    zstudy.render_report(fixed, paper)
    readme = zstudy.write_index(root).read_text()
    assert "(ConvPool-CNN-C) instead of striding it (All-CNN-C): -3.00 pts validation accuracy (means over 2 and 2 seeds)" in readme
    assert "| All-CNN-C | 2 | 57.00 | 55.00–59.00 |" in readme and "| Model C (seed 1) | cnn_c | completed | 50.00 |" in readme
    # a second learning rate: every variant at its best rate, as in the paper
    fixed["trials"] += [{**t, "trial_id": str(8 + i), "variant": f"{t['variant']} (lr 0.002)", "val_accuracy": a,
                         "config": {**t["config"], "lr": 0.002}}
                        for i, (t, a) in enumerate(zip(fixed["trials"][:4], (0.62, 0.50, 0.40, 0.41)))]
    for t in fixed["trials"][:8]:
        t["config"] = {**t["config"], "lr": 0.001}
    zstudy.render_report(fixed, paper)
    readme = zstudy.write_index(root).read_text()
    assert "**Learning rate per variant.**" in readme and ", learning rates 0.001, 0.002); the last column" in readme
    assert "| variant | val acc % at lr 0.001 | val acc % at lr 0.002 | chosen lr |" in readme
    assert "| All-CNN-C | 57.00 | 62.00 | 0.002 |" in readme and "| Model C | 51.00 | 41.00 | 0.001 |" in readme
    assert "(ConvPool-CNN-C) instead of striding it (All-CNN-C): -8.00 pts validation accuracy (means over 2 and 1 seeds)" in readme


def test_pareto_front_ties_and_missing_costs():
    trials = [{"trial_id": i, "val_accuracy": a, "flops": f} for i, a, f in
              [("a", 0.5, 10), ("b", 0.6, 10), ("c", 0.6, 20), ("d", 0.7, 30), ("e", 0.9, None)]]
    assert zstudy.pareto_front(trials, "flops") == ["b", "d"]


# ------------------------------------------------------------------------- chief and workers
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the chief exited early ({proc.returncode})")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise AssertionError("the chief did not start serving in time")


def _run_chief_and_workers(cmd, env, port, procs, logs) -> None:
    """Start the chief, wait until it serves, start two workers, wait for all (bounded); kill what is left."""
    try:
        procs["chief"] = subprocess.Popen(cmd + ["--overwrite"], env={**env, "KERASTUNER_TUNER_ID": "chief"},
                                          stdout=logs["chief"], stderr=subprocess.STDOUT, start_new_session=True)
        _wait_for_port(port, procs["chief"], timeout=120)
        for worker in ("tuner0", "tuner1"):
            procs[worker] = subprocess.Popen(cmd, env={**env, "KERASTUNER_TUNER_ID": worker}, stdout=logs[worker],
                                             stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 300
        for proc in procs.values():
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        codes = {name: proc.returncode for name, proc in procs.items()}
        assert codes == {"chief": 0, "tuner0": 0, "tuner1": 0}, codes
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)


@pytest.mark.slow
def test_chief_and_two_workers_on_localhost(tiny, tmp_path):
    """keras-tuner's distributed mode: the chief serves the oracle on a free localhost port, two
    workers train the trials; bounded waits, every process killed at the end."""
    project, port = tmp_path / "distributed", _free_port()
    cmd = [sys.executable, "-m", "zoo.search.tuner", str(tiny), "--project-dir", str(project), "--max-trials", "3",
           "--isolate", "none", "--latency-repeats", "5", "--choices", "pool1=max,conv", "--choices", "pool2=avg,conv"]
    env = {**_env(), "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port)}
    procs: dict[str, subprocess.Popen] = {}
    with contextlib.ExitStack() as stack:
        logs = {name: stack.enter_context(open(tmp_path / f"{name}.log", "w")) for name in ("chief", "tuner0", "tuner1")}
        _run_chief_and_workers(cmd, env, port, procs, logs)
    study = read_json(project / "study.json")
    assert study["summary"]["completed"] == 3
    assert {t["tuner_id"] for t in study["trials"]} <= {"tuner0", "tuner1"}  # the chief trains nothing
    assert (project / "report.md").exists() and (project / "chief.json").exists()
