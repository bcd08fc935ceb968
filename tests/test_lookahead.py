"""zoo.training.lookahead against values computed by hand from the authors' update rule."""
import keras
import numpy as np
import pytest

from zoo.training.lookahead import Lookahead, lookahead_decay


def test_decay_schedule_is_cubic_and_capped():
    assert lookahead_decay(0, 100) == 0.0
    assert lookahead_decay(50, 100) == pytest.approx(0.95 ** 5 * 0.125)
    assert lookahead_decay(100, 100) == pytest.approx(0.95 ** 5)
    assert lookahead_decay(150, 100) == pytest.approx(0.95 ** 5)
    with pytest.raises(ValueError):
        lookahead_decay(1, 0)


def test_a_fit_applies_the_update_every_k_steps_and_ends_on_the_average():
    """A one-weight linear model trained by plain SGD: replay the same gradient steps by hand."""
    keras.utils.set_random_seed(0)
    x = np.array([[1.0], [2.0], [3.0], [4.0]], "float32")
    y = 3.0 * x
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    total, every = 6, 2
    callback = Lookahead(total_steps=total, every=every, base=0.9, power=1.0)
    model.fit(x, y, batch_size=4, epochs=total, callbacks=[callback], verbose=0, shuffle=False)

    w = avg = 0.0  # by hand: full-batch gradient of mean((w x - 3x)^2) is 2 (w - 3) mean(x^2) = 15 (w - 3)
    for step in range(1, total + 1):
        w -= 0.01 * 15.0 * (w - 3.0)
        if step % every == 0:  # the last step (6) too, then the weights take the average
            decay = 0.9 * step / total
            avg = decay * avg + (1 - decay) * w
            w = avg
        if step >= total:
            w = avg
    assert float(model.layers[0].kernel.numpy()[0, 0]) == pytest.approx(w, rel=1e-5)
    assert float(callback.average[0].numpy()[0, 0]) == pytest.approx(avg, rel=1e-5)


def test_integer_state_is_left_alone():
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2D(2, 3), keras.layers.BatchNormalization()])
    callback = Lookahead(total_steps=10)
    tracked = callback.tracked(model)
    assert len(tracked) == len(model.weights) == 6  # kernel, bias, gamma, beta, moving mean, moving variance
    with pytest.raises(ValueError):
        Lookahead(total_steps=0)
