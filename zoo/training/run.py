"""Train a recipe into a run directory, resume it after a crash, evaluate what it saved.

A run directory (``runs/<recipe>-<model>/`` unless given) holds::

    recipe.yaml          the resolved recipe (every field; what a resume is checked against)
    history.csv          one row per finished epoch (epoch counted from 1)
    tensorboard/         TensorBoard logs
    checkpoints/         backup/ (keras.callbacks.BackupAndRestore, deleted when the run ends),
                         best.weights.h5 (best val accuracy), last.weights.h5 (last good epoch),
                         swa.npz (the running weight average, with ``train.swa_start_epoch``)
    model.weights.h5     final weights of the inference model (the average, with SWA)
    model.keras          the inference model: raw 0..255 RGB -> normalisation -> zoo model -> logits
    report.json / report.md / curves.png

Killing the process (even ``kill -9``) and running the same command again continues after the
last finished epoch; a finished run directory is never overwritten unless asked to.

    python -m zoo.training.run resnet20-budget train.epochs=3 [--run-dir D] [--overwrite]
"""
from __future__ import annotations

import argparse
import difflib
import math
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import keras
import numpy as np
import tensorflow as tf

import zoo.data as zdata
from zoo.training import distill
from zoo import flops as zflops
from zoo import runtime
from zoo.models import registry
from zoo import report as zreport
from zoo.errors import ZooError
from zoo.training.recipe import Recipe, RecipeError, dump, load_recipe, parse_args_with_overrides, resolve, same_experiment

__all__ = [
    "EvalResult",
    "RecipeSchedule",
    "RunDirError",
    "RunFinishedError",
    "RunResult",
    "TrainingDiverged",
    "add_eval_arguments",
    "add_train_arguments",
    "compile_model",
    "eval_from_args",
    "evaluate",
    "main",
    "run_from_args",
    "train",
    "validate_recipe",
]

HOLDOUT = "holdout"  # name of the held-out validation images in reports
ARTIFACTS = ("recipe.yaml", "history.csv", "tensorboard", "checkpoints", "model.weights.h5", "model.keras",
             "report.json", "report.md", "curves.png", "eval_report.json", "eval_report.md")


class RunDirError(RuntimeError):
    """The run directory holds a run of a different recipe."""


class RunFinishedError(RunDirError):
    """The run directory holds a finished run (pass ``overwrite=True`` to train it again)."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN/Inf and ``train.nan_policy`` is ``raise``."""


@dataclass
class RunResult:
    """What :func:`train` returns: the run directory, its status and its report."""

    run_dir: Path
    status: str  # "completed" or "nan"
    report: dict[str, Any]

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.report.get("history", [])

    @property
    def final(self) -> dict[str, Any]:
        return self.report.get("final") or {}

    @property
    def best(self) -> dict[str, Any]:
        return self.report.get("best") or {}

    @classmethod
    def from_dir(cls, run_dir: str | Path) -> RunResult:
        """The result of a finished run, read from its ``report.json``."""
        report = zreport.read_json(Path(run_dir) / "report.json")
        return cls(Path(run_dir), report["status"], report)


@dataclass
class EvalResult:
    """What :func:`evaluate` returns: the metrics, the full report and the files written."""

    metrics: dict[str, float]
    report: dict[str, Any]
    files: dict[str, Path]


# ----------------------------------------------------------------------------------- schedule
@keras.saving.register_keras_serializable(package="zoo")
class RecipeSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The learning rate of :class:`zoo.training.recipe.ScheduleSection`, per step.

    Time is measured in fractional epochs (``step / steps_per_epoch``), so step milestones drop
    the rate after the epoch they name. ``onecycle`` without ``warmup_epochs`` rises over the
    first 30% of the schedule (Smith & Topin 2019; PyTorch's ``pct_start``). ``cycles`` restarts
    the decay that many times after the warm-up, each cycle ``(epochs - warmup) / cycles`` long.
    """

    def __init__(self, lr: float, steps_per_epoch: int, name: str = "constant", epochs: float = 1.0,
                 warmup_epochs: float = 0.0, start_factor: float = 0.1, milestones: Sequence[float] = (),
                 gamma: float = 0.1, final_factor: float = 0.0, cycles: int = 1):
        self.lr, self.steps_per_epoch, self.name = float(lr), int(steps_per_epoch), name
        self.epochs, self.warmup_epochs = float(epochs), float(warmup_epochs)
        if name == "onecycle" and not warmup_epochs:
            self.warmup_epochs = 0.3 * self.epochs
        self.start_factor, self.gamma, self.final_factor = float(start_factor), float(gamma), float(final_factor)
        self.milestones = [float(m) for m in milestones]
        self.cycles = int(cycles)

    def _decay(self, e):
        ops, w = keras.ops, self.warmup_epochs
        length = max(self.epochs - w, 1e-9) / self.cycles
        if self.cycles > 1:  # time within the current cycle
            e = ops.where(e > w, w + ops.mod(e - w, length), e)
        t = ops.clip((e - w) / length, 0.0, 1.0)
        if self.name == "step":
            passed = sum((ops.cast(e >= m, "float32") for m in self.milestones), ops.zeros_like(e))
            return ops.power(self.gamma, passed)
        if self.name == "cosine":
            return self.final_factor + (1 - self.final_factor) * 0.5 * (1 + ops.cos(math.pi * t))
        if self.name in ("linear", "onecycle"):
            return 1 - (1 - self.final_factor) * t
        return ops.ones_like(e)

    def __call__(self, step):
        ops = keras.ops
        e = ops.cast(step, "float32") / float(self.steps_per_epoch)
        factor = self._decay(e)
        if self.warmup_epochs > 0:
            warm = self.start_factor + (1 - self.start_factor) * ops.minimum(e / self.warmup_epochs, 1.0)
            factor = ops.where(e < self.warmup_epochs, warm, factor)
        return self.lr * factor

    def get_config(self) -> dict[str, Any]:
        return {"lr": self.lr, "steps_per_epoch": self.steps_per_epoch, "name": self.name, "epochs": self.epochs,
                "warmup_epochs": self.warmup_epochs, "start_factor": self.start_factor,
                "milestones": self.milestones, "gamma": self.gamma, "final_factor": self.final_factor,
                "cycles": self.cycles}


# ---------------------------------------------------------------------------------- callbacks
class NanGuard(keras.callbacks.TerminateOnNaN):
    """``TerminateOnNaN(raise_error=True)`` that remembers where it tripped, and also trips at an
    epoch's end when a weight is no longer finite (the last update of an epoch can break the
    weights while every loss of the epoch was finite). It runs first, and raising skips the other
    callbacks' ``on_epoch_end``: no checkpoint of broken weights is ever written."""

    def __init__(self):
        super().__init__(raise_error=True)
        self.tripped: dict[str, Any] | None = None
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            self.tripped = {"epoch": self.epoch + 1, "batch": int(batch) + 1, "loss": float(loss)}
        super().on_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        bad = [k for k in ("loss", "val_loss") if k in (logs or {}) and not np.isfinite(logs[k])]
        if bad or not all(np.isfinite(keras.ops.convert_to_numpy(w)).all() for w in self.model.weights):
            value = float(logs[bad[0]]) if bad else float("nan")
            self.tripped = {"epoch": epoch + 1, "batch": "end", "loss": value,
                            "what": bad[0] if bad else "weights"}
            raise RuntimeError(f"non-finite {self.tripped['what']} at the end of epoch {epoch + 1}")


class EpochStats(keras.callbacks.Callback):
    """Adds ``lr`` (at the epoch's first step), ``epoch_time_s``, ``train_time_s`` (without
    validation) and ``train_images_per_s`` to each epoch's logs; counts the epochs this process
    ran and says so when ``BackupAndRestore`` made it start after epoch 1."""

    def __init__(self, images_per_epoch: int):
        super().__init__()
        self.images = images_per_epoch
        self.epochs_run = 0
        self._start = self._train_end = None
        self._lr = float("nan")

    def on_epoch_begin(self, epoch, logs=None):
        if self.epochs_run == 0 and epoch > 0:
            print(f"zoo.train: resuming at epoch {epoch + 1}: epochs 1-{epoch} restored from checkpoints/backup",
                  flush=True)
        self._lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self._start, self._train_end = time.perf_counter(), None

    def on_test_begin(self, logs=None):
        if self._start is not None and self._train_end is None:
            self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        train_time = (self._train_end or now) - self._start
        logs.update(lr=self._lr, epoch_time_s=now - self._start, train_time_s=train_time,
                    train_images_per_s=self.images / max(train_time, 1e-9))
        self._start = None
        self.epochs_run += 1


class HistoryCSV(keras.callbacks.Callback):
    """Keras' ``CSVLogger`` with three changes a resumable run needs: epochs count from 1, the
    file is rewritten atomically (a kill never leaves half a row) and a re-run epoch replaces its
    row instead of appending a duplicate."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = Path(path)

    def on_epoch_end(self, epoch, logs=None):
        rows = [r for r in zreport.read_history(self.path) if r.get("epoch", 0) < epoch + 1]
        rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})
        zreport.write_history(rows, self.path)


class WeightAveraging(keras.callbacks.Callback):
    """Stochastic weight averaging (Izmailov et al. 2018, Algorithm 1): from epoch ``start``
    (1-based) on, the trainable weights at the end of every ``every``-th epoch join a running mean.
    The mean and the last epoch it covers are saved atomically to ``path`` each time, so a killed
    run resumes with its average (an epoch re-run after a resume is not counted twice).
    :meth:`apply` then loads the mean into the model and recomputes its BatchNorm statistics (§3.2)."""

    def __init__(self, start: int, path: Path, every: int = 1):
        super().__init__()
        self.start, self.path, self.every = int(start), Path(path), int(every)
        self.mean: list[np.ndarray] | None = None
        self.count, self.last_epoch = 0, 0

    def on_train_begin(self, logs=None):
        if self.path.exists():
            with np.load(self.path) as saved:
                self.count, self.last_epoch = int(saved["count"]), int(saved["epoch"])
                self.mean = [saved[f"w{i}"] for i in range(len(self.model.trainable_weights))]

    def _due(self, epoch: int) -> bool:
        """Whether 1-based ``epoch`` joins the average (and has not already, before a resume)."""
        return epoch >= self.start and (epoch - self.start) % self.every == 0 and epoch > self.last_epoch

    def on_epoch_end(self, epoch, logs=None):
        if not self._due(epoch + 1):
            return
        weights = [keras.ops.convert_to_numpy(w).astype(np.float64) for w in self.model.trainable_weights]
        if self.mean is None:
            self.mean = weights
        else:
            self.mean = [m + (w - m) / (self.count + 1) for m, w in zip(self.mean, weights)]
        self.count, self.last_epoch = self.count + 1, epoch + 1
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, count=self.count, epoch=self.last_epoch, **{f"w{i}": m for i, m in enumerate(self.mean)})
        tmp.replace(self.path)

    def apply(self, model: keras.Model, images: tf.data.Dataset, steps: int) -> dict[str, Any]:
        """Load the average into ``model``, recompute BatchNorm statistics on ``steps`` batches of
        ``images`` and return what was done, for the report."""
        if self.mean is None:
            raise RuntimeError(f"no weights were averaged: the run ended before epoch {self.start}.")
        for variable, mean in zip(model.trainable_weights, self.mean):
            variable.assign(mean.astype(variable.dtype))
        batches = recompute_batchnorm(model, images, steps)
        print(f"zoo.train: weights averaged over epochs {self.start}-{self.last_epoch} (every {self.every}: "
              f"{self.count} models); BatchNorm statistics recomputed on {batches} training batches", flush=True)
        return {"start_epoch": self.start, "every": self.every, "last_epoch": self.last_epoch,
                "models_averaged": self.count, "batchnorm_batches": batches}


def recompute_batchnorm(model: keras.Model, images: tf.data.Dataset, steps: int) -> int:
    """Replace the moving statistics of every BatchNorm layer in ``model`` by their exact means
    over ``steps`` batches of ``images`` (``(x, y)`` batches) seen in training mode, as SWA's
    ``bn_update`` does (Izmailov et al. 2018 §3.2); returns the batches used. Weights other than the
    statistics are untouched."""
    layers = [l for l in model._flatten_layers(include_self=False)  # nested models' layers too
              if isinstance(l, keras.layers.BatchNormalization)]
    if not layers:
        return 0
    momenta = [l.momentum for l in layers]
    sums = [[np.zeros(l.moving_mean.shape), np.zeros(l.moving_variance.shape)] for l in layers]
    batches = 0
    try:
        for l in layers:
            l.momentum = 0.0  # the moving statistics become the last batch's, read after each step
        forward = tf.function(lambda x: model(x, training=True))  # traced after the change
        for x, _ in images.take(steps):
            forward(x)
            for (mean, var), l in zip(sums, layers):
                mean += keras.ops.convert_to_numpy(l.moving_mean)
                var += keras.ops.convert_to_numpy(l.moving_variance)
            batches += 1
    finally:
        for l, m in zip(layers, momenta):
            l.momentum = m
    if batches:
        for (mean, var), l in zip(sums, layers):
            l.moving_mean.assign((mean / batches).astype(l.moving_mean.dtype))
            l.moving_variance.assign((var / batches).astype(l.moving_variance.dtype))
    return batches


# ------------------------------------------------------------------------------------ run dir
def _run_dir(recipe: Recipe, run_dir: str | Path | None) -> Path:
    return Path(run_dir) if run_dir else Path(recipe.output.runs_dir) / recipe.run_name


def _clear(path: Path) -> None:
    """Remove the run artefacts (and only those) from ``path``."""
    for name in ARTIFACTS:
        target = path / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def prepare_run_dir(recipe: Recipe, run_dir: str | Path | None = None, overwrite: bool = False) -> Path:
    """Create (or reopen for resuming) the run directory and save ``recipe.yaml``.

    Raises :class:`RunFinishedError` for a finished run and :class:`RunDirError` for a run of a
    different recipe that finished at least one epoch, unless ``overwrite``.
    """
    path = _run_dir(recipe, run_dir)
    saved = path / "recipe.yaml"
    started = (path / "report.json").exists() or bool(zreport.read_history(path / "history.csv"))
    if overwrite or not started:  # a run that never finished an epoch has nothing to keep
        _clear(path)
    elif saved.exists():
        try:
            diffs = same_experiment(load_recipe(saved), recipe)
        except RecipeError as err:
            diffs = [f"the saved recipe no longer loads ({err})"]
        if diffs:
            raise RunDirError(
                f"{path} holds a run of a different recipe ({'; '.join(diffs[:6])}). Choose another run "
                f"directory (--run-dir, or output.name=...) or pass --overwrite to replace it.")
        if (path / "report.json").exists():
            status = zreport.read_json(path / "report.json").get("status", "?")
            raise RunFinishedError(f"{path} already holds a finished run (status {status}); see "
                                   f"{path / 'report.md'}. Pass --overwrite to train it again.")
    path.mkdir(parents=True, exist_ok=True)
    zreport.write_text(saved, dump(recipe))
    return path


# --------------------------------------------------------------------------------------- data
class Data(NamedTuple):
    train: tf.data.Dataset
    validation: tf.data.Dataset | None
    info: Any  # zoo.data.DatasetInfo
    raw_train: tf.data.Dataset
    images_per_epoch: int
    steps_per_epoch: int


def _one_hot(ds: tf.data.Dataset, num_classes: int) -> tf.data.Dataset:
    return ds.map(lambda x, y: (x, tf.one_hot(y, num_classes)), num_parallel_calls=tf.data.AUTOTUNE)


def _pipeline(recipe: Recipe, ds: tf.data.Dataset, num_classes: int, training: bool) -> tf.data.Dataset:
    d = recipe.data
    out = zdata.make_pipeline(ds, batch_size=d.batch_size, training=training,
                              augment=tuple(d.augment if training else d.eval_augment), image_size=d.image_size,
                              seed=recipe.train.seed, cache=d.cache, shuffle_buffer=d.shuffle_buffer)
    return _one_hot(out, num_classes) if recipe.train.label_smoothing > 0 else out


def _dirs(recipe: Recipe) -> dict[str, str | None]:
    """``data_dir`` and ``manual_dir`` with ``~`` expanded."""
    return {k: str(Path(v).expanduser()) if v else None
            for k, v in (("data_dir", recipe.data.data_dir), ("manual_dir", recipe.data.manual_dir))}


def load_data(recipe: Recipe) -> Data:
    """The recipe's train and validation pipelines (float32 0..255 images, batched)."""
    d = recipe.data
    splits = zdata.load(d.source, split=d.split, validation=d.validation, seed=d.seed, limit=d.limit,
                        **_dirs(recipe))
    info = splits.info
    train_ds = _pipeline(recipe, splits.train, info.num_classes, training=True)
    val_ds = _pipeline(recipe, splits.validation, info.num_classes, False) if splits.validation is not None else None
    batches = int(train_ds.cardinality())  # the training pipeline drops the last partial batch
    full_steps = batches if batches > 0 else math.ceil(info.num_train / d.batch_size)
    steps = recipe.train.steps_per_epoch or full_steps
    if recipe.train.steps_per_epoch:
        train_ds = train_ds.repeat()
    return Data(train_ds, val_ds, info, splits.train, min(steps * d.batch_size, info.num_train), steps)


# -------------------------------------------------------------------------------------- model
def validate_recipe(recipe: Recipe) -> None:
    """Check what :mod:`zoo.training.recipe` cannot, without building or loading anything: the model name
    and build options (via the registry), the augmentation and normalisation names (via
    :mod:`zoo.data`), that ``train.init_weights`` exists. Raises ``ValueError`` (``ZooError`` / ``RecipeError``) or
    ``FileNotFoundError``."""
    registry.resolve_plan(recipe.model.name, **recipe.model.options)
    if recipe.train.init_weights is not None:
        init_weights_path(recipe.train.init_weights)
    for spec in recipe.train.teachers:
        distill.check_teacher_spec(spec)
    if recipe.train.teachers and not _from_logits(recipe):
        raise RecipeError("train.teachers: distillation needs a student that outputs logits; "
                          "drop model.classifier_activation.")
    d = recipe.data
    for field, names, valid in (("augment", d.augment, zdata.AUGMENTATIONS),
                                ("eval_augment", d.eval_augment, zdata.AUGMENTATIONS),
                                ("normalization", [d.normalization], zdata.NORMALIZATIONS)):
        for name in names:
            if name not in valid:
                near = difflib.get_close_matches(name, valid, n=1)
                hint = f" Did you mean {near[0]}?" if near else ""
                raise RecipeError(f"data.{field}: unknown {name!r}.{hint} Valid: {', '.join(valid)}.")


def _input_shape(recipe: Recipe, info: Any) -> tuple[int, int, int]:
    if "input_shape" in recipe.model.options:
        return tuple(recipe.model.options["input_shape"])
    size = recipe.data.image_size
    return (size, size, info.image_shape[-1]) if size else tuple(info.image_shape)


def build_model(recipe: Recipe, info: Any, normalization: keras.layers.Layer) -> tuple[keras.Model, keras.Model]:
    """``(inference, net)``: ``net`` is the zoo model (logits unless ``classifier_activation``);
    ``inference`` wraps it as raw 0..255 RGB -> ``normalization`` -> ``net``."""
    shape = _input_shape(recipe, info)
    options = {"num_classes": info.num_classes, **recipe.model.options, "input_shape": shape}
    net = registry.build(recipe.model.name, **options)
    inputs = keras.Input(shape=shape, name="rgb")
    outputs = net(normalization(inputs))
    return keras.Model(inputs, outputs, name=f"{net.name}_inference"), net


def init_weights_path(init_weights: str | Path) -> Path:
    """The weights file that ``train.init_weights`` names: a run directory's ``model.weights.h5``
    (else its ``model.keras``, as results/runs keeps), a ``.weights.h5`` or a ``.keras`` file (Keras
    reads the weights alone from it). Raises ``FileNotFoundError`` naming what is missing."""
    path = Path(init_weights)
    if path.is_dir():
        path = next((path / f for f in ("model.weights.h5", "model.keras") if (path / f).is_file()),
                    path / "model.weights.h5")
    if not path.is_file() or not path.name.endswith((".weights.h5", ".keras")):
        raise FileNotFoundError(f"train.init_weights: no weights at {path}: give a finished run directory "
                                "(with model.weights.h5 or model.keras), a .weights.h5 or a .keras file of the "
                                "same recipe's model.")
    return path


def load_init_weights(model: keras.Model, init_weights: str | Path | None) -> None:
    """Warm-start ``model`` (the inference model: normalisation + net) from ``init_weights``.
    The normalisation statistics are weights too, so they come from the file. Called before
    ``fit``: on a resume, ``BackupAndRestore`` then replaces them with the run's own state."""
    if init_weights is None:
        return
    path = init_weights_path(init_weights)
    try:
        model.load_weights(path)
    except ValueError as e:
        first = str(e).splitlines()[0][:200]  # Keras appends whole tensors
        raise ValueError(f"train.init_weights: {path} does not fit {model.name} ({first}). "
                         "Warm starts need the same model, options and normalisation as the run that saved it.") from e
    print(f"zoo.train: weights initialised from {path}", flush=True)


def _with_teachers(model: keras.Model, recipe: Recipe, data: Data) -> keras.Model:
    """``model`` distilled from ``train.teachers`` (:mod:`zoo.training.distill`), or ``model`` itself."""
    t = recipe.train
    if not t.teachers:
        return model
    teachers = distill.load_teachers(t.teachers, data.info.num_classes, _input_shape(recipe, data.info))
    print(f"zoo.train: distilling from {', '.join(t.teachers)} (weight {t.distill_weight}, "
          f"temperature {t.distill_temperature}{', with mirrored views' if t.distill_flip else ''})", flush=True)
    return distill.distilling(model, teachers, t.distill_weight, t.distill_temperature, t.distill_flip)


def _from_logits(recipe: Recipe) -> bool:
    return recipe.model.options.get("classifier_activation") in (None, "linear")


def _loss_and_metrics(recipe: Recipe, num_classes: int, one_hot: bool) -> tuple[Any, list[Any]]:
    logits = _from_logits(recipe)
    if one_hot:
        loss = keras.losses.CategoricalCrossentropy(from_logits=logits, label_smoothing=recipe.train.label_smoothing)
        metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
        if num_classes > 10:
            metrics.append(keras.metrics.TopKCategoricalAccuracy(5, name="top5"))
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=logits)
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        if num_classes > 10:
            metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5"))
    return loss, metrics


def _decayed(model: keras.Model) -> list[Any]:
    """The variables weight decay applies to: tensors of rank >= 2 (kernels)."""
    return [v for v in model.trainable_variables if len(v.shape) >= 2]


def make_optimizer(recipe: Recipe, model: keras.Model, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The recipe's optimizer with its schedule; applies weight decay as the recipe says (L2
    penalties on the kernels, or the optimizer's decoupled decay); see :mod:`zoo.training.recipe`."""
    o, s = recipe.optimizer, recipe.schedule
    schedule = RecipeSchedule(o.lr, steps_per_epoch, s.name, recipe.schedule_epochs, s.warmup_epochs,
                              s.start_factor, s.milestones, s.gamma, s.final_factor, s.cycles)
    decoupled = o.weight_decay if o.decay_mode == "decoupled" and o.weight_decay > 0 else None
    common = {"learning_rate": schedule, "weight_decay": decoupled, "clipnorm": o.clipnorm}
    if o.name == "sgd":
        opt = keras.optimizers.SGD(momentum=o.momentum, nesterov=o.nesterov, **common)
    else:
        cls = keras.optimizers.AdamW if o.name == "adamw" else keras.optimizers.Adam
        common["weight_decay"] = decoupled or (0.0 if o.name == "adamw" else None)
        opt = cls(beta_1=o.beta_1, beta_2=o.beta_2, epsilon=o.epsilon, **common)
    decayed = {id(v) for v in _decayed(model)}
    if decoupled:
        opt.exclude_from_weight_decay(var_list=[v for v in model.trainable_variables if id(v) not in decayed])
    elif o.weight_decay > 0:
        for v in _decayed(model):
            v.regularizer = keras.regularizers.L2(o.weight_decay / 2)  # gradient += weight_decay * w
    return opt


def _strip_l2(model: keras.Model) -> None:
    for v in model.trainable_variables:
        v.regularizer = None


def _compile(model: keras.Model, recipe: Recipe, data: Data) -> None:
    loss, metrics = _loss_and_metrics(recipe, data.info.num_classes, recipe.train.label_smoothing > 0)
    model.compile(optimizer=make_optimizer(recipe, model, data.steps_per_epoch), loss=loss, metrics=metrics,
                  jit_compile=recipe.train.jit_compile, steps_per_execution=recipe.train.steps_per_execution)


def compile_model(model: keras.Model, recipe: Recipe, data: Data) -> None:
    """Compile ``model`` as :func:`train` does: the recipe's optimizer, schedule, weight decay,
    loss and metrics (for callers that run their own ``fit``, e.g. :mod:`zoo.search.tuner`)."""
    _compile(model, recipe, data)


# ---------------------------------------------------------------------------------------- fit
def _verbosity(progress: str) -> int:
    if progress == "auto":
        return 1 if sys.stdout.isatty() else 2
    return {"bar": 1, "epoch": 2, "none": 0}[progress]


class Callbacks(NamedTuple):
    guard: NanGuard
    stats: EpochStats
    all: list[Any]
    swa: WeightAveraging | None = None


def _callbacks(recipe: Recipe, run: Path, data: Data, history: list[dict[str, Any]]) -> Callbacks:
    """Order matters at each epoch's end: history row, then checkpoints, then the resume backup,
    so a backup never claims an epoch that history.csv lacks."""
    ckpt = run / "checkpoints"
    ckpt.mkdir(parents=True, exist_ok=True)
    monitor = "val_accuracy" if data.validation is not None else "accuracy"
    best = max((r[monitor] for r in history if isinstance(r.get(monitor), (int, float))), default=None)
    guard, stats = NanGuard(), EpochStats(data.images_per_epoch)
    t = recipe.train
    swa = WeightAveraging(t.swa_start_epoch, ckpt / "swa.npz", t.swa_every) if t.swa_start_epoch else None
    callbacks = [
        guard,
        stats,
        HistoryCSV(run / "history.csv"),
        *([swa] if swa else []),
        keras.callbacks.ModelCheckpoint(ckpt / "best.weights.h5", monitor=monitor, mode="max", save_best_only=True,
                                        save_weights_only=True, initial_value_threshold=best),
        keras.callbacks.ModelCheckpoint(ckpt / "last.weights.h5", save_weights_only=True),
        keras.callbacks.BackupAndRestore(ckpt / "backup", double_checkpoint=True, delete_checkpoint=False),
    ]
    if recipe.output.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(run / "tensorboard", write_graph=False, profile_batch=0))
    return Callbacks(guard, stats, callbacks, swa)


def _fit(model: keras.Model, recipe: Recipe, data: Data, callbacks: Callbacks) -> str:
    """Run ``model.fit``; returns ``"completed"`` or ``"nan"``."""
    try:
        model.fit(data.train, validation_data=data.validation, epochs=recipe.train.epochs,
                  steps_per_epoch=data.steps_per_epoch if recipe.train.steps_per_epoch else None,
                  callbacks=callbacks.all, shuffle=False, verbose=_verbosity(recipe.train.progress))
    except RuntimeError:
        if callbacks.guard.tripped is None:
            raise
        for cb in callbacks.all:  # close the TensorBoard writers; BackupAndRestore keeps its state
            if isinstance(cb, keras.callbacks.TensorBoard):
                cb.on_train_end()
        return "nan"
    return "completed"


# ------------------------------------------------------------------------------------- report
def _metrics_on(model: keras.Model, recipe: Recipe, ds: tf.data.Dataset, num_classes: int) -> dict[str, float]:
    """Loss (plain cross-entropy: no label smoothing, no weight-decay penalty) and accuracy of
    ``model`` on ``ds`` (integer or one-hot labels)."""
    one_hot = ds.element_spec[1].shape.rank == 2
    _, metrics = _loss_and_metrics(recipe, num_classes, one_hot)
    cls = keras.losses.CategoricalCrossentropy if one_hot else keras.losses.SparseCategoricalCrossentropy
    loss = cls(from_logits=_from_logits(recipe))
    model.compile(loss=loss, metrics=metrics, jit_compile=False)
    return {k: float(v) for k, v in model.evaluate(ds, verbose=0, return_dict=True).items()}


def _evaluate_split(model: keras.Model, recipe: Recipe, num_classes: int) -> dict[str, Any]:
    """Metrics on ``data.eval_split``; a source without that split gives an ``error`` entry
    instead of losing the report of a finished training."""
    try:
        ds = _eval_dataset(recipe, recipe.data.source, recipe.data.eval_split)[0]
    except (ValueError, OSError) as err:
        print(f"zoo.train: no {recipe.data.eval_split} evaluation: {err}", file=sys.stderr)
        return {"error": str(err)}
    return _metrics_on(model, recipe, ds, num_classes)


def _model_facts(recipe: Recipe, inference: keras.Model, net: keras.Model) -> dict[str, Any]:
    try:
        flops = int(zflops.count_flops(net))
    except Exception as err:  # noqa: BLE001 - a report without FLOPs is still a report
        print(f"zoo.train: could not count FLOPs ({err})", file=sys.stderr)
        flops = None
    def count(weights: list[Any]) -> int:
        return int(sum(np.prod(w.shape) for w in weights))

    return {"name": recipe.model.name, "options": recipe.model.options, "input_shape": list(inference.input_shape[1:]),
            "params_trainable": count(inference.trainable_weights),
            "params_non_trainable": count(inference.non_trainable_weights), "flops": flops}


def _data_facts(info: Any) -> dict[str, Any]:
    return {"name": info.name, "num_classes": info.num_classes, "num_train": info.num_train,
            "num_validation": info.num_validation, "image_shape": list(info.image_shape),
            "class_names": list(info.class_names)}


def _summaries(history: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``final`` (last epoch's metrics) and ``best`` (epoch of highest val accuracy)."""
    if not history:
        return {}, {}
    keys = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "top5", "val_top5")
    final = {k: history[-1][k] for k in keys if k in history[-1]}
    monitor = "val_accuracy" if "val_accuracy" in history[-1] else "accuracy"
    row = max(history, key=lambda r: r.get(monitor, -1.0))
    best = {k: row[k] for k in ("epoch", "val_accuracy", "val_loss", "accuracy", "loss") if k in row}
    return final, best


def _timing(history: list[dict[str, Any]], started: float, epochs_run: int) -> dict[str, Any]:
    """Training time summed over all epochs (of every session), the median throughput, and
    this session's share."""
    rates = [r["train_images_per_s"] for r in history if "train_images_per_s" in r]
    before = len(history) - epochs_run
    return {"train_time_s": sum(r.get("epoch_time_s", 0.0) for r in history),
            "train_images_per_s": statistics.median(rates) if rates else None,
            "session_wall_time_s": time.perf_counter() - started,
            "resumed_from_epoch": before if before > 0 else None, "epochs_this_session": epochs_run}


def _settings(recipe: Recipe, data: Data) -> dict[str, Any]:
    return {"jit_compile": recipe.train.jit_compile, "steps_per_execution": recipe.train.steps_per_execution,
            "deterministic": recipe.train.deterministic, "seed": recipe.train.seed,
            "batch_size": recipe.data.batch_size, "steps_per_epoch": data.steps_per_epoch,
            "weight_decay_mode": recipe.optimizer.decay_mode,
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads()}


# -------------------------------------------------------------------------------------- train
def train(recipe: str | Path | Recipe | dict, overrides: Sequence[str] = (), run_dir: str | Path | None = None,
          overwrite: bool = False, *, entry: str = "train", strategy: Any = None) -> RunResult:
    """Train ``recipe`` (a path, a name in ``recipes/``, a dict or a :class:`Recipe`) with dotted
    ``overrides`` into ``run_dir`` (default ``runs/<recipe>-<model>``), resuming an interrupted
    run there. Raises :class:`RunFinishedError` / :class:`RunDirError` rather than overwriting
    (``overwrite=True`` starts afresh) and :class:`TrainingDiverged` on NaN with
    ``train.nan_policy: raise``."""
    started = time.perf_counter()
    runtime.git_commit()  # the commit at launch is the one the report records
    recipe = load_recipe(recipe, overrides)
    validate_recipe(recipe)
    run = prepare_run_dir(recipe, run_dir, overwrite)
    runtime.seed_everything(recipe.train.seed, recipe.train.deterministic)
    from zoo.bench import core as bench  # the per-device fastest settings, measured in zoo/bench.py

    bench.apply_training_settings(recipe)
    data = load_data(recipe)
    normalization = zdata.normalization_layer(recipe.data.normalization, data.raw_train)
    model, net = build_model(recipe, data.info, normalization)
    load_init_weights(model, recipe.train.init_weights)
    model = _with_teachers(model, recipe, data)
    _compile(model, recipe, data)
    callbacks = _callbacks(recipe, run, data, zreport.read_history(run / "history.csv"))
    _announce(recipe, run, data)
    status = _fit(model, recipe, data, callbacks)
    averaged = None
    if callbacks.swa and status == "completed":
        averaged = callbacks.swa.apply(model, data.train, data.steps_per_epoch)
    result = _finish(recipe, run, data, model, net, status, callbacks, started, averaged)
    if status == "nan" and recipe.train.nan_policy == "raise":
        raise TrainingDiverged(result.report["message"])
    return result


def _announce(recipe: Recipe, run: Path, data: Data) -> None:
    t = recipe.train
    print(f"zoo.train: {recipe.name} ({recipe.model.name}) -> {run}\n"
          f"  data {data.info.name}: {data.info.num_train} train / {data.info.num_validation} validation images, "
          f"{data.steps_per_epoch} steps/epoch of {recipe.data.batch_size}\n"
          f"  settings: jit_compile={t.jit_compile} steps_per_execution={t.steps_per_execution} "
          f"deterministic={t.deterministic} seed={t.seed}", flush=True)


def _restore_last_good(run: Path, model: keras.Model, tripped: dict[str, Any], history: list[dict[str, Any]]) -> str:
    """After a NaN: load the last good epoch's weights (if any) and explain what happened."""
    what = ("the weights became non-finite" if tripped.get("what") == "weights"
            else f"the loss became {tripped['loss']}")
    message = f"training stopped: {what} at epoch {tripped['epoch']}, batch {tripped['batch']} (lower optimizer.lr?). "
    last_good = run / "checkpoints" / "last.weights.h5"
    if history and last_good.exists():
        model.load_weights(last_good)
        message += f"Kept the last good checkpoint ({last_good}, epoch {history[-1]['epoch']})."
    else:
        message += "No epoch finished, so there is no good checkpoint."
    print(f"zoo.train: {message}", file=sys.stderr, flush=True)
    return message


def _save_and_evaluate(run: Path, recipe: Recipe, data: Data, model: keras.Model) -> tuple[keras.Model, dict]:
    """Save the inference model (uncompiled: no optimizer state, no L2 penalties) and evaluate it
    on the held-out images and ``data.eval_split``."""
    _strip_l2(model)
    inference = keras.Model(model.inputs, model.outputs, name=model.name)
    inference.save_weights(run / "model.weights.h5")
    inference.save(run / "model.keras")
    evaluation = {}
    if data.validation is not None:
        evaluation[HOLDOUT] = _metrics_on(inference, recipe, data.validation, data.info.num_classes)
    if recipe.data.eval_split:
        evaluation[recipe.data.eval_split] = _evaluate_split(inference, recipe, data.info.num_classes)
    return inference, evaluation


def _finish(recipe: Recipe, run: Path, data: Data, model: keras.Model, net: keras.Model, status: str,
            callbacks: Callbacks, started: float, averaged: dict[str, Any] | None = None) -> RunResult:
    """Save the final model (the weight average when ``averaged`` says so), evaluate it and write
    the report."""
    history = zreport.read_history(run / "history.csv")
    tripped = callbacks.guard.tripped
    message = _restore_last_good(run, model, tripped, history) if status == "nan" else ""
    evaluation = {}
    if status == "completed" or history:
        model, evaluation = _save_and_evaluate(run, recipe, data, model)
    final, best = _summaries(history)
    report = {
        "run_name": run.name, "run_dir": str(run), "status": status, "message": message,
        "epochs": recipe.train.epochs, "recipe": resolve(recipe),
        "model": _model_facts(recipe, model, net), "data": _data_facts(data.info),
        "final": final, "best": best, "evaluation": evaluation, "weight_averaging": averaged, "nan": tripped,
        "history": history,
        "timing": _timing(history, started, callbacks.stats.epochs_run), "settings": _settings(recipe, data),
        "environment": runtime.environment(),
    }
    zreport.write_run_report(report, run)
    shutil.rmtree(run / "checkpoints" / "backup", ignore_errors=True)
    print(f"zoo.train: {status}; final val accuracy {final.get('val_accuracy')}, report {run / 'report.md'}",
          flush=True)
    return RunResult(run, status, zreport.read_json(run / "report.json"))


# ----------------------------------------------------------------------------------- evaluate
def _eval_dataset(recipe: Recipe, source: str, split: str | None, limit: int | None = None,
                  batch_size: int | None = None) -> tuple[tf.data.Dataset, Any, int]:
    """``(batched dataset, info, number of images)`` of ``split`` of ``source``; ``None`` is the
    recipe's held-out validation images (``data.validation`` of ``data.split``, same seed)."""
    d = recipe.data
    common = {"seed": d.seed, "limit": limit or d.limit, **_dirs(recipe)}
    if split is None:
        splits = zdata.load(source, split=d.split, validation=d.validation, **common)
        ds, count = splits.validation, splits.info.num_validation
        if ds is None:
            raise ValueError(f"recipe {recipe.name!r} holds out no validation images (data.validation=0).")
    else:
        splits = zdata.load(source, split=split, validation=0, **common)
        ds, count = splits.train, splits.info.num_train
    out = zdata.make_pipeline(ds, batch_size=batch_size or d.batch_size, training=False,
                              augment=tuple(d.eval_augment), image_size=d.image_size, seed=0, cache=False)
    return out, splits.info, count


def _locate(run_or_weights: str | Path) -> tuple[Path, Path | None]:
    """``(model or weights file, recipe.yaml next to it or None)``."""
    path = Path(run_or_weights)
    if path.is_dir():
        path = path / "model.keras"
    if not path.exists():
        raise FileNotFoundError(f"no model at {path}: give a run directory, a .keras file or a .weights.h5 file.")
    for folder in (path.parent, path.parent.parent):
        if (folder / "recipe.yaml").exists():
            return path, folder / "recipe.yaml"
    return path, None


def _load_for_eval(path: Path, recipe: Recipe, info: Any) -> tuple[keras.Model, keras.Model]:
    """``(inference, net)`` from a ``.keras`` file (safe mode) or a build plus ``.weights.h5``."""
    if path.name.endswith(".keras"):
        inference = keras.saving.load_model(path, safe_mode=True, compile=False)
        nets = [layer for layer in inference.layers if isinstance(layer, keras.Model)]
        return inference, nets[-1] if nets else inference
    inference, net = build_model(recipe, info, _unfitted_normalization(recipe))
    inference.load_weights(path)  # the normalisation statistics are weights too
    return inference, net


def _unfitted_normalization(recipe: Recipe) -> keras.layers.Layer:
    """A normalisation layer of the recipe's kind, to load saved statistics into. Fitted kinds
    are fitted again on the recipe's training split (the weights then overwrite them)."""
    kind = recipe.data.normalization
    try:
        return zdata.normalization_layer(kind)
    except ValueError:
        d = recipe.data
        splits = zdata.load(d.source, split=d.split, validation=d.validation, seed=d.seed, limit=d.limit,
                            **_dirs(recipe))
        return zdata.normalization_layer(kind, splits.train)


def evaluate(run_or_weights: str | Path, source: str | None = None, split: str | None = None, *,
             recipe: str | Path | Recipe | None = None, overrides: Sequence[str] = (), limit: int | None = None,
             batch_size: int | None = None, output_dir: str | Path | None = None) -> EvalResult:
    """Evaluate a run's ``model.keras`` (a run directory or .keras file, loaded with
    ``safe_mode=True``) or a ``.weights.h5`` file (built from the recipe) on ``split`` of
    ``source`` (default: the recipe's source), and write ``eval_report.json``/``.md`` into
    ``output_dir`` (default: beside the model). ``split=None`` evaluates the images the recipe
    held out for validation; any other name is a split of ``source`` (e.g. ``test``). The recipe
    comes from the run's ``recipe.yaml`` (or the one above a checkpoint) unless given."""
    started = time.perf_counter()
    path, saved = _locate(run_or_weights)
    if recipe is None and saved is None:
        raise ValueError(f"no recipe.yaml next to {path}; pass recipe=... (the recipe that trained it).")
    recipe = load_recipe(recipe if recipe is not None else saved, overrides)
    source = source or recipe.data.source
    ds, info, count = _eval_dataset(recipe, source, split, limit, batch_size)
    inference, net = _load_for_eval(path, recipe, info)
    t0 = time.perf_counter()
    metrics = _metrics_on(inference, recipe, ds, info.num_classes)
    seconds = time.perf_counter() - t0
    report = {
        "weights": str(path), "source": source, "split": split or HOLDOUT, "recipe": resolve(recipe),
        "model": _model_facts(recipe, inference, net), "data": {**_data_facts(info), "num_examples": count},
        "metrics": metrics, "timing": {"eval_time_s": seconds, "images_per_s": count / max(seconds, 1e-9),
                                       "wall_time_s": time.perf_counter() - started},
        "environment": runtime.environment(),
    }
    files = zreport.write_eval_report(report, Path(output_dir) if output_dir else path.parent)
    return EvalResult(metrics, report, files)


# ---------------------------------------------------------------------------------------- CLI
def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``train`` arguments, for ``python -m zoo.training.run`` and the ``zoo train`` command."""
    parser.add_argument("recipe", help="recipe YAML path or name in recipes/ (e.g. resnet20-budget)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides: optimizer.lr=0.05 train.epochs=3")
    parser.add_argument("--run-dir", help="run directory (default runs/<recipe>-<model>)")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished run in the run directory")
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Train from parsed arguments; returns the process exit status (0 also for an already
    finished run, 1 for a bad recipe or run directory, 3 when training ended in NaN)."""
    try:
        result = train(args.recipe, args.overrides, run_dir=args.run_dir, overwrite=args.overwrite)
    except RunFinishedError as err:
        print(f"zoo.train: {err}", file=sys.stderr)
        return 0
    except (RunDirError, RecipeError, ZooError) as err:
        print(f"zoo.train: error: {err}", file=sys.stderr)
        return 1
    except TrainingDiverged:
        return 3
    return 0 if result.status == "completed" else 3


def add_eval_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``eval`` arguments, for the ``zoo eval`` command."""
    parser.add_argument("model", help="run directory, .keras file or .weights.h5 file")
    parser.add_argument("overrides", nargs="*", help="dotted recipe overrides, e.g. data.batch_size=256")
    parser.add_argument("--source", help="dataset (default: the recipe's data.source)")
    parser.add_argument("--split", help="split of the source, e.g. test (default: the run's held-out images)")
    parser.add_argument("--recipe", help="recipe, when no recipe.yaml sits next to the weights")
    parser.add_argument("--limit", type=int, help="evaluate a stratified subset of this many images")
    parser.add_argument("--batch-size", type=int, help="batch size (default: the recipe's)")
    parser.add_argument("--output-dir", help="where eval_report.json/.md go (default: beside the model)")
    return parser


def eval_from_args(args: argparse.Namespace) -> int:
    """Evaluate from parsed arguments and print the metrics; returns the exit status."""
    try:
        result = evaluate(args.model, args.source, args.split, recipe=args.recipe, overrides=args.overrides,
                          limit=args.limit, batch_size=args.batch_size, output_dir=args.output_dir)
    except (RecipeError, ZooError, FileNotFoundError, ValueError) as err:
        print(f"zoo eval: error: {err}", file=sys.stderr)
        return 1
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
    print(f"zoo eval: {result.report['split']} of {result.report['source']}: {metrics}; report {result.files['markdown']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m zoo.training.run RECIPE [overrides...] [--run-dir D] [--overwrite]``."""
    parser = add_train_arguments(argparse.ArgumentParser(prog="python -m zoo.training.run", description=__doc__,
                                                         formatter_class=argparse.RawDescriptionHelpFormatter))
    return run_from_args(parse_args_with_overrides(parser, argv))


if __name__ == "__main__":
    sys.exit(main())
