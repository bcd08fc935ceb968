"""Knowledge distillation (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural
Network", §2): the student learns from the labels and from the softened class probabilities of
one or more trained teachers.

A recipe names its teachers in ``train.teachers``; :func:`zoo.training.train` then trains a
:class:`DistillingModel`, the recipe's model with a loss of

    (1 - w) * CE(labels, student) + w * T^2 * KL(mean_i softmax(t_i / T) || softmax(s / T))

plus the weight-decay penalties, where ``w`` is ``train.distill_weight``, ``T`` is
``train.distill_temperature`` (the ``T^2`` keeps the gradient scale independent of ``T``, §2)
and an ensemble of teachers contributes the mean of its softened probabilities (§2's
"arithmetic mean of the ensemble's predictive distributions"). The teachers see exactly the
augmented batch the student sees ("consistent" teaching, Beyer et al. 2022 §3); with
``train.distill_flip`` they also see its horizontal mirror and the mean runs over both views
(test-time augmentation of the teachers: a better target at twice the teachers' cost). They run in
inference mode, are never trained and are not part of the saved model: checkpoints, weight averages and
``model.weights.h5`` hold the student alone. Validation loss is the plain label loss.

A teacher is named as

- ``NAME:WEIGHTS``: ``zoo.build(NAME, weights=WEIGHTS)``, a published tag (``resnet56:cifar10``)
  or a weights file/run directory of that model; published models take raw 0..255 RGB, as the
  training pipeline gives;
- a ``.keras`` file or a run directory (its ``model.keras``, the inference model that takes raw
  RGB), loaded in safe mode.

Teachers must output logits for the dataset's classes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import keras
from keras import ops

from zoo.errors import ZooError
from zoo.weights import modelfile


class DistillError(ZooError):
    """A teacher that cannot be used: missing, wrong number of classes, bad settings."""


def _model_file(spec: str) -> Path | None:
    """The ``.keras`` file ``spec`` names (itself, or a run directory's ``model.keras``), else None."""
    path = Path(spec)
    if path.is_dir():
        return path / "model.keras"
    return path if path.suffix == ".keras" else None


def check_teacher_spec(spec: str) -> None:
    """Validate ``spec`` without building anything: the file exists, or the model name and its
    weights (tag or path) are known. Raises :class:`DistillError` naming the problem and the forms."""
    forms = "Give NAME:TAG (e.g. resnet56:cifar10), NAME:PATH to weights, or a .keras file / run directory."
    path = _model_file(spec)
    if path is not None:
        if not path.is_file():
            raise DistillError(f"train.teachers: no model at {path}. {forms}")
        modelfile.check_model_file(path, "train.teachers")  # truncated, or refused by safe mode
        return
    name, sep, weights = spec.partition(":")
    if not sep or not name or not weights:
        raise DistillError(f"train.teachers: {spec!r} names no weights. {forms}")
    from zoo.weights import loading as published

    try:
        published.check_weights(name, weights)
    except published.WeightsError as e:
        raise DistillError(f"train.teachers: {spec!r}: {e} {forms}") from e


def load_teacher(spec: str) -> keras.Model:
    """The teacher ``spec`` names (see the module docstring), frozen."""
    check_teacher_spec(spec)
    path = _model_file(spec)
    if path is not None:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    else:
        from zoo.weights.loading import build

        model = build(*spec.split(":", 1), include_preprocessing=True)  # the teacher sees the student's raw RGB
    model.trainable = False
    return model


def load_teachers(specs: Sequence[str], num_classes: int, input_shape: Sequence[int]) -> list[keras.Model]:
    """Load every teacher and check it maps ``input_shape`` images to ``num_classes`` scores."""
    teachers = []
    for spec in specs:
        teacher = load_teacher(spec)
        takes = tuple(teacher.input_shape[1:])
        if len(takes) != len(input_shape) or any(t not in (None, s) for t, s in zip(takes, input_shape)):
            raise DistillError(f"train.teachers: {spec!r} takes {takes} images, the data gives {tuple(input_shape)}: "
                               "a teacher must see the student's images (set data.image_size to match).")
        classes = [tuple(out.shape)[-1] for out in teacher.outputs]
        if classes != [num_classes]:
            raise DistillError(f"train.teachers: {spec!r} outputs {', '.join(map(str, classes))} classes, the data has "
                               f"{num_classes}: a teacher must be trained on the same classes.")
        teachers.append(teacher)
    return teachers


def soft_targets(teachers: Sequence[keras.Model], images: Any, temperature: float, flip: bool = False) -> Any:
    """The mean over ``teachers`` of ``softmax(logits / temperature)`` on ``images`` (a batch of
    ``(N, H, W, C)`` images); with ``flip``, the mean over ``images`` and their horizontal mirrors."""
    if flip:
        images = ops.concatenate([images, ops.flip(images, axis=2)], axis=0)
    probs = [ops.softmax(ops.cast(t(images, training=False), "float32") / temperature, axis=-1) for t in teachers]
    mean = ops.mean(ops.stack(probs), axis=0)
    return ops.mean(ops.stack(ops.split(mean, 2, axis=0)), axis=0) if flip else mean


def distillation_loss(targets: Any, student_logits: Any, temperature: float) -> Any:
    """``T^2 * KL(targets || softmax(student / T))``, averaged over the batch (Hinton et al. §2)."""
    log_student = ops.log_softmax(ops.cast(student_logits, "float32") / temperature, axis=-1)
    log_targets = ops.log(ops.maximum(targets, 1e-12))
    kl = ops.sum(targets * (log_targets - log_student), axis=-1)
    return temperature ** 2 * ops.mean(kl)


class DistillingModel(keras.Model):
    """A functional model (the student) whose training loss adds distillation from frozen
    ``teachers``. The teachers are held outside Keras' tracking, so the model's weights,
    checkpoints and layer walks are the student's alone."""

    def __init__(self, inputs: Any, outputs: Any, *, teachers: Sequence[keras.Model], weight: float,
                 temperature: float, flip: bool = False, name: str | None = None) -> None:
        super().__init__(inputs, outputs, name=name)
        settings = (list(teachers), float(weight), float(temperature), bool(flip))
        object.__setattr__(self, "_distill", settings)  # untracked: the teachers stay out of the saved model

    def distillation_facts(self) -> dict[str, Any]:
        """What this model distils with, for the run's report."""
        teachers, weight, temperature, flip = self._distill
        return {"teachers": [t.name for t in teachers], "weight": weight, "temperature": temperature, "flip": flip}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):  # noqa: D102
        if not training:
            return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        teachers, weight, temperature, flip = self._distill
        # Keras' loss is the label loss plus the penalties (weight decay); only the label part is shared
        total = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        penalties = ops.sum(ops.stack([ops.cast(ops.sum(loss), total.dtype) for loss in self.losses])) \
            if self.losses else ops.zeros((), total.dtype)
        kd = distillation_loss(soft_targets(teachers, x, temperature, flip), y_pred, temperature)
        return (1 - weight) * (total - penalties) + weight * ops.cast(kd, total.dtype) + penalties


def distilling(model: keras.Model, teachers: Sequence[keras.Model], weight: float,
               temperature: float, flip: bool = False) -> DistillingModel:
    """``model`` (functional, logits) as a :class:`DistillingModel` sharing its layers and weights,
    distilled from ``teachers`` with loss weight ``weight`` in [0, 1] and ``temperature`` > 0; with
    ``flip``, the teachers' targets average each image and its mirror (:func:`soft_targets`)."""
    if not teachers:
        raise DistillError("distilling needs at least one teacher.")
    if not 0 <= weight <= 1 or temperature <= 0:
        raise DistillError(f"distill weight must be in [0, 1] and temperature > 0, got {weight} and {temperature}.")
    if flip and len(model.inputs[0].shape) != 4:
        raise DistillError(f"distill flip mirrors (N, H, W, C) images; the model takes {tuple(model.inputs[0].shape)}.")
    inputs, outputs = (x[0] if len(x) == 1 else x for x in (model.inputs, model.outputs))
    return DistillingModel(inputs, outputs, teachers=teachers, weight=weight, temperature=temperature, flip=flip,
                           name=model.name)
