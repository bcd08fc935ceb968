"""keras-tuner searches over downsampling choices (zoo.search): spaces, budgets, oracles, trials.

Tiny data throughout (tests/tiny_search.py): All-CNN-C at 16x16 on 200 embedded images, 1 epoch.
"""
from __future__ import annotations

import argparse
import importlib.util

import keras_tuner as kt
import pytest

import zoo.search.trial as ztrial
from tiny_search import FAST, POOL1, TINY, model_recipe, write_recipe
from zoo import search, studies
from zoo.cli import tune as cli_tune
from zoo.errors import ZooError
from zoo.models import registry
from zoo.report import read_json
from zoo.search.errors import SearchFailedError
from zoo.training import load_recipe, validate_recipe


@pytest.fixture
def tiny(tmp_path):
    return write_recipe(tmp_path / "tiny.yaml")


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
    space = search.SearchSpace.create(model_recipe(name, **options), shortcuts=shortcuts)
    main = [s.name for s in sites if s.follows is None and published[s.name] != "none"]
    followers = {s.name: s.follows for s in sites if s.follows}
    expected = main + ([f for f, m in followers.items() if m in main] if shortcuts == "search" else [])
    assert sorted(space.units()) == sorted(expected)
    assert all(space.searched[u] == list(search.DEFAULT_CHOICES) for u in expected)
    assert space.followers == ({f: m for f, m in followers.items() if m in main} if shortcuts == "follow" else {})
    hp = space.hyperparameters()
    names = {p.name: p for p in hp.space}
    for unit in expected:  # one Choice per site, blur's filter size only inside blur's conditional scope
        assert names[f"ds/{unit}"].values == list(search.DEFAULT_CHOICES)
        size = names[f"ds/{unit}/filter_size"]
        assert [(c.name, c.values) for c in size.conditions] == [(f"ds/{unit}", ["blur"])]
    assert len(hp.space) == 2 * len(expected)
    # sites the recipe leaves at 'none' (CIFAR stems) stay fixed; every uniform configuration builds a plan
    assert all(space.base[s] == "none" for s, d in published.items() if d == "none")
    for values in space.uniform_values(hp):
        ds = space.downsample(values)
        assert set(ds) == set(published)
        assert len({ds[u] for u in expected}) == 1
        for follower, main_site in space.followers.items():
            assert ds[follower] == ds[main_site]
        registry.resolve_plan(name, **options, downsample=ds)


def test_shared_space_lr_weight_decay_and_explicit_sites():
    space = search.SearchSpace.create(model_recipe("vgg16"), sites="shared", tune_lr=True, tune_wd=True)
    hp = space.hyperparameters()
    assert [p.name for p in hp.space] == ["ds/all", "ds/all/filter_size", "lr", "weight_decay"]
    lr, wd = hp.space[2], hp.space[3]
    assert (lr.sampling, lr.min_value, lr.max_value) == ("log", 0.1 / 5, 0.1 * 5)
    assert (wd.sampling, wd.min_value, wd.max_value) == ("log", 1e-5, 1e-3)  # the recipe has no weight decay
    ds = space.downsample({"ds/all": "blur", "ds/all/filter_size": 5})
    assert set(ds.values()) == {"blur5"} and len(ds) == 5
    assert space.size() is None
    # a mapping searches only the sites it names; fixed 'blur5' keeps its size; shortcuts follow
    space = search.SearchSpace.create(model_recipe("resnet20"), choices={"stage3": ["max", "blur5", "conv"]})
    assert space.searched == {"stage3": ["max", "blur5", "conv"]}
    assert space.downsample({"ds/stage3": "blur5"}) == {"stage2": "conv", "shortcut2": "conv", "stage3": "blur5",
                                                         "shortcut3": "blur5"}
    assert space.size() == 3
    assert [p.name for p in space.hyperparameters().space] == ["ds/stage3"]  # no filter size to search


@pytest.mark.parametrize("kwargs,error,pattern", [
    ({"choices": {"stage9": ["max", "conv"]}}, ZooError, r"unknown downsampling site.*'stage9'.*stage2"),
    ({"choices": ["max", "maxx"]}, ZooError, r"unknown downsampling choice.*'maxx'.*Did you mean 'max'"),
    ({"choices": []}, search.TuneError, r"empty"),
    ({"choices": {"stage2": []}}, search.TuneError, r"no choices for site 'stage2'.*empty"),
    ({"choices": ["max"]}, search.TuneError, r"search space of resnet20 is empty"),
    ({"choices": {"shortcut2": ["max", "avg"]}}, search.TuneError, r"follows 'stage2'.*shortcuts='search'"),
    ({"sites": "shared", "shortcuts": "search"}, search.TuneError, r"needs sites='each'"),
    ({"sites": "every"}, search.TuneError, r"'each'.*'shared'"),
])
def test_bad_spaces_are_clear_errors(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        search.SearchSpace.create(model_recipe("resnet20"), **kwargs)


@pytest.mark.parametrize("kwargs,pattern", [
    ({"budget_flops": "1M"}, r"no configuration of the search space meets the budget.*cheapest.*pool1=conv"),
    ({"budget_latency_ms": 1e-6}, r"no configuration of the search space meets the budget.*ms/image"),
    ({"oracle": "grid"}, r"oracle='grid'"),
    ({"isolate": "thread"}, r"isolate='thread'"),
    ({"overrides": ["data.validation=0"]}, r"holds out no validation images"),
    ({"budget_flops": "lots"}, r"budget_flops='lots'"),
    ({"budget_flops": -1}, r"budgets must be positive"),
    ({"choices": {"pool3": ["max", "conv"]}}, r"unknown downsampling site of all_cnn_c 'pool3'"),
    ({"overrides": ["output.name=mine"]}, r"output.name='mine' is not honoured by the trial entry point"),
])
def test_bad_requests_fail_before_any_training(tiny, tmp_path, kwargs, pattern):
    project = tmp_path / "project"
    options = {"choices": POOL1, "max_trials": 2, "isolate": "none", **FAST, **kwargs}
    with pytest.raises(ZooError, match=pattern):
        search.tune(tiny, project_dir=project, **options)
    assert not project.exists()  # nothing was created, nothing trained


def test_parsing_helpers():
    assert search.parse_flops("300M") == 3e8 and search.parse_flops("1.5G") == 1.5e9
    assert search.parse_flops(5e7) == 5e7
    assert search.parse_choices(["max,avg , conv"]) == ["max", "avg", "conv"]
    assert search.parse_choices(["pool1=max,conv", "pool2=blur5"]) == {"pool1": ["max", "conv"], "pool2": ["blur5"]}
    assert search.parse_choices(None) is None
    parser = argparse.ArgumentParser()
    cli_tune.add_arguments(parser, "tune")
    args = parser.parse_args(["r", "train.epochs=2", "--choices", "pool1=max,conv", "--budget-flops", "70M",
                              "--oracle", "bayesian", "--resume"])
    options = cli_tune.search_options(args)
    assert options["choices"] == POOL1 and options["oracle"] == "bayesian" and options["resume"]
    assert args.overrides == ["train.epochs=2"]


@pytest.mark.parametrize("kind", ["random", "bayesian", "hyperband"])
def test_oracles_and_uniform_first(kind):
    space = search.SearchSpace.create(load_recipe(TINY))
    oracle = search.make_oracle(kind, space, max_trials=7, seed=0, epochs=3, uniform_first=True)
    assert oracle.max_trials == 7 and oracle.max_consecutive_failed_trials > 7  # rejections never stop it
    if kind != "hyperband":  # the uniform configurations come first: all-max, all-avg, ...
        assert [v["ds/pool1"] for v in oracle.zoo_initial] == list(search.DEFAULT_CHOICES)
        assert all(v["ds/pool1"] == v["ds/pool2"] for v in oracle.zoo_initial)


def test_uniform_configurations_are_proposed_once_each(tmp_path):
    """The uniform-first oracle skips configurations its trials already have (public Oracle.trials)."""
    space = search.SearchSpace.create(load_recipe(TINY), choices=POOL1)
    oracle = search.make_oracle("random", space, max_trials=2, seed=0, epochs=1, uniform_first=True)
    kt.engine.base_tuner.BaseTuner(oracle, directory=str(tmp_path), project_name="p")  # gives it a project
    first, second = oracle.create_trial("a"), oracle.create_trial("b")
    assert [first.hyperparameters.values, second.hyperparameters.values] == [{"ds/pool1": "max"},
                                                                                {"ds/pool1": "conv"}]


def test_bayesian_oracle_without_its_extras_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a))
    space = search.SearchSpace.create(load_recipe(TINY))
    with pytest.raises(search.TuneError, match=r"needs scikit-learn .*keras-tuner\[bayesian\]"):
        search.make_oracle("bayesian", space, max_trials=7, seed=0, epochs=3, uniform_first=True)


# --------------------------------------------------------------------------------- searching
def test_two_trial_search_end_to_end_writes_the_report(tiny, tmp_path):
    project = tmp_path / "search"
    result = studies.tune(tiny, project_dir=project, choices=POOL1, max_trials=2, isolate="none", **FAST)
    assert [t["status"] for t in result.trials] == ["completed", "completed"]
    for name in ("study.json", "trials.csv", "report.md", "pareto_flops.png", "pareto_latency.png", "effects.png",
                 "best-recipe.yaml", "search.json", "oracle.json"):
        assert (project / name).stat().st_size > 0, name
    assert (project / "pareto_flops.png").read_bytes()[:4] == b"\x89PNG"
    study = read_json(project / "study.json")
    assert study["summary"]["completed"] == 2 and study["kind"] == "search"
    for trial in study["trials"]:  # every trial records what the report needs
        for key in ("val_accuracy", "params", "flops", "latency_ms", "train_time_s", "peak_rss_mb",
                    "search_rss_mb", "config", "overrides", "label", "best_val_accuracy", "best_epoch"):
            assert trial[key] is not None, key
        record = read_json(project / trial["record"])
        assert record["recipe"]["model"]["downsample"]["pool1"] == trial["config"]["downsample"]["pool1"]
        assert len(record["history"]) == 1 and record["latency"]["repeats"] == 5 and record["entry"] == "trial"
        run = read_json(project / f"trial_{trial['trial_id']}" / record["run_dir"] / "report.json")  # the one fit path
        assert run["history"] == record["history"] and run["final"]["val_accuracy"] == record["val_accuracy"]
    assert {t["config"]["downsample"]["pool1"] for t in study["trials"]} == {"max", "conv"}
    flops = {t["config"]["downsample"]["pool1"]: t["flops"] for t in study["trials"]}
    assert flops["max"] > flops["conv"]  # pooling keeps the convolution at full resolution
    report = (project / "report.md").read_text()
    assert "| 0" in report and "| 1" in report and "## Pareto fronts" in report and "## Effect of each choice" in report
    assert len((project / "trials.csv").read_text().strip().splitlines()) == 3
    exported = load_recipe(project / "best-recipe.yaml")  # the best configuration as a recipe zoo train accepts
    validate_recipe(exported)
    assert exported.model.options["downsample"] == result.best["config"]["downsample"]
    assert exported.data.limit == 200 and exported.train.epochs == 1
    # never silently reuse or wipe a project
    with pytest.raises(search.ProjectExistsError, match=r"--resume.*--overwrite"):
        search.tune(tiny, project_dir=project, choices=POOL1, max_trials=2, **FAST)
    with pytest.raises(search.TuneError, match=r"cannot resume.*optimizer.lr"):
        search.tune(tiny, project_dir=project, choices=POOL1, max_trials=2, resume=True,
                    overrides=["optimizer.lr=0.02"], **FAST)
    with pytest.raises(search.TuneError, match="not both"):
        search.tune(tiny, project_dir=project, choices=POOL1, resume=True, overwrite=True, **FAST)
    before = [read_json(project / t["record"])["started"] for t in study["trials"]]
    again = studies.tune(tiny, project_dir=project, choices=POOL1, max_trials=2, resume=True, **FAST)
    assert len(again.trials) == 2  # finished: nothing trained again
    assert [read_json(project / t["record"])["started"] for t in again.trials] == before
    other = tmp_path / "not-a-project"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(search.TuneError, match="not a zoo tune project"):
        search.tune(tiny, project_dir=other, choices=POOL1, overwrite=True, **FAST)
    assert (other / "notes.txt").exists()


def test_budget_rejects_over_budget_trials_without_training(tiny, tmp_path):
    project = tmp_path / "budget"
    result = studies.tune(tiny, project_dir=project, choices=POOL1, max_trials=2, budget_flops="70M",
                          isolate="none", **FAST)
    by_choice = {t["config"]["downsample"]["pool1"]: t for t in result.trials}
    rejected, trained = by_choice["max"], by_choice["conv"]
    assert rejected["status"] == "infeasible" and "budget" in rejected["message"]
    assert rejected["flops"] > 70e6 and rejected.get("val_accuracy") is None
    assert read_json(project / rejected["record"])["history"] == []  # never trained
    assert not (project / f"trial_{rejected['trial_id']}" / "run").exists()
    assert trained["status"] == "completed" and trained["flops"] <= 70e6  # the search went on after the rejection
    oracle = read_json(project / f"trial_{rejected['trial_id']}" / "trial.json")
    assert oracle["status"] == "FAILED"
    study = read_json(project / "study.json")
    assert study["summary"]["infeasible"] == 1 and study["pareto"]["flops"] == [trained["trial_id"]]
    assert "over budget" in (project / "report.md").read_text()


def test_crashing_trials_fail_and_three_in_a_row_stop_the_search(tiny, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(ztrial, "train", boom)
    project = tmp_path / "crash"
    with pytest.raises(SearchFailedError, match=r"3 trials in a row crashed.*boom.*--resume") as caught:
        search.tune(tiny, project_dir=project, max_trials=6, isolate="none", **FAST)
    assert caught.value.exit_code == 1  # a run that failed, not bad input
    records = search.read_records(project)
    assert [r["status"] for r in records] == ["failed"] * 3 and "boom" in records[0]["traceback"]
    assert all(r["flops"] for r in records)  # measured before the training crashed


def test_a_trial_honours_the_recipe_fields_of_the_fit_path(tmp_path):
    """Weight averaging (which the old trial loop refused) applies to a trial: it trains through train()."""
    recipe = load_recipe(TINY, ["train.epochs=2", "train.swa_start_epoch=1"])
    record = search.run_trial(recipe, tmp_path / "run", latency={"repeats": 2})
    assert record["status"] == "completed" and [r["epoch"] for r in record["history"]] == [1, 2]
    report = read_json(tmp_path / "run" / "report.json")
    assert report["weight_averaging"]["models_averaged"] == 2
    again = search.run_trial(recipe, tmp_path / "run", latency={"repeats": 2})  # a finished run is read, not retrained
    assert again["history"] == record["history"] and again["val_accuracy"] == record["val_accuracy"]
