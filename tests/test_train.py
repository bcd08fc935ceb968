"""Training runs on tiny data: run directory, report, evaluation, resume after SIGKILL, NaN,
determinism and refusing to overwrite."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml

from helpers import tiny_npz, tiny_recipe
import zoo.errors
from zoo import report as zr
from zoo.training.recipe import load_recipe
from zoo.cli import main as zoo_main
from zoo.training import RunDirError, RunFinishedError, evaluate, make_optimizer, train
from zoo.training.recipe import RecipeError
from zoo.training.schedule import RecipeSchedule


def main(argv):
    return zoo_main(["train", *argv])

REPO = Path(__file__).resolve().parent.parent
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "lr")
RUN_FILES = ("recipe.yaml", "history.csv", "tensorboard", "checkpoints/best.weights.h5",
             "checkpoints/last.weights.h5", "model.weights.h5", "model.keras", "report.json", "report.md",
             "curves.png")


@pytest.fixture(scope="module")
def npz(tmp_path_factory) -> Path:
    return tiny_npz(tmp_path_factory.mktemp("data") / "tiny.npz", 128)


@pytest.fixture(scope="module")
def tiny_run(npz, tmp_path_factory):
    return train(tiny_recipe(npz), run_dir=tmp_path_factory.mktemp("runs") / "tiny")


# --------------------------------------------------------------------------- one short run
def test_run_dir_has_every_file(tiny_run):
    assert tiny_run.status == "completed"
    for name in RUN_FILES:
        assert (tiny_run.run_dir / name).exists(), name
    assert list((tiny_run.run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert load_recipe(tiny_run.run_dir / "recipe.yaml") == load_recipe(tiny_run.report["recipe"])


def test_report_fields_match_history(tiny_run):
    report = zr.read_json(tiny_run.run_dir / "report.json")
    history = zr.read_history(tiny_run.run_dir / "history.csv")
    assert report["history"] == history and [r["epoch"] for r in history] == [1]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert report["final"][key] == history[-1][key]
    assert report["best"]["val_accuracy"] == max(r["val_accuracy"] for r in history)
    assert report["status"] == "completed" and report["epochs"] == 1
    assert report["model"]["params_trainable"] > 0 and report["model"]["flops"] > 0
    assert report["data"]["num_train"] == 96 and report["data"]["num_validation"] == 32
    assert report["timing"]["train_images_per_s"] == history[-1]["train_images_per_s"] > 0
    assert report["timing"]["train_time_s"] > 0
    assert report["settings"]["jit_compile"] is False and report["settings"]["deterministic"] is True
    env = report["environment"]
    assert env["tensorflow"] and env["keras"] == keras.__version__ and env["cpu"] and env["date"]
    assert 0.0 <= report["evaluation"]["holdout"]["accuracy"] <= 1.0


def test_report_md_shows_curves(tiny_run):
    md = (tiny_run.run_dir / "report.md").read_text()
    assert "](curves.png)" in md and "completed" in md
    assert (tiny_run.run_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_saved_model_is_the_inference_model_on_raw_rgb(tiny_run, npz):
    model = keras.saving.load_model(tiny_run.run_dir / "model.keras", safe_mode=True, compile=False)
    assert isinstance(model.layers[1], keras.layers.Normalization)  # raw 0..255 in, normalised inside
    x = np.load(npz)["x"][:4].astype("float32")
    logits = model.predict(x, verbose=0)
    assert logits.shape == (4, 4) and np.isfinite(logits).all()


def test_evaluate_run_and_weights_agree_with_report(tiny_run, tmp_path):
    expected = tiny_run.report["evaluation"]["holdout"]["accuracy"]
    result = evaluate(tiny_run.run_dir)
    assert result.metrics["accuracy"] == pytest.approx(expected)
    assert (tiny_run.run_dir / "eval_report.json").exists() and (tiny_run.run_dir / "eval_report.md").exists()
    assert result.report["data"]["num_examples"] == 32
    from_weights = evaluate(tiny_run.run_dir / "checkpoints" / "last.weights.h5", output_dir=tmp_path)
    assert from_weights.metrics["accuracy"] == pytest.approx(expected)
    assert (tmp_path / "eval_report.json").exists()


def test_refuses_to_overwrite_a_finished_run(tiny_run, npz):
    before = (tiny_run.run_dir / "report.json").read_bytes()
    with pytest.raises(RunFinishedError, match="already holds a finished run"):
        train(tiny_recipe(npz), run_dir=tiny_run.run_dir)
    with pytest.raises(RunDirError, match=r"different recipe \(optimizer.lr: 0.05 -> 0.1\)"):
        train(tiny_recipe(npz), overrides=["optimizer.lr=0.1"], run_dir=tiny_run.run_dir)
    assert (tiny_run.run_dir / "report.json").read_bytes() == before


def test_a_run_dir_without_a_finished_epoch_takes_a_new_recipe(npz, tmp_path):
    from zoo.training.rundir import prepare_run_dir

    run = prepare_run_dir(load_recipe(tiny_recipe(npz)), tmp_path / "run")  # e.g. the data failed to load
    prepare_run_dir(load_recipe(tiny_recipe(npz), ["data.batch_size=16"]), run)
    assert load_recipe(run / "recipe.yaml").data.batch_size == 16


def test_cli_reports_bad_recipe_and_finished_run(tiny_run, capsys):
    assert main(["embedded", "optimizer.lrr=1"]) == 2
    assert "Did you mean 'optimizer.lr'?" in capsys.readouterr().err
    assert main([str(tiny_run.run_dir / "recipe.yaml"), "--run-dir", str(tiny_run.run_dir)]) == 0
    assert "already holds a finished run" in capsys.readouterr().err


def test_cli_eval(tiny_run, tmp_path, capsys):
    assert zoo_main(["eval", str(tiny_run.run_dir), "--output-dir", str(tmp_path)]) == 0
    assert "holdout" in capsys.readouterr().out and (tmp_path / "eval_report.md").exists()
    assert zoo_main(["eval", str(tmp_path / "missing")]) == 2
    assert "no model at" in capsys.readouterr().err


def test_overwrite_retrains_and_the_same_seed_gives_the_same_history(tiny_run, npz):
    first = [[row[k] for k in METRICS] for row in tiny_run.history]
    again = train(tiny_recipe(npz), run_dir=tiny_run.run_dir, overwrite=True)
    assert again.status == "completed"
    assert [[row[k] for k in METRICS] for row in again.history] == first


# ------------------------------------------------------------------------------------ NaN
def test_nan_stops_and_keeps_last_good_checkpoint(npz, tmp_path):
    # epoch 1 trains normally; from epoch 2 the step schedule multiplies the rate by 1e9
    recipe = tiny_recipe(npz, epochs=3, label_smoothing=0.1)  # also covers the one-hot label path
    recipe["schedule"] = {"name": "step", "milestones": [1], "gamma": 1e9}
    result = train(recipe, run_dir=tmp_path / "nan")
    broke = result.report["nan"]["epoch"]
    assert result.status == "nan" and broke >= 2
    assert "training stopped" in result.report["message"] and "last good checkpoint" in result.report["message"]
    good = list(range(1, broke))
    assert [r["epoch"] for r in zr.read_history(tmp_path / "nan" / "history.csv")] == good
    last = tmp_path / "nan" / "checkpoints" / "last.weights.h5"
    assert last.exists()
    model = keras.saving.load_model(tmp_path / "nan" / "model.keras", safe_mode=True, compile=False)
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert result.final["epoch"] == good[-1] and np.isfinite(result.final["loss"])
    with pytest.raises(RunFinishedError, match="status nan"):
        train(recipe, run_dir=tmp_path / "nan")


# --------------------------------------------------------------------------------- resume
def _epochs(run: Path) -> list[int]:
    return [r["epoch"] for r in zr.read_history(run / "history.csv")]


def _backed_up_epoch(run: Path) -> int:
    """The last epoch saved in the run state (checkpoints/last.json), or 0."""
    try:
        return json.loads((run / "checkpoints" / "last.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return 0


RESUME_EPOCHS = 5  # the kill lands in epoch 2 or 3; the rerun must finish 1..5 exactly once


def test_resume_after_sigkill_reproduces_the_uninterrupted_run(tmp_path):
    npz = tiny_npz(tmp_path / "resume.npz", 544)  # 16 steps of 32 per epoch: an epoch lasts ~1 s
    recipe = tmp_path / "resume.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(npz, epochs=RESUME_EPOCHS, progress="epoch")))
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "zoo", "train", str(recipe), "--run-dir", str(run)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while _backed_up_epoch(run) < 1 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)  # epoch 2 is under way
    finally:
        proc.wait()
    done = _epochs(run)
    assert done and done[-1] < RESUME_EPOCHS, f"the kill came too late to test resuming (epochs {done})"
    assert not (run / "report.json").exists()

    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "zoo.train: resuming at epoch" in out.stdout
    assert _epochs(run) == list(range(1, RESUME_EPOCHS + 1))
    report = zr.read_json(run / "report.json")
    assert report["status"] == "completed" and report["timing"]["resumed_from_epoch"] >= 1
    assert [r["epoch"] for r in report["history"]] == list(range(1, RESUME_EPOCHS + 1))

    # exact: the same seed uninterrupted gives the same history and the same final weights
    whole = train(load_recipe(recipe), run_dir=tmp_path / "whole")
    assert [[r[k] for k in METRICS] for r in report["history"]] == [[r[k] for k in METRICS] for r in whole.history]
    import h5py

    def weights(path):
        out = {}
        with h5py.File(path, "r") as f:
            f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        return out

    ours, theirs = weights(run / "model.weights.h5"), weights(whole.run_dir / "model.weights.h5")
    assert ours.keys() == theirs.keys() and all(np.array_equal(ours[k], theirs[k]) for k in ours)


# ------------------------------------------------------------------------- schedule, decay
def _lr(schedule: RecipeSchedule, epoch: float) -> float:
    return float(schedule(round(epoch * schedule.steps_per_epoch)))


def test_schedules():
    step = RecipeSchedule(0.1, 100, "step", 182, milestones=[91, 136])
    assert [_lr(step, e) for e in (0, 90.99, 91, 136)] == pytest.approx([0.1, 0.1, 0.01, 0.001])
    cos = RecipeSchedule(0.2, 10, "cosine", 30, warmup_epochs=2, start_factor=0.1)
    assert [_lr(cos, e) for e in (0, 1, 2, 16, 30)] == pytest.approx([0.02, 0.11, 0.2, 0.1, 0.0], abs=1e-6)
    one = RecipeSchedule(1.0, 10, "onecycle", 10)  # rises over the first 30%
    assert [_lr(one, e) for e in (0, 3, 6.5, 10)] == pytest.approx([0.1, 1.0, 0.5, 0.0], abs=1e-6)
    lin = RecipeSchedule(0.04, 10, "linear", 68, final_factor=0.0)
    assert [_lr(lin, e) for e in (0, 34, 68)] == pytest.approx([0.04, 0.02, 0.0], abs=1e-7)
    assert _lr(RecipeSchedule(0.3, 10), 5) == pytest.approx(0.3)
    assert RecipeSchedule.from_config(step.get_config()).get_config() == step.get_config()
    cycles = RecipeSchedule(0.03, 10, "cosine", 37, warmup_epochs=1, cycles=6)  # 1 + 6 cycles of 6 epochs
    assert [_lr(cycles, e) for e in (1, 4, 6.9, 7, 10, 36.9)] == pytest.approx(
        [0.03, 0.015, 0.0, 0.03, 0.015, 0.0], abs=1e-4)


def _dense_model() -> keras.Model:
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(2, kernel_initializer="ones", bias_initializer="ones")(inputs))


def test_l2_weight_decay_is_the_papers_coupled_decay():
    model = _dense_model()
    recipe = load_recipe({"model": {"name": "resnet20"}, "optimizer": {"weight_decay": 1e-4}})
    make_optimizer(recipe, model, steps_per_epoch=10)
    penalty = float(sum(keras.ops.convert_to_numpy(loss) for loss in model.losses))
    assert penalty == pytest.approx(1e-4 / 2 * 6)  # kernel 3x2 of ones; the bias is not decayed


def test_decoupled_weight_decay_skips_biases():
    model = _dense_model()
    recipe = load_recipe({"model": {"name": "resnet20"}, "optimizer": {"name": "adamw", "weight_decay": 0.1,
                                                                     "lr": 0.5}})
    opt = make_optimizer(recipe, model, steps_per_epoch=10)
    assert model.losses == []
    kernel, bias = model.trainable_variables
    opt.apply_gradients([(keras.ops.zeros_like(kernel), kernel), (keras.ops.zeros_like(bias), bias)])
    assert keras.ops.convert_to_numpy(kernel) == pytest.approx(np.full((3, 2), 1 - 0.5 * 0.1))
    assert keras.ops.convert_to_numpy(bias) == pytest.approx(np.ones(2))


def test_history_csv_replaces_a_rerun_epoch(tmp_path):
    """A kill between history.csv's row and the resume backup re-runs that epoch: one row stays."""
    from zoo.training.callbacks import HistoryCSV

    logger = HistoryCSV(tmp_path / "history.csv")
    for epoch, loss in ((0, 1.0), (1, 0.9), (1, 0.8), (2, 0.7)):
        logger.on_epoch_end(epoch, {"loss": loss})
    assert zr.read_history(tmp_path / "history.csv") == [
        {"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.8}, {"epoch": 3, "loss": 0.7}]


# ----------------------------------------------------------------------------- warm start
def test_init_weights_loads_a_run_into_a_fresh_model(tiny_run):
    from zoo.training.model import load_init_weights

    saved = keras.saving.load_model(tiny_run.run_dir / "model.keras", safe_mode=True, compile=False)
    fresh = keras.models.clone_model(saved)  # same layers, new random weights
    assert not all(np.array_equal(a, b) for a, b in zip(fresh.get_weights(), saved.get_weights()))
    load_init_weights(fresh, tiny_run.run_dir)  # the normalisation statistics come along
    assert all(np.array_equal(a, b) for a, b in zip(fresh.get_weights(), saved.get_weights()))


def test_init_weights_reads_a_keras_file_or_a_folder_that_keeps_only_model_keras(tiny_run, tmp_path):
    from zoo.training.model import load_init_weights

    kept = tmp_path / "kept"  # as results/runs keeps a run: model.keras, no model.weights.h5
    kept.mkdir()
    shutil.copy(tiny_run.run_dir / "model.keras", kept / "model.keras")
    saved = keras.saving.load_model(kept / "model.keras", safe_mode=True, compile=False)
    for source in (kept, kept / "model.keras"):
        fresh = keras.models.clone_model(saved)
        load_init_weights(fresh, source)
        assert all(np.array_equal(a, b) for a, b in zip(fresh.get_weights(), saved.get_weights()))


def test_warm_start_continues_from_the_run(tiny_run, npz, tmp_path, capsys):
    warm = train(tiny_recipe(npz, init_weights=str(tiny_run.run_dir)), run_dir=tmp_path / "warm")
    assert "weights initialised from" in capsys.readouterr().out
    assert load_recipe(warm.run_dir / "recipe.yaml").train.init_weights == str(tiny_run.run_dir)
    assert warm.history[0]["loss"] < tiny_run.history[0]["loss"]  # it did not start from scratch


# a file of another model: Keras warns once per unmatched container before it raises
@pytest.mark.filterwarnings("ignore:Skipping nested container:UserWarning")
def test_init_weights_errors_before_training(tiny_run, npz, tmp_path):
    with pytest.raises(RecipeError, match=r"train.init_weights: no weights at .*missing"):
        train(tiny_recipe(npz, init_weights=str(tmp_path / "missing")), run_dir=tmp_path / "a")
    assert not (tmp_path / "a").exists()  # refused before the run directory was made
    other = tiny_recipe(npz, init_weights=str(tiny_run.run_dir))
    other["model"] = {"name": "resnet32"}
    with pytest.raises(ValueError, match="does not fit .*same model"):
        train(other, run_dir=tmp_path / "b")


# ------------------------------------------------------------------------ weight averaging
def _end_epochs(averager, model, epochs: dict[int, float]) -> None:
    for epoch, value in epochs.items():
        model.set_weights([np.full_like(w, value) for w in model.get_weights()])
        averager.on_epoch_end(epoch)


def test_weight_averaging_is_the_mean_from_its_start_epoch_and_survives_a_resume(tmp_path):
    from zoo.training.swa import WeightAveraging

    model = _dense_model()
    first = WeightAveraging(start=2, path=tmp_path / "swa.npz")
    first.set_model(model)
    first.on_train_begin()
    _end_epochs(first, model, {0: 100.0, 1: 1.0, 2: 2.0})  # epoch index 0 is epoch 1: before the start
    assert (first.count, first.last_epoch) == (2, 3)
    # a killed run resumes at epoch 3 (its backup was older than the average): epoch 3 is not counted twice
    resumed = WeightAveraging(start=2, path=tmp_path / "swa.npz")
    resumed.set_model(model)
    resumed.on_train_begin()
    _end_epochs(resumed, model, {2: 50.0, 3: 6.0})
    assert (resumed.count, resumed.last_epoch) == (3, 4)
    fresh = _dense_model()
    report = resumed.apply(fresh, images=None, steps=0)  # no BatchNorm: nothing to recompute
    for w in fresh.get_weights():
        np.testing.assert_allclose(w, (1.0 + 2.0 + 6.0) / 3, rtol=1e-6)
    assert report == {"start_epoch": 2, "every": 1, "last_epoch": 4, "models_averaged": 3, "batchnorm_batches": 0}


def test_weight_averaging_every_few_epochs_takes_the_cycle_ends(tmp_path):
    from zoo.training.swa import WeightAveraging

    model = _dense_model()
    averager = WeightAveraging(start=3, path=tmp_path / "swa.npz", every=3)
    averager.set_model(model)
    averager.on_train_begin()
    _end_epochs(averager, model, {e: float(e + 1) for e in range(9)})  # epochs 1..9 hold their number
    assert (averager.count, averager.last_epoch) == (3, 9)  # epochs 3, 6 and 9
    for w in averager.mean:
        np.testing.assert_allclose(w, (3 + 6 + 9) / 3)


def test_weight_averaging_refuses_to_apply_an_empty_average(tmp_path):
    from zoo.training.swa import WeightAveraging

    averager = WeightAveraging(start=5, path=tmp_path / "swa.npz")
    with pytest.raises(zoo.errors.RunFailedError, match="no weights were averaged: the run ended before epoch 5"):
        averager.apply(_dense_model(), images=None, steps=0)


def test_recompute_batchnorm_gives_the_mean_of_the_batch_statistics():
    import tensorflow as tf

    from zoo.layers.ops import fused_batch_norm
    from zoo.training.swa import recompute_batchnorm

    inner_in = keras.Input((4, 4, 2))
    inner = keras.Model(inner_in, fused_batch_norm(momentum=0.9, epsilon=1e-5)(inner_in))  # nested, as zoo nets are
    outer_in = keras.Input((4, 4, 2))
    model = keras.Model(outer_in, keras.layers.BatchNormalization(momentum=0.99)(inner(outer_in)))
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(3 * 8, 4, 4, 2)) * [1.0, 3.0] + [5.0, -2.0]).astype("float32")
    images = tf.data.Dataset.from_tensor_slices((x, np.zeros(len(x)))).batch(8)
    assert recompute_batchnorm(model, images.repeat(), steps=3) == 3
    batches = x.reshape(3, 8 * 16, 2)
    bn = inner.layers[-1]
    np.testing.assert_allclose(bn.moving_mean.numpy(), batches.mean(axis=1).mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), batches.var(axis=1).mean(axis=0), rtol=1e-4)
    assert bn.momentum == 0.9 and model.layers[-1].momentum == 0.99  # restored
    # the outer layer saw the inner one's training-mode outputs: zero mean, unit variance per batch
    np.testing.assert_allclose(model.layers[-1].moving_mean.numpy(), 0.0, atol=1e-5)


def test_swa_run_saves_the_average_and_reports_it(npz, tmp_path):
    run = train(tiny_recipe(npz, epochs=3, swa_start_epoch=2), run_dir=tmp_path / "swa")
    averaged = run.report["weight_averaging"]
    assert averaged == {"start_epoch": 2, "every": 1, "last_epoch": 3, "models_averaged": 2, "batchnorm_batches": 3}
    with np.load(run.run_dir / "checkpoints" / "swa.npz") as saved:
        mean = [saved[f"w{i}"] for i in range(len(saved.files) - 2)]
    model = keras.saving.load_model(run.run_dir / "model.keras", safe_mode=True, compile=False)
    for w, m in zip(model.trainable_weights, mean):
        np.testing.assert_allclose(w.numpy(), m, rtol=1e-6, atol=1e-7)
    assert "mean of epochs 2-3 (2 models, SWA)" in (run.run_dir / "report.md").read_text()


def test_swa_start_epoch_past_the_last_epoch_is_refused():

    with pytest.raises(RecipeError, match=r"train.swa_start_epoch must be in \[0, 3\]"):
        load_recipe("resnet20-swa", ["train.epochs=3"])


def test_data_that_cannot_train_is_refused_before_a_run_directory_exists(tmp_path, capsys):
    one_class = tmp_path / "one.npz"
    np.savez(one_class, x=np.zeros((64, 8, 8, 3), "uint8"), y=np.zeros(64, "int32"))
    npz = tiny_npz(tmp_path / "few.npz", 96)
    cases = [([f"data.source={npz}", "data.validation=16", "data.batch_size=100000"], "make no full batch of data.batch_size=100000"),
             ([f"data.source={one_class}", "data.validation=8"], "1 class found"),
             (["data.source=" + str(tmp_path / "missing")], "does not exist")]
    for overrides, message in cases:
        run = tmp_path / "run"
        assert main(["embedded", *overrides, "--run-dir", str(run)]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert not run.exists()
