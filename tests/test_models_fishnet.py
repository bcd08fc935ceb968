"""FishNet family: Sun et al. 2018, official configurations (parameter counts and FLOPs from architectures.md)."""
from __future__ import annotations

import keras
import numpy as np
import pytest

import zoo
from zoo.errors import ZooError
from zoo.layers.downsample import CHOICES
from helpers import assert_grads_reach_every_weight, random_images, trainable_params

PARAMS = {  # classes: trainable params
    "fishnet99": {1000: 16_628_904, 10: 15_582_474, 100: 15_677_604},
    "fishnet150": {1000: 24_959_400, 10: 23_912_970, 100: 24_008_100},
    "fishnet201": {1000: 44_584_552},
}
NAMES = ["stem", "tail1", "tail2", "tail3", "bridge", "body1", "body2", "body3", "head1", "head2", "head3"]


@pytest.fixture(scope="module")
def fishnet99():
    return zoo.build("fishnet99")


@pytest.fixture(scope="module")
def cifar_fishnet99():
    return zoo.build("fishnet99", stem="cifar", input_shape=(32, 32, 3), num_classes=10)


def test_fishnet99_params(fishnet99):
    assert trainable_params(fishnet99) == PARAMS["fishnet99"][1000] == zoo.get_entry("fishnet99").published["params"]


@pytest.mark.parametrize("name,classes", [(n, c) for n, counts in PARAMS.items() for c in counts
                                          if (n, c) != ("fishnet99", 1000)])
def test_params_match_reference(name, classes):
    assert trainable_params(zoo.build(name, num_classes=classes)) == PARAMS[name][classes]
    keras.backend.clear_session()


def test_flops_match_published(fishnet99):
    flops = pytest.importorskip("zoo.flops")
    assert flops.count_flops(fishnet99) / 1e9 == pytest.approx(4.31, rel=0.03)


def test_stages_at_224(fishnet99):
    model = keras.Model(fishnet99.input, [fishnet99.get_layer(n).output for n in (
        "pool1_maxpool", "fish0_1_maxpool", "fish1_1_maxpool", "fish2_1_maxpool", "fish3_add",
        "fish4_concat", "fish5_concat", "fish6_concat", "fish7_concat", "fish8_concat", "fish9_concat")])
    assert [tuple(t.shape[1:]) for t in model.outputs] == [
        (56, 56, 64), (28, 28, 128), (14, 14, 256), (7, 7, 512), (7, 7, 512),
        (14, 14, 768), (28, 28, 512), (56, 56, 320), (28, 28, 832), (14, 14, 1600), (7, 7, 2112)]


def test_features_and_their_reductions():
    model = zoo.build("fishnet99", features_only=True, input_shape=(64, 64, 3))
    info = zoo.feature_info("fishnet99", features_only=True, input_shape=(64, 64, 3))
    assert [f["name"] for f in info] == NAMES
    assert [f["reduction"] for f in info] == [4, 8, 16, 32, 32, 16, 8, 4, 8, 16, 32]
    assert [f["channels"] for f in info] == [64, 128, 256, 512, 512, 768, 512, 320, 832, 1600, 2112]
    assert [t.shape[1] for t in model.outputs] == [16, 8, 4, 2, 2, 4, 8, 16, 8, 4, 2]


def test_layer_names_follow_the_official_checkpoint(fishnet99):
    """``module.<path>.<param>`` → layer ``<path>`` with ``fish.fish.`` → ``fish`` and dots → underscores."""
    layer = fishnet99.get_layer
    assert layer("conv1_0").kernel.shape == (3, 3, 3, 32) and isinstance(layer("conv1_1"), keras.layers.BatchNormalization)
    assert layer("fish0_0_0_shortcut_2").kernel.shape == (1, 1, 64, 128)  # tail projection shortcut
    assert layer("fish0_0_1_conv2").kernel.shape == (3, 3, 32, 32)
    assert layer("fish3_0_2").kernel.shape == (1, 1, 512, 256) and layer("fish3_1").kernel.shape == (1, 1, 256, 1024)
    assert layer("fish3_3_0_3").kernel.shape == (1, 1, 1024, 32) and layer("fish3_3_0_5").kernel.shape == (1, 1, 32, 512)
    assert layer("fish3_2_0_shortcut_2").kernel.shape == (1, 1, 1024, 512)
    assert layer("fish5_0_0_squeeze").k == 2 and layer("fish6_0_0_squeeze").k == 2  # r(x), k = in / out
    assert layer("fish5_0_0_conv2").dilation_rate == (2, 2) and layer("fish6_0_0_conv2").dilation_rate == (4, 4)
    assert layer("fish4_1_0_conv1").kernel.shape == (1, 1, 256, 64)  # transfer of f2
    assert layer("fish9_1_3_conv3").kernel.shape == (1, 1, 128, 512)  # 4 transfer blocks of f4
    assert layer("fish9_3_2").kernel.shape == (1, 1, 2112, 1056) and layer("fish9_4_1").kernel.shape == (1, 1, 1056, 1000)
    convs = [l for l in fishnet99.layers if isinstance(l, keras.layers.Conv2D)]
    assert {l.name for l in convs if l.use_bias} == {"fish3_1", "fish3_3_0_3", "fish3_3_0_5", "fish9_4_1"}
    assert not [l.name for l in fishnet99.layers if isinstance(l, keras.layers.Add) and "shortcut" in l.name]


def test_concatenation_order_is_trunk_then_transfer(fishnet99):
    concat = fishnet99.get_layer("fish4_concat")
    assert [t.shape[-1] for t in concat.input] == [512, 256]
    assert concat.input[0] is fishnet99.get_layer("fish4_2").output  # the up-sampled trunk first
    assert concat.input[1] is fishnet99.get_layer("fish4_1_0_add").output  # then the transfer of f2


def test_forward_backward_on_cifar_input(cifar_fishnet99):
    assert cifar_fishnet99.output.shape == (None, 10)
    assert_grads_reach_every_weight(cifar_fishnet99)


def test_keras_round_trip(cifar_fishnet99, tmp_path):
    x = random_images(cifar_fishnet99)
    expected = cifar_fishnet99.predict(x, verbose=0)
    cifar_fishnet99.save(tmp_path / "fishnet.keras")
    loaded = keras.saving.load_model(tmp_path / "fishnet.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-5)


def test_sites_and_cifar_stem():
    sites = zoo.sites("fishnet99")
    assert [(s.name, s.role, s.default, s.follows) for s in sites] == [
        ("stem", "conv", "conv", None), ("stem_pool", "pool", "max", None),
        ("tail1", "pool", "max", None), ("tail2", "pool", "max", None), ("tail3", "pool", "max", None),
        ("head1", "pool", "max", "tail1"), ("head2", "pool", "max", "tail2"), ("head3", "pool", "max", "tail3")]
    assert [s.default for s in zoo.sites("fishnet99", stem="cifar")][:2] == ["none", "none"]
    assert zoo.resolve_plan("fishnet99").total_stride == 32  # the head pools mirror the tail, adding nothing
    assert zoo.resolve_plan("fishnet99", stem="cifar").total_stride == 8


def test_cifar_stem_keeps_32_px():
    model = zoo.build("fishnet99", stem="cifar", input_shape=(32, 32, 3), features_only=True)
    assert [t.shape[1] for t in model.outputs] == [32, 16, 8, 4, 4, 8, 16, 32, 16, 8, 4]


def test_every_choice_at_a_site_keeps_the_published_sizes():
    x = np.random.default_rng(0).uniform(0, 1, (1, 64, 64, 3)).astype("float32")
    for choice in CHOICES:
        model = zoo.build("fishnet99", input_shape=(64, 64, 3), features_only=True, downsample={"tail2": choice},
                          out_indices=(3, 7, 10))
        sizes = [int(t.shape[1]) for t in model(x)]
        if choice == "none":  # f2 onwards at 8 px; head2 mirrors tail2 and the up-sampling after it goes
            assert sizes == [4, 16, 4] and "fish5_2" not in [l.name for l in model.layers]
        else:
            assert sizes == [2, 16, 2], choice
        keras.backend.clear_session()


def test_head_pools_mirror_the_tail_pools():
    plan = zoo.resolve_plan("fishnet99", downsample="blur")
    assert {str(c) for c in plan.choices.values()} == {"blur"}  # one choice applies to the head pools too
    plan = zoo.resolve_plan("fishnet99", downsample={"tail3": "none", "head2": "avg"})
    assert (str(plan.choices["head3"]), str(plan.choices["head2"])) == ("none", "avg")
    with pytest.raises(ZooError, match="'head1' of fishnet99 cannot be 'none' while 'tail1' downsamples"):
        zoo.build("fishnet99", downsample={"head1": "none"})


@pytest.mark.parametrize("output_stride", [16, 8])
def test_output_stride_drops_mirrored_pairs_and_dilates(output_stride):
    model = zoo.build("fishnet99", input_shape=(64, 64, 3), features_only=True, output_stride=output_stride)
    info = zoo.feature_info("fishnet99", input_shape=(64, 64, 3), features_only=True, output_stride=output_stride)
    reductions = [f["reduction"] for f in info]
    assert max(reductions) == output_stride and reductions[-1] == output_stride
    assert [t.shape[1] for t in model.outputs][-1] == 64 // output_stride
    factor = 32 // output_stride
    assert model.get_layer("fish3_2_0_conv2").dilation_rate == (factor, factor)  # bridge at the deepest level
    assert model.get_layer("fish4_0_0_conv2").dilation_rate == (factor, factor)  # body: its own 1 × factor
    assert model.get_layer("fish6_0_0_conv2").dilation_rate == (4, 4)  # back at f0's resolution: the published 4


def test_input_sizes_are_clear_errors():
    with pytest.raises(ZooError, match=r"input 240x240 does not fit fishnet99.*multiple of its total stride 32 "
                                       r"\(e\.g\. 224 or 256 instead of 240\)"):
        zoo.build("fishnet99", input_shape=(240, 240, 3))
    with pytest.raises(ZooError, match=r"input 16x16 is too small for fishnet99.*multiple of 32"):
        zoo.build("fishnet99", input_shape=(16, 16, 3))
    with pytest.raises(ZooError, match="multiple of its total stride 8"):
        zoo.build("fishnet99", stem="cifar", input_shape=(36, 36, 3))
