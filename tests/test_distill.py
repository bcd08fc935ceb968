"""Knowledge distillation (zoo.training.distill): the loss against numpy, the teachers kept out of the
student's weights, teacher names checked before training, and a distilled training run."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from zoo.training import distill
from zoo.training.recipe import RecipeError, load_recipe
from zoo.training import train

from helpers import tiny_npz, tiny_recipe


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _dense_model(seed: int, classes: int = 3, l2: float = 0.0) -> keras.Model:
    inputs = keras.Input((4,))
    reg = keras.regularizers.L2(l2) if l2 else None
    outputs = keras.layers.Dense(classes, kernel_initializer=keras.initializers.RandomNormal(seed=seed),
                                 bias_initializer=keras.initializers.RandomNormal(seed=seed + 1),
                                 kernel_regularizer=reg)(inputs)
    return keras.Model(inputs, outputs)


def test_distillation_loss_is_t_squared_kl():
    rng = np.random.default_rng(0)
    targets, logits, t = _softmax(rng.normal(size=(5, 7))), rng.normal(size=(5, 7)) * 3, 4.0
    student = _softmax(logits / t)
    expected = t * t * np.mean(np.sum(targets * (np.log(targets) - np.log(student)), -1))
    got = float(distill.distillation_loss(targets.astype("float32"), logits.astype("float32"), t))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    matched = distill.distillation_loss(student.astype("float32"), logits.astype("float32"), t)
    assert float(matched) == pytest.approx(0, abs=1e-5)  # a student that matches the targets


def test_soft_targets_average_the_teachers_softened_probabilities():
    x = np.random.default_rng(1).normal(size=(6, 4)).astype("float32")
    a, b = _dense_model(1), _dense_model(7)
    got = np.asarray(distill.soft_targets([a, b], x, 2.0))
    expected = (_softmax(a.predict(x, verbose=0) / 2) + _softmax(b.predict(x, verbose=0) / 2)) / 2
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_mirrored_soft_targets_average_each_image_and_its_mirror():
    x = np.random.default_rng(3).uniform(0, 255, size=(4, 5, 6, 3)).astype("float32")
    teachers = [keras.Sequential([keras.Input((5, 6, 3)), keras.layers.Flatten(),
                                  keras.layers.Dense(3, kernel_initializer=keras.initializers.RandomNormal(0, 0.01,
                                                                                                      seed=s))])
                for s in (1, 2)]  # a flattening teacher: its outputs change when the image is mirrored
    got = np.asarray(distill.soft_targets(teachers, x, 2.0, flip=True))
    views = [x, x[:, :, ::-1]]
    expected = np.mean([_softmax(t.predict(v, verbose=0) / 2) for t in teachers for v in views], axis=0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(got, np.asarray(distill.soft_targets(teachers, x, 2.0)), atol=1e-4)
    with pytest.raises(distill.DistillError, match=r"flip mirrors \(N, H, W, C\) images; the model takes \(None, 4\)"):
        distill.distilling(_dense_model(1), [_dense_model(2)], 0.5, 2.0, flip=True)


def test_training_loss_is_the_weighted_sum_and_validation_loss_the_label_loss():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(8, 4)).astype("float32"), rng.integers(0, 3, 8)
    teacher, weight, t = _dense_model(5), 0.7, 3.0
    student = distill.distilling(_dense_model(3, l2=0.01), [teacher], weight, t)
    student.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    logits = student(x)
    s, p = logits.numpy(), _softmax(teacher.predict(x, verbose=0) / t)
    ce = -np.mean(np.log(_softmax(s)[np.arange(8), y]))
    kd = t * t * np.mean(np.sum(p * (np.log(p) - np.log(_softmax(s / t))), -1))
    l2 = 0.01 * np.sum(student.layers[-1].kernel.numpy() ** 2)
    got = float(student.compute_loss(x, y, logits, training=True))
    np.testing.assert_allclose(got, (1 - weight) * ce + weight * kd + l2, rtol=1e-5)
    np.testing.assert_allclose(float(student.compute_loss(x, y, logits, training=False)), ce + l2, rtol=1e-5)


def test_teachers_are_not_trained_nor_saved_with_the_student(tmp_path):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.integers(0, 3, 32)
    plain, teacher = _dense_model(3), _dense_model(5)
    before = [w.numpy().copy() for w in teacher.weights]
    student = distill.distilling(plain, [teacher], 0.9, 4.0)
    assert len(student.weights) == len(plain.weights) == 2
    student.compile(optimizer=keras.optimizers.SGD(0.5),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    student.fit(x, y, epochs=2, verbose=0)
    for w, b in zip(teacher.weights, before):
        np.testing.assert_array_equal(w.numpy(), b)
    student.save_weights(tmp_path / "s.weights.h5")
    fresh = _dense_model(11)
    fresh.load_weights(tmp_path / "s.weights.h5")  # the plain architecture reads the student's file
    np.testing.assert_array_equal(fresh.predict(x, verbose=0), student.predict(x, verbose=0))


@pytest.mark.parametrize("spec, message", [
    ("resnet20", "names no weights"),
    ("no_such_net:cifar10", "no_such_net"),
    ("resnet20:imagenet21k", "no weights 'imagenet21k' for resnet20"),
    ("resnet20:missing/model.weights.h5", "no weights at missing/model.weights.h5"),
    ("missing/teacher.keras", "no model at missing/teacher.keras"),
])
def test_bad_teacher_names_are_refused_before_training(spec, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        distill.check_teacher_spec(spec)
    with pytest.raises(ValueError, match=message):  # zoo train checks them before loading any data
        train(tiny_recipe(tmp_path / "never-read.npz", teachers=[spec]), run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_student_without_logits_is_refused(tmp_path):
    recipe = tiny_recipe(tmp_path / "never-read.npz", teachers=["resnet20:cifar10"])
    recipe["model"]["classifier_activation"] = "softmax"
    with pytest.raises(RecipeError, match="distillation needs a student that outputs logits"):
        train(recipe, run_dir=tmp_path / "run")


def test_a_teacher_for_other_classes_or_image_sizes_is_refused():
    with pytest.raises(distill.DistillError, match="outputs 10 classes, the data has 4"):
        distill.load_teachers(["resnet20:cifar10"], 4, (32, 32, 3))
    with pytest.raises(distill.DistillError, match=r"takes \(32, 32, 3\) images, the data gives \(16, 16, 3\)"):
        distill.load_teachers(["resnet20:cifar10"], 10, (16, 16, 3))


def test_distill_settings_are_range_checked():
    with pytest.raises(RecipeError, match=r"train.distill_weight must be in \[0, 1\]"):
        load_recipe("resnet20-distill", ["train.distill_weight=1.5"])
    with pytest.raises(RecipeError, match="train.distill_temperature must be positive"):
        load_recipe("resnet20-distill", ["train.distill_temperature=0"])
    with pytest.raises(RecipeError, match="train.distill_flip mirrors the teachers' views, and .* names none"):
        load_recipe("resnet20-budget", ["train.distill_flip=true"])


def test_distilled_run_reports_its_teacher_and_saves_the_plain_student(tmp_path):
    npz = tiny_npz(tmp_path / "tiny.npz", 128)
    teacher = train(tiny_recipe(npz, epochs=2), run_dir=tmp_path / "teacher")
    teacher_weights = (teacher.run_dir / "model.weights.h5").read_bytes()
    settings = {"teachers": [str(teacher.run_dir)], "distill_weight": 0.5, "distill_temperature": 2.0,
                "distill_flip": True}
    run = train(tiny_recipe(npz, epochs=1, **settings), run_dir=tmp_path / "student")
    assert run.status == "completed"
    assert run.report["recipe"]["train"]["teachers"] == [str(teacher.run_dir)]
    assert (f"| distilled from | {teacher.run_dir} (weight 0.5, temperature 2.0, images and their mirrors) |"
            in (run.run_dir / "report.md").read_text())
    assert (teacher.run_dir / "model.weights.h5").read_bytes() == teacher_weights
    student = keras.saving.load_model(run.run_dir / "model.keras", safe_mode=True, compile=False)
    assert not isinstance(student, distill.DistillingModel)  # the saved model is the plain student
