"""zoo.training.tta: the views and weights of airbench's test-time augmentation."""
import keras
import numpy as np
import pytest

from zoo.training.tta import TTA_LEVELS, tta_level, tta_logits, tta_predict, views


def batch():
    return np.arange(2 * 4 * 5 * 3, dtype="float32").reshape(2, 4, 5, 3)


def test_views_are_the_image_its_mirror_and_the_reflected_one_pixel_shifts():
    x = batch()
    got = [(w, keras.ops.convert_to_numpy(v)) for w, v in views(x, "mirror_translate")]
    assert [w for w, _ in got] == [0.25, 0.25, 0.125, 0.125, 0.125, 0.125]
    np.testing.assert_array_equal(got[0][1], x)
    np.testing.assert_array_equal(got[1][1], x[:, :, ::-1])
    padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect")
    up_left, down_right = padded[:, :4, :5], padded[:, 2:, 2:]
    np.testing.assert_array_equal(got[2][1], up_left)
    np.testing.assert_array_equal(got[3][1], up_left[:, :, ::-1])
    np.testing.assert_array_equal(got[4][1], down_right)
    np.testing.assert_array_equal(got[5][1], down_right[:, :, ::-1])
    assert up_left[0, 1, 1, 0] == x[0, 0, 0, 0] and down_right[0, 0, 0, 0] == x[0, 1, 1, 0]
    assert [w for w, _ in views(x, 1)] == [0.5, 0.5] and len(views(x, "none")) == 1


def test_logits_are_the_weighted_mean_over_views():
    x = batch()
    predict = lambda v: keras.ops.sum(v[:, :, :1, 0], axis=(1, 2))[:, None]  # noqa: E731  left column: not flip-invariant
    left, right = x[:, :, 0, 0].sum(1), x[:, :, -1, 0].sum(1)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(tta_logits(predict, x, 1))[:, 0], (left + right) / 2)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(tta_logits(predict, x, 0))[:, 0], left)


def test_predict_in_batches_equals_one_pass_and_levels_are_checked():
    model = keras.Sequential([keras.Input((4, 5, 3)), keras.layers.Conv2D(2, 3), keras.layers.GlobalAveragePooling2D()])
    x = batch()
    np.testing.assert_allclose(tta_predict(model, x, 2, batch_size=1), tta_predict(model, x, 2), rtol=1e-5)
    assert TTA_LEVELS == {"none": 0, "mirror": 1, "mirror_translate": 2} and tta_level("mirror") == 1
    for bad in (3, "flip", True, None):
        with pytest.raises(ValueError, match="test-time augmentation"):
            tta_level(bad)
