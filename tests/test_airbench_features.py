"""Airbench's recipe features on the fit path (zoo.training.features; Jordan 2024): alternating flip
and 2-pixel translation in the input pipeline, the BatchNorm-bias rate scale and bias decay in the
optimizer, the whitening initialisation, the recipe's conversions, and a tiny slice of the
airbench94 recipe killed and resumed ending on the uninterrupted run's weights (lookahead average,
whitening-bias freeze and alternating flip included)."""
from __future__ import annotations

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny_npz

import zoo.data as zdata
from zoo import report as zr
from zoo.data.augment import flip_bit, random_translate
from zoo.layers.whitening import patch_covariance, whitening_kernel
from zoo.training import RecipeError, load_recipe, train
from zoo.training.model import make_optimizer


# ------------------------------------------------------------------------------------ pipeline
def _images(count: int = 12, size: int = 6) -> tf.data.Dataset:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (count, size, size, 3)).astype("uint8")
    return tf.data.Dataset.from_tensor_slices((x, np.arange(count, dtype="int32"))), x


def _epochs(ds, augment, epochs=3, seed=5):
    stream = zdata.make_pipeline(ds, batch_size=4, training=True, augment=augment, seed=seed, cache=False,
                                 first_epoch=0, stop_epoch=epochs)
    return [(x.numpy(), y.numpy()) for x, y in stream]


def test_alternating_flip_mirrors_each_image_by_its_bit_xor_the_epoch_parity_and_keeps_the_order():
    ds, x = _images()
    plain, flipped = _epochs(ds, ()), _epochs(ds, ("alternating_flip",))
    bits = np.array([bool(flip_bit(tf.constant(i), 5)) for i in range(len(x))])
    assert 0 < bits.sum() < len(bits)
    per_epoch = len(x) // 4
    for b, ((xa, ya), (xf, yf)) in enumerate(zip(plain, flipped)):
        assert np.array_equal(ya, yf)  # the same order as without the flip
        epoch = b // per_epoch
        for image, label in zip(xf, yf):
            expected = x[label][:, ::-1] if bits[label] ^ (epoch % 2 == 1) else x[label]
            assert np.array_equal(image, expected), (epoch, label)
    # a stream resumed at epoch 1 is the tail of the whole one
    tail = _epochs(ds, ("alternating_flip",), seed=5)[per_epoch:]
    resumed = zdata.make_pipeline(ds, batch_size=4, training=True, augment=("alternating_flip",), seed=5,
                                  cache=False, first_epoch=1, stop_epoch=3)
    assert all(np.array_equal(a[0], b.numpy()) for a, (b, _) in zip(tail, resumed))


def test_translate2_is_a_reflection_padded_shift_of_at_most_two_pixels():
    _, x = _images(1, 8)
    image = x[0]
    padded = np.pad(image, ((2, 2), (2, 2), (0, 0)), mode="reflect")
    shifts = {(dy, dx): padded[dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)}
    seen = set()
    for s in range(60):
        out = random_translate(tf.constant(image), tf.constant([s, 1], tf.int64)).numpy()
        match = [k for k, v in shifts.items() if np.array_equal(out, v)]
        assert match, "not a reflection-padded shift"
        seen.add(match[0])
    assert len(seen) > 12  # the 25 shifts are all drawn


# ----------------------------------------------------------------------------------- optimizer
def _bn_model() -> keras.Model:
    inputs = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(3, 3, use_bias=True)(inputs)
    x = keras.layers.BatchNormalization(scale=False)(x)
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))


def test_bn_bias_scale_and_bias_decay_follow_the_authors_param_groups():
    """One SGD step (no momentum): the BatchNorm bias moves by lr * (64 g + wd b), the others by
    lr * (g + wd w), biases decayed too."""
    keras.utils.set_random_seed(0)
    model = _bn_model()
    recipe = load_recipe({"model": {"name": "airbench94"}, "optimizer": {
        "lr": 0.1, "momentum": 0.0, "weight_decay": 0.01, "decay_biases": True, "bn_bias_lr_scale": 64}})
    opt = make_optimizer(recipe, model, steps_per_epoch=10)
    beta = model.layers[2].beta
    beta.assign(np.array([0.5, -0.5, 1.0], "float32"))
    assert set(opt.zoo_lr_scales) == {beta.path}
    assert beta.regularizer is None and all(v.regularizer is not None for v in model.trainable_variables
                                            if v is not beta)  # biases decayed too, the BN bias by the optimizer
    x = np.random.default_rng(0).normal(size=(8, 4, 4, 2)).astype("float32")
    y = np.random.default_rng(1).normal(size=(8, 2)).astype("float32")
    before = [v.numpy().copy() for v in model.trainable_variables]
    with tf.GradientTape() as tape:
        plain = keras.ops.mean((model(x, training=True) - y) ** 2)  # the data loss alone
    grads = tape.gradient(plain, model.trainable_variables)
    with tf.GradientTape() as tape:
        loss = keras.ops.mean((model(x, training=True) - y) ** 2) + sum(model.losses)
    opt.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
    for v, w, g in zip(model.trainable_variables, before, grads):
        scale = 64.0 if v is beta else 1.0
        np.testing.assert_allclose(v.numpy(), w - 0.1 * (scale * g.numpy() + 0.01 * w), rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------------- whitening
def test_chunked_patch_covariance_is_the_whole_one():
    from zoo.training import features

    rng = np.random.default_rng(0)
    images = rng.normal(size=(1100, 5, 5, 3)).astype("float32")
    whole = patch_covariance(images, 2)
    recipe = load_recipe({"model": {"name": "airbench94"}, "train": {"whitening_images": 1100}})
    net = keras.Sequential([keras.Input((5, 5, 3)), features.PatchWhitening(24, 2)])
    facts = features.fit_whitening(recipe, net, images)
    np.testing.assert_allclose(net.layers[0].kernel.numpy(), whitening_kernel(whole, 2, 3, 5e-4), rtol=1e-4,
                               atol=1e-5)
    assert facts["images"] == 1100 and facts["eigenvalue_max"] == pytest.approx(np.linalg.eigvalsh(whole).max())


def test_whitening_fields_refuse_a_model_without_a_whitening_layer_before_data_loads(tmp_path):
    recipe = {"model": {"name": "resnet20"}, "data": {"source": str(tmp_path / "absent.npz")},
              "train": {"whitening_images": 100}}
    with pytest.raises(RecipeError, match="no PatchWhitening layer.*airbench94"):
        train(recipe, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(RecipeError, match="whitening_eps applies to the whitening initialisation"):
        train({**recipe, "model": {"name": "airbench94"}, "train": {"whitening_eps": 1e-3}}, run_dir=tmp_path / "r")
    with pytest.raises(RecipeError, match="lookahead averages between single steps"):
        train({**recipe, "train": {"lookahead": {"every": 2}, "steps_per_execution": 2}}, run_dir=tmp_path / "r")
    with pytest.raises(RecipeError, match="train.lookahead: unknown key"):
        load_recipe({"model": {"name": "resnet20"}, "train": {"lookahead": {"evry": 2}}})


# ------------------------------------------------------------------------------------ recipe
def test_the_airbench94_recipe_converts_the_authors_hyperparameters():
    r = load_recipe("airbench94")
    kilostep = 1024 * (1 + 1 / (1 - 0.85))
    lr_sum, wd_step = 11.5 / kilostep, 0.0153 * 1024 / kilostep  # the authors' PyTorch values (summed loss)
    assert r.optimizer.lr == pytest.approx(lr_sum * r.data.batch_size)  # the zoo's mean loss
    assert r.optimizer.lr * r.optimizer.weight_decay == pytest.approx(wd_step, rel=1e-4)  # the same decay per step
    assert (r.optimizer.momentum, r.optimizer.nesterov, r.optimizer.bn_bias_lr_scale) == (0.85, True, 64)
    assert r.optimizer.decay_biases and r.train.label_smoothing == 0.2
    assert r.schedule.warmup_epochs == pytest.approx(0.23 * r.train.epochs)
    assert (r.schedule.start_factor, r.schedule.final_factor) == (0.2, 0.07)
    assert r.train.lookahead["base"] == pytest.approx(0.95 ** 5)
    assert (r.train.whitening_images, r.train.whitening_eps, r.train.whitening_bias_epochs) == (5000, 5e-4, 3)
    assert r.data.augment == ["translate2", "alternating_flip"] and r.data.eval_tta == "mirror_translate"


class Killed(BaseException):
    """Stands in for a SIGKILL inside an epoch (not an Exception: nothing on the way catches it)."""


@pytest.mark.slow  # in-process deterministic training turns on TensorFlow op determinism for the whole
# session, which makes Keras refuse XLA in later tests (tests/test_capabilities.py's jit_compile probe)
def test_a_killed_airbench_slice_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    npz = tiny_npz(tmp_path / "slice.npz", 160, size=32)
    overrides = [f"data.source={npz}", "data.validation=32", "data.batch_size=32", "data.eval_split=null",
                 "data.eval_tta=mirror", "train.epochs=3", "train.whitening_images=64",
                 "train.whitening_bias_epochs=2", "train.lookahead={every: 3}", "schedule.warmup_epochs=0.69",
                 "train.progress=none", "output.tensorboard=false", "train.precision=float32"]
    whole = train("airbench94", overrides, run_dir=tmp_path / "whole")
    f = whole.report["features"]
    assert f["whitening"]["images"] == 64 and f["lookahead"]["total_steps"] == 12
    assert f["lookahead"]["updates"] == 4  # steps 3, 6, 9, 12; after step 12's update the weights take the average
    assert f["whitening_bias"]["frozen_from_epoch"] == 3 and f["bn_bias_lr_scale"]["variables"] == 6
    assert "accuracy_tta_mirror" in whole.report["evaluation"]["holdout"]

    hits = []

    def kill_in_epoch_3(label, tmp=None):
        hits.append(label)
        if label == "batch" and hits.count("batch") == 10:  # epochs 1-2 saved, epoch 3 under way
            raise Killed()

    monkeypatch.setattr(zr, "fault_point", kill_in_epoch_3)
    with pytest.raises(Killed):
        train("airbench94", overrides, run_dir=tmp_path / "resumed")
    monkeypatch.undo()
    with h5py.File(tmp_path / "resumed" / "checkpoints" / "last.weights.h5") as state:
        assert state.attrs["zoo_epoch"] == 2 and len(state["zoo_extra_state"]) > 0  # the lookahead average
    resumed = train("airbench94", overrides, run_dir=tmp_path / "resumed")
    assert resumed.report["timing"]["resumed_from_epoch"] == 2
    a, b = (keras.saving.load_model(r.run_dir / "model.keras", compile=False) for r in (whole, resumed))
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(wa), keras.ops.convert_to_numpy(wb), err_msg=wa.path)
    # zoo eval's test-time augmentation: the training report's figure, and the CLI's --tta
    from zoo.cli import main as zoo_main
    from zoo.training import evaluate

    evaluated = evaluate(resumed.run_dir, tta="mirror", output_dir=tmp_path / "eval")
    assert evaluated.metrics["accuracy_tta_mirror"] == pytest.approx(
        resumed.report["evaluation"]["holdout"]["accuracy_tta_mirror"])
    assert "accuracy_tta_mirror" not in evaluate(resumed.run_dir, tta="none", output_dir=tmp_path / "eval").metrics
    args = ["eval", str(resumed.run_dir), "--tta", "mirror_translate", "--output-dir", str(tmp_path / "e2")]
    assert zoo_main(args) == 0
    assert "accuracy_tta_mirror_translate" in zr.read_json(tmp_path / "e2" / "eval_report.json")["metrics"]
