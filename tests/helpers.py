"""Small utilities shared by the tests."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import tensorflow as tf


def trainable_params(model) -> int:
    return sum(math.prod(w.shape) for w in model.trainable_weights)


def structure(model) -> list[tuple]:
    """The layer sequence without names: class and the hyper-parameters that define the network."""
    keys = ("filters", "kernel_size", "strides", "padding", "pool_size", "dilation_rate", "use_bias", "units",
            "activation", "rate", "filter_size", "block", "k", "extra", "pads")
    rows = []
    for layer in model.layers:
        cfg = layer.get_config()
        rows.append((type(layer).__name__, tuple((k, str(cfg[k])) for k in keys if k in cfg)))
    return rows


def gradients(model, batch: int = 2, seed: int = 0):
    """Trainable weights and their gradients for a sum-of-outputs loss on random input."""
    shape = (batch, *model.input.shape[1:])
    x = tf.random.stateless_uniform(shape, seed=(seed, 1), maxval=255.0)
    with tf.GradientTape() as tape:
        out = model(x, training=True)
        outs = out if isinstance(out, (list, tuple)) else [out]
        loss = tf.add_n([tf.reduce_mean(tf.square(o)) for o in outs])
    return model.trainable_weights, tape.gradient(loss, model.trainable_weights)


def assert_grads_reach_every_weight(model) -> None:
    weights, grads = gradients(model)
    missing = [w.path for w, g in zip(weights, grads) if g is None]
    assert not missing, f"no gradient reaches {missing[:5]}"
    bad = [w.path for w, g in zip(weights, grads) if not np.all(np.isfinite(g.numpy()))]
    assert not bad, f"non-finite gradients at {bad[:5]}"
    assert any(float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)


def random_images(model, batch: int = 2, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, size=(batch, *model.input.shape[1:])).astype("float32")


def tiny_npz(path: Path, count: int, size: int = 16, seed: int = 0) -> Path:
    """Random 16x16 images whose mean colour depends on the class, so a few steps learn something."""
    rng = np.random.default_rng(seed)
    y = np.arange(count) % 4
    x = rng.integers(0, 120, (count, size, size, 3)) + 40 * y[:, None, None, None]
    np.savez(path, x=x.astype("uint8"), y=y.astype("int32"))
    return path


def tiny_recipe(npz: Path, **train) -> dict:
    return {
        "name": "tiny",
        "description": "a seconds-long resnet20 run on random 16x16 images",
        "model": {"name": "resnet20"},
        "data": {"source": str(npz), "validation": 32, "batch_size": 32, "augment": ["flip"]},
        "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
        "schedule": {"name": "cosine", "warmup_epochs": 0.5},
        "train": {"epochs": 1, "seed": 3, "progress": "none", **train},
    }
