"""The capability table, walked: for every recipe field and every entry point of the one fit path
(``zoo train``, a tune trial, a paper-comparison variant, ``zoo train-distributed``), the field
either measurably takes effect in a tiny run or the entry point refuses it before any data loads.

Each field has a probe: a value other than its default, set in one of four tiny runs (A: most
fields; B: those that need A's run — a warm start, A as teacher — or clash with A; C: a run that
diverges; D: the fields of a model with a PatchWhitening layer, airbench94), and a check of what took effect, read from what the run wrote (its report's settings
come from the live model, optimizer, loss and dtype policy) or, for fields consumed by the input
pipeline alone, from the pipeline :func:`zoo.training.inputs.load_data` builds (with the saved
``recipe.yaml`` proving the entry point handed the field over intact). A few fields change speed
or screen output only, by design: they are listed in ``NO_NUMERIC_EFFECT`` with the reason and
checked to reach the run intact.
"""
from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np
import pytest

import zoo.data as zdata
from zoo import report as zr
from zoo.models import registry
from zoo.search.trial import run_trial
from zoo.training import ENTRY_POINTS, RecipeError, TrainingDiverged, load_recipe, resolve, train
from zoo.compat import nested_layers
from zoo.layers.whitening import patch_covariance, whitening_kernel
from zoo.training import features
from zoo.training.capabilities import REFUSALS, default_value, field_value, recipe_fields, refused_fields
from zoo.training.inputs import load_data
from zoo.training.schedule import RecipeSchedule

REPO = Path(__file__).resolve().parent.parent
N_TRAIN, N_TEST = 160, 40
Check = Callable[[dict, Path, dict], bool]  # (report, run dir, recipe dict) -> took effect


# ------------------------------------------------------------------------------- the data
def walk_npz(path: Path) -> Path:
    rng = np.random.default_rng(0)

    def part(count: int):
        y = np.arange(count) % 4
        return (rng.integers(0, 120, (count, 16, 16, 3)) + 40 * y[:, None, None, None]).astype("uint8"), y

    (x, y), (xt, yt) = part(N_TRAIN), part(N_TEST)
    np.savez(path, x_train=x, y_train=y.astype("int32"), x_test=xt, y_test=yt.astype("int32"))
    return path


def base_recipe(npz: Path) -> dict:
    """Defaults everywhere except what a seconds-long run needs."""
    return {"name": "walk-base", "data": {"source": str(npz), "validation": 32, "batch_size": 32},
            "model": {"name": "resnet20"}, "train": {"epochs": 1, "progress": "none"}}


def first_batch(recipe: dict, which: str = "train") -> np.ndarray:
    data = load_data(load_recipe(recipe))
    ds = data.train if which == "train" else data.validation
    return next(iter(ds))[0].numpy()


def pipeline_changes(dotted: str, which: str = "train") -> Check:
    """The field changes the batches the fit path is fed (against the field at its default)."""
    def check(report: dict, run: Path, recipe: dict) -> bool:
        default = copy.deepcopy(recipe)
        section, _, name = dotted.partition(".")
        default[section][name] = default_value(dotted)
        ours, theirs = first_batch(recipe, which), first_batch(default, which)
        return ours.shape != theirs.shape or not np.array_equal(ours, theirs)
    return check


def setting(path: str, expected: Any) -> Check:
    def check(report: dict, run: Path, recipe: dict) -> bool:
        value: Any = report["settings"]
        for key in path.split("."):
            value = value[key]
        return value == pytest.approx(expected) if isinstance(expected, float) else value == expected
    return check


def lr_at(epoch: int, expected: Callable[[dict], float]) -> Check:
    """The learning rate logged at epoch ``epoch``'s first step is the schedule's there."""
    return lambda report, run, recipe: report["history"][epoch - 1]["lr"] == pytest.approx(expected(recipe), rel=1e-4)


def schedule_value(recipe: dict, epoch: float) -> float:
    r = load_recipe(recipe)
    s = r.schedule
    sched = RecipeSchedule(r.optimizer.lr, 100, s.name, r.schedule_epochs, s.warmup_epochs, s.start_factor,
                           s.milestones, s.gamma, s.final_factor, s.cycles)
    return float(sched(int(epoch * 100)))


def built_params(report: dict, run: Path, recipe: dict) -> bool:
    m = recipe["model"]
    net = registry.build(m["name"], num_classes=4, input_shape=(12, 12, 3),
                         **{k: v for k, v in m.items() if k != "name"})
    return report["model"]["params_trainable"] == sum(int(np.prod(w.shape)) for w in net.trainable_weights)


def normalization_is(kind: str) -> Check:
    def check(report: dict, run: Path, recipe: dict) -> bool:
        model = keras.saving.load_model(run / "model.keras", safe_mode=True, compile=False)
        return type(model.layers[1]) is type(zdata.normalization_layer(kind))
    return check


def _net(recipe: dict) -> keras.Model:
    m = recipe["model"]
    return registry.build(m["name"], num_classes=4, input_shape=(12, 12, 3), **{k: v for k, v in m.items() if k != "name"})


def batch_norms(recipe: dict) -> int:
    return sum(isinstance(layer, keras.layers.BatchNormalization) for layer in nested_layers(_net(recipe)))


def trainable_variables(recipe: dict) -> int:
    return len(_net(recipe).trainable_variables)


def whitened_from(count: int) -> Check:
    """The saved whitening kernel is the eigendecomposition of the first ``count`` training images'
    patches (as the model sees them), with the recipe's eps."""
    def check(report: dict, run: Path, recipe: dict) -> bool:
        model = keras.saving.load_model(run / "model.keras", safe_mode=True, compile=False)
        r = load_recipe(recipe)
        images = features.whitening_images(r, load_data(r).raw_train, model.layers[1])
        layer = features.whitening_layers(model)[0]
        expected = whitening_kernel(patch_covariance(images, 2), 2, 3, r.train.whitening_eps)
        return len(images) == count and np.allclose(layer.kernel.numpy(), expected, rtol=1e-3, atol=1e-4)
    return check


def bias_frozen_after(epochs: int) -> Check:
    """The whitening bias trained in the first ``epochs`` epochs and not after."""
    def check(report: dict, run: Path, recipe: dict) -> bool:
        model = keras.saving.load_model(run / "model.keras", safe_mode=True, compile=False)
        frozen = report["features"]["whitening_bias"]
        bias = features.whitening_layers(model)[0].bias.numpy()
        return (frozen["frozen_from_epoch"] == epochs + 1 and np.any(bias != 0)
                and np.array_equal(bias, np.array(frozen["bias_at_freeze"], "float32")))
    return check


# ------------------------------------------------------------------------------ the probes
# field -> (group, value, check)
PROBES: dict[str, tuple[str, Any, Check]] = {
    "name": ("A", "walk", lambda rep, run, r: rep["recipe"]["name"] == "walk"),
    "description": ("A", "the capability walk", lambda rep, run, r: rep["recipe"]["description"] == r["description"]),
    "model.name": ("A", "resnet32", lambda rep, run, r: rep["model"]["name"] == "resnet32" and built_params(rep, run, r)),
    "model.options": ("A", {"shortcut": "B"}, built_params),
    "data.source": ("A", None, lambda rep, run, r: rep["data"]["name"] != zdata.SAMPLE_NAME),  # the npz itself
    "data.split": ("C", "test", lambda rep, run, r: rep["data"]["num_train"] == N_TEST),
    "data.validation": ("A", 24, lambda rep, run, r: rep["data"]["num_validation"] == 24),
    "data.seed": ("A", 7, pipeline_changes("data.seed", "validation")),
    "data.batch_size": ("A", 16, lambda rep, run, r: rep["settings"]["batch_size"] == 16
                        and rep["settings"]["steps_per_epoch"] == rep["data"]["num_train"] // 16),
    "data.augment": ("A", ["flip", "crop_pad4"], pipeline_changes("data.augment")),
    "data.eval_augment": ("A", ["center_crop"], pipeline_changes("data.eval_augment", "validation")),
    "data.normalization": ("A", "scale", normalization_is("scale")),
    "data.image_size": ("A", 12, lambda rep, run, r: rep["model"]["input_shape"] == [12, 12, 3]),
    "data.limit": ("A", 128, lambda rep, run, r: rep["data"]["num_train"] + rep["data"]["num_validation"] == 128),
    "data.shuffle_buffer": ("A", 1, pipeline_changes("data.shuffle_buffer")),
    "data.eval_split": ("A", "test", lambda rep, run, r: "accuracy" in rep["evaluation"]["test"]),
    "optimizer.name": ("A", "adam", setting("optimizer.name", "adam")),
    "optimizer.lr": ("A", 0.02, lambda rep, run, r: rep["history"][0]["lr"] == pytest.approx(0.02)),
    "optimizer.weight_decay": ("A", 1e-4, lambda rep, run, r: rep["settings"]["l2_penalties"] > 0),
    "optimizer.beta_1": ("A", 0.8, setting("optimizer.beta_1", 0.8)),
    "optimizer.beta_2": ("A", 0.99, setting("optimizer.beta_2", 0.99)),
    "optimizer.epsilon": ("A", 1e-6, setting("optimizer.epsilon", 1e-6)),
    "optimizer.clipnorm": ("A", 1.0, setting("optimizer.clipnorm", 1.0)),
    "optimizer.momentum": ("B", 0.5, setting("optimizer.momentum", 0.5)),
    "optimizer.nesterov": ("B", True, setting("optimizer.nesterov", True)),
    "optimizer.weight_decay_mode": ("B", "decoupled", lambda rep, run, r: rep["settings"]["l2_penalties"] == 0
                                    and rep["settings"]["optimizer"]["weight_decay"] == pytest.approx(1e-4)),
    "schedule.name": ("A", "step", lr_at(2, lambda r: 0.02 * 0.5)),
    "schedule.milestones": ("A", [1], lr_at(2, lambda r: 0.02 * 0.5)),
    "schedule.gamma": ("A", 0.5, lr_at(2, lambda r: 0.02 * 0.5)),
    "schedule.epochs": ("B", 4, lr_at(2, lambda r: schedule_value(r, 1.0))),
    "schedule.warmup_epochs": ("B", 0.5, lr_at(1, lambda r: 0.05 * 0.2)),
    "schedule.start_factor": ("B", 0.2, lr_at(1, lambda r: 0.05 * 0.2)),
    "schedule.final_factor": ("B", 0.5, lr_at(2, lambda r: schedule_value(r, 1.0))),
    "schedule.cycles": ("B", 2, lr_at(2, lambda r: schedule_value(r, 1.0))),
    "train.epochs": ("A", 2, lambda rep, run, r: [h["epoch"] for h in rep["history"]] == [1, 2]),
    "train.seed": ("A", 9, pipeline_changes("train.seed")),
    "train.label_smoothing": ("A", 0.1, setting("loss.label_smoothing", 0.1)),
    "train.steps_per_epoch": ("B", 2, setting("steps_per_epoch", 2)),
    "train.nan_policy": ("C", "raise", lambda rep, run, r: rep.get("raised") == "TrainingDiverged"),
    "train.jit_compile": ("C", True, setting("jit_compile", True)),
    "train.steps_per_execution": ("A", 2, setting("steps_per_execution", 2)),
    "train.precision": ("A", "mixed_bfloat16", setting("precision", "mixed_bfloat16")),
    "train.init_weights": ("B", None, lambda rep, run, r: Path(rep["init_weights"]).parent == Path(r["train"]["init_weights"])),  # A's run
    "train.swa_start_epoch": ("B", 1, lambda rep, run, r: rep["weight_averaging"]["start_epoch"] == 1),
    "train.swa_every": ("B", 2, lambda rep, run, r: rep["weight_averaging"]["models_averaged"] == 1),
    "train.teachers": ("B", None, lambda rep, run, r: len(rep["settings"]["distillation"]["teachers"]) == 1),  # A's run
    "train.distill_weight": ("B", 0.5, setting("distillation.weight", 0.5)),
    "train.distill_temperature": ("B", 2.0, setting("distillation.temperature", 2.0)),
    "train.distill_flip": ("B", True, setting("distillation.flip", True)),
    "data.eval_tta": ("A", "mirror", lambda rep, run, r: 0 <= rep["evaluation"]["holdout"]["accuracy_tta_mirror"] <= 1),
    "optimizer.bn_bias_lr_scale": ("A", 4.0, lambda rep, run, r: rep["features"]["bn_bias_lr_scale"]
                                   == {"scale": [4.0], "variables": batch_norms(r)}),
    "optimizer.decay_biases": ("A", True, lambda rep, run, r: rep["settings"]["l2_penalties"]
                               == trainable_variables(r) - batch_norms(r)),  # the scaled BN biases decay unscaled
    "train.lookahead": ("B", {"every": 1}, lambda rep, run, r: rep["features"]["lookahead"]["updates"]
                        == r["train"]["epochs"] * rep["settings"]["steps_per_epoch"]),  # every step, the last too
    "train.whitening_images": ("D", 32, whitened_from(32)),
    "train.whitening_eps": ("D", 1e-3, lambda rep, run, r: rep["features"]["whitening"]["eps"] == 1e-3
                            and whitened_from(32)(rep, run, r)),
    "train.whitening_bias_epochs": ("D", 1, bias_frozen_after(1)),
    "output.runs_dir": ("A", None, lambda rep, run, r: run.parent.name == "walk-runs"),  # run_dir not given
    "output.name": ("A", "walk-run", lambda rep, run, r: run.name == "walk-run"),
    "output.tensorboard": ("A", False, lambda rep, run, r: not (run / "tensorboard").exists()),
}
NO_NUMERIC_EFFECT = {  # field -> why no number changes; checked to reach the run intact
    "data.cache": "keeps decoded images in memory between epochs: speed only",
    "data.data_dir": "tensorflow-datasets' folder; any other source refuses it (tested below)",
    "data.manual_dir": "tensorflow-datasets' manual downloads; any other source refuses it (tested below)",
    "train.deterministic": "TensorFlow op determinism, process-wide: bit-identical reruns (tests/test_train.py)",
    "train.progress": "what Keras prints per epoch",
}
NO_NUMERIC_VALUES = {"data.cache": False, "train.deterministic": False, "train.progress": "epoch"}


def test_every_recipe_field_has_a_probe_or_a_stated_reason():
    assert sorted(PROBES.keys() | NO_NUMERIC_EFFECT.keys()) == sorted(recipe_fields())
    for field, (group, value, _) in PROBES.items():
        if value is not None:
            assert value != default_value(field), field


def group_recipe(npz: Path, group: str, entry: str, a_run: Path | None = None) -> dict:
    """The base recipe with every probe of ``group`` that ``entry`` does not refuse (A's model
    settings kept in B and C, so A's run fits as warm start and teacher)."""
    recipe = base_recipe(npz)
    refused = refused_fields(entry)
    keep_a = ("model.name", "model.options", "data.normalization", "data.image_size", "data.validation")
    if group == "D":  # the fields of a model with a PatchWhitening layer
        keep_a = ()
        recipe.update(name="walk-whitening", model={"name": "airbench94"})
        recipe["data"]["image_size"], recipe["train"]["epochs"] = 32, 2
    for field, (g, value, _) in PROBES.items():
        if value is None or field in refused or not (g == group or (g == "A" and field in keep_a)):
            continue
        section, _, name = field.partition(".")
        if not name:
            recipe[section] = value
        elif section == "model" and name == "options":
            recipe["model"].update(value)
        else:
            recipe.setdefault(section, {})[name] = value
    for field, value in NO_NUMERIC_VALUES.items():
        section, _, name = field.partition(".")
        recipe.setdefault(section, {})[name] = value
    if group == "B":
        recipe["train"].update(epochs=2, **({} if "train.init_weights" in refused else {"init_weights": str(a_run)}))
        if "train.teachers" not in refused:
            recipe["train"]["teachers"] = [str(a_run)]
        recipe["optimizer"].update(name="sgd", lr=0.05, weight_decay=1e-4)
        recipe["schedule"] = {**recipe.get("schedule", {}), "name": "cosine"}
    if group == "C":  # a rate that breaks the weights at the first step: the next loss is not finite
        recipe["optimizer"] = {"name": "sgd", "lr": 1e20}
        recipe["train"]["epochs"] = 3
    return recipe


# --------------------------------------------------------------------------- entry points
def _ports() -> str:
    socks = [socket.socket() for _ in range(2)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    out = ",".join(f"127.0.0.1:{s.getsockname()[1]}" for s in socks)
    for s in socks:
        s.close()
    return out


def run_distributed(recipe: dict, run_dir: Path | None, cwd: Path) -> tuple[dict, Path]:
    path = cwd / f"{recipe['name']}-{len(list(cwd.glob('*.yaml')))}.yaml"
    path.write_text(json.dumps(recipe))
    args = [sys.executable, "-m", "zoo", "train-distributed", str(path), "--workers", _ports(), "--timeout", "120"]
    args += ["--run-dir", str(run_dir)] if run_dir else []
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    env.pop("TF_CONFIG", None)
    procs = [subprocess.Popen([*args, "--index", str(i)], cwd=cwd, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    run = run_dir or cwd / recipe["output"]["runs_dir"] / recipe["output"]["name"]
    if procs[0].returncode != 0:
        if "TrainingDiverged" in outs[0] or "training stopped" in outs[0]:
            return {**zr.read_json(run / "report.json"), "raised": "TrainingDiverged"}, run
        raise AssertionError(outs[0][-3000:])
    return zr.read_json(run / "report.json"), run


def run_entry(entry: str, recipe: dict, tmp: Path) -> tuple[dict, Path, dict]:
    """Train ``recipe`` through ``entry``; ``(report, run dir, the recipe as handed over)``."""
    report, run, used = _run_entry(entry, recipe, tmp)
    return report, run, used


def _run_entry(entry: str, recipe: dict, tmp: Path) -> tuple[dict, Path, dict]:
    named = "output.runs_dir" not in refused_fields(entry) and "output" in recipe
    run_dir = None if named else tmp / f"{entry}-{recipe['name']}-{recipe['train'].get('epochs')}"
    if named:
        recipe = {**recipe, "output": {**recipe["output"], "runs_dir": str(tmp / "walk-runs")}}
    if entry == "distributed":
        return (*run_distributed(recipe, run_dir, tmp), recipe)
    try:
        if entry == "train":
            result = train(recipe, run_dir=run_dir)
            return result.report, result.run_dir, recipe
        record = run_trial(load_recipe(recipe), run_dir, entry=entry)
    except TrainingDiverged:
        run = run_dir or tmp / "walk-runs" / recipe["output"]["name"]
        return {**zr.read_json(run / "report.json"), "raised": "TrainingDiverged"}, run, recipe
    if record["status"] == "failed" and record.get("message", "").startswith("TrainingDiverged"):
        return {**zr.read_json(run_dir / "report.json"), "raised": "TrainingDiverged"}, run_dir, recipe
    assert record["status"] == "completed", record.get("message")
    return zr.read_json(run_dir / "report.json"), run_dir, recipe


# the multi-worker walk (~90 s: two processes per run) is `slow`; its refusals are checked by default below
WALKS = [pytest.param(e, marks=[pytest.mark.slow]) if e == "distributed" else e for e in ENTRY_POINTS]


@pytest.mark.parametrize("entry", WALKS)
def test_each_entry_point_honours_every_field_it_does_not_refuse(entry, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    npz = walk_npz(tmp_path / "walk.npz")
    refused = refused_fields(entry)
    failures = []
    a_run = None
    for group in "ABCD":
        if all(field in refused for field, (g, _, _) in PROBES.items() if g == group):
            continue  # every probe of the group refused (D for distributed): nothing to train
        recipe = group_recipe(npz, group, entry, a_run)
        report, run, used = run_entry(entry, recipe, tmp_path)
        assert load_recipe(run / "recipe.yaml") == load_recipe(used), "the entry point changed the recipe"
        if group == "A":
            a_run = run
        for field, (g, _, check) in PROBES.items():
            if g == group and field not in refused and not check(report, run, recipe):
                failures.append(field)
    assert not failures, f"{entry}: no effect of {failures}"


REFUSAL_PROBES = {"train.steps_per_execution": 2, "train.swa_start_epoch": 1, "train.swa_every": 2,
                  "train.teachers": ["resnet20:cifar10"], "train.distill_weight": 0.5, "train.distill_temperature": 2.0,
                  "train.distill_flip": True,
                  "output.runs_dir": "elsewhere", "output.name": "elsewhere", "data.validation": 0,
                  "data.split": "test", "train.lookahead": {"every": 2}, "train.whitening_images": 100,
                  "train.whitening_eps": 1e-3, "train.whitening_bias_epochs": 1}


def test_every_refusal_has_a_probe():
    assert sorted({r.field for r in REFUSALS}) == sorted(REFUSAL_PROBES)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_each_entry_point_refuses_what_it_cannot_honour_before_loading_data(entry, tmp_path):
    for refusal in REFUSALS:
        if entry not in refusal.entries:
            continue
        recipe = base_recipe(tmp_path / "no-such-data.npz")  # loading it would fail differently
        section, _, name = refusal.field.partition(".")
        recipe.setdefault(section, {})[name] = REFUSAL_PROBES[refusal.field]
        named = refusal.field
        if refusal.field == "train.distill_flip":  # the recipe itself refuses a flip without teachers
            recipe["train"]["teachers"], named = ["resnet20:cifar10"], "train.teachers"
        with pytest.raises(RecipeError, match=rf"{named}=.* not honoured by the {entry} entry point"):
            if entry in ("trial", "paper"):
                run_trial(load_recipe(recipe), tmp_path / "trial", entry=entry)
            else:
                train(recipe, run_dir=tmp_path / "run", entry=entry)
        assert not (tmp_path / "run").exists() and not (tmp_path / "trial").exists()


def test_tfds_only_fields_are_refused_for_other_sources(tmp_path):
    for field in ("data_dir", "manual_dir"):
        recipe = base_recipe(tmp_path / "x.npz")
        recipe["data"][field] = str(tmp_path)
        with pytest.raises(RecipeError, match=f"data.{field} applies to tensorflow-datasets sources only"):
            train(recipe, run_dir=tmp_path / "run")
