"""VGG family: Simonyan & Zisserman 2015, configurations A, B, D, E (parameter counts from architectures.md)."""
from __future__ import annotations

import keras
import numpy as np
import pytest

import zoo
from zoo.errors import ZooError
from zoo.layers.downsample import CHOICES
from helpers import assert_grads_reach_every_weight, random_images, trainable_params

PARAMS = {"vgg11": 132_863_336, "vgg13": 133_047_848, "vgg16": 138_357_544, "vgg19": 143_667_240}
CONVS = {"vgg11": 8, "vgg13": 10, "vgg16": 13, "vgg19": 16}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_params_at_224_match_reference(name):
    model = zoo.build(name)
    assert trainable_params(model) == PARAMS[name] == zoo.get_entry(name).published["params"]
    assert sum(isinstance(l, keras.layers.Conv2D) for l in model.layers) == CONVS[name]
    del model
    keras.backend.clear_session()


def test_same_weights_layout_as_keras_applications_vgg16():
    ours = zoo.build("vgg16")
    theirs = keras.applications.VGG16(weights=None)
    shapes = lambda m: [(l.name, [tuple(w.shape) for w in l.weights]) for l in m.layers if l.weights]
    assert shapes(ours) == shapes(theirs)
    keras.backend.clear_session()


def test_classifier_activation_does_not_clash_with_predictions():
    model = zoo.build("vgg11", input_shape=(32, 32, 3), num_classes=10, classifier_activation="softmax")
    assert isinstance(model.get_layer("predictions"), keras.layers.Dense)
    probs = model.predict(random_images(model), verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_forward_backward_on_cifar_input():
    model = zoo.build("vgg11", input_shape=(32, 32, 3), num_classes=10)
    assert model.output.shape == (None, 10)
    assert_grads_reach_every_weight(model)


def test_keras_round_trip(tmp_path):
    model = zoo.build("vgg13", input_shape=(32, 32, 3), num_classes=10)
    x = random_images(model)
    expected = model.predict(x, verbose=0)
    model.save(tmp_path / "vgg.keras")
    loaded = keras.saving.load_model(tmp_path / "vgg.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)


def test_sites_and_features():
    assert [(s.name, s.role, s.default) for s in zoo.sites("vgg16")] == [(f"pool{i}", "pool", "max") for i in range(1, 6)]
    model = zoo.build("vgg16", input_shape=(64, 64, 3), features_only=True)
    info = zoo.feature_info("vgg16", input_shape=(64, 64, 3), features_only=True)
    assert [(f["name"], f["reduction"], f["channels"]) for f in info] == [
        ("block1", 1, 64), ("block2", 2, 128), ("block3", 4, 256), ("block4", 8, 512), ("block5", 16, 512),
        ("pool5", 32, 512)]
    assert [t.shape[1] for t in model.outputs] == [64, 32, 16, 8, 4, 2]


def test_features_up_to_the_first_downsampling():
    model = zoo.build("vgg16", input_shape=(48, 48, 3), features_only=True, out_indices=(0,))
    assert [l.name for l in model.layers if l.weights] == ["block1_conv1", "block1_conv2"]
    assert model.output_shape == (None, 48, 48, 64)


@pytest.mark.parametrize("site", ["pool1", "pool3", "pool5"])
def test_every_choice_at_a_site_keeps_the_published_sizes(site):
    x = np.random.default_rng(0).uniform(0, 1, (1, 32, 32, 3)).astype("float32")
    for choice in CHOICES:
        model = zoo.build("vgg11", input_shape=(32, 32, 3), num_classes=10, downsample={site: choice})
        feats = keras.Model(model.input, [model.get_layer(f"block{b}_conv1").input for b in (2, 3, 4, 5)] +
                            [model.get_layer("flatten").input])
        sizes = [int(t.shape[1]) for t in feats(x)]
        expected = [16, 8, 4, 2, 1]
        if choice == "none":  # the maps after this site keep twice the size
            k = int(site[-1]) - 1
            expected = expected[:k] + [2 * s for s in expected[k:]]
        assert sizes == expected, choice
        assert model(x).shape == (1, 10)
    conv = zoo.build("vgg11", input_shape=(32, 32, 3), downsample={site: "conv"}).get_layer(f"block{site[-1]}_pool_conv")
    assert (conv.kernel_size, conv.strides) == ((3, 3), (2, 2))  # the learned 3×3/2 replacement


@pytest.mark.parametrize("output_stride,rates", [(16, (1, 1, 1)), (8, (1, 1, 2)), (4, (1, 2, 4))])
def test_output_stride_dilates_the_convolutions_after_dropped_pools(output_stride, rates):
    model = zoo.build("vgg16", input_shape=(64, 64, 3), features_only=True, output_stride=output_stride)
    info = zoo.feature_info("vgg16", input_shape=(64, 64, 3), features_only=True, output_stride=output_stride)
    assert [f["reduction"] for f in info][-2:] == [min(16, output_stride), output_stride]
    assert model.outputs[-1].shape[1] == 64 // output_stride
    assert tuple(model.get_layer(f"block{b}_conv1").dilation_rate[0] for b in (3, 4, 5)) == rates


def test_too_small_input_is_a_clear_error():
    with pytest.raises(ZooError, match=r"input 16x16 is too small for vgg16.*reduce by 32.*at least 32"):
        zoo.build("vgg16", input_shape=(16, 16, 3))
    assert zoo.build("vgg11", input_shape=(16, 16, 3), num_classes=10, output_stride=16).output.shape == (None, 10)
