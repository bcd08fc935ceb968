"""zoo.training.param_groups: a scaled learning rate for BatchNorm biases, by hand."""
import keras
import numpy as np
import pytest

from zoo.training.param_groups import batch_norm_biases, scaled_optimizer


def test_sgd_with_a_scaled_variable_steps_it_by_scale_times_the_gradient_plus_unscaled_decay():
    a, b = keras.Variable(np.array([1.0, 2.0], "float32"), name="a"), keras.Variable(np.array([3.0], "float32"), name="b")
    cls = scaled_optimizer(keras.optimizers.SGD, {a.path: 64.0}, {a.path: 0.01})
    opt = cls(learning_rate=0.1)
    ga, gb = np.array([0.5, -1.0], "float32"), np.array([2.0], "float32")
    opt.apply([ga, gb], [a, b])
    np.testing.assert_allclose(a.numpy(), [1.0 - 0.1 * (64 * 0.5 + 0.01 * 1.0), 2.0 - 0.1 * (64 * -1.0 + 0.01 * 2.0)], rtol=1e-6)
    np.testing.assert_allclose(b.numpy(), [3.0 - 0.1 * 2.0], rtol=1e-6)  # unscaled, no decay added
    assert cls.__name__ == "ScaledSGD" and issubclass(cls, keras.optimizers.SGD)
    with pytest.raises(ValueError, match="needs the variables"):
        opt.apply([ga, gb])


def test_nesterov_momentum_sees_the_scaled_gradient():
    a = keras.Variable(np.array([0.0], "float32"), name="a")
    ref = keras.Variable(np.array([0.0], "float32"), name="ref")
    scaled = scaled_optimizer(keras.optimizers.SGD, {a.path: 4.0})(learning_rate=0.1, momentum=0.9, nesterov=True)
    plain = keras.optimizers.SGD(learning_rate=0.4, momentum=0.9, nesterov=True)  # 4x the rate, same gradient
    for g in (1.0, -0.5, 2.0):
        scaled.apply([np.array([g], "float32")], [a])
        plain.apply([np.array([g], "float32")], [ref])
    np.testing.assert_allclose(a.numpy(), ref.numpy(), rtol=1e-6)


def test_batch_norm_biases_are_found_in_nested_models():
    inner = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2D(2, 3), keras.layers.BatchNormalization(name="bn_in")])
    outer = keras.Sequential([keras.Input((4, 4, 3)), inner, keras.layers.Flatten(),
                              keras.layers.BatchNormalization(center=False, name="no_beta")])
    assert [v.path for v in batch_norm_biases(outer)] == [inner.get_layer("bn_in").beta.path]
