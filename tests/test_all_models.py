"""Every registered model builds, trains a step (gradients reach every weight) and round-trips
through a ``.keras`` file with identical outputs. Small inputs keep this fast."""
from __future__ import annotations

import keras
import numpy as np
import pytest

import zoo
from helpers import assert_grads_reach_every_weight, random_images

SLOW = {"resnet1202"}  # 1,202 layers: ~40 s to build, save and load


def small_options(name: str) -> dict:
    """The smallest convenient input for ``name``: its own if it is 32 px, else 64 px."""
    entry = zoo.get_entry(name)
    if entry.family.name == "airbench":
        # the random images are 0..255: airbench's BatchNorm epsilon (1e-12) leaves no margin for the
        # rounding of unnormalised activations, so it gets the images normalised, as it is trained
        return {"include_preprocessing": True}
    if entry.input_shape[0] <= 32:
        return {}
    return {"input_shape": (64, 64, 3), "num_classes": 10}


def _params():
    for name in zoo.list_models():
        marks = [pytest.mark.slow] if name in SLOW else []
        yield pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", list(_params()))
def test_builds_trains_and_round_trips(name, tmp_path):
    model = zoo.build(name, **small_options(name))
    assert_grads_reach_every_weight(model)
    x = random_images(model)
    expected = model.predict(x, verbose=0)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)
    assert loaded.count_params() == model.count_params()
