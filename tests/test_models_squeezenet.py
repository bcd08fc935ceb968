"""SqueezeNet family: Iandola et al. 2016, torchvision layout (parameter counts and FLOPs from architectures.md)."""
from __future__ import annotations

import keras
import numpy as np
import pytest

import zoo
from zoo.errors import ZooError
from zoo.layers.downsample import CHOICES
from helpers import assert_grads_reach_every_weight, random_images, trainable_params

PARAMS = {"squeezenet1_0": 1_248_424, "squeezenet1_1": 1_235_496}
# complex bypass: 1×1 convolutions (with bias) on the shortcuts of fire2, fire4, fire6, fire8
COMPLEX_EXTRA = {"squeezenet1_0": (96 + 1) * 128 + (128 + 1) * 256 + (256 + 1) * 384 + (384 + 1) * 512,
                 "squeezenet1_1": (64 + 1) * 128 + (128 + 1) * 256 + (256 + 1) * 384 + (384 + 1) * 512}


def test_registered_names():
    assert zoo.list_models("squeezenet*") == [
        "squeezenet1_0", "squeezenet1_0_complex_bypass", "squeezenet1_0_simple_bypass",
        "squeezenet1_1", "squeezenet1_1_complex_bypass", "squeezenet1_1_simple_bypass"]
    assert zoo.get_entry("squeezenet1_0_simple_bypass").defaults == {"bypass": "simple"}


@pytest.mark.parametrize("base", sorted(PARAMS))
def test_params_match_reference(base):
    assert trainable_params(zoo.build(base)) == PARAMS[base] == zoo.get_entry(base).published["params"]
    assert trainable_params(zoo.build(f"{base}_simple_bypass")) == PARAMS[base]  # identity shortcuts
    assert trainable_params(zoo.build(f"{base}_complex_bypass")) == PARAMS[base] + COMPLEX_EXTRA[base]
    assert trainable_params(zoo.build(base, num_classes=10)) == PARAMS[base] - 990 * 513


@pytest.mark.parametrize("name,gflops", [("squeezenet1_0", 0.82), ("squeezenet1_1", 0.35)])
def test_flops_match_published(name, gflops):
    flops = pytest.importorskip("zoo.flops")
    assert flops.count_flops(zoo.build(name)) / 1e9 == pytest.approx(gflops, rel=0.03)


def test_torchvision_layout():
    model = zoo.build("squeezenet1_0", features_only=True)
    conv1 = model.get_layer("conv1")
    assert (conv1.kernel_size, conv1.strides, conv1.padding) == ((7, 7), (2, 2), "valid")  # unpadded
    assert all(l.use_bias for l in model.layers if isinstance(l, keras.layers.Conv2D))
    assert model.get_layer("fire2_expand3x3").padding == "same"
    # ceil-mode pools: 224 → 109 → 54 → 27 → 13, the extra row padded after (54 → 27)
    assert [t.shape[1] for t in model.outputs] == [109, 54, 27, 13]
    assert model.get_layer("pool2_pad").padding == ((0, 1), (0, 1))
    v11 = zoo.build("squeezenet1_1", features_only=True)
    v11_info = zoo.feature_info("squeezenet1_1", features_only=True)
    assert [f["name"] for f in v11_info] == ["conv1", "fire3", "fire5", "fire9"]
    assert [(t.shape[1], t.shape[3]) for t in v11.outputs] == [(111, 64), (55, 128), (27, 256), (13, 512)]
    assert [f["reduction"] for f in v11_info] == [2, 4, 8, 16]


def test_bypass_structure():
    adds = lambda m: [l.name for l in m.layers if isinstance(l, keras.layers.Add)]
    assert adds(zoo.build("squeezenet1_0")) == []
    assert adds(zoo.build("squeezenet1_1", bypass="simple")) == [f"fire{i}_add" for i in (3, 5, 7, 9)]
    complex_ = zoo.build("squeezenet1_1_complex_bypass")
    assert adds(complex_) == [f"fire{i}_add" for i in range(2, 10)]
    bypass = complex_.get_layer("fire4_bypass")
    assert bypass.kernel_size == (1, 1) and bypass.use_bias and bypass.activation is keras.activations.linear
    with pytest.raises(ZooError, match="bypass"):
        zoo.build("squeezenet1_0", bypass="both")


def test_sites_and_cifar_stem():
    assert [(s.name, s.role, s.default) for s in zoo.sites("squeezenet1_0")] == [
        ("stem", "conv", "conv"), ("pool1", "pool", "max"), ("pool2", "pool", "max"), ("pool3", "pool", "max")]
    assert [s.default for s in zoo.sites("squeezenet1_1", stem="cifar")] == ["none", "none", "max", "max"]
    model = zoo.build("squeezenet1_0", stem="cifar", input_shape=(32, 32, 3), features_only=True)
    assert [t.shape[1] for t in model.outputs] == [32, 32, 16, 8]


@pytest.mark.parametrize("name", ["squeezenet1_0", "squeezenet1_1_complex_bypass"])
def test_forward_backward_on_cifar_input(name):
    model = zoo.build(name, stem="cifar", input_shape=(32, 32, 3), num_classes=10)
    assert model.output.shape == (None, 10)
    assert_grads_reach_every_weight(model)


def test_keras_round_trip(tmp_path):
    model = zoo.build("squeezenet1_1_simple_bypass", stem="cifar", input_shape=(32, 32, 3), num_classes=10)
    x = random_images(model)
    expected = model.predict(x, verbose=0)
    model.save(tmp_path / "squeezenet.keras")
    loaded = keras.saving.load_model(tmp_path / "squeezenet.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("site", ["stem", "pool1", "pool2", "pool3"])
def test_every_choice_at_every_site_keeps_the_published_sizes(site):
    x = np.random.default_rng(0).uniform(0, 1, (1, 64, 64, 3)).astype("float32")
    published = [29, 14, 7, 3]  # squeezenet1_0 at 64: conv1 unpadded, ceil-mode pools
    index = ["stem", "pool1", "pool2", "pool3"].index(site)
    for choice in CHOICES:
        model = zoo.build("squeezenet1_0", input_shape=(64, 64, 3), features_only=True, downsample={site: choice})
        sizes = [int(t.shape[1]) for t in model(x)]
        if choice == "none":
            assert sizes[index] > published[index], choice
        else:
            assert sizes == published, choice


def test_output_stride_dilates_the_last_fire_modules():
    model = zoo.build("squeezenet1_1", input_shape=(64, 64, 3), output_stride=8, features_only=True)
    info = zoo.feature_info("squeezenet1_1", input_shape=(64, 64, 3), output_stride=8, features_only=True)
    assert [f["reduction"] for f in info] == [2, 4, 8, 8]
    assert model.get_layer("fire9_expand3x3").dilation_rate == (2, 2)
    assert model.get_layer("fire5_expand3x3").dilation_rate == (1, 1)
    with pytest.raises(ZooError, match="output_stride=32 is not possible"):
        zoo.build("squeezenet1_1", output_stride=32)


def test_too_small_input_is_a_clear_error():
    with pytest.raises(ZooError, match=r"input 24x24 is too small for squeezenet1_0.*at least 32"):
        zoo.build("squeezenet1_0", input_shape=(24, 24, 3))
    assert zoo.build("squeezenet1_0", input_shape=(32, 32, 3)).output.shape == (None, 1000)
    assert zoo.build("squeezenet1_0", stem="cifar", input_shape=(8, 8, 3)).output.shape == (None, 1000)


def test_class_relu_option_keeps_or_drops_the_relu_on_the_class_scores():
    """The published conv10 has a ReLU (scores >= 0); class_relu=False gives signed logits with
    the same layers and parameter count."""
    x = np.random.default_rng(0).normal(0, 1, (2, 32, 32, 3)).astype("float32")
    paper, signed = (zoo.build("squeezenet1_1", stem="cifar", num_classes=10, input_shape=(32, 32, 3), class_relu=flag) for flag in (True, False))
    assert paper.count_params() == signed.count_params()
    signed.set_weights(paper.get_weights())
    head = paper.get_layer("conv10").output
    scores = keras.Model(paper.inputs, head)(x).numpy()
    raw = keras.Model(signed.inputs, signed.get_layer("conv10").output)(x).numpy()
    assert (scores >= 0).all() and (raw < 0).any()
    np.testing.assert_allclose(scores, np.maximum(raw, 0), atol=1e-5)
