"""zoo.layers.ops under mixed precision: the fused BatchNorm against Keras' own layer."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo.layers.ops import fused_batch_norm


@pytest.fixture
def mixed_bfloat16():
    before = keras.config.dtype_policy().name
    keras.config.set_dtype_policy("mixed_bfloat16")
    yield
    keras.config.set_dtype_policy(before)


def test_fused_batch_norm_in_bfloat16_matches_keras(mixed_bfloat16):
    """bfloat16 activations go into the fused kernel as they are; outputs, gradients and the
    float32 moving statistics agree with Keras' layer (which casts to float32) to bfloat16 rounding."""
    x = tf.cast(np.random.default_rng(1).normal(2, 3, (8, 6, 6, 5)), "bfloat16")
    ours, theirs = fused_batch_norm(momentum=0.9, epsilon=1e-5), keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)
    for layer in (ours, theirs):
        layer.build(x.shape)
        layer.gamma.assign(np.linspace(0.5, 2, 5))
        layer.beta.assign(np.linspace(-1, 1, 5))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        outs = [layer(x, training=True) for layer in (ours, theirs)]
        losses = [tf.reduce_sum(tf.cast(y, "float32") * tf.sin(tf.cast(y, "float32"))) for y in outs]
    assert outs[0].dtype == outs[1].dtype == tf.bfloat16
    assert ours.moving_mean.dtype == "float32" and ours.gamma.dtype == "float32"
    ref = tf.cast(outs[1], "float32").numpy()
    np.testing.assert_allclose(tf.cast(outs[0], "float32"), ref, atol=2 ** -7 * np.abs(ref).max())
    for a, b in zip(tape.gradient(losses[0], [x, ours.gamma, ours.beta]),
                    tape.gradient(losses[1], [x, theirs.gamma, theirs.beta])):
        a, b = tf.cast(a, "float32").numpy(), tf.cast(b, "float32").numpy()
        np.testing.assert_allclose(a, b, atol=2 ** -6 * np.abs(b).max())
    np.testing.assert_allclose(ours.moving_mean, theirs.moving_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.moving_variance, theirs.moving_variance, rtol=1e-4)
    np.testing.assert_allclose(tf.cast(ours(x, training=False), "float32"), tf.cast(theirs(x, training=False), "float32"))
